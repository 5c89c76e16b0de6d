"""The training-free attacker: normalised cross-correlation (NCC) of what sets an image apart from the gallery's
mean, maximised over small shifts and scales.

Each gallery image is viewed once: its central region (a margin of `CROP` of the width cut on every side, where
the film markers and the collimation edge sit) sampled to `size` x `size` and contrast-normalised (zero mean,
unit norm). The mean of these gallery views (the anatomy every chest film shares) is subtracted from every view,
gallery and query alike, before the NCC: without that, every pair of chest films correlates at about 0.9 and
the score mostly measures positioning. A query is viewed under every transform of a small grid (shifts up to
`MAX_SHIFT` of the half-width in x and y, scales `SCALES`), because follow-ups of one patient are never
positioned identically, and a pair's score is the highest NCC over the grid. It needs no training data (only the
attacker's own gallery), so it is the floor any privacy claim must clear.
"""

from __future__ import annotations

import itertools

import numpy as np
import torch
import torch.nn.functional as F

NAME = "ncc"
LABEL = "NCC (training-free)"
CROP = 0.2
MAX_SHIFT = 0.1
SHIFT_STEPS = 5
SCALES = (0.9, 1.0, 1.1)
NOTE = (f"gallery mean subtracted, then normalised cross-correlation of the central {100 * (1 - 2 * CROP):.0f} % of contrast-normalised images, "
        f"maximised over shifts up to ±{100 * MAX_SHIFT / 2:.0f} % of the width and scales {', '.join(map(str, SCALES))}; "
        "no training")


def views(images: np.ndarray, size: int, scale: float = 1.0, dx: float = 0.0, dy: float = 0.0) -> torch.Tensor:
    """(N, H, W) images -> (N, size*size) zero-mean unit vectors of the transformed central region (float64)."""
    x = torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))[:, None]
    c = (1.0 - 2.0 * CROP) * scale
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


def similarity(queries: np.ndarray, gallery: np.ndarray, size: int, chunk: int = 512) -> np.ndarray:
    """(n_query, n_gallery) highest NCC of each query, over the transform grid, with each gallery image."""
    g0 = views(gallery, size)
    mean = g0.mean(dim=0, keepdim=True)
    g = _unit(g0 - mean).numpy()
    out = np.full((len(queries), len(gallery)), -np.inf)
    for start in range(0, len(queries), chunk):
        q = queries[start:start + chunk]
        for scale, dx, dy in transforms():
            np.maximum(out[start:start + chunk], _unit(views(q, size, scale, dx, dy) - mean).numpy() @ g.T, out=out[start:start + chunk])
    return out
