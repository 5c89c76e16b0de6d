"""The training loop shared by all set-ups: Adam + L1, whole-split validation every epoch, best by validation
loss, and its clocks; what each epoch writes is built in state.py, from the run's facts (`state.RunFacts`) and
progress (`state.Progress`), which the Trainer hands it: state.py never sees the Trainer.

Set-up differences are confined to three places: how the model is wrapped (`distributed.wrap_model`), how many
processes share the loaders (`distributed.make_loader` with the DistContext), and whether forward/backward run
under autocast (+ GradScaler on CUDA). Everything else (seeding, validation arithmetic, records) is one code path,
so a timing difference between set-ups is a difference in parallelism and precision, not in bookkeeping.

Clocks and memory mean what they say: CUDA kernels run asynchronously, so the clock is only read after
`torch.cuda.synchronize()` (`now`); otherwise an epoch "ends" while its last kernels are still queued. Peak memory
is CUDA's `max_memory_allocated` when training on GPUs, else the process's peak resident set size (`getrusage`),
a lifetime peak that includes the data; `peak_mem_kind` in the record says which one a number is.
"""

from __future__ import annotations

import contextlib
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import CxrError
from ..models import build_model, count_parameters
from ..provenance import CONFIG_HASH_ENV
from ..seeding import seed_everything
from . import fastpath, state
from .distributed import DeviceLoader, DistContext, gather_topology, make_loader, padding_mask, unwrap, wrap_model
from .settings import TrainSettings
from .setups import get_setup
from .val_views import PsnrSum, ValViews

ModelFactory = Callable[..., torch.nn.Module]
EpochHook = Callable[[int, dict], None]


def _default_factory(name: str, **kwargs) -> torch.nn.Module:
    return build_model(name, **kwargs)


def l1_loss(output: torch.Tensor | list[torch.Tensor], target: torch.Tensor) -> torch.Tensor:
    """L1 in float32; deep supervision's list of outputs counts each head equally. One output: the loss itself,
    without the `0 + loss` and `/ 1` that summing a one-element list adds (two autograd ops per step, exact)."""
    if not isinstance(output, (list, tuple)):
        return F.l1_loss(output.float(), target.float())
    return sum(F.l1_loss(o.float(), target.float()) for o in output) / len(output)


