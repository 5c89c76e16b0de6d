"""The classical baselines' stage (workflow/rules/classical.smk): each method of :mod:`cxrdenoise.classical`
scored on the test images of one shard, then the shards merged into one result per (method, sigma).

Scoring goes through :func:`cxrdenoise.evaluate.run_evaluation` with the classical method wrapped as the
denoiser, so the per-image scores, patient ids, summary statistics and provenance come from the same code as a
trained model's (``per_image.csv`` / ``summary.json`` in the same shape, ``kind: "classical"``). Layout::

    results/classical/{method}/sigma{sigma}/shard_{shard}/{per_image.csv,summary.json}
    results/classical/{method}/sigma{sigma}/{per_image.csv,summary.json}     (merged, read by the tables)

``max_images`` (config ``baselines.max_images``) keeps the first N test images in dataset order, the same images
for every method and sigma; each shard job scores those of them that lie in its shard (possibly none: its files
then say so). A method whose optional package is absent (BM3D) writes a result that says it was skipped and
why, and the merged result and Table VI carry that note: a skip is not a failure.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from .atomic import atomic_path, write_json
from .classical import METHODS, MEAN_HANDLING, get_method, missing_package, parameter
from .config import sigma_label
from .errors import CxrError

PER_IMAGE_COLUMNS = ["image_id", "patient_id", "psnr", "ssim", "ssim_w3", "lpips", "inference_ms"]
EMPTY_NOTE = "no test image of this shard is among the images scored (baselines.max_images)"


def timing_note(threads: int) -> str:
    return (f"ms per image = wall time to denoise one batch on the CPU, its images spread over {int(threads)} "
            "thread(s), / batch size, including the mean handling; no warm-up (a filter has nothing to warm)")


def shard_positions(data_dir: str | Path, shard: int, max_images: int | None = None) -> list[int]:
    """Positions in the test split (dataset order: shard, then row) of the images of shard `shard` among its
    first `max_images` (all when None). Read from the clean manifest alone, so an empty shard costs no torch."""
    if max_images is not None and int(max_images) < 1:
        raise CxrError(f"baselines.max_images must be >= 1 or null, got {max_images}")
    path = Path(data_dir) / "clean" / "manifest.json"  # data.clean_manifest_path, without importing torch
    if not path.exists():
        raise CxrError(f"{path} is missing: build it with the Snakemake rule 'clean_manifest'")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    test_shards = [k for k, meta in enumerate(manifest["shards"]) for where in meta["splits"] if where == "test"]
    limit = len(test_shards) if max_images is None else min(int(max_images), len(test_shards))
    return [i for i in range(limit) if test_shards[i] == int(shard)]


class ShardTestSet:
    """The test images of one shard among the first `max_images` of the test split (all when None), as
    (noisy, clean) pairs: a view of :class:`cxrdenoise.data.PairDataset` with its ids and noise mean."""

    def __init__(self, data_dir: str | Path, sigma: float | str, shard: int, max_images: int | None = None,
                 positions: Sequence[int] | None = None):
        from .data import PairDataset

        self.full = PairDataset(data_dir, "test", sigma)
        self.positions = list(positions if positions is not None else shard_positions(data_dir, shard, max_images))
        if any(int(self.full.index[i][0]) != int(shard) for i in self.positions):
            raise CxrError(f"{data_dir}: the clean manifest and the test split disagree on shard {shard}")
        self.image_ids = [self.full.image_ids[i] for i in self.positions]
        self.patient_ids = [self.full.patient_ids[i] for i in self.positions]
        self.noise_mean = self.full.noise_mean
        self.sigma = self.full.sigma

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, i: int):
        return self.full[self.positions[i]]


class ClassicalDenoiser:
    """A classical method as a batch denoiser ((B, 1, H, W) tensor in, same out), images spread over threads."""

    def __init__(self, method: str, sigma: float, mean: float, mean_handling: str = "invert",
                 strength: float = 1.0, threads: int = 1):
        get_method(method)
        if mean_handling not in MEAN_HANDLING:
            raise CxrError(f"baselines.mean_handling must be one of {', '.join(MEAN_HANDLING)}, got {mean_handling!r}")
        self.method, self.sigma, self.mean = method, float(sigma), float(mean)
        self.mean_handling, self.strength = mean_handling, float(strength)
        self.threads = max(1, int(threads)) if get_method(method).thread_safe else 1

    def _one(self, image: np.ndarray) -> np.ndarray:
        from .classical import denoise

        return denoise(self.method, image, self.sigma, self.mean, mean_handling=self.mean_handling,
                       strength=self.strength)

    def __call__(self, batch):
        import torch

        images = [b[0] for b in batch.detach().cpu().numpy().astype(np.float64)]
        if self.threads > 1 and len(images) > 1:
            with ThreadPoolExecutor(self.threads) as pool:
                out = list(pool.map(self._one, images))
        else:
            out = [self._one(im) for im in images]
        return torch.from_numpy(np.stack(out)[:, None].astype(np.float32))


def _header(method: str, sigma: float | str, noise_mean: Any, mean_handling: str, strength: float, threads: int,
            max_images: int | None) -> dict[str, Any]:
    m = get_method(method)
    return {
        "kind": "classical", "model": method, "method_label": m.label,
        "method_parameter": {"name": m.parameter, "value": parameter(method, float(sigma), strength),
                             "strength": float(strength)},
        "mean_handling": mean_handling, "threads": int(threads), "max_images": max_images,
        "model_kwargs": None, "sigma": float(sigma), "noise_mean": noise_mean, "setup": None,
        "checkpoint": None, "checkpoint_epoch": None, "checkpoint_val_loss": None, "checkpoint_config_hash": None,
        "n_parameters": None,
    }


def _write_unscored(out_dir: Path, header: dict[str, Any], key: str, note: str) -> dict[str, Any]:
    """A result with no scores that says why (`skipped`: package absent; `empty`: no image in this shard)."""
    from .provenance import provenance

    summary = {**header, "split": "test", "n_images": 0, "n_patients": 0, key: note,
               "provenance": provenance(None, device="cpu")}
    with atomic_path(out_dir / "per_image.csv", suffix=".csv") as tmp:
        pd.DataFrame(columns=PER_IMAGE_COLUMNS).to_csv(tmp, index=False)
    write_json(out_dir / "summary.json", summary)
    return summary


def evaluate_classical_shard(method: str, sigma: float | str, shard: int, out_dir: str | Path, *,
                             data_dir: str | Path, mean_handling: str = "invert", strength: float = 1.0,
                             max_images: int | None = None, threads: int = 1, batch_size: int = 8,
                             lpips_enabled: bool = True, config_hash: str | None = None,
                             progress: bool = True) -> dict[str, Any]:
    """Score `method` on shard `shard`'s test images at `sigma`; writes per_image.csv and summary.json,
    returns the summary."""
    out_dir = Path(out_dir)
    if not get_method(method).thread_safe:
        threads = 1  # recorded as run: the method's own library parallelises, Python threads would crash it
    header = _header(method, sigma, None, mean_handling, strength, threads, max_images)
    header["shard"] = int(shard)
    reason = missing_package(method)  # before torch is imported: a skipped job costs little
    if reason:
        return _write_unscored(out_dir, header, "skipped", reason)
    positions = shard_positions(data_dir, shard, max_images)
    if not positions:
        return _write_unscored(out_dir, header, "empty", EMPTY_NOTE)
    dataset = ShardTestSet(data_dir, sigma, shard, positions=positions)
    header["noise_mean"] = dataset.noise_mean
    if dataset.noise_mean is None:
        raise CxrError(f"{data_dir}: the noisy manifest at sigma {sigma} has no noise_mean; rebuild the noise shards")
    import torch

    from .evaluate import run_evaluation

    torch.set_num_threads(1)  # the threads go to images, not to torch's metric ops
    denoiser = ClassicalDenoiser(method, dataset.sigma, dataset.noise_mean, mean_handling, strength, threads)
    summary = run_evaluation(dataset, denoiser, out_dir, header, device=torch.device("cpu"),
                             batch_size=batch_size, figure_images=0, lpips_enabled=lpips_enabled,
                             config_hash=config_hash, progress=progress, metrics_on_device=False, warmup=False,
                             timing_note=timing_note(threads))
    (out_dir / "examples.npz").unlink(missing_ok=True)  # no figure images (figure_images=0): an empty file
    return summary


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CxrError(f"{path}: not found (rule classical_shard)") from None
    except json.JSONDecodeError as err:
        raise CxrError(f"{path}: not valid JSON ({err}); re-run rule classical_shard") from None


def merge_shards(shard_dirs: Sequence[str | Path], out_dir: str | Path, method: str, sigma: float | str) -> dict:
    """One per_image.csv and summary.json for (method, sigma) from its shard results, in shard order."""
    out_dir = Path(out_dir)
    if not shard_dirs:
        raise CxrError(f"classical merge {method} sigma {sigma}: no shard results given")
    summaries, frames = [], []
    for d in map(Path, shard_dirs):
        s = _read_json(d / "summary.json")
        if s.get("kind") != "classical" or s.get("model") != method or sigma_label(s["sigma"]) != sigma_label(sigma):
            raise CxrError(f"{d / 'summary.json'}: is {s.get('kind')} {s.get('model')} sigma {s.get('sigma')}, "
                           f"expected classical {method} sigma {sigma}")
        summaries.append(s)
        if s.get("n_images"):
            frames.append(pd.read_csv(d / "per_image.csv", dtype={"image_id": str, "patient_id": str}))
    shards = [str(d) for d in shard_dirs]
    skipped = next((s["skipped"] for s in summaries if s.get("skipped")), None)
    if skipped:
        header = {k: v for k, v in summaries[0].items() if k not in ("shard", "provenance")}
        return _write_unscored(out_dir, {**header, "shards": shards}, "skipped", skipped)
    if not frames:
        raise CxrError(f"classical {method} sigma {sigma}: none of the {len(shards)} shards holds a scored test image")
    template = next(s for s in summaries if s.get("n_images"))
    for s in summaries:
        for key in ("mean_handling", "threads", "max_images", "noise_mean", "method_parameter"):
            if s.get(key) != template.get(key) and not s.get("empty"):
                raise CxrError(f"classical {method} sigma {sigma}: shards differ in {key} "
                               f"({s.get(key)!r} vs {template.get(key)!r}); re-run rule classical_shard")
    from .stats import summarise

    frame = pd.concat(frames, ignore_index=True)
    if frame["image_id"].duplicated().any():
        raise CxrError(f"classical {method} sigma {sigma}: an image is scored in two shards")
    metrics = summarise(frame, list(template["metrics"]))
    summary = {k: v for k, v in template.items() if k != "shard"}
    summary.update(n_images=len(frame), n_patients=int(frame["patient_id"].astype(str).nunique()), metrics=metrics,
                   psnr_inf_count=metrics["psnr"]["n_inf"], figure_image_ids=[], shards=shards)
    summary["inference"] = {**template["inference"], "ms_per_image_mean": metrics["inference_ms"]["mean"]}
    with atomic_path(out_dir / "per_image.csv", suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False, na_rep="NaN", float_format="%.10g")
    write_json(out_dir / "summary.json", summary)
    return summary


__all__ = ["ClassicalDenoiser", "METHODS", "ShardTestSet", "evaluate_classical_shard", "merge_shards",
           "shard_positions"]
