"""On-disk shards of clean and noisy images: memory-mappable .npy arrays with JSON sidecars and a manifest.

Training reads pairs straight from these arrays instead of decoding one PNG per image per epoch (the study's
code), and the noise is fixed on disk, identical for every rank and every run.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np
from tqdm import tqdm

from .atomic import atomic_path, write_json
from .errors import CxrError
from .hashing import file_sha256
from .imaging import load_grey, resize_grey
from .noise import NoiseModel, make_noise
from .shard_integrity import verify_shard

if TYPE_CHECKING:  # frames come from the caller: the noise and manifest jobs, and training (data.py), need no pandas
    import pandas as pd

STORAGE_SCALE = {"float16": 1.0, "uint8": 255.0}


def encode(images: np.ndarray, dtype: str) -> np.ndarray:
    """[0, 1] float -> storage dtype (uint8 stores round(x * 255))."""
    if dtype == "uint8":
        return np.round(images * 255.0).astype(np.uint8)
    return images.astype(np.float16)


def decode(stored: np.ndarray) -> np.ndarray:
    """Storage dtype -> float32 in [0, 1]."""
    if stored.dtype == np.uint8:
        return stored.astype(np.float32) / 255.0
    return stored.astype(np.float32)


def shard_rows(split: pd.DataFrame, shard: int, images_per_shard: int) -> pd.DataFrame:
    rows = split.iloc[shard * images_per_shard:(shard + 1) * images_per_shard]
    if rows.empty:
        raise CxrError(f"shard {shard} is empty: split has {len(split)} images, {images_per_shard} per shard")
    return rows


def save_shard(array: np.ndarray, npy_path: str | Path, meta: dict) -> dict:
    """Write the array and its sidecar atomically; the sidecar carries ids and the array's sha256.

    A full disk or a file-size limit is one line (DiskSpaceError) naming the shard and the space it needs; the
    previous shard, if any, is left as it was.
    """
    npy_path = Path(npy_path)
    with atomic_path(npy_path, suffix=".npy", needed=array.nbytes + 128) as tmp:  # 128: the .npy header
        with open(tmp, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
    meta = {**meta, "file": npy_path.name, "dtype": str(array.dtype), "shape": list(array.shape),
            "sha256": file_sha256(npy_path)}
    write_json(npy_path.with_suffix(".json"), meta)
    return meta


def resize_shard(split: pd.DataFrame, shard: int, images_per_shard: int, size: int, dtype: str,
                 out_npy: str | Path, progress: bool = True) -> dict:
    """Decode, grey-convert and resize one shard's source images."""
    rows = shard_rows(split, shard, images_per_shard)
    images = np.empty((len(rows), size, size), dtype=np.float32)
    converted = 0
    for i, path in enumerate(tqdm(rows["source_path"], desc=f"resize shard {shard}", unit="img",
                                  disable=not progress)):
        arr, was_colour = load_grey(path)
        converted += was_colour
        images[i] = resize_grey(arr, size, path)
    meta = {
        "kind": "clean",
        "shard": shard,
        "image_ids": rows["image_id"].tolist(),
        "patient_ids": [int(p) for p in rows["patient_id"]],
        "splits": rows["split"].tolist(),
        "colour_converted": int(converted),
        "storage_scale": STORAGE_SCALE[dtype],
    }
    return save_shard(encode(images, dtype), out_npy, meta)


def image_noise(seed: int, image_id: str, sigma: float, mean: float, shape: tuple[int, ...]) -> np.ndarray:
    """The study's Gaussian noise for one image, a function of (seed, image id, sigma) only (before clipping)."""
    noise = make_noise("gaussian_study", {"mean": mean})
    return noise.draw(noise.rng(seed, image_id, sigma), sigma, shape)


def noise_shard(clean_npy: str | Path, level: float, noise: NoiseModel | float, seed: int, out_npy: str | Path,
                progress: bool = True) -> dict:
    """noisy = noise.apply(clean, the image's own stream, level) for every image of one clean shard; `noise` is a
    registered noise type (cxrdenoise.noise), or a number: the mean of the study's Gaussian (gaussian_study),
    clip(clean + N(mean, sigma^2), 0, 1)."""
    if not isinstance(noise, NoiseModel):
        noise = make_noise("gaussian_study", {"mean": float(noise)})
    clean_npy = Path(clean_npy)
    meta = json.loads(clean_npy.with_suffix(".json").read_text())
    verify_shard(clean_npy, meta, "resize_shard")  # noise added to a corrupted clean shard would look valid
    stored = np.load(clean_npy, mmap_mode="r")
    noisy = np.empty(stored.shape, dtype=np.float32)
    desc = f"noise sigma {noise.label(level)} shard {meta['shard']}"
    for i, image_id in enumerate(tqdm(meta["image_ids"], desc=desc, unit="img", disable=not progress)):
        clean = decode(np.asarray(stored[i]))
        noisy[i] = noise.apply(clean, noise.rng(seed, image_id, level), level)
    out_meta = {key: meta[key] for key in ("shard", "image_ids", "patient_ids", "splits", "storage_scale")}
    out_meta.update({"kind": "noisy", **noise.sidecar(level), "seed": int(seed), "clean_sha256": meta["sha256"]})
    return save_shard(encode(noisy, str(stored.dtype)), out_npy, out_meta)


def write_manifest(sidecars: Iterable[str | Path], out_json: str | Path, **extra) -> dict:
    """Gather shard sidecars, in shard order, into one manifest."""
    shards = [json.loads(Path(p).read_text()) for p in sidecars]
    shards.sort(key=lambda m: m["shard"])
    if [m["shard"] for m in shards] != list(range(len(shards))):
        raise CxrError(f"{out_json}: shard sidecars are not a contiguous 0..{len(shards) - 1} sequence")
    dtypes = {m["dtype"] for m in shards}
    shapes = {tuple(m["shape"][1:]) for m in shards}
    if len(dtypes) != 1 or len(shapes) != 1:
        raise CxrError(f"{out_json}: shards disagree on dtype {sorted(dtypes)} or image shape {sorted(shapes)}")
    manifest = {
        "kind": shards[0]["kind"],
        "dtype": dtypes.pop(),
        "image_shape": list(shapes.pop()),
        "n_images": sum(m["shape"][0] for m in shards),
        "colour_converted": sum(m.get("colour_converted", 0) for m in shards),
        "shards": shards,
        **extra,
    }
    write_json(out_json, manifest)
    return manifest

