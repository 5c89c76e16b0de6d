"""Multi-node DDP under SLURM (`train.nodes: K` > 1): one torchrun per node, started by one `srun`, meeting at a
c10d rendezvous on the allocation's first node:

    srun --nodes=K --ntasks=K --ntasks-per-node=1 --cpus-per-task=T [--gpus-per-node=G] --kill-on-bad-exit=1 \\
        python -m torch.distributed.run --nnodes K --nproc_per_node G --rdzv-backend c10d \\
            --rdzv-endpoint <first node>:<port> --rdzv-id <SLURM job id> -m cxrdenoise.train.worker JOB.json

(`python -m torch.distributed.run` is torchrun, run by this environment's Python on every node.) On one node the
launcher keeps `torchrun --standalone` (launch.py). The functions building the command are pure, so the exact argv
is unit-tested; tests/test_slurm_twonode.py runs a 2-node job on a SLURM whose nodes are network namespaces.

The Snakemake rule submits such a job with `nodes=K`, `gpu=K*G` (`sbatch --gpus` counts GPUs per job) plus
`--gpus-per-node=G`, and the SLURM executor's `mpi` resource, so the job step runs the rule's command once on the
first node instead of wrapping it in `srun -n1` (which cannot span nodes); the `srun` above then starts the K
torchrun agents. Inside that command SLURM's variables are stripped by the executor (all but SLURM_JOB_ID), so the
node list is read with `scontrol show job` when SLURM_JOB_NODELIST is missing.

Gloo (DDP on the CPU) binds each rank to the address its host name resolves to. Where a node's /etc/hosts maps
its own name to 127.0.1.1 (Debian's default), that is loopback and the other node's ranks are refused. So every
worker of a multi-node gloo job picks, unless GLOO_SOCKET_IFNAME is set, the interface it reaches the *other*
nodes of the job through (`gloo_interface`): the route to their addresses, which is what gloo's peers connect to.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import re
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Callable, Mapping, Sequence

from ..errors import CxrError

PORT_ENV = "CXRDENOISE_RDZV_PORT"


def scontrol_hostnames(nodelist: str) -> list[str]:
    """`scontrol show hostnames <nodelist>`: a compressed SLURM node list ("gpu[01-03]") as host names."""
    try:
        out = subprocess.run(
            ["scontrol", "show", "hostnames", nodelist], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise CxrError(f"cannot expand the SLURM node list {nodelist!r} with scontrol ({err})") from None
    return [line.strip() for line in out.splitlines() if line.strip()]


def scontrol_job_nodelist(job_id: str) -> str:
    """The NodeList of a running job, from `scontrol show job -o <id>`."""
    try:
        out = subprocess.run(
            ["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        raise CxrError(f"cannot read the node list of SLURM job {job_id} with scontrol ({err})") from None
    match = re.search(r"(?:^|\s)NodeList=(\S+)", out)
    if not match or match.group(1) in ("(null)", ""):
        raise CxrError(f"SLURM job {job_id} has no node list yet (scontrol show job: {out.strip()[:200]})")
    return match.group(1)


def job_nodelist(env: Mapping[str, str] | None = None, lookup: Callable[[str], str] | None = None) -> str:
    """The allocation's node list: SLURM_JOB_NODELIST (or SLURM_NODELIST), else asked from scontrol by job id."""
    env = os.environ if env is None else env
    for key in ("SLURM_JOB_NODELIST", "SLURM_NODELIST"):
        if env.get(key):
            return env[key]
    job_id = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID")
    if not job_id:
        raise CxrError("train.nodes > 1 needs a SLURM allocation (SLURM_JOB_ID is not set): submit with "
                       "`snakemake --profile profiles/slurm`, or set train.nodes: 1")
    return (lookup or scontrol_job_nodelist)(job_id)


def first_host(nodelist: str, expand: Callable[[str], list[str]] | None = None) -> str:
    """The first node of a SLURM node list (the rendezvous host); like
    `scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1`."""
    return expand_hosts(nodelist, expand)[0]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def rdzv_port(env: Mapping[str, str] | None = None) -> int:
    """Port of the c10d store: $CXRDENOISE_RDZV_PORT, else one free here (the launcher runs in the batch step,
    which SLURM places on the allocation's first node, the rendezvous host)."""
    value = (os.environ if env is None else env).get(PORT_ENV, "").strip()
    if value:
        if not value.isdigit() or not 0 < int(value) < 65536:
            raise CxrError(f"{PORT_ENV}={value!r} is not a TCP port")
        return int(value)
    return free_port()


