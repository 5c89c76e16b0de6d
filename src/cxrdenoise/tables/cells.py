"""Cell, footnote and caption texts shared by the tables, so the same fact reads the same in each of them.

Footnotes carry what a cell cannot: a CPU timing that must not be compared with the study's GPU seconds,
a DataParallel run without a second device, an LPIPS value that is not shown.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

from ..errors import CxrError
from ..metric_registry import METRICS
from ..reference import PAPER_CITATION, PAPER_HARDWARE
from ..render import Footnotes, fmt, fmt_pm
from .records import Run
from .runs import is_cpu
from .scores import RANDOM_LPIPS_NOTE, diff_cell

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
LOCAL_NIH_LABEL = "NIH ChestX-ray14 (local folder)"
SPLITS = ("train", "val", "test")
SPLIT_NAMES = {"train": "train", "val": "validation", "test": "test"}
# The study's split (shared/reference/paper-numbers.md): 14,999 images split by image (not by patient).
STUDY_SPLIT = {"train": 7499, "val": 4949, "test": 2551}
LARGEST_PATIENT_FLAG = 0.10  # above this share of the test images one patient weighs on every test mean


@dataclass(frozen=True)
class SplitFacts:
    """Images and patients per split of results/data/split.csv, and the largest test patient's image count."""

    images: dict[str, int]
    patients: dict[str, int]
    largest_test_images: int

    @property
    def largest_test_share(self) -> float:
        n = self.images.get("test", 0)
        return self.largest_test_images / n if n else 0.0


@dataclass(frozen=True)
class DataFacts:
    """What every table's caption states about its data beyond data.source: the split (results/data/split.csv)
    and whether a local folder is NIH ChestX-ray14 (data.local.metadata_csv set: NIH's metadata)."""

    split: SplitFacts | None = None
    nih_metadata: bool = False


_FACTS: list[DataFacts] = [DataFacts()]


def read_split_facts(path: str | Path) -> SplitFacts:
    """Images and patients per split, and the largest test patient, from a split.csv (cxrdenoise.split)."""
    import pandas as pd

    try:
        frame = pd.read_csv(path, usecols=["patient_id", "split"], dtype={"patient_id": str, "split": str})
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise CxrError(f"{path}: cannot read the split (expected columns patient_id, split: {err})") from None
    images = {s: int((frame["split"] == s).sum()) for s in SPLITS}
    patients = {s: int(frame.loc[frame["split"] == s, "patient_id"].nunique()) for s in SPLITS}
    test = frame.loc[frame["split"] == "test", "patient_id"].value_counts()
    return SplitFacts(images, patients, int(test.iloc[0]) if len(test) else 0)


def current_data_facts() -> DataFacts:
    return _FACTS[-1]


@contextlib.contextmanager
def data_facts(facts: DataFacts) -> Iterator[DataFacts]:
    """Within the block, every caption built with `data_caption` (and `protocol.Protocol`) states `facts`.

    The table commands set it from --split-csv and --nih-metadata, so the builders (Tables III-VI, claims,
    comparisons, privacy, federated) need no argument of their own for it."""
    _FACTS.append(facts)
    try:
        yield facts
    finally:
        _FACTS.pop()


def load_data_facts(split_csv: str | Path | None = None, nih_metadata: bool = False) -> DataFacts:
    return DataFacts(read_split_facts(split_csv) if split_csv else None, bool(nih_metadata))


def data_label(source: str | None, facts: DataFacts | None = None) -> str:
    """The data's name in captions: a local folder with NIH's metadata is NIH ChestX-ray14 (local folder)."""
    facts = facts or current_data_facts()
    if source == "local" and facts.nih_metadata:
        return LOCAL_NIH_LABEL
    return DATA_LABELS.get(source or "", source or "data source not stated")


def split_caption(split: SplitFacts) -> list[str]:
    """Images and patients per split against the study's, and the largest test patient's share (flagged > 10 %)."""
    parts = ", ".join(f"{SPLIT_NAMES[s]} {_count(split.images[s], 'image')} of {_count(split.patients[s], 'patient')}"
                      for s in SPLITS)
    total = sum(split.images.values())
    study = " / ".join(f"{STUDY_SPLIT[s]:,}" for s in SPLITS)
    lines = [f"Split (patient-level: no patient in two splits; {total:,} images): {parts}. The study split "
             f"{sum(STUDY_SPLIT.values()):,} images by image into {study} (train / validation / test), so its test "
             "patients could also be in training."]
    share = split.largest_test_share
    line = (f"Largest test patient: {split.largest_test_images:,} of the {split.images['test']:,} test images "
            f"({_percent(share)} %)")
    if share > LARGEST_PATIENT_FLAG:
        line += (f" — above {100 * LARGEST_PATIENT_FLAG:.0f} %: one patient weighs heavily on every test mean, so "
                 "read the patient-level intervals (and paired tests), not the image-level ones.")
    else:
        line += "."
    return lines + [line]


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _percent(share: float) -> str:
    pct = 100 * share
    return f"{pct:.1f}" if pct >= 1 or pct == 0 else f"{pct:.2g}"


def data_caption(source: str | None, facts: DataFacts | None = None) -> list[str]:
    """Caption lines naming the data (with a warning when it is the synthetic demo) and, when known (`facts`, or
    those set with `data_facts`), images and patients per split and the largest test patient's share."""
    facts = facts or current_data_facts()
    lines = []
    if source:
        line = f"Data: {data_label(source, facts)}."
        if source == "synthetic":
            line += " Demo numbers: differences from the study's chest X-ray results are not meaningful."
        lines.append(line)
    if facts.split is not None:
        lines += split_caption(facts.split)
    return lines


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
    return fmt_pm(q["lpips"], q["lpips_ci95"] if ci else None, METRICS["lpips"].decimals)


def metric_cells(q: dict) -> dict[str, str]:
    """Ours, the study's and Δ for each metric, without intervals (Tables IV and V)."""
    return {"PSNR dB": fmt(q["psnr"], 3), "paper PSNR": fmt(q["paper_psnr"], 3), "Δ PSNR": diff_cell(q, "psnr", 3),
            "SSIM": fmt(q["ssim"], 4), "SSIM (win 3)": fmt(q["ssim_w3"], 4), "paper SSIM": fmt(q["paper_ssim"], 4),
            "Δ SSIM (w3)": diff_cell(q, "ssim", 4), "LPIPS": lpips_cell(q, ci=False),
            "paper LPIPS": fmt(q["paper_lpips"], 4), "Δ LPIPS": diff_cell(q, "lpips", 4)}
