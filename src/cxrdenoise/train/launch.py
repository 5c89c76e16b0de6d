"""Start one training job: claim GPUs, export CUDA_VISIBLE_DEVICES, then train in this process (gpu1, dp2) or
under `torchrun --standalone --nproc_per_node=N` (ddp2, ddp2_amp).

Claiming has to happen here, before any CUDA call in this process and before torchrun starts its workers,
because CUDA reads CUDA_VISIBLE_DEVICES once. The GPU locks stay held by this process until torchrun returns.
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
from typing import Any

from ..errors import CxrError
from .gpus import candidate_ids, claim_gpus
from .settings import TrainSettings
from .worker import check_data
from .setups import get_setup


def gpus_to_claim(settings: TrainSettings) -> int:
    """GPUs this job claims: the set-up's count; DataParallel degrades to what is visible (and says so)."""
    setup = get_setup(settings.setup)
    if setup.data_parallel:
        return max(1, min(setup.gpus, len(candidate_ids())))
    return setup.gpus


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
    claim = None
    if settings.device == "cuda":
        claim = claim_gpus(gpus_to_claim(settings), exclusive=settings.timing_exclusive)
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


def _torchrun(job: dict[str, Any], nproc: int, settings: TrainSettings) -> None:
    with tempfile.TemporaryDirectory(prefix="cxrdenoise-train-") as tmp:
        job = {**job, "error_dir": tmp}
        job_file = Path(tmp, "job.json")
        job_file.write_text(json.dumps(job))
        env = dict(os.environ)
        # each worker's share of the job's threads (Snakemake exports OMP_NUM_THREADS=threads for the whole job;
        # without any value torchrun forces 1, with a warning)
        if settings.threads:
            env["OMP_NUM_THREADS"] = str(max(1, settings.threads // nproc))
        else:
            env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
        src = str(Path(__file__).resolve().parents[2])  # workers import this checkout even if not installed
        env["PYTHONPATH"] = src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        command = torchrun_command(nproc, job_file)
        print(f"[train] {' '.join(command)}", file=sys.stderr, flush=True)
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
            messages = sorted(Path(tmp).glob("rank*.txt"))
            if messages:
                raise CxrError(messages[0].read_text().strip())
            raise CxrError(f"torchrun exited with status {rc} for setup {settings.setup}; see the log above")
    return None
