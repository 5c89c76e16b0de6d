"""Torch Dataset of (noisy, clean) pairs for one split and noise level, read from the on-disk shards.

Every rank and every run builds the same index from the same manifests; a DistributedSampler then splits
indices, and nothing else differs between ranks.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from . import layout
from .errors import CxrError
from .shard_integrity import fix_hint, verify_shard
from .shards import decode
from .split import SPLITS


def clean_manifest_path(data_dir: str | Path) -> Path:
    return Path(layout.clean_manifest(data_dir))


def noisy_manifest_path(data_dir: str | Path, sigma: float | str) -> Path:
    return Path(layout.noisy_manifest(sigma, data_dir))


def read_manifest(path: Path, rule: str) -> dict:
    """Load a manifest, or fail naming the Snakemake rule that makes it."""
    if not path.exists():
        raise CxrError(f"{path} is missing: {fix_hint(path, rule, force=False)}")
    return json.loads(path.read_text())


class PairDataset(Dataset):
    """(noisy, clean) float32 tensors of shape (1, H, W) in [0, 1].

    Shards are memory-mapped lazily in each process (DataLoader workers included), or loaded into memory
    once with `preload=True`, in their storage dtype so a preloaded split costs what it costs on disk.
    Every shard the split uses is first checked against its manifest entry (cxrdenoise.shard_integrity), so a
    changed or corrupted shard stops the job with one line instead of being trained on or scored.
    """

    def __init__(self, data_dir: str | Path, split: str, sigma: float | str, preload: bool = False):
        if split not in SPLITS:
            raise CxrError(f"split '{split}' is not one of {', '.join(SPLITS)}")
        self.data_dir = Path(data_dir)
        self.split = split
        self.sigma = float(sigma)
        clean = read_manifest(clean_manifest_path(data_dir), "clean_manifest")
        noisy = read_manifest(noisy_manifest_path(data_dir, sigma), "noisy_manifest")
        self._check_aligned(clean, noisy)
        self.noise_mean = noisy["shards"][0]["noise_mean"]
        self._clean_files = [Path(layout.clean_dir(data_dir)) / m["file"] for m in clean["shards"]]
        noisy_dir = noisy_manifest_path(data_dir, sigma).parent
        self._noisy_files = [noisy_dir / m["file"] for m in noisy["shards"]]
        index, ids, patients = [], [], []
        for shard_no, meta in enumerate(clean["shards"]):
            for row, (image_id, patient, where) in enumerate(
                    zip(meta["image_ids"], meta["patient_ids"], meta["splits"])):
                if where == split:
                    index.append((shard_no, row))
                    ids.append(image_id)
                    patients.append(patient)
        if not index:
            raise CxrError(f"{clean_manifest_path(data_dir)}: the '{split}' split has no images")
        self.index = np.asarray(index, dtype=np.int64)
        self.image_ids: list[str] = ids
        self.patient_ids: list[int] = patients
        self.image_shape = tuple(clean["image_shape"])
        for shard_no in sorted({int(s) for s in self.index[:, 0]}):
            verify_shard(self._clean_files[shard_no], clean["shards"][shard_no], "resize_shard")
            verify_shard(self._noisy_files[shard_no], noisy["shards"][shard_no], "noise_shard")
        self._arrays: dict[tuple[str, int], np.ndarray] = {}
        self._preloaded = self._preload() if preload else None

    def _check_aligned(self, clean: dict, noisy: dict) -> None:
        clean_ids = [m["image_ids"] for m in clean["shards"]]
        noisy_ids = [m["image_ids"] for m in noisy["shards"]]
        if clean_ids != noisy_ids:
            raise CxrError(f"{noisy_manifest_path(self.data_dir, self.sigma)}: image ids differ from the clean "
                           "shards; rebuild the noisy shards (rule noise_shard)")

    def _array(self, kind: str, shard: int) -> np.ndarray:
        key = (kind, shard)
        if key not in self._arrays:
            files = self._clean_files if kind == "clean" else self._noisy_files
            try:
                self._arrays[key] = np.load(files[shard], mmap_mode="r")
            except (OSError, ValueError) as err:
                raise CxrError(f"{files[shard]}: cannot read shard ({err})") from None
        return self._arrays[key]

    def _preload(self) -> tuple[np.ndarray, np.ndarray]:
        noisy = np.stack([self._array("noisy", s)[r] for s, r in self.index])
        clean = np.stack([self._array("clean", s)[r] for s, r in self.index])
        self._arrays.clear()
        return noisy, clean

    def stored_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(noisy, clean) of the whole split in the shards' storage dtype, undecoded (train.distributed's
        DeviceLoader decodes them with torch on the device)."""
        return self._preloaded if self._preloaded is not None else self._preload()

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        if self._preloaded is not None:
            noisy, clean = self._preloaded[0][i], self._preloaded[1][i]
        else:
            shard, row = self.index[i]
            noisy, clean = self._array("noisy", shard)[row], self._array("clean", shard)[row]
        return (torch.from_numpy(decode(np.asarray(noisy))[None]),
                torch.from_numpy(decode(np.asarray(clean))[None]))

    def __getstate__(self) -> dict:
        # Memory maps are reopened in each worker process rather than pickled.
        state = self.__dict__.copy()
        state["_arrays"] = {}
        return state
