"""The study's own training loops, re-written (not copied) for the whole-epoch benchmark (bench_epoch.py), so the
Trainer is timed against what the study actually ran, on the same net, data and batch.

Source read: github.com/Suadey/medical-image-denoising-ddp at commit a5d2fbc588d65fbd8db6fd75388dd7f02b19b206,
* `UNET/unet x_ray.ipynb`, cell 14 (`train_model`): the single-GPU loop (gpu1). Per epoch: Adam + L1Loss over a
  DataLoader of float32 tensors held in memory (shuffle=True), `loss.item()` after every step; validation under
  `no_grad` with `loss.item()` per batch, the mean of the batch means; `torch.save(model.state_dict())` when the
  validation loss improved. Nothing else is written (no resume state, no records).
* `UNET_DistributedTraining/train_ddp_unet.py`, `train_model_ddp`: the DDP + AMP loop (ddp2_amp). DistributedSampler
  (set_epoch per epoch), autocast + GradScaler, `loss.item()` per step; validation under autocast, per batch
  `loss.item()`, a PSNR of the batch and the mean scikit-image SSIM (data_range 1) of its images, each `.item()`;
  no all-reduce (each rank averages its own share; rank 0 decides); rank 0 saves `model.module.state_dict()` when
  its validation loss improved. Its test evaluation every 10th epoch is left out (a separate stage here).

Deviations, all forced by running on the same footing as the Trainer: the net is cxrdenoise's (the study's
notebook net returns a dict of every layer's output; the loop reads its "final"), the data are the benchmark's
phantom shards decoded once into float32 tensors (the study decodes its PNGs once the same way), and on the CPU
autocast runs bfloat16 without a GradScaler (float16 autocast and GradScaler need CUDA).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset


class XrayPairs(Dataset):
    """The study's in-memory dataset: (noisy, clean) float32 tensors, indexed."""

    def __init__(self, noisy: torch.Tensor, clean: torch.Tensor):
        self.noisy, self.clean = noisy, clean

    def __len__(self) -> int:
        return len(self.noisy)

    def __getitem__(self, i: int):
        return self.noisy[i], self.clean[i]


def decoded(ds: Dataset) -> XrayPairs:
    """A split decoded once into float32 tensors, as the study holds its images."""
    pairs = [ds[i] for i in range(len(ds))]
    return XrayPairs(torch.stack([p[0] for p in pairs]).float(), torch.stack([p[1] for p in pairs]).float())


def _final(out):
    return out[-1] if isinstance(out, (list, tuple)) else out


def gpu1_loop(model: nn.Module, train_set: Dataset, val_set: Dataset, *, epochs: int, batch: int, lr: float,
              device: torch.device, save_path: Path) -> Iterator[float]:
    """The notebook's `train_model`, one epoch per `next()` (yields the best validation loss so far), so the
    benchmark can interleave it epoch by epoch with the other loops."""
    train_loader = DataLoader(train_set, batch_size=batch, shuffle=True)
    val_loader = DataLoader(val_set, batch_size=batch)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.L1Loss()
    best_loss = float("inf")
    for epoch in range(epochs):
        model.train()
        train_loss = 0.0
        for noisy, clean in train_loader:
            noisy, clean = noisy.to(device), clean.to(device)
            optimizer.zero_grad()
            loss = loss_fn(_final(model(noisy)), clean)
            loss.backward()
            optimizer.step()
            train_loss += loss.item()
        val_loss = 0.0
        model.eval()
        with torch.no_grad():
            for noisy, clean in val_loader:
                noisy, clean = noisy.to(device), clean.to(device)
                val_loss += loss_fn(_final(model(noisy)), clean).item()
        avg_val = val_loss / len(val_loader)
        _ = train_loss / len(train_loader)  # printed by the study; kept so the work is the same
        if avg_val < best_loss:
            best_loss = avg_val
            torch.save(model.state_dict(), save_path)
        yield best_loss


