"""Everything a training run writes: best.pt, last.pt, record.json, epochs.csv and TensorBoard (rank 0 only).

* `best.pt` holds only what evaluation needs to rebuild the network (name, kwargs, unwrapped weights) and loads
  with `torch.load(..., weights_only=True)`; it is written once, when training ends. `last.pt` holds everything
  an interrupted job needs to continue as if it had never stopped: weights, optimiser, GradScaler, the
  python/numpy/torch(/cuda) RNG states, the epoch records so far, and the best epoch's numbers with the name of
  the file holding its weights (`resume_best_e{E}.pt`, E: the best epoch; Snakemake deletes a failed job's
  declared outputs, best.pt included, not these, so a resumed run still restores the best weights). Nothing is
  stored twice: last.pt is the weights plus Adam's two moments (3x the weights), where it used to also carry a
  copy of best (4x). It is only trusted when its settings fingerprint matches the current job's.
* Every set-up writes through one `CheckpointWriter`: the epoch pays for a CPU snapshot of the state (the
  device->host copy), and a background thread writes it, atomically, the best file first (only when the best
  epoch changed since the last write), so a last.pt on disk always names a complete best file. The next write and
  the end of the job wait for it, and a failed write raises there, in the training thread. This changes where
  and when files are written, not what is trained: the study's algorithm (Adam + L1, whole-split validation every
  epoch, best by validation loss, a resume point after every epoch) is unchanged, and record.json says so
  (`checkpoints`). The fast set-ups may write every N epochs (train.fast.checkpoint_every) or synchronously
  (train.fast.checkpoint_async: false).
* record.json and epochs.csv are rewritten atomically after every epoch, so a long job shows its progress and a
  killed job leaves consistent files: an epoch's records are serialised in the training thread and written by
  the checkpoint writer after that epoch's last.pt (`records_writer`), so record.json never counts an epoch a
  re-run could not resume from. The CSV columns are fixed by docs/results-layout.md. The record is built here
  (`static_record`, `write_records`), so the loop in engine.py stays the loop.
* What is written comes in as two small dataclasses the Trainer builds: `RunFacts` (who the run is, fixed when
  its parts are built) and `Progress` (what grows each epoch), plus the live parts a checkpoint saves. This
  module never sees the Trainer, so engine.py imports it and nothing here imports engine.py.
"""

from __future__ import annotations

import copy
import csv
import io
import os
import random
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable

import numpy as np
import torch

from ..atomic import atomic_path, json_text, write_text
from ..errors import CxrError
from ..provenance import device_info, provenance
from .distributed import DistContext, padding_count

if TYPE_CHECKING:  # annotations only
    from .fastpath import FastPlan
    from .settings import TrainSettings
    from .setups import Setup

LAST_FORMAT = 1


@dataclass(frozen=True)
class RunFacts:
    """Who a run is, fixed once the Trainer has built its parts: what best.pt, last.pt and record.json are
    stamped with. Plain values (and the rank's DistContext), so writing them needs no Trainer."""

    settings: TrainSettings
    setup: Setup
    ctx: DistContext
    out: Path
    started: float  # time.perf_counter() when the Trainer was built: record.json's wall_s_this_process
    model_kwargs: dict[str, Any]  # complete (defaults filled in): evaluation rebuilds exactly this net
    n_parameters: int
    noise_mean: float  # the shards' own value
    config_hash: str | None
    fingerprint: str  # of the settings and data: a last.pt with another one is not resumed
    batch: int  # per process
    train_images: int
    val_images: int


@dataclass
class Progress:
    """The run so far: what grows each epoch, what record.json reports and what last.pt carries so a resumed
    run continues as if it had never stopped."""

    epochs: list[dict] = field(default_factory=list)
    best: dict | None = None  # the best.pt payload so far
    resumed_after: list[int] = field(default_factory=list)
    sampler_epochs: list[dict] = field(default_factory=list)
    rank_counts: dict[str, list[int]] = field(default_factory=dict)
    global_step: int = 0

    @classmethod
    def resumed(cls, last: dict, best: dict | None) -> Progress:
        """The progress a last.pt (from `load_last`) holds, with its best payload (from `restore_best`)."""
        return cls(epochs=last["epochs"], best=best, resumed_after=last["resumed_after"] + [last["epoch"]],
                   sampler_epochs=last["sampler_epochs"], rank_counts=last["rank_counts"],
                   global_step=last["global_step"])


def cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the weights, so later optimiser steps cannot change it."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def save(obj: Any, path: str | Path) -> None:
    """torch.save, atomically; a full disk or a size limit is one line (DiskSpaceError) with the space needed,
    not torch's `[enforce fail at inline_container.cc]`, and the previous file is left as it was."""
    with atomic_path(path, needed=payload_bytes(obj)) as tmp:
        torch.save(obj, tmp)


