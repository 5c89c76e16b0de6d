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


@pytest.fixture(scope="module")
def classical_tree(tiny_data_dir, tmp_path_factory):
    """A fixture results tree (models, noisy input) plus the real classical stage's results on the tiny shards:
    TV and Gaussian measured, BM3D made to take the skip path."""
    root = tmp_path_factory.mktemp("classical")
    results = write_results_tree(root, setups=("gpu1",), sigmas=("0.2", "0.3"))
    summaries = write_classical(results, tiny_data_dir, methods=("bm3d", "tv", "gaussian"), sigmas=("0.1", "0.2"),
                                skipped=("bm3d",))
    return results, summaries


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


def test_max_images_keeps_the_first_test_images_and_empty_shards_say_so(tiny_data_dir, tmp_path):
    test = PairDataset(tiny_data_dir, "test", 0.2)
    write_classical(tmp_path, tiny_data_dir, methods=("gaussian",), sigmas=("0.2",), max_images=2)
    folder = tmp_path / "classical" / "gaussian" / "sigma0.2"
    merged = pd.read_csv(folder / "per_image.csv", dtype={"image_id": str})
    assert list(merged["image_id"]) == [str(i) for i in test.image_ids[:2]]
    shard_summaries = [json.loads((folder / f"shard_{k:05d}" / "summary.json").read_text()) for k in range(3)]
    assert sum(s["n_images"] for s in shard_summaries) == 2
    assert any(s.get("empty") for s in shard_summaries)  # some shard holds none of the first two
    assert json.loads((folder / "summary.json").read_text())["max_images"] == 2
    with pytest.raises(CxrError, match="max_images"):
        baselines.shard_positions(tiny_data_dir, 0, 0)


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
    positions = [baselines.shard_positions(tiny_data_dir, k) for k in range(3)]
    shard = next(k for k, p in enumerate(positions) if p)
    out = tmp_path / "nlm"
    assert cli_main(["classical", "shard", "--method", "nlm", "--sigma", "0.2", "--shard", str(shard),
                     "--data-dir", str(tiny_data_dir), "--out-dir", str(out), "--threads", "2", "--no-lpips",
                     "--no-progress", "--max-images", "all", "--mean-handling", "invert", "--batch-size", "4"]) == 0
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


def test_psnr_sigma_figure(classical_tree, tmp_path):
    results, summaries = classical_tree
    written = figures.psnr_vs_sigma(summaries, tmp_path / "psnr_sigma",
                                    summaries=paths(results, "summary", sigmas=("0.2", "0.3"), setups=("gpu1",)),
                                    noisy=noisy_paths(results, sigmas=("0.2", "0.3")), data_source="synthetic")
    assert [p.suffix for p in written] == [".png", ".pdf"] and all(p.stat().st_size > 1000 for p in written)
    with pytest.raises(CxrError, match="nothing|no measured"):
        figures.psnr_vs_sigma([s for s in summaries if "bm3d" in str(s)], tmp_path / "none")


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
    assert jobs["classical_shard"] == 2 * 2 * 3  # ... x the demo's 3 shards
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
