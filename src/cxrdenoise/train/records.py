"""What a training job reports: record.json, epochs.csv and TensorBoard scalars (rank 0 only).

The JSON and CSV are rewritten atomically after every epoch, so a long job shows its progress and a killed job
leaves consistent files; the CSV columns are fixed by docs/results-layout.md.
"""

from __future__ import annotations

import csv
import io
import os
import sys
from pathlib import Path
from typing import Any, Iterable

from ..atomic import write_json, write_text

EPOCH_COLUMNS = (
    "epoch", "train_loss", "val_loss", "train_s", "val_s", "images_per_s", "peak_mem_mb", "amp_skipped_steps",
    "steps", "train_images",
)
TIMING_COLUMNS = ("train_s", "val_s", "images_per_s", "peak_mem_mb")  # differ between identical runs


def write_epochs_csv(path: str | Path, epochs: Iterable[dict[str, Any]]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=EPOCH_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in epochs:
        writer.writerow({k: _fmt(row[k]) for k in EPOCH_COLUMNS})
    write_text(path, buf.getvalue())


def _fmt(value: Any) -> Any:
    return repr(value) if isinstance(value, float) else value  # repr: shortest string that round-trips


def write_record(path: str | Path, record: dict[str, Any]) -> None:
    write_json(path, record)


def totals(epochs: list[dict[str, Any]]) -> dict[str, Any]:
    """Sums over epochs; throughput both overall and without epoch 1 (warm-up, cuDNN autotuning).

    Equal-work accounting: `optimizer_steps` counts optimizer updates (one per batch per process; the processes
    of a DDP job step together, so this is the job's number of updates) and `images_seen` the training images
    all processes together passed forward and backward (DistributedSampler's padding repeats included).
    """
    train_s = sum(e["train_s"] for e in epochs)
    val_s = sum(e["val_s"] for e in epochs)
    images = sum(e["train_images"] for e in epochs)
    later = epochs[1:]
    later_s = sum(e["train_s"] for e in later)
    return {
        "epochs_done": len(epochs),
        "train_s": train_s,
        "val_s": val_s,
        "train_plus_val_s": train_s + val_s,
        "checkpoint_s": sum(e.get("checkpoint_s", 0.0) for e in epochs),
        "train_images": images,
        "optimizer_steps": sum(int(e.get("steps", 0)) for e in epochs),
        "images_seen": images,
        "images_per_s": images / train_s if train_s > 0 else None,
        "images_per_s_after_epoch1": (
            sum(e["train_images"] for e in later) / later_s if later and later_s > 0 else None
        ),
        "peak_mem_mb": max((e["peak_mem_mb"] for e in epochs), default=None),
        "amp_skipped_steps": sum(e["amp_skipped_steps"] for e in epochs),
    }


class TensorBoard:
    """SummaryWriter that is a no-op on ranks other than 0. `purge_step` drops events a killed run wrote after
    its last saved epoch, so a resumed run's curves do not double back."""

    def __init__(self, log_dir: str | Path | None, purge_step: int | None = None):
        self.writer = None
        self.status = "off on this rank" if log_dir is None else "written"
        if log_dir is not None:
            try:  # the GPU machines may lack the tensorboard package: train anyway and say so in the record
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:
                self.status = f"not written: tensorboard is not importable ({err})"
                print(f"warning: TensorBoard scalars {self.status}", file=sys.stderr, flush=True)
                return
            os.makedirs(log_dir, exist_ok=True)
            self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self.writer is not None:
            self.writer.add_scalar(tag, value, step)

    def image(self, tag: str, image, step: int) -> None:
        """One (H, W) grey image in [0, 1]."""
        if self.writer is not None:
            self.writer.add_image(tag, image, step, dataformats="HW")

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self.writer is not None:
            self.writer.add_text(tag, text, step)

    def hparams(self, hparams: dict[str, Any], metric_tags: Iterable[str]) -> None:
        """Hyper-parameters in this run's own event file (add_hparams would start a new run folder); the metrics
        are the scalar tags of this run that TensorBoard's HParams tab shows beside them."""
        if self.writer is None:
            return
        from torch.utils.tensorboard.summary import hparams as hparams_summary

        experiment, start, end = hparams_summary(hparams, {tag: 0.0 for tag in metric_tags})
        writer = self.writer._get_file_writer()
        for summary in (experiment, start, end):
            writer.add_summary(summary)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
