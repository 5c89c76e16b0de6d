"""Claims verdicts from fixture results: each verdict kind (holds / does not hold / inconclusive / not testable
here) for each rule (better, comparable, minor drop, time saving, p < 1e-13, did not denoise)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cxrdenoise.render import write_table
from cxrdenoise.tables.claims import FAILS, HOLDS, INCONCLUSIVE, NOT_TESTABLE, build_claims
from fixtures.results_tree import noisy_paths, paths, write_results_tree

REPO = Path(__file__).resolve().parents[1]
SETUPS = ("gpu1", "dp2", "ddp2_amp")
N = 60  # test images, 2 per patient


def _tree(root: Path, device: str, lpips: str) -> Path:
    """A results tree whose test images come two per patient (the same patient ids in every run)."""
    results = write_results_tree(root, setups=SETUPS, device=device, lpips=lpips, n_images=N)
    for csv in results.glob("eval/**/per_image.csv"):
        frame = pd.read_csv(csv, dtype={"image_id": str})
        frame["patient_id"] = [f"{i // 2:08d}" for i in range(len(frame))]
        frame.to_csv(csv, index=False, na_rep="NaN")
        summary = json.loads((csv.parent / "summary.json").read_text())
        summary["n_patients"] = int(frame["patient_id"].nunique())
        (csv.parent / "summary.json").write_text(json.dumps(summary))
    return results


def _set(results: Path, model: str, sigma: str, setup: str, metric: str, values: np.ndarray) -> None:
    """Overwrite one run's per-image metric and its summary mean (what did_not_denoise reads)."""
    folder = results / "eval" / model / f"sigma{sigma}" / (f"{setup}/rep1" if setup else "")
    csv = folder / "per_image.csv"
    frame = pd.read_csv(csv, dtype={"image_id": str, "patient_id": str})
    frame[metric] = values
    frame.to_csv(csv, index=False, na_rep="NaN")
    summary = json.loads((folder / "summary.json").read_text())
    summary["metrics"][metric]["mean"] = float(np.mean(values))
    (folder / "summary.json").write_text(json.dumps(summary))


def _build(results: Path, **kw):
    return build_claims(paths(results, "record", setups=SETUPS), paths(results, "summary", setups=SETUPS),
                        paths(results, "per_image", setups=SETUPS), noisy_paths(results), resamples=400, seed=3, **kw)


def _verdict(table, claim: str, scope: str = "") -> pd.Series:
    data = table.data
    hit = data[data["claim"].str.startswith(claim) & data["scope"].str.contains(scope, regex=False)]
    assert len(hit) == 1, (claim, scope, data[["claim", "scope"]])
    return hit.iloc[0]


@pytest.fixture(scope="module")
def cpu_claims(tmp_path_factory):
    results = _tree(tmp_path_factory.mktemp("cpu"), "cpu", "unavailable")
    rng = np.random.default_rng(0)
    base = rng.normal(30, 1, N)
    jitter = lambda s: rng.normal(0, s, N)  # noqa: E731
    # σ 0.1: U-Net 1 dB better on every image -> "better" holds
    _set(results, "unet", "0.1", "gpu1", "psnr", base + 1.0 + jitter(0.1))
    _set(results, "unetpp", "0.1", "gpu1", "psnr", base)
    # σ 0.2: U-Net++ claimed better, but 1 dB worse -> does not hold
    _set(results, "unet", "0.2", "gpu1", "psnr", base)
    _set(results, "unetpp", "0.2", "gpu1", "psnr", base - 1.0 + jitter(0.1))
    # σ 0.2 SSIM: identical up to noise -> inconclusive
    ssim = rng.uniform(0.85, 0.9, N)
    _set(results, "unet", "0.2", "gpu1", "ssim_w3", ssim)
    _set(results, "unetpp", "0.2", "gpu1", "ssim_w3", ssim + jitter(0.01))
    # σ 0.3: U-Net scores below the noisy input -> did not denoise -> claims about it inconclusive
    _set(results, "unet", "0.3", "gpu1", "psnr", np.full(N, 5.0) + jitter(0.1))
    # DDP+AMP vs 1 GPU at σ 0.1: U-Net 0.1 dB lower (minor), U-Net++ 2 dB lower (not minor)
    _set(results, "unet", "0.1", "ddp2_amp", "psnr", base + 0.9 + jitter(0.1))
    _set(results, "unetpp", "0.1", "ddp2_amp", "psnr", base - 2.0 + jitter(0.1))
    return results, _build(results, data_source="local", image_size=64)


