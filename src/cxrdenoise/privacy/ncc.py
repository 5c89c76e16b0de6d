"""The training-free attacker: normalised cross-correlation of downsampled, contrast-normalised images.

After `images.preprocess` every image is a zero-mean unit-norm vector, so the NCC of two images is their dot
product. It needs no training data, so it is the floor any privacy claim must clear.
"""

from __future__ import annotations

import numpy as np

NAME = "ncc"
LABEL = "NCC (training-free)"


def embed(images: np.ndarray) -> np.ndarray:
    """(N, H, W) preprocessed images -> (N, H*W) unit vectors."""
    flat = np.asarray(images, dtype=np.float64).reshape(len(images), -1)
    return flat / np.maximum(np.linalg.norm(flat, axis=1, keepdims=True), 1e-12)
