"""Metric values on hand-made cases, and the LPIPS weight handling (absent, random backbone, cached file)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from cxrdenoise import lpips_weights as lw
from cxrdenoise.errors import CxrError
from cxrdenoise.metrics import clamp01, image_metrics, psnr, ssim, ssim_w3, to_lpips_input


@pytest.fixture
def textured() -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:64, 0:64]
    base = 0.5 + 0.25 * np.sin(xx / 3.0) * np.cos(yy / 5.0)
    return np.clip(base + 0.05 * rng.standard_normal((64, 64)), 0, 1)


@pytest.fixture
def no_lpips_env(monkeypatch):
    monkeypatch.delenv(lw.BACKBONE_ENV, raising=False)


def test_identical_images(textured):
    m = image_metrics(textured, textured)
    assert m["psnr"] == math.inf
    assert m["ssim"] == pytest.approx(1.0)
    assert m["ssim_w3"] == pytest.approx(1.0)


def test_known_mse_gives_known_psnr():
    clean = np.full((32, 32), 0.5)
    assert psnr(clean + 0.1, clean) == pytest.approx(20.0)  # MSE 0.01 -> 10 log10(1 / 0.01)
    assert psnr(clean + 0.01, clean) == pytest.approx(40.0)
    # torch tensors and (1, H, W) shapes are accepted alike
    assert psnr(torch.full((1, 32, 32), 0.6), torch.full((1, 32, 32), 0.5)) == pytest.approx(20.0, abs=1e-5)


def test_ssim_is_skimage_standard_and_w3_differs(textured):
    rng = np.random.default_rng(1)
    noisy = np.clip(textured + 0.1 * rng.standard_normal(textured.shape), 0, 1)
    assert ssim(noisy, textured) == pytest.approx(structural_similarity(noisy, textured, data_range=1.0))
    assert ssim_w3(noisy, textured) == pytest.approx(
        structural_similarity(noisy, textured, data_range=1.0, win_size=3)
    )
    assert abs(ssim(noisy, textured) - ssim_w3(noisy, textured)) > 1e-3


def test_outputs_clamped_before_metrics(textured):
    clean = textured.copy()
    clean[:8] = 1.0
    clean[8:16] = 0.0
    out = clean.copy()
    out[:8] = 1.3  # out of range where clean is at the limits: identical after clamping
    out[8:16] = -0.2
    m = image_metrics(out, clean)
    assert m["psnr"] == math.inf and m["ssim"] == pytest.approx(1.0) and m["ssim_w3"] == pytest.approx(1.0)
    # an unclamped PSNR would be finite
    assert np.mean((out - clean) ** 2) > 0
    x = to_lpips_input(torch.tensor(out, dtype=torch.float32)[None, None])
    assert x.shape == (1, 3, 64, 64) and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x[:, 0], x[:, 2])
    assert clamp01(np.array([-1.0, 2.0])).tolist() == [0.0, 1.0]


def test_lpips_random_backbone_is_labelled_and_zero_on_identical(no_lpips_env):
    scorer = lw.load_lpips(backbone="random")
    assert scorer.status == "random-backbone (NOT LPIPS)"
    assert scorer.kind == "random-backbone" and scorer.column == "lpips_random_backbone"
    assert scorer.info()["lpips_kind"] != "alexnet-imagenet"
    x = torch.rand(2, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    y = torch.rand(2, 1, 48, 48, generator=torch.Generator().manual_seed(1))
    assert scorer.score(x, x) == pytest.approx([0.0, 0.0], abs=1e-7)
    assert np.all(scorer.score(x, y) > 0)
    # deterministic: a second scorer gives the same numbers
    assert lw.load_lpips(backbone="random").score(x, y) == pytest.approx(scorer.score(x, y))
    with pytest.raises(CxrError, match="at least 31x31"):
        scorer.score(x[..., :30, :], y[..., :30, :])


def test_env_var_selects_backbone(monkeypatch):
    monkeypatch.setenv(lw.BACKBONE_ENV, "random")
    assert lw.load_lpips().kind == "random-backbone"
    monkeypatch.setenv(lw.BACKBONE_ENV, "vgg")
    with pytest.raises(CxrError, match="vgg"):
        lw.load_lpips()


def test_lpips_absent_is_nan_with_message(tmp_path, monkeypatch, no_lpips_env):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty"))
    scorer = lw.load_lpips()
    expected = tmp_path / "empty" / "hub" / "checkpoints" / "alexnet-owt-7be5be79.pth"
    assert scorer.status == "unavailable" and scorer.kind == "none" and not scorer.available
    assert str(expected) in scorer.message and lw.ALEXNET_URL in scorer.message
    assert np.isnan(scorer.score(torch.zeros(3, 1, 16, 16), torch.zeros(3, 1, 16, 16))).all()
    assert not expected.exists()  # nothing was downloaded


def test_lpips_disabled(no_lpips_env):
    scorer = lw.load_lpips(enabled=False)
    assert scorer.status == "disabled" and np.isnan(scorer.score(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)))


def _fake_alexnet_file(torch_home):
    """A file with torchvision AlexNet's `features.*` keys (random values) at the hub cache path."""
    import torchvision

    path = torch_home / "hub" / "checkpoints" / lw.ALEXNET_FILE
    path.parent.mkdir(parents=True)
    state = torchvision.models.alexnet(weights=None).state_dict()
    features = {k: v for k, v in state.items() if k.startswith("features")}
    torch.save(features, path)
    return path


