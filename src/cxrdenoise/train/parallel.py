"""Wrap a model for its set-up (DataParallel, DDP or nothing) and say honestly what actually ran.

DataParallel needs at least two CUDA devices to split a batch; on the CPU or with one GPU it just calls the
module. Rather than pretend, the record then carries `data_parallel_effective: false` and a note.

Under DDP, `sync_bn` converts every BatchNorm to SyncBatchNorm (batch statistics over all ranks) before wrapping;
the state_dict keys stay those of BatchNorm, so best.pt loads into the plain network. torch runs SyncBatchNorm
on CUDA only (DDP refuses it on the CPU).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from ..errors import CxrError
from .distributed import DistContext
from .setups import Setup

DP_CPU_NOTE = "DataParallel needs CUDA devices; ran as a single CPU process"
DP_ONE_GPU_NOTE = "DataParallel needs 2 CUDA devices but only 1 is visible; ran on a single GPU"


def unwrap(model: nn.Module) -> nn.Module:
    """The bare network inside DataParallel / DDP, whose state_dict keys have no `module.` prefix."""
    while isinstance(model, (nn.DataParallel, DistributedDataParallel)):
        model = model.module
    return model


def with_sync_batchnorm(model: nn.Module, setup: Setup, device: torch.device, sync_bn: bool) -> nn.Module:
    """`model` with SyncBatchNorm in place of every BatchNorm when `sync_bn` and the set-up is DDP, else as is."""
    if not (sync_bn and setup.ddp):
        return model
    if device.type != "cuda":
        raise CxrError(f"train.sync_bn: torch's SyncBatchNorm needs CUDA, but {setup.name} runs on the {device.type}; "
                       "set train.sync_bn: false")
    return nn.SyncBatchNorm.convert_sync_batchnorm(model)  # in place below the top module, which keeps its attributes


def wrap_model(model: nn.Module, setup: Setup, ctx: DistContext, sync_bn: bool = False) -> tuple[nn.Module, dict]:
    """Move `model` to the context's device and wrap it; returns (model, facts for the record)."""
    model = with_sync_batchnorm(model, setup, ctx.device, sync_bn).to(ctx.device)
    info: dict = {"data_parallel_effective": False, "devices_used": [str(ctx.device)], "note": None,
                  "sync_bn": sync_bn and setup.ddp}
    if setup.data_parallel:
        n_cuda = torch.cuda.device_count() if ctx.device.type == "cuda" else 0
        if n_cuda >= setup.gpus:
            ids = list(range(setup.gpus))
            model = nn.DataParallel(model, device_ids=ids, output_device=ids[0])
            info.update(data_parallel_effective=True, devices_used=[f"cuda:{i}" for i in ids])
        else:
            info["note"] = DP_CPU_NOTE if ctx.device.type == "cpu" else DP_ONE_GPU_NOTE
    elif setup.ddp:
        ids = [ctx.device.index] if ctx.device.type == "cuda" else None
        model = DistributedDataParallel(model, device_ids=ids)
    return model, info
