"""Process-group set-up and the few collectives the training loop needs.

Single-process set-ups (gpu1, dp2) get a context whose collectives are no-ops, so the loop has one code path.
DDP workers are started by torchrun, which exports RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT;
the backend is nccl on CUDA and gloo on the CPU.
"""

from __future__ import annotations

import datetime as _dt
import os
import socket
import sys
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
import torch.distributed as dist

from ..errors import CxrError
from .multinode import gloo_interface


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


def nodes() -> int:
    """Nodes the environment claims: SLURM's count for this step, else torchrun's agent-group count (one agent per
    node), else 1. record.json's `nodes` counts the distinct hosts of the ranks instead (Trainer._topology), which
    holds whatever started the processes."""
    for key in ("SLURM_NNODES", "GROUP_WORLD_SIZE"):
        value = os.environ.get(key, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


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


def single_process(device: str) -> DistContext:
    return DistContext(device=torch.device("cuda", 0) if device == "cuda" else torch.device("cpu"))


def teardown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