def test_cached_file_with_wrong_hash_is_refused(tmp_path, monkeypatch, no_lpips_env):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    _fake_alexnet_file(tmp_path)
    scorer = lw.load_lpips()
    assert scorer.status == "unavailable" and "sha256" in scorer.message and scorer.net is None


def test_cached_file_is_loaded_into_backbone(tmp_path, monkeypatch, no_lpips_env):
    """The key mapping features.i -> slice_k.i covers every backbone tensor (hash check bypassed)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = _fake_alexnet_file(tmp_path)
    monkeypatch.setattr(lw, "ALEXNET_SHA256_PREFIX", "")
    scorer = lw.load_lpips()
    assert scorer.status == "ok" and scorer.kind == "alexnet-imagenet" and scorer.column == "lpips"
    saved = torch.load(path, weights_only=True)
    assert torch.equal(getattr(scorer.net.net.slice5, "10").weight, saved["features.10.weight"])
    assert torch.equal(getattr(scorer.net.net.slice1, "0").bias, saved["features.0.bias"])


@pytest.mark.parametrize("shape", [(5, 64, 64), (3, 37, 53), (2, 7, 9)])
def test_stack_metrics_equal_image_metrics_to_the_bit(shape):
    """Evaluation on the CPU scores a batch at once: the numbers must be scikit-image's exactly (==, not approx),
    out-of-range outputs and an exact reproduction (PSNR inf) included."""
    from cxrdenoise.metrics import stack_metrics

    rng = np.random.default_rng(sum(shape))
    output = (rng.random(shape, dtype=np.float32) * 1.3 - 0.15).astype(np.float32)
    target = np.clip(output + rng.normal(0, 0.1, shape), 0, 1).astype(np.float32)
    output[0] = target[0]
    got = stack_metrics(output, target)
    for j in range(shape[0]):
        ref = image_metrics(output[j], target[j])
        assert {k: got[k][j] for k in ref} == ref
    assert got["psnr"][0] == math.inf


def test_stack_metrics_refuses_mismatched_or_too_small_stacks():
    from cxrdenoise.metrics import stack_metrics

    with pytest.raises(ValueError, match="one shape"):
        stack_metrics(np.zeros((2, 16, 16)), np.zeros((2, 16, 17)))
    with pytest.raises(ValueError, match="smaller than"):
        stack_metrics(np.zeros((1, 5, 16)), np.zeros((1, 5, 16)))


def test_metrics_module_imports_no_scipy_or_skimage():
    """LPIPS and the device path import cxrdenoise.metrics; scipy.ndimage and scikit-image cost a job start-up
    ~0.3 s and are imported only when a host metric is computed."""
    import subprocess
    import sys

    code = ("import sys, cxrdenoise.metrics, cxrdenoise.lpips_weights, cxrdenoise.device_metrics; "
            "print(sorted(m for m in ('scipy.ndimage', 'skimage', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
