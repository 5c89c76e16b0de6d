"""The classical baselines' stage (workflow/rules/classical.smk): each method of :mod:`cxrdenoise.classical`
scored on the test images of one shard, then the shards merged into one result per (method, sigma).

Scoring goes through :func:`cxrdenoise.evaluate.run_evaluation` with the classical method wrapped as the
denoiser, so the per-image scores, patient ids, summary statistics and provenance come from the same code as a
trained model's (``per_image.csv`` / ``summary.json`` in the same shape, ``kind: "classical"``). Layout::

    results/classical/{method}/sigma{sigma}/shard_{shard}/{per_image.csv,summary.json}
    results/classical/{method}/sigma{sigma}/{per_image.csv,summary.json}     (merged, read by the tables)

``max_images`` (config ``baselines.max_images``) limits the methods to N test images drawn across patients
(:func:`classical_subset`): the patients in a random order, one image of each per round, each patient's images in
a random order, both orders derived from the config ``seed``; the chosen images are the same for every method,
shard and sigma, computed from the clean manifest alone (no torch), and each summary records the seed and the
chosen image ids (``subset``). Each shard job scores those of them that lie in its shard (possibly none: its
files then say so). Table VI restricts the nets' and the noisy input's per-image scores to exactly these images
(:mod:`cxrdenoise.tables.table6`). A method whose optional package is absent (BM3D) writes a result that says it
was skipped and why, and the merged result and Table VI carry that note: a skip is not a failure.
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


SUBSET_SELECTION = ("round-robin across patients: the test patients in a random order, one image of each per "
                    "round, each patient's images in a random order (both orders from the config seed)")
ALL_SELECTION = "every test image"


def round_robin(image_ids: Sequence, patient_ids: Sequence, n: int, seed: int) -> list[int]:
    """Indices (into `image_ids`, in the order picked) of `n` images drawn round-robin across patients: the
    patients in a random order, then one image of each per round until `n` are taken; each patient's images in a
    random order. Patients are ordered by a stream derived from (`seed`, "classical_subset", "patients"), the images
    of patient p by one from (`seed`, "classical_subset", "images", p), both over the ids sorted as text, so the
    choice depends on the ids and the seed alone (not on the shard layout), and a larger `n` keeps a smaller one's
    images."""
    from .seeding import rng_for

    if len(image_ids) != len(patient_ids):
        raise CxrError(f"round_robin: {len(image_ids)} image ids but {len(patient_ids)} patient ids")
    by_patient: dict[str, list[int]] = {}
    for i, p in enumerate(map(str, patient_ids)):
        by_patient.setdefault(p, []).append(i)
    names = sorted(by_patient)
    order = [names[k] for k in rng_for(seed, "classical_subset", "patients").permutation(len(names))]
    queues = []
    for p in order:
        own = sorted(by_patient[p], key=lambda i: str(image_ids[i]))
        queues.append([own[k] for k in rng_for(seed, "classical_subset", "images", p).permutation(len(own))])
    picked: list[int] = []
    for rnd in range(max((len(q) for q in queues), default=0)):
        for q in queues:
            if rnd < len(q):
                picked.append(q[rnd])
                if len(picked) == n:
                    return picked
    return picked


def _test_entries(data_dir: str | Path) -> list[tuple[int, str, str]]:
    """(shard, image id, patient id) of every test image in dataset order (shard, then row), from the clean
    manifest alone, so a job that scores nothing costs no torch."""
    path = Path(data_dir) / "clean" / "manifest.json"  # data.clean_manifest_path, without importing torch
    if not path.exists():
        raise CxrError(f"{path} is missing: build it with the Snakemake rule 'clean_manifest'")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    return [(k, str(image_id), str(patient))
            for k, meta in enumerate(manifest["shards"])
            for image_id, patient, where in zip(meta["image_ids"], meta["patient_ids"], meta["splits"])
            if where == "test"]


def classical_subset(data_dir: str | Path, max_images: int | None = None, seed: int | None = None) -> dict[str, Any]:
    """The test images the classical methods score: all (`max_images` None or >= the test split) or `max_images`
    of them drawn by :func:`round_robin` with the config `seed`. Returns what a summary records under ``subset``
    (selection, seed, max_images, counts, the chosen image ids in dataset order) plus ``positions`` (their
    positions in the test split) and ``shards`` (the shard of each)."""
    if max_images is not None and int(max_images) < 1:
        raise CxrError(f"baselines.max_images must be >= 1 or null, got {max_images}")
    entries = _test_entries(data_dir)
    if max_images is None or int(max_images) >= len(entries):
        positions = list(range(len(entries)))
        selection = ALL_SELECTION
    else:
        if seed is None:
            raise CxrError("baselines.max_images is set: the round-robin subset needs the config seed (--seed)")
        positions = sorted(round_robin([e[1] for e in entries], [e[2] for e in entries], int(max_images), int(seed)))
        selection = SUBSET_SELECTION
    ids = [entries[i][1] for i in positions]
    return {"selection": selection, "seed": None if seed is None else int(seed),
            "max_images": None if max_images is None else int(max_images), "n_test_images": len(entries),
            "n_test_patients": len({e[2] for e in entries}), "n_images": len(ids),
            "n_patients": len({entries[i][2] for i in positions}), "image_ids": ids,
            "positions": positions, "shards": [entries[i][0] for i in positions]}


def subset_record(subset: dict[str, Any]) -> dict[str, Any]:
    """What a summary keeps of :func:`classical_subset` (not the positions, which depend on the shard layout)."""
    return {k: v for k, v in subset.items() if k not in ("positions", "shards")}


def shard_positions(data_dir: str | Path, shard: int, max_images: int | None = None,
                    seed: int | None = None) -> list[int]:
    """Positions in the test split (dataset order: shard, then row) of the images of shard `shard` among the
    classical subset (:func:`classical_subset`; all test images when `max_images` is None)."""
    subset = classical_subset(data_dir, max_images, seed)
    return [p for p, k in zip(subset["positions"], subset["shards"]) if k == int(shard)]


class ShardTestSet:
    """The test images of one shard among the classical subset (:func:`classical_subset`; all when `max_images`
    is None), as (noisy, clean) pairs: a view of :class:`cxrdenoise.data.PairDataset` with its ids and noise
    mean."""

    def __init__(self, data_dir: str | Path, sigma: float | str, shard: int, max_images: int | None = None,
                 positions: Sequence[int] | None = None, seed: int | None = None):
        from .data import PairDataset

        self.full = PairDataset(data_dir, "test", sigma)
        self.positions = list(positions if positions is not None
                              else shard_positions(data_dir, shard, max_images, seed))
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
                             max_images: int | None = None, seed: int | None = None, threads: int = 1,
                             batch_size: int = 8, lpips_enabled: bool = True, config_hash: str | None = None,
                             progress: bool = True) -> dict[str, Any]:
    """Score `method` on shard `shard`'s test images among the classical subset (`max_images` drawn with the
    config `seed`, :func:`classical_subset`) at `sigma`; writes per_image.csv and summary.json, returns the
    summary."""
    out_dir = Path(out_dir)
    if not get_method(method).thread_safe:
        threads = 1  # recorded as run: the method's own library parallelises, Python threads would crash it
    header = _header(method, sigma, None, mean_handling, strength, threads, max_images)
    header["shard"] = int(shard)
    reason = missing_package(method)  # before torch is imported: a skipped job costs little
    if reason:
        return _write_unscored(out_dir, header, "skipped", reason)
    subset = classical_subset(data_dir, max_images, seed)
    header["subset"] = subset_record(subset)
    positions = [p for p, k in zip(subset["positions"], subset["shards"]) if k == int(shard)]
    if not positions:
        return _write_unscored(out_dir, header, "empty", EMPTY_NOTE)
    dataset = ShardTestSet(data_dir, sigma, shard, positions=positions)
    want = [i for i, k in zip(subset["image_ids"], subset["shards"]) if k == int(shard)]
    if [str(i) for i in dataset.image_ids] != want:
        raise CxrError(f"{data_dir}: the clean manifest and the test split disagree on shard {shard}'s image ids")
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
    for d, s in zip(shards, summaries):
        for key in ("mean_handling", "threads", "max_images", "noise_mean", "method_parameter"):
            if s.get(key) != template.get(key) and not s.get("empty"):
                raise CxrError(f"classical {method} sigma {sigma}: shards differ in {key} "
                               f"({s.get(key)!r} vs {template.get(key)!r}); re-run rule classical_shard")
        if s.get("subset") != template.get("subset"):
            raise CxrError(f"classical {method} sigma {sigma}: {d} chose another image subset than the other shards "
                           "(seed or baselines.max_images changed between jobs); re-run rule classical_shard")
    from .stats import summarise

    frame = pd.concat(frames, ignore_index=True)
    if frame["image_id"].duplicated().any():
        raise CxrError(f"classical {method} sigma {sigma}: an image is scored in two shards")
    chosen = (template.get("subset") or {}).get("image_ids")
    if chosen is not None and sorted(map(str, chosen)) != sorted(frame["image_id"].astype(str)):
        raise CxrError(f"classical {method} sigma {sigma}: the shards scored {len(frame)} images, not the "
                       f"{len(chosen)} of the subset their summaries record; re-run rule classical_shard")
    metrics = summarise(frame, list(template["metrics"]))
    summary = {k: v for k, v in template.items() if k != "shard"}
    summary.update(n_images=len(frame), n_patients=int(frame["patient_id"].astype(str).nunique()), metrics=metrics,
                   psnr_inf_count=metrics["psnr"]["n_inf"], figure_image_ids=[], shards=shards)
    summary["inference"] = {**template["inference"], "ms_per_image_mean": metrics["inference_ms"]["mean"]}
    with atomic_path(out_dir / "per_image.csv", suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False, na_rep="NaN", float_format="%.10g")
    write_json(out_dir / "summary.json", summary)
    return summary


__all__ = ["ClassicalDenoiser", "METHODS", "ShardTestSet", "classical_subset", "evaluate_classical_shard",
           "merge_shards", "round_robin", "shard_positions"]
