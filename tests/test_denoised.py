import math

from cxrdenoise.denoised import did_not_denoise


def test_flag_when_not_above_noisy():
    assert did_not_denoise(17.0, 17.9)
    assert did_not_denoise(17.9, 17.9)
    assert not did_not_denoise(24.0, 17.9)


def test_flag_when_missing_or_not_finite():
    assert did_not_denoise(None, 17.9)
    assert did_not_denoise(math.nan, 17.9)
    assert not did_not_denoise(24.0, None)  # no noisy row to compare with: nothing to flag
