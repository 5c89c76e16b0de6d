"""NIH ChestX-ray14 image names: `{patient:08d}_{follow_up:03d}.png`.

The patient id is part of the name, which is what makes a patient-disjoint split possible without metadata.
"""

from __future__ import annotations

import re
from pathlib import Path

from .errors import CxrError

_NIH_NAME = re.compile(r"^(\d{8})_(\d{3})\.png$")


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
