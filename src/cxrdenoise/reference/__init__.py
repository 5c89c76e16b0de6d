"""The study's published numbers, shipped as package data so tables can put them beside ours.

`paper-numbers.csv` is a verbatim copy of `shared/reference/paper-numbers.csv` (Adebayo & Khan 2025, Tables
III-V). `literature-table6.csv` transcribes the literature rows the study quotes in its Table VI (BM3D, TNRD,
DnCNN-3 on BSD68 natural images); the study labels their noise "15%/25%", but they are the usual σ = 15 and
25 on a 0-255 scale, which is what the `noise` column says. Nothing here is measured by this pipeline.
"""

from __future__ import annotations

import functools
import math
from importlib import resources
from typing import Any

import pandas as pd

from ..config import sigma_label

PAPER_CSV = "paper-numbers.csv"
LITERATURE_CSV = "literature-table6.csv"
PAPER_CITATION = "Adebayo & Khan 2025"
PAPER_HARDWARE = "2x NVIDIA RTX A4500"
METRICS = ("psnr", "ssim", "lpips")


def _read(name: str) -> pd.DataFrame:
    with resources.files(__name__).joinpath(name).open("r", encoding="utf-8") as fh:
        return pd.read_csv(fh)


@functools.cache
def _paper() -> pd.DataFrame:
    frame = _read(PAPER_CSV)
    return frame.assign(sigma=frame["noise"].map(sigma_label))


def paper_numbers() -> pd.DataFrame:
    """The study's Table III-V figures, one row per (noise, model, setup); `sigma` is the path label ("0.1")."""
    return _paper().copy()


def paper_row(sigma: str, model: str, setup: str) -> dict[str, Any] | None:
    """The study's numbers for one run as plain floats (NaN where it gave none), or None if it has no row.

    Table III/IV and Table V share the gpu1/dp2 rows, so the lookup ignores which table a row came from.
    """
    frame = _paper()
    hit = frame[(frame["sigma"] == sigma_label(sigma)) & (frame["model"] == model) & (frame["setup"] == setup)]
    if hit.empty:
        return None
    row = hit.iloc[0]
    out: dict[str, Any] = {"table": str(row["table"])}
    for key in (*METRICS, *(f"{m}_ci95" for m in METRICS), "train_s"):
        value = row[key]
        out[key] = float(value) if value is not None and not pd.isna(value) else math.nan
    return out


@functools.cache
def _literature() -> pd.DataFrame:
    return _read(LITERATURE_CSV)


def literature_rows() -> pd.DataFrame:
    """Table VI's quoted literature rows (natural images; not comparable with chest X-rays)."""
    return _literature().copy()
