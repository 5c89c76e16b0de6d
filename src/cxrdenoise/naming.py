"""Names the pipeline reads and writes: NIH ChestX-ray14 image names (`{patient:08d}_{follow_up:03d}.png`) and the
noise level's label in result paths (`sigma0.1`).

The patient id is part of the image name, which is what makes a patient-disjoint split possible without metadata.
The σ label lives here, on the ground floor, so the data and shard code that names folders by it need not import
the config loader (config.py re-exports it for the workflow and older callers).
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import CxrError

_NIH_NAME = re.compile(r"^(\d{8})_(\d{3})\.png$")


def sigma_label(sigma: float | str) -> str:
    """The noise level as it appears in paths (`sigma0.1`): shortest exact decimal form."""
    return f"{float(sigma):g}"


def image_name(patient: int, follow_up: int) -> str:
    return f"{patient:08d}_{follow_up:03d}.png"


def parse_image_name(name: str | Path) -> tuple[int, int]:
    """Return (patient id, follow-up) from an NIH image name, or fail naming the file."""
    base = Path(name).name
    match = _NIH_NAME.match(base)
    if not match:
        raise CxrError(f"{name}: not an NIH image index (expected NNNNNNNN_NNN.png)")
    return int(match.group(1)), int(match.group(2))


def is_image_name(name: str | Path) -> bool:
    return bool(_NIH_NAME.match(Path(name).name))
