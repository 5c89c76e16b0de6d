"""Classical denoisers (Table VI baselines): each improves a real radiograph, the clipped-mean handling is right,
and BM3D's optional package is skipped with a clear reason."""

import importlib.util

import numpy as np
import pytest

from cxrdenoise import classical
from cxrdenoise.errors import CxrError
from cxrdenoise.imaging import load_grey
from cxrdenoise.metrics import psnr
from cxrdenoise.shards import image_noise

MEAN = 0.1  # the study's noise mean


def _real_pair(nih_sample_dir, sigma, name="00000011_000.png"):
    clean = load_grey(nih_sample_dir / name)[0] / 255.0
    noisy = np.clip(clean + image_noise(5, name, sigma, MEAN, clean.shape), 0.0, 1.0)
    return clean, noisy


@pytest.mark.parametrize("method", sorted(classical.METHODS))
def test_each_method_improves_a_real_radiograph(nih_sample_dir, method):
    if classical.missing_package(method):
        pytest.skip(classical.missing_package(method))
    clean, noisy = _real_pair(nih_sample_dir, 0.1)
    out = classical.denoise(method, noisy, 0.1, MEAN)
    assert out.dtype == np.float32 and out.shape == clean.shape
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert psnr(out, clean) > psnr(noisy, clean) + 5.0  # 17.3 dB noisy; 30-32 dB measured


@pytest.mark.parametrize("sigma", [0.2, 0.3])
def test_inverting_the_clipped_mean_beats_subtracting_it_and_ignoring_it(nih_sample_dir, sigma):
    clean, noisy = _real_pair(nih_sample_dir, sigma)
    scores = {mh: psnr(classical.denoise("tv", noisy, sigma, MEAN, mean_handling=mh), clean)
              for mh in classical.MEAN_HANDLING}
    assert scores["invert"] > scores["subtract"] + 0.3
    assert scores["invert"] > scores["naive"] + 1.0


def test_clipped_expectation_matches_monte_carlo_and_inverts():
    rng = np.random.default_rng(0)
    clean = np.array([0.0, 0.05, 0.5, 0.9, 1.0])
    draws = np.clip(clean[:, None] + rng.normal(MEAN, 0.3, (5, 200_000)), 0.0, 1.0).mean(axis=1)
    np.testing.assert_allclose(classical.clipped_expectation(clean, MEAN, 0.3), draws, atol=2e-3)
    back = classical.invert_clipped_expectation(classical.clipped_expectation(clean, MEAN, 0.3), MEAN, 0.3)
    np.testing.assert_allclose(back, clean, atol=1e-3)


def test_zero_mean_noise_without_clipping_needs_no_correction():
    mid = np.linspace(0.3, 0.7, 9)  # far from 0 and 1: clipping never happens at sigma 15/255
    np.testing.assert_allclose(classical.clipped_expectation(mid, 0.0, 15 / 255), mid, atol=1e-9)


def test_missing_optional_package_is_a_clear_skip(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "bm3d" else real(name, *a))
    reason = classical.missing_package("bm3d")
    assert reason and "bm3d" in reason and "non-commercial" in reason
    with pytest.raises(CxrError, match="not installed"):
        classical.denoise("bm3d", np.zeros((8, 8)), 0.1, MEAN)
    assert classical.missing_package("tv") is None


def test_bad_method_and_mean_handling_are_one_line_errors():
    with pytest.raises(CxrError, match="unknown classical denoiser 'bm4d'; available: bm3d"):
        classical.denoise("bm4d", np.zeros((8, 8)), 0.1, MEAN)
    with pytest.raises(CxrError, match="mean_handling must be one of invert, subtract, naive"):
        classical.denoise("tv", np.zeros((8, 8)), 0.1, MEAN, mean_handling="median")
    with pytest.raises(CxrError, match=r"expected one \(H, W\) image"):
        classical.denoise("tv", np.zeros((1, 8, 8)), 0.1, MEAN)
