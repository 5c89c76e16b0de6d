"""Confidence intervals against a hand computation and scipy; paired tests on a fixture with a known direction."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from cxrdenoise.errors import CxrError
from cxrdenoise.stats import mean_ci, paired_test, paired_tests, summarise


def test_ci_by_hand():
    r = mean_ci([1.0, 2.0, 3.0, 4.0, 5.0])
    sd = math.sqrt(2.5)  # sum of squared deviations 10, / (n - 1)
    se = sd / math.sqrt(5)
    assert r["n"] == 5 and r["mean"] == pytest.approx(3.0) and r["sd"] == pytest.approx(sd)
    assert r["ci95_t_halfwidth"] == pytest.approx(2.7764451 * se, rel=1e-6)  # t(0.975, 4) from tables
    assert r["ci95_normal_halfwidth"] == pytest.approx(1.96 * se)  # the study's formula, 1.96 as written
    assert r["ci95_t"] == pytest.approx([3 - 2.7764451 * se, 3 + 2.7764451 * se], rel=1e-6)


def test_ci_matches_scipy():
    x = np.random.default_rng(4).normal(30, 2, size=40)
    r = mean_ci(x)
    lo, hi = sps.t.interval(0.95, len(x) - 1, loc=x.mean(), scale=sps.sem(x))
    assert r["ci95_t"] == pytest.approx([lo, hi])
    lo, hi = sps.norm.interval(0.95, loc=x.mean(), scale=sps.sem(x))
    assert r["ci95_normal"] == pytest.approx([lo, hi], rel=1e-4)  # 1.96 vs 1.95996...


def test_non_finite_values_excluded_and_counted():
    r = mean_ci([10.0, 20.0, math.inf, math.nan])
    assert (r["n"], r["n_inf"], r["n_nan"]) == (2, 1, 1) and r["mean"] == pytest.approx(15.0)
    empty = mean_ci([math.nan, math.nan])
    assert empty["n"] == 0 and empty["mean"] is None and empty["ci95_t"] is None
    single = mean_ci([3.0])
    assert single["mean"] == 3.0 and single["sd"] is None and single["ci95_t"] is None
    assert set(summarise(pd.DataFrame({"psnr": [1.0, 2.0]}), ["psnr", "lpips"])) == {"psnr"}


@pytest.fixture
def pair():
    """Model A is 0.5 dB better than B on every image, give or take a little; rows in different orders."""
    rng = np.random.default_rng(7)
    ids = [f"{i:08d}_000.png" for i in range(30)]
    b = rng.normal(30, 1, 30)
    a = b + 0.5 + rng.normal(0, 0.1, 30)
    frame_a = pd.DataFrame({"image_id": ids, "psnr": a, "ssim": rng.uniform(0.8, 0.9, 30)})
    frame_b = pd.DataFrame({"image_id": ids, "psnr": b, "ssim": rng.uniform(0.8, 0.9, 30)}).iloc[::-1]
    return frame_a, frame_b, a, b


def test_paired_direction_and_pvalues(pair):
    frame_a, frame_b, a, b = pair
    r = paired_test(frame_a, frame_b, "psnr", "unet", "unetpp")
    assert r["n"] == 30 and r["mean_diff"] == pytest.approx(np.mean(a - b)) and r["mean_diff"] > 0.4
    assert r["t_pvalue"] == pytest.approx(sps.ttest_rel(a, b).pvalue)  # aligned despite the reversed order
    assert r["wilcoxon_pvalue"] == pytest.approx(sps.wilcoxon(a, b).pvalue)
    assert r["t_pvalue"] < 1e-10 and r["wilcoxon_pvalue"] < 1e-5
    assert [t["metric"] for t in paired_tests(frame_a, frame_b)] == ["psnr", "ssim"]


def test_paired_identical_and_inf(pair):
    frame_a, _, _, _ = pair
    r = paired_test(frame_a, frame_a, "psnr")
    assert r["mean_diff"] == 0 and r["t_pvalue"] == 1.0 and r["wilcoxon_pvalue"] == 1.0
    with_inf = frame_a.copy()
    with_inf.loc[0, "psnr"] = math.inf
    assert paired_test(with_inf, frame_a, "psnr")["n_dropped"] == 1


def test_paired_mismatched_ids_fail_clearly(pair):
    frame_a, frame_b, _, _ = pair
    with pytest.raises(CxrError, match="only in B"):
        paired_test(frame_a, frame_b.iloc[1:], "psnr")
    renamed = frame_b.copy()
    renamed.loc[renamed.index[0], "image_id"] = "99999999_000.png"
    with pytest.raises(CxrError, match="99999999_000.png"):
        paired_test(frame_a, renamed, "psnr")
    with pytest.raises(CxrError, match="repeated"):
        paired_test(pd.concat([frame_a, frame_a.iloc[:1]]), frame_b, "psnr")


# ------------------------------------------------------------------------------ patient-level statistics

from cxrdenoise.stats import (bootstrap_seed, cluster_bootstrap_ci, holm, paired_patient_test,  # noqa: E402
                              patient_mean_ci, replicate_mean_frame)


def _clustered(n_patients: int = 10, per_patient: int = 5, seed: int = 3) -> pd.DataFrame:
    """10 patients x 5 images, every image of a patient with exactly its patient's value (perfect correlation)."""
    values = np.random.default_rng(seed).normal(30, 2, n_patients)
    return pd.DataFrame({
        "image_id": [f"{p:08d}_{k:03d}.png" for p in range(n_patients) for k in range(per_patient)],
        "patient_id": [f"{p:08d}" for p in range(n_patients) for _ in range(per_patient)],
        "psnr": np.repeat(values, per_patient),
    }), values


