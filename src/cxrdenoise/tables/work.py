"""Equal-work accounting and the "did not denoise" flag, for Tables III-VI and the figures.

Setups differ in more than parallelism: at the same epochs and per-GPU batch a 2-GPU run takes half the optimizer
steps of the 1-GPU run. So beside the fixed-epoch time, Table V gives each run's optimizer steps and images seen,
and its time-to-quality: the training + validation seconds until its validation loss first reached the best
validation loss of the 1-GPU run (same model, noise level and replicate), or "not reached".

A row whose mean PSNR does not beat the no-denoising row at its noise level did not denoise
(`cxrdenoise.denoised.did_not_denoise`): it is flagged and gets no time-saving figure.
"""

from __future__ import annotations

import math
from typing import Sequence

from ..denoised import NOT_DENOISED, did_not_denoise
from .records import Run
from .scores import metric

NOT_REACHED = "not reached"
FLAG_NOTE = (f"{NOT_DENOISED}: mean test PSNR not above the no-denoising row at this noise level; "
             "no time saving is computed for it.")
TTQ_NOTE = ("Time-to-quality (TTQ) = training + validation seconds (summed per epoch, cumulative) until the run's "
            "validation loss first reached the best validation loss of the gpu1 run of the same model and "
            f"replicate; \"{NOT_REACHED}\" when it never did within its epochs. Steps = optimizer updates, images "
            "= training images passed (all processes, DistributedSampler padding included). TTQ saving: the mean "
            "over run pairs; a run that never reached the target is censored at its total time, which bounds the saving "
            "(≤ or ≥), never dropped.")


def steps_and_images(run: Run) -> tuple[float, float]:
    """(optimizer steps, images seen) of a run, the mean over its replicates; NaN when the record has neither."""
    each = [_one_steps_images(r) for r in (run.replicates or [run])]
    steps = [s for s, _ in each]
    images = [i for _, i in each]
    return (sum(steps) / len(steps) if steps else math.nan), (sum(images) / len(images) if images else math.nan)


def _one_steps_images(run: Run) -> tuple[float, float]:
    rec = run.record or {}
    tot = rec.get("totals") or {}
    epochs = rec.get("epochs") or []
    steps = tot.get("optimizer_steps")
    if steps is None:
        steps = sum(e["steps"] for e in epochs) if epochs and all("steps" in e for e in epochs) else math.nan
    images = tot.get("images_seen", tot.get("train_images"))
    if images is None:
        images = sum(e["train_images"] for e in epochs) if epochs and all("train_images" in e for e in epochs) \
            else math.nan
    return float(steps), float(images)


def time_to_quality(epochs: Sequence[dict], target_loss: float) -> dict | None:
    """The first epoch whose validation loss is <= `target_loss`, with the cumulative train + validation
    seconds, optimizer steps and images up to and including it; None when no epoch reached it."""
    if target_loss is None or not math.isfinite(float(target_loss)):
        return None
    seconds = steps = images = 0.0
    for e in epochs:
        seconds += float(e.get("train_s", 0.0)) + float(e.get("val_s", 0.0))
        steps += float(e.get("steps", math.nan))
        images += float(e.get("train_images", math.nan))
        if float(e["val_loss"]) <= float(target_loss):
            return {"epoch": int(e["epoch"]), "seconds": seconds, "steps": steps, "images": images}
    return None


def best_val_loss(run: Run) -> float:
    rec = run.record or {}
    value = rec.get("best_val_loss")
    if value is None:
        losses = [float(e["val_loss"]) for e in rec.get("epochs") or []]
        return min(losses) if losses else math.nan
    return float(value)


def noisy_psnr(noisy: dict[str, Run], sigma: str) -> float | None:
    """The no-denoising row's mean PSNR at `sigma`, or None when it was not given."""
    run = noisy.get(sigma)
    return None if run is None or run.summary is None else metric(run, "psnr")[0]


def not_denoised(run: Run, noisy: dict[str, Run]) -> bool | None:
    """Whether a trained row did not denoise; None when the no-denoising row at its sigma was not given."""
    base = noisy_psnr(noisy, run.sigma)
    if base is None or run.summary is None:
        return None
    return did_not_denoise(metric(run, "psnr")[0], base)


def replicates_not_denoised(run: Run, noisy: dict[str, Run]) -> list[int]:
    """Replicate numbers of a row whose own mean PSNR did not beat no denoising."""
    base = noisy_psnr(noisy, run.sigma)
    if base is None:
        return []
    return [r.rep or 1 for r in (run.replicates or [run])
            if r.summary is not None and did_not_denoise(metric(r, "psnr")[0], base)]


def denoise_cell(flag: bool | None, bad_reps: Sequence[int] = (), n_reps: int = 1) -> str:
    """The 'denoised' column: yes, NOT_DENOISED, or which replicates did not."""
    if flag is None:
        return "n/a (no-denoising row not given)"
    if flag:
        return NOT_DENOISED
    if bad_reps:
        return f"yes; excluded ({NOT_DENOISED}): " + ", ".join(f"rep{k}" for k in bad_reps)
    return "yes"


def total_seconds(run: Run) -> float:
    return sum(float(e.get("train_s", 0.0)) + float(e.get("val_s", 0.0)) for e in (run.record or {}).get("epochs") or [])


def ttq_saving_bounds(rep: Run, ref: Run, target: float) -> tuple[float, float]:
    """Time saving (%) of `rep` against `ref`, both to the validation loss `target`, as [lo, hi]: equal when
    both reached it; a run that never did is censored at its total time, which bounds the saving."""
    ours = time_to_quality((rep.record or {}).get("epochs") or [], target)
    theirs = time_to_quality((ref.record or {}).get("epochs") or [], target)
    t_ours = ours["seconds"] if ours else None
    t_ref = theirs["seconds"] if theirs else None
    if t_ours is not None and t_ref is not None:
        ts = (t_ref - t_ours) / t_ref * 100.0
        return ts, ts
    if t_ref is not None:  # ours censored: it takes longer than its total time
        return -math.inf, (t_ref - total_seconds(rep)) / t_ref * 100.0
    if t_ours is not None:  # the reference censored: it takes longer than its total time
        total = total_seconds(ref)
        return (total - t_ours) / total * 100.0, 100.0
    return -math.inf, 100.0


def mean_bounds(bounds: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The mean saving's [lo, hi] over replicate pairs (a censored pair contributes its bound)."""
    if not bounds:
        return math.nan, math.nan
    return sum(b[0] for b in bounds) / len(bounds), sum(b[1] for b in bounds) / len(bounds)


def bounds_text(lo: float, hi: float, dp: int = 2) -> str:
    """'12.34', '≤ 12.34' or '[1.00, 12.34]' for a saving's bounds."""
    if lo == hi:
        return f"{lo:.{dp}f}"
    if math.isinf(lo):
        return f"≤ {hi:.{dp}f}"
    return f"≥ {lo:.{dp}f}" if hi >= 100.0 else f"[{lo:.{dp}f}, {hi:.{dp}f}]"