def expand_hosts(nodelist: str, expand: Callable[[str], list[str]] | None = None) -> list[str]:
    """Every host of a SLURM node list, in order (`scontrol show hostnames`)."""
    hosts = (expand or scontrol_hostnames)(nodelist)
    if not hosts:
        raise CxrError(f"the SLURM node list {nodelist!r} names no host")
    return hosts


def srun_torchrun_command(
    nodes: int,
    nproc_per_node: int,
    job_file: str | Path,
    rdzv_host: str,
    rdzv_port: int,
    rdzv_id: str,
    *,
    cpus_per_task: int | None = None,
    gpus_per_node: int = 0,
    python: str = sys.executable,
) -> list[str]:
    """argv of the multi-node launch: one `srun` task per node, each a torchrun agent with `nproc_per_node`
    workers. `cpus_per_task`: CPUs for each node's agent and its workers (srun inside the job does not inherit
    the job's --cpus-per-task); `gpus_per_node` > 0 binds that many GPUs per node to the step."""
    if nodes < 1 or nproc_per_node < 1:
        raise CxrError(f"need at least 1 node and 1 process per node, not {nodes} and {nproc_per_node}")
    srun = ["srun", f"--nodes={nodes}", f"--ntasks={nodes}", "--ntasks-per-node=1"]
    if cpus_per_task:
        srun.append(f"--cpus-per-task={cpus_per_task}")
    if gpus_per_node > 0:
        srun.append(f"--gpus-per-node={gpus_per_node}")
    srun.append("--kill-on-bad-exit=1")
    torchrun = [
        python, "-m", "torch.distributed.run",
        "--nnodes", str(nodes), "--nproc_per_node", str(nproc_per_node),
        "--rdzv-backend", "c10d", "--rdzv-endpoint", f"{rdzv_host}:{rdzv_port}", "--rdzv-id", str(rdzv_id),
    ]
    return [*srun, *torchrun, "-m", "cxrdenoise.train.worker", str(job_file)]


def shell_line(argv: Sequence[str]) -> str:
    """The argv as one copy-pasteable shell line (for the log)."""
    import shlex

    return " ".join(shlex.quote(a) for a in argv)


def route_source(host: str) -> str | None:
    """The local IPv4 address this machine would send to `host` from (None: does not resolve, or loopback).

    A UDP `connect` only asks the kernel for the route; no packet is sent."""
    try:
        infos = socket.getaddrinfo(host, 9, socket.AF_INET, socket.SOCK_DGRAM)
    except OSError:
        return None
    for *_, sockaddr in infos:
        if ipaddress.ip_address(sockaddr[0]).is_loopback:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.connect(sockaddr)
                source = s.getsockname()[0]
        except OSError:
            continue
        if not ipaddress.ip_address(source).is_loopback:
            return source
    return None


def interface_of(address: str) -> str | None:
    """Name of the network interface holding the IPv4 `address` (SIOCGIFADDR on each interface)."""
    for _, name in socket.if_nameindex():
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                packed = fcntl.ioctl(s.fileno(), 0x8915, struct.pack("256s", name.encode()[:15]))  # SIOCGIFADDR
        except OSError:
            continue
        if socket.inet_ntoa(packed[20:24]) == address:
            return name
    return None


def peer_route(hosts: Sequence[str], own: str | None = None) -> tuple[str, str] | None:
    """(local address, peer host) for the first of the job's `hosts` other than this one that routes somewhere
    other than loopback: the address this node's ranks are reached at by the other nodes."""
    own = own if own is not None else socket.gethostname()
    for host in hosts:
        if host in (own, own.split(".")[0]):
            continue
        source = route_source(host)
        if source:
            return source, host
    return None


def gloo_interface(hosts: Sequence[str], env: Mapping[str, str] | None = None) -> tuple[str, str, str] | None:
    """(interface, its address, the peer it routes to) that gloo should bind to on this node of a multi-node job,
    or None when there is nothing to choose (no other host, or no route to it)."""
    route = peer_route(hosts)
    if route is None:
        master = (os.environ if env is None else env).get("MASTER_ADDR", "")
        source = route_source(master) if master else None
        route = (source, master) if source else None
    if route is None:
        return None
    iface = interface_of(route[0])
    return (iface, route[0], route[1]) if iface else None
