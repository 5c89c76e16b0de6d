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

:func:`stack_metrics` gives the numbers of :func:`image_metrics` to the bit for a whole batch at once (evaluation
on the CPU). scikit-image and scipy are imported when a metric is computed, not with this module: LPIPS, the
device path and the CLI import it without needing them. What the tables know about each metric (label, unit,
precision, direction) is in :mod:`cxrdenoise.metric_registry`, which does not import torch.
"""

from __future__ import annotations

import numpy as np
import torch

SSIM_WINDOWS = {"ssim": 7, "ssim_w3": 3}
K1, K2 = 0.01, 0.03  # scikit-image's structural_similarity defaults


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
    from skimage.metrics import structural_similarity

    return float(structural_similarity(_as_image(output), _as_image(target), data_range=1.0))


def ssim_w3(output: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> float:
    """SSIM as the study's code computed it (3x3 window, data_range 1), after clamping."""
    from skimage.metrics import structural_similarity

    return float(structural_similarity(_as_image(output), _as_image(target), data_range=1.0, win_size=3))


def image_metrics(output: np.ndarray | torch.Tensor, target: np.ndarray | torch.Tensor) -> dict[str, float]:
    """PSNR, SSIM and SSIM-w3 of one image pair (LPIPS is batched separately, on the model's device)."""
    x, y = _as_image(output), _as_image(target)
    return {"psnr": psnr(x, y), "ssim": ssim(x, y), "ssim_w3": ssim_w3(x, y)}


def stack_metrics(output: np.ndarray, target: np.ndarray) -> dict[str, list[float]]:
    """``psnr``, ``ssim`` and ``ssim_w3`` of two (N, H, W) stacks, equal to the bit to :func:`image_metrics` image
    by image, at a fraction of its calls.

    Why it is bit-identical: it performs scikit-image's ``structural_similarity`` (uniform window, sample
    covariance, data_range 1) float64 operation by operation in the same order, on the same (H, W) arrays; what
    it saves is the per-call checks and copies, the clamping done once per stack, and the products x*x, y*y and
    x*y, which are the same arrays for both windows and are computed once. ``tests/test_metrics.py`` checks
    equality with ``==``.
    """
    from scipy.ndimage import uniform_filter

    x = np.clip(np.asarray(output, dtype=np.float64), 0.0, 1.0)
    y = np.clip(np.asarray(target, dtype=np.float64), 0.0, 1.0)
    if x.ndim != 3 or x.shape != y.shape:
        raise ValueError(f"expected two (N, H, W) stacks of one shape, got {x.shape} and {y.shape}")
    if min(x.shape[1:]) < max(SSIM_WINDOWS.values()):
        raise ValueError(f"images of {x.shape[1:]} are smaller than the SSIM windows {SSIM_WINDOWS}")
    out: dict[str, list[float]] = {"psnr": [], **{name: [] for name in SSIM_WINDOWS}}
    c1, c2 = K1**2, K2**2  # (K * data_range) ** 2, data_range 1
    h, w = x.shape[1:]
    for xi, yi in zip(x, y):  # image by image: a whole stack per filter call is slower (cache misses)
        mse = float(np.mean((xi - yi) ** 2))
        out["psnr"].append(float("inf") if mse == 0.0 else float(10.0 * np.log10(1.0 / mse)))
        products = (xi * xi, yi * yi, xi * yi)
        for name, win in SSIM_WINDOWS.items():
            n_px = win**2
            cov_norm = n_px / (n_px - 1)
            ux, uy = uniform_filter(xi, size=win), uniform_filter(yi, size=win)
            uxx, uyy, uxy = (uniform_filter(p, size=win) for p in products)
            vx = cov_norm * (uxx - ux * ux)
            vy = cov_norm * (uyy - uy * uy)
            vxy = cov_norm * (uxy - ux * uy)
            a1, a2, b1, b2 = (2 * ux * uy + c1, 2 * vxy + c2, ux**2 + uy**2 + c1, vx + vy + c2)
            s_map = (a1 * a2) / (b1 * b2)
            pad = (win - 1) // 2
            out[name].append(float(s_map[pad : h - pad, pad : w - pad].mean(dtype=np.float64)))
    return out


def to_lpips_input(batch: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W) grey in [0, 1] -> (N, 3, H, W) in [-1, 1], the input LPIPS expects; clamps first."""
    if batch.ndim != 4 or batch.shape[1] != 1:
        raise ValueError(f"expected an (N, 1, H, W) batch, got shape {tuple(batch.shape)}")
    return (clamp01(batch.float()) * 2.0 - 1.0).repeat(1, 3, 1, 1)
