"""Score a trained denoiser (or the noisy input itself) on the test split; write per-image and summary files.

Outputs in one folder (docs/results-layout.md, "Evaluation"), each written atomically:

* ``per_image.csv``: ``image_id, patient_id, psnr, ssim, ssim_w3, lpips, inference_ms`` in dataset order.
  ``psnr`` may be ``inf`` (exact reproduction), ``lpips`` is ``NaN`` when LPIPS is unavailable or disabled.
  With the test-only random LPIPS backbone the ``lpips`` column is NaN and the values go to an extra column
  ``lpips_random_backbone``, so nothing that reads ``lpips`` can mistake them for LPIPS.
* ``summary.json``: n images and patients, mean / sd / both 95 % CIs per metric (:mod:`cxrdenoise.stats`), inf-PSNR count, LPIPS
  status / kind / message, model, sigma, setup, checkpoint epoch, inference device and provenance.
* ``examples.npz``: ``image_ids``, ``noisy``, ``denoised``, ``clean`` (k, H, W) float32 for ``figure_images`` test
  images of distinct patients (`figure_image_ids`) -- the same images for every model and noise level.

PSNR, SSIM and SSIM (win 3): on a CUDA evaluation device, batched in torch on that device
(:mod:`cxrdenoise.device_metrics`, equal to the scikit-image reference of :mod:`cxrdenoise.metrics` within 1e-5,
tested on real radiographs), so the GPU does not wait on the host; on the CPU with scikit-image's numbers to the
bit, a batch at a time (:func:`cxrdenoise.metrics.stack_metrics`), which is faster there
(``benchmarks/bench_metrics.py``). ``metrics_on_device`` overrides the choice. Only the figure images' arrays are
copied back to the host on CUDA.

Inference time per image is measured honestly: a warm-up pass runs untimed first (on CUDA the whole first batch:
CUDA context and cuDNN autotuning per shape; on the CPU its first image, which takes the first call's allocator
and oneDNN set-up at a fraction of a batch's cost), then each batch's host-to-device copy, padding, forward pass
and clamp are timed with ``torch.cuda.synchronize()`` before and after (on CUDA), and the batch time is divided
by its size.

pandas and scipy (through :mod:`cxrdenoise.stats` and the CPU metrics) are imported when an evaluation runs, not
with this module.
"""

from __future__ import annotations

import math
import time
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from .atomic import atomic_path, write_json
from .denoise import Denoiser, load_denoiser, resolve_device
from .device_metrics import batch_image_metrics
from .errors import CxrError
from .lpips_weights import LpipsScorer, load_lpips
from .metrics import stack_metrics
from .naming import sigma_label
from .provenance import device_info, provenance

if TYPE_CHECKING:
    import pandas as pd

PER_IMAGE_COLUMNS = ["image_id", "patient_id", "psnr", "ssim", "ssim_w3", "lpips", "inference_ms"]
PSNR_INF_NOTE = "images with PSNR = inf (output identical to clean) are excluded from the PSNR mean and CI and counted"
SSIM_NOTE = (
    "ssim: skimage structural_similarity(data_range=1), 7x7 uniform window; "
    "ssim_w3: win_size=3 as in the study's code"
)
TIMING_NOTE = (
    "ms per image = (host-to-device copy + padding + forward + clamp) per batch / batch size; "
    "CUDA synchronised before and after; first batch run once untimed as warm-up"
)
TIMING_NOTE_CPU = (
    "ms per image = (padding + forward + clamp) per batch / batch size, on the CPU; "
    "the first batch's first image run once untimed as warm-up"
)


