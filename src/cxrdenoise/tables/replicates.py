"""Replicate runs (train.replicates) combined into one table row: the mean over the runs, the between-run SD and a
95 % t-interval over the runs' means.

With one replicate (the study's protocol) a row is that run unchanged, and its interval is the per-image one of
its summary. With N >= 2 the interval is over runs (N − 1 df): it says how much a re-run with another
initialisation would move the number, which a per-image interval of one run cannot.

Hook for patient-level statistics: `per_image_frame(run)` returns the per-image scores of all replicates of a
row (one row per image and replicate, with `replicate`), and `per_image_means(run)` one row per image averaged
over the replicates, so a patient-cluster bootstrap or a paired test can take a row's images whatever N is.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import replace
from typing import Sequence

import pandas as pd

from ..errors import CxrError
from ..metric_registry import METRIC_COLUMNS
from ..stats import t_ppf
from .records import Run, read_per_image

RUNS_INTERVAL = "t over runs"


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """(mean, SD, half-width of the 95 % t-interval) over runs; SD and half-width NaN with fewer than 2."""
    vals = [float(v) for v in values]
    if not vals or any(not math.isfinite(v) for v in vals):
        return math.nan, math.nan, math.nan
    mean = statistics.fmean(vals)
    if len(vals) < 2:
        return mean, math.nan, math.nan
    sd = statistics.stdev(vals)
    return mean, sd, t_ppf(0.975, len(vals) - 1) * sd / math.sqrt(len(vals))


def combine(reps: list[Run]) -> Run:
    """One row from a (model, sigma, setup)'s replicates (sorted by replicate)."""
    if len(reps) == 1:
        return replace(reps[0], replicates=[reps[0]])
    first = reps[0]
    # per_image_path: replicate 1's file (all replicates score the same test images and patients); a row's scores
    # are read through per_image_means / patients.run_frame, which average over the replicates
    group = Run(first.model, first.sigma, first.setup, rep=None, record=first.record, record_path=first.record_path,
                per_image_path=first.per_image_path, replicates=list(reps))
    with_summary = [r for r in reps if r.summary is not None]
    if with_summary:
        if len(with_summary) != len(reps):
            missing = ", ".join(f"rep{r.rep}" for r in reps if r.summary is None)
            raise CxrError(f"{first.model} σ={first.sigma} {first.setup}: no evaluation summary for {missing} "
                           f"(have {len(with_summary)} of {len(reps)} replicates)")
        group.summary, group.summary_path = combined_summary(reps), first.summary_path
    return group


def denoising_replicates(reps: list[Run], noisy: dict[str, Run] | None) -> list[Run]:
    """The replicates whose own mean PSNR beats the no-denoising run at their sigma (all without a baseline or
    a summary to judge by)."""
    from ..denoised import did_not_denoise

    base = noisy.get(reps[0].sigma) if noisy else None
    base_psnr = (_entry(base.summary or {}, "psnr") or {}).get("mean") if base is not None else None
    if base_psnr is None:
        return list(reps)
    return [r for r in reps if r.summary is None
            or not did_not_denoise((_entry(r.summary, "psnr") or {}).get("mean"), float(base_psnr))]


def excluded_caption(runs: Sequence[Run]) -> str:
    """The caption line counting the replicates left out because they did not denoise."""
    bad = [f"{r.model} {r.setup} σ={r.sigma}: " + ", ".join(f"rep{k}" for k in r.excluded) for r in runs if r.excluded]
    if not bad:
        return ""
    n = sum(len(r.excluded) for r in runs)
    return (f"{n} training run(s) did not denoise (mean PSNR not above no denoising) and are excluded from every "
            f"mean, interval and verdict: {'; '.join(bad)}.")


def _entry(summary: dict, name: str) -> dict | None:
    entry = (summary.get("metrics") or {}).get(name, summary.get(name))
    return entry if isinstance(entry, dict) else None