def test_better_holds_fails_and_is_inconclusive(cpu_claims):
    _, table = cpu_claims
    holds = _verdict(table, "U-Net better than U-Net++ at σ=0.1 on PSNR")
    assert holds["verdict"] == HOLDS and holds["ci_lo"] > 0 and holds["p_holm"] < 0.05
    assert holds["n_images"] == N and holds["n_patients"] == N // 2  # patients, not images
    fails = _verdict(table, "U-Net++ better than U-Net at σ=0.2 on PSNR")
    assert fails["verdict"] == FAILS and fails["ci_hi"] < 0
    unclear = _verdict(table, "U-Net++ better than U-Net at σ=0.2 on SSIM")
    assert unclear["verdict"] == INCONCLUSIVE and unclear["ci_lo"] < 0 < unclear["ci_hi"]


def test_did_not_denoise_makes_claims_inconclusive(cpu_claims):
    _, table = cpu_claims
    for metric in ("PSNR", "SSIM"):
        row = _verdict(table, f"U-Net++ better than U-Net at σ=0.3 on {metric}")
        assert row["verdict"] == INCONCLUSIVE and "did not denoise" in row["reason"] and "U-Net gpu1" in row["reason"]
    assert _verdict(table, "All differences significant")["verdict"] == INCONCLUSIVE


def test_minor_drop_holds_and_fails(cpu_claims):
    _, table = cpu_claims
    minor = _verdict(table, "Only a minor accuracy drop under DDP+AMP (U-Net)")
    assert minor["verdict"] == HOLDS and minor["ci_lo"] >= -0.5
    major = _verdict(table, "Only a minor accuracy drop under DDP+AMP (U-Net++)")
    assert major["verdict"] == FAILS and major["ci_hi"] < -0.5


def test_cpu_timings_and_missing_lpips_are_not_testable(cpu_claims):
    _, table = cpu_claims
    for claim in ("DDP+AMP saves over 60 %", "DDP+AMP beats DataParallel", "DataParallel saves 36–47 %"):
        for model in ("U-Net,", "U-Net++,"):
            row = _verdict(table, claim, model)
            assert row["verdict"] == NOT_TESTABLE and "CPU" in row["reason"]
    for claim in ("U-Net better than U-Net++ at σ=0.1 on LPIPS", "LPIPS comparable"):
        row = _verdict(table, claim)
        assert row["verdict"] == NOT_TESTABLE and "LPIPS n/a" in row["reason"] and pd.isna(row["ours_value"])
    assert set(table.data["verdict"]) == {HOLDS, FAILS, INCONCLUSIVE, NOT_TESTABLE}


def test_claims_caption_states_rules_data_and_patients(cpu_claims, tmp_path):
    _, table = cpu_claims
    write_table(table, tmp_path / "claims")
    md = (tmp_path / "claims.md").read_text()
    for text in ("patient-cluster percentile bootstrap", "400 resamples", "Holm", "±0.01 LPIPS", "−0.5 dB",
                 f"{N} test images from {N // 2} patients", "64x64", "base width 8", "local folder"):
        assert text in md, text
    back = pd.read_csv(tmp_path / "claims.csv")
    assert len(back) == len(table.data) == 18 and set(back["verdict"]) <= {HOLDS, FAILS, INCONCLUSIVE, NOT_TESTABLE}
    for ext in ("tex", "html"):
        assert (tmp_path / f"claims.{ext}").stat().st_size > 0


