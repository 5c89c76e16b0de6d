"""Claim GPU ids for one training job with a lock file per GPU.

Snakemake's `--resources gpu=N` only counts GPUs; it never says *which* ones, so two 1-GPU jobs would both land
on GPU 0. Each job therefore takes an `fcntl.flock` on `gpu-<id>.lock` for every GPU it uses, holds it for its
whole life (the kernel drops it if the job dies), and exports `CUDA_VISIBLE_DEVICES` before CUDA starts.

* An existing `CUDA_VISIBLE_DEVICES` (SLURM's, a user's) limits the candidates to the ids it lists.
* Claims are all-or-nothing and go through a queue lock, so a job waiting for every GPU (`timing_exclusive`)
  is not starved by a stream of 1-GPU jobs, and two 2-GPU jobs never deadlock holding one each.
* Under SLURM the default lock folder is per job (`slurm-<jobid>/`): SLURM already gives each job its own GPUs
  and may number them from 0 in every job; jobs that share one allocation share the folder.

Environment: CXRDENOISE_GPU_LOCK_DIR (lock folder), CXRDENOISE_GPU_COUNT (GPU count when
CUDA_VISIBLE_DEVICES is unset; skips detection), CXRDENOISE_GPU_WAIT_S (give up after that many seconds).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Mapping

from ..errors import CxrError

LOCK_DIR_ENV = "CXRDENOISE_GPU_LOCK_DIR"
COUNT_ENV = "CXRDENOISE_GPU_COUNT"
WAIT_ENV = "CXRDENOISE_GPU_WAIT_S"
DEFAULT_LOCK_DIR = "/tmp/cxrdenoise-gpu-locks"


def default_lock_dir(env: Mapping[str, str] = os.environ) -> Path:
    if env.get(LOCK_DIR_ENV):
        return Path(env[LOCK_DIR_ENV])
    base = Path(DEFAULT_LOCK_DIR)
    return base / f"slurm-{env['SLURM_JOB_ID']}" if env.get("SLURM_JOB_ID") else base


def detect_gpu_count(env: Mapping[str, str] = os.environ) -> int:
    """Count GPUs without initialising CUDA in this process (CUDA reads CUDA_VISIBLE_DEVICES only once)."""
    if env.get(COUNT_ENV, "").strip():
        return int(env[COUNT_ENV])
    if shutil.which("nvidia-smi"):
        try:
            out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=60, check=True)
            return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))
        except (OSError, subprocess.SubprocessError):
            pass
    code = "import torch; print(torch.cuda.device_count())"
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
        return int(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.SubprocessError, ValueError, IndexError):
        return 0


def candidate_ids(
    env: Mapping[str, str] = os.environ, count: Callable[[Mapping[str, str]], int] = detect_gpu_count
) -> list[str]:
    """GPU ids this job may use: those in CUDA_VISIBLE_DEVICES when it is set, else 0..count-1."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = []
        for item in (x.strip() for x in visible.split(",")):
            if not item or item.startswith("-"):  # CUDA ignores everything from an invalid entry on
                break
            ids.append(item)
        return ids
    return [str(i) for i in range(count(env))]


@dataclass
class GpuClaim:
    """GPUs held by this process until `release()` (or exit). `use` is what CUDA_VISIBLE_DEVICES gets."""

    use: list[str]
    held: list[str]
    lock_dir: Path | None = None
    _fds: list[int] = field(default_factory=list, repr=False)

    def release(self) -> None:
        for fd in self._fds:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
        self._fds.clear()

    def __enter__(self) -> "GpuClaim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _open_lock(path: Path) -> int:
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:  # created by another user: a read-only descriptor can still be flock'ed
        return os.open(path, os.O_RDONLY)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _note_owner(fd: int) -> None:
    """Write who holds the lock into the lock file, for people wondering why a job waits."""
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}\n".encode(), 0)
    except OSError:
        pass


def _lock_name(gpu_id: str) -> str:
    return "gpu-" + re.sub(r"[^A-Za-z0-9_.-]", "_", gpu_id) + ".lock"


def claim_gpus(
    needed: int,
    *,
    exclusive: bool = False,
    lock_dir: str | os.PathLike | None = None,
    timeout_s: float | None = None,
    poll_s: float = 1.0,
    env: Mapping[str, str] | None = None,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr, flush=True),
) -> GpuClaim:
    """Block until `needed` GPUs (all candidates when `exclusive`) are free, lock them and return the claim.

    Does not touch os.environ; the caller exports `",".join(claim.use)` as CUDA_VISIBLE_DEVICES.
    """
    env = os.environ if env is None else env
    if timeout_s is None and env.get(WAIT_ENV, "").strip():
        timeout_s = float(env[WAIT_ENV])
    candidates = candidate_ids(env)
    where = f"CUDA_VISIBLE_DEVICES={env['CUDA_VISIBLE_DEVICES']}" if "CUDA_VISIBLE_DEVICES" in env else "this machine"
    if needed > len(candidates):
        raise CxrError(f"this job needs {needed} GPU(s) but {where} has {len(candidates)}")
    want = len(candidates) if exclusive else needed
    folder = Path(lock_dir) if lock_dir is not None else default_lock_dir(env)
    folder.mkdir(parents=True, exist_ok=True)
    try:
        folder.chmod(0o1777)  # shared by every user's jobs on the machine; best effort
    except OSError:
        pass
    deadline = None if timeout_s is None else time.monotonic() + timeout_s

    def expired() -> bool:
        return deadline is not None and time.monotonic() >= deadline

    def timeout_error(what: str) -> CxrError:
        return CxrError(
            f"gave up after {timeout_s:g}s waiting for {what} (locks in {folder}; set {WAIT_ENV} to wait longer)"
        )

    queue_fd = _open_lock(folder / "queue.lock")
    try:
        waited = False
        while not _try_lock(queue_fd):  # one claimer at a time, in roughly arrival order
            if expired():
                raise timeout_error("the GPU claim queue")
            if not waited:
                log(f"waiting for other jobs to claim GPUs (queue {folder / 'queue.lock'})")
                waited = True
            time.sleep(poll_s)
        waited = False
        while True:
            fds, got = [], []
            for gid in candidates:
                if len(got) == want:
                    break
                fd = _open_lock(folder / _lock_name(gid))
                if _try_lock(fd):
                    fds.append(fd)
                    got.append(gid)
                else:
                    os.close(fd)
            if len(got) == want:
                for fd in fds:
                    _note_owner(fd)
                return GpuClaim(use=got[:needed], held=got, lock_dir=folder, _fds=fds)
            for fd in fds:  # all or nothing: never sit on some GPUs while waiting for others
                fcntl.flock(fd, fcntl.LOCK_UN)
                os.close(fd)
            if expired():
                raise timeout_error(f"{want} free GPU(s) among {', '.join(candidates)}")
            if not waited:
                log(f"waiting for {want} free GPU(s) among {', '.join(candidates)} (locks in {folder})")
                waited = True
            time.sleep(poll_s)
    finally:
        fcntl.flock(queue_fd, fcntl.LOCK_UN)
        os.close(queue_fd)