def payload_bytes(obj: Any) -> int:
    """About how many bytes torch.save writes for `obj`: its tensors' storages (each once) plus 64 KiB."""
    seen: set[tuple[int, int]] = set()
    total = 64 * 1024

    def walk(value: Any) -> None:
        nonlocal total
        if isinstance(value, torch.Tensor):
            try:
                storage = value.untyped_storage()
                key = (storage.data_ptr(), storage.nbytes())
            except (RuntimeError, NotImplementedError):  # sparse and other storage-less tensors: estimate
                key = (id(value), value.numel() * value.element_size())
            if key not in seen:
                seen.add(key)
                total += key[1]
        elif isinstance(value, dict):
            for item in value.values():
                walk(item)
        elif isinstance(value, (list, tuple)):
            for item in value:
                walk(item)

    walk(obj)
    return total


def rng_state(device: torch.device) -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def load_last(path: str | Path, fingerprint: str, epochs: int) -> tuple[dict | None, str]:
    """The resume state at `path` if it may be continued, else None; the second value says why (for the log)."""
    path = Path(path)
    if not path.exists():
        return None, "no last.pt: starting at epoch 1"
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)  # our own file: RNG states are pickled
    except Exception as err:  # a torn file cannot happen (atomic rename), an old format can
        return None, f"{path} unreadable ({type(err).__name__}): starting at epoch 1"
    if state.get("format") != LAST_FORMAT or state.get("fingerprint") != fingerprint:
        return None, f"{path} was written with other settings or data: starting at epoch 1"
    if state["epoch"] > epochs:
        return None, f"{path} is at epoch {state['epoch']}, beyond train.epochs={epochs}: starting at epoch 1"
    if state["epoch"] == epochs:
        return state, f"{path} is already at epoch {epochs}: rewriting the outputs from it (delete it to retrain)"
    return state, f"resuming from {path} after epoch {state['epoch']}"


# ------------------------------------------------------------------------------------ the checkpoint writer

BEST_PATTERN = "resume_best_e*.pt"
STUDY_ALGORITHM_NOTE = (
    "checkpoints are written from a CPU snapshot in a background thread, last.pt without a copy of best; the "
    "study's algorithm (Adam + L1, whole-split validation every epoch, best by validation loss, a resume point "
    "after every epoch) is unchanged"
)


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
    """Writes (payload, path) lists in order, in a background thread when `background`; one write at a time.

    A write's error is kept and raised by the next `wait()` (before the next write, and when the job ends), in the
    training thread, so a full disk stops the job instead of leaving it without a resume point unnoticed."""

    def __init__(self, out_dir: str | Path, background: bool):
        self.out, self.background = Path(out_dir), background
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.write_s: list[float] = []
        self.best_written: int | None = None

    def _write(self, jobs: list[tuple[Any, Path]], keep: str, then: Callable[[], None] | None = None) -> None:
        t0 = time.perf_counter()
        try:
            for payload, path in jobs:
                save(payload, path)
            for old in self.out.glob(BEST_PATTERN):
                if old.name != keep:
                    old.unlink(missing_ok=True)
            if then is not None:  # the epoch's records, once its resume point is on disk
                then()
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
        self.join()
        if self._error is not None:
            err, self._error = self._error, None
            if isinstance(err, CxrError):  # a full disk: its one line already names the file and the fix
                raise err
            raise CxrError(f"writing a checkpoint in {self.out} failed: {err}") from err

    def save_last(self, last_state: dict, best: dict | None, then: Callable[[], None] | None = None) -> None:
        """last.pt from `last_state` (snapshotted now) naming the best file; the best file if it changed; then
        `then()`, in the same thread, after them."""
        self.start(self.prepare_last(last_state, best), then)

    def prepare_last(self, last_state: dict, best: dict | None) -> tuple[list[tuple[Any, Path]], str]:
        """Wait for the previous write, then snapshot `last_state` (and the best file's payload if the best epoch
        changed) to the CPU: what the epoch pays. `start` writes it."""
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
        return jobs, keep

    def start(self, prepared: tuple[list[tuple[Any, Path]], str], then: Callable[[], None] | None = None) -> None:
        """Write what prepare_last snapshotted (in the background thread when `background`), then `then()` (the
        epoch's records: never on disk before the resume point they count)."""
        jobs, keep = prepared
        if self.background:
            self._thread = threading.Thread(target=self._write, args=(jobs, keep, then), name="checkpoint",
                                            daemon=False)
            self._thread.start()
        else:
            self._write(jobs, keep, then)
            self.wait()

    def save_best(self, best: dict, path: Path) -> None:
        """best.pt when training ends: a hard link to the best file already on disk when it holds this best epoch
        (no second serialisation of the weights), else written. Waits for the write in flight first."""
        self.wait()
        src = self.out / best_file_name(best["epoch"])
        if self.best_written == best["epoch"] and src.exists():
            tmp = path.with_name(f".{path.name}.link")
            try:
                tmp.unlink(missing_ok=True)
                os.link(src, tmp)
                os.replace(tmp, path)  # atomic, like every other write here
                return
            except OSError:  # a file system without hard links: write it
                tmp.unlink(missing_ok=True)
        save(best, path)

    def summary(self) -> dict:
        return {"writes": len(self.write_s), "write_s_total": sum(self.write_s),
                "write_s_max": max(self.write_s, default=0.0), "background": self.background}

    def remove_resume_files(self) -> None:
        self.wait()
        for old in self.out.glob(BEST_PATTERN):
            old.unlink(missing_ok=True)


