"""Per-image image-quality metrics: PSNR, SSIM (two window settings) and the LPIPS batch wrapper.

Why each choice (the study's published code differs on the first point):

* Every output is clamped to [0, 1] *before* any metric. The study scored raw network outputs, which can leave
  the valid intensity range; a value of 1.07 is not a displayable pixel, and scoring it rewards or penalises
  the model for something no reader sees.
* PSNR uses data_range 1: ``10 * log10(1 / MSE)``, computed in float64. Identical images give ``inf`` (not an
  error and not a cap); :mod:`cxrdenoise.stats` excludes infinities from means and counts them.
* ``ssim`` is scikit-image's standard SSIM, ``structural_similarity(x, y, data_range=1.0)`` (7x7 uniform
  window, no Gaussian weighting). ``ssim_w3`` is what the study's code computed (``win_size=3``, data_range 1),
  so its SSIM column can be compared like for like; the two are not interchangeable.
* LPIPS is computed by a scorer from :mod:`cxrdenoise.lpips_weights`, whose label says whether it is the real
  AlexNet/ImageNet LPIPS; here the grey image is only repeated to three channels and scaled to [-1, 1].
"""

from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import structural_similarity

METRIC_COLUMNS = ("psnr", "ssim", "ssim_w3", "lpips")


def clamp01(x: np.ndarray | torch.Tensor) -> np.ndarray | torch.Tensor:
    """Clamp to the valid intensity range [0, 1] (numpy or torch, same type out)."""
    if isinstance(x, torch.Tensor):
        return x.clamp(0.0, 1.0)
    return np.clip(x, 0.0, 1.0)


def _as_image(x: np.ndarray | torch.Tensor) -> np.ndarray:
    """One (H, W) float64 image, clamped; accepts (H, W) or (1, H, W)."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 3 and x.shape[0] == 1:
        x = x[0]
    if x.ndim != 2:
        raise ValueError(f"expected one (H, W) or (1, H, W) image, got shape {x.shape}")
    return np.clip(x, 0.0, 1.0)


def psnr(output: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> float:
    """PSNR in dB with data_range 1 after clamping both images; ``inf`` when they are identical."""
    x, y = _as_image(output), _as_image(target)
    if x.shape != y.shape:
        raise ValueError(f"shape mismatch: {x.shape} vs {y.shape}")
    mse = float(np.mean((x - y) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(1.0 / mse))


def ssim(output: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> float:
    """scikit-image's standard SSIM: 7x7 uniform window, data_range 1, after clamping."""
    return float(structural_similarity(_as_image(output), _as_image(target), data_range=1.0))


def ssim_w3(output: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> float:
    """SSIM as the study's code computed it (3x3 window, data_range 1), after clamping."""
    return float(structural_similarity(_as_image(output), _as_image(target), data_range=1.0, win_size=3))


def image_metrics(output: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> dict[str, float]:
    """PSNR, SSIM and SSIM-w3 of one image pair (LPIPS is batched separately, on the model's device)."""
    x, y = _as_image(output), _as_image(target)
    return {"psnr": psnr(x, y), "ssim": ssim(x, y), "ssim_w3": ssim_w3(x, y)}


def to_lpips_input(batch: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) grey in [0, 1] -> (N, 3, H, W) in [-1, 1], the input LPIPS expects; clamps first."""
    if batch.ndim != 4 or batch.shape[1] != 1:
        raise ValueError(f"expected an (N, 1, H, W) batch, got shape {tuple(batch.shape)}")
    return (clamp01(batch.float()) * 2.0 - 1.0).repeat(1, 3, 1, 1)
