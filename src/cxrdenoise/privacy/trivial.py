"""The trivial baseline: NCC of area-downsampled images, no alignment, no training.

Each image is area-downsampled to `SIZE` x `SIZE` (or kept at the source size if that is smaller), made zero
mean and unit norm, and a pair's score is the dot product. Area averaging is itself a low-pass, so this is
what any attacker that claims to be stronger must at least match on the same queries and gallery; the privacy
stage scores it beside every attacker and the claim rule flags an attacker that falls below it.
"""

from __future__ import annotations

import numpy as np

from .images import BASELINE_SIZE, downsample

NAME = "trivial"
SIZE = BASELINE_SIZE
LABEL = f"trivial baseline (NCC of {SIZE}×{SIZE} area-downsampled images)"
NOTE = (f"area-downsample to {SIZE}×{SIZE} px (the source size if smaller), zero mean and unit norm per image, "
        "dot product; no shifts, no gallery mean, no training")


def working_size(source_size: int) -> int:
    return min(SIZE, int(source_size))


def _unit(images: np.ndarray, size: int) -> np.ndarray:
    v = downsample(images, size).reshape(len(images), -1).astype(np.float64)
    v -= v.mean(axis=1, keepdims=True)
    return v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)


def similarity(queries: np.ndarray, gallery: np.ndarray, source_size: int) -> np.ndarray:
    """(n_query, n_gallery) NCC at min(SIZE, source_size) px."""
    size = working_size(source_size)
    return _unit(queries, size) @ _unit(gallery, size).T
