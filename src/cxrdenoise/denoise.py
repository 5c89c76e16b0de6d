"""Apply a trained denoiser: load a ``best.pt``, run it on tensors of any size, and denoise a folder of images.

The evaluation stage and the ``cxrdenoise denoise`` command share :func:`load_denoiser` and
:func:`denoise_batch`, so the numbers in the tables come from exactly the code path a user runs.

Images of any size work: the U-Nets need H and W divisible by 16 (four poolings), so inputs are padded at the
bottom and right by mirror reflection (no edge discontinuity for the convolutions to react to) and the output is
cropped back. Outputs are clamped to [0, 1] (the networks have no output activation).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import nn
from tqdm import tqdm

from .atomic import atomic_path
from .errors import CxrError

CHECKPOINT_KEYS = ("model", "model_kwargs", "state_dict", "sigma")
LEGACY_BLOCK_MODELS = ("unet", "unetpp")  # a checkpoint of these without model_kwargs["block"] is double_bn
MIN_MULTIPLE = 16


@dataclass
class Denoiser:
    """A model in eval mode on its device, plus the checkpoint's metadata (everything but the weights)."""

    model: nn.Module
    meta: dict[str, Any]
    device: torch.device
    multiple: int

    def __call__(self, noisy: torch.Tensor) -> torch.Tensor:
        return denoise_batch(self.model, noisy, self.multiple, self.device)


def resolve_device(name: str | None) -> torch.device:
    """`cuda` / `cpu`, or the best available when None; CxrError when CUDA is asked for but absent."""
    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise CxrError(f"device {name!r}: use cpu or cuda")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise CxrError(f"device {name!r} requested but CUDA is not available here; use --device cpu")
    return torch.device(name)


def load_denoiser(path: str | Path, device: str | torch.device | None = None) -> Denoiser:
    """Rebuild the network recorded in a checkpoint and load its weights; one-line CxrError on any problem."""
    from .models import build_model  # imported here: registering the models is only needed to load one

    path = Path(path)
    device = device if isinstance(device, torch.device) else resolve_device(device)
    if not path.is_file():
        raise CxrError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and torch errors alike: the file is not a usable checkpoint
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CxrError(f"{path}: cannot read checkpoint ({first})") from None
    if not isinstance(ckpt, dict) or any(k not in ckpt for k in CHECKPOINT_KEYS):
        have = sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CxrError(f"{path}: not a cxrdenoise checkpoint (needs keys {list(CHECKPOINT_KEYS)}, has {have})")
    if ckpt["model"] in LEGACY_BLOCK_MODELS and isinstance(ckpt["model_kwargs"], dict):
        # written before the U-Nets had a `block` option, when every block had two BatchNorms
        ckpt["model_kwargs"] = {**ckpt["model_kwargs"], "block": ckpt["model_kwargs"].get("block", "double_bn")}
    try:
        model = build_model(ckpt["model"], **ckpt["model_kwargs"])
    except CxrError as err:
        raise CxrError(f"{path}: {err}") from None
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as err:
        raise CxrError(f"{path}: weights do not fit model {ckpt['model']!r} ({str(err).splitlines()[0]})") from None
    model.to(device).eval()
    meta = {k: v for k, v in ckpt.items() if k != "state_dict"}
    multiple = max(MIN_MULTIPLE, 2 ** (int(getattr(model, "levels", 1)) - 1))
    return Denoiser(model, meta, device, multiple)


def _reflect_index(n: int, size: int, device: torch.device) -> torch.Tensor:
    """Indices 0..size-1 into an axis of length n, mirrored (without repeating the edge) past its end.

    Works for any padding, even longer than the axis, unlike ``F.pad(mode="reflect")``.
    """
    i = torch.arange(size, device=device)
    if n == 1:
        return torch.zeros_like(i)
    period = 2 * (n - 1)
    i = i % period
    return torch.where(i < n, i, period - i)


def pad_to_multiple(batch: torch.Tensor, multiple: int) -> torch.Tensor:
    """Reflect-pad an (N, C, H, W) batch at the bottom and right to the next multiple of `multiple`."""
    h, w = batch.shape[-2:]
    hp, wp = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    if (hp, wp) == (h, w):
        return batch
    batch = batch.index_select(-2, _reflect_index(h, hp, batch.device))
    return batch.index_select(-1, _reflect_index(w, wp, batch.device))


def denoise_batch(model: nn.Module, noisy: torch.Tensor, multiple: int, device: torch.device) -> torch.Tensor:
    """Denoise an (N, 1, H, W) batch in [0, 1] of any H, W; returns it clamped to [0, 1] on `device`."""
    h, w = noisy.shape[-2:]
    with torch.inference_mode():
        x = pad_to_multiple(noisy.to(device, non_blocking=True).float(), multiple)
        return model(x)[..., :h, :w].clamp_(0.0, 1.0)


