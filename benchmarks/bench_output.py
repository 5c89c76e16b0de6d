"""Where a benchmark's result goes: one JSON per run, named by benchmark and UTC time, written atomically."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

from cxrdenoise.atomic import write_json  # noqa: E402


def save_result(out_dir: str | Path, stem: str, result: dict) -> Path:
    """Write `result` to out_dir/<stem>_<YYYYmmddTHHMMSSZ>.json (older runs are kept beside it) and say where."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{stem}_{dt.datetime.now(dt.timezone.utc).strftime('%Y%m%dT%H%M%SZ')}.json"
    write_json(path, result)
    print(f"wrote {path}")
    return path
