"""Tiny data and nets for the training tests (no test functions here).

Module-level so torch.multiprocessing's spawned DDP ranks can unpickle them.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import Dataset

from cxrdenoise.train.settings import TrainSettings


class TinyPairs(Dataset):
    """n deterministic (noisy, clean) pairs of (1, size, size) float32, like PairDataset's items."""

    def __init__(self, n: int = 16, size: int = 32, seed: int = 0, sigma: float = 0.1):
        g = torch.Generator().manual_seed(seed)
        base = torch.rand(n, 1, size // 4, size // 4, generator=g)
        self.clean = nn.functional.interpolate(base, size=(size, size), mode="bilinear", align_corners=False)
        noise = 0.1 + sigma * torch.randn(self.clean.shape, generator=g)
        self.noisy = (self.clean + noise).clamp(0, 1)
        self.noise_mean = 0.1

    def __len__(self) -> int:
        return len(self.clean)

    def __getitem__(self, i: int):
        return self.noisy[i], self.clean[i]


class TinyNet(nn.Module):
    """Two convolutions and a residual; `deep_supervision` returns 4 heads in train mode like U-Net++."""

    def __init__(self, channels: int = 4, deep_supervision: bool = False):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, 1, 3, padding=1))
        self.deep_supervision = deep_supervision

    def forward(self, x):
        out = x - self.body(x)
        if self.deep_supervision and self.training:
            return [out * (1 + 0.01 * k) for k in range(4)]
        return out


class NaNNet(TinyNet):
    def forward(self, x):
        return super().forward(x) * float("nan")


def tiny_factory(name: str, **kwargs) -> nn.Module:
    if name == "tiny":
        return TinyNet(**kwargs)
    if name == "nan":
        return NaNNet(**kwargs)
    if name == "overflow":
        return OverflowNet(**kwargs)
    from cxrdenoise.models import build_model

    return build_model(name, **kwargs)


def settings(setup: str = "gpu1", **over) -> TrainSettings:
    base = dict(model="tiny", setup=setup, sigma="0.1", model_kwargs={"channels": 4}, epochs=1, lr=1e-3,
                batch_per_gpu=4, workers=0, seed=11, device="cpu", log_every=2, keep_last=True, threads=1)
    base.update(over)
    return TrainSettings(**base)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dump_indices(path: str, epoch: int, info: dict) -> None:
    """on_epoch_end hook: rank 0 writes the train indices every rank used this epoch."""
    import json

    if info["rank"] == 0:
        with open(f"{path}/indices_epoch{epoch}.json", "w") as fh:
            json.dump(info["rank_indices"], fh)


def ddp_rank(rank: int, world: int, port: int, out_dir: str, setup: str, n_train: int, n_val: int, over: dict) -> None:
    """One gloo rank of a DDP run, as torchrun would start it (env:// rendezvous)."""
    import functools
    import os

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from cxrdenoise.train.distributed import init_distributed, teardown
    from cxrdenoise.train.engine import run_training

    ctx = init_distributed("cpu", world)
    try:
        run_training(settings(setup, **over), TinyPairs(n_train), TinyPairs(n_val, seed=1), out_dir, ctx,
                     model_factory=tiny_factory, config_hash="test",
                     on_epoch_end=functools.partial(dump_indices, out_dir))
    finally:
        teardown(ctx)


class OverflowNet(TinyNet):
    """Finite loss (~1e35) whose scaled gradients overflow float32: every step is one GradScaler skips."""

    def forward(self, x):
        return super().forward(x) * 1e35


def _bn_rank_env(rank: int, world: int, port: int):
    import os

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    from cxrdenoise.train.distributed import init_distributed

    return init_distributed("cpu", world)


def buffer_probe_rank(rank: int, world: int, port: int, out_dir: str, setup: str, n_train: int, n_val: int,
                      over: dict) -> None:
    """One gloo rank training the real U-Net (study block, base 4); before and after every validation it saves
    this rank's buffers to buffers_rank{rank}_epoch{epoch}.pt (eval mode leaves them as validation used them)."""
    from cxrdenoise.train.distributed import teardown
    from cxrdenoise.train.engine import Trainer

    class BufferProbe(Trainer):
        def validate(self):
            before = {k: v.detach().clone() for k, v in self.bare.named_buffers()}
            result = super().validate()
            used = {k: v.detach().clone() for k, v in self.bare.named_buffers()}
            torch.save({"before": before, "used": used},
                       f"{self.out}/buffers_rank{self.ctx.rank}_epoch{len(self.progress.epochs) + 1}.pt")
            return result

    ctx = _bn_rank_env(rank, world, port)
    try:
        s = settings(setup, **{"model": "unet", "model_kwargs": {"base_channels": 4}, **over})
        BufferProbe(s, TinyPairs(n_train), TinyPairs(n_val, seed=1), out_dir, ctx, config_hash="test").run()
    finally:
        teardown(ctx)

