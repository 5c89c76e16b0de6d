"""Table IV: every noise level × model × setup, with quality, training time and the device each run used.

Rows are means over a configuration's replicates (train.replicates); with N >= 2 the between-run SD and a
t-interval over runs sit beside PSNR and SSIM. A row that did not beat the no-denoising row is flagged.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

from ..errors import CxrError
from ..reference import PAPER_HARDWARE
from ..render import Footnotes, Table, fmt, fmt_diff, is_missing, write_table
from .cells import (CPU_TIMING, DIFF_NOTE, PAPER_NOTE, SETUP_LEGEND, SSIM_NOTE, STATS_POINTER, data_caption,
                    device_cell, join_notes, metric_cells)
from .protocol import Protocol, mark_for, paper_headers
from .protocol import n_patients as patients_n
from .replicates import replicate_caption, spread
from .rows import csv_numbers, finish_table, timed_row
from .records import Run
from .runs import collect_runs, is_cpu, model_name, model_order, sigma_order
from .work import FLAG_NOTE, denoise_cell, not_denoised, replicates_not_denoised, steps_and_images

_TIME_NOTE = ("train s = the training passes only; train+val s adds the per-epoch validation passes. The study "
              "does not say whether its times include validation; Δ s is ours (train+val) − paper, and compares "
              f"different hardware even on GPUs (the study: {PAPER_HARDWARE}).")


def build_table4(records: Sequence, summaries: Sequence, data_source: str | None = None,
                 image_size: int | None = None, noisy: Sequence = ()) -> Table:
    """Every noise level × model × setup: quality, training time and device, the study's values where it has them.

    `noisy`: the no-denoising summaries (results/eval/noisy/sigma{s}/summary.json), for the "did not denoise" flag.
    """
    baseline = {r.sigma: r for r in collect_runs(summaries=noisy).values()}
    runs = list(collect_runs(records, summaries, noisy=baseline).values())
    if not runs:
        raise CxrError("table4: no runs given")
    baseline = {r.sigma: r for r in collect_runs(summaries=noisy).values()}
    foot = Footnotes()
    proto = Protocol(runs, data_source, image_size)
    rows, shown = [], []
    setups = list(dict.fromkeys(r.setup for r in runs))
    replicated = any(r.n_replicates > 1 for r in runs)
    for sigma in sigma_order(runs):
        for model in model_order(runs):
            for setup in setups:
                run = next((r for r in runs if (r.sigma, r.model, r.setup) == (sigma, model, setup)), None)
                if run is None:
                    continue
                q, dev, notes = timed_row(run, foot, "table4", proto.comparable(run))
                flag = not_denoised(run, baseline)
                bad = run.excluded or replicates_not_denoised(run, baseline)
                if flag or bad:
                    notes.append(FLAG_NOTE)
                steps, images = steps_and_images(run)
                runs_n, psnr_sd, psnr_hw = spread(run, "psnr")
                _, ssim_sd, ssim_hw = spread(run, "ssim_w3")
                rows.append({"sigma": float(sigma), "model": model, "setup": setup, "n": q["n"],
                             "n_patients": patients_n(run), **dev,
                             **csv_numbers(q), "n_runs": runs_n, "psnr_sd_runs": psnr_sd, "psnr_ci95_runs": psnr_hw,
                             "ssim_w3_sd_runs": ssim_sd, "ssim_w3_ci95_runs": ssim_hw,
                             "optimizer_steps": steps, "images_seen": images,
                             "did_not_denoise": math.nan if flag is None else flag,
                             "replicates_not_denoised": " ".join(f"rep{k}" for k in bad),
                             "notes": join_notes(notes)})
                cells = {"σ": sigma, "model": model_name(model), "setup": setup}
                if replicated:
                    cells["runs"] = str(runs_n)
                cells.update(metric_cells(q))
                if replicated:
                    cells["PSNR SD (runs)"] = fmt(psnr_sd, 3)
                    cells["PSNR ± (runs)"] = fmt(psnr_hw, 3)
                cells["denoised"] = denoise_cell(flag, bad, runs_n) + (foot.mark(FLAG_NOTE) if flag or bad else "")
                cells.update(_time_cells(q, run, foot))
                cells.update({"steps": _count(steps), "images": _count(images),
                              "device": device_cell(dev["device"], [n for n in notes if n != FLAG_NOTE], foot)})
                shown.append(cells)
    caption = ["Test-set means for every noise level, model and training setup (95 % t-intervals in the CSV and "
               "Table III).", replicate_caption(runs), SETUP_LEGEND, STATS_POINTER, SSIM_NOTE, _TIME_NOTE,
               "steps = optimizer updates over all epochs; images = training images passed (all processes).",
               DIFF_NOTE, PAPER_NOTE]
    title = "Table IV. Quality and training time for every noise level, model and setup"
    return finish_table("table4", title, rows, [("", paper_headers(shown, mark_for(proto, foot)))],
                        caption + data_caption(data_source) + proto.caption(), foot)


def _count(value: float) -> str:
    return "" if is_missing(value) else (f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}")


def _time_cells(q: dict, run: Run, foot: Footnotes) -> dict[str, str]:
    """Our times, the study's, and Δ s, which a CPU timing does not get (n/c)."""
    cpu = foot.mark(CPU_TIMING) if is_cpu(run) else ""
    return {"train s": fmt(q["train_s"], 1) + cpu, "train+val s": fmt(q["train_val_s"], 1) + cpu,
            "paper s": fmt(q["paper_train_s"], 1),
            "Δ s": ("n/c" + cpu if (cpu or not q.get("paper_comparable", True)) and not is_missing(q["paper_train_s"])
                    else fmt_diff(q["diff_train_val_s"], 1))}


def make_table4(*, out_prefix: str | Path, summaries: Sequence, records: Sequence, noisy: Sequence = (),
                data_source: str | None = None, image_size: int | None = None) -> list[Path]:
    return write_table(build_table4(records, summaries, data_source, image_size, noisy), out_prefix)
