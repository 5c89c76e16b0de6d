"""Random streams derived from the config seed and a purpose, never from global state.

Deriving each stream from (seed, purpose, key) makes every choice independent of job order, shard layout and
rank count: the noise of one image is the same whether it is drawn first or last, on rank 0 or rank 1.
"""

from __future__ import annotations

import hashlib

import numpy as np


def derived_seed(seed: int, *keys: object) -> int:
    """A 128-bit integer from sha256 of the seed and keys; stable across Python versions and platforms."""
    text = "|".join([str(int(seed)), *map(str, keys)])
    return int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:16], "little")


def rng_for(seed: int, *keys: object) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(derived_seed(seed, *keys)))


def seed_everything(seed: int) -> None:
    """Seed python's, numpy's and torch's global generators (a training job's initial weights: the same seed on
    every rank gives identical weights, which DDP would broadcast from rank 0 anyway)."""
    import random

    import torch  # here, not at the top: the data stages import this module without torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def replicate_seed(seed: int, purpose: str, replicate: int) -> int:
    """The seed of one `purpose` ("init", "order", ...) of training replicate `replicate` (1-based).

    Replicate 1 gets the config seed itself, so a single-replicate run is exactly the run of before replicates
    existed; replicate k > 1 a 63-bit seed derived from (seed, purpose, k), which fits torch's manual_seed and
    DistributedSampler's `seed + epoch`."""
    if int(replicate) == 1:
        return int(seed)
    return derived_seed(seed, purpose, int(replicate)) % 2**63
