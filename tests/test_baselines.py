"""The classical baselines' stage (cxrdenoise.baselines, rules classical_shard / classical_merge), Table VI's
classical rows and the PSNR-against-sigma figure, on real (phantom) shards run through the real stage."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pandas as pd
import pytest

from cxrdenoise import baselines, figures, tables
from cxrdenoise.classical import denoise
from cxrdenoise.cli import main as cli_main
from cxrdenoise.data import PairDataset
from cxrdenoise.errors import CxrError
from cxrdenoise.evaluate import evaluate_noisy
from cxrdenoise.metrics import image_metrics
from cxrdenoise.render import write_table
from fixtures.results_tree import noisy_paths, paths, write_classical, write_results_tree


SEED = 2025  # the config seed the subset tests draw with
SUBSET_SIGMAS = ("0.1", "0.2")


def _on_test_images(results, data_dir) -> None:
    """Re-label the fixture tree's per-image scores (models and noisy input) with the tiny data's test image and
    patient ids, so its rows score the same images as the real classical stage (the scores stay invented)."""
    test = PairDataset(data_dir, "test", 0.1)
    ids, pats = [str(i) for i in test.image_ids], [str(p) for p in test.patient_ids]
    for csv in (results / "eval").rglob("per_image.csv"):
        frame = pd.read_csv(csv)
        assert len(frame) == len(ids)  # write_results_tree(n_images=len(test))
        frame["image_id"], frame["patient_id"] = ids, pats
        frame.to_csv(csv, index=False, na_rep="NaN")
        summary = json.loads(csv.with_name("summary.json").read_text())
        summary["n_patients"] = len(set(pats))
        csv.with_name("summary.json").write_text(json.dumps(summary))


def _stage(results, data_dir, method: str, sigma: str, max_images: int | None, seed: int | None = SEED,
           n_shards: int = 3):
    """The classical stage as the rules run it (every shard job, then the merge), with the config seed."""
    folder = results / "classical" / method / f"sigma{sigma}"
    shards = [folder / f"shard_{k:05d}" for k in range(n_shards)]
    for k, shard in enumerate(shards):
        baselines.evaluate_classical_shard(method, sigma, k, shard, data_dir=data_dir, max_images=max_images,
                                           seed=seed, lpips_enabled=False, progress=False)
    baselines.merge_shards(shards, folder, method, sigma)
    return folder


@pytest.fixture(scope="module")
def classical_tree(tiny_data_dir, tmp_path_factory):
    """A fixture results tree (models, noisy input) on the tiny data's test images plus the real classical stage's
    results on the tiny shards: TV and Gaussian measured, BM3D made to take the skip path."""
    root = tmp_path_factory.mktemp("classical")
    n_test = len(PairDataset(tiny_data_dir, "test", 0.1))
    results = write_results_tree(root, setups=("gpu1",), sigmas=("0.2", "0.3"), n_images=n_test)
    _on_test_images(results, tiny_data_dir)
    summaries = write_classical(results, tiny_data_dir, methods=("bm3d", "tv", "gaussian"), sigmas=("0.1", "0.2"),
                                skipped=("bm3d",))
    return results, summaries


@pytest.fixture(scope="module")
def subset_tree(tiny_data_dir, tmp_path_factory):
    """The same, with the classical methods (TV, Gaussian) limited to 3 of the 5 test images (baselines.max_images:
    3) at σ 0.1 and 0.2. Returns the results folder and the σ 0.2 classical folders."""
    root = tmp_path_factory.mktemp("subset")
    n_test = len(PairDataset(tiny_data_dir, "test", 0.1))
    results = write_results_tree(root, setups=("gpu1",), sigmas=SUBSET_SIGMAS, n_images=n_test)
    _on_test_images(results, tiny_data_dir)
    folders = {s: [_stage(results, tiny_data_dir, m, s, 3) for m in ("tv", "gaussian")] for s in SUBSET_SIGMAS}
    return results, folders["0.2"]


def test_merged_shards_are_the_whole_test_split_scored_like_a_model(classical_tree, tiny_data_dir, tmp_path):
    results, _ = classical_tree
    folder = results / "classical" / "tv" / "sigma0.1"
    test = PairDataset(tiny_data_dir, "test", 0.1)
    merged = pd.read_csv(folder / "per_image.csv", dtype={"image_id": str, "patient_id": str})
    assert list(merged["image_id"]) == [str(i) for i in test.image_ids]  # every test image once, dataset order
    assert list(merged["patient_id"]) == [str(p) for p in test.patient_ids]
    assert list(merged.columns[:7]) == ["image_id", "patient_id", "psnr", "ssim", "ssim_w3", "lpips", "inference_ms"]
    # the scores are the classical method's own, through the evaluation's metric code
    noisy, clean = test[0]
    expect = image_metrics(denoise("tv", noisy.numpy()[0], 0.1, 0.1), clean.numpy()[0])["psnr"]
    assert merged["psnr"].iloc[0] == pytest.approx(expect, abs=1e-4)
    assert (merged["inference_ms"] > 0).all()
    s = json.loads((folder / "summary.json").read_text())
    assert s["kind"] == "classical" and s["model"] == "tv" and s["mean_handling"] == "invert"
    assert s["n_images"] == len(test) and s["n_patients"] == len(set(test.patient_ids))
    assert s["metrics"]["psnr"]["mean"] == pytest.approx(merged["psnr"].mean())
    assert s["inference"]["device"] == "cpu" and s["inference"]["timed"] and "thread" in s["inference"]["definition"]
    assert s["provenance"]["git_commit"] is not None or "git_commit" in s["provenance"]
    # and it denoises: above the noisy input on the same images
    base = evaluate_noisy(0.1, tmp_path / "noisy", data_dir=tiny_data_dir, device="cpu", lpips_enabled=False,
                          progress=False, figure_images=1)
    assert s["metrics"]["psnr"]["mean"] > base["metrics"]["psnr"]["mean"] + 1.0


def test_max_images_draws_round_robin_across_patients_and_empty_shards_say_so(tiny_data_dir, tmp_path):
    test = PairDataset(tiny_data_dir, "test", 0.2)
    patients = {str(i): str(p) for i, p in zip(test.image_ids, test.patient_ids)}
    n_patients = len(set(patients.values()))
    assert len(test) > n_patients  # some patient has two test images: the first N would not span the patients
    folder = _stage(tmp_path, tiny_data_dir, "gaussian", "0.2", n_patients)
    merged = pd.read_csv(folder / "per_image.csv", dtype={"image_id": str, "patient_id": str})
    assert sorted(merged["patient_id"]) == sorted(set(patients.values()))  # every patient exactly once
    assert [patients[i] for i in merged["image_id"]] == list(merged["patient_id"])
    order = [str(i) for i in test.image_ids]
    assert list(merged["image_id"]) == sorted(merged["image_id"], key=order.index)  # dataset order
    shard_summaries = [json.loads((folder / f"shard_{k:05d}" / "summary.json").read_text()) for k in range(3)]
    assert sum(s["n_images"] for s in shard_summaries) == n_patients
    assert any(s.get("empty") for s in shard_summaries)  # shard 0 holds no test image
    s = json.loads((folder / "summary.json").read_text())
    assert s["max_images"] == n_patients and s["n_images"] == s["n_patients"] == n_patients
    sub = s["subset"]  # the seed and the chosen ids are recorded, the same in every shard's summary
    assert sub["seed"] == SEED and sub["image_ids"] == list(merged["image_id"]) and sub["n_test_images"] == len(test)
    assert "round-robin across patients" in sub["selection"]
    assert all(x["subset"] == sub for x in shard_summaries)
    with pytest.raises(CxrError, match="max_images"):
        baselines.shard_positions(tiny_data_dir, 0, 0, SEED)
    with pytest.raises(CxrError, match="needs the config seed"):
        baselines.classical_subset(tiny_data_dir, 2, None)
    # the whole split needs no seed and keeps dataset order
    assert baselines.classical_subset(tiny_data_dir, None, None)["image_ids"] == order


def _patients_of(picked, patient_ids):
    return [patient_ids[i] for i in picked]


def test_round_robin_spans_the_patients_before_repeating_one():
    """The finding's shape: one patient with 30 images among 9 with 1-3, listed first in dataset order."""
    patient_ids = ["p0"] * 30 + [f"p{k}" for k in range(1, 10) for _ in range(1 + k % 3)]
    image_ids = [f"img{i:03d}" for i in range(len(patient_ids))]
    for n in (10, 17, 25):
        picked = baselines.round_robin(image_ids, patient_ids, n, SEED)
        assert len(picked) == len(set(picked)) == n
        counts = pd.Series(_patients_of(picked, patient_ids)).value_counts()
        assert len(counts) == 10  # every patient appears ...
        full = {p for p in counts.index if counts[p] < patient_ids.count(p)}  # ... and patients not yet exhausted
        assert counts[list(full)].max() - counts[list(full)].min() <= 1  # differ by at most one image
    ten = baselines.round_robin(image_ids, patient_ids, 10, SEED)
    assert sorted(_patients_of(ten, patient_ids)) == sorted(set(patient_ids))  # max_images = patients: one each
    assert baselines.round_robin(image_ids, patient_ids, 17, SEED)[:10] == ten  # a larger N keeps a smaller N's
    first_n = list(range(10))  # what the old first-N rule took: 10 images of patient p0
    assert set(_patients_of(first_n, patient_ids)) == {"p0"}


