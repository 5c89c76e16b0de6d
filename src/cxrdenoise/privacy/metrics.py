"""Verification ROC AUC, retrieval top-k and patient-level bootstrap intervals for either.

AUC is the Mann-Whitney probability that a same-patient pair scores above a different-patient pair (ties count
one half), computed from ranks in O(n log n) and with optional per-pair weights, so a bootstrap resample of
patients is a weight vector (a patient drawn twice counts twice) rather than a copy of the pairs.

`balanced_weights` makes the AUC patient-balanced: each query patient's same-patient pairs weigh 1 in total, and
so do its different-patient pairs; plain (pair-weighted) AUC lets a patient with many follow-ups, who has
quadratically many same-patient pairs, decide it.

`two_way_bootstrap` resamples patients once per replicate and lets the draw reweight both sides of every pair: a
pair of query patient P and gallery patient G weighs count(P) x count(G), and a retrieval rank counts each
wrong gallery image count(G) times. A pair shares its gallery image with every other query, so resampling query
patients alone (`patient_bootstrap`) leaves the gallery's variability out and gives intervals that are too narrow.
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


def balanced_weights(pair_patients: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-pair weights 1 / (pairs of that query patient with that label): each patient's positives weigh 1 in
    total, and so do its negatives."""
    return _balanced(np.asarray(pair_patients), np.asarray(labels).astype(bool), np.ones(len(labels)))


def _balanced(pair_patients: np.ndarray, labels: np.ndarray, w: np.ndarray) -> np.ndarray:
    patients, inverse = np.unique(pair_patients, return_inverse=True)
    key = 2 * inverse + labels
    total = np.bincount(key, weights=w, minlength=2 * len(patients))[key]
    return np.divide(w, total, out=np.zeros_like(w, dtype=np.float64), where=total > 0)


class PresortedAuc:
    """`roc_auc` for fixed scores and many weight vectors: the sort and the tie groups are computed once."""

    def __init__(self, scores: np.ndarray, labels: np.ndarray):
        scores = np.asarray(scores, dtype=np.float64)
        self.order = np.argsort(scores, kind="mergesort")
        s = scores[self.order]
        self.y = np.asarray(labels).astype(bool)[self.order]
        self.starts = np.flatnonzero(np.r_[True, s[1:] != s[:-1]]) if len(s) else np.zeros(0, np.int64)

    def __call__(self, weights: np.ndarray) -> float:
        w = np.asarray(weights, dtype=np.float64)[self.order]
        w_pos, w_neg = np.where(self.y, w, 0.0), np.where(self.y, 0.0, w)
        total_pos, total_neg = w_pos.sum(), w_neg.sum()
        if total_pos <= 0 or total_neg <= 0:
            return float("nan")
        pos_g, neg_g = np.add.reduceat(w_pos, self.starts), np.add.reduceat(w_neg, self.starts)
        return float((pos_g * (np.cumsum(neg_g) - 0.5 * neg_g)).sum() / (total_pos * total_neg))


def two_way_bootstrap(statistic: Callable[[np.ndarray], float], patients: np.ndarray, *, seed: int, key: str,
                      n_boot: int = 1000, level: float = 0.95) -> dict:
    """Percentile interval of `statistic(counts)`, `counts[i]` = times `patients[i]` is drawn (all ones for the
    estimate). Patients are drawn with replacement from everyone (query and gallery patients alike), from
    (seed, "privacy-bootstrap", key): the same key gives every row and metric the same resampled patients."""
    patients = np.asarray(patients)
    estimate = float(statistic(np.ones(len(patients))))
    out = {"estimate": estimate, "lo": float("nan"), "hi": float("nan"), "n_patients": int(len(patients)),
           "n_boot": int(n_boot), "level": level,
           "method": "two-way percentile bootstrap over patients (queries and gallery resampled together)"}
    if len(patients) < 2 or n_boot < 1:
        return out
    rng = rng_for(seed, "privacy-bootstrap", key)
    values = np.empty(n_boot)
    for b in range(n_boot):
        values[b] = statistic(np.bincount(rng.integers(0, len(patients), len(patients)), minlength=len(patients))
                              .astype(np.float64))
    values = values[np.isfinite(values)]
    if values.size:
        alpha = (1.0 - level) / 2.0
        out["lo"], out["hi"] = (float(v) for v in np.quantile(values, [alpha, 1.0 - alpha]))
    return out


def pair_auc(scores: np.ndarray, labels: np.ndarray, query_of_pair: np.ndarray, gallery_of_pair: np.ndarray,
             balanced: bool) -> Callable[[np.ndarray], float]:
    """Statistic for `two_way_bootstrap`: AUC with pair weights count(query patient) x count(gallery patient),
    then (balanced) rescaled so each drawn query patient's positives and negatives each weigh 1 in total.
    `query_of_pair` / `gallery_of_pair` index the bootstrap's patient array."""
    auc = PresortedAuc(scores, labels)
    labels = np.asarray(labels).astype(bool)

    def statistic(counts: np.ndarray) -> float:
        w = counts[query_of_pair] * counts[gallery_of_pair]
        if balanced:
            w = counts[query_of_pair] * _balanced(query_of_pair, labels, w)
        return auc(w)
    return statistic


def resampled_top_k(similarity: np.ndarray, same_patient: np.ndarray, valid: np.ndarray, query_patient: np.ndarray,
                    gallery_patient: np.ndarray, k: int) -> Callable[[np.ndarray], float]:
    """Statistic for `two_way_bootstrap`: share of queries (each weighted by its patient's count) whose rank,
    with every wrong gallery image counted count(its patient) times, is at most k. Ranks as in `match_ranks`
    (ties against the attacker); a patient's own images share its count, so the best true match is unchanged."""
    sim = np.where(valid, similarity, -np.inf)
    best_true = np.where(same_patient & valid, sim, -np.inf).max(axis=1)
    ahead = (valid & ~same_patient & (sim >= best_true[:, None])).astype(np.float64)

    def statistic(counts: np.ndarray) -> float:
        w = counts[query_patient]
        hits = (1.0 + ahead @ counts[gallery_patient]) <= k
        return float((w * hits).sum() / w.sum()) if w.sum() > 0 else float("nan")
    return statistic
