"""How a claim row becomes a verdict: one hypothesis per row, Holm across the family, the verdict read off the
row's interval at the level Holm gave it (docs/statistics.md).

Every quality claim is a three-way question about one estimate (`stats.patient_level_estimate`, oriented so that
positive means "as claimed"): clear of 0 in the claimed direction, clear of 0 the other way, or inside ±margin
(a difference too small to matter). A row's p is the smallest two-sided level at which its interval reaches any of
its decisions; Holm adjusts those p over the family, and a row Holm rejects at rank r is read at level
α / (m − r), the threshold it passed. So "holds" and "does not hold" come from one level and one adjustment, and
the printed 95 % interval, the estimate and the p always agree in sign.

Kinds (x = the oriented estimate, δ the metric's margin from config `claims`):

* ``better``: holds when the interval lies above 0; does not hold when it lies below 0 (the other is better) or
  inside ±δ (equivalent: "does not hold (equivalent within ±δ)").
* ``comparable``: holds when the interval lies inside ±δ; does not hold when it lies entirely outside.
* ``minor_drop`` (several metrics, intersection-union): holds when on every metric the interval's lower end is
  above −δ; does not hold when on some metric its upper end is below −δ (that side Bonferroni over the metrics).

With one training run on a side, holds / does not hold carry "for this trained model only (1 run)".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from .. import stats

HOLDS, FAILS, INCONCLUSIVE, NOT_TESTABLE = "holds", "does not hold", "inconclusive", "not testable here"
VERDICTS = (HOLDS, FAILS, INCONCLUSIVE, NOT_TESTABLE)
ONE_RUN = "for this trained model only (1 run)"
KINDS = ("better", "comparable", "minor_drop")


def oriented(est: dict[str, Any], sign: float) -> dict[str, Any]:
    """The estimate with `sign` applied (−1 for lower-is-better metrics), so positive reads "as claimed"."""
    out = dict(est)
    if est.get("estimate") is not None:
        out["estimate"] = sign * est["estimate"]
    return out


@dataclass
class Hypothesis:
    """One claim row's question: its kind, the oriented estimate per metric and the margin per metric."""

    kind: str
    estimates: dict[str, dict[str, Any]]
    margins: dict[str, float]
    key: tuple = ()
    p: float = math.nan
    p_holm: float | None = None
    level: float | None = None  # two-sided error level Holm read this row at (None: not rejected)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown claim kind {self.kind!r}")
        self.p = decision_p(self)

    @property
    def one_run(self) -> bool:
        return not all(e.get("runs_in_interval") for e in self.estimates.values())


def _p2(p: float) -> float:
    return min(1.0, 2.0 * p) if math.isfinite(p) else math.nan


def decision_p(h: Hypothesis) -> float:
    """The smallest two-sided level at which the row's interval reaches any of its decisions."""
    ests = h.estimates
    if any(e.get("se") is None for e in ests.values()):
        return math.nan
    if h.kind == "better":
        (m, x), = ests.items()
        d = h.margins[m]
        return min(_p2(stats.p_above(x, 0.0)), _p2(stats.p_below(x, 0.0)),
                   _p2(max(stats.p_above(x, -d), stats.p_below(x, d))))
    if h.kind == "comparable":
        (m, x), = ests.items()
        d = h.margins[m]
        return min(_p2(max(stats.p_above(x, -d), stats.p_below(x, d))),
                   _p2(min(stats.p_above(x, d), stats.p_below(x, -d))))
    holds = max(_p2(stats.p_above(x, -h.margins[m])) for m, x in ests.items())
    fails = min(1.0, len(ests) * min(_p2(stats.p_below(x, -h.margins[m])) for m, x in ests.items()))
    return min(holds, fails)


def holm_family(hypotheses: Sequence[Hypothesis], alpha: float) -> None:
    """Holm's step-down over the family, in place: each hypothesis gets its adjusted p and, when rejected, the
    level α / (m − r) it was rejected at. A hypothesis without a p (not testable) is not in the family."""
    present = sorted((h for h in hypotheses if math.isfinite(h.p)), key=lambda h: h.p)
    m = len(present)
    running, stopped = 0.0, False
    for rank, h in enumerate(present):
        running = max(running, min(1.0, (m - rank) * h.p))
        h.p_holm = running
        threshold = alpha / (m - rank)
        if not stopped and h.p < threshold:
            h.level = threshold
        else:
            stopped = True


def decide(h: Hypothesis) -> tuple[str, str]:
    """(verdict, reason) of a hypothesis after `holm_family`."""
    if h.level is None:
        return INCONCLUSIVE, _undecided_reason(h)
    level = 1.0 - h.level
    at = f"decided at Holm level {h.level:.2g}"
    suffix = f" {ONE_RUN}" if h.one_run else ""
    if h.kind in ("better", "comparable"):
        (m, x), = h.estimates.items()
        d = h.margins[m]
        lo, hi = stats.shifted_interval(x, level)
        inside = -d < lo and hi < d
        if h.kind == "better":
            if lo > 0:
                small = f", by less than the ±{d:g} margin" if hi < d else ""
                return HOLDS + suffix, f"interval above 0 in the claimed direction{small} ({at})"
            if inside:  # below 0 or not, a difference inside the margin is too small to matter
                below = "below 0 but " if hi < 0 else ""
                return f"{FAILS} (equivalent within ±{d:g})" + suffix, f"interval {below}inside ±{d:g} ({at})"
            if hi < 0:
                return FAILS + suffix, f"interval below 0: the other is better ({at})"
        else:
            if inside:
                return HOLDS + suffix, f"interval inside the equivalence margin ±{d:g} ({at})"
            if lo > d or hi < -d:
                return FAILS + suffix, f"interval entirely outside ±{d:g} ({at})"
        return INCONCLUSIVE, _undecided_reason(h)
    fails = [m for m, x in h.estimates.items()
             if stats.shifted_interval(x, 1.0 - h.level / len(h.estimates))[1] < -h.margins[m]]
    if fails:
        return FAILS + suffix, f"a larger drop on {', '.join(fails)}: interval below −margin ({at})"
    if all(stats.shifted_interval(x, level)[0] > -h.margins[m] for m, x in h.estimates.items()):
        return HOLDS + suffix, f"every metric's interval above −margin ({', '.join(h.estimates)}; {at})"
    return INCONCLUSIVE, _undecided_reason(h)


def _undecided_reason(h: Hypothesis) -> str:
    return (f"no decision at the family's level: Holm-adjusted p {h.p_holm:.2g}" if h.p_holm is not None
            else "no interval (fewer than two patients)")


def verdict_kind(verdict: str) -> str:
    """The verdict's category for counting (holds / does not hold / inconclusive / not testable here)."""
    return next((v for v in VERDICTS if verdict.startswith(v)), verdict)
