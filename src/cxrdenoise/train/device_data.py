"""A split held in device memory in its storage dtype, batched by indexing on the device (the fast set-ups).

The study's U-Net split (7,499 pairs at 256x256 in float16) is 1 GB: it fits on any GPU, and indexing it there
replaces a DataLoader, its worker processes, pinned copies and numpy's float16->float32 cast on the host (4.6 of
the 5 ms per 16-image batch on the CPU) with one gather and one torch cast on the device.

The order is the DataLoader path's exactly: each epoch's indices are the same `DistributedSampler`'s
(`randperm(n, seed + epoch)` split over the ranks), consumed in batches of the same size, so gpu1 and gpu1_fast
see the same images in the same batches for a seed, and the sampler check reads the sampler's own indices.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from .distributed import DistContext


def stored_pairs(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor, float]:
    """(noisy, clean) of the whole split in their storage dtype, and the factor that decodes them to [0, 1].

    A PairDataset hands over its shards' arrays (float16 or uint8) undecoded; any other dataset of
    (noisy, clean) float tensors is stacked as it is."""
    stored = getattr(dataset, "stored_arrays", None)
    if callable(stored):
        noisy, clean = stored()
        scale = 1.0 / 255.0 if noisy.dtype == np.uint8 else 1.0
        return torch.from_numpy(np.ascontiguousarray(noisy)), torch.from_numpy(np.ascontiguousarray(clean)), scale
    pairs = [dataset[i] for i in range(len(dataset))]
    return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs]), 1.0


class DeviceLoader:
    """Iterates `(indices, noisy, clean)` batches like `loaders.make_loader`'s DataLoader, from device memory.

    `indices` is a device tensor (reading it would sync); `noisy` and `clean` are float32 (1, H, W) images,
    decoded on the device, in channels_last when asked."""

    def __init__(self, dataset: Dataset, ctx: DistContext, batch_size: int, *, shuffle: bool, seed: int,
                 channels_last: bool = False):
        noisy, clean, self.scale = stored_pairs(dataset)
        if noisy.dim() == 3:  # (N, H, W) shards -> (N, 1, H, W)
            noisy, clean = noisy[:, None], clean[:, None]
        self.noisy = noisy.to(ctx.device)
        self.clean = clean.to(ctx.device)
        self.storage_dtype = str(noisy.dtype).replace("torch.", "")
        self.device, self.batch_size, self.channels_last = ctx.device, batch_size, channels_last
        # the DataLoader path's sampler, so the order is the same for a seed and the check reads its indices
        self.sampler = DistributedSampler(range(len(dataset)), num_replicas=ctx.world_size, rank=ctx.rank,
                                          shuffle=shuffle, seed=seed, drop_last=False)

    @property
    def nbytes(self) -> int:
        return self.noisy.nelement() * self.noisy.element_size() * 2

    def __len__(self) -> int:
        return -(-len(self.sampler) // self.batch_size)

    def _decode(self, stored: torch.Tensor) -> torch.Tensor:
        x = stored.float()
        if self.scale != 1.0:
            x = x / 255.0  # as shards.decode: float32 division by 255
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def __iter__(self):
        order = torch.as_tensor(list(self.sampler), dtype=torch.int64).to(self.device, non_blocking=True)
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            yield idx, self._decode(self.noisy.index_select(0, idx)), self._decode(self.clean.index_select(0, idx))
