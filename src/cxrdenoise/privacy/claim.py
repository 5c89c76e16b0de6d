"""A measured verdict on the study's fourth contribution: "noise-based obfuscation is a viable
privacy-preserving mechanism".

Rule (with t = privacy.claim_max_auc, default 0.6, and [lo, hi] each row's 95 % patient bootstrap interval):

* an attacker counts only if it re-identifies clean queries (clean AUC lo > t); if none does, the test says
  nothing about privacy and the verdict is "inconclusive";
* "not supported" if, for any counting attacker, an obfuscated row (any sigma) or a denoised row (any model and
  sigma: whoever holds the denoiser can undo the obfuscation) has AUC lo > t: patients are re-identified;
* "supported" if every obfuscated and denoised row of every counting attacker has AUC hi <= t;
* otherwise "inconclusive" (the intervals straddle t: more patients are needed).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

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
    rule = (f"an attacker counts if its clean-query AUC 95 % lower bound exceeds {max_auc:g}; not supported if a counting "
            f"attacker's obfuscated or denoised AUC lower bound exceeds {max_auc:g}; supported if all their upper "
            f"bounds are at most {max_auc:g}; otherwise inconclusive")
    out: dict[str, Any] = {"claim": CLAIM, "rule": rule, "max_auc": max_auc, "data_source": data_source}
    lo = frame["auc_lo"].astype(float)
    clean = frame[(frame["query"] == "clean") & (lo > max_auc)]
    counting = sorted(clean["attacker"].unique())
    out["attackers_counting"] = counting
    if not counting:
        best = frame[frame["query"] == "clean"]
        out.update(verdict="inconclusive",
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
        out.update(verdict="not supported",
                   evidence=f"patients are re-identified from {' and '.join(kinds)} images: "
                            + "; ".join(_row_text(r) for _, r in broken.sort_values("auc", ascending=False).head(3).iterrows()))
    elif (attacked["auc_hi"].astype(float) <= max_auc).all() and not attacked.empty:
        out.update(verdict="supported",
                   evidence="every obfuscated and denoised query stays near chance: highest "
                            + _row_text(worst.iloc[0]))
    else:
        out.update(verdict="inconclusive",
                   evidence="intervals straddle the threshold; highest " + _row_text(worst.iloc[0]))
    return _labelled(out)


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
    if out.get("data_source") == "synthetic":
        out["evidence"] += (" (demo on synthetic phantoms, whose follow-ups share drawn anatomy: not evidence about "
                            "real patients)")
    return out
