"""DataLoaders whose order depends only on (seed, epoch), for every set-up.

Every set-up, single-process ones included, draws its indices from `DistributedSampler` (with one replica when
there is one process): its permutation is `randperm(n, generator=seed + epoch)`, so a resumed run sees exactly
the batches an uninterrupted one would, and no global RNG stream is involved.

Validation uses a non-shuffled DistributedSampler. It pads the last round with repeated images so every rank
gets the same count; `padding_mask` marks those repeats so the validation loss counts each image exactly once.
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .distributed import DistContext


class IndexedDataset(Dataset):
    """Yields `(index, noisy, clean)` so each rank can report which images it actually trained on."""

    def __init__(self, base: Dataset):
        self.base = base

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i: int):
        noisy, clean = self.base[i]
        return i, noisy, clean


def make_loader(
    dataset: Dataset, ctx: DistContext, batch_size: int, *, shuffle: bool, seed: int, workers: int, pin: bool
) -> DataLoader:
    sampler = DistributedSampler(
        dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle, seed=seed, drop_last=False
    )
    return DataLoader(
        IndexedDataset(dataset),
        batch_size=batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin,
        persistent_workers=workers > 0,
        drop_last=False,
    )


def padding_mask(first_position: int, count: int, n_items: int, ctx: DistContext) -> torch.Tensor:
    """True for real items among this rank's samples `first_position .. first_position+count-1`.

    DistributedSampler gives rank r the padded global positions r, r+W, r+2W, ...; a position >= n_items is a
    repeat added only to even out the ranks.
    """
    k = torch.arange(first_position, first_position + count)
    return (ctx.rank + k * ctx.world_size) < n_items


def padding_count(n_items: int, world_size: int) -> int:
    """Images repeated per epoch so every rank gets the same number (DistributedSampler, drop_last=False)."""
    return -n_items % world_size