def evaluate_checkpoint(
    checkpoint: str | Path,
    out_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    dataset: Any = None,
    setup: str | None = None,
    expected_sigma: float | str | None = None,
    device: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Evaluate `checkpoint` on the test split at its own sigma; returns the summary written.

    `dataset` (anything with ``__getitem__ -> (noisy, clean)``, ``image_ids``, ``patient_ids``) replaces
    ``PairDataset(data_dir, "test", sigma)``. `options` go to :func:`run_evaluation`.
    """
    denoiser = load_denoiser(checkpoint, device)
    sigma = denoiser.meta["sigma"]
    if expected_sigma is not None and sigma_label(sigma) != sigma_label(expected_sigma):
        raise CxrError(f"{checkpoint}: trained at sigma {sigma_label(sigma)}, but evaluated at sigma {expected_sigma}")
    meta = denoiser.meta
    if setup is not None and meta.get("setup") not in (None, setup):
        raise CxrError(f"{checkpoint}: trained with setup {meta['setup']!r}, but evaluated as {setup!r}")
    dataset = dataset if dataset is not None else test_set(data_dir, sigma)
    header = {
        "kind": "model",
        "model": meta["model"],
        "model_kwargs": meta["model_kwargs"],
        "block": (meta["model_kwargs"] or {}).get("block"),  # U-Net conv block (study | double_bn); None for others
        "sigma": float(sigma),
        "noise_mean": meta.get("noise_mean"),
        "setup": setup,
        "checkpoint": str(checkpoint),
        "checkpoint_epoch": meta.get("epoch"),
        "checkpoint_val_loss": meta.get("val_loss"),
        "checkpoint_config_hash": meta.get("config_hash"),
        "n_parameters": meta.get("n_parameters"),
    }
    return run_evaluation(dataset, denoiser, out_dir, header, device=denoiser.device, **options)


def evaluate_noisy(
    sigma: float | str,
    out_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    dataset: Any = None,
    device: str | None = None,
    **options: Any,
) -> dict[str, Any]:
    """The "no denoising" baseline: score the noisy test images themselves against the clean ones."""
    dataset = dataset if dataset is not None else test_set(data_dir, sigma)
    header = {
        "kind": "noisy", "model": "noisy", "model_kwargs": None, "sigma": float(sigma),
        "noise_mean": getattr(dataset, "noise_mean", None), "setup": None, "checkpoint": None,
        "checkpoint_epoch": None, "checkpoint_val_loss": None, "checkpoint_config_hash": None, "n_parameters": None,
    }
    return run_evaluation(dataset, None, out_dir, header, device=resolve_device(device), **options)


def test_set(data_dir: str | Path | None, sigma: float | str) -> Any:
    """The test split at `sigma`, loaded once by a command that scores several checkpoints on it."""
    if data_dir is None:
        raise CxrError("evaluation needs data_dir (results/data) or a dataset")
    from .data import PairDataset

    return PairDataset(data_dir, "test", sigma)


def run_evaluation(
    dataset: Any,
    denoiser: Denoiser | None,
    out_dir: str | Path,
    header: Mapping[str, Any],
    *,
    device: torch.device,
    batch_size: int = 16,
    figure_images: int = 3,
    lpips_enabled: bool = True,
    lpips_backbone: str | None = None,
    num_workers: int = 0,
    config: Mapping[str, Any] | None = None,
    config_hash: str | None = None,
    progress: bool = True,
    metrics_on_device: bool | None = None,
    warmup: bool = True,
    timing_note: str | None = None,
    scorer: LpipsScorer | None = None,
) -> dict[str, Any]:
    """Score every image of `dataset`, write the three output files into `out_dir`, return the summary.

    `metrics_on_device`: None = batched torch metrics on CUDA, scikit-image on the CPU; True / False force one.
    `warmup`: run the first batch once untimed (a net's CUDA context and autotuning; a classical filter has none,
    cxrdenoise.baselines); `timing_note` says how `inference_ms` was measured (default: TIMING_NOTE on CUDA,
    TIMING_NOTE_CPU on the CPU). `scorer`: an LPIPS scorer already loaded (one process scoring several runs)."""
    import pandas as pd

    from .stats import CI_METHOD, CI_NOTE, summarise

    if timing_note is None:
        timing_note = TIMING_NOTE if device.type == "cuda" else TIMING_NOTE_CPU
    if metrics_on_device is None:
        metrics_on_device = device.type == "cuda"
    out_dir = Path(out_dir)
    image_ids = [str(i) for i in dataset.image_ids]
    patient_ids = list(dataset.patient_ids)
    if len(image_ids) != len(dataset) or len(patient_ids) != len(dataset):
        raise CxrError(f"dataset has {len(dataset)} images but {len(image_ids)} ids / {len(patient_ids)} patient ids")
    scorer = scorer if scorer is not None else load_lpips(lpips_enabled, lpips_backbone, device)
    figure_ids = figure_image_ids(image_ids, patient_ids, figure_images)

    rows, examples = _score(dataset, denoiser, scorer, image_ids, figure_ids, device, batch_size, num_workers,
                            desc=f"evaluate {header['model']} sigma {sigma_label(header['sigma'])}", progress=progress,
                            metrics_on_device=metrics_on_device, warmup=warmup)
    frame = pd.DataFrame(rows)
    frame.insert(0, "image_id", image_ids)
    frame.insert(1, "patient_id", patient_ids)
    if scorer.column != "lpips":  # test backbone: never in the `lpips` column
        frame[scorer.column] = frame["lpips"]
        frame["lpips"] = np.nan
    frame = frame[PER_IMAGE_COLUMNS + [c for c in frame.columns if c not in PER_IMAGE_COLUMNS]]

    metric_columns = ["psnr", "ssim", "ssim_w3", "lpips", "inference_ms"] + (
        [scorer.column] if scorer.column != "lpips" else []
    )
    metrics = summarise(frame, metric_columns)
    device_name = device_info(device)["device_name"]
    summary = {
        **header,
        "split": "test",
        "n_images": len(frame),
        "n_patients": int(frame["patient_id"].astype(str).nunique()),  # intervals and tests resample patients
        "metrics": metrics,
        "ci_method": CI_METHOD,
        "ci_note": CI_NOTE,
        "psnr_inf_count": metrics["psnr"]["n_inf"],
        "psnr_inf_handling": PSNR_INF_NOTE,
        "clamped_to_unit_range": True,
        "ssim_note": SSIM_NOTE,
        "metrics_backend": (f"torch, batched, float64 on {device.type} (cxrdenoise.device_metrics)" if metrics_on_device
                            else "scikit-image, per image, float64 on the host (cxrdenoise.metrics)"),
        **scorer.info(),
        "inference": {
            "device": device.type, "device_name": device_name, "batch_size": batch_size,
            "ms_per_image_mean": metrics["inference_ms"]["mean"],
            "timed": denoiser is not None, "definition": timing_note if denoiser is not None else "no model run",
        },
        "figure_image_ids": figure_ids,
        "provenance": provenance(config, config_hash=config_hash, device=device,
                                 eval_device=device.type, eval_device_name=device_name),
    }
    write_per_image(frame, out_dir / "per_image.csv")
    write_examples(examples, figure_ids, out_dir / "examples.npz")
    write_json(out_dir / "summary.json", json_safe(summary))
    return json_safe(summary)


def figure_image_ids(image_ids: Sequence[str], patient_ids: Sequence[str], k: int) -> list[str]:
    """The example figures' images: the first (sorted) image of each of the first `k` patients (sorted ids), so the
    figures show `k` patients rather than one patient's follow-ups; more than one image of a patient only when
    the test split has fewer than `k` patients."""
    by_patient: dict[str, list[str]] = {}
    for image, patient in sorted(zip(map(str, image_ids), map(str, patient_ids)), key=lambda t: (t[1], t[0])):
        by_patient.setdefault(patient, []).append(image)
    chosen: list[str] = []
    for depth in range(max((len(v) for v in by_patient.values()), default=0)):
        chosen += [images[depth] for images in by_patient.values() if depth < len(images)]
    return sorted(chosen[: max(0, int(k))])


def _score(
    dataset: Any, denoiser: Denoiser | None, scorer: LpipsScorer, image_ids: Sequence[str], figure_ids: Sequence[str],
    device: torch.device, batch_size: int, num_workers: int, desc: str, progress: bool, metrics_on_device: bool = True,
    warmup: bool = True,
) -> tuple[list[dict[str, float]], dict[str, dict[str, np.ndarray]]]:
    """Per-image metric rows in dataset order, and the figure images' arrays keyed by id."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                        pin_memory=device.type == "cuda")
    wanted = set(figure_ids)
    rows: list[dict[str, float]] = []
    examples: dict[str, dict[str, np.ndarray]] = {}
    warmed = not warmup
    position = 0
    with torch.inference_mode(), tqdm(total=len(dataset), unit="img", desc=desc, disable=not progress) as bar:
        for noisy, clean in loader:
            if denoiser is None:
                output, ms = noisy.to(device), math.nan
            else:
                if not warmed:  # CUDA: the whole batch (autotuning is per shape); CPU: one image is enough
                    denoiser(noisy if device.type == "cuda" else noisy[:1])
                    warmed = True
                output, ms = _timed(denoiser, noisy, device)
            n = output.shape[0]
            lpips_values = np.asarray(scorer.score(output, clean), dtype=np.float64).tolist()
            clean_np, noisy_np = clean.numpy()[:, 0], noisy.numpy()[:, 0]
            shown = [j for j in range(n) if position + j < len(image_ids) and image_ids[position + j] in wanted]
            if metrics_on_device:
                metric_values = {k: v.tolist() for k, v in batch_image_metrics(output, clean.to(device)).items()}
                # only the figure images come back to the host
                output_np = {j: output[j, 0].float().clamp(0, 1).cpu().numpy() for j in shown}
            else:
                host = output.float().clamp(0, 1).cpu().numpy()[:, 0]
                metric_values = stack_metrics(host, clean_np)
                output_np = {j: host[j] for j in shown}
            for j in range(n):
                row = {k: v[j] for k, v in metric_values.items()}
                row["lpips"] = float(lpips_values[j])
                row["inference_ms"] = ms
                rows.append(row)
                if j in output_np:
                    examples[image_ids[position]] = {"noisy": noisy_np[j].copy(), "denoised": output_np[j].copy(),
                                                     "clean": clean_np[j].copy()}
                position += 1
            bar.update(n)
    if position != len(image_ids):
        raise CxrError(f"dataset yielded {position} images but lists {len(image_ids)} ids")
    return rows, examples


def _timed(denoiser: Callable[[torch.Tensor], torch.Tensor], noisy: torch.Tensor, device: torch.device):
    """Run one batch; returns (output on device, milliseconds per image)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    output = denoiser(noisy)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return output, (time.perf_counter() - start) * 1000.0 / noisy.shape[0]


def write_per_image(frame: "pd.DataFrame", path: Path) -> None:
    """CSV with full float precision; ``inf`` for infinite PSNR, ``NaN`` for missing values."""
    with atomic_path(path, suffix=".csv") as tmp:
        frame.to_csv(tmp, index=False, na_rep="NaN", float_format="%.10g")


def write_examples(examples: Mapping[str, Mapping[str, np.ndarray]], ids: Sequence[str], path: Path) -> None:
    """The figure images as (k, H, W) float32 arrays in `ids` order (empty arrays when k is 0)."""
    missing = [i for i in ids if i not in examples]
    if missing:
        raise CxrError(f"figure images {missing} were not produced by the evaluation")
    arrays = {"image_ids": np.asarray(list(ids), dtype=str)}
    for key in ("noisy", "denoised", "clean"):
        stack = [examples[i][key] for i in ids]
        arrays[key] = np.stack(stack).astype(np.float32) if stack else np.zeros((0, 0, 0), np.float32)
    with atomic_path(path, suffix=".npz") as tmp:
        # what np.savez_compressed writes (read back by np.load alike), at zlib level 1: a few times faster than
        # its default level on float images, whose noisy bits barely compress at any level
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
            for key, value in arrays.items():
                with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, np.asanyarray(value), allow_pickle=False)


def json_safe(obj: Any) -> Any:
    """Replace NaN and +-inf floats by None (strict JSON has no such values), recursively."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, (np.floating, np.integer)):
        return json_safe(obj.item())
    return obj
