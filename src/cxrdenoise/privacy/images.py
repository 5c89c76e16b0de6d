"""Images as the attackers see them: read from the shards through the evaluation's dataset, denoised with the
evaluation's loader, and area-downsampled to twice the attackers' size (`work_size`, at least 32 px for the
trivial baseline), so an attacker can still shift and rescale before it samples its own `size` x `size` view.

`preprocess` (area downsampling to `size`, then zero mean and unit norm per image) removes what no attacker
should rely on (exposure, the noise's mean shift) and keeps the anatomy.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from ..config import sigma_label
from ..data import PairDataset
from ..denoise import load_denoiser, resolve_device
from ..errors import CxrError


def preprocess(images: torch.Tensor | np.ndarray, size: int) -> np.ndarray:
    """(N, H, W) or (N, 1, H, W) in [0, 1] -> (N, size, size) float32, area-downsampled, zero mean, unit L2 norm."""
    x = torch.from_numpy(downsample(images, size)).reshape(len(images), -1)
    x = x - x.mean(dim=1, keepdim=True)
    x = x / x.norm(dim=1, keepdim=True).clamp_min(1e-8)
    return x.reshape(len(x), size, size).cpu().numpy().astype(np.float32)


BASELINE_SIZE = 32  # the trivial baseline's size (privacy.trivial), so its images are never upsampled


def work_size(size: int) -> int:
    """Twice the attackers' size (room to shift and rescale), and at least the trivial baseline's size."""
    return max(2 * int(size), BASELINE_SIZE)


def downsample(images: torch.Tensor | np.ndarray, size: int) -> np.ndarray:
    """(N, H, W) or (N, 1, H, W) -> (N, size, size) float32 by area averaging (unchanged if already that size)."""
    x = torch.as_tensor(np.asarray(images) if not isinstance(images, torch.Tensor) else images).float()
    if x.ndim == 3:
        x = x[:, None]
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="area")
    return x[:, 0].cpu().numpy().astype(np.float32)


@dataclass
class QuerySets:
    """Images of one split at `work_size`: the clean ones and every attacked form of them, in the same order."""

    image_ids: list[str]
    patient_ids: list[int]
    image_shape: tuple[int, ...]
    clean: np.ndarray
    noisy: dict[str, np.ndarray] = field(default_factory=dict)                    # sigma label -> images
    denoised: dict[tuple[str, str], np.ndarray] = field(default_factory=dict)     # (model, sigma) -> images
    checkpoints: dict[tuple[str, str], dict] = field(default_factory=dict)        # (model, sigma) -> metadata
    psnr: dict[tuple[str, str], float] = field(default_factory=dict)  # ("noisy" or model, sigma) -> mean test PSNR


def _psnr(output: torch.Tensor, clean: torch.Tensor) -> np.ndarray:
    """Per-image PSNR (data range 1) at full resolution, to flag a denoiser that did not denoise."""
    mse = ((output.float().cpu() - clean.float()) ** 2).flatten(1).mean(dim=1).double()
    return (10.0 * torch.log10(1.0 / mse.clamp_min(1e-12))).numpy()


def load_query_sets(data_dir: str | Path, split: str, sigmas: Sequence[str], checkpoints: Sequence[str | Path], *,
                    size: int, device: str | None = None, batch_size: int = 16) -> QuerySets:
    """Clean, noisy (each sigma) and denoised (each checkpoint, on the noisy images of its own sigma) images,
    area-downsampled to `work_size(size)`."""
    work = work_size(size)
    sigmas = [sigma_label(s) for s in sigmas]
    if not sigmas:
        raise CxrError("privacy: no noise level given (noise.sigmas)")
    dev = resolve_device(device)
    denoisers: dict[str, list] = {s: [] for s in sigmas}
    for path in checkpoints:
        denoiser = load_denoiser(path, dev)
        s = sigma_label(denoiser.meta["sigma"])
        if s not in denoisers:
            raise CxrError(f"{path}: trained at sigma {s}, which is not among the privacy stage's {sigmas}")
        denoisers[s].append((str(path), denoiser))
    out: QuerySets | None = None
    for s in sigmas:
        dataset = PairDataset(data_dir, split, s)
        if out is None:
            out = QuerySets(list(map(str, dataset.image_ids)), [int(p) for p in dataset.patient_ids],
                            tuple(dataset.image_shape), np.empty(0))
        elif list(map(str, dataset.image_ids)) != out.image_ids:
            raise CxrError(f"privacy: the {split} images at sigma {s} differ from those at sigma {sigmas[0]}")
        clean, noisy, denoised = [], [], {path: [] for path, _ in denoisers[s]}
        psnr: dict[str, list] = {"noisy": [], **{path: [] for path, _ in denoisers[s]}}
        for noisy_b, clean_b in DataLoader(dataset, batch_size=batch_size, shuffle=False):
            if s == sigmas[0]:
                clean.append(downsample(clean_b, work))
            noisy.append(downsample(noisy_b, work))
            psnr["noisy"].append(_psnr(noisy_b, clean_b))
            for path, denoiser in denoisers[s]:
                output = denoiser(noisy_b).cpu()
                denoised[path].append(downsample(output, work))
                psnr[path].append(_psnr(output, clean_b))
        if s == sigmas[0]:
            out.clean = np.concatenate(clean)
        out.noisy[s] = np.concatenate(noisy)
        out.psnr[("noisy", s)] = float(np.concatenate(psnr["noisy"]).mean())
        for path, denoiser in denoisers[s]:
            key = (str(denoiser.meta["model"]), s)
            if key in out.denoised:
                raise CxrError(f"{path}: a second checkpoint of model {key[0]} at sigma {s}; give one per model and sigma")
            out.denoised[key] = np.concatenate(denoised[path])
            out.psnr[key] = float(np.concatenate(psnr[path]).mean())
            out.checkpoints[key] = {"path": path, "epoch": denoiser.meta.get("epoch"),
                                    "setup": denoiser.meta.get("setup"), "model_kwargs": denoiser.meta.get("model_kwargs")}
    return out



def views(sets: QuerySets) -> tuple[list[str], np.ndarray]:
    """The clean images and their noisy versions stacked as (1 + n_sigmas, N, H, W), with the view names."""
    names = ["clean", *(f"noisy sigma {s}" for s in sets.noisy)]
    return names, np.stack([sets.clean, *sets.noisy.values()])
