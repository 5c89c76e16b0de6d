"""Apply a trained denoiser: load a ``best.pt``, run it on tensors of any size, and denoise a folder of images.

The evaluation stage and the ``cxrdenoise denoise`` command share :func:`load_denoiser` and
:func:`denoise_batch`, so the numbers in the tables come from exactly the code path a user runs.

Images of any size work: the U-Nets need H and W divisible by 16 (four poolings), so inputs are padded at the
bottom and right by mirror reflection (no edge discontinuity for the convolutions to react to) and the output is
cropped back. Outputs are clamped to [0, 1] (the networks have no output activation).
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from .atomic import atomic_path
from .errors import CxrError, DiskSpaceError
from .imaging import load_grey, load_unit_grey

CHECKPOINT_KEYS = ("model", "model_kwargs", "state_dict", "sigma")
KEEP_DECODED_BYTES = 512 * 2**20  # inputs decoded by the up-front check are kept (not decoded twice) up to this much
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
    ckpt = _read_checkpoint(path)
    if isinstance(ckpt, dict) and ("optimizer" in ckpt or "fingerprint" in ckpt):
        raise CxrError(TRAINING_STATE.format(path=path))
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


def _read_checkpoint(path: Path) -> Any:
    """torch.load with weights_only=True, its failures turned into one line without torch's internals.

    A file that needs arbitrary unpickling is refused, not loaded: a cxrdenoise checkpoint holds only tensors and
    plain data, so anything else is not one (and unpickling it could run code).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle, zip and torch errors alike: the file is not a usable checkpoint
        text = str(err)
        if _is_training_state(path):  # last.pt holds RNG states (numpy objects): refused above, named here
            raise CxrError(TRAINING_STATE.format(path=path)) from None
        if "Unsupported global" in text:  # a pickle of classes (torch says "Weights only load failed")
            raise CxrError(f"{path}: not a cxrdenoise checkpoint (it holds Python objects, not just weights; "
                           "refused without unpickling it)") from None
        if isinstance(err, OSError):  # permission denied, a folder, ...
            raise CxrError(f"{path}: cannot read checkpoint ({_reason(err)})") from None
        raise CxrError(f"{path}: cannot read checkpoint (not a PyTorch checkpoint file, or truncated)") from None


TRAINING_STATE = "{path}: a training state (last.pt, for resuming training), use best.pt from the same folder"


