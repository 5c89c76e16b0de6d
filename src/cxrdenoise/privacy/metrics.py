"""Verification ROC AUC, retrieval top-k and a patient-level bootstrap interval for either.

AUC is the Mann-Whitney probability that a same-patient pair scores above a different-patient pair (ties count
one half), computed from ranks in O(n log n) and with optional per-pair weights, so a bootstrap resample of
patients is a weight vector (a patient drawn twice counts twice) rather than a copy of the pairs.

The bootstrap resamples *query patients* with replacement: images and pairs of one patient are correlated, so
resampling images or pairs would give intervals that are too narrow. This function is self-contained so that
it can later move into cxrdenoise.stats.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..errors import CxrError
from ..seeding import rng_for


def roc_auc(scores: np.ndarray, labels: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Area under the ROC curve of `scores` for binary `labels` (1 = same patient); NaN without both classes."""
    scores = np.asarray(scores, dtype=np.float64)
    labels = np.asarray(labels).astype(bool)
    if scores.shape != labels.shape:
        raise CxrError(f"roc_auc: {scores.size} scores but {labels.size} labels")
    weights = np.ones_like(scores) if weights is None else np.asarray(weights, dtype=np.float64)
    order = np.argsort(scores, kind="mergesort")
    s, y, w = scores[order], labels[order], weights[order]
    w_pos, w_neg = np.where(y, w, 0.0), np.where(y, 0.0, w)
    total_pos, total_neg = w_pos.sum(), w_neg.sum()
    if total_pos <= 0 or total_neg <= 0:
        return float("nan")
    # Tie groups: each positive beats every negative below its group and half of those within it.
    starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]])
    pos_g = np.add.reduceat(w_pos, starts)
    neg_g = np.add.reduceat(w_neg, starts)
    neg_below = np.cumsum(neg_g) - neg_g
    return float((pos_g * (neg_below + 0.5 * neg_g)).sum() / (total_pos * total_neg))


def match_ranks(similarity: np.ndarray, same_patient: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """1-based rank of the best-ranked same-patient gallery image for each query (row).

    Gallery images with `valid` False (the query's own image) are left out; ties are counted against the
    attacker (a true match tied with k others ranks k + 1 places down), so a constant score never looks good.
    """
    sim = np.where(valid, similarity, -np.inf)
    best_true = np.where(same_patient & valid, sim, -np.inf).max(axis=1)
    if np.isneginf(best_true).any():
        raise CxrError("retrieval: a query has no other image of its patient in the gallery")
    wrong = valid & ~same_patient
    above = (wrong & (sim > best_true[:, None])).sum(axis=1)
    tied = (wrong & (sim == best_true[:, None])).sum(axis=1)
    return 1 + above + tied


def top_k_hits(ranks: np.ndarray, k: int) -> np.ndarray:
    """1.0 where the patient's own follow-up is among the first k gallery images, else 0.0."""
    return (np.asarray(ranks) <= k).astype(np.float64)


def patient_bootstrap(
    statistic: Callable[[np.ndarray], float],
    unit_patients: np.ndarray,
    *,
    seed: int,
    key: str,
    n_boot: int = 1000,
    level: float = 0.95,
) -> dict:
    """Percentile interval of `statistic(weights)` over resamples of patients with replacement.

    `unit_patients` gives the (query) patient of each unit (a pair or a query); `statistic` receives one weight
    per unit, the number of times its patient was drawn. Streams derive from (seed, "privacy-bootstrap", key),
    so every row of a table has its own reproducible resamples.
    """
    unit_patients = np.asarray(unit_patients)
    patients, inverse = np.unique(unit_patients, return_inverse=True)
    estimate = float(statistic(np.ones(len(unit_patients))))
    out = {"estimate": estimate, "lo": float("nan"), "hi": float("nan"), "n_patients": int(len(patients)),
           "n_boot": int(n_boot), "level": level, "method": "percentile bootstrap over query patients"}
    if len(patients) < 2 or n_boot < 1:
        return out
    rng = rng_for(seed, "privacy-bootstrap", key)
    values = np.empty(n_boot)
    for b in range(n_boot):
        counts = np.bincount(rng.integers(0, len(patients), len(patients)), minlength=len(patients))
        values[b] = statistic(counts[inverse].astype(np.float64))
    values = values[np.isfinite(values)]
    if values.size:
        alpha = (1.0 - level) / 2.0
        out["lo"], out["hi"] = (float(v) for v in np.quantile(values, [alpha, 1.0 - alpha]))
    return out


def weighted_mean(values: np.ndarray) -> Callable[[np.ndarray], float]:
    """Statistic for `patient_bootstrap`: the weighted mean of per-query values (e.g. top-k hits)."""
    values = np.asarray(values, dtype=np.float64)
    return lambda w: float((values * w).sum() / w.sum()) if w.sum() > 0 else float("nan")


def weighted_auc(scores: np.ndarray, labels: np.ndarray) -> Callable[[np.ndarray], float]:
    """Statistic for `patient_bootstrap`: ROC AUC with per-pair weights."""
    return lambda w: roc_auc(scores, labels, w)