def test_bootstrap_resamples_patients_not_images():
    frame, values = _clustered()
    cluster = cluster_bootstrap_ci(frame["psnr"], frame["patient_id"], resamples=4000, seed=11)
    ten = cluster_bootstrap_ci(values, np.arange(10), resamples=4000, seed=11)  # the 10 values alone
    images = cluster_bootstrap_ci(frame["psnr"], frame["image_id"], resamples=4000, seed=11)  # images as units
    width = lambda r: r["ci"][1] - r["ci"][0]  # noqa: E731
    assert cluster["n_patients"] == 10 and cluster["n_images"] == 50 and images["n_patients"] == 50
    assert cluster["mean"] == pytest.approx(values.mean())
    # identical images add no information: the cluster interval is the 10-value interval (same draws, same seed)
    assert cluster["ci"] == pytest.approx(ten["ci"])
    # resampling images instead would pretend to have 50 independent values: about sqrt(5) times narrower
    assert width(cluster) > 1.8 * width(images)


def test_bootstrap_is_deterministic_for_a_seed_and_changes_with_it():
    frame, _ = _clustered(n_patients=30, per_patient=2)
    frame["psnr"] += np.random.default_rng(1).normal(0, 1, len(frame))
    a = cluster_bootstrap_ci(frame["psnr"], frame["patient_id"], resamples=500, seed=42)
    b = cluster_bootstrap_ci(frame["psnr"], frame["patient_id"], resamples=500, seed=42)
    c = cluster_bootstrap_ci(frame["psnr"], frame["patient_id"], resamples=500, seed=43)
    assert a == b and a["ci"] != c["ci"] and a["seed"] == 42 and a["resamples"] == 500
    assert bootstrap_seed(2025, "unet", "0.1", "psnr") == bootstrap_seed(2025, "unet", "0.1", "psnr")
    assert bootstrap_seed(2025, "unet", "0.1", "psnr") != bootstrap_seed(2026, "unet", "0.1", "psnr")
    assert 0 <= bootstrap_seed(7, "x") < 2 ** 63


def test_bootstrap_drops_non_finite_and_needs_two_patients():
    r = cluster_bootstrap_ci([1.0, math.inf, 3.0, math.nan], ["a", "a", "b", "b"], resamples=50)
    assert (r["n_images"], r["n_dropped"], r["n_patients"]) == (2, 2, 2) and r["mean"] == 2.0
    assert cluster_bootstrap_ci([1.0, 2.0], ["a", "a"], resamples=50)["ci"] is None
    with pytest.raises(CxrError, match="bootstrap_resamples"):
        cluster_bootstrap_ci([1.0, 2.0], ["a", "b"], resamples=0)