def restore_best(out_dir: str | Path, state: dict) -> dict | None:
    """The best payload last.pt names (its weights from the resume_best file), checked against it; a last.pt of
    the older layout carries best inside itself."""
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


# ------------------------------------------------------------------- record.json, epochs.csv, TensorBoard

EPOCH_COLUMNS = (
    "epoch", "train_loss", "val_loss", "train_s", "val_s", "images_per_s", "peak_mem_mb", "amp_skipped_steps",
    "steps", "train_images",
)
TIMING_COLUMNS = ("train_s", "val_s", "images_per_s", "peak_mem_mb")  # differ between identical runs


def epochs_csv_text(epochs: Iterable[dict[str, Any]]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=EPOCH_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in epochs:
        writer.writerow({k: _fmt(row[k]) for k in EPOCH_COLUMNS})
    return buf.getvalue()


def _fmt(value: Any) -> Any:
    return repr(value) if isinstance(value, float) else value  # repr: shortest string that round-trips


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


# ---------------------------------------------------------------------------------- what the record says

def best_payload(facts: RunFacts, net: torch.nn.Module, epoch: int, val_loss: float) -> dict:
    """best.pt: what evaluation needs to rebuild the network (`net` unwrapped), and where it came from."""
    s = facts.settings
    return {
        "model": s.model,
        "model_kwargs": facts.model_kwargs,
        "state_dict": cpu_state_dict(net),
        "epoch": epoch,
        "val_loss": val_loss,
        "sigma": float(s.sigma),
        "noise_mean": facts.noise_mean,
        "config_hash": facts.config_hash,
        "setup": s.setup,
        "n_parameters": facts.n_parameters,
    }


def last_state(facts: RunFacts, progress: Progress, epoch: int, net: torch.nn.Module,
               optimizer: torch.optim.Optimizer, scaler: Any | None) -> dict:
    """last.pt: everything a resumed run needs to continue as if it had never stopped (tensors are the live ones:
    snapshot before the next step, as CheckpointWriter.save_last does)."""
    return {
        "format": LAST_FORMAT,
        "fingerprint": facts.fingerprint,
        "epoch": epoch,
        "model": net.state_dict(),  # live tensors: CheckpointWriter.save_last copies them to the CPU once
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "rng": rng_state(facts.ctx.device),
        "epochs": progress.epochs,
        "best": progress.best,
        "resumed_after": progress.resumed_after,
        "sampler_epochs": progress.sampler_epochs,
        "rank_counts": progress.rank_counts,
        "global_step": progress.global_step,
    }


def static_record(facts: RunFacts, plan: FastPlan, net: torch.nn.Module, parallel_info: dict, *, pin: bool,
                  amp_dtype: torch.dtype | None, grad_scaler: bool, topology: dict, peak_mem_kind: str) -> dict:
    """record.json's fields fixed before the first epoch: settings, set-up, devices, data, provenance. `net` is
    the unwrapped model, `plan` the fast-path plan, `parallel_info` what wrap_model did."""
    s, setup, ctx = facts.settings, facts.setup, facts.ctx
    cuda = ctx.device.type == "cuda"
    info = device_info(ctx.device)
    precision = plan.precision_label()
    return {
        "model": s.model,
        "model_kwargs": facts.model_kwargs,
        "block": facts.model_kwargs.get("block"),  # the U-Nets' conv block (study | double_bn); None for others
        "n_parameters": facts.n_parameters,
        "sigma": float(s.sigma),
        "noise_mean": facts.noise_mean,
        "setup": s.setup,
        "setup_label": setup.label,
        "setup_spec": setup.to_dict(),
        "device": ctx.device.type,
        "device_name": info["device_name"],
        "device_count": info["device_count"],
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),  # the job that ran this (last) attempt; None outside SLURM
        "gpus_used": len(parallel_info["devices_used"]) if cuda else 0,
        "devices_used": parallel_info["devices_used"],
        **topology,  # nodes, hosts, gpus_per_node, gpus_total: what took part, from every rank
        "nodes_requested": s.nodes if setup.ddp else 1,  # train.nodes (gpu1 and dp2 run on one node)
        "processes_per_node_requested": s.per_node(),
        "world_size": ctx.world_size,
        "backend": ctx.backend,
        "data_parallel_effective": parallel_info["data_parallel_effective"],
        "note": parallel_info["note"],
        "global_batch": s.global_batch(),
        "batch_per_process": facts.batch,
        "batch_per_gpu": s.batch_per_gpu,
        "lr": s.lr,
        "lr_scaled_with_batch": False,
        "optimizer": "Adam (fused)" if plan.fused_adam else "Adam",
        "loss": getattr(net, "loss_name", "L1 (mean over deep-supervision heads when present)"),
        "model_note": getattr(net, "record_note", None),
        "grad_clip": s.grad_clip or None,
        "precision": precision,
        "amp": amp_dtype is not None,
        "amp_dtype": str(amp_dtype).replace("torch.", "") if amp_dtype else None,
        "grad_scaler": grad_scaler,
        "validation": plan.validation_label(),
        "sync_bn": s.sync_bn,  # train.sync_bn as configured
        "batchnorm": batchnorm_label(setup.ddp, parallel_info["sync_bn"], s.sync_bn),
        "epochs_planned": s.epochs,
        "seed": s.seed,
        "replicate": s.replicate,
        "init_seed": s.init_seed,  # initial weights; data, noise and split use `seed`
        "order_seed": s.order_seed,  # training batch order (DistributedSampler seed, + epoch)
        "workers": s.workers,
        "pin_memory": pin,
        "cudnn_benchmark": plan.cudnn_benchmark,
        "data_path": ("split in device memory, batches indexed on the device" if plan.device_data
                      else "DataLoader"),
        "fast_paths": plan.record(),  # every train.fast switch: requested, used, why not
        "threads_per_process": torch.get_num_threads(),
        "train_images": facts.train_images,
        "val_images": facts.val_images,
        "train_padding_per_epoch": padding_count(facts.train_images, ctx.world_size),
        "peak_mem_kind": peak_mem_kind,
        "torch_version": torch.__version__,
        "provenance": provenance(config_hash=facts.config_hash, device=ctx.device),
    }


