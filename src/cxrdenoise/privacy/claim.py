"""A measured verdict on the study's fourth contribution: "noise-based obfuscation is a viable
privacy-preserving mechanism".

Rule (with t = privacy.claim_max_auc, default 0.6, AUC the patient-balanced one, and [lo, hi] each row's 95 %
two-way patient bootstrap interval); the trivial baseline (privacy.trivial) is an attacker like the others:

* an attacker counts only if it re-identifies clean queries (clean AUC lo > t); if none does, the test says
  nothing about privacy and the verdict is "inconclusive";
* "refuted" if, for any counting attacker, an obfuscated row (any sigma) or a denoised row (any model and
  sigma: whoever holds the denoiser can undo the obfuscation) has AUC lo > t: patients are re-identified;
* "not refuted by these attackers" if every obfuscated and denoised row of every counting attacker has AUC
  hi <= t: these attackers failed, which bounds what an attacker can do from below only, so it is never
  "supported";
* otherwise "inconclusive" (the intervals straddle t: more patients are needed).

An attacker whose AUC or top-k falls below the trivial baseline's on the same query rows is flagged
(`weaker_than_baseline`, and in the evidence): its failure says nothing about privacy.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

REFUTED = "refuted"
NOT_REFUTED = "not refuted by these attackers"
INCONCLUSIVE = "inconclusive"
VERDICTS = (REFUTED, NOT_REFUTED, INCONCLUSIVE)
BASELINE = "trivial"
CLAIM = "Noise-based obfuscation is a viable privacy-preserving mechanism (the study's fourth contribution)."
DEFAULT_MAX_AUC = 0.6


def _row_text(row: pd.Series) -> str:
    what = row["query"] + (f" {row['model']}" if row["query"] == "denoised" else "")
    sigma = "" if pd.isna(row["sigma"]) or row["sigma"] == "" else f" σ {float(row['sigma']):g}"
    return f"{row['attacker']} {what}{sigma}: AUC {row['auc']:.3f} [{row['auc_lo']:.3f}, {row['auc_hi']:.3f}]"


def privacy_claim(metrics: pd.DataFrame | list[dict], max_auc: float = DEFAULT_MAX_AUC,
                  data_source: str | None = None) -> dict[str, Any]:
    """Verdict on the privacy claim from the privacy table's rows (columns attacker, query, model, sigma, auc,
    auc_lo, auc_hi); returns claim, verdict, rule, evidence and the deciding numbers."""
    frame = pd.DataFrame(metrics)
    frame["model"] = frame["model"].fillna("").astype(str)
    rule = (f"patient-balanced AUC; an attacker (the trivial baseline included) counts if its clean-query AUC 95 % "
            f"lower bound exceeds {max_auc:g}; {REFUTED} if a counting attacker's obfuscated or denoised AUC lower "
            f"bound exceeds {max_auc:g}; {NOT_REFUTED} if all their upper bounds are at most {max_auc:g}; otherwise "
            f"{INCONCLUSIVE}; an attacker below the trivial baseline on a row is flagged")
    out: dict[str, Any] = {"claim": CLAIM, "rule": rule, "max_auc": max_auc, "data_source": data_source}
    lo = frame["auc_lo"].astype(float)
    clean = frame[(frame["query"] == "clean") & (lo > max_auc)]
    counting = sorted(clean["attacker"].unique())
    out["attackers_counting"] = counting
    out["weaker_than_baseline"] = weaker_than_baseline(frame)
    if not counting:
        best = frame[frame["query"] == "clean"]
        out.update(verdict=INCONCLUSIVE,
                   evidence="no attacker re-identifies even clean images ("
                            + "; ".join(_row_text(r) for _, r in best.iterrows()) + "), so the test cannot show privacy")
        return _labelled(out)
    attacked = frame[frame["attacker"].isin(counting) & frame["query"].isin(["obfuscated", "denoised"])]
    broken = attacked[attacked["auc_lo"].astype(float) > max_auc]
    worst = attacked.sort_values("auc", ascending=False)
    out["worst_obfuscated"] = _numbers(worst[worst["query"] == "obfuscated"])
    out["worst_denoised"] = _numbers(worst[worst["query"] == "denoised"])
    if not broken.empty:
        kinds = sorted(broken["query"].unique())
        out.update(verdict=REFUTED,
                   evidence=f"patients are re-identified from {' and '.join(kinds)} images: "
                            + "; ".join(_row_text(r) for _, r in broken.sort_values("auc", ascending=False).head(3).iterrows()))
    elif (attacked["auc_hi"].astype(float) <= max_auc).all() and not attacked.empty:
        out.update(verdict=NOT_REFUTED,
                   evidence="every obfuscated and denoised query stays near chance for these attackers: highest "
                            + _row_text(worst.iloc[0]))
    else:
        out.update(verdict=INCONCLUSIVE,
                   evidence="intervals straddle the threshold; highest " + _row_text(worst.iloc[0]))
    return _labelled(out)


def weaker_than_baseline(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows where an attacker's AUC or top-k is below the trivial baseline's on the same query, model and sigma."""
    if BASELINE not in set(frame["attacker"]):
        return []
    metrics = ["auc", *sorted(c for c in frame.columns if c.startswith("top") and c[3:].isdigit())]
    key = frame.assign(_s=frame["sigma"].map(lambda v: "" if v is None or pd.isna(v) or v == "" else f"{float(v):g}"))
    base = key[key["attacker"] == BASELINE].set_index(["query", "model", "_s"])
    out = []
    for _, r in key[key["attacker"] != BASELINE].iterrows():
        ref = (r["query"], r["model"], r["_s"])
        if ref not in base.index:
            continue
        b = base.loc[ref]
        b = b.iloc[0] if isinstance(b, pd.DataFrame) else b
        below = [m for m in metrics if float(r[m]) < float(b[m])]
        if below:
            out.append({"attacker": r["attacker"], "query": r["query"], "model": r["model"] or None,
                        "sigma": float(r["_s"]) if r["_s"] else None,
                        **{m: float(r[m]) for m in below}, **{f"baseline_{m}": float(b[m]) for m in below}})
    return out


def _weaker_text(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    names = sorted({r["attacker"] for r in rows})
    return (f"; flagged: {', '.join(names)} below the trivial baseline on {len(rows)} row(s) "
            "(its failure to re-identify there says nothing about privacy)")


def _numbers(rows: pd.DataFrame) -> dict[str, Any] | None:
    if rows.empty:
        return None
    r = rows.iloc[0]
    sigma = None if pd.isna(r["sigma"]) else float(r["sigma"])
    return {"attacker": r["attacker"], "model": r["model"] or None, "sigma": sigma,
            "auc": float(r["auc"]), "auc_lo": _f(r["auc_lo"]), "auc_hi": _f(r["auc_hi"])}


def _f(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _labelled(out: dict[str, Any]) -> dict[str, Any]:
    out["evidence"] += _weaker_text(out.get("weaker_than_baseline", []))
    if out.get("data_source") == "synthetic":
        out["evidence"] += (" (demo on synthetic phantoms, whose follow-ups share drawn anatomy: not evidence about "
                            "real patients)")
    return out
