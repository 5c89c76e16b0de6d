"""Patient-level intervals and paired comparisons of runs, for every table that shows them and for the claims.

`run_frame` is the one place a run's per-image scores are read: a caller that averages replicate runs image by
image replaces what it returns, and every interval and test below follows. Seeds derive from the config seed
and what is compared (`stats.bootstrap_seed`), so one interval does not change when another is added.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import pandas as pd

from .. import stats
from ..errors import CxrError
from .records import Run, read_per_image

BOOTSTRAP_NOTE = ("95 % CI (patients) = {method}, {b:,} resamples of the test patients (each with all its "
                  "images), seed derived from config seed {seed}; mean ± is the image-level t-interval, which "
                  "treats images as independent.")


def run_frame(run: Run, table: str = "table") -> pd.DataFrame:
    """The per-image scores of one run (image_id, patient_id, metrics); CxrError if the file was not given.

    With replicate runs (train.replicates >= 2) it is the image-by-image mean over the replicates
    (`replicates.per_image_means`, i.e. `stats.replicate_mean_frame`): every patient-level interval, paired test and
    claim reads a run's scores through here.
    """
    if run.n_replicates > 1:
        from .replicates import per_image_means

        missing = [r.label for r in run.replicates if r.per_image_path is None]
        if missing:
            raise CxrError(f"{table}: patient-level statistics need per_image.csv for {', '.join(missing)} "
                           "(not given)")
        return per_image_means(run)
    if run.per_image_path is None:
        raise CxrError(f"{table}: patient-level statistics need per_image.csv for {run.label} (not given)")
    frame = read_per_image(run.per_image_path)
    if "patient_id" not in frame.columns:
        raise CxrError(f"{run.per_image_path}: no patient_id column; re-run its evaluation")
    return frame


def replicate_frames(run: Run, table: str = "table") -> list[pd.DataFrame]:
    """One per-image frame per replicate of `run` (the estimand's input: `stats.patient_level_estimate`)."""
    reps = run.replicates or [run]
    missing = [r.label for r in reps if r.per_image_path is None]
    if missing:
        raise CxrError(f"{table}: patient-level statistics need per_image.csv for {', '.join(missing)} (not given)")
    return [read_per_image(r.per_image_path) for r in reps]


def mean_frame(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The image-by-image mean of replicate frames (`stats.replicate_mean_frame`); the frame itself for one run."""
    return frames[0] if len(frames) == 1 else stats.replicate_mean_frame(list(frames))


def count_patients(frame: pd.DataFrame) -> int:
    return int(frame["patient_id"].astype(str).nunique())


def mean_intervals(frame: pd.DataFrame, run: Run, metrics: Sequence[str], resamples: int,
                   config_seed: int) -> dict[str, Any]:
    """CSV columns `{metric}_ci95_patient_lo/hi` for each metric present, plus n_patients and the seed base."""
    out: dict[str, Any] = {"n_patients": count_patients(frame), "bootstrap_resamples": int(resamples),
                           "bootstrap_config_seed": int(config_seed)}
    for m in metrics:
        if m not in frame.columns or not frame[m].notna().any():
            out[f"{m}_ci95_patient_lo"] = out[f"{m}_ci95_patient_hi"] = math.nan
            continue
        seed = stats.bootstrap_seed(config_seed, "mean", run.model, run.sigma, run.setup, m)
        ci = stats.cluster_bootstrap_ci(frame[m], frame["patient_id"].astype(str), resamples, seed)["ci"]
        out[f"{m}_ci95_patient_lo"], out[f"{m}_ci95_patient_hi"] = ci if ci else (math.nan, math.nan)
    return out


ESTIMAND_NOTE = ("Paired differences are ours − ours on the same test images (by image id) at the same σ. The "
                 "number is the {estimand}; its 95 % interval and p come from one {method} (run-to-run variation "
                 "enters only where a side has 2 or more runs: 'runs' says how many); p Holm-adjusted over all {m} "
                 "differences of this table. image-weighted = the mean over images (secondary).")


def estimand_note(m: int) -> str:
    return ESTIMAND_NOTE.format(estimand=stats.PRIMARY_ESTIMAND, method=stats.RUNS_PATIENTS_METHOD, m=m)


def fmt_ci(ci: Sequence[float] | None, dp: int) -> str:
    if not ci or any(v is None or (isinstance(v, float) and math.isnan(v)) for v in ci):
        return ""
    return f"[{ci[0]:.{dp}f}, {ci[1]:.{dp}f}]"


def bootstrap_note(resamples: int, config_seed: int) -> str:
    return BOOTSTRAP_NOTE.format(method=stats.BOOTSTRAP_METHOD, b=int(resamples), seed=config_seed)