def test_round_robin_is_seeded_and_independent_of_dataset_order():
    rng = np.random.default_rng(0)
    patient_ids = [f"p{k}" for k in rng.integers(0, 12, 60)]
    image_ids = [f"img{i:03d}" for i in range(60)]
    pick = lambda seed, ids=image_ids, pats=patient_ids, n=20: {  # noqa: E731
        ids[i] for i in baselines.round_robin(ids, pats, n, seed)}
    assert pick(SEED) == pick(SEED)  # deterministic for a seed
    assert pick(SEED) != pick(SEED + 1)  # another seed, another subset
    perm = rng.permutation(60)  # another shard layout / dataset order: the same images
    assert pick(SEED, [image_ids[i] for i in perm], [patient_ids[i] for i in perm]) == pick(SEED)
    assert len(pick(SEED, n=100)) == 60  # more than there are: all of them


def test_every_job_draws_the_same_subset_and_a_merge_refuses_another(tiny_data_dir, tmp_path):
    """Shard, method and sigma jobs compute the subset from the clean manifest alone (no torch) and agree; a shard
    written with another seed cannot be merged with the others."""
    import subprocess
    import sys

    code = ("import sys, json; from cxrdenoise import baselines; "
            f"s = baselines.classical_subset({str(tiny_data_dir)!r}, 3, {SEED}); "
            "print(json.dumps(s['image_ids'])); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    assert json.loads(out[0]) == baselines.classical_subset(tiny_data_dir, 3, SEED)["image_ids"]
    assert out[1] == "False"  # cheap: no torch import
    ids = {s: baselines.classical_subset(tiny_data_dir, 3, s)["image_ids"] for s in range(SEED, SEED + 20)}
    assert len({tuple(v) for v in ids.values()}) > 1  # the seed changes the subset on the real tiny split too
    a = _stage(tmp_path / "a", tiny_data_dir, "tv", "0.1", 3)
    b = _stage(tmp_path / "b", tiny_data_dir, "gaussian", "0.2", 3)
    sub_a = json.loads((a / "summary.json").read_text())["subset"]
    assert sub_a == json.loads((b / "summary.json").read_text())["subset"]  # same images for every method and σ
    other = next(s for s in ids if ids[s] != ids[SEED])
    mixed = tmp_path / "c" / "classical" / "tv" / "sigma0.1"
    shards = [mixed / f"shard_{k:05d}" for k in range(3)]
    for k, shard in enumerate(shards):
        baselines.evaluate_classical_shard("tv", "0.1", k, shard, data_dir=tiny_data_dir, max_images=3,
                                           seed=SEED if k < 2 else other, lpips_enabled=False, progress=False)
    with pytest.raises(CxrError, match="another image subset"):
        baselines.merge_shards(shards, mixed, "tv", "0.1")


def test_skipped_method_is_a_result_not_a_failure(classical_tree):
    results, _ = classical_tree
    folder = results / "classical" / "bm3d" / "sigma0.2"
    s = json.loads((folder / "summary.json").read_text())
    assert s["n_images"] == 0 and "not installed" in s["skipped"]
    assert pd.read_csv(folder / "per_image.csv").empty


def test_merge_refuses_another_methods_shard(classical_tree, tmp_path):
    results, _ = classical_tree
    shard = results / "classical" / "tv" / "sigma0.1" / "shard_00000"
    with pytest.raises(CxrError, match="expected classical gaussian"):
        baselines.merge_shards([shard], tmp_path, "gaussian", "0.1")


def test_classical_command_runs_one_shard(tiny_data_dir, tmp_path, capsys):
    positions = [baselines.shard_positions(tiny_data_dir, k, None, SEED) for k in range(3)]
    shard = next(k for k, p in enumerate(positions) if p)
    out = tmp_path / "nlm"
    assert cli_main(["classical", "shard", "--method", "nlm", "--sigma", "0.2", "--shard", str(shard),
                     "--data-dir", str(tiny_data_dir), "--out-dir", str(out), "--threads", "2", "--no-lpips",
                     "--no-progress", "--max-images", "all", "--seed", str(SEED), "--mean-handling", "invert",
                     "--batch-size", "4"]) == 0
    assert "PSNR" in capsys.readouterr().out
    s = json.loads((out / "summary.json").read_text())
    assert s["n_images"] == len(positions[shard]) and s["threads"] == 2
    assert s["method_parameter"] == {"name": "h", "value": pytest.approx(0.16), "strength": 1.0}


def test_table6_classical_rows_with_patient_intervals_and_seconds(classical_tree, tmp_path):
    results, _ = classical_tree
    t6s = dict(sigmas=("0.2", "0.3"), setups=("gpu1",))
    chosen = [results / "classical" / m / "sigma0.2" / "summary.json" for m in ("bm3d", "tv", "gaussian")]
    table = tables.build_table6(paths(results, "summary", **t6s), paths(results, "record", **t6s),
                                noisy=noisy_paths(results, sigmas=("0.2", "0.3")),
                                per_image=paths(results, "per_image", **t6s), classical=chosen,
                                classical_per_image=[p.with_name("per_image.csv") for p in chosen[1:]],
                                resamples=300, seed=5)
    write_table(table, tmp_path / "table6")
    t6 = pd.read_csv(tmp_path / "table6.csv")
    assert len(t6[t6["source"].str.startswith("quoted")]) == 6  # the quoted rows stay, labelled
    for label in ("TV (Chambolle)", "Gaussian filter"):
        row = t6[t6["method"] == label]
        assert len(row) == 1, label  # only sigma 0.2 was chosen, although sigma 0.1 sits on disk
        row = row.iloc[0]
        assert row["source"].startswith("measured (this pipeline, classical")
        assert row["psnr_ci95_patient_lo"] <= row["psnr"] <= row["psnr_ci95_patient_hi"]
        assert row["s_per_image"] > 0 and row["device"].startswith("cpu")
    bm3d = t6[t6["method"] == "BM3D"]
    skipped = bm3d[~bm3d["source"].str.startswith("quoted")].iloc[0]
    assert "skipped" in skipped["source"] and "not installed" in skipped["notes"] and math.isnan(skipped["psnr"])
    unet = t6[(t6["method"] == "U-Net") & (t6["noise"].str.startswith("σ=0.2"))].iloc[0]
    assert unet["psnr_ci95_patient_lo"] < unet["psnr_ci95_patient_hi"]  # model rows get the same interval
    md = (tmp_path / "table6.md").read_text()
    assert "TV (Chambolle) (classical)" in md and "PSNR 95 % CI (patients)" in md and "s/image" in md
    assert "patients" in md and "mean invert" in md and "σ=0.2 of 1, mean 0.1" in md
    assert "not installed" in md  # the skip note is carried into the table
    # every measured row at a σ, the no-denoising row included, on the same (here: all 5) test images
    measured = t6[t6["source"].str.startswith("measured")]
    assert set(measured[measured["noise"].str.startswith("σ=0.2")]["method"]) == {
        "no denoising", "U-Net", "U-Net++", "TV (Chambolle)", "Gaussian filter"}
    assert (measured["n_images"] == 5).all() and (measured["n_patients"] == 3).all()
    assert "classical methods scored every test image" in md and "5 test images of 3 patients at every σ" in md


def _measured(t6: pd.DataFrame) -> pd.DataFrame:
    return t6[t6["source"].str.startswith("measured")]


def test_table6_puts_the_models_on_the_classical_subset(subset_tree, tmp_path):
    """baselines.max_images: 3 of the 5 test images; the models' and the noisy input's rows are recomputed on
    exactly those 3 (matched by image id), so every measured row at every σ has the same n."""
    results, folders = subset_tree
    t6s = dict(sigmas=SUBSET_SIGMAS, setups=("gpu1",))
    classical = [results / "classical" / m / f"sigma{s}" for s in SUBSET_SIGMAS for m in ("tv", "gaussian")]
    table = tables.build_table6(paths(results, "summary", **t6s), paths(results, "record", **t6s),
                                noisy=noisy_paths(results, sigmas=SUBSET_SIGMAS),
                                per_image=paths(results, "per_image", **t6s)
                                + noisy_paths(results, "per_image", sigmas=SUBSET_SIGMAS),
                                classical=[f / "summary.json" for f in classical],
                                classical_per_image=[f / "per_image.csv" for f in classical], resamples=200, seed=SEED)
    write_table(table, tmp_path / "table6")
    t6 = _measured(pd.read_csv(tmp_path / "table6.csv"))
    chosen = set(chosen_ids(folders[0]))
    assert len(chosen) == 3
    for sigma in SUBSET_SIGMAS:
        rows = t6[t6["noise"].str.startswith(f"σ={sigma} ")]
        assert set(rows["method"]) == {"no denoising", "U-Net", "U-Net++", "TV (Chambolle)", "Gaussian filter"}
        assert (rows["n_images"] == 3).all() and (rows["n_patients"] == 3).all(), sigma
        for f in (results / "classical" / m / f"sigma{sigma}" for m in ("tv", "gaussian")):
            assert set(pd.read_csv(f / "per_image.csv", dtype={"image_id": str})["image_id"]) == chosen
        for model, per_image in (("U-Net", paths(results, "per_image", models=("unet",), sigmas=(sigma,),
                                                 setups=("gpu1",))[0]),
                                 ("no denoising", noisy_paths(results, "per_image", sigmas=(sigma,))[0])):
            scores = pd.read_csv(per_image, dtype={"image_id": str})
            row = rows[rows["method"] == model].iloc[0]
            assert row["psnr"] == pytest.approx(scores[scores["image_id"].isin(chosen)]["psnr"].mean())
            assert row["psnr"] != pytest.approx(scores["psnr"].mean())  # not the whole-split mean
            assert "n=3" in row["source"]
    md = (tmp_path / "table6.md").read_text()
    assert "3 test images of 3 patients at every σ" in md
    assert "scored 3 of the 5 test images (baselines.max_images: 3)" in md and f"seed {SEED} = the config" in md
    assert "round-robin across patients" in md and "covering 3 of the 3 test patients" in md


def test_table6_restricts_each_replicate_to_the_subset(subset_tree, tiny_data_dir, tmp_path):
    """train.replicates: 2: each replicate is restricted to the subset, then averaged as any row is."""
    _, folders = subset_tree
    n_test = len(PairDataset(tiny_data_dir, "test", 0.1))
    results = write_results_tree(tmp_path, models=("unet",), setups=("gpu1",), sigmas=("0.2",), n_images=n_test,
                                 replicates=2)
    _on_test_images(results, tiny_data_dir)
    t6s = dict(models=("unet",), sigmas=("0.2",), setups=("gpu1",), reps=(1, 2))
    table = tables.build_table6(paths(results, "summary", **t6s), per_image=paths(results, "per_image", **t6s),
                                classical=[f / "summary.json" for f in folders],
                                classical_per_image=[f / "per_image.csv" for f in folders], resamples=100, seed=1)
    chosen = set(chosen_ids(folders[0]))
    frames = [pd.read_csv(p, dtype={"image_id": str}) for p in paths(results, "per_image", **t6s)]
    means = [f[f["image_id"].isin(chosen)]["psnr"].mean() for f in frames]
    row = table.data[table.data["method"] == "U-Net"].iloc[0]
    assert row["psnr"] == pytest.approx(sum(means) / 2) and row["n_images"] == 3


def test_table6_refuses_rows_on_different_images(classical_tree, subset_tree, tiny_data_dir, tmp_path):
    """A model scored on other images than the classical rows: one line naming both files. A model whose
    per-image scores are not given cannot be put on the classical subset: one line naming it."""
    results, _ = classical_tree
    other = write_results_tree(tmp_path, setups=("gpu1",), sigmas=("0.2",))  # 12 invented ids, not the test split
    t6s = dict(sigmas=("0.2",), setups=("gpu1",))
    tv = results / "classical" / "tv" / "sigma0.2"
    with pytest.raises(CxrError) as err:
        tables.build_table6(paths(other, "summary", **t6s), per_image=paths(other, "per_image", **t6s),
                            classical=[tv / "summary.json"], classical_per_image=[tv / "per_image.csv"])
    msg = str(err.value)
    assert "\n" not in msg and "score different test images" in msg and "σ=0.2" in msg
    assert str(tv / "per_image.csv") in msg and str(paths(other, "per_image", **t6s)[0]) in msg
    sub, folders = subset_tree
    with pytest.raises(CxrError, match="per_image.csv, needed to put every row on the same images, was not given") \
            as err:
        tables.build_table6(paths(sub, "summary", **t6s), classical=[folders[0] / "summary.json"],
                            classical_per_image=[folders[0] / "per_image.csv"])
    assert str(paths(sub, "summary", **t6s)[0]) in str(err.value)
    # two classical results at one σ on different subsets (one drawn with another seed)
    other_seed = next(k for k in range(SEED + 1, SEED + 50)
                      if baselines.classical_subset(tiny_data_dir, 3, k)["image_ids"] != chosen_ids(folders[1]))
    tv_other = _stage(tmp_path / "seed", tiny_data_dir, "tv", "0.2", 3, seed=other_seed)
    with pytest.raises(CxrError, match="score different test images") as err:
        tables.build_table6([], classical=[tv_other / "summary.json", folders[1] / "summary.json"],
                            classical_per_image=[tv_other / "per_image.csv", folders[1] / "per_image.csv"])
    assert str(tv_other / "per_image.csv") in str(err.value) and str(folders[1] / "per_image.csv") in str(err.value)


def chosen_ids(folder) -> list[str]:
    return json.loads((folder / "summary.json").read_text())["subset"]["image_ids"]


def test_psnr_sigma_figure(classical_tree, tmp_path):
    results, summaries = classical_tree
    written = figures.psnr_vs_sigma(summaries, tmp_path / "psnr_sigma",
                                    summaries=paths(results, "summary", sigmas=("0.2", "0.3"), setups=("gpu1",)),
                                    noisy=noisy_paths(results, sigmas=("0.2", "0.3")), data_source="synthetic")
    assert [p.suffix for p in written] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in written)
    with pytest.raises(CxrError, match="nothing|no measured"):
        figures.psnr_vs_sigma([s for s in summaries if "bm3d" in str(s)], tmp_path / "none")
    models = [r for r in tables.collect_runs(summaries=paths(results, "summary", sigmas=("0.2",), setups=("gpu1",)))
              .values()]
    label = figures.psnr_sigma_images(list(tables.collect_runs(summaries=summaries).values()), models)
    assert label == ("classical: 5 test images of 3 patients\n"
                     "models and no denoising: 5 test images of 3 patients (their whole test split)")


