"""Start one training job: claim GPUs, export CUDA_VISIBLE_DEVICES, then train in this process (gpu1, dp2) or
under `torchrun --standalone --nproc_per_node=N` (ddp2, ddp2_amp).

Claiming has to happen here, before any CUDA call in this process and before torchrun starts its workers,
because CUDA reads CUDA_VISIBLE_DEVICES once. The GPU locks stay held by this process until torchrun returns.

A DDP job with `train.nodes` > 1 runs inside a SLURM allocation instead: `srun` starts one torchrun per node with a
c10d rendezvous on the first node (multinode.py), and nothing is claimed, since SLURM binds each node's GPUs.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable

from ..errors import CxrError
from .datacheck import check_data  # no torch: a DDP launcher only starts torchrun
from .gpus import candidate_ids, claim_gpus
from .multinode import expand_hosts, job_nodelist, rdzv_port, shell_line, srun_torchrun_command
from .settings import TrainSettings
from .setups import get_setup, gpus_to_claim


def torchrun_command(nproc: int, job_file: str | Path) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
        "-m", "cxrdenoise.train.worker", str(job_file),
    ]


def launch(
    settings: TrainSettings, data_dir: str | Path, out_dir: str | Path, config_hash: str | None = None
) -> dict | None:
    """Run the whole job; returns the record for single-process set-ups, None for torchrun ones."""
    setup = get_setup(settings.setup)
    job = {
        "settings": settings.to_dict(), "data_dir": str(data_dir), "out_dir": str(out_dir), "config_hash": config_hash
    }
    check_data(data_dir, settings.sigma)  # fail before waiting for GPUs or starting torchrun
    if setup.ddp and settings.nodes > 1:
        return srun_torchrun(job, settings)  # SLURM binds each node's GPUs to the step: nothing to claim
    claim = None
    if settings.device == "cuda":
        needed = gpus_to_claim(settings.setup, lambda: len(candidate_ids()))
        claim = claim_gpus(needed, exclusive=settings.timing_exclusive)
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(claim.use)
        extra = f" (holding {','.join(claim.held)}: timing_exclusive)" if claim.held != claim.use else ""
        print(f"[train] claimed GPU(s) {','.join(claim.use)}{extra}", file=sys.stderr, flush=True)
    try:
        if not setup.ddp:
            from .worker import run

            return run(job)  # CUDA starts only now, after CUDA_VISIBLE_DEVICES was exported
        return _torchrun(job, setup.processes, settings)
    finally:
        if claim is not None:
            claim.release()


def _worker_env(settings: TrainSettings, nproc: int) -> dict[str, str]:
    env = dict(os.environ)
    # each worker's share of the job's threads (Snakemake exports OMP_NUM_THREADS=threads for the whole job;
    # without any value torchrun forces 1, with a warning)
    if settings.threads:
        env["OMP_NUM_THREADS"] = str(max(1, settings.threads // nproc))
    else:
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    src = str(Path(__file__).resolve().parents[2])  # workers import this checkout even if not installed
    env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _run_launcher(
    command: list[str], env: dict[str, str], error_dir: Path, settings: TrainSettings, name: str = "torchrun",
    failed_nodes_hint: Callable[[int], str] | None = None,
) -> None:
    """Run torchrun (or srun), passing Snakemake's/SLURM's SIGTERM on; a worker's one-line CxrError wins."""
    print(f"[train] {shell_line(command)}", file=sys.stderr, flush=True)
    proc = subprocess.Popen(command, env=env)
    previous = {}
    if threading.current_thread() is threading.main_thread():  # pass Snakemake's SIGTERM on to torchrun
        for sig in (signal.SIGTERM, signal.SIGINT):
            previous[sig] = signal.signal(sig, lambda s, _f: proc.send_signal(s))
    try:
        rc = proc.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if rc != 0:
        messages = sorted(error_dir.glob("rank*.txt"))
        if messages:
            raise CxrError(messages[0].read_text().strip())
        if failed_nodes_hint:
            raise CxrError(failed_nodes_hint(rc))
        raise CxrError(f"{name} exited with status {rc} for setup {settings.setup}; see the log above")


def _torchrun(job: dict[str, Any], nproc: int, settings: TrainSettings) -> None:
    with tempfile.TemporaryDirectory(prefix="cxrdenoise-train-") as tmp:
        job = {**job, "error_dir": tmp}
        job_file = Path(tmp, "job.json")
        job_file.write_text(json.dumps(job))
        _run_launcher(torchrun_command(nproc, job_file), _worker_env(settings, nproc), Path(tmp), settings)
    return None


def multinode_failure(rc: int, settings: TrainSettings, out_dir: Path) -> str:
    """The one line for a multi-node job whose srun failed without a worker's own message: a process was killed,
    a node died or the network between them broke; srun's `error:` lines name the node and task."""
    last = out_dir / "last.pt"
    where = (f"a re-run resumes from {last}" if last.exists()
             else "no epoch was saved (no last.pt), so a re-run starts from epoch 1")
    return (f"a process or node of the {settings.nodes}-node training job failed (srun exited with status {rc}; "
            f"the lines from srun above name it); {where}")


def srun_torchrun(job: dict[str, Any], settings: TrainSettings) -> None:
    """Multi-node DDP: `srun` one torchrun agent per node of this SLURM allocation (see multinode.py).

    The job file and the workers' error messages go to a hidden folder in the output folder, which every node
    sees (Snakemake needs a shared file system anyway); /tmp is local to each node.
    """
    hosts = expand_hosts(job_nodelist())
    host = hosts[0]
    port = rdzv_port()
    job_id = os.environ.get("SLURM_JOB_ID") or os.environ.get("SLURM_JOBID") or "cxrdenoise"
    out = Path(job["out_dir"])
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".launch-", dir=out) as tmp:
        job = {**job, "error_dir": tmp, "hosts": hosts}  # hosts: each node's workers find their route to the others
        job_file = Path(tmp, "job.json")
        job_file.write_text(json.dumps(job))
        env = _worker_env(settings, settings.per_node())
        env.pop("CUDA_VISIBLE_DEVICES", None)  # SLURM sets each node's own for the step's tasks
        command = srun_torchrun_command(
            settings.nodes, settings.per_node(), job_file.resolve(), host, port, job_id,
            cpus_per_task=settings.threads, gpus_per_node=settings.per_node() if settings.device == "cuda" else 0,
        )
        _run_launcher(command, env, Path(tmp), settings, name="srun torchrun",
                      failed_nodes_hint=lambda rc: multinode_failure(rc, settings, out))
    return None
