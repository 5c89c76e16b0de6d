"""Checkpoints of the fast set-ups: last.pt without a copy of best, written from a CPU snapshot, optionally in a
background thread, so an epoch pays for the device->host copy only (well under 1 % of an epoch).

The study's loop writes best.pt and last.pt (weights + Adam state + a copy of best: 4x the weights) every epoch,
synchronously on rank 0 — at base 64 about 2 s per epoch. Here the best weights go to `resume_best_e{E}.pt`
(E: the best epoch) only when they changed since the last write, and last.pt names that file; both are written
atomically, best first, so a last.pt on disk always names a best file that is complete. Snakemake deletes a
failed job's declared outputs (best.pt), not these, so a resumed run still restores the best weights; best.pt
is written once when training ends.
"""

from __future__ import annotations

import copy
import threading
import time
from pathlib import Path
from typing import Any

import torch

from ..errors import CxrError
from . import checkpoint

BEST_PATTERN = "resume_best_e*.pt"


def cpu_snapshot(obj: Any) -> Any:
    """A deep copy with every tensor copied to the CPU, so later optimiser steps cannot change what is saved."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: cpu_snapshot(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [cpu_snapshot(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(cpu_snapshot(v) for v in obj)
    return copy.deepcopy(obj)


def best_file_name(epoch: int) -> str:
    return f"resume_best_e{epoch}.pt"


class CheckpointWriter:
    """Writes (payload, path) lists in order, in a background thread when `background`; one write at a time."""

    def __init__(self, out_dir: str | Path, background: bool):
        self.out, self.background = Path(out_dir), background
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.write_s: list[float] = []
        self.best_written: int | None = None

    def _write(self, jobs: list[tuple[Any, Path]], keep: str) -> None:
        t0 = time.perf_counter()
        try:
            for payload, path in jobs:
                checkpoint.save(payload, path)
            for old in self.out.glob(BEST_PATTERN):
                if old.name != keep:
                    old.unlink(missing_ok=True)
        except BaseException as err:  # re-raised in the training thread by wait()
            self._error = err
        self.write_s.append(time.perf_counter() - t0)

    def join(self) -> None:
        """Let a write in flight finish (when training stops with an error); its own error is left to wait()."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def wait(self) -> None:
        """Block until the previous write is on disk; raise its error, if any, in the caller's thread."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            err, self._error = self._error, None
            raise CxrError(f"writing a checkpoint in {self.out} failed: {err}") from err

    def save_last(self, last_state: dict, best: dict | None) -> None:
        """last.pt from `last_state` (snapshotted now) naming the best file; the best file if it changed."""
        self.wait()
        jobs: list[tuple[Any, Path]] = []
        keep = ""
        state = cpu_snapshot({k: v for k, v in last_state.items() if k != "best"})
        if best is not None:
            keep = best_file_name(best["epoch"])
            if self.best_written != best["epoch"]:
                jobs.append((best, self.out / keep))  # its state_dict is already a CPU copy nobody changes
                self.best_written = best["epoch"]
            state["best"] = {k: v for k, v in best.items() if k != "state_dict"}
            state["best_file"] = keep
        jobs.append((state, self.out / "last.pt"))
        if self.background:
            self._thread = threading.Thread(target=self._write, args=(jobs, keep), name="checkpoint", daemon=False)
            self._thread.start()
        else:
            self._write(jobs, keep)
            self.wait()

    def summary(self) -> dict:
        return {"writes": len(self.write_s), "write_s_total": sum(self.write_s),
                "write_s_max": max(self.write_s, default=0.0), "background": self.background}

    def remove_resume_files(self) -> None:
        self.wait()
        for old in self.out.glob(BEST_PATTERN):
            old.unlink(missing_ok=True)


def restore_best(out_dir: str | Path, state: dict) -> dict | None:
    """The best payload a fast last.pt names (its weights from the resume_best file), checked against it."""
    name = state.get("best_file")
    if not name:
        return state.get("best")
    path = Path(out_dir) / name
    try:
        best = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError) as err:
        raise CxrError(f"{path} (the best weights last.pt names) is unreadable ({type(err).__name__}); "
                       f"delete {Path(out_dir) / 'last.pt'} to retrain from epoch 1") from None
    if best.get("epoch") != state["best"]["epoch"] or best.get("val_loss") != state["best"]["val_loss"]:
        raise CxrError(f"{path} does not hold the best epoch last.pt names ({state['best']['epoch']}); "
                       f"delete {Path(out_dir) / 'last.pt'} to retrain from epoch 1")
    return best
