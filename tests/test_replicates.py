"""Replicate runs (train.replicates), equal-work accounting (steps, images seen, time-to-quality) and the
"did not denoise" flag, on fixture result trees and hand-made epoch lists."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest
from scipy import stats as sps

from cxrdenoise import figures, tables
from cxrdenoise.denoised import NOT_DENOISED
from cxrdenoise.errors import CxrError
from cxrdenoise.render import write_table
from cxrdenoise.tables import replicates as reps_mod
from cxrdenoise.tables import work
from cxrdenoise.train.settings import TrainSettings, init_seed, replicate_count
from fixtures.results_tree import noisy_paths, paths, write_results_tree

SIGMA = ("0.1",)
SETUPS = ("gpu1", "dp2", "ddp2_amp")


def _json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def _row(frame, **match):
    hit = frame
    for key, value in match.items():
        hit = hit[hit[key] == value]
    assert len(hit) == 1, match
    return hit.iloc[0]


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    """Three replicates of every run at sigma 0.1."""
    return write_results_tree(tmp_path_factory.mktemp("reps"), sigmas=SIGMA, setups=SETUPS, replicates=3)


def _inputs(results, reps=(1, 2, 3)):
    kw = dict(sigmas=SIGMA, setups=SETUPS, reps=reps)
    return paths(results, "record", **kw), paths(results, "summary", **kw), noisy_paths(results, sigmas=SIGMA)


# ------------------------------------------------------------------------------------------- paths and grouping

def test_replicate_paths_parse_and_the_old_layout_reads_as_rep1():
    assert tables.parse_replicate_path("results/eval/unet/sigma0.1/gpu1/rep12/summary.json") == (
        "unet", "0.1", "gpu1", 12)
    assert tables.parse_replicate_path("results/train/unet/sigma0.1/ddp2_amp/rep1/record.json")[3] == 1
    assert tables.parse_run_path("results/train/unet/sigma0.1/ddp2_amp/rep3/record.json") == ("unet", "0.1", "ddp2_amp")
    assert tables.parse_replicate_path("results/train/unet/sigma0.1/gpu1/record.json") == ("unet", "0.1", "gpu1", 1)
    assert tables.parse_replicate_path("results/eval/noisy/sigma0.2/summary.json") == ("noisy", "0.2", "", None)


def test_a_replicate_given_twice_is_refused(three, tmp_path):
    rec = three / "train" / "unet" / "sigma0.1" / "gpu1" / "rep1" / "record.json"
    old = tmp_path / "results" / "train" / "unet" / "sigma0.1" / "gpu1" / "record.json"  # old layout = rep1
    old.parent.mkdir(parents=True)
    old.write_text(rec.read_text())
    with pytest.raises(CxrError, match="a second record"):
        tables.collect_runs(records=[rec, old])


def test_a_record_filed_under_another_replicate_is_refused(three, tmp_path):
    rec = _json(three / "train" / "unet" / "sigma0.1" / "gpu1" / "rep2" / "record.json")
    wrong = tmp_path / "train" / "unet" / "sigma0.1" / "gpu1" / "rep3" / "record.json"
    wrong.parent.mkdir(parents=True)
    wrong.write_text(json.dumps(rec))
    with pytest.raises(CxrError, match="replicate=2 but its path says rep3"):
        tables.collect_runs(records=[wrong])


def test_one_replicate_is_the_run_itself(three):
    records, summaries, _ = _inputs(three, reps=(1,))
    run = tables.collect_runs(records, summaries)[("unet", "0.1", "gpu1")]
    assert run.n_replicates == 1 and run.rep == 1
    assert run.summary == _json(summaries[0])  # unchanged: the per-image interval of the one run


def test_replicates_are_averaged_with_between_run_sd_and_t_interval(three, tmp_path):
    records, summaries, noisy = _inputs(three)
    run = tables.collect_runs(records, summaries)[("unet", "0.1", "dp2")]
    assert run.n_replicates == 3 and [r.rep for r in run.replicates] == [1, 2, 3]
    means = [_json(three / "eval" / "unet" / "sigma0.1" / "dp2" / f"rep{k}" / "summary.json")["metrics"]["psnr"]["mean"]
             for k in (1, 2, 3)]
    sd = statistics.stdev(means)
    half = sps.t.ppf(0.975, 2) * sd / math.sqrt(3)
    psnr = run.summary["metrics"]["psnr"]
    assert psnr["mean"] == pytest.approx(statistics.fmean(means))
    assert (psnr["sd_between_runs"], psnr["ci95_t_halfwidth"]) == (pytest.approx(sd), pytest.approx(half))
    assert psnr["interval"] == "t over runs" and psnr["per_run"] == pytest.approx(means)

    t4 = tables.build_table4(records, summaries, "synthetic", noisy=noisy)
    row = _row(t4.data, model="unet", setup="dp2")
    assert row["n_runs"] == 3 and row["psnr"] == pytest.approx(statistics.fmean(means))
    assert row["psnr_sd_runs"] == pytest.approx(sd) and row["psnr_ci95_runs"] == pytest.approx(half)
    assert row["psnr_ci95"] == pytest.approx(half)  # the interval shown is over runs, not images
    # the mean time over the replicates, and steps/images from the records
    secs = [sum(e["train_s"] for e in _json(p)["epochs"]) for p in records if "/unet/" in str(p) and "/dp2/" in str(p)]
    assert row["train_s"] == pytest.approx(statistics.fmean(secs))
    assert (row["optimizer_steps"], row["images_seen"]) == (12, 384)
    write_table(t4, tmp_path / "table4")
    md = (tmp_path / "table4.md").read_text()
    assert "mean over 3 training runs" in md and "PSNR SD (runs)" in md


def test_per_image_hook_takes_every_replicate(three):
    kw = dict(sigmas=SIGMA, setups=("gpu1",), reps=(1, 2, 3))
    run = tables.collect_runs(summaries=paths(three, "summary", **kw),
                              per_image=paths(three, "per_image", **kw))[("unet", "0.1", "gpu1")]
    frame = tables.per_image_frame(run)
    assert sorted(frame["replicate"].unique()) == [1, 2, 3] and len(frame) == 3 * 12
    means = tables.per_image_means(run)
    assert len(means) == 12 and "patient_id" in means.columns
    first = frame[frame["image_id"] == means["image_id"].iloc[0]]["psnr"].mean()
    assert means["psnr"].iloc[0] == pytest.approx(first)


def test_table5_compares_setups_run_by_run(three):
    records, summaries, noisy = _inputs(three)
    t5 = tables.build_table5(records, summaries, "synthetic", noisy=noisy)
    row = _row(t5.data, model="unet", setup="dp2")

    def tv(setup, k):
        tot = _json(three / "train" / "unet" / "sigma0.1" / setup / f"rep{k}" / "record.json")["totals"]
        return tot["train_plus_val_s"]

    pairs = [(tv("gpu1", k) - tv("dp2", k)) / tv("gpu1", k) * 100 for k in (1, 2, 3)]
    assert row["pairs_compared"] == "rep1 rep2 rep3"
    assert row["time_saving_pct"] == pytest.approx(statistics.fmean(pairs))
    assert row["time_saving_sd_pct"] == pytest.approx(statistics.stdev(pairs))
    assert (row["optimizer_steps"], _row(t5.data, model="unet", setup="gpu1")["optimizer_steps"]) == (12, 24)
    # fixture: dp2 learns 10 % slower than gpu1 over 3 epochs, so it never reaches gpu1's best val loss
    assert row["ttq_reached"] == "0/3" and math.isnan(row["ttq_s"])
    # ... but it is not dropped: censored at its total time, it bounds the mean saving from above
    bound = statistics.fmean((tv("gpu1", k) - tv("dp2", k)) / tv("gpu1", k) * 100 for k in (1, 2, 3))
    assert math.isnan(row["ttq_saving_pct"]) and row["ttq_saving_hi_pct"] == pytest.approx(bound)
    assert math.isinf(row["ttq_saving_lo_pct"])
    gpu1 = _row(t5.data, model="unet", setup="gpu1")
    assert gpu1["ttq_reached"] == "3/3" and gpu1["ttq_epoch"] == 3 and gpu1["ttq_saving_pct"] == pytest.approx(0)
    shown = t5.display[0][1]
    dp2_cells = shown[(shown["model"] == "U-Net") & (shown["setup"] == "dp2")]
    assert (dp2_cells["TTQ s"] == work.NOT_REACHED).all()
    assert dp2_cells["TTQ saving %"].iloc[0].startswith(f"≤ {bound:.2f}") and "3 censored" in dp2_cells["TTQ saving %"].iloc[0]


# ------------------------------------------------------------------------------------------- the flag

@pytest.fixture(scope="module")
def flagged(tmp_path_factory):
    return write_results_tree(tmp_path_factory.mktemp("flag"), sigmas=SIGMA, setups=SETUPS,
                              not_denoising=(("unet", "dp2"),))


def test_a_run_that_did_not_denoise_is_flagged_and_gets_no_time_saving(flagged, tmp_path):
    records, summaries, noisy = _inputs(flagged, reps=(1,))
    t4 = tables.build_table4(records, summaries, "synthetic", noisy=noisy)
    assert bool(_row(t4.data, model="unet", setup="dp2")["did_not_denoise"]) is True
    assert not any(bool(_row(t4.data, model=m, setup=s)["did_not_denoise"])
                   for m in ("unet", "unetpp") for s in SETUPS if (m, s) != ("unet", "dp2"))
    t5 = tables.build_table5(records, summaries, "synthetic", noisy=noisy)
    bad = _row(t5.data, model="unet", setup="dp2")
    assert bool(bad["did_not_denoise"]) and math.isnan(bad["time_saving_pct"]) and math.isnan(bad["ttq_s"])
    assert not math.isnan(_row(t5.data, model="unet", setup="ddp2_amp")["time_saving_pct"])
    shown = t5.display[0][1]
    cell = shown[(shown["model"] == "U-Net") & (shown["setup"] == "dp2")]["TS % (train+val)"].iloc[0]
    assert cell == f"— ({NOT_DENOISED})"
    t3 = tables.build_table3(paths(flagged, "summary", sigmas=SIGMA, setups=("dp2",)),
                             paths(flagged, "per_image", sigmas=SIGMA, setups=("dp2",)), noisy)
    assert NOT_DENOISED in _row(t3.data, model="unet", setup="dp2")["notes"]
    t6 = tables.build_table6(paths(flagged, "summary", sigmas=SIGMA, setups=("dp2",)), noisy=noisy)
    assert any(NOT_DENOISED in str(v) for v in t6.display[0][1]["PSNR dB"])
    for name, table in (("table4", t4), ("table5", t5)):
        write_table(table, tmp_path / name)
        assert NOT_DENOISED in (tmp_path / f"{name}.md").read_text()
    # without the no-denoising summaries nothing can be decided: not flagged, and said so
    plain = tables.build_table4(records, summaries, "synthetic")
    assert plain.data["did_not_denoise"].isna().all()


def test_figures_mark_the_run_that_did_not_denoise(flagged, tmp_path):
    records, summaries, noisy = _inputs(flagged, reps=(1,))
    flags = figures._flags(records, summaries, noisy)
    assert flags[("unet", "0.1", "dp2")] is True and sum(flags.values()) == 1
    written = figures.figure4(records, tmp_path / "figure4", summaries=summaries, noisy=noisy)
    written += figures.training_curves(records, tmp_path / "curves", summaries=summaries, noisy=noisy)
    assert all(p.stat().st_size > 1000 for p in written)


# ------------------------------------------------------------------------------------------- time-to-quality

def test_time_to_quality_on_a_hand_made_epoch_list():
    epochs = [{"epoch": 1, "val_loss": 0.30, "train_s": 10.0, "val_s": 1.0, "steps": 5, "train_images": 20},
              {"epoch": 2, "val_loss": 0.12, "train_s": 9.0, "val_s": 1.0, "steps": 5, "train_images": 20},
              {"epoch": 3, "val_loss": 0.10, "train_s": 9.0, "val_s": 1.0, "steps": 5, "train_images": 20},
              {"epoch": 4, "val_loss": 0.11, "train_s": 9.0, "val_s": 1.0, "steps": 5, "train_images": 20}]
    assert work.time_to_quality(epochs, 0.12) == {"epoch": 2, "seconds": 21.0, "steps": 10, "images": 40}
    assert work.time_to_quality(epochs, 0.10)["seconds"] == 31.0  # reached exactly counts
    assert work.time_to_quality(epochs, 0.05) is None  # never reached
    assert work.time_to_quality(epochs, math.nan) is None


# ------------------------------------------------------------------------------------------- settings

def test_replicate_seeds_are_derived_recorded_and_change_only_the_init():
    assert init_seed(7, 1) == 7  # one replicate = the study's single run, same bytes as before
    assert init_seed(7, 2) == init_seed(7, 2) != init_seed(7, 3) != 7
    assert 0 <= init_seed(7, 2) < 2**63
    a, b = TrainSettings("unet", "gpu1", "0.1", seed=7), TrainSettings("unet", "gpu1", "0.1", seed=7, replicate=2)
    assert (a.init_seed, b.init_seed) == (7, init_seed(7, 2)) and a.fingerprint() != b.fingerprint()
    assert replicate_count({"train": {}}) == 1 and replicate_count({"train": {"replicates": 3}}) == 3
    with pytest.raises(CxrError, match="train.replicates must be an integer >= 1"):
        replicate_count({"train": {"replicates": 0}})
    with pytest.raises(CxrError, match="replicate must be an integer >= 1"):
        TrainSettings("unet", "gpu1", "0.1", replicate=0)


def test_replicate_caption_says_what_the_interval_is_over(three):
    records, summaries, _ = _inputs(three)
    assert "over test images" in reps_mod.replicate_caption(tables.collect_runs(records[:1], summaries[:1]).values())
    assert "t-interval over the runs" in reps_mod.replicate_caption(tables.collect_runs(records, summaries).values())


# ------------------------------------------------------------------------------------------- tiny real training

def _train(out, setup="gpu1", **over):
    import torch

    from cxrdenoise.train.distributed import single_process
    from cxrdenoise.train.engine import run_training
    from test_train_helpers import TinyPairs, settings, tiny_factory

    torch.set_num_threads(1)
    seen = {}
    record = run_training(settings(setup, **over), TinyPairs(12), TinyPairs(4, seed=1), out, single_process("cpu"),
                          model_factory=tiny_factory, config_hash="abc",
                          on_epoch_end=lambda epoch, info: seen.setdefault(epoch, info["rank_indices"]))
    return record, seen


def test_records_carry_steps_and_images_seen_and_replicates_differ_in_init_and_order(tmp_path):
    import csv

    import torch

    one, order1 = _train(tmp_path / "rep1", epochs=2)
    assert one["totals"]["optimizer_steps"] == 6 and one["totals"]["images_seen"] == 24  # 12 images, batch 4
    assert [e["steps"] for e in one["epochs"]] == [3, 3] and [e["train_images"] for e in one["epochs"]] == [12, 12]
    with open(tmp_path / "rep1" / "epochs.csv") as fh:
        assert [r["steps"] for r in csv.DictReader(fh)] == ["3", "3"]
    assert (one["replicate"], one["init_seed"], one["seed"]) == (1, 11, 11)
    dp2, _ = _train(tmp_path / "dp2", setup="dp2", epochs=2)  # global batch 8: half the steps, same images
    assert dp2["totals"]["optimizer_steps"] == 4 and dp2["totals"]["images_seen"] == 24

    two, order2 = _train(tmp_path / "rep2", epochs=2, replicate=2)
    assert (two["replicate"], two["init_seed"]) == (2, init_seed(11, 2))
    flat = lambda ranks: sorted(i for rank in ranks for i in rank)  # noqa: E731 (every rank's indices of an epoch)
    assert all(a != b and flat(a) == flat(b) for a, b in zip(order1.values(), order2.values()))  # other order ...
    w1 = torch.load(tmp_path / "rep1" / "best.pt", weights_only=True)["state_dict"]
    w2 = torch.load(tmp_path / "rep2" / "best.pt", weights_only=True)["state_dict"]
    assert any(not torch.equal(w1[k], w2[k]) for k in w1)  # ... from other initial weights
    again, _ = _train(tmp_path / "rep2-again", epochs=2, replicate=2)
    assert [e["val_loss"] for e in again["epochs"]] == [e["val_loss"] for e in two["epochs"]]  # deterministic


def test_table3_with_replicates_pairs_per_image_means_and_says_what_its_interval_is_over(three):
    kw = dict(sigmas=SIGMA, setups=("gpu1",), reps=(1, 2, 3))
    t3 = tables.build_table3(paths(three, "summary", **kw), paths(three, "per_image", **kw),
                             noisy_paths(three, sigmas=SIGMA), paths(three, "record", **kw))
    assert any("over the training runs for the trained rows" in c for c in t3.caption)
    runs = tables.collect_runs(summaries=paths(three, "summary", **kw), per_image=paths(three, "per_image", **kw))
    a, b = (tables.per_image_means(runs[(m, "0.1", "gpu1")]) for m in ("unet", "unetpp"))
    diff = (a.set_index("image_id")["psnr"] - b.set_index("image_id")["psnr"]).to_numpy()
    row = _row(t3.data, model="unet", setup="gpu1")
    assert row["paired_n_psnr"] == 12 and row["p_t_psnr"] == pytest.approx(sps.ttest_1samp(diff, 0).pvalue)
