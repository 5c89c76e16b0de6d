"""Reading source radiographs and resizing them to the training size."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import CxrError


def load_grey(path: str | Path) -> tuple[np.ndarray, bool]:
    """Decode a PNG to float32 grey in [0, 255]; returns (image, was_converted_from_colour).

    A few NIH images are stored as RGBA; they are converted to "L" like the rest and counted by the caller.
    """
    try:
        with Image.open(path) as img:
            img.load()
            converted = img.mode not in ("L", "I;16", "I")
            if img.mode in ("I;16", "I"):
                arr = np.asarray(img, dtype=np.float32) * (255.0 / 65535.0)
            else:
                arr = np.asarray(img.convert("L"), dtype=np.float32)
    except FileNotFoundError:
        raise CxrError(f"{path}: source image is missing") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise CxrError(f"{path}: not a readable image ({err})") from None
    return arr, converted


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