def combined_summary(reps: list[Run]) -> dict:
    """A summary.json-shaped dict whose metric means are over the replicates and whose `ci95_t` is over runs."""
    summaries = [r.summary or {} for r in reps]
    ns = {s.get("n_images", s.get("n")) for s in summaries}
    if len(ns) != 1:
        raise CxrError(f"{reps[0].model} σ={reps[0].sigma} {reps[0].setup}: replicates were evaluated on different "
                       f"numbers of test images ({sorted(map(str, ns))}); re-run the evaluation")
    metrics = {}
    for name in METRIC_COLUMNS:
        entries = [_entry(s, name) for s in summaries]
        if any(e is None for e in entries):
            continue
        means = [math.nan if e.get("mean") is None else float(e["mean"]) for e in entries]
        mean, sd, half = t_interval(means)
        metrics[name] = {"mean": None if math.isnan(mean) else mean, "sd_between_runs": sd,
                         "ci95_t": [mean - half, mean + half] if math.isfinite(half) else None,
                         "ci95_t_halfwidth": half, "interval": RUNS_INTERVAL, "n_runs": len(reps),
                         "per_run": means}
    lpips = {(s.get("lpips_kind"), s.get("lpips_status")) for s in summaries}
    out = dict(summaries[0])  # LPIPS status, device, provenance: replicate 1's ...
    out.update(metrics=metrics, n_runs=len(reps), replicates=[r.rep for r in reps], interval=RUNS_INTERVAL)
    if len(lpips) != 1:  # ... unless the replicates disagree about LPIPS: then it is not shown
        out.update(lpips_kind="none", lpips_status="mixed",
                   lpips_message=f"the replicates' LPIPS differ in kind or status ({sorted(map(str, lpips))})")
    return out


def spread(run: Run, name: str) -> tuple[int, float, float]:
    """(runs, between-run SD, half-width of the t-interval over runs) of one metric; NaNs for one run."""
    entry = _entry(run.summary or {}, name) or {}
    if int(entry.get("n_runs") or 1) < 2:
        return 1, math.nan, math.nan
    return int(entry["n_runs"]), float(entry["sd_between_runs"]), float(entry["ci95_t_halfwidth"])


def replicate_caption(runs: Sequence[Run]) -> str:
    """The caption line saying how many runs each row averages and what its interval is over."""
    excluded = excluded_caption(runs)
    return _replicate_text(runs) + (f" {excluded}" if excluded else "")


def _replicate_text(runs: Sequence[Run]) -> str:
    counts = sorted({r.n_replicates for r in runs if r.setup})
    if not counts or counts == [1]:
        return ("One training run per configuration (train.replicates: 1, as in the study): intervals are over "
                "test images, and say nothing about how a re-run with another initialisation would differ.")
    n = "/".join(map(str, counts))
    return (f"Each trained row is the mean over {n} training runs (train.replicates; the runs differ in their "
            "initial weights and batch order: same data, noise and split); SD = between-run standard deviation; "
            "its 95 % interval is a t-interval over the runs' means (N − 1 df), not over test images.")


def per_image_frame(run: Run) -> pd.DataFrame:
    """Per-image scores of every replicate of a row, with a `replicate` column (hook for patient-level stats)."""
    reps = run.replicates or [run]
    missing = [r.label for r in reps if r.per_image_path is None]
    if missing:
        raise CxrError(f"per-image scores needed for {', '.join(missing)} (per_image.csv not given)")
    frames = [read_per_image(r.per_image_path).assign(replicate=r.rep) for r in reps]
    return pd.concat(frames, ignore_index=True)


def per_image_means(run: Run) -> pd.DataFrame:
    """One row per test image: each metric averaged over the row's replicates (`stats.replicate_mean_frame`:
    same images and patients required, a non-finite value in any replicate stays non-finite); the one run's
    per_image.csv when there is one replicate. What patient-level intervals and paired tests take."""
    reps = run.replicates or [run]
    missing = [r.label for r in reps if r.per_image_path is None]
    if missing:
        raise CxrError(f"per-image scores needed for {', '.join(missing)} (per_image.csv not given)")
    if len(reps) == 1:
        return read_per_image(reps[0].per_image_path)
    from ..stats import replicate_mean_frame

    return replicate_mean_frame([read_per_image(r.per_image_path) for r in reps])