def test_psnr_sigma_figure_names_the_classical_subset(subset_tree, tmp_path):
    results, folders = subset_tree
    classical = [f / "summary.json" for f in folders]
    cls = list(tables.collect_runs(summaries=classical).values())
    models = list(tables.collect_runs(summaries=paths(results, "summary", sigmas=("0.2",), setups=("gpu1",))
                                      + noisy_paths(results, sigmas=("0.2",))).values())
    label = figures.psnr_sigma_images(cls, models)
    assert label == ("classical: 3 test images of 3 patients, drawn round-robin across patients from the 5 test "
                     f"images (baselines.max_images 3, seed {SEED})\n"
                     "models and no denoising: 5 test images of 3 patients (their whole test split)")
    written = figures.psnr_vs_sigma(classical, tmp_path / "psnr_sigma",
                                    summaries=paths(results, "summary", sigmas=("0.2",), setups=("gpu1",)),
                                    noisy=noisy_paths(results, sigmas=("0.2",)), data_source="synthetic")
    assert all(p.stat().st_size > 1000 for p in written)


def test_denoiser_threads_give_the_same_images(tiny_data_dir):
    import torch

    batch = torch.stack([PairDataset(tiny_data_dir, "test", 0.2)[i][0] for i in range(2)])
    one = baselines.ClassicalDenoiser("tv", 0.2, 0.1, threads=1)(batch)
    two = baselines.ClassicalDenoiser("tv", 0.2, 0.1, threads=2)(batch)
    assert one.shape == batch.shape and torch.equal(one, two)
    assert not np.allclose(one.numpy(), batch.numpy())


