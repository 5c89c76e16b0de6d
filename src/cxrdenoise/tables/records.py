"""A run's files as one `Run`, and the readers of its JSON and per-image CSV.

Why a module of its own: `runs` groups files into runs and `replicates` combines a run's replicates; both need
`Run`, and `runs` calls `replicates`, so `Run` lives below both (the arrow runs one way).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..errors import CxrError


@dataclass
class Run:
    """One trained-and-evaluated configuration, with whichever of its files the caller passed."""

    model: str
    sigma: str
    setup: str
    rep: int | None = None  # replicate (1-based) of one run; None for the noisy input
    record: dict | None = None
    record_path: Path | None = None
    summary: dict | None = None
    summary_path: Path | None = None
    per_image_path: Path | None = None
    examples_path: Path | None = None
    replicates: list["Run"] = field(default_factory=list)  # a group's runs in replicate order (itself if one)
    excluded: list[int] = field(default_factory=list)  # replicates left out because they did not denoise

    @property
    def label(self) -> str:
        reps = f" rep{self.rep}" if self.rep is not None and not self.replicates else ""
        return f"{self.model} σ={self.sigma}" + (f" {self.setup}" if self.setup else "") + reps

    @property
    def n_replicates(self) -> int:
        return max(1, len(self.replicates))


def read_json(path: str | Path) -> dict:
    try:
        with open(path, encoding="utf-8") as fh:
            return json.load(fh)
    except FileNotFoundError:
        raise CxrError(f"{path}: not found") from None
    except json.JSONDecodeError as err:
        raise CxrError(f"{path}: not valid JSON ({err})") from None


def read_per_image(path: str | Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype={"image_id": str, "patient_id": str})
    except FileNotFoundError:
        raise CxrError(f"{path}: not found") from None
    if "image_id" not in frame.columns:
        raise CxrError(f"{path}: no image_id column")
    return frame
