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