def test_gpu_timings_lpips_equivalence_and_significance(tmp_path):
    results = _tree(tmp_path, "cuda", "ok")
    rng = np.random.default_rng(1)
    # every model difference large and consistent: p far below 1e-13 even after Holm ...
    for sigma in ("0.1", "0.2", "0.3"):
        good, bad = ("unet", "unetpp") if sigma == "0.1" else ("unetpp", "unet")
        for metric, gap in (("psnr", 3.0), ("ssim_w3", 0.05), ("lpips", -0.05)):
            base = rng.uniform(0.3, 0.4, N) if metric == "lpips" else rng.uniform(0.7, 0.8, N) * (
                40 if metric == "psnr" else 1)
            _set(results, bad, sigma, "gpu1", metric, base)
            _set(results, good, sigma, "gpu1", metric, base + gap + rng.normal(0, abs(gap) / 100, N))
    table = _build(results, data_source="nih", image_size=256)
    sig = _verdict(table, "All differences significant")
    assert sig["verdict"] == HOLDS and sig["p_holm"] < 1e-13  # 30 patients suffice for so consistent a gap
    # ... LPIPS at σ 0.3 differs by 0.05 > margin 0.01 -> "comparable" does not hold
    assert _verdict(table, "LPIPS comparable")["verdict"] == FAILS
    assert _verdict(table, "U-Net better than U-Net++ at σ=0.1 on LPIPS")["verdict"] == HOLDS

    # LPIPS at σ 0.3 equal up to tiny noise -> comparable holds
    lp = rng.uniform(0.2, 0.3, N)
    _set(results, "unet", "0.3", "gpu1", "lpips", lp)
    _set(results, "unetpp", "0.3", "gpu1", "lpips", lp + rng.normal(0, 0.001, N))
    # fixture GPU seconds (train+val): gpu1 106, dp2 76, ddp2_amp 46 for U-Net -> 56.6 % (≤ 60: fails);
    # make U-Net's DDP+AMP run faster: 30 + 6 s -> 66 % saved (holds)
    rec_path = results / "train" / "unet" / "sigma0.1" / "ddp2_amp" / "rep1" / "record.json"
    rec = json.loads(rec_path.read_text())
    rec["totals"]["train_s"] = 30.0
    rec_path.write_text(json.dumps(rec))
    table = _build(results, data_source="nih", image_size=256)
    assert _verdict(table, "LPIPS comparable")["verdict"] == HOLDS
    sig = _verdict(table, "All differences significant")  # LPIPS at σ 0.3 now shows no difference ...
    assert sig["verdict"] == INCONCLUSIVE and "too few" in sig["reason"]  # ... but 60 images cannot tell
    saves = _verdict(table, "DDP+AMP saves over 60 %", "U-Net,")
    assert saves["verdict"] == HOLDS and saves["ours_value"] == pytest.approx((106 - 36) / 106 * 100)
    assert _verdict(table, "DDP+AMP saves over 60 %", "U-Net++,")["verdict"] == FAILS
    dp = _verdict(table, "DataParallel saves 36–47 %", "U-Net,")
    assert dp["verdict"] == FAILS and dp["ours_value"] == pytest.approx(30 / 106 * 100)
    assert abs(dp["study_value"] - 36.34) < 0.01  # the study's own figure, recomputed from its times


def test_significance_fails_on_a_study_sized_test_set(tmp_path):
    """2,551 test images, one model difference absent: a Holm-adjusted p ≥ 1e-13 on the study's sample size."""
    n = 2551
    results = write_results_tree(tmp_path, setups=("gpu1",), device="cuda", lpips="ok", n_images=n)
    rng = np.random.default_rng(2)
    for sigma in ("0.1", "0.2", "0.3"):
        for metric, gap in (("psnr", 1.0), ("ssim_w3", 0.02), ("lpips", -0.02)):
            base = rng.uniform(0.2, 0.3, n) if metric == "lpips" else rng.uniform(0.8, 0.9, n) * (
                40 if metric == "psnr" else 1)
            gap = 0.0 if (sigma, metric) == ("0.2", "ssim_w3") else gap
            _set(results, "unetpp", sigma, "gpu1", metric, base)
            _set(results, "unet", sigma, "gpu1", metric, base + gap + rng.normal(0, 0.01, n))
    table = build_claims(paths(results, "record", setups=("gpu1",)), paths(results, "summary", setups=("gpu1",)),
                         paths(results, "per_image", setups=("gpu1",)), noisy_paths(results), resamples=200, seed=1)
    sig = _verdict(table, "All differences significant")
    assert sig["verdict"] == FAILS and sig["p_holm"] >= 1e-13 and sig["n_images"] == n
    assert _verdict(table, "DDP+AMP saves over 60 %", "U-Net,")["verdict"] == NOT_TESTABLE  # no ddp2_amp run
    assert "no evaluated run" in _verdict(table, "DDP+AMP saves over 60 %", "U-Net,")["reason"]


def test_make_claims_cli(cpu_claims, tmp_path):
    results, _ = cpu_claims
    cmd = [sys.executable, "-m", "cxrdenoise", "claims", "claims",
           "--out-prefix", str(tmp_path / "claims"), "--data-source", "local", "--image-size", "64",
           "--bootstrap-resamples", "200", "--seed", "5",
           "--records", *map(str, paths(results, "record", setups=SETUPS)),
           "--summaries", *map(str, paths(results, "summary", setups=SETUPS)),
           "--per-image", *map(str, paths(results, "per_image", setups=SETUPS)),
           "--noisy", *map(str, noisy_paths(results))]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr
    first = (tmp_path / "claims.csv").read_bytes()
    assert subprocess.run(cmd, capture_output=True, env=env).returncode == 0
    assert (tmp_path / "claims.csv").read_bytes() == first  # same seed, same bytes


