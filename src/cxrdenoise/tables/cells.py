"""Cell, footnote and caption texts shared by the tables, so the same fact reads the same in each of them.

Footnotes carry what a cell cannot: a CPU timing that must not be compared with the study's GPU seconds,
a DataParallel run without a second device, an LPIPS value that is not shown.
"""

from __future__ import annotations

from typing import Sequence

from ..reference import PAPER_CITATION, PAPER_HARDWARE
from ..render import Footnotes, fmt, fmt_pm
from .runs import Run, is_cpu
from .scores import DECIMALS, RANDOM_LPIPS_NOTE, diff_cell

CPU_TIMING = "CPU timing — not comparable to the paper's GPU times; no difference computed (n/c)."
DP_ONE_PROCESS = "DataParallel ran as one CPU process (no second device), so dp2 is not a 2-GPU run here."
DP_ONE_GPU = "DataParallel had a single visible GPU, so dp2 trained without data parallelism here."
SETUP_LEGEND = ("Setups: gpu1 = the study's \"1 GPU\"; dp2 = \"2 GPUs DP\" (nn.DataParallel); ddp2 = DDP "
                "without AMP (ours only); ddp2_amp = \"2 GPUs DDP+AMP\".")
SSIM_NOTE = ("SSIM is scikit-image's standard SSIM (7x7 window); SSIM (win 3) is what the study's code computed, "
             "so the study's SSIM is compared with SSIM (win 3) in the Δ column.")
DIFF_NOTE = "Δ = ours − paper."
STATS_POINTER = ("Means over the test images (n images and n_patients per row in the CSV); every run's 95 % "
                 "intervals, image-level t and patient-cluster bootstrap, and the paired differences between models "
                 "and between set-ups, with patient-level tests, Holm-adjusted, are in the comparisons table; "
                 "the claims table gives the verdicts.")
PAPER_NOTE = f"Paper values: {PAPER_CITATION} ({PAPER_HARDWARE}); blank where the study reports none."
DATA_LABELS = {"nih": "NIH ChestX-ray14 test images", "local": "chest X-ray test images (local folder)",
               "synthetic": "synthetic chest-radiograph phantoms (demo)"}


def data_caption(source: str | None) -> list[str]:
    """A caption line naming the data, with a warning when it is the synthetic demo."""
    if not source:
        return []
    line = f"Data: {DATA_LABELS.get(source, source)}."
    if source == "synthetic":
        line += " Demo numbers: differences from the study's chest X-ray results are not meaningful."
    return [line]


def run_notes(run: Run, timings: bool) -> list[str]:
    """Footnote texts about how this run was made (CPU timing, DataParallel without devices, record note)."""
    rec = run.record or {}
    notes = [CPU_TIMING] if timings and is_cpu(run) else []
    note = str(rec.get("note") or "").strip()
    record_says = f" The training record says: \"{note}\"" if note else ""
    if run.setup.startswith("dp") and (is_cpu(run) or rec.get("data_parallel_effective") is False):
        notes.append((DP_ONE_PROCESS if is_cpu(run) else DP_ONE_GPU) + record_says)
    elif note:  # no run label in the text, so runs with the same note share one footnote
        notes.append("Training record note:" + record_says.removeprefix(" The training record says:"))
    return notes


def join_notes(notes: Sequence[str]) -> str:
    """The CSV's notes column: each distinct text once, in order."""
    return "; ".join(dict.fromkeys(notes))


def row_marks(foot: Footnotes, notes: Sequence[str]) -> str:
    return "".join(foot.mark(n) for n in dict.fromkeys(notes))


def device_cell(label: str, notes: list[str], foot: Footnotes) -> str:
    """The device with the marks of the notes about the run itself (timing and LPIPS marks sit on their cells)."""
    keep = [n for n in notes if n not in (CPU_TIMING, RANDOM_LPIPS_NOTE) and not n.startswith("LPIPS")]
    return label + row_marks(foot, keep)


def lpips_cell(q: dict, ci: bool) -> str:
    if "lpips_cell" in q:
        return q["lpips_cell"]
    return fmt_pm(q["lpips"], q["lpips_ci95"] if ci else None, DECIMALS["lpips"])


def metric_cells(q: dict) -> dict[str, str]:
    """Ours, the study's and Δ for each metric, without intervals (Tables IV and V)."""
    return {"PSNR dB": fmt(q["psnr"], 3), "paper PSNR": fmt(q["paper_psnr"], 3), "Δ PSNR": diff_cell(q, "psnr", 3),
            "SSIM": fmt(q["ssim"], 4), "SSIM (win 3)": fmt(q["ssim_w3"], 4), "paper SSIM": fmt(q["paper_ssim"], 4),
            "Δ SSIM (w3)": diff_cell(q, "ssim", 4), "LPIPS": lpips_cell(q, ci=False),
            "paper LPIPS": fmt(q["paper_lpips"], 4), "Δ LPIPS": diff_cell(q, "lpips", 4)}
