"""Everything that differs between ranks and set-ups: the process group, the model's wrapper, the loaders.

* Process group: single-process set-ups (gpu1, dp2) get a context whose collectives are no-ops, so the loop has
  one code path. DDP workers are started by torchrun, which exports RANK / WORLD_SIZE / LOCAL_RANK /
  MASTER_ADDR / MASTER_PORT; the backend is nccl on CUDA and gloo on the CPU.
* Wrapping (`wrap_model`): DataParallel, DDP or nothing, and honestly what ran. DataParallel needs at least two
  CUDA devices to split a batch; on the CPU or with one GPU it just calls the module, and the record then carries
  `data_parallel_effective: false` and a note. Under DDP, `sync_bn` converts every BatchNorm to SyncBatchNorm
  (batch statistics over all ranks) before wrapping; the state_dict keys stay those of BatchNorm, so best.pt
  loads into the plain network. torch runs SyncBatchNorm on CUDA only.
* Loaders whose order depends only on (seed, epoch): every set-up, single-process ones included, draws its
  indices from `DistributedSampler` (one replica when there is one process): its permutation is
  `randperm(n, generator=seed + epoch)`, so a resumed run sees exactly the batches an uninterrupted one would,
  and no global RNG stream is involved. The trainer passes `TrainSettings.order_seed` as `seed`: the config
  seed for replicate 1, a seed of its own for every further replicate. Validation uses a non-shuffled
  DistributedSampler, which pads the last round with repeated images so every rank gets the same count;
  `padding_mask` marks those repeats so the validation loss counts each image exactly once.
* `DeviceLoader` (the fast set-ups, train.fast.device_data): the split held in device memory in its storage
  dtype, batched by indexing on the device. The study's U-Net split (7,499 pairs at 256x256 in float16) is 1 GB:
  it fits on any GPU, and indexing it there replaces a DataLoader, its worker processes, pinned copies and
  numpy's float16->float32 cast on the host (4.6 of the 5 ms per 16-image batch on the CPU) with one gather and
  one torch cast on the device. Its order is the DataLoader path's exactly (the same DistributedSampler,
  batches of the same size), so gpu1 and gpu1_fast see the same images in the same batches for a seed.
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
import sys
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from ..errors import CxrError
from .multinode import gloo_interface
from .setups import Setup


@dataclass
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None  # None: no process group
    device: torch.device = torch.device("cpu")
    address: str | None = None  # where the other ranks reach this one (record.json host_addresses)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.backend is not None

    def all_reduce(self, values: list[float], op: str = "sum") -> list[float]:
        """Reduce a few floats over ranks (float64, so sums of per-image losses stay exact enough)."""
        if not self.distributed:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64, device=self._comm_device())
        dist.all_reduce(t, op=dist.ReduceOp.SUM if op == "sum" else dist.ReduceOp.MAX)
        return t.tolist()

    def all_gather_object(self, obj: Any) -> list[Any]:
        if not self.distributed:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's value on every rank (used so all ranks agree on whether and from where to resume)."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def broadcast_buffers(self, module: torch.nn.Module) -> None:
        """Give every rank rank 0's buffers (BatchNorm running_mean/var, num_batches_tracked).

        DDP broadcasts buffers only at the start of the next training forward, so after an epoch's last step each
        rank holds running statistics updated from its own batch; validating then would average different models.
        """
        if not self.distributed:
            return
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)

    def barrier(self) -> None:
        if self.distributed:
            if self.backend == "nccl":
                dist.barrier(device_ids=[self.device.index or 0])
            else:
                dist.barrier()

    def _comm_device(self) -> torch.device:
        return self.device if self.backend == "nccl" else torch.device("cpu")


def backend_for(device: str) -> str:
    return "nccl" if device == "cuda" else "gloo"


def rank_address(env: Mapping[str, str] | None = None) -> str | None:
    """The address this process reaches the rendezvous host (MASTER_ADDR) from: the one its peers and the c10d
    store see, so two ranks on different hosts show different addresses. A UDP `connect` only picks the route;
    nothing is sent. None without MASTER_ADDR (single process) or when no route leads there."""
    env = os.environ if env is None else env
    host = env.get("MASTER_ADDR")
    if not host:
        return None
    port = int(env.get("MASTER_PORT", "0") or 0) or 9
    try:
        family, _, _, _, sockaddr = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0]
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect(sockaddr)
            return s.getsockname()[0]
    except OSError:
        return None


def init_distributed(
    device: str, expected_world_size: int, timeout_s: float = 1800, hosts: Sequence[str] = ()
) -> DistContext:
    """Join the process group torchrun prepared; fail in one line when the job was not started by torchrun.

    `hosts`: every node of a multi-node job. Gloo then binds to the interface this node reaches the others through
    (unless GLOO_SOCKET_IFNAME is set), not to whatever its host name resolves to (see multinode.py)."""
    if "RANK" not in os.environ or "WORLD_SIZE" not in os.environ:
        raise CxrError("a DDP worker must be started by torchrun (RANK/WORLD_SIZE are not set)")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if world != expected_world_size:
        raise CxrError(f"this setup needs {expected_world_size} processes but torchrun started {world}")
    backend = backend_for(device)
    address = None
    if len(hosts) > 1:
        chosen = gloo_interface(hosts)
        if chosen:
            iface, address, peer = chosen
            if backend == "gloo" and not os.environ.get("GLOO_SOCKET_IFNAME"):
                os.environ["GLOO_SOCKET_IFNAME"] = iface
                if int(os.environ.get("LOCAL_RANK", "0")) == 0:
                    print(f"[train] {socket.gethostname()}: gloo binds to {iface} ({address}), the route to {peer}; "
                          "set GLOO_SOCKET_IFNAME to choose another interface", file=sys.stderr, flush=True)
    if device == "cuda":
        if torch.cuda.device_count() <= local_rank:
            raise CxrError(
                f"DDP rank {rank} needs CUDA device {local_rank} but only {torch.cuda.device_count()} are visible"
            )
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
        dist.init_process_group(backend, timeout=_dt.timedelta(seconds=timeout_s), device_id=dev)
    else:
        dev = torch.device("cpu")
        dist.init_process_group(backend, timeout=_dt.timedelta(seconds=timeout_s))
    return DistContext(rank=rank, world_size=world, local_rank=local_rank, backend=backend, device=dev,
                       address=address or rank_address())


def gather_topology(ctx: DistContext, devices: list[torch.device]) -> dict:
    """Which hosts, addresses and GPUs took part, gathered from every rank (all ranks call this together)."""
    cuda = ctx.device.type == "cuda"
    mine = (socket.gethostname(), ctx.address, [str(d) for d in devices] if cuda else [])
    ranks = ctx.all_gather_object(mine)
    per_host: dict[str, set] = {}
    addresses: dict[str, str | None] = {}
    for host, address, used in ranks:  # rank order, so hosts[0] is rank 0's
        per_host.setdefault(host, set()).update(used)
        addresses.setdefault(host, address)
    return {
        "nodes": len(per_host),
        "hosts": list(per_host),
        # per host, the address the other ranks reach its ranks at (None: one process, no rendezvous)
        "host_addresses": [addresses[h] for h in per_host],
        "ranks_per_host": [sum(1 for r in ranks if r[0] == h) for h in per_host],
        "gpus_per_node": max(len(d) for d in per_host.values()),
        "gpus_total": sum(len(d) for d in per_host.values()),
    }


def single_process(device: str) -> DistContext:
    return DistContext(device=torch.device("cuda", 0) if device == "cuda" else torch.device("cpu"))


def teardown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()


# ------------------------------------------------------------------------------------------- wrapping

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


# -------------------------------------------------------------------------------------------- loaders

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
    """Iterates `(indices, noisy, clean)` batches like `make_loader`'s DataLoader, from device memory.

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