def test_comparisons_cover_models_and_setups_with_holm(cpu_claims, tmp_path):
    from cxrdenoise.tables.comparisons import build_comparisons

    results, _ = cpu_claims
    table = build_comparisons(paths(results, "record", setups=SETUPS), paths(results, "summary", setups=SETUPS),
                              paths(results, "per_image", setups=SETUPS), noisy_paths(results), resamples=200,
                              seed=3, data_source="local", image_size=64)
    data = table.data
    # models: 3 sigmas x 3 set-ups x 2 metrics (no LPIPS without weights); set-ups: 3 x 2 models x 2 x 2 metrics
    assert (data["kind"] == "models").sum() == 18 and (data["kind"] == "setups").sum() == 24
    means = data[data["kind"] == "mean"]  # every run (3 sigmas x 2 models x 3 set-ups) x 2 metrics
    assert len(means) == 36 and (means["ci_lo"] < means["mean_a"]).all() and (means["mean_a"] < means["ci_hi"]).all()
    data = data[data["kind"] != "mean"]
    assert set(data.loc[data["kind"] == "setups", "b"]) == {"unet gpu1", "unetpp gpu1"}
    assert (data["p_t_holm"] >= data["p_t"]).all() and (data["p_t_holm"] <= 1).all()
    order = data.sort_values("p_t")["p_t_holm"].to_numpy()
    assert (order[1:] >= order[:-1]).all()  # Holm-adjusted p-values are monotone in the raw ones
    assert (data["n_patients"] == N // 2).all()
    flagged = data[data["flag"].notna()]
    assert len(flagged) and all("unet" in a or "unet" in b for a, b in zip(flagged["a"], flagged["b"]))
    assert (flagged["sigma"] == 0.3).all()  # only U-Net at σ 0.3 did not denoise
    write_table(table, tmp_path / "comparisons")
    assert "did not denoise" in (tmp_path / "comparisons.md").read_text()


def test_too_few_patients_make_a_paired_claim_inconclusive(tmp_path):
    results = write_results_tree(tmp_path, sigmas=("0.1",), setups=("gpu1",), n_images=8)  # 8 patients
    rng = np.random.default_rng(4)
    base = rng.normal(30, 1, 8)
    _set(results, "unet", "0.1", "gpu1", "psnr", base + 2.0 + rng.normal(0, 0.01, 8))
    _set(results, "unetpp", "0.1", "gpu1", "psnr", base)
    kw = dict(sigmas=("0.1",), setups=("gpu1",))
    table = build_claims(paths(results, "record", **kw), paths(results, "summary", **kw),
                         paths(results, "per_image", **kw), noisy_paths(results, sigmas=("0.1",)), resamples=200)
    row = _verdict(table, "U-Net better than U-Net++ at σ=0.1 on PSNR")
    assert row["verdict"] == INCONCLUSIVE and "only 8 test patients" in row["reason"] and row["ci_lo"] > 1.5


def _privacy_rows(obfuscated_lo: float, obfuscated_hi: float) -> list[dict]:
    """Privacy-stage rows (cxrdenoise.privacy.claim's columns): a clean-query attacker that counts, and one
    obfuscated row whose interval decides the verdict."""
    return [
        {"attacker": "ncc", "query": "clean", "model": "", "sigma": None, "auc": 0.97, "auc_lo": 0.92, "auc_hi": 1.0},
        {"attacker": "ncc", "query": "obfuscated", "model": "", "sigma": 0.1, "auc": (obfuscated_lo + obfuscated_hi) / 2,
         "auc_lo": obfuscated_lo, "auc_hi": obfuscated_hi},
    ]


@pytest.mark.parametrize("lo, hi, expected", [(0.8, 0.95, FAILS), (0.45, 0.55, HOLDS), (0.5, 0.7, INCONCLUSIVE)])
def test_privacy_claim_takes_the_privacy_stage_verdict(tmp_path, lo, hi, expected):
    from cxrdenoise.privacy.claim import privacy_claim

    results = _tree(tmp_path, "cpu", "n/a")
    row = _verdict(_build(results, privacy=privacy_claim(_privacy_rows(lo, hi))), "Noise-based obfuscation")
    assert row["verdict"] == expected
    assert "rule:" in row["reason"] and f"{(lo + hi) / 2:.3f}" in row["ours"]


def test_privacy_claim_without_the_stage_is_not_testable(tmp_path):
    row = _verdict(_build(_tree(tmp_path, "cpu", "n/a")), "Noise-based obfuscation")
    assert row["verdict"] == NOT_TESTABLE and "privacy stage did not run" in row["reason"]