def test_patient_mean_ci_keeps_the_t_interval_beside_the_bootstrap():
    frame, values = _clustered()
    r = patient_mean_ci(frame, "psnr", resamples=300, seed=5)
    assert r["n"] == 50 and r["n_patients"] == 10 and r["bootstrap_seed"] == 5
    lo, hi = r["ci95_patient_bootstrap"]
    assert lo < values.mean() < hi and (hi - lo) > 2 * r["ci95_t_halfwidth"]  # the t-interval ignores patients
    with pytest.raises(CxrError, match="patient_id"):
        patient_mean_ci(frame.drop(columns="patient_id"), "psnr")


def test_paired_patient_test_counts_each_patient_once():
    frame, _ = _clustered(n_patients=12, per_patient=5)
    rng = np.random.default_rng(2)
    shift = np.repeat(rng.normal(0.3, 0.5, 12), 5)  # one shift per patient, shared by its five images
    better = frame.assign(psnr=frame["psnr"] + shift)
    r = paired_patient_test(better, frame, "psnr", "new", "old", resamples=1000, seed=9)
    per_patient = shift[::5]
    assert (r["n_images"], r["n_patients"]) == (60, 12)
    assert r["mean_diff"] == pytest.approx(shift.mean())
    assert r["p_t"] == pytest.approx(sps.ttest_1samp(per_patient, 0).pvalue)  # 12 values, not 60
    assert r["p_wilcoxon"] == pytest.approx(sps.wilcoxon(per_patient).pvalue)
    image_level = sps.ttest_rel(better["psnr"], frame["psnr"]).pvalue
    assert image_level < r["p_t"]  # treating 60 correlated images as independent overstates the evidence
    lo, hi = r["ci95_patient_bootstrap"]
    assert lo < r["mean_diff"] < hi
    moved = frame.assign(patient_id=frame["patient_id"].where(frame.index != 0, "99999999"))
    with pytest.raises(CxrError, match="patient"):
        paired_patient_test(moved, frame, "psnr")
    same = paired_patient_test(frame, frame, "psnr", resamples=10)
    assert same["p_t"] == 1.0 and same["p_wilcoxon"] == 1.0 and same["mean_diff"] == 0


def test_holm_by_hand():
    # sorted: 0.01 (x4 = 0.04), 0.02 (x3 = 0.06), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> monotone: 0.06)
    assert holm([0.03, 0.01, 0.04, 0.02]) == pytest.approx([0.06, 0.04, 0.06, 0.06])
    # capped at 1, missing values kept in place and not counted in m (m = 2 here)
    assert holm([0.6, None, 0.01, math.nan]) == [pytest.approx(0.6), None, pytest.approx(0.02), None]
    assert holm([0.5, 0.4]) == pytest.approx([0.8, 0.8])
    assert holm([]) == []


def test_replicate_mean_frame_averages_image_by_image():
    frame, _ = _clustered(n_patients=4, per_patient=2)
    rep2 = frame.assign(psnr=frame["psnr"] + 2.0).iloc[::-1]  # other row order, same images
    mean = replicate_mean_frame([frame, rep2], metrics=("psnr",))
    assert mean["image_id"].tolist() == frame["image_id"].tolist() and (mean["n_replicates"] == 2).all()
    assert mean["psnr"].to_numpy() == pytest.approx(frame["psnr"].to_numpy() + 1.0)
    with_inf = frame.copy()
    with_inf.loc[0, "psnr"] = math.inf
    assert math.isinf(replicate_mean_frame([with_inf, frame], metrics=("psnr",))["psnr"][0])
    moved = frame.assign(patient_id=frame["patient_id"].where(frame.index != 0, "x"))
    with pytest.raises(CxrError, match="patient ids differ"):
        replicate_mean_frame([frame, moved])
    with pytest.raises(CxrError, match="only in"):
        replicate_mean_frame([frame, frame.iloc[1:]])
