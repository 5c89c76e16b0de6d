"""One training process: check the shards exist, load the splits, join the process group if DDP, train.

Runs inside the launcher's process for gpu1/dp2, and as `python -m cxrdenoise.train.worker JOB.json` under
torchrun for ddp2/ddp2_amp (on every node of a multi-node job). A worker that fails with a CxrError writes its
one-line message to the job's error folder, so the launcher can repeat it instead of torchrun's traceback.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import torch

from ..errors import CxrError
from .datacheck import check_data
from .distributed import init_distributed, single_process, teardown
from .engine import run_training
from .settings import TrainSettings
from .setups import get_setup


def load_splits(data_dir: str | Path, sigma: str, preload: bool):
    from ..data import PairDataset

    return tuple(PairDataset(data_dir, split, sigma, preload=preload) for split in ("train", "val"))


def set_threads(settings: TrainSettings) -> None:
    """Split the job's CPU threads (Snakemake `threads`) over its processes instead of each taking them all."""
    if settings.threads:
        torch.set_num_threads(max(1, settings.threads // settings.per_node()))


def run(job: dict[str, Any]) -> dict | None:
    """Train one rank of `job` = {settings, data_dir, out_dir, config_hash}; returns the record on rank 0."""
    settings = TrainSettings.from_dict(job["settings"])
    setup = get_setup(settings.setup)
    if settings.device == "cuda" and not torch.cuda.is_available():
        raise CxrError("train.device is 'cuda' but no CUDA device is usable here; set train.device: cpu")
    set_threads(settings)
    digest = check_data(job["data_dir"], settings.sigma)
    train_ds, val_ds = load_splits(job["data_dir"], settings.sigma, settings.preload)
    if setup.ddp:  # torchrun starts `per_node()` workers on each of the job's nodes
        ctx = init_distributed(settings.device, settings.world_size(), hosts=job.get("hosts") or ())
    else:
        ctx = single_process(settings.device)
    try:
        return run_training(
            settings, train_ds, val_ds, job["out_dir"], ctx, config_hash=job.get("config_hash"), data_digest=digest
        )
    finally:
        teardown(ctx)


def main(argv: list[str] | None = None) -> int:
    """torchrun entry point: `python -m cxrdenoise.train.worker JOB.json`."""
    argv = sys.argv[1:] if argv is None else argv
    job = json.loads(Path(argv[0]).read_text())
    try:
        run(job)
    except CxrError as err:
        rank = os.environ.get("RANK", "0")
        error_dir = job.get("error_dir")
        if error_dir:
            Path(error_dir, f"rank{rank}.txt").write_text(str(err))
        print(f"error (rank {rank}): {err}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