# --- images on disk -------------------------------------------------------------------------------------------


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) read from the header; CxrError naming the file if it is not an image Pillow can open."""
    try:
        with Image.open(path) as im:
            return im.height, im.width
    except (UnidentifiedImageError, OSError) as err:
        raise CxrError(f"{path}: not a readable image ({_reason(err)})") from None


def read_grey(path: Path) -> np.ndarray:
    """An image as (H, W) float32 in [0, 1]: 16-bit greyscale scaled by 65535, anything else via Pillow's "L".

    RGB and palette images are converted with Pillow's luminance formula; an alpha channel is ignored.
    """
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                return (np.asarray(im, dtype=np.float64) / 65535.0).clip(0.0, 1.0).astype(np.float32)
            if im.mode == "F":
                arr = np.asarray(im, dtype=np.float32)
                if arr.min() < 0 or arr.max() > 1:
                    raise CxrError(f"{path}: floating-point image outside [0, 1]; rescale it first")
                return arr
            return np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    except (UnidentifiedImageError, OSError) as err:
        raise CxrError(f"{path}: not a readable image ({_reason(err)})") from None


def write_png8(path: Path, image: np.ndarray) -> None:
    """Write a [0, 1] (H, W) image as an 8-bit greyscale PNG, atomically."""
    arr = np.round(np.clip(image, 0.0, 1.0) * 255.0).astype(np.uint8)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(arr, mode="L").save(tmp, format="PNG")


def _reason(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def list_images(input_dir: Path) -> list[Path]:
    """Every regular file in `input_dir` (sorted); subfolders are reported on stderr, not searched.

    Nothing is skipped silently: a file that is not an image stops the run with its name (checked before any
    output is written).
    """
    if not input_dir.is_dir():
        raise CxrError(f"{input_dir}: input folder not found")
    files = []
    for entry in sorted(input_dir.iterdir()):
        if entry.is_dir():
            print(f"note: {entry}: subfolder not searched", file=sys.stderr)
        else:
            files.append(entry)
    if not files:
        raise CxrError(f"{input_dir}: no files to denoise")
    return files


def plan_outputs(files: list[Path], output_dir: Path) -> dict[Path, Path]:
    """Output path for each input: same name, ``.png`` suffix; CxrError on clashes (a.jpg and a.png)."""
    plan: dict[Path, Path] = {}
    seen: dict[Path, Path] = {}
    for src in files:
        dest = output_dir / (src.stem + ".png")
        if dest in seen:
            raise CxrError(f"{src} and {seen[dest]} would both be written to {dest}; rename one")
        seen[dest] = src
        plan[src] = dest
    return plan


def denoise_folder(
    checkpoint: str | Path, input_dir: str | Path, output_dir: str | Path, batch_size: int = 8,
    device: str | None = None, progress: bool = True,
) -> list[Path]:
    """Denoise every image in `input_dir` into `output_dir`; returns the written paths in input order."""
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if batch_size < 1:
        raise CxrError(f"--batch-size {batch_size}: must be at least 1")
    files = list_images(input_dir)
    if output_dir.resolve() == input_dir.resolve():
        raise CxrError(f"{output_dir}: output folder is the input folder; choose another so inputs are kept")
    plan = plan_outputs(files, output_dir)
    sizes = {path: image_size(path) for path in files}  # every file checked before the model loads
    denoiser = load_denoiser(checkpoint, device)
    print(
        f"{checkpoint}: {denoiser.meta['model']} trained at sigma {denoiser.meta['sigma']}, "
        f"{len(files)} image(s) on {denoiser.device}",
        file=sys.stderr,
    )
    output_dir.mkdir(parents=True, exist_ok=True)

    by_size = sorted(files, key=lambda p: (sizes[p], p.name))
    with tqdm(total=len(files), unit="img", desc="denoise", disable=not progress) as bar:
        for _, group in groupby(by_size, key=lambda p: sizes[p]):
            group = list(group)
            for start in range(0, len(group), batch_size):
                chunk = group[start : start + batch_size]
                noisy = torch.from_numpy(np.stack([read_grey(p) for p in chunk]))[:, None]
                clean = denoiser(noisy).cpu().numpy()[:, 0]
                for src, image in zip(chunk, clean):
                    write_png8(plan[src], image)
                bar.update(len(chunk))
    return [plan[p] for p in files]


# --- command line ---------------------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    """`cxrdenoise denoise` (arguments defined in cxrdenoise.cli)."""
    written = denoise_folder(
        args.checkpoint, args.input, args.output, batch_size=args.batch_size, device=args.device,
        progress=not args.no_progress,
    )
    print(f"denoised {len(written)} image(s) into {args.output}")
    return 0
