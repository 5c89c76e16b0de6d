"""The training-free attacker: normalised cross-correlation (NCC) of what sets an image apart from the gallery's
mean, with the clean gallery aligned to the query over small shifts and scales.

Why each step (measured on the NIH sample and on phantoms, docs/privacy.md):

* Low-pass at every source size. Each view is a `size` x `size` bilinear sample of a region; before sampling,
  the image is blurred by a Gaussian of half a view pixel (`BLUR` x the view's step, in working pixels). The
  working images are area-downsampled from the source (images.work_size), which low-passes only when the source
  is larger than the working size: at a 64 px source nothing did, and the noise reached the views unfiltered.
  Scaling the blur to the view's step band-limits every view whatever the source size.
* The noisy query is viewed once; the clean gallery is transformed (each grid transform's inverse). Shifting
  and rescaling a noisy query re-interpolates its noise differently per transform, and the maximum over the grid
  then chases noise rather than anatomy (obfuscated top-1 fell below a plain NCC of 32 px images).
* Two regions, the full frame and its central part (a margin of `CROP` cut on every side: film markers,
  collimation): the outline of the body identifies a patient, the centre survives repositioning. The gallery's
  mean view is subtracted per region (otherwise every pair of chest films correlates at about 0.9).
* Each region's scores are standardised per query over the gallery (cohort / T-norm: mean and standard deviation
  of the query's scores against every gallery image but its own clean copy), then the two are summed. Without
  it, noisier queries score lower against everyone and pooled verification AUC mixes their scales.

It needs no training data (only the attacker's own gallery), so it is the floor any privacy claim must clear.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F

NAME = "ncc"
LABEL = "NCC (training-free)"
CROP = 0.2
REGIONS = (0.0, CROP)   # margins cut on every side: full frame, centre
MAX_SHIFT = 0.1
SHIFT_STEPS = 5
SCALES = (0.9, 1.0, 1.1)
BLUR = 0.5              # Gaussian pre-blur, in view pixels
NOTE = (f"Gaussian pre-blur of {BLUR:g} view pixel, then normalised cross-correlation of contrast-normalised "
        f"images minus the gallery mean, full frame and central {100 * (1 - 2 * CROP):.0f} %, the clean gallery "
        f"aligned to the query over shifts up to ±{100 * MAX_SHIFT / 2:.0f} % of the width and scales "
        f"{', '.join(map(str, SCALES))}; each region's scores standardised per query over the gallery and summed; "
        "no training")


def blur(images: torch.Tensor, std: float) -> torch.Tensor:
    """(N, 1, H, W) -> the same, separable Gaussian of `std` pixels (edges replicated); unchanged if std <= 0."""
    if std <= 0:
        return images
    r = max(1, int(np.ceil(3 * std)))
    t = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-t ** 2 / (2 * std ** 2))
    k = k / k.sum()
    x = F.conv2d(F.pad(images, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))


def lowpass(images: np.ndarray, size: int, margin: float) -> torch.Tensor:
    """(N, H, W) -> (N, 1, H, W), blurred by `BLUR` of the step of a `size` px view of the region."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    step = (1.0 - 2.0 * margin) * x.shape[-1] / size
    return blur(x, BLUR * step)


def views(x: torch.Tensor, size: int, margin: float, scale: float = 1.0, dx: float = 0.0, dy: float = 0.0) -> torch.Tensor:
    """(N, 1, H, W) low-passed images -> (N, size*size) zero-mean unit vectors of the transformed region (float64)."""
    c = (1.0 - 2.0 * margin) * scale
    theta = torch.tensor([[c, 0.0, dx], [0.0, c, dy]], dtype=torch.float32).expand(len(x), 2, 3)
    grid = F.affine_grid(theta, [len(x), 1, size, size], align_corners=False)
    v = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False).reshape(len(x), -1)
    return _unit(v.double())


def _unit(v: torch.Tensor) -> torch.Tensor:
    v = v - v.mean(dim=1, keepdim=True)
    return v / v.norm(dim=1, keepdim=True).clamp_min(1e-12)


def transforms() -> list[tuple[float, float, float]]:
    shifts = np.linspace(-MAX_SHIFT, MAX_SHIFT, SHIFT_STEPS)
    return [(float(s), float(dx), float(dy)) for s, dx, dy in itertools.product(SCALES, shifts, shifts)]


def region_scores(queries: np.ndarray, gallery: np.ndarray, size: int, margin: float) -> np.ndarray:
    """(n_query, n_gallery) highest NCC over the grid, the gallery viewed under each transform's inverse."""
    g = lowpass(gallery, size, margin)
    mean = views(g, size, margin).mean(dim=0, keepdim=True)
    q = _unit(views(lowpass(queries, size, margin), size, margin) - mean).numpy()
    out = np.full((len(queries), len(gallery)), -np.inf)
    for scale, dx, dy in transforms():
        np.maximum(out, q @ _unit(views(g, size, margin, 1.0 / scale, -dx, -dy) - mean).numpy().T, out=out)
    return out


def cohort_norm(scores: np.ndarray, self_index: np.ndarray | None = None) -> np.ndarray:
    """Standardise each query's row by the mean and SD of its scores, leaving out the query's own clean copy."""
    keep = np.ones(scores.shape, dtype=bool)
    if self_index is not None:
        keep[np.arange(len(scores)), np.asarray(self_index)] = False
    n = keep.sum(axis=1, keepdims=True).clip(min=1)
    mean = np.where(keep, scores, 0.0).sum(axis=1, keepdims=True) / n
    sd = np.sqrt((np.where(keep, scores - mean, 0.0) ** 2).sum(axis=1, keepdims=True) / n)
    return (scores - mean) / np.maximum(sd, 1e-12)


def similarity(queries: np.ndarray, gallery: np.ndarray, size: int, self_index: np.ndarray | None = None) -> np.ndarray:
    """(n_query, n_gallery) attacker score; `self_index` = gallery position of each query's own clean image."""
    return sum(cohort_norm(region_scores(queries, gallery, size, m), self_index) for m in REGIONS)
