"""Reading source radiographs and resizing them to the training size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import CxrError


SIXTEEN_BIT_MODES = ("I;16", "I;16B", "I;16L", "I")


def load_grey(path: str | Path) -> tuple[np.ndarray, bool]:
    """Decode an image to float32 grey in [0, 255]; returns (image, was_converted_from_colour).

    The one image reader of the package (the data stages and the ``denoise`` command both use it). 16-bit grey is
    scaled by 255/65535 (not truncated to 8 bits); a floating-point image must already be in [0, 1]; colour and
    palette images are converted with Pillow's "L" luminance (a few NIH images are RGBA; the caller counts them).
    A missing, truncated or undecodable file is a one-line CxrError naming it.
    """
    try:
        with Image.open(path) as img:
            img.load()
            converted = img.mode not in ("L", "F", *SIXTEEN_BIT_MODES)
            if img.mode in SIXTEEN_BIT_MODES:
                arr = np.asarray(img, dtype=np.float32) * (255.0 / 65535.0)
            elif img.mode == "F":
                arr = np.asarray(img, dtype=np.float32)
                bad = int(arr.size - np.isfinite(arr).sum())
                if bad:  # NaN fails every comparison: check it before the range
                    raise CxrError(f"{path}: {bad} NaN or infinite pixel(s) of {arr.size}; replace them with finite "
                                   "values in [0, 1] or remove the file")
                if arr.size and (arr.min() < 0 or arr.max() > 1):
                    raise CxrError(f"{path}: floating-point image outside [0, 1]; rescale it first")
                arr = arr * np.float32(255.0)
            else:
                arr = np.asarray(img.convert("L"), dtype=np.float32)
    except FileNotFoundError:
        raise CxrError(f"{path}: source image is missing") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise CxrError(f"{path}: not a readable image ({_reason(err)})") from None
    return arr, converted


def load_unit_grey(path: str | Path) -> np.ndarray:
    """:func:`load_grey` scaled to [0, 1] (what the networks take)."""
    return np.clip(load_grey(path)[0] / np.float32(255.0), 0.0, 1.0)


def _reason(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def resize_grey(arr: np.ndarray, size: int, path: str | Path = "<array>") -> np.ndarray:
    """Antialiased (Lanczos) resize of a square grey image to `size`, returned in [0, 1] as float32.

    Resampling happens in 32-bit float, so the 1024 -> 256 step adds no 8-bit rounding of its own.
    """
    height, width = arr.shape
    if height != width:
        raise CxrError(f"{path}: unexpected size {width}x{height} (frontal radiographs are square)")
    if height < size:
        raise CxrError(f"{path}: unexpected size {width}x{height}, smaller than resize.size {size}")
    if height != size:
        arr = np.asarray(Image.fromarray(arr, mode="F").resize((size, size), Image.Resampling.LANCZOS))
    return np.clip(arr / 255.0, 0.0, 1.0).astype(np.float32)
