"""Clock and memory readings that mean what they say.

CUDA kernels run asynchronously, so the clock is only read after `torch.cuda.synchronize()`; otherwise an epoch
"ends" while its last kernels are still queued. Peak memory is CUDA's `max_memory_allocated` when training on
GPUs, else the process's peak resident set size (`getrusage`), which is a lifetime peak and includes the data;
`peak_mem_kind` in the record says which one a number is.
"""

from __future__ import annotations

import resource
import sys
import time

import torch

PEAK_KINDS = {
    "cuda": "cuda_max_memory_allocated",  # per GPU, reset every epoch; max over the GPUs and ranks
    "cpu": "process_peak_rss",  # per process since it started (cannot be reset); max over ranks
}


def cuda_devices(devices: list[torch.device]) -> list[torch.device]:
    return [d for d in devices if d.type == "cuda"]


def now(devices: list[torch.device]) -> float:
    """perf_counter after every GPU in use has finished its queued work."""
    for d in cuda_devices(devices):
        torch.cuda.synchronize(d)
    return time.perf_counter()


def reset_peak(devices: list[torch.device]) -> None:
    for d in cuda_devices(devices):
        torch.cuda.reset_peak_memory_stats(d)


def peak_mb(devices: list[torch.device]) -> float:
    gpus = cuda_devices(devices)
    if gpus:
        return max(torch.cuda.max_memory_allocated(d) for d in gpus) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def peak_kind(devices: list[torch.device]) -> str:
    return PEAK_KINDS["cuda" if cuda_devices(devices) else "cpu"]