def write_records(record: dict, facts: RunFacts, progress: Progress, status: str) -> None:
    """record.json (`record`, the static part, updated in place with everything so far) and epochs.csv, both
    atomically, in the run's folder."""
    records_writer(record, facts, progress, status)()


def records_writer(record: dict, facts: RunFacts, progress: Progress, status: str) -> Callable[[], None]:
    """What write_records writes, serialised now (the training thread) and written when the returned function
    is called: the checkpoint writer calls it after last.pt, so record.json never counts an epoch whose resume
    point is not on disk yet (a job killed in between resumes from the epoch its record shows)."""
    _update_record(record, facts, progress, status)
    record_json, epochs_csv = json_text(record), epochs_csv_text(progress.epochs)

    def write() -> None:
        write_text(facts.out / "record.json", record_json)
        write_text(facts.out / "epochs.csv", epochs_csv)

    return write


def _update_record(record: dict, facts: RunFacts, progress: Progress, status: str) -> None:
    prov = record["provenance"]
    best = progress.best or {}
    record.update(
        status=status,
        git_commit=prov["git_commit"],
        config_hash=prov["config_hash"],
        best_epoch=best.get("epoch"),
        best_val_loss=best.get("val_loss"),
        resumed_after_epochs=progress.resumed_after,
        train_indices_per_rank=progress.rank_counts.get("train"),
        val_indices_per_rank=progress.rank_counts.get("val"),
        sampler_check={
            "epochs_checked": len(progress.sampler_epochs),
            "covers_train_split": all(e["covers_train_split"] for e in progress.sampler_epochs),
            "repeated_per_epoch": max((e["repeated"] for e in progress.sampler_epochs), default=0),
            "expected_padding": padding_count(facts.train_images, facts.ctx.world_size),
        },
        totals={**totals(progress.epochs), "wall_s_this_process": time.perf_counter() - facts.started},
        epochs=progress.epochs,
    )


def batchnorm_label(ddp: bool, sync_used: bool, sync_requested: bool) -> str:
    """What BatchNorm did in this run, for the record."""
    if sync_used:
        return "SyncBatchNorm: batch statistics over all ranks"
    if ddp:
        return "per-rank BatchNorm statistics; rank 0's buffers broadcast to every rank before each validation"
    return "BatchNorm in one process" + ("; train.sync_bn applies to DDP only" if sync_requested else "")
