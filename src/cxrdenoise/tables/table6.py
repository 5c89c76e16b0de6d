"""Table VI: the study's literature comparison. Its quoted rows (other papers, natural images, other noise) are
labelled as quoted and never mixed up with the rows this pipeline measured.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from ..denoised import NOT_DENOISED
from ..errors import CxrError
from ..reference import PAPER_CITATION, literature_rows
from ..render import Footnotes, Table, fmt, write_table
from .cells import DATA_LABELS, DIFF_NOTE, PAPER_NOTE, SSIM_NOTE, data_caption, join_notes, row_marks, run_notes
from .rows import finish_table
from .runs import Run, collect_runs, device_label, model_name, model_order
from .protocol import Protocol, mark_for, paper_headers
from .replicates import replicate_caption
from .scores import diff_cell, quality, with_paper
from .work import FLAG_NOTE, not_denoised
from . import patients
from .runs import eval_device_label

QUOTED_DEVICE = "not run here (quoted)"


def _quoted_label(cited: str) -> str:
    return f"quoted ({PAPER_CITATION} Table VI, citing {cited}; natural images, σ=15/25 of 255)"


def _noise_label(run: Run) -> str:
    """Our noise in the study's terms: σ on a 0-1 scale, the additive mean when the record has it."""
    mean = (run.record or {}).get("noise_mean", (run.summary or {}).get("noise_mean"))
    if mean is not None and float(mean) == 0.0:
        return f"σ={run.sigma} of 1 ≈ {float(run.sigma) * 255:.0f}/255, zero mean (the literature's setting)"
    pct = f"{float(run.sigma) * 100:g}%"
    return f"σ={run.sigma} of 1" + (f", mean {float(mean):g}" if mean is not None else "") + f" (study: {pct})"


CLASSICAL_NOTE = ("Classical rows: each method's noise parameter set from the known σ, the noise mean {handling} "
                  "(cxrdenoise.classical; docs/evaluation.md), scored on the same test images as the models "
                  "(baselines.max_images: {limit}).")
HANDLING = {"invert": "handled by inverting the clipped-noise expectation",
            "subtract": "subtracted before denoising", "naive": "not handled (naive)"}


def _seconds(run: Run) -> tuple[float, str]:
    """(seconds per image, its cell with the device that ran it); NaN when the summary has no timing."""
    ms = ((run.summary or {}).get("inference") or {}).get("ms_per_image_mean")
    if ms is None:
        return math.nan, ""
    threads = (run.summary or {}).get("threads")
    on = eval_device_label(run) + (f", {threads} thread(s)" if threads else "")
    return float(ms) / 1000.0, f"{float(ms) / 1000.0:.4g} on {on}"


def _patient_ci(run: Run, resamples: int, seed: int) -> tuple[float, float]:
    """The PSNR mean's 95 % patient-cluster bootstrap interval, NaNs when the run's per_image.csv was not given."""
    try:
        frame = patients.run_frame(run, "table6")
    except CxrError:  # per-image scores not given: the interval is left out, not invented
        return math.nan, math.nan
    ci = patients.mean_intervals(frame, run, ["psnr"], resamples, seed)
    return ci["psnr_ci95_patient_lo"], ci["psnr_ci95_patient_hi"]


