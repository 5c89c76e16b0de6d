"""Claims verdicts from fixture results: each verdict kind for each rule (better, equivalent, comparable, minor
drop on every metric, time-to-quality with censored runs, p < 1e-13 at the patient level, did not denoise), one
estimand everywhere, training runs as the unit, and one Holm family with each hypothesis once."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrdenoise.render import write_table
from cxrdenoise.tables.claims import FAILS, HOLDS, INCONCLUSIVE, NOT_TESTABLE, ClaimSettings, build_claims
from cxrdenoise.tables.verdicts import ONE_RUN
from fixtures.results_tree import noisy_paths, paths, write_results_tree

REPO = Path(__file__).resolve().parents[1]
SETUPS = ("gpu1", "dp2", "ddp2_amp")
N = 60  # test images, 2 per patient
REPS = (1, 2, 3)


def _tree(root: Path, device: str, lpips: str, replicates: int = 3, n: int = N) -> Path:
    """A results tree whose test images come two per patient (the same patient ids in every run)."""
    results = write_results_tree(root, setups=SETUPS, device=device, lpips=lpips, n_images=n, replicates=replicates)
    for csv in results.glob("eval/**/per_image.csv"):
        frame = pd.read_csv(csv, dtype={"image_id": str})
        frame["patient_id"] = [f"{i // 2:08d}" for i in range(len(frame))]
        frame.to_csv(csv, index=False, na_rep="NaN")
        summary = json.loads((csv.parent / "summary.json").read_text())
        summary["n_patients"] = int(frame["patient_id"].nunique())
        (csv.parent / "summary.json").write_text(json.dumps(summary))
    return results


def _set(results: Path, model: str, sigma: str, setup: str, metric: str, values: np.ndarray,
         run_sd: float = 0.0, seed: int = 0, reps=REPS) -> None:
    """Overwrite a run's per-image metric (each replicate shifted by its own run effect of SD `run_sd`) and its
    summary mean (what did_not_denoise reads)."""
    rng = np.random.default_rng(seed)
    for k in reps:
        folder = results / "eval" / model / f"sigma{sigma}" / (f"{setup}/rep{k}" if setup else "")
        csv = folder / "per_image.csv"
        if not csv.exists():
            continue
        frame = pd.read_csv(csv, dtype={"image_id": str, "patient_id": str})
        frame[metric] = values + rng.normal(0.0, run_sd)
        frame.to_csv(csv, index=False, na_rep="NaN")
        summary = json.loads((folder / "summary.json").read_text())
        summary["metrics"][metric]["mean"] = float(frame[metric].mean())
        (folder / "summary.json").write_text(json.dumps(summary))


def _build(results: Path, reps=REPS, setups=SETUPS, **kw):
    return build_claims(paths(results, "record", setups=setups, reps=reps),
                        paths(results, "summary", setups=setups, reps=reps),
                        paths(results, "per_image", setups=setups, reps=reps), noisy_paths(results),
                        resamples=400, seed=3, **kw)


def _verdict(table, claim: str, scope: str = "") -> pd.Series:
    data = table.data
    hit = data[data["claim"].str.startswith(claim) & data["scope"].str.contains(scope, regex=False)]
    assert len(hit) == 1, (claim, scope, data[["claim", "scope"]])
    return hit.iloc[0]


def _plant_quality(results: Path, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    base = rng.normal(30, 1, N)
    jitter = lambda s: rng.normal(0, s, N)  # noqa: E731
    # σ 0.1 PSNR: U-Net 1 dB better on every image -> "better" holds
    _set(results, "unet", "0.1", "gpu1", "psnr", base + 1.0 + jitter(0.1), run_sd=0.05, seed=1)
    _set(results, "unetpp", "0.1", "gpu1", "psnr", base, run_sd=0.05, seed=2)
    # σ 0.1 SSIM: noisy image by image, a small true gap -> inconclusive
    ssim = rng.uniform(0.85, 0.9, N)
    unet_ssim = ssim + 0.003 + jitter(0.03)
    _set(results, "unet", "0.1", "gpu1", "ssim_w3", unet_ssim, run_sd=0.002, seed=3)
    _set(results, "unetpp", "0.1", "gpu1", "ssim_w3", ssim, run_sd=0.002, seed=4)
    # σ 0.2 PSNR: U-Net++ claimed better, but 1 dB worse -> does not hold
    _set(results, "unet", "0.2", "gpu1", "psnr", base, run_sd=0.05, seed=5)
    _set(results, "unetpp", "0.2", "gpu1", "psnr", base - 1.0 + jitter(0.1), run_sd=0.05, seed=6)
    # σ 0.2 SSIM: equal up to tiny noise -> does not hold (equivalent within the margin)
    _set(results, "unet", "0.2", "gpu1", "ssim_w3", ssim, run_sd=0.0002, seed=7)
    _set(results, "unetpp", "0.2", "gpu1", "ssim_w3", ssim + jitter(0.0005), run_sd=0.0002, seed=8)
    # σ 0.3: every U-Net run scores below the noisy input -> did not denoise -> claims about it inconclusive
    _set(results, "unet", "0.3", "gpu1", "psnr", np.full(N, 5.0) + jitter(0.1))
    # DDP+AMP vs 1 GPU at σ 0.1: U-Net 0.1 dB lower (minor on PSNR and SSIM), U-Net++ 2 dB lower (not minor)
    _set(results, "unet", "0.1", "ddp2_amp", "psnr", base + 0.9 + jitter(0.1), run_sd=0.05, seed=9)
    _set(results, "unetpp", "0.1", "ddp2_amp", "psnr", base - 2.0 + jitter(0.1), run_sd=0.05, seed=10)
    # ... and 0.001 lower in SSIM under DDP+AMP, image by image (minor)
    _set(results, "unet", "0.1", "ddp2_amp", "ssim_w3", unet_ssim - 0.001 + jitter(0.0005), run_sd=0.002, seed=11)
    _set(results, "unetpp", "0.1", "ddp2_amp", "ssim_w3", ssim - 0.001 + jitter(0.0005), run_sd=0.002, seed=12)


@pytest.fixture(scope="module")
def cpu_claims(tmp_path_factory):
    results = _tree(tmp_path_factory.mktemp("cpu"), "cpu", "unavailable")
    _plant_quality(results)
    return results, _build(results, data_source="local", image_size=64)


def test_better_holds_fails_equivalent_and_inconclusive(cpu_claims):
    _, table = cpu_claims
    holds = _verdict(table, "U-Net better than U-Net++ at σ=0.1 on PSNR")
    assert holds["verdict"] == HOLDS and holds["ci_lo"] > 0 and holds["p_holm"] < 0.05
    assert holds["n_images"] == N and holds["n_patients"] == N // 2 and holds["runs_a"] == holds["runs_b"] == 3
    fails = _verdict(table, "U-Net++ better than U-Net at σ=0.2 on PSNR")
    assert fails["verdict"] == FAILS and fails["ci_hi"] < 0
    equal = _verdict(table, "U-Net++ better than U-Net at σ=0.2 on SSIM")
    assert equal["verdict"] == f"{FAILS} (equivalent within ±0.0025)" and equal["verdict_kind"] == FAILS
    assert -0.0025 < equal["ci_lo"] and equal["ci_hi"] < 0.0025
    unclear = _verdict(table, "U-Net better than U-Net++ at σ=0.1 on SSIM")
    assert unclear["verdict"] == INCONCLUSIVE and unclear["ci_lo"] < 0 < unclear["ci_hi"]
    assert "Holm-adjusted p" in unclear["reason"]


def test_one_run_verdict_is_about_one_trained_model(tmp_path):
    results = _tree(tmp_path, "cpu", "unavailable", replicates=1)
    _plant_quality(results)
    table = _build(results, reps=(1,))
    row = _verdict(table, "U-Net better than U-Net++ at σ=0.1 on PSNR")
    assert row["verdict"] == f"{HOLDS} {ONE_RUN}" and row["verdict_kind"] == HOLDS
    assert _verdict(table, "U-Net++ better than U-Net at σ=0.2 on PSNR")["verdict"] == f"{FAILS} {ONE_RUN}"
    assert HOLDS not in set(table.data["verdict"])  # never a plain "holds" from one run


def test_runs_widen_the_interval(tmp_path):
    """A large run-to-run spread enters the interval: the same patient-level effect, decided from one run, is
    undecided when the three runs disagree."""
    results = _tree(tmp_path, "cpu", "unavailable")
    rng = np.random.default_rng(3)
    base = rng.normal(30, 1, N)
    _set(results, "unet", "0.1", "gpu1", "psnr", base + 0.6 + rng.normal(0, 0.1, N), run_sd=1.0, seed=1)
    _set(results, "unetpp", "0.1", "gpu1", "psnr", base, run_sd=1.0, seed=2)
    three = _verdict(_build(results), "U-Net better than U-Net++ at σ=0.1 on PSNR")
    one = _verdict(_build(results, reps=(1,)), "U-Net better than U-Net++ at σ=0.1 on PSNR")
    assert (three["ci_hi"] - three["ci_lo"]) > 3 * (one["ci_hi"] - one["ci_lo"])
    assert three["verdict"] == INCONCLUSIVE


def test_one_estimand_when_image_and_patient_means_differ_in_sign(tmp_path):
    """One patient holds half the test images and a large negative difference; every other patient a small
    positive one. Image-weighted and patient-level means differ in sign: every printed number follows the
    patient-level one."""
    results = _tree(tmp_path, "cpu", "unavailable")
    ids = np.arange(N)
    heavy = ids < N // 2  # one patient with 30 images
    for csv in results.glob("eval/**/per_image.csv"):
        frame = pd.read_csv(csv, dtype={"image_id": str})
        frame["patient_id"] = np.where(heavy, "00000000", [f"{i:08d}" for i in ids])
        frame.to_csv(csv, index=False, na_rep="NaN")
    rng = np.random.default_rng(5)
    base = rng.normal(30, 0.5, N)
    _set(results, "unetpp", "0.1", "gpu1", "psnr", base, run_sd=0.02, seed=1)
    _set(results, "unet", "0.1", "gpu1", "psnr", base + np.where(heavy, -2.0, 0.6) + rng.normal(0, 0.05, N),
         run_sd=0.02, seed=2)
    row = _verdict(_build(results), "U-Net better than U-Net++ at σ=0.1 on PSNR")
    assert row["image_weighted"] < 0 < row["ours_value"]
    assert 0 < row["ci_lo"] < row["ours_value"] < row["ci_hi"]
    assert row["ours"].startswith("PSNR +") and row["verdict"] == HOLDS
    assert row["n_patients"] == N // 2 + 1


def test_family_holds_each_hypothesis_once(cpu_claims, tmp_path):
    _, table = cpu_claims
    data = table.data
    in_family = data["p_decision"].notna()
    caption = " ".join(table.caption)
    size = int(re.search(r"Holm family: (\d+) hypotheses", caption).group(1))
    assert size == in_family.sum() == 6  # LPIPS n/a, U-Net σ 0.3 did not denoise: rows 1, 2, 4, 5, 9, 10
    assert (data.loc[in_family, "p_holm"] >= data.loc[in_family, "p_decision"]).all()
    ordered = data[in_family].sort_values("p_decision")["p_holm"].to_numpy()
    assert (ordered[1:] >= ordered[:-1]).all()
    listed = re.search(r"\(rows ([\d, ]+)\)", caption).group(1)
    assert [int(i) for i in listed.split(", ")] == list(data.loc[in_family, "id"])


def test_did_not_denoise_makes_claims_inconclusive(cpu_claims):
    _, table = cpu_claims
    for metric in ("PSNR", "SSIM"):
        row = _verdict(table, f"U-Net++ better than U-Net at σ=0.3 on {metric}")
        assert row["verdict"] == INCONCLUSIVE and "did not denoise" in row["reason"] and "U-Net gpu1" in row["reason"]
    assert _verdict(table, "All differences significant")["verdict"] == INCONCLUSIVE


def test_failed_replicate_is_excluded_and_counted(tmp_path):
    results = _tree(tmp_path, "cpu", "unavailable")
    rng = np.random.default_rng(6)
    base = rng.normal(30, 1, N)
    _set(results, "unet", "0.1", "gpu1", "psnr", base + 1.0 + rng.normal(0, 0.1, N), run_sd=0.05)
    _set(results, "unetpp", "0.1", "gpu1", "psnr", base, run_sd=0.05)
    _set(results, "unet", "0.1", "gpu1", "psnr", np.full(N, 5.0), reps=(2,))  # replicate 2 did not denoise
    table = _build(results)
    row = _verdict(table, "U-Net better than U-Net++ at σ=0.1 on PSNR")
    assert row["runs_a"] == 2 and row["runs_b"] == 3 and row["verdict"] == HOLDS
    assert row["ours_value"] == pytest.approx(1.0, abs=0.2)  # the failed run is not averaged in
    assert "unet gpu1 σ=0.1: rep2" in " ".join(table.caption) and "1 training run(s) did not denoise" in " ".join(table.caption)


def test_minor_drop_is_judged_on_every_metric(cpu_claims, tmp_path):
    _, table = cpu_claims
    minor = _verdict(table, "Only a minor accuracy drop under DDP+AMP (U-Net)")
    assert minor["verdict"] == HOLDS and minor["ci_lo"] > -0.5 and "(LPIPS n/a)" in minor["scope"]
    major = _verdict(table, "Only a minor accuracy drop under DDP+AMP (U-Net++)")
    assert major["verdict"] == FAILS and major["ci_hi"] < -0.5 and "psnr" in major["reason"]
    # a minor PSNR drop with a large SSIM drop is not a minor drop
    results = _tree(tmp_path, "cpu", "unavailable")
    rng = np.random.default_rng(7)
    base, ssim = rng.normal(30, 1, N), rng.uniform(0.85, 0.9, N)
    _set(results, "unet", "0.1", "gpu1", "psnr", base, run_sd=0.02, seed=1)
    _set(results, "unet", "0.1", "ddp2_amp", "psnr", base - 0.1 + rng.normal(0, 0.05, N), run_sd=0.02, seed=2)
    _set(results, "unet", "0.1", "gpu1", "ssim_w3", ssim, run_sd=0.001, seed=3)
    _set(results, "unet", "0.1", "ddp2_amp", "ssim_w3", ssim - 0.05 + rng.normal(0, 0.002, N), run_sd=0.001, seed=4)
    row = _verdict(_build(results), "Only a minor accuracy drop under DDP+AMP (U-Net)")
    assert row["verdict"] == FAILS and "ssim_w3" in row["reason"] and row["ci_lo"] > -0.5  # PSNR alone: minor


def test_margins_come_from_the_settings(cpu_claims):
    results, _ = cpu_claims
    wide = ClaimSettings(negligible={"psnr": 5.0, "ssim_w3": 0.0025, "lpips": 0.01},
                         minor_drop={"psnr": 3.0, "ssim_w3": 0.015, "lpips": 0.02}, min_patients=3)
    table = _build(results, settings=wide)
    # a 1 dB gain inside a ±5 dB "negligible" margin: holds, by less than the margin
    row = _verdict(table, "U-Net better than U-Net++ at σ=0.1 on PSNR")
    assert row["verdict"] == HOLDS and "less than the ±5 margin" in row["reason"]
    assert _verdict(table, "Only a minor accuracy drop under DDP+AMP (U-Net++)")["verdict"] == HOLDS  # 2 < 3 dB
    assert "PSNR 5 dB" in " ".join(table.caption)


def test_cpu_timings_and_missing_lpips_are_not_testable(cpu_claims):
    _, table = cpu_claims
    for claim in ("DDP+AMP saves over 60 %", "DDP+AMP beats DataParallel", "DataParallel saves 36–47 %"):
        for model in ("U-Net,", "U-Net++,"):
            row = _verdict(table, claim, model)
            assert row["verdict"] == NOT_TESTABLE and "CPU" in row["reason"]
    for claim in ("U-Net better than U-Net++ at σ=0.1 on LPIPS", "LPIPS comparable"):
        row = _verdict(table, claim)
        assert row["verdict"] == NOT_TESTABLE and "LPIPS n/a" in row["reason"] and pd.isna(row["ours_value"])


def test_claims_caption_states_rules_family_data_and_patients(cpu_claims, tmp_path):
    _, table = cpu_claims
    write_table(table, tmp_path / "claims")
    md = (tmp_path / "claims.md").read_text()
    for text in ("patient-level mean", "Satterthwaite", "Holm", "±negligible", "PSNR 0.5 dB", "LPIPS 0.01",
                 "its own family", ONE_RUN, f"{N} test images from {N // 2} patients", "64x64", "base width 8",
                 "local folder"):
        assert text in md, text
    back = pd.read_csv(tmp_path / "claims.csv")
    assert len(back) == len(table.data) == 18
    assert set(back["verdict_kind"]) <= {HOLDS, FAILS, INCONCLUSIVE, NOT_TESTABLE}
    for ext in ("tex", "html"):
        assert (tmp_path / f"claims.{ext}").stat().st_size > 0


def _epochs(results: Path, model: str, setup: str, losses: list[float], train_s: float, reps=REPS) -> None:
    for k in reps:
        path = results / "train" / model / "sigma0.1" / setup / f"rep{k}" / "record.json"
        rec = json.loads(path.read_text())
        for e, loss in zip(rec["epochs"], losses):
            e["val_loss"], e["train_s"] = loss, train_s / len(losses)
        rec["totals"]["train_s"] = train_s
        path.write_text(json.dumps(rec))


def test_speed_claims_on_time_to_quality_with_censored_runs(tmp_path):
    results = _tree(tmp_path, "cuda", "ok")
    # gpu1: best val loss 0.052 at its last epoch, 106 s train+val
    _epochs(results, "unet", "ddp2_amp", [0.06, 0.05, 0.04], 30.0)  # reaches 0.052 at epoch 2: 24 s
    table = _build(results, data_source="nih", image_size=256)
    saves = _verdict(table, "DDP+AMP saves over 60 %", "U-Net,")
    ref = [100 * (1 + 0.02 * k) + 6 for k in range(3)]  # the fixture's gpu1 replicates take 2 % longer each
    assert saves["verdict"] == HOLDS and saves["ours_value"] == pytest.approx(np.mean([(t - 24) / t * 100 for t in ref]))
    assert "fixed-epoch" in saves["ours"]
    # U-Net++'s DDP+AMP never reaches gpu1's best: censored at its total (66 s against gpu1's 156 s): at most
    # 57.7 % saved, so it does not save over 60 % whenever it would get there
    never = _verdict(table, "DDP+AMP saves over 60 %", "U-Net++,")
    assert never["verdict"] == FAILS and never["ci_hi"] < 60 and "3 censored" in never["ours"]
    # U-Net: DataParallel is censored at 76 s, DDP+AMP reached it at 24 s: at least (76 - 24) / 76 saved
    beats = _verdict(table, "DDP+AMP beats DataParallel", "U-Net,")
    assert beats["verdict"] == HOLDS and beats["ci_lo"] > 40
    # U-Net++: both censored, nothing bounds the saving: inconclusive, never dropped
    both = _verdict(table, "DDP+AMP beats DataParallel", "U-Net++,")
    assert both["verdict"] == INCONCLUSIVE and "censored" in both["reason"]
    # DataParallel never reaches it either: at most (106 - 76) / 106 = 28 % saved, below 36 %: does not hold
    dp = _verdict(table, "DataParallel saves 36–47 %", "U-Net,")
    dp_total = [70 * (1 + 0.02 * k) + 6 for k in range(3)]
    assert dp["verdict"] == FAILS and dp["ci_hi"] == pytest.approx(np.mean([(t - d) / t * 100 for t, d in zip(ref, dp_total)]))


def test_significance_is_decided_at_the_patient_level(tmp_path):
    """2,551 test images (1,276 patients): p < 1e-13 everywhere holds; one difference absent does not hold."""
    n = 2551
    results = _tree(tmp_path, "cuda", "ok", replicates=1, n=n)
    rng = np.random.default_rng(2)
    for absent in (None, ("0.2", "ssim_w3")):
        for sigma in ("0.1", "0.2", "0.3"):
            for metric, gap in (("psnr", 1.0), ("ssim_w3", 0.02), ("lpips", -0.02)):
                base = rng.uniform(0.2, 0.3, n) if metric == "lpips" else rng.uniform(0.8, 0.9, n) * (
                    40 if metric == "psnr" else 1)
                gap = 0.0 if (sigma, metric) == absent else gap
                _set(results, "unetpp", sigma, "gpu1", metric, base, reps=(1,))
                _set(results, "unet", sigma, "gpu1", metric, base + gap + rng.normal(0, 0.01, n), reps=(1,))
        sig = _verdict(_build(results, reps=(1,), setups=("gpu1",)), "All differences significant")
        assert sig["n_images"] == n and sig["n_patients"] == 1276 and "image-level" in sig["ours"]
        if absent is None:
            assert sig["verdict"] == f"{HOLDS} {ONE_RUN}" and sig["p_holm"] < 1e-13
        else:
            assert sig["verdict"] == f"{FAILS} {ONE_RUN}" and sig["p_holm"] >= 1e-13


def test_significance_is_inconclusive_on_a_small_test_set(cpu_claims, tmp_path):
    results = _tree(tmp_path, "cuda", "ok")
    sig = _verdict(_build(results), "All differences significant")
    assert sig["verdict"] == INCONCLUSIVE and "too few" in sig["reason"]


def test_make_claims_cli(cpu_claims, tmp_path):
    results, _ = cpu_claims
    cmd = [sys.executable, "-m", "cxrdenoise", "claims", "claims",
           "--out-prefix", str(tmp_path / "claims"), "--data-source", "local", "--image-size", "64",
           "--bootstrap-resamples", "200", "--seed", "5", "--alpha", "0.05",
           "--negligible", "psnr=0.25", "ssim_w3=0.0025", "lpips=0.01",
           "--minor-drop", "psnr=0.5", "ssim_w3=0.015", "lpips=0.02", "--min-patients", "10",
           "--records", *map(str, paths(results, "record", setups=SETUPS, reps=REPS)),
           "--summaries", *map(str, paths(results, "summary", setups=SETUPS, reps=REPS)),
           "--per-image", *map(str, paths(results, "per_image", setups=SETUPS, reps=REPS)),
           "--noisy", *map(str, noisy_paths(results))]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    first = (tmp_path / "claims.csv").read_bytes()
    assert subprocess.run(cmd, capture_output=True, env=env).returncode == 0
    assert (tmp_path / "claims.csv").read_bytes() == first  # same config, same bytes
    missing = subprocess.run(cmd[:cmd.index("--alpha")] + cmd[cmd.index("--records"):], capture_output=True,
                             text=True, env=env)
    assert missing.returncode != 0 and "--min-patients" in missing.stderr


def test_comparisons_cover_models_and_setups_with_holm(cpu_claims, tmp_path):
    from cxrdenoise.tables.comparisons import build_comparisons

    results, _ = cpu_claims
    table = build_comparisons(paths(results, "record", setups=SETUPS, reps=REPS),
                              paths(results, "summary", setups=SETUPS, reps=REPS),
                              paths(results, "per_image", setups=SETUPS, reps=REPS), noisy_paths(results),
                              resamples=200, seed=3, data_source="local", image_size=64)
    data = table.data
    # models: 3 sigmas x 3 set-ups x 2 metrics (no LPIPS without weights); set-ups: 3 x 2 models x 2 x 2 metrics
    assert (data["kind"] == "models").sum() == 18 and (data["kind"] == "setups").sum() == 24
    means = data[data["kind"] == "mean"]  # every run (3 sigmas x 2 models x 3 set-ups) x 2 metrics
    assert len(means) == 36 and (means["ci_lo"] < means["mean_a"]).all() and (means["mean_a"] < means["ci_hi"]).all()
    data = data[data["kind"] != "mean"]
    assert set(data.loc[data["kind"] == "setups", "b"]) == {"unet gpu1", "unetpp gpu1"}
    assert (data["p_holm"] >= data["p"]).all() and (data["p_holm"] <= 1).all()
    assert ((data["ci_lo"] <= data["mean_diff"]) & (data["mean_diff"] <= data["ci_hi"])).all()
    assert (data["runs_a"] == 3).all() and (data["n_patients"] == N // 2).all()
    flagged = data[data["flag"].notna()]
    assert len(flagged) and all("unet" in a or "unet" in b for a, b in zip(flagged["a"], flagged["b"]))
    assert (flagged["sigma"] == 0.3).all()  # only U-Net at σ 0.3 did not denoise
    write_table(table, tmp_path / "comparisons")
    assert "did not denoise" in (tmp_path / "comparisons.md").read_text()


def test_too_few_patients_make_a_paired_claim_inconclusive(tmp_path):
    results = write_results_tree(tmp_path, sigmas=("0.1",), setups=("gpu1",), n_images=8, replicates=3)  # 8 patients
    rng = np.random.default_rng(4)
    base = rng.normal(30, 1, 8)
    _set(results, "unet", "0.1", "gpu1", "psnr", base + 2.0 + rng.normal(0, 0.01, 8))
    _set(results, "unetpp", "0.1", "gpu1", "psnr", base)
    kw = dict(sigmas=("0.1",), setups=("gpu1",), reps=REPS)
    decided = build_claims(paths(results, "record", **kw), paths(results, "summary", **kw),
                           paths(results, "per_image", **kw), noisy_paths(results, sigmas=("0.1",)), resamples=200)
    assert _verdict(decided, "U-Net better than U-Net++ at σ=0.1 on PSNR")["verdict"] == HOLDS  # 8 >= 3 patients
    strict = ClaimSettings(min_patients=10)
    table = build_claims(paths(results, "record", **kw), paths(results, "summary", **kw),
                         paths(results, "per_image", **kw), noisy_paths(results, sigmas=("0.1",)), resamples=200,
                         settings=strict)
    row = _verdict(table, "U-Net better than U-Net++ at σ=0.1 on PSNR")
    assert row["verdict"] == INCONCLUSIVE and "only 8 test patients" in row["reason"] and row["ci_lo"] > 1.5


@pytest.mark.parametrize("verdict, expected", [("refuted", FAILS), ("not refuted by these attackers",
                                                                    f"{HOLDS} (not refuted by these attackers)"),
                                               ("inconclusive", INCONCLUSIVE)])
def test_privacy_claim_takes_the_privacy_stage_verdict(tmp_path, verdict, expected):
    results = _tree(tmp_path, "cpu", "n/a", replicates=1)
    stage = {"verdict": verdict, "rule": "the stage's rule", "evidence": "measured",
             "worst_obfuscated": {"attacker": "ncc", "model": None, "sigma": 0.1, "auc": 0.61, "auc_lo": 0.5,
                                  "auc_hi": 0.7}}
    row = _verdict(_build(results, reps=(1,), privacy=stage), "Noise-based obfuscation")
    assert row["verdict"] == expected and "rule:" in row["reason"] and "0.610" in row["ours"]


def test_privacy_claim_without_the_stage_is_not_testable(tmp_path):
    row = _verdict(_build(_tree(tmp_path, "cpu", "n/a", replicates=1), reps=(1,)), "Noise-based obfuscation")
    assert row["verdict"] == NOT_TESTABLE and "privacy stage did not run" in row["reason"]
