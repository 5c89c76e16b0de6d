"""The privacy table: patient re-identification from clean, obfuscated and denoised queries, per attacker.

Reads the privacy stage's results/privacy/{attacker}/metrics.csv and summary.json (cxrdenoise.privacy.stage),
and states what was measured: data, image size, gallery, query patients and pairs, attackers, interval method,
and the verdict on the study's privacy claim (cxrdenoise.privacy.claim). Every attacker's metrics.csv also
holds the trivial baseline's rows (attacker "trivial", the same in each file; the first is kept): they are printed
beside each attacker's row, not as rows of their own, and an attacker below them is footnoted.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from ..denoised import NOT_DENOISED
from ..errors import CxrError
from ..privacy.claim import BASELINE, DEFAULT_MAX_AUC, privacy_claim, weaker_than_baseline
from ..privacy.stage import CHANCE_NOTE
from ..render import Footnotes, Table, is_missing, write_table
from .cells import data_caption
from .rows import finish_table
from .runs import model_name

QUERY_ORDER = {"clean": 0, "obfuscated": 1, "denoised": 2}


def read_privacy(metrics: Sequence[str | Path], summaries: Sequence[str | Path]) -> tuple[pd.DataFrame, list[dict]]:
    """All attackers' rows and their summaries; CxrError naming a missing or unreadable file."""
    frames, infos = [], []
    for path in metrics:
        try:
            frames.append(pd.read_csv(path, dtype={"sigma": str, "model": str}, keep_default_na=False,
                                      na_values=["NaN"]))
        except (OSError, pd.errors.ParserError) as err:
            raise CxrError(f"{path}: cannot read privacy metrics ({err}); rerun rule privacy_scores") from None
    for path in summaries:
        try:
            infos.append(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as err:
            raise CxrError(f"{path}: cannot read privacy summary ({err}); rerun rule privacy_scores") from None
    if not frames:
        raise CxrError("privacy table: no metrics.csv given")
    frame = pd.concat(frames, ignore_index=True)
    frame["sigma"] = frame["sigma"].replace("", None)
    frame = frame.drop_duplicates(subset=["attacker", "query", "model", "sigma"], keep="first", ignore_index=True)
    return frame, infos


def _ci(est: float, lo: float, hi: float, dp: int = 3) -> str:
    if is_missing(est):
        return ""
    if is_missing(lo) or is_missing(hi):
        return f"{est:.{dp}f}"
    return f"{est:.{dp}f} [{lo:.{dp}f}, {hi:.{dp}f}]"


def build_privacy(metrics: Sequence[str | Path], summaries: Sequence[str | Path], data_source: str | None = None,
                  max_auc: float = DEFAULT_MAX_AUC) -> Table:
    frame, infos = read_privacy(metrics, summaries)
    attackers = {a: i for i, a in enumerate(dict.fromkeys(frame["attacker"]))}  # in the order given (config order)
    frame = frame.assign(_a=frame["attacker"].map(attackers), _q=frame["query"].map(QUERY_ORDER),
                         _s=frame["sigma"].astype(float).fillna(-1.0))
    frame = frame.sort_values(["_a", "_q", "_s", "model"], kind="stable").drop(columns=["_a", "_q", "_s"])
    top_ks = sorted(int(c[3:]) for c in frame.columns if c.startswith("top") and c[3:].isdigit())
    foot = Footnotes()
    labels = {i["attacker"]: i.get("attacker_label", i["attacker"]) for i in infos}
    key = lambda r: (r["query"], r["model"], "" if is_missing(r["sigma"]) else f"{float(r['sigma']):g}")  # noqa: E731
    base = {key(r): r for _, r in frame[frame["attacker"] == BASELINE].iterrows()}
    weak = {(w["attacker"], w["query"], w["model"] or "", "" if w["sigma"] is None else f"{w['sigma']:g}")
            for w in weaker_than_baseline(frame)}
    k0 = top_ks[0] if top_ks else None
    rows, shown = [], []
    for _, r in frame[frame["attacker"] != BASELINE].iterrows():
        b = base.get(key(r))
        raw = {k: (None if is_missing(v) or v == "" else v) for k, v in r.items()}
        for m in ("auc", "auc_lo", "auc_hi", *(f"top{k}" for k in top_ks)):
            raw[f"trivial_{m}"] = None if b is None or is_missing(b.get(m)) else b[m]
        rows.append(raw)
        query = r["query"]
        if r.get("did_not_denoise") in (True, "True"):
            query += foot.mark(f"{NOT_DENOISED}: this denoiser's mean test PSNR is not above the noisy input's, so its "
                               "row measures a net that did not work, not what denoising does to privacy.")
        if (r["attacker"], *key(r)) in weak:
            query += foot.mark("weaker than the trivial baseline on this row (AUC or top-k below it): this attacker's "
                               "failure to re-identify here says nothing about privacy.")
        cell = {"attacker": labels.get(r["attacker"], r["attacker"]), "query": query,
                "σ": "" if is_missing(r["sigma"]) else f"{float(r['sigma']):g}",
                "denoiser": model_name(r["model"]) if r["model"] else "",
                "patients": str(int(r["n_query_patients"])), "queries": str(int(r["n_queries"])),
                "pairs same / diff.": f"{int(r['n_pairs_same'])} / {int(r['n_pairs_different'])}",
                "AUC, patient-balanced [95 % CI]": _ci(r["auc"], r["auc_lo"], r["auc_hi"])}
        if "auc_pairs" in r:
            cell["AUC, pairs [95 % CI]"] = _ci(r["auc_pairs"], r["auc_pairs_lo"], r["auc_pairs_hi"])
        for k in top_ks:
            cell[f"top-{k} [95 % CI]"] = _ci(r[f"top{k}"], r[f"top{k}_lo"], r[f"top{k}_hi"])
        cell["trivial AUC"] = "" if b is None else _ci(b["auc"], b["auc_lo"], b["auc_hi"])
        if k0 is not None:
            cell[f"trivial top-{k0}"] = "" if b is None else _ci(b[f"top{k0}"], float("nan"), float("nan"))
        shown.append(cell)
    verdict = privacy_claim(frame, max_auc=max_auc, data_source=data_source)
    info = infos[0] if infos else {}
    caption = [
        "Patient re-identification on the test split: a query image (clean, obfuscated = the noisy image at σ, or "
        "denoised = a trained network's output of the obfuscated image) is compared with clean test images "
        "(the gallery), never with the clean copy of itself. Verification: ROC AUC separating same-patient from "
        "different-patient pairs (all same-patient pairs per query, and a seeded sample of different-patient "
        "pairs). Retrieval: share of queries whose best-ranked gallery image is another image of the same "
        "patient within the first k (ties counted against the attacker).",
        "AUC, patient-balanced (the primary; the verdict uses it): each query patient's same-patient pairs weigh 1 "
        "in total and so do its different-patient pairs, so a patient with many follow-ups does not decide it; "
        "AUC, pairs: every pair weighs the same.",
        f"Intervals: 95 % two-way percentile bootstrap over patients ({info.get('n_boot', '?')} resamples, the same "
        "for every row and for the baseline): one draw of patients reweights both the queries and the gallery side "
        "of every pair, since a patient's images are not independent and every query shares the gallery.",
        f"Trivial baseline (columns 'trivial …', the same queries, pairs and resamples): "
        f"{info.get('baseline_note', 'NCC of area-downsampled 32×32 images')}; an attacker below it on a row is "
        "footnoted, and the verdict flags it.",
        f"Gallery: {info.get('n_gallery_images', '?')} test images of {info.get('n_gallery_patients', '?')} patients; "
        f"images downsampled to {info.get('image_size', '?')}×{info.get('image_size', '?')} px "
        f"(from {info.get('source_size', '?')} px) and contrast-normalised; denoisers from the "
        f"{info.get('setup', '?')} runs. {CHANCE_NOTE[0].upper() + CHANCE_NOTE[1:]}.",
        "Attackers: " + "; ".join(f"{i.get('attacker_label', i['attacker'])}: {i.get('attacker_note', '')}"
                                  for i in infos) + ".",
        f"Study's privacy claim: {verdict['verdict'].upper()} — {verdict['evidence']}. Rule: {verdict['rule']}.",
    ] + data_caption(data_source)
    if data_source == "synthetic":
        caption.append("Phantom follow-ups of one patient share drawn anatomy and differ only by small pose, "
                       "exposure and inspiration changes, so re-identifying a phantom shows the attack and the "
                       "pipeline work, not how identifiable real patients are.")
    title = "Privacy. Patient re-identification from clean, obfuscated and denoised test images"
    return finish_table("privacy", title, rows, [("", shown)], caption, foot)


def make_privacy(metrics: Sequence[str | Path], summaries: Sequence[str | Path], out_prefix: str | Path,
                 data_source: str | None = None, max_auc: float = DEFAULT_MAX_AUC) -> list[Path]:
    return write_table(build_privacy(metrics, summaries, data_source, max_auc), out_prefix)


def privacy_claim_from_files(metrics: Sequence[str | Path], summaries: Sequence[str | Path] = (),
                             data_source: str | None = None, max_auc: float = DEFAULT_MAX_AUC) -> dict:
    """The privacy claim's verdict (cxrdenoise.privacy.claim) from the stage's metrics.csv files, for a claims table."""
    frame, _ = read_privacy(metrics, summaries)
    return privacy_claim(frame, max_auc=max_auc, data_source=data_source)