def _is_training_state(path: Path) -> bool:
    """Whether a torch zip file is a training job's last.pt, judged from its pickle's bytes without unpickling:
    the resume state's keys `fingerprint` and `optimizer` appear in it as plain strings."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("/data.pkl")), None)
            data = archive.read(name) if name else b""
    except (OSError, zipfile.BadZipFile, KeyError):
        return path.name == "last.pt"
    return b"fingerprint" in data and b"optimizer" in data


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


def read_images(files: list[Path], keep: dict[Path, np.ndarray] | None = None,
                keep_bytes: int = KEEP_DECODED_BYTES) -> dict[Path, tuple[int, int]]:
    """Decode every input completely (a truncated file fails here, not halfway through the outputs); (H, W) each.

    A NaN or infinite pixel anywhere refuses the file: the network would turn it into a plausible-looking grey
    (NaN compares false with everything, so a range check alone lets it through). Decoded images go into `keep`
    (path -> load_grey's array) while they fit `keep_bytes`, so the denoising pass need not decode them again.
    """
    sizes = {}
    kept = 0
    for path in files:
        try:
            arr = load_grey(path)[0]
        except CxrError:
            counts = _non_finite(path)  # an inf makes load_grey's [0, 1] check fail: name the real problem
            if counts:
                raise CxrError(_non_finite_message(path, *counts)) from None
            raise
        bad = ~np.isfinite(arr)
        if bad.any():
            raise CxrError(_non_finite_message(path, int(np.isnan(arr).sum()), int(bad.sum()), arr.size))
        sizes[path] = arr.shape
        if keep is not None and kept + arr.nbytes <= keep_bytes:
            keep[path] = arr
            kept += arr.nbytes
    return sizes


def _unit_grey(path: Path, decoded: dict[Path, np.ndarray]) -> np.ndarray:
    """:func:`load_unit_grey` of `path`, from the array the check decoded when it was kept."""
    arr = decoded.pop(path, None)
    if arr is None:
        return load_unit_grey(path)
    return np.clip(arr / np.float32(255.0), 0.0, 1.0)  # load_unit_grey's own arithmetic


def _non_finite(path: Path) -> tuple[int, int, int] | None:
    """(NaN count, non-finite count, pixels) of a floating-point image with any non-finite pixel, else None."""
    try:
        with Image.open(path) as img:
            if img.mode != "F":
                return None
            arr = np.asarray(img, dtype=np.float32)
    except Exception:  # unreadable: load_grey's own message stands
        return None
    bad = ~np.isfinite(arr)
    return (int(np.isnan(arr).sum()), int(bad.sum()), arr.size) if bad.any() else None


def _non_finite_message(path: Path, nan: int, bad: int, total: int) -> str:
    what = ", ".join(part for part in (f"{nan} NaN" if nan else "", f"{bad - nan} infinite" if bad > nan else "")
                     if part)
    return (f"{path}: {what} of {total} pixels; not denoised (nothing was written): replace them with finite "
            "values in [0, 1] or remove the file")


def write_png(path: Path, image: np.ndarray, bits: int = 8) -> None:
    """Write a [0, 1] (H, W) image as an 8- or 16-bit greyscale PNG, atomically."""
    top = (1 << bits) - 1
    arr = np.round(np.clip(image, 0.0, 1.0).astype(np.float64) * top).astype(np.uint8 if bits == 8 else np.uint16)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")  # uint8 -> "L", uint16 -> "I;16": 8- or 16-bit grey


def _reason(err: Exception) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


SPECIAL_FILES = ((stat.S_ISFIFO, "a named pipe (FIFO)"), (stat.S_ISSOCK, "a socket"),
                 (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def list_images(input_dir: Path) -> list[Path]:
    """Every regular file in `input_dir` (sorted); subfolders are reported on stderr, not searched.

    Nothing is skipped silently: a file that is not an image stops the run with its name (checked before any
    output is written). Named pipes, sockets and devices (also behind a symlink) are skipped with a note on
    stderr, never opened: reading a FIFO would wait forever for a writer.
    """
    if not input_dir.is_dir():
        raise CxrError(f"{input_dir}: input folder not found")
    files = []
    try:
        entries = sorted(input_dir.iterdir())
    except OSError as err:
        raise CxrError(f"{input_dir}: cannot list the input folder ({_reason(err)})") from None
    for entry in entries:
        try:
            mode = entry.stat().st_mode  # follows symlinks; stat never opens, so never blocks on a FIFO
        except OSError:  # a dangling symlink, ...: decoding it names the problem
            files.append(entry)
            continue
        special = next((what for test, what in SPECIAL_FILES if test(mode)), None)
        if stat.S_ISDIR(mode):
            print(f"note: {entry}: subfolder not searched", file=sys.stderr)
        elif special:
            print(f"note: {entry}: {special}, not an image file; skipped", file=sys.stderr)
        else:
            files.append(entry)
    if not files:
        raise CxrError(f"{input_dir}: no files to denoise")
    return files


def check_output_folder(output_dir: Path) -> None:
    """The output folder exists as a writable folder, or can be created: checked before anything is written."""
    existing = output_dir
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing == output_dir and not output_dir.is_dir():
        raise CxrError(f"{output_dir}: is a file, not a folder; choose another --output")
    if not existing.is_dir():
        raise CxrError(f"{output_dir}: cannot create the output folder, {existing} is a file; choose another --output")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise CxrError(f"{output_dir}: cannot write into {existing} (permission denied); choose another --output")
    try:  # what os.access cannot see: read-only mounts, quotas
        fd, probe = tempfile.mkstemp(prefix=".cxrdenoise-probe.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise CxrError(f"{output_dir}: cannot write into {existing} ({_reason(err)}); choose another --output") from None


def check_conflicts(plan: dict[Path, Path], overwrite: bool) -> None:
    """No output path is a folder; existing output files are replaced only with --overwrite."""
    existing = []
    for dest in plan.values():
        if dest.is_dir():
            raise CxrError(f"{dest}: a folder is in the way of an output file; move it or choose another --output")
        if dest.exists():
            existing.append(dest)
    if existing and not overwrite:
        raise CxrError(
            f"{existing[0]}: output file already exists ({len(existing)} of {len(plan)} do); "
            "use --overwrite to replace them or choose another --output"
        )


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
    device: str | None = None, progress: bool = True, bits: int = 8, overwrite: bool = False,
) -> list[Path]:
    """Denoise every image in `input_dir` into `output_dir`; returns the written paths in input order.

    Everything is checked before the first output is written: arguments, the output folder (writable, not a
    file), name clashes and existing outputs, every input decoded in full, and the checkpoint.
    """
    input_dir, output_dir = Path(input_dir), Path(output_dir)
    if batch_size < 1:
        raise CxrError(f"--batch-size {batch_size}: must be at least 1")
    if bits not in (8, 16):
        raise CxrError(f"--bits {bits}: use 8 or 16")
    files = list_images(input_dir)
    if output_dir.resolve() == input_dir.resolve():
        raise CxrError(f"{output_dir}: output folder is the input folder; choose another so inputs are kept")
    check_output_folder(output_dir)
    plan = plan_outputs(files, output_dir)
    check_conflicts(plan, overwrite)
    decoded: dict[Path, np.ndarray] = {}
    sizes = read_images(files, decoded)
    denoiser = load_denoiser(checkpoint, device)
    print(
        f"{checkpoint}: {denoiser.meta['model']} trained at sigma {denoiser.meta['sigma']}, "
        f"{len(files)} image(s) on {denoiser.device}, writing {bits}-bit PNGs",
        file=sys.stderr,
    )
    written = 0
    # PNG encoding (Pillow releases the GIL) runs on one writer thread while the next batch is denoised; one
    # batch of writes at most is in flight, so memory stays one batch, and a failed write stops the run at the
    # next batch with the count of files written exact
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="png-writer")
    pending: list[Future] = []

    def drain() -> None:  # wait for the writes in flight; their error, if any, is raised here
        for future in pending:
            future.result()
        pending.clear()

    def write_all(items: list[tuple[Path, np.ndarray]]) -> None:
        nonlocal written  # only the writer thread counts; the main thread reads it after drain()
        for dest, image in items:
            write_png(dest, image, bits)
            written += 1

    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        by_size = sorted(files, key=lambda p: (sizes[p], p.name))
        with tqdm(total=len(files), unit="img", desc="denoise", disable=not progress) as bar:
            for _, group in groupby(by_size, key=lambda p: sizes[p]):
                group = list(group)
                for start in range(0, len(group), batch_size):
                    chunk = group[start : start + batch_size]
                    noisy = torch.from_numpy(np.stack([_unit_grey(p, decoded) for p in chunk]))[:, None]
                    clean = denoiser(noisy).cpu().numpy()[:, 0]
                    drain()
                    pending.append(writer.submit(write_all, [(plan[src], image) for src, image in zip(chunk, clean)]))
                    bar.update(len(chunk))
            drain()
    except DiskSpaceError as err:  # full disk, quota, size limit: one line with the space needed, and how far
        raise CxrError(f"{err}; {written} of {len(files)} image(s) written to {output_dir}") from None
    except OSError as err:  # e.g. the disk filled up: checked as far as can be, but say how far it got
        where = getattr(err, "filename", None) or output_dir
        raise CxrError(f"{where}: cannot write ({_reason(err)}); {written} of {len(files)} image(s) written") from None
    finally:
        writer.shutdown(wait=True)
    return [plan[p] for p in files]


# --- command line ---------------------------------------------------------------------------------------------
