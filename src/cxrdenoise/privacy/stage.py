"""The privacy stage: score every query kind (clean, obfuscated per sigma, denoised per model and sigma) with one
attacker, on the same pairs and gallery, and write metrics.csv and summary.json.

Every row and metric shares one stream of two-way patient resamples (metrics.two_way_bootstrap, key
"patients"), so the intervals of two rows, and of an attacker and the trivial baseline, are computed on the same
resampled patients, and differences between rows are not an artefact of different draws. `auc` is the
patient-balanced AUC (the primary; the verdict uses it), `auc_pairs` the pair-weighted one.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import pandas as pd

from ..atomic import atomic_path, write_json
from ..denoised import did_not_denoise
from ..provenance import provenance
from .metrics import match_ranks, pair_auc, resampled_top_k, two_way_bootstrap
from .pairs import Pairing

if TYPE_CHECKING:  # images imports torch; the privacy table and figure read CHANCE_NOTE without it
    from .images import QuerySets

QUERY_KINDS = ("clean", "obfuscated", "denoised")
CHANCE_NOTE = ("chance: AUC 0.5; top-k about k / (gallery images - 1) for a patient with one other image "
               "in the gallery")


def query_images(sets: QuerySets) -> list[tuple[str, str, str | None, np.ndarray]]:
    """(query kind, model, sigma, images) for every form of the evaluation images that is attacked."""
    out: list[tuple[str, str, str | None, np.ndarray]] = [("clean", "", None, sets.clean)]
    out += [("obfuscated", "", s, images) for s, images in sets.noisy.items()]
    out += [("denoised", model, s, images) for (model, s), images in sets.denoised.items()]
    return out


def score_queries(similarity: Callable[[np.ndarray, np.ndarray], np.ndarray], sets: QuerySets, pairing: Pairing, *,
                  attacker: str, seed: int, n_boot: int, top_k: Sequence[int]) -> pd.DataFrame:
    """One row per query kind: verification AUC (patient-balanced, and pair-weighted as auc_pairs) and retrieval
    top-k, each with a two-way patient bootstrap interval.

    `similarity(queries, gallery)` is the attacker: (n_query, n_gallery) scores, higher = more alike."""
    same, valid = pairing.same_patient(), pairing.valid()
    patients, gallery_patient = np.unique(pairing.patient_ids, return_inverse=True)
    query_patient = gallery_patient[pairing.query_index]
    pq, pg = query_patient[pairing.pair_query], gallery_patient[pairing.pair_gallery]
    boot = dict(seed=seed, key="patients", n_boot=n_boot)
    rows = []
    for kind, model, sigma, images in query_images(sets):
        sim = similarity(images[pairing.query_index], sets.clean)
        scores = sim[pairing.pair_query, pairing.pair_gallery]
        auc = two_way_bootstrap(pair_auc(scores, pairing.pair_label, pq, pg, balanced=True), patients, **boot)
        auc_pairs = two_way_bootstrap(pair_auc(scores, pairing.pair_label, pq, pg, balanced=False), patients, **boot)
        ranks = match_ranks(sim, same, valid)
        psnr = sets.psnr.get((model or "noisy", sigma)) if sigma is not None else None
        noisy_psnr = sets.psnr.get(("noisy", sigma)) if sigma is not None else None
        row: dict[str, Any] = {"attacker": attacker, "query": kind, "model": model, "sigma": sigma,
                               "psnr": psnr, "did_not_denoise": did_not_denoise(psnr, noisy_psnr) if model else None,
                               **pairing.counts(), "auc": auc["estimate"], "auc_lo": auc["lo"], "auc_hi": auc["hi"],
                               "auc_pairs": auc_pairs["estimate"], "auc_pairs_lo": auc_pairs["lo"],
                               "auc_pairs_hi": auc_pairs["hi"], "mean_rank": float(ranks.mean())}
        for k in top_k:
            topk = two_way_bootstrap(resampled_top_k(sim, same, valid, query_patient, gallery_patient, k), patients,
                                     **boot)
            row.update({f"top{k}": topk["estimate"], f"top{k}_lo": topk["lo"], f"top{k}_hi": topk["hi"]})
        rows.append(row)
    return pd.DataFrame(rows)


def write_results(frame: pd.DataFrame, out_dir: str | Path, summary: dict[str, Any], device: Any = "cpu") -> None:
    """metrics.csv and summary.json, atomically; provenance names `device`, the device the denoisers ran on."""
    out_dir = Path(out_dir)
    with atomic_path(out_dir / "metrics.csv", suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False, na_rep="NaN", float_format="%.10g")
    write_json(out_dir / "summary.json", _json_safe({**summary, "provenance": provenance(device=device)}))


def _json_safe(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return _json_safe(obj.item())
    return obj
