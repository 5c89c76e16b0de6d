"""Summary statistics and paired model comparisons over per-image metric columns.

Confidence intervals: both are stored, because the study used the normal approximation and we report the
t-interval. With n = 2,551 test images they agree to about 0.05 %, but for small demo runs they do not.

* ``ci95_t``      = mean +/- t_{0.975, n-1} * sd / sqrt(n)   (sd with ddof=1) -- the interval we report;
* ``ci95_normal`` = mean +/- 1.96 * sd / sqrt(n)              -- the study's normal approximation.

Non-finite values: PSNR is ``inf`` for an image reproduced exactly. Such values are excluded from the mean and
the CI and counted (``n_inf``); NaN (e.g. LPIPS unavailable) is excluded and counted as ``n_nan``. A metric
with no finite value has mean ``None``.

Paired tests compare two models on the *same* images: rows are aligned by ``image_id`` and the comparison
fails (CxrError) if the two image sets differ, because an unpaired difference would be meaningless.

Patient level (second half of this module): `cluster_bootstrap_ci` / `patient_mean_ci` (patients resampled,
not images), `paired_patient_test` (tests on per-patient means of paired differences) and `holm` (multiplicity
within a table). These are what the tables and the claims verdicts use; see docs/methods.md, "Statistics".
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from .errors import CxrError

Z_STUDY = 1.96  # the study's normal quantile, kept as written to reproduce its intervals
CI_METHOD = "t"  # which interval is *the* reported one
CI_NOTE = (
    "ci95_t = mean +/- t(0.975, n-1)*sd/sqrt(n) (reported); ci95_normal = mean +/- 1.96*sd/sqrt(n) "
    "(the study's normal approximation); sd with ddof=1; non-finite values excluded and counted"
)


def _sps():
    """scipy.stats, imported on first use: importing it costs every job that imports this module ~0.4 s of
    start-up (evaluate, classical, the report's jobs), and only the tests and intervals below need it."""
    from scipy import stats

    return stats


def t_ppf(q: float, df: float) -> float:
    """Student's t quantile exactly as scipy.stats.t.ppf(q, df) gives it for 0 < q < 1 and df > 0 (its
    special.stdtrit(df, q), times scale 1 plus loc 0), without importing scipy.stats: evaluate jobs and the
    figures need only this quantile."""
    from scipy.special import stdtrit

    return float(stdtrit(df, q))


def _finite_or_none(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def mean_ci(values: Iterable[float]) -> dict[str, Any]:
    """Mean, sd and both 95 % CIs of the finite values; infinities and NaNs are counted, not averaged."""
    arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values, dtype=np.float64)
    n_nan = int(np.isnan(arr).sum())
    n_inf = int(np.isinf(arr).sum())
    finite = arr[np.isfinite(arr)]
    n = int(finite.size)
    out: dict[str, Any] = {
        "n": n, "n_inf": n_inf, "n_nan": n_nan, "mean": None, "sd": None,
        "ci95_t": None, "ci95_t_halfwidth": None, "ci95_normal": None, "ci95_normal_halfwidth": None,
    }
    if n == 0:
        return out
    mean = float(finite.mean())
    out["mean"] = mean
    if n < 2:
        return out
    sd = float(finite.std(ddof=1))
    se = sd / math.sqrt(n)
    half_t = t_ppf(0.975, n - 1) * se
    half_z = Z_STUDY * se
    out.update(
        sd=sd,
        ci95_t=[mean - half_t, mean + half_t], ci95_t_halfwidth=half_t,
        ci95_normal=[mean - half_z, mean + half_z], ci95_normal_halfwidth=half_z,
    )
    return out


def summarise(frame: pd.DataFrame, columns: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`mean_ci` for each named column present in `frame`."""
    return {col: mean_ci(frame[col].to_numpy(dtype=np.float64)) for col in columns if col in frame.columns}


def align_pairs(a: pd.DataFrame, b: pd.DataFrame, label_a: str = "A", label_b: str = "B") -> pd.DataFrame:
    """Join two per-image tables on image_id; CxrError if ids repeat or the two image sets differ."""
    for frame, label in ((a, label_a), (b, label_b)):
        if "image_id" not in frame.columns:
            raise CxrError(f"{label}: per-image table has no image_id column")
        dup = frame["image_id"][frame["image_id"].duplicated()]
        if len(dup):
            raise CxrError(f"{label}: image_id repeated ({', '.join(map(str, dup[:3]))}...)")
    ids_a, ids_b = set(a["image_id"]), set(b["image_id"])
    if ids_a != ids_b:
        only_a, only_b = sorted(ids_a - ids_b), sorted(ids_b - ids_a)
        raise CxrError(
            f"paired test needs the same images: {len(only_a)} only in {label_a} (e.g. {only_a[:3]}), "
            f"{len(only_b)} only in {label_b} (e.g. {only_b[:3]})"
        )
    return a.merge(b, on="image_id", suffixes=("_a", "_b"), validate="one_to_one")


def paired_test(
    a: pd.DataFrame, b: pd.DataFrame, metric: str, label_a: str = "A", label_b: str = "B"
) -> dict[str, Any]:
    """Paired t-test and Wilcoxon signed-rank test of `metric`, A vs B, on the same images.

    Pairs where either value is non-finite (PSNR ``inf``, LPIPS NaN) are dropped and counted. ``mean_diff`` is
    mean(A - B); the p-values are two-sided. Wilcoxon uses scipy's defaults (zero differences dropped).
    """
    for frame, label in ((a, label_a), (b, label_b)):
        if metric not in frame.columns:
            raise CxrError(f"{label}: per-image table has no {metric!r} column")
    joined = align_pairs(a[["image_id", metric]], b[["image_id", metric]], label_a, label_b)
    xa = joined[f"{metric}_a"].to_numpy(dtype=np.float64)
    xb = joined[f"{metric}_b"].to_numpy(dtype=np.float64)
    keep = np.isfinite(xa) & np.isfinite(xb)
    xa, xb = xa[keep], xb[keep]
    diff = xa - xb
    result: dict[str, Any] = {
        "metric": metric, "a": label_a, "b": label_b, "n": int(keep.sum()), "n_dropped": int((~keep).sum()),
        "mean_a": None, "mean_b": None, "mean_diff": None,
        "t_statistic": None, "t_pvalue": None, "wilcoxon_statistic": None, "wilcoxon_pvalue": None,
    }
    if diff.size == 0:
        return result
    result.update(mean_a=float(xa.mean()), mean_b=float(xb.mean()), mean_diff=float(diff.mean()))
    if diff.size < 2:
        return result
    if np.all(diff == 0):  # identical columns: no evidence of a difference (scipy would return NaN or raise)
        result.update(t_statistic=0.0, t_pvalue=1.0, wilcoxon_statistic=0.0, wilcoxon_pvalue=1.0)
        return result
    t = _sps().ttest_rel(xa, xb)
    w = _sps().wilcoxon(xa, xb)
    result.update(
        t_statistic=_finite_or_none(t.statistic), t_pvalue=float(t.pvalue),
        wilcoxon_statistic=float(w.statistic), wilcoxon_pvalue=float(w.pvalue),
    )
    return result


def paired_tests(
    a: pd.DataFrame, b: pd.DataFrame, metrics: Sequence[str] = ("psnr", "ssim", "ssim_w3", "lpips"),
    label_a: str = "A", label_b: str = "B",
) -> list[dict[str, Any]]:
    """`paired_test` for each metric present in both tables (same sigma: the caller's responsibility)."""
    return [
        paired_test(a, b, m, label_a, label_b) for m in metrics if m in a.columns and m in b.columns
    ]


# ------------------------------------------------------------------------------ patient-level statistics
#
# A patient-disjoint test set still holds about 2.1 images per patient, and images of one patient are
# correlated: treating them as independent makes intervals too narrow and p-values too small. So every mean
# and every paired difference also gets a patient-cluster bootstrap interval (patients are resampled with
# replacement, each bringing all its images), and paired tests run on per-patient means of the paired
# differences. Holm's step-down correction adjusts the p-values within each table.
#
# These functions take per-image frames (one row per test image, with ``image_id`` and ``patient_id``), so a
# caller that averages replicate runs image by image can pass the averaged frame unchanged.

BOOTSTRAP_METHOD = "patient-cluster percentile bootstrap"
DEFAULT_RESAMPLES = 2000
PAIRED_PATIENT_METHOD = ("paired t-test and Wilcoxon signed-rank on per-patient means of the paired "
                         "differences, two-sided")
HOLM_METHOD = "Holm step-down adjustment within the table"
_CHUNK = 256  # resamples drawn at once (bounds memory at CHUNK x patients)


def bootstrap_seed(config_seed: int, *keys: object) -> int:
    """The bootstrap's seed for one interval: derived from the config seed and what the interval is about.

    63 bits, so that it fits a CSV integer column and can be recorded and re-used exactly.
    """
    from .seeding import derived_seed

    return derived_seed(int(config_seed), "bootstrap", *keys) >> 65


def cluster_bootstrap_ci(values: Sequence[float] | np.ndarray, clusters: Sequence[Any] | np.ndarray,
                         resamples: int = DEFAULT_RESAMPLES, seed: int = 0, level: float = 0.95) -> dict[str, Any]:
    """Percentile interval of the image mean when whole clusters (patients) are resampled with replacement.

    Each resample draws as many patients as there are, with replacement, and takes the mean over all images of
    the drawn patients (a patient drawn twice counts twice). Non-finite values are dropped first (counted).
    Returns mean, [lo, hi], n_images, n_patients, resamples, seed and the method name; lo/hi are None with
    fewer than two patients.
    """
    vals = np.asarray(values, dtype=np.float64)
    groups = np.asarray(clusters)
    if vals.shape != groups.shape:
        raise CxrError(f"bootstrap: {vals.size} values but {groups.size} patient ids")
    if int(resamples) < 1:
        raise CxrError(f"bootstrap: resamples must be >= 1, got {resamples} (evaluate.bootstrap_resamples)")
    keep = np.isfinite(vals)
    vals, groups = vals[keep], groups[keep]
    codes, uniques = pd.factorize(pd.Series(groups, dtype=object).astype(str), sort=True)
    n_patients = len(uniques)
    out: dict[str, Any] = {"method": BOOTSTRAP_METHOD, "level": level, "resamples": int(resamples),
                           "seed": int(seed), "n_images": int(vals.size), "n_dropped": int((~keep).sum()),
                           "n_patients": int(n_patients), "mean": float(vals.mean()) if vals.size else None,
                           "ci": None}
    if n_patients < 2:
        return out
    sums = np.bincount(codes, weights=vals, minlength=n_patients)
    counts = np.bincount(codes, minlength=n_patients).astype(np.float64)
    rng = np.random.default_rng(np.random.SeedSequence(int(seed)))
    means = np.empty(int(resamples))
    for start in range(0, int(resamples), _CHUNK):
        b = min(_CHUNK, int(resamples) - start)
        draw = rng.integers(0, n_patients, size=(b, n_patients))
        means[start:start + b] = sums[draw].sum(axis=1) / counts[draw].sum(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    out["ci"] = [float(lo), float(hi)]
    return out


def patient_mean_ci(frame: pd.DataFrame, metric: str, resamples: int = DEFAULT_RESAMPLES,
                    seed: int = 0) -> dict[str, Any]:
    """One metric's mean with both intervals: the image-level t-interval (`mean_ci`) and the patient bootstrap."""
    _require_columns(frame, ("patient_id", metric), "per-image table")
    values = frame[metric].to_numpy(dtype=np.float64)
    out = mean_ci(values)
    boot = cluster_bootstrap_ci(values, frame["patient_id"].to_numpy(), resamples, seed)
    out.update(n_patients=boot["n_patients"], ci95_patient_bootstrap=boot["ci"], bootstrap_resamples=boot["resamples"],
               bootstrap_seed=boot["seed"], bootstrap_method=boot["method"])
    return out


def per_patient_means(frame: pd.DataFrame, column: str) -> pd.Series:
    """Mean of `column` per patient over the finite values (patients with none are left out)."""
    _require_columns(frame, ("patient_id", column), "per-image table")
    finite = frame[np.isfinite(frame[column].to_numpy(dtype=np.float64))]
    return finite.groupby(finite["patient_id"].astype(str), sort=True)[column].mean()


def paired_patient_test(a: pd.DataFrame, b: pd.DataFrame, metric: str, label_a: str = "A", label_b: str = "B",
                        resamples: int = DEFAULT_RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """A − B on the same test images, with patients respected: a paired difference and its tests.

    * ``mean_diff``: mean over images of (A − B), pairs with a non-finite value dropped and counted;
    * ``ci95_patient_bootstrap``: `cluster_bootstrap_ci` of that mean (patients resampled);
    * ``p_t`` / ``p_wilcoxon``: one-sample t-test and Wilcoxon signed-rank test of the per-patient means of
      (A − B) against 0, so a patient with five images counts once, not five times.

    The two frames must hold the same images with the same patient for each (CxrError otherwise).
    """
    for frame, label in ((a, label_a), (b, label_b)):
        _require_columns(frame, ("patient_id", metric), f"{label}: per-image table")
    joined = align_pairs(a[["image_id", "patient_id", metric]], b[["image_id", "patient_id", metric]],
                         label_a, label_b)
    pa, pb = joined["patient_id_a"].astype(str), joined["patient_id_b"].astype(str)
    if not (pa == pb).all():
        bad = joined.loc[pa != pb, "image_id"].iloc[0]
        raise CxrError(f"paired test: image {bad} has patient {pa[pa != pb].iloc[0]} in {label_a} but "
                       f"{pb[pa != pb].iloc[0]} in {label_b}; re-run the evaluation of one of them")
    xa = joined[f"{metric}_a"].to_numpy(dtype=np.float64)
    xb = joined[f"{metric}_b"].to_numpy(dtype=np.float64)
    keep = np.isfinite(xa) & np.isfinite(xb)
    diff = pd.DataFrame({"patient_id": pa[keep].to_numpy(), "diff": xa[keep] - xb[keep]})
    boot = cluster_bootstrap_ci(diff["diff"].to_numpy(), diff["patient_id"].to_numpy(), resamples, seed)
    patient_diff = per_patient_means(diff, "diff").to_numpy()
    out: dict[str, Any] = {
        "metric": metric, "a": label_a, "b": label_b, "n_images": int(keep.sum()), "n_dropped": int((~keep).sum()),
        "n_patients": int(patient_diff.size), "mean_a": float(xa[keep].mean()) if keep.any() else None,
        "mean_b": float(xb[keep].mean()) if keep.any() else None, "mean_diff": boot["mean"],
        "ci95_patient_bootstrap": boot["ci"], "bootstrap_resamples": boot["resamples"], "bootstrap_seed": boot["seed"],
        "p_t": None, "p_wilcoxon": None, "test_method": PAIRED_PATIENT_METHOD,
    }
    if patient_diff.size < 2:
        return out
    if np.all(patient_diff == 0):  # no evidence of a difference (scipy would return NaN or raise)
        out.update(p_t=1.0, p_wilcoxon=1.0)
        return out
    out["p_t"] = _finite_or_none(float(_sps().ttest_1samp(patient_diff, 0.0).pvalue))
    out["p_wilcoxon"] = float(_sps().wilcoxon(patient_diff).pvalue)
    return out


# ------------------------------------------------------------------------------ the primary estimand
#
# One quantity per comparison (docs/statistics.md): the patient-level mean, every test patient weighing the same
# (the unit the tests use, whatever its number of images), averaged over the training runs of each side. Its
# interval and its tests are computed on that same quantity, so a printed mean, interval and p can never
# disagree in sign. Training runs are a second unit: a comparison of two models or set-ups is about the training
# procedure, not one set of weights, so the run-to-run spread enters the variance beside the patient spread:
#
#     Var(D) = s_d^2 / P  +  s_A^2 / R_A  +  s_B^2 / R_B
#
# with d_p the per-patient difference of the run-averaged scores (P patients), s_A^2 the variance over A's R_A
# runs of their patient-level means (likewise B). Every run is scored on the same test patients, so the patient
# term and the run terms are estimated separately and added; Satterthwaite's df gives the t quantile. With one
# run on a side its run term cannot be estimated: the result says so (`runs_in_interval` False) and a verdict
# built on it is about these trained models only. Coverage at 3 runs: benchmarks/sim_coverage.py.

PRIMARY_ESTIMAND = "patient-level mean (each test patient weighs the same), averaged over training runs"
RUNS_PATIENTS_METHOD = ("t-interval on the patient-level mean; variance = between-patient + between-run (each side), "
                        "Satterthwaite df")


def _aligned_matrix(frames: Sequence[pd.DataFrame], metric: str, labels: Sequence[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """(image_id/patient_id frame, runs x images matrix of `metric`) for frames that must score the same images."""
    base = None
    columns = []
    for frame, label in zip(frames, labels):
        _require_columns(frame, ("image_id", "patient_id", metric), f"{label}: per-image table")
        part = frame[["image_id", "patient_id", metric]]
        if base is None:
            dup = part["image_id"][part["image_id"].duplicated()]
            if len(dup):
                raise CxrError(f"{label}: image_id repeated ({', '.join(map(str, dup[:3]))}...)")
            base = part[["image_id", "patient_id"]].reset_index(drop=True)
            columns.append(part[metric].to_numpy(dtype=np.float64))
            continue
        joined = align_pairs(base, part, labels[0], label)
        pa, pb = joined["patient_id_a"].astype(str), joined["patient_id_b"].astype(str)
        if not (pa == pb).all():
            bad = joined.loc[pa != pb, "image_id"].iloc[0]
            raise CxrError(f"image {bad} has patient {pa[pa != pb].iloc[0]} in {labels[0]} but "
                           f"{pb[pa != pb].iloc[0]} in {label}; re-run the evaluation of one of them")
        columns.append(joined.set_index("image_id")[metric].loc[base["image_id"]].to_numpy(dtype=np.float64))
    return base, np.vstack(columns)


def _patient_means(values: np.ndarray, codes: np.ndarray, n_patients: int) -> np.ndarray:
    """runs x patients matrix of per-patient means of a runs x images matrix (all finite)."""
    counts = np.bincount(codes, minlength=n_patients).astype(np.float64)
    return np.vstack([np.bincount(codes, weights=row, minlength=n_patients) for row in values]) / counts


def _run_variance(patient_means: np.ndarray) -> float | None:
    """Variance of the runs' patient-level means divided by the number of runs; None with one run."""
    r = patient_means.shape[0]
    return float(patient_means.mean(axis=1).var(ddof=1)) / r if r >= 2 else None


def patient_level_estimate(frames_a: Sequence[pd.DataFrame], frames_b: Sequence[pd.DataFrame] | None, metric: str,
                           label_a: str = "A", label_b: str = "B", level: float = 0.95) -> dict[str, Any]:
    """The primary estimand of A (one sample) or of A − B (two runs' sets on the same test images).

    `frames_a` / `frames_b`: one per-image frame per training run (replicate) of each side. Images with a
    non-finite value in any run (PSNR inf, LPIPS NaN) are dropped and counted. Returns the estimate, its standard
    error, df, interval, two-sided p against 0 and its components; the image-weighted mean difference and a
    Wilcoxon signed-rank p on the per-patient values ride along as secondary, labelled quantities.
    """
    frames_b = list(frames_b or [])
    if not frames_a:
        raise CxrError(f"{label_a}: no per-image frames given")
    labels = [f"{label_a} run {k}" for k in range(1, len(frames_a) + 1)]
    labels += [f"{label_b} run {k}" for k in range(1, len(frames_b) + 1)]
    base, values = _aligned_matrix([*frames_a, *frames_b], metric, labels)
    keep = np.isfinite(values).all(axis=0)
    codes, uniques = pd.factorize(base.loc[keep, "patient_id"].astype(str), sort=True)
    n_patients = len(uniques)
    ra = len(frames_a)
    out: dict[str, Any] = {
        "metric": metric, "a": label_a, "b": label_b if frames_b else None, "estimand": PRIMARY_ESTIMAND,
        "method": RUNS_PATIENTS_METHOD, "level": level, "n_images": int(keep.sum()), "n_dropped": int((~keep).sum()),
        "n_patients": int(n_patients), "n_runs_a": ra, "n_runs_b": len(frames_b), "estimate": None, "se": None,
        "df": None, "ci": None, "p": None, "p_wilcoxon": None, "image_weighted": None, "runs_a": [], "runs_b": [],
        "var_patients": None, "var_runs_a": None, "var_runs_b": None,
        "runs_in_interval": ra >= 2 and (not frames_b or len(frames_b) >= 2),
    }
    if n_patients == 0:
        return out
    pm_a = _patient_means(values[:ra, keep], codes, n_patients)
    pm_b = _patient_means(values[ra:, keep], codes, n_patients) if frames_b else None
    per_patient = pm_a.mean(axis=0) - (pm_b.mean(axis=0) if pm_b is not None else 0.0)
    image_vals = values[:ra, keep].mean(axis=0) - (values[ra:, keep].mean(axis=0) if frames_b else 0.0)
    out.update(estimate=float(per_patient.mean()), image_weighted=float(image_vals.mean()),
               runs_a=[float(v) for v in pm_a.mean(axis=1)],
               runs_b=[float(v) for v in pm_b.mean(axis=1)] if pm_b is not None else [],
               mean_a=float(pm_a.mean()), mean_b=float(pm_b.mean()) if pm_b is not None else None)
    if n_patients < 2:
        return out
    parts = [(float(per_patient.var(ddof=1)) / n_patients, n_patients - 1)]
    out["var_patients"] = parts[0][0]
    for key, pm in (("var_runs_a", pm_a), ("var_runs_b", pm_b)):
        v = _run_variance(pm) if pm is not None else None
        out[key] = v
        if v is not None:
            parts.append((v, pm.shape[0] - 1))
    var = sum(v for v, _ in parts)
    if var <= 0.0:  # every patient and run identical: no evidence of a difference, a zero-width interval
        out.update(se=0.0, df=float(n_patients - 1), ci=[out["estimate"]] * 2, p=1.0 if out["estimate"] == 0 else 0.0)
        return out
    df = var ** 2 / sum(v ** 2 / d for v, d in parts if v > 0)
    se = math.sqrt(var)
    out.update(se=se, df=float(df))
    out["ci"] = list(shifted_interval(out, level))
    out["p"] = float(2.0 * _sps().t.sf(abs(out["estimate"]) / se, df))
    if frames_b and not np.all(per_patient == 0):
        out["p_wilcoxon"] = float(_sps().wilcoxon(per_patient).pvalue)
    return out


def shifted_interval(est: dict[str, Any], level: float) -> tuple[float, float]:
    """The two-sided `level` t-interval of an estimate from `patient_level_estimate` (any level: Holm reads its
    verdicts at the adjusted one)."""
    if est.get("se") is None:
        return math.nan, math.nan
    half = float(_sps().t.ppf(0.5 + level / 2.0, est["df"])) * est["se"] if est["se"] > 0 else 0.0
    return est["estimate"] - half, est["estimate"] + half


def p_above(est: dict[str, Any], theta: float) -> float:
    """One-sided p of H0: true value <= theta against H1: > theta, on the estimate's t distribution."""
    if est.get("se") is None:
        return math.nan
    if est["se"] == 0:
        return 0.0 if est["estimate"] > theta else 1.0
    return float(_sps().t.sf((est["estimate"] - theta) / est["se"], est["df"]))


def p_below(est: dict[str, Any], theta: float) -> float:
    """One-sided p of H0: true value >= theta against H1: < theta."""
    if est.get("se") is None:
        return math.nan
    if est["se"] == 0:
        return 0.0 if est["estimate"] < theta else 1.0
    return float(_sps().t.cdf((est["estimate"] - theta) / est["se"], est["df"]))


def replicate_mean_frame(frames: Sequence[pd.DataFrame], metrics: Sequence[str] = ("psnr", "ssim", "ssim_w3",
                                                                                       "lpips")) -> pd.DataFrame:
    """Image-by-image mean of replicate runs' per-image frames (same test images, same patients), so that every
    patient-level interval and paired test above can be applied to the replicate mean unchanged.

    A value that is non-finite in any replicate (PSNR inf, LPIPS NaN) stays non-finite in the mean, so it is
    dropped and counted downstream exactly as for a single run. Adds ``n_replicates``.
    """
    if not frames:
        raise CxrError("replicate mean: no per-image frames given")
    first = frames[0]
    _require_columns(first, ("image_id", "patient_id"), "replicate 1: per-image table")
    keep = [m for m in metrics if all(m in f.columns for f in frames)]
    base = first[["image_id", "patient_id"]].copy()
    stacked = []
    for k, frame in enumerate(frames, start=1):
        joined = align_pairs(base, frame[["image_id", "patient_id", *keep]], "replicate 1", f"replicate {k}")
        if not (joined["patient_id_a"].astype(str) == joined["patient_id_b"].astype(str)).all():
            raise CxrError(f"replicate {k}: patient ids differ from replicate 1 for the same images")
        stacked.append(joined.set_index("image_id")[keep].loc[base["image_id"]].to_numpy(dtype=np.float64))
    values = np.mean(np.stack(stacked), axis=0)  # inf/NaN in any replicate propagate, as intended
    out = base.reset_index(drop=True)
    for j, m in enumerate(keep):
        out[m] = values[:, j]
    out["n_replicates"] = len(frames)
    return out


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm's step-down adjusted p-values, in the input order; None/NaN stay None and do not count in m.

    Sorted ascending p_(1) <= ... <= p_(m): adjusted p_(i) = max over j <= i of min(1, (m − j + 1) p_(j)), so the
    adjusted values are monotone in the raw ones and never exceed 1.
    """
    present = [(i, float(p)) for i, p in enumerate(pvalues) if p is not None and math.isfinite(float(p))]
    out: list[float | None] = [None] * len(pvalues)
    m = len(present)
    running = 0.0
    for rank, (i, p) in enumerate(sorted(present, key=lambda item: item[1])):
        running = max(running, min(1.0, (m - rank) * p))
        out[i] = running
    return out


def _require_columns(frame: pd.DataFrame, columns: Sequence[str], label: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        hint = " (re-run the evaluation: per_image.csv carries patient_id)" if "patient_id" in missing else ""
        raise CxrError(f"{label} has no {', '.join(map(repr, missing))} column{hint}")