def build_table6(summaries: Sequence, records: Sequence = (), data_source: str | None = None,
                 image_size: int | None = None, noisy: Sequence = (), per_image: Sequence = (),
                 classical: Sequence = (), classical_per_image: Sequence = (), resamples: int = 2000,
                 seed: int = 0) -> Table:
    """The study's literature comparison: its quoted rows, labelled as such, our models' measured rows and the
    classical baselines' (`classical`: results/classical/{method}/sigma{s}/summary.json, in config order), each
    flagged when it did not beat the `noisy` no-denoising summaries. `per_image` / `classical_per_image` give the
    rows their patient-level PSNR intervals (`resamples`, `seed`: evaluate.bootstrap_resamples, config seed)."""
    foot = Footnotes()
    rows, shown = [], []
    for lit in literature_rows().to_dict("records"):
        src = _quoted_label(lit["cited"])
        rows.append({"method": lit["method"], "source": src, "data": lit["data"], "noise": lit["noise"],
                     "psnr": lit["psnr"], "ssim": lit["ssim"], "ssim_w3": math.nan, "paper_psnr": math.nan,
                     "diff_psnr": math.nan, "paper_ssim": math.nan, "diff_ssim_w3": math.nan,
                     "device": QUOTED_DEVICE, "notes": f"study's label: {lit['paper_noise_label']} noise"})
        shown.append({"method": f"{lit['method']} ({lit['cited']})", "source": src, "data": lit["data"],
                      "noise": lit["noise"], "PSNR dB": fmt(lit["psnr"], 2), "SSIM": fmt(lit["ssim"], 4),
                      "PSNR 95 % CI (patients)": "", "SSIM (win 3)": "", "s/image": "", "paper PSNR": "",
                      "Δ PSNR": "", "paper SSIM": "", "Δ SSIM (w3)": "", "device": QUOTED_DEVICE})
    runs = [r for r in collect_runs(records, summaries, per_image).values() if r.summary is not None]
    proto = Protocol(runs, data_source, image_size)
    baseline = {r.sigma: r for r in collect_runs(summaries=noisy).values()}
    for model in model_order(runs):
        for run in sorted((r for r in runs if r.model == model), key=lambda r: float(r.sigma)):
            q = with_paper(quality(run, Footnotes()), run, proto.comparable(run))  # no LPIPS column: no LPIPS note
            src = f"measured (this pipeline, {run.setup}, n={q['n']})"
            data = DATA_LABELS.get(data_source or "", "this pipeline's test set")
            noise = _noise_label(run)
            flagged = bool(not_denoised(run, baseline))
            notes = run_notes(run, timings=False) + ([FLAG_NOTE] if flagged else [])
            lo, hi = _patient_ci(run, resamples, seed)
            sec, sec_cell = _seconds(run)
            rows.append({"method": model_name(model), "source": src, "data": data, "noise": noise,
                         **{k: q[k] for k in ("psnr", "ssim", "ssim_w3", "paper_psnr", "diff_psnr", "paper_ssim",
                                              "diff_ssim_w3")},
                         "psnr_ci95_patient_lo": lo, "psnr_ci95_patient_hi": hi, "s_per_image": sec,
                         "device": device_label(run), "notes": join_notes(notes)})
            shown.append({"method": f"{model_name(model)} (ours)", "source": src, "data": data, "noise": noise,
                          "PSNR dB": fmt(q["psnr"], 3) + (f" ({NOT_DENOISED})" if flagged else ""),
                          "SSIM": fmt(q["ssim"], 4), "PSNR 95 % CI (patients)": patients.fmt_ci([lo, hi], 3),
                          "SSIM (win 3)": fmt(q["ssim_w3"], 4), "s/image": sec_cell,
                          "paper PSNR": fmt(q["paper_psnr"], 3),
                          "Δ PSNR": diff_cell(q, "psnr", 3), "paper SSIM": fmt(q["paper_ssim"], 4),
                          "Δ SSIM (w3)": diff_cell(q, "ssim", 4),
                          "device": device_label(run) + row_marks(foot, notes)})
    classical_runs = list(collect_runs(summaries=classical, per_image=classical_per_image).values())
    handling = set()
    for run in sorted(classical_runs, key=lambda r: (model_order(classical_runs).index(r.model), float(r.sigma))):
        _classical_row(run, baseline, data_source, rows, shown, foot, resamples, seed, handling)
    caption = ["Quoted rows are copied from the study's Table VI, which took them from the cited papers: BSD68 "
               "natural images with Gaussian noise σ = 15 and 25 on a 0-255 scale (the study calls them "
               "\"15%\"/\"25%\"); they were not measured here and are not comparable with chest X-rays at "
               "σ = 0.2/0.3 with mean 0.1.", "Measured rows are this pipeline's test-set means.",
               replicate_caption(runs), SSIM_NOTE,
               DIFF_NOTE, PAPER_NOTE]
    if classical_runs:
        caption.append(CLASSICAL_NOTE.format(
            handling="; ".join(HANDLING.get(h, h) for h in sorted(handling)) or "(no method ran)",
            limit=", ".join(sorted({str(r.summary.get("max_images") or "all test images")
                                    for r in classical_runs if r.summary})) or "n/a"))
    if runs or classical_runs:
        caption.append(patients.bootstrap_note(resamples, seed) + " s/image: inference (models) or denoising "
                       "(classical) time per image on the device named in the cell.")
    title = "Table VI. Literature comparison: quoted rows (other data, other noise) and our measured rows"
    return finish_table("table6", title, rows, [("", paper_headers(shown, mark_for(proto, foot)))],
                        caption + data_caption(data_source) + (proto.caption() if runs else []), foot)