class Trainer:
    """One training job on one rank. `run()` trains to `settings.epochs`, resuming from last.pt if allowed."""

    def __init__(
        self,
        settings: TrainSettings,
        train_ds: Dataset,
        val_ds: Dataset,
        out_dir: str | os.PathLike,
        ctx: DistContext,
        *,
        config_hash: str | None = None,
        data_digest: str = "",
        model_factory: ModelFactory | None = None,
        on_epoch_end: EpochHook | None = None,
    ):
        started = time.perf_counter()
        self.settings, self.ctx, self.out = settings, ctx, Path(out_dir)
        self.setup = get_setup(settings.setup)
        self.on_epoch_end = on_epoch_end
        self.train_ds, self.val_ds = train_ds, val_ds
        if len(train_ds) == 0 or len(val_ds) == 0:
            raise CxrError(
                f"empty split: {len(train_ds)} train and {len(val_ds)} val images for sigma {settings.sigma}"
            )
        cuda = ctx.device.type == "cuda"
        # [fast-path hook] the study's loop for the study's set-ups, train.fast for gpu1_fast/ddp2_fast
        self.plan = fastpath.plan_for(self.setup, settings.fast, ctx.device)
        self.plan.apply_backends()  # cuDNN benchmark (every CUDA run, as before; fast: train.fast.cudnn_benchmark)

        seed_everything(settings.init_seed)  # replicates differ here and in the batch order (order_seed)
        net = (model_factory or _default_factory)(settings.model, **settings.model_kwargs)
        n_parameters = count_parameters(net, trainable_only=True)
        # build_model records the complete kwargs (defaults filled in): evaluation rebuilds exactly this net
        model_kwargs = dict(getattr(net, "model_kwargs", settings.model_kwargs))
        net = self.plan.prepare(net)  # [fast-path hook] channels_last weights
        self.model, self.parallel_info = wrap_model(net, self.setup, ctx, sync_bn=settings.sync_bn)
        self.bare = unwrap(self.model)
        self.model = self.plan.compiled(self.model)  # [fast-path hook] torch.compile (fast set-ups only)
        self.devices = [torch.device(d) for d in self.parallel_info["devices_used"]]
        self.optimizer = self.plan.optimizer(self.model.parameters(), settings.lr)  # [fast-path hook] fused Adam
        self.amp_dtype = self.plan.amp_dtype  # study: float16 on CUDA, bfloat16 on the CPU; fast: train.fast
        self.scaler = self.plan.make_scaler(ctx.device)  # float16 only
        self.batch = self.setup.batch_per_process(settings.batch_per_gpu)
        # [fast-path hook] the split in device memory, batches indexed there, instead of a DataLoader
        self.pin = cuda and not self.plan.device_data
        if self.plan.device_data:
            dev_args = dict(seed=settings.order_seed, channels_last=self.plan.channels_last)
            self.train_loader = DeviceLoader(train_ds, ctx, self.batch, shuffle=True, **dev_args)
            self.val_loader = DeviceLoader(val_ds, ctx, self.batch, shuffle=False, **dev_args)
        else:
            loader_args = dict(seed=settings.order_seed, workers=settings.workers, pin=self.pin)
            self.train_loader = make_loader(train_ds, ctx, self.batch, shuffle=True, **loader_args)
            self.val_loader = make_loader(val_ds, ctx, self.batch, shuffle=False, **loader_args)
        # every set-up: a CPU snapshot written in the background (fast: unless train.fast.checkpoint_async is off)
        self.ckpt = state.CheckpointWriter(out_dir, self.plan.checkpoint_async)
        self.views: ValViews | None = None  # rank 0's TensorBoard views, from run()
        self.facts = state.RunFacts(
            settings=settings, setup=self.setup, ctx=ctx, out=self.out, started=started,
            model_kwargs=model_kwargs, n_parameters=n_parameters,
            noise_mean=float(getattr(train_ds, "noise_mean", settings.noise_mean)),  # the shards' own value
            # of the whole resolved config: given, or what common.smk exported to every Snakemake job
            config_hash=config_hash or os.environ.get(CONFIG_HASH_ENV),
            fingerprint=settings.fingerprint(data_digest, block=model_kwargs.get("block")),
            batch=self.batch, train_images=len(train_ds), val_images=len(val_ds),
        )
        self.progress = state.Progress()

    # ----------------------------------------------------------------------------------------------- helpers
    def log(self, msg: str) -> None:
        if self.ctx.is_main:
            s = self.settings
            print(f"[train {s.model} sigma{s.sigma} {s.setup}] {msg}", file=sys.stderr, flush=True)

    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.ctx.device.type, dtype=self.amp_dtype)

    def _where(self, epoch: int, step: int | None = None) -> str:
        at = f"epoch {epoch}" + (f", step {step}" if step is not None else "")
        return f"model {self.settings.model}, setup {self.settings.setup}, sigma {self.settings.sigma}, {at}"

    # ------------------------------------------------------------------------------------------------ resume
    def _resume(self) -> int:
        resume, why = state.load_last(self.out / "last.pt", self.facts.fingerprint, self.settings.epochs)
        start = resume["epoch"] if resume is not None else 0
        starts = self.ctx.all_gather_object(start)
        if len(set(starts)) != 1:
            raise CxrError(f"ranks disagree on the resume epoch ({starts}): is {self.out} on a shared file system?")
        self.log(why)
        if resume is None:
            return 0
        self.bare.load_state_dict(resume["model"])
        self.optimizer.load_state_dict(resume["optimizer"])
        if self.scaler is not None and resume.get("scaler"):
            self.scaler.load_state_dict(resume["scaler"])
        # last.pt names its best file (older ones hold best)
        self.progress = state.Progress.resumed(resume, state.restore_best(self.out, resume))
        if resume.get("best_file"):
            self.ckpt.best_written = self.progress.best["epoch"]  # on disk already: not written again
        state.set_rng_state(resume["rng"], self.ctx.device)
        return start

    # ------------------------------------------------------------------------------------------------- train
    def train_epoch(self, epoch: int) -> dict:
        ctx, model, opt, scaler, progress = self.ctx, self.model, self.optimizer, self.scaler, self.progress
        self.train_loader.sampler.set_epoch(epoch)
        model.train()
        steps = 0
        # [fast-path hook] sums on the device, read once per epoch (sync_free); else loss.item() every step
        acc = fastpath.StepAccumulator(self.plan.sync_free, ctx.device, lambda step: self._where(epoch, step))
        seen: list[int] = list(self.train_loader.sampler) if self.plan.sync_free else []  # the sampler's own
        bar = _progress(len(self.train_loader), f"epoch {epoch}/{self.settings.epochs}", ctx.is_main)
        ctx.barrier()
        t0 = now(self.devices)
        for step, (idx, noisy, clean) in enumerate(self.train_loader, start=1):
            noisy = self.plan.batch_input(noisy.to(ctx.device, non_blocking=True))
            clean = clean.to(ctx.device, non_blocking=True)
            opt.zero_grad(set_to_none=True)
            with self._autocast():
                loss = self._loss(model, noisy, clean)
            if scaler is not None:
                scale_before = acc.scale_before(scaler)
                scaled = scaler.scale(loss)
                scale_now = fastpath.scale_tensor(scaler) if acc.sync_free else None
                scaled.backward()
                self._clip_gradients()
                scaler.step(opt)  # skipped inside when the scaled gradients overflowed
                scaler.update()
                acc.count_skip(scaler, scale_before, scale_now)  # the scale only drops after a skipped step
            else:
                loss.backward()
                self._clip_gradients()
                opt.step()
            if hasattr(self.bare, "after_optimizer_step"):  # e.g. Fast-DDPM's EMA of the weights
                self.bare.after_optimizer_step()
            value = acc.add(loss, len(idx), step)  # None on the sync-free path
            steps += 1
            if not acc.sync_free:
                seen.extend(idx.tolist())
            progress.global_step += 1
            if progress.global_step % self.settings.log_every == 0:
                if value is None:
                    acc.pending_scalars.append((progress.global_step, loss.detach()))
                else:
                    self.tb.scalar("train/loss_step", value, progress.global_step)
            bar.update(1)
            if value is not None:
                bar.set_postfix(loss=f"{value:.4f}", refresh=False)
        t1 = now(self.devices)
        bar.close()
        loss_sum, n_images, skipped = acc.finish()
        for at, loss_t in acc.pending_scalars:  # the sync-free path's step losses, read after the epoch
            self.tb.scalar("train/loss_step", float(loss_t), at)
        loss_sum, n_images, skipped = self.ctx.all_reduce([loss_sum, n_images, skipped])
        (train_s,) = self.ctx.all_reduce([t1 - t0], op="max")
        self._check_sampler(epoch, seen)
        return {
            "train_loss": loss_sum / n_images,
            "train_s": train_s,
            "train_images": int(n_images),
            "images_per_s": n_images / train_s if train_s > 0 else float("nan"),
            "amp_skipped_steps": int(skipped),
            "steps": steps,
        }

    def _loss(self, model: torch.nn.Module, noisy: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        """L1 of the output; a model that `trains_on_target` (diffusion) returns its own loss per image instead,
        computed inside the wrapper's forward so DataParallel splits it and DDP syncs its gradients."""
        if getattr(self.bare, "trains_on_target", False):
            return model(noisy, clean).float().mean()
        return l1_loss(model(noisy), clean)

    def _clip_gradients(self) -> None:
        """train.grad_clip > 0: clip the gradients' global L2 norm (unscaled first under GradScaler)."""
        if self.settings.grad_clip > 0:
            if self.scaler is not None:
                self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.settings.grad_clip)

    def _check_sampler(self, epoch: int, seen: list[int]) -> None:
        """Gather which train indices each rank used: together they must cover the split, repeating only the
        DistributedSampler padding."""
        per_rank = self.ctx.all_gather_object(seen)
        n = len(self.train_ds)
        union = set().union(*map(set, per_rank))
        total = sum(len(r) for r in per_rank)
        self.progress.rank_counts.setdefault("train", [len(r) for r in per_rank])
        self.progress.sampler_epochs.append(
            {
                "epoch": epoch,
                "covers_train_split": union == set(range(n)),
                "repeated": total - len(union),
            }
        )
        self._last_rank_indices = per_rank

    # ---------------------------------------------------------------------------------------------- validate
    @torch.no_grad()
    def validate(self) -> tuple[float, int, float]:
        """Mean per-image L1 over the whole val split, in full precision; under DDP each rank sums its share
        (padding repeats masked out) and the sums and counts are all-reduced. Returns (loss, images, seconds).

        Under DDP every rank first takes rank 0's BatchNorm buffers, so all ranks validate one model: the one
        best.pt stores (rank 0's). The weights are already identical (same all-reduced gradients)."""
        ctx = self.ctx
        model = self.bare if self.setup.ddp else self.model  # DP splits val batches too; DDP needs no sync here
        if self.setup.ddp:
            ctx.broadcast_buffers(self.bare)
        model.eval()
        n_items = len(self.val_ds)
        total = torch.zeros((), dtype=torch.float64, device=ctx.device)
        count, position = 0, 0
        psnr = PsnrSum(ctx.device)  # whole-split val PSNR for TensorBoard (val_views)
        views = self.views  # rank 0: the TensorBoard subset's outputs are caught from this pass
        if views is not None:
            views.start()
        ctx.barrier()
        t0 = now(self.devices)
        for idx, noisy, clean in self.val_loader:
            noisy = self.plan.batch_input(noisy.to(ctx.device, non_blocking=True))
            clean = clean.to(ctx.device, non_blocking=True)
            with self.plan.eval_context(ctx.device):  # [fast-path hook] inference_mode + training precision
                out = model(noisy)
                if isinstance(out, (list, tuple)):
                    out = out[-1]
                per_image = (out.float() - clean.float()).abs().flatten(1).mean(1)
            mask = padding_mask(position, len(idx), n_items, ctx)
            if self.plan.sync_free:  # multiply by the mask: boolean indexing on the device syncs the host
                total += (per_image.double() * mask.to(ctx.device, torch.float64)).sum()
            else:
                total += per_image[mask.to(ctx.device)].double().sum()
            psnr.add(out, clean, mask)
            if views is not None:
                views.catch(position, out)
            count += int(mask.sum())  # a CPU tensor: no device sync
            position += len(idx)
        t1 = now(self.devices)
        total_sum, count_sum = ctx.all_reduce([total.item(), count])
        (val_s,) = ctx.all_reduce([t1 - t0], op="max")
        self.val_psnr = ctx.all_reduce([psnr.total.item()])[0] / max(count_sum, 1)
        counts = self.progress.rank_counts
        if "val" not in counts:  # same on every rank, so every rank takes this branch together
            counts["val"] = [int(c) for c in ctx.all_gather_object(count)]
        if int(count_sum) != n_items:
            raise CxrError(f"validation saw {int(count_sum)} of {n_items} images (sampler padding bug)")
        return total_sum / count_sum, int(count_sum), val_s

    # --------------------------------------------------------------------------------------------------- run
    def run(self) -> dict | None:
        topology = gather_topology(self.ctx, self.devices)
        start = self._resume()
        self.tb = state.TensorBoard(self.out / "tensorboard" if self.ctx.is_main else None,
                              purge_step=self.progress.global_step + 1 if start else None)
        self.record = self._static_record(topology) if self.ctx.is_main else {}
        if self.ctx.is_main:  # TensorBoard: val PSNR/SSIM, images
            self.views = ValViews(self.val_ds, self.ctx.world_size)
        if self.views is not None:
            hparams, text = self.views.hparam_text(self.record)
            self.tb.hparams(hparams, ("val/psnr", "val/ssim_subset", "epoch/val_loss"))
            self.tb.text("hparams", text, self.progress.global_step)
        if self.ctx.is_main:
            self.record["tensorboard"] = self.tb.status  # "written", or why not (no tensorboard package)
        try:
            for epoch in range(start + 1, self.settings.epochs + 1):
                self._one_epoch(epoch)
        except torch.OutOfMemoryError:
            raise CxrError(
                f"CUDA out of memory with {self.batch} images per process (global batch "
                f"{self.settings.global_batch()}) for "
                f"{self._where(len(self.progress.epochs) + 1)}; "
                "lower train.batch_per_gpu or free the GPU"
            ) from None
        finally:
            self.tb.close()
            self.ckpt.join()  # an interrupted run still finishes its checkpoint write
        self.ckpt.wait()  # the last background write is on disk, or its error raised here
        if self.ctx.is_main:
            # again: after a resume Snakemake had deleted it
            self.ckpt.save_best(self.progress.best, self.out / "best.pt")
            writes = self.ckpt.summary()
            self.record["checkpoints"] = {**writes, "note": state.STUDY_ALGORITHM_NOTE}
            if self.plan.enabled:
                self.record["fast_paths"]["checkpoint_writes"] = writes
            state.write_records(self.record, self.facts, self.progress, status="finished")
            if not self.settings.keep_last:
                (self.out / "last.pt").unlink(missing_ok=True)
                self.ckpt.remove_resume_files()
        self.ctx.barrier()
        return self.record if self.ctx.is_main else None

    def _static_record(self, topology: dict) -> dict:
        """record.json's fixed part, from the parts as they are when training starts."""
        return state.static_record(self.facts, self.plan, self.bare, self.parallel_info, pin=self.pin,
                                   amp_dtype=self.amp_dtype, grad_scaler=self.scaler is not None,
                                   topology=topology, peak_mem_kind=peak_kind(self.devices))

    def resume_point(self, epoch: int) -> dict:
        """last.pt's payload after `epoch`, from the live weights, optimiser and scaler (snapshot it before the
        next step, as CheckpointWriter.save_last does)."""
        return state.last_state(self.facts, self.progress, epoch, self.bare, self.optimizer, self.scaler)

    def _one_epoch(self, epoch: int) -> None:
        reset_peak(self.devices)
        row = {"epoch": epoch, **self.train_epoch(epoch)}
        val_loss, val_images, val_s = self.validate()
        (peak,) = self.ctx.all_reduce([peak_mb(self.devices)], op="max")
        row.update(val_loss=val_loss, val_s=val_s, val_images=val_images, peak_mem_mb=peak)
        if self.scaler is not None:
            row["amp_scale"] = self.scaler.get_scale()
        progress = self.progress
        improved = progress.best is None or val_loss < progress.best["val_loss"]
        if self.views is not None:
            row.update(self.views.log_epoch(self.tb, progress.global_step, getattr(self, "val_psnr", None), improved))
        if improved:
            progress.best = state.best_payload(self.facts, self.bare, epoch, val_loss)
        progress.epochs.append(row)
        t0 = time.perf_counter()
        # [fast-path hook] every N epochs on the fast path; the study's set-ups every epoch
        prepared = None
        if self.ctx.is_main and self.plan.checkpoint_due(epoch, self.settings.epochs):
            prepared = self.ckpt.prepare_last(self.resume_point(epoch), progress.best)
        row["checkpoint_s"] = time.perf_counter() - t0  # what the epoch pays: the snapshot (and a write's wait)
        if self.ctx.is_main:
            records = state.records_writer(self.record, self.facts, progress, status="running")
            if prepared is not None:
                self.ckpt.start(prepared, then=records)  # record.json never counts an epoch before its last.pt
            else:
                records()
            for key in ("train_loss", "val_loss", "images_per_s", "train_s", "val_s", "peak_mem_mb"):
                self.tb.scalar(f"epoch/{key}", row[key], progress.global_step)  # one x-axis, so purge_step works
        self.log(
            f"epoch {epoch}/{self.settings.epochs}: train_loss {row['train_loss']:.5f} val_loss {val_loss:.5f} "
            f"train {row['train_s']:.1f}s val {val_s:.1f}s {row['images_per_s']:.1f} img/s "
            f"peak {peak:.0f} MB{' *best*' if improved else ''}"
        )
        if self.on_epoch_end is not None:
            self.on_epoch_end(epoch, {"row": row, "rank": self.ctx.rank, "rank_indices": self._last_rank_indices})


def _progress(total: int, desc: str, main: bool):
    """tqdm on rank 0 when stderr is a terminal; in log files the one-line-per-epoch summary is enough."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, leave=False, disable=not (main and sys.stderr.isatty()), file=sys.stderr)


def run_training(settings: TrainSettings, train_ds: Dataset, val_ds: Dataset, out_dir, ctx: DistContext, **kw: Any):
    """Train one job on this rank; returns the record on rank 0, None elsewhere."""
    return Trainer(settings, train_ds, val_ds, out_dir, ctx, **kw).run()


# ------------------------------------------------------------------------------------------------ clocks

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