def _psnr(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    return 10 * torch.log10(1.0 / F.mse_loss(y_pred, y_true))


def _ssim_mean(y_true: torch.Tensor, y_pred: torch.Tensor) -> torch.Tensor:
    from skimage.metrics import structural_similarity

    t = y_true.detach().float().cpu().numpy()
    p = y_pred.detach().float().cpu().numpy()
    return torch.tensor([structural_similarity(t[i, 0], p[i, 0], data_range=1.0) for i in range(t.shape[0])]).mean()


def ddp_amp_loop(model: nn.Module, train_set: Dataset, val_set: Dataset, *, epochs: int, batch: int, lr: float,
                 device: torch.device, save_path: Path, rank: int) -> Iterator[float]:
    """`train_model_ddp` of train_ddp_unet.py inside an initialised process group (gloo on the CPU), one epoch
    per `next()` on every rank."""
    from torch.nn.parallel import DistributedDataParallel as DDP
    from torch.utils.data.distributed import DistributedSampler

    train_loader = DataLoader(train_set, batch_size=batch, sampler=DistributedSampler(train_set))
    val_loader = DataLoader(val_set, batch_size=batch, sampler=DistributedSampler(val_set, shuffle=False))
    model = DDP(model.to(device), device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    loss_fn = nn.L1Loss()
    cuda = device.type == "cuda"
    scaler = torch.amp.GradScaler("cuda") if cuda else None
    dtype = torch.float16 if cuda else torch.bfloat16
    best_loss = float("inf")
    for epoch in range(epochs):
        model.train()
        train_loader.sampler.set_epoch(epoch)
        train_loss = 0.0
        for noisy, clean in train_loader:
            noisy, clean = noisy.to(device), clean.to(device)
            optimizer.zero_grad()
            with torch.autocast(device.type, dtype=dtype):
                loss = loss_fn(model(noisy), clean)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            else:
                loss.backward()
                optimizer.step()
            train_loss += loss.item()
        model.eval()
        val_loss, total_psnr, total_ssim, total = 0.0, 0.0, 0.0, 0
        with torch.no_grad():
            for noisy, clean in val_loader:
                noisy, clean = noisy.to(device), clean.to(device)
                with torch.autocast(device.type, dtype=dtype):
                    outputs = model(noisy)
                    loss = loss_fn(outputs, clean)
                val_loss += loss.item()
                total += noisy.size(0)
                total_psnr += _psnr(clean.float(), outputs.float()).item()
                total_ssim += _ssim_mean(clean, outputs).item()
        avg_val = val_loss / len(val_loader)
        if rank == 0 and avg_val < best_loss:
            best_loss = avg_val
            torch.save(model.module.state_dict(), save_path)
        yield best_loss


def bare_loop(model: nn.Module, train_set: Dataset, val_set: Dataset, *, epochs: int, batch: int, lr: float,
              device: torch.device, ddp: bool = False, amp_dtype: torch.dtype | None = None) -> Iterator[float]:
    """The least a training job can do: Adam + L1 over a DataLoader, the val loss, best weights kept in memory;
    `ddp`: DDP with DistributedSamplers inside an initialised process group, the val loss all-reduced. One epoch
    per `next()`."""
    import contextlib

    import torch.distributed as dist
    from torch.utils.data.distributed import DistributedSampler

    samplers = (DistributedSampler(train_set), DistributedSampler(val_set, shuffle=False)) if ddp else (None, None)
    train_loader = DataLoader(train_set, batch_size=batch, shuffle=not ddp, sampler=samplers[0])
    val_loader = DataLoader(val_set, batch_size=batch, sampler=samplers[1])
    model.to(device)
    net = model
    if ddp:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None
    amp = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
    best, best_state = float("inf"), None
    for epoch in range(epochs):
        if ddp:
            samplers[0].set_epoch(epoch)
        net.train()
        for noisy, clean in train_loader:
            opt.zero_grad()
            with amp():
                loss = F.l1_loss(_final(net(noisy.to(device))), clean.to(device))
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                opt.step()
        net.eval()
        total = torch.zeros((), dtype=torch.float64, device=device)
        with torch.no_grad(), amp():
            for noisy, clean in val_loader:
                total += F.l1_loss(_final(model(noisy.to(device))).float(), clean.to(device), reduction="sum")
        if ddp:
            dist.all_reduce(total)
        val = total.item()
        if val < best:
            best, best_state = val, {k: v.detach().clone() for k, v in model.state_dict().items()}
        yield best
    del best_state