def test_table6_plans_the_configured_methods_only(tmp_path):
    from snakemake_run import REPO, snakemake
    from test_workflow import planned_jobs

    override = tmp_path / "two.yaml"
    override.write_text("baselines: {methods: [tv, gaussian]}\n")
    result = snakemake(tmp_path, "-n", "--cores", "2", "--configfile", str(REPO / "config" / "demo.yaml"),
                       str(override), "--", "results/tables/table6.csv")
    assert result.returncode == 0, result.stderr[-2000:]
    jobs = planned_jobs(result.stdout)
    assert jobs["classical_merge"] == 2 * 2  # (tv, gaussian) x Table VI's sigmas 0.2 and 0.3
    import yaml

    demo = yaml.safe_load((REPO / "config" / "demo.yaml").read_text())
    shards = -(-demo["sample"]["n_images"] // demo["shards"]["images_per_shard"])
    assert jobs["classical_shard"] == 2 * 2 * shards  # ... x the demo's shards
    assert set(re.findall(r"wildcards: method=(\w+)", result.stdout)) == {"tv", "gaussian"}


@pytest.mark.parametrize("label", ["0.0588235", "0.0980392"])
def test_literature_shards_are_zero_mean_with_the_right_sigma(tiny_data_dir, tmp_path, label):
    """The literature's setting comes from the same noise stage with the mean config gives it (0), at 15/255
    and 25/255; residuals on mid-grey pixels (no clipping within 4 sigma) have mean ~0 and SD ~sigma."""
    from cxrdenoise.commands import data as stages
    from cxrdenoise.config import literature_sigmas, noise_means, validate_config
    from cxrdenoise.shards import decode

    config = validate_config({})  # the study's config: the schema's defaults
    assert literature_sigmas(config) == ["0.0588235", "0.0980392"]
    means = noise_means(config)
    assert means[label] == 0.0 and means["0.1"] == 0.1
    sigma = float(label)
    assert round(sigma * 255) in (15, 25) and abs(sigma * 255 - round(sigma * 255)) < 1e-4
    residuals = []
    for k in range(3):
        clean_npy = tiny_data_dir / "clean" / f"shard_{k:05d}.npy"
        out = tmp_path / f"sigma{label}" / f"shard_{k:05d}.npy"
        stages.noise_stage(str(clean_npy), sigma, means[label], 3, str(out))
        clean, noisy = decode(np.load(clean_npy)), decode(np.load(out))
        mid = (clean > 0.45) & (clean < 0.55)
        residuals.append((noisy - clean)[mid].astype(np.float64))
    r = np.concatenate(residuals)
    assert r.size > 300
    assert abs(r.mean()) < 4 * sigma / math.sqrt(r.size)  # zero mean (the study's would be 0.1)
    assert r.std() == pytest.approx(sigma, rel=0.08)


def test_a_sigma_in_both_noise_settings_is_refused():
    from cxrdenoise.config import noise_means

    with pytest.raises(CxrError, match="noise.literature.sigmas: 0.1 is also in noise.sigmas"):
        noise_means({"noise": {"mean": 0.1, "sigmas": [0.1, 0.2], "literature": {"mean": 0.0, "sigmas": [0.1]}}})


def test_literature_noise_shards_are_planned_with_zero_mean(tmp_path):
    from snakemake_run import snakemake

    result = snakemake(tmp_path, "-n", "-p", "--cores", "1", "results/classical/tv/sigma0.0588235/summary.json",
                       "results/data/noisy/sigma0.1/shard_00000.npy")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "--sigma 0.0588235 --mean 0.0 " in result.stdout and "--sigma 0.1 --mean 0.1 " in result.stdout


def test_table6_labels_a_literature_row(classical_tree, tmp_path):
    """A classical result at zero-mean noise reads as the literature's setting (σ ≈ k/255, zero mean)."""
    results, _ = classical_tree
    src = results / "classical" / "tv" / "sigma0.2"
    dest = tmp_path / "classical" / "tv" / "sigma0.0980392"
    dest.mkdir(parents=True)
    summary = json.loads((src / "summary.json").read_text())
    summary.update(sigma=0.0980392, noise_mean=0.0)
    (dest / "summary.json").write_text(json.dumps(summary))
    table = tables.build_table6([], classical=[dest / "summary.json"])
    row = table.data[table.data["method"] == "TV (Chambolle)"].iloc[0]
    assert row["noise"] == "σ=0.0980392 of 1 ≈ 25/255, zero mean (the literature's setting)"


def test_bm3d_images_go_one_by_one():
    """bm3d's native thread pool aborts the process when two Python threads enter it (seen with threads: 2)."""
    from cxrdenoise.baselines import ClassicalDenoiser

    assert ClassicalDenoiser("bm3d", 0.1, 0.1, threads=4).threads == 1
    assert ClassicalDenoiser("nlm", 0.1, 0.1, threads=4).threads == 4
