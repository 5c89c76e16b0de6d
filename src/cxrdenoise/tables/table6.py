"""Table VI: the study's literature comparison. Its quoted rows (other papers, natural images, other noise) are
labelled as quoted and never mixed up with the rows this pipeline measured.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from ..denoised import NOT_DENOISED
from ..reference import PAPER_CITATION, literature_rows
from ..render import Footnotes, Table, fmt, write_table
from .cells import DATA_LABELS, DIFF_NOTE, PAPER_NOTE, SSIM_NOTE, data_caption, join_notes, row_marks, run_notes
from .rows import finish_table
from .runs import Run, collect_runs, device_label, model_name, model_order
from .protocol import Protocol, mark_for, paper_headers
from .replicates import replicate_caption
from .scores import diff_cell, quality, with_paper
from .work import FLAG_NOTE, not_denoised

QUOTED_DEVICE = "not run here (quoted)"


def _quoted_label(cited: str) -> str:
    return f"quoted ({PAPER_CITATION} Table VI, citing {cited}; natural images, σ=15/25 of 255)"


def _noise_label(run: Run) -> str:
    """Our noise in the study's terms: σ on a 0-1 scale, the additive mean when the record has it."""
    mean = (run.record or {}).get("noise_mean")
    pct = f"{float(run.sigma) * 100:g}%"
    return f"σ={run.sigma} of 1" + (f", mean {float(mean):g}" if mean is not None else "") + f" (study: {pct})"


def build_table6(summaries: Sequence, records: Sequence = (), data_source: str | None = None,
                 image_size: int | None = None, noisy: Sequence = ()) -> Table:
    """The study's literature comparison: its quoted rows, labelled as such, and our measured rows (flagged when
    they did not beat the `noisy` no-denoising summaries)."""
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
                      "SSIM (win 3)": "", "paper PSNR": "", "Δ PSNR": "", "paper SSIM": "", "Δ SSIM (w3)": "",
                      "device": QUOTED_DEVICE})
    runs = [r for r in collect_runs(records, summaries).values() if r.summary is not None]
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
            rows.append({"method": model_name(model), "source": src, "data": data, "noise": noise,
                         **{k: q[k] for k in ("psnr", "ssim", "ssim_w3", "paper_psnr", "diff_psnr", "paper_ssim",
                                              "diff_ssim_w3")},
                         "device": device_label(run), "notes": join_notes(notes)})
            shown.append({"method": f"{model_name(model)} (ours)", "source": src, "data": data, "noise": noise,
                          "PSNR dB": fmt(q["psnr"], 3) + (f" ({NOT_DENOISED})" if flagged else ""),
                          "SSIM": fmt(q["ssim"], 4),
                          "SSIM (win 3)": fmt(q["ssim_w3"], 4), "paper PSNR": fmt(q["paper_psnr"], 3),
                          "Δ PSNR": diff_cell(q, "psnr", 3), "paper SSIM": fmt(q["paper_ssim"], 4),
                          "Δ SSIM (w3)": diff_cell(q, "ssim", 4),
                          "device": device_label(run) + row_marks(foot, notes)})
    caption = ["Quoted rows are copied from the study's Table VI, which took them from the cited papers: BSD68 "
               "natural images with Gaussian noise σ = 15 and 25 on a 0-255 scale (the study calls them "
               "\"15%\"/\"25%\"); they were not measured here and are not comparable with chest X-rays at "
               "σ = 0.2/0.3 with mean 0.1.", "Measured rows are this pipeline's test-set means.",
               replicate_caption(runs), SSIM_NOTE,
               DIFF_NOTE, PAPER_NOTE]
    title = "Table VI. Literature comparison: quoted rows (other data, other noise) and our measured rows"
    return finish_table("table6", title, rows, [("", paper_headers(shown, mark_for(proto, foot)))],
                        caption + data_caption(data_source) + (proto.caption() if runs else []), foot)


def make_table6(*, out_prefix: str | Path, summaries: Sequence, records: Sequence = (), noisy: Sequence = (),
                data_source: str | None = None, image_size: int | None = None) -> list[Path]:
    return write_table(build_table6(summaries, records, data_source, image_size, noisy), out_prefix)