def _classical_row(run: Run, baseline: dict, data_source: str | None, rows: list, shown: list, foot: Footnotes,
                   resamples: int, seed: int, handling: set) -> None:
    """One classical method at one σ: its measured numbers, or the reason it was not run (a skip is no failure)."""
    from ..classical import METHODS

    s = run.summary or {}
    label = s.get("method_label") or (METHODS[run.model].label if run.model in METHODS else run.model)
    data = DATA_LABELS.get(data_source or "", "this pipeline's test set")
    noise = _noise_label(run)
    blank = {k: math.nan for k in ("psnr", "ssim", "ssim_w3", "paper_psnr", "diff_psnr", "paper_ssim",
                                   "diff_ssim_w3", "psnr_ci95_patient_lo", "psnr_ci95_patient_hi", "s_per_image")}
    if s.get("skipped"):
        src = "not measured here: skipped"
        rows.append({"method": label, "source": src, "data": data, "noise": noise, **blank, "device": "",
                     "notes": s["skipped"]})
        shown.append({"method": f"{label} (classical)", "source": src + foot.mark(s["skipped"]), "data": data,
                      "noise": noise, "PSNR dB": "skipped", "SSIM": "", "PSNR 95 % CI (patients)": "",
                      "SSIM (win 3)": "", "s/image": "", "paper PSNR": "", "Δ PSNR": "", "paper SSIM": "",
                      "Δ SSIM (w3)": "", "device": ""})
        return
    handling.add(s.get("mean_handling"))
    q = quality(run, Footnotes())
    flagged = bool(not_denoised(run, baseline))
    notes = [FLAG_NOTE] if flagged else []
    lo, hi = _patient_ci(run, resamples, seed)
    sec, sec_cell = _seconds(run)
    par = s.get("method_parameter") or {}
    value = float(par.get("value", math.nan))
    src = (f"measured (this pipeline, classical, {par.get('name', 'parameter')}={value:.3g},"
           f" mean {s.get('mean_handling')}, n={q['n']})")
    rows.append({"method": label, "source": src, "data": data, "noise": noise,
                 **{**blank, **{k: q[k] for k in ("psnr", "ssim", "ssim_w3")}},
                 "psnr_ci95_patient_lo": lo, "psnr_ci95_patient_hi": hi, "s_per_image": sec,
                 "device": eval_device_label(run), "notes": join_notes(notes)})
    shown.append({"method": f"{label} (classical)", "source": src, "data": data, "noise": noise,
                  "PSNR dB": fmt(q["psnr"], 3) + (f" ({NOT_DENOISED})" if flagged else ""),
                  "SSIM": fmt(q["ssim"], 4), "PSNR 95 % CI (patients)": patients.fmt_ci([lo, hi], 3),
                  "SSIM (win 3)": fmt(q["ssim_w3"], 4), "s/image": sec_cell, "paper PSNR": "", "Δ PSNR": "",
                  "paper SSIM": "", "Δ SSIM (w3)": "", "device": eval_device_label(run) + row_marks(foot, notes)})


def make_table6(*, out_prefix: str | Path, summaries: Sequence, records: Sequence = (), noisy: Sequence = (),
                per_image: Sequence = (), data_source: str | None = None, image_size: int | None = None,
                classical: Sequence = (), classical_per_image: Sequence = (), resamples: int = 2000,
                seed: int = 0) -> list[Path]:
    return write_table(build_table6(summaries, records, data_source, image_size, noisy, per_image, classical,
                                    classical_per_image, resamples, seed), out_prefix)
