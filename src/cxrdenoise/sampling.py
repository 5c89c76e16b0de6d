"""Seeded selection of the study's N images from the inventory."""

from __future__ import annotations

import numpy as np
import pandas as pd
from tqdm import tqdm

from .errors import CxrError
from .hashing import file_sha256
from .seeding import rng_for

COLUMNS = ["image_id", "patient_id", "view_position", "source_path", "source_sha256"]


def sample_images(inventory: pd.DataFrame, n_images: int, seed: int, progress: bool = True) -> pd.DataFrame:
    """Choose `n_images` without replacement; the choice depends only on the seed and the sorted image ids."""
    available = len(inventory)
    if n_images > available:
        raise CxrError(f"sample.n_images is {n_images} but only {available} images are available")
    ordered = inventory.sort_values("image_id", ignore_index=True)
    picks = np.sort(rng_for(seed, "sample").choice(available, size=n_images, replace=False))
    chosen = ordered.iloc[picks].reset_index(drop=True)
    hashes = [file_sha256(p) for p in tqdm(chosen["source_path"], desc="sha256 of sampled sources",
                                           disable=not progress, unit="img")]
    return chosen.assign(source_sha256=hashes)[COLUMNS]
