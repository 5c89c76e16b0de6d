"""Which images exist for a source, with patient ids and view positions.

Every later stage reads this table instead of walking the file system, so NIH downloads, a user's local copy
and synthetic phantoms all flow through the same code.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pandas as pd

from .errors import CxrError
from .naming import is_image_name, parse_image_name

COLUMNS = ["image_id", "patient_id", "follow_up", "view_position", "source_path"]
_META_ID = "Image Index"


def find_images(roots: list[str | Path]) -> list[Path]:
    """All PNGs below `roots`; a PNG whose name is not an NIH image index is an error naming it."""
    found: list[Path] = []
    for root in roots:
        root = Path(root)
        if not root.is_dir():
            raise CxrError(f"{root}: image folder does not exist")
        for dirpath, _dirs, files in os.walk(root):
            for name in files:
                if not name.lower().endswith(".png"):
                    continue
                path = Path(dirpath) / name
                if not is_image_name(name):
                    raise CxrError(f"{path}: not an NIH image index (expected NNNNNNNN_NNN.png)")
                found.append(path)
    return found


def listing_digest(roots: list[str | Path], files: list[str | Path | None] = ()) -> str:
    """sha256 of the PNG listing below `roots` (relative names, sizes, mtimes) and of `files`' sizes and mtimes.

    Cheap (no file is read) and changes whenever an image is added, removed, replaced or edited, so the
    workflow passes it to the inventory as a parameter and re-reads a folder the user changed. Absent
    folders or files are digested as absent: the inventory itself then reports them in one line.
    """
    digest = hashlib.sha256()
    for root in roots:
        digest.update(f"root {Path(root).name}\n".encode())
        entries: list[str] = []
        _list_pngs(os.fspath(root), "", entries)
        digest.update("\n".join(sorted(entries)).encode())
    for file in files:
        if file:
            try:
                st = Path(file).stat()
                digest.update(f"\nfile {Path(file).name}\t{st.st_size}\t{st.st_mtime_ns}".encode())
            except OSError:
                digest.update(f"\nfile {Path(file).name} absent".encode())
    return digest.hexdigest()


def _list_pngs(folder: str, prefix: str, entries: list[str]) -> None:
    """Append "relative name, size, mtime" of every PNG below `folder` (os.scandir: 0.15 s per 20,000 files
    measured here)."""
    try:
        with os.scandir(folder) as it:
            for entry in it:
                try:
                    if entry.is_dir():
                        _list_pngs(entry.path, f"{prefix}{entry.name}/", entries)
                    elif entry.name.lower().endswith(".png"):
                        st = entry.stat()
                        entries.append(f"{prefix}{entry.name}\t{st.st_size}\t{st.st_mtime_ns}")
                except OSError:
                    continue
    except OSError:
        entries.append(f"{prefix} unreadable")


def read_metadata(path: str | Path) -> pd.DataFrame:
    """NIH's Data_Entry_2017*.csv (or the synthetic twin), indexed by image name."""
    try:
        meta = pd.read_csv(path)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        raise CxrError(f"{path}: cannot read metadata CSV ({err})") from None
    missing = {_META_ID, "Patient ID"} - set(meta.columns)
    if missing:
        raise CxrError(f"{path}: metadata CSV lacks column(s) {sorted(missing)}")
    return meta.set_index(_META_ID)


def build_inventory(roots: list[str | Path], metadata_csv: str | Path | None = None) -> pd.DataFrame:
    """One row per image, sorted by image id so later seeded choices do not depend on walk order."""
    paths = find_images(roots)
    if not paths:
        raise CxrError(f"no NIH-named PNG images found in {', '.join(map(str, roots))}")
    rows = []
    for path in paths:
        patient, follow_up = parse_image_name(path)
        rows.append({"image_id": path.name, "patient_id": patient, "follow_up": follow_up,
                     "view_position": "", "source_path": str(path)})
    inv = pd.DataFrame(rows, columns=COLUMNS)
    duplicates = inv["image_id"][inv["image_id"].duplicated()]
    if not duplicates.empty:
        raise CxrError(f"image {duplicates.iloc[0]} found twice under {', '.join(map(str, roots))}")
    if metadata_csv:
        inv = _join_metadata(inv, read_metadata(metadata_csv), metadata_csv)
    return inv.sort_values("image_id", ignore_index=True)


def _join_metadata(inv: pd.DataFrame, meta: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    absent = inv.loc[~inv["image_id"].isin(meta.index), "image_id"]
    if not absent.empty:
        raise CxrError(f"{path}: no metadata row for image {absent.iloc[0]} ({len(absent)} image(s) missing)")
    rows = meta.loc[inv["image_id"]]
    inv = inv.assign(patient_id=rows["Patient ID"].astype(int).to_numpy())
    if "View Position" in meta.columns:
        inv = inv.assign(view_position=rows["View Position"].fillna("").astype(str).to_numpy())
    return inv
