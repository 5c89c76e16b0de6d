"""The CUDA checks as plain functions (no pytest: the GPU machines may not have it), each taking the device to
check and a folder for its outputs, asserting what must hold and returning facts for the GPU check's summary.

tests/test_cuda.py runs the same functions under pytest (marker `cuda`, skipped without a CUDA device);
benchmarks/gpu_check.py runs them directly, on CUDA, or on the CPU with --dry-run (same code, CPU fallbacks).
"""

from __future__ import annotations

import math
import os
import socket
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

from cxrdenoise.train.distributed import init_distributed, single_process, teardown  # noqa: E402
from cxrdenoise.train.engine import run_training  # noqa: E402
from cxrdenoise.train.settings import TrainSettings  # noqa: E402

NIH_SAMPLE = REPO.parent / "shared" / "data" / "nih-sample"


class Pairs(torch.utils.data.Dataset):
    """Deterministic smooth (noisy, clean) float32 pairs of (1, size, size)."""

    def __init__(self, n: int, size: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        low = torch.rand(n, 1, max(size // 8, 2), max(size // 8, 2), generator=g)
        self.clean = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
        self.noisy = (self.clean + 0.1 + 0.1 * torch.randn(self.clean.shape, generator=g)).clamp(0, 1)
        self.noise_mean = 0.1

    def __len__(self) -> int:
        return len(self.clean)

    def __getitem__(self, i: int):
        return self.noisy[i], self.clean[i]


def _settings(setup: str, device: torch.device, **over) -> TrainSettings:
    base = dict(model="unet", setup=setup, sigma="0.1", model_kwargs={"base_channels": 8}, epochs=2, lr=1e-3,
                batch_per_gpu=4, workers=0, seed=7, device=device.type, log_every=1, keep_last=False, threads=None)
    base.update(over)
    return TrainSettings(**base)


def _check_record(record: dict, device: torch.device) -> dict:
    """Peak memory and timing records mean what they say on this device."""
    cuda = device.type == "cuda"
    assert record["status"] == "finished" and record["device"] == device.type
    assert record["peak_mem_kind"] == ("cuda_max_memory_allocated" if cuda else "process_peak_rss")
    for row in record["epochs"]:
        assert row["train_s"] > 0 and row["val_s"] > 0 and row["images_per_s"] > 0 and row["peak_mem_mb"] > 0
        assert math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"])
    assert record["sampler_check"]["covers_train_split"]
    return {"precision": record["precision"], "peak_mem_mb": record["totals"]["peak_mem_mb"],
            "images_per_s": record["totals"]["images_per_s"], "device_name": record["device_name"]}


SHORT = {"float32": "fp32", "float16": "fp16", "bfloat16": "bf16"}


def precision_name(setup: str, requested: str, ran: str) -> str:
    """A run's name from the precision it ran in, and the one asked for when they differ: the plan falls back
    (float16 autocast needs CUDA, so on the CPU it runs bfloat16; a GPU without bfloat16 runs float16), and a
    name taken from the request alone would then say what did not run."""
    name = f"{setup}_{SHORT[ran]}"
    return name if ran == requested else f"{name}_fallback_from_{SHORT[requested]}"


def check_gpu1_precisions(device: torch.device, out: Path, size: int = 64) -> dict:
    """gpu1 (float32), gpu1_fast asking for float16 + GradScaler, and gpu1_fast asking for bfloat16 (no scaler);
    each result is named after the precision that ran (:func:`precision_name`), with the one requested."""
    cuda = device.type == "cuda"
    facts = {}
    for requested, setup, fast in (("float32", "gpu1", {}),
                                   ("float16", "gpu1_fast", {"amp_dtype": "float16", "compile": False}),
                                   ("bfloat16", "gpu1_fast", {"amp_dtype": "bfloat16", "compile": False})):
        tag = f"{setup}_asked_{SHORT[requested]}"
        record = run_training(_settings(setup, device, fast=fast), Pairs(16, size), Pairs(8, size, seed=1),
                              out / tag, single_process(device.type))
        used = record["fast_paths"]["used"]
        ran = used["amp_dtype"] if setup == "gpu1_fast" else "float32"
        name = precision_name(setup, requested, ran)
        assert name not in facts, f"two runs named {name}"
        facts[name] = {**_check_record(record, device), "requested": requested, "ran": ran,
                       "fallback_reason": record["fast_paths"].get("reasons", {}).get("amp_dtype")}
        assert (ran == "float32") == (record["precision"] == "float32")
        assert ran == "float32" or record["precision"].startswith(f"autocast {ran}"), (name, record["precision"])
        if requested == "float32":
            assert record["precision"] == "float32" and not record["grad_scaler"]
        elif requested == "float16":
            if cuda:  # float16 autocast needs a GradScaler; on the CPU the plan falls back to bfloat16, saying so
                assert used["amp_dtype"] == "float16" and record["grad_scaler"] is True
                assert record["precision"] == "autocast float16 + GradScaler" and "amp_scale" in record["epochs"][-1]
            else:
                assert used["amp_dtype"] == "bfloat16" and "amp_dtype" in record["fast_paths"]["reasons"]
        else:
            bf16 = torch.cuda.is_bf16_supported() if cuda else True
            assert used["amp_dtype"] == ("bfloat16" if bf16 else "float16")
            assert record["grad_scaler"] is (not bf16)
        if setup == "gpu1_fast":
            assert used["device_data"] and used["channels_last"] and used["sync_free"]
            assert used["cudnn_benchmark"] is cuda
    return facts


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_ddp_world_size_1(device: torch.device, out: Path, size: int = 64) -> dict:
    """One DDP rank through torch.distributed (nccl on CUDA, gloo on the CPU): ddp2_amp and ddp2_fast."""
    facts = {}
    keys = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
    saved = {k: os.environ.get(k) for k in keys}
    for setup in ("ddp2_amp", "ddp2_fast"):
        os.environ.update(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1",
                          MASTER_PORT=str(_free_port()))
        ctx = init_distributed(device.type, 1)
        try:
            record = run_training(_settings(setup, device, fast={"compile": False}), Pairs(16, size),
                                  Pairs(9, size, seed=1), out / setup, ctx)
        finally:
            teardown(ctx)
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        assert record["backend"] == ("nccl" if device.type == "cuda" else "gloo") and record["world_size"] == 1
        assert record["val_indices_per_rank"] == [9]
        facts[setup] = {**_check_record(record, device), "backend": record["backend"]}
    return facts


def check_device_metrics(device: torch.device, n: int = 14, size: int = 256) -> dict:
    """Batched PSNR/SSIM on `device` equal scikit-image (the CPU reference) within 1e-5 on real images (or
    phantoms when ../shared/data/nih-sample is absent), at every sigma of the project."""
    from cxrdenoise.device_metrics import batch_image_metrics
    from cxrdenoise.imaging import load_grey, resize_grey
    from cxrdenoise.metrics import image_metrics
    from cxrdenoise.shards import image_noise

    paths = sorted(NIH_SAMPLE.glob("*.png"))[:n] if NIH_SAMPLE.is_dir() else []
    if paths:
        clean = np.stack([resize_grey(load_grey(p)[0], size, p) for p in paths]).astype(np.float32)
        ids, source = [p.name for p in paths], f"{len(paths)} real NIH radiographs"
    else:
        from cxrdenoise.phantoms import phantom

        clean = np.stack([phantom(p, 0, size, 1) for p in range(1, n + 1)]).astype(np.float32)
        ids, source = [f"phantom{p}" for p in range(1, n + 1)], f"{n} phantoms (nih-sample absent)"
    worst = 0.0
    for sigma in (0.1, 0.2, 0.3):
        noise = np.stack([image_noise(2025, i, sigma, 0.1, c.shape) for i, c in zip(ids, clean)])
        noisy = np.clip(clean + noise, 0, 1).astype(np.float32)
        got = batch_image_metrics(torch.from_numpy(noisy)[:, None].to(device),
                                  torch.from_numpy(clean)[:, None].to(device))
        got = {k: v.detach().cpu().double().numpy() for k, v in got.items()}
        for j in range(len(clean)):
            ref = image_metrics(noisy[j], clean[j])
            for key in ("psnr", "ssim", "ssim_w3"):
                diff = abs(float(got[key][j]) - float(ref[key]))
                worst = max(worst, diff)
                assert diff <= 1e-5, f"{key} of image {ids[j]} at sigma {sigma}: {got[key][j]} vs {ref[key]}"
    return {"images": source, "size": size, "max_abs_difference": worst}


def _evaluate_on(device: torch.device, checkpoint: Path, data: Pairs, out: Path) -> dict:
    """Score a best.pt with the evaluation stage's own code on `device` (device metrics on CUDA, scikit-image's
    numbers on the CPU): the PSNR it reaches, and the metrics backend used."""
    from cxrdenoise.denoise import load_denoiser
    from cxrdenoise.evaluate import run_evaluation

    data.image_ids = [f"img{k}" for k in range(len(data))]
    data.patient_ids = [f"p{k}" for k in range(len(data))]
    denoiser = load_denoiser(checkpoint, device)
    summary = run_evaluation(data, denoiser, out, {"model": denoiser.meta["model"], "sigma": 0.1}, device=device,
                             batch_size=4, figure_images=1, lpips_enabled=False, progress=False)
    psnr = summary["metrics"]["psnr"]["mean"]
    assert psnr is not None and math.isfinite(psnr)
    assert summary["inference"]["device"] == device.type
    return {"psnr_mean": psnr, "metrics_backend": summary["metrics_backend"],
            "ms_per_image": summary["inference"]["ms_per_image_mean"]}


def check_models(device: torch.device, out: Path, size: int = 64) -> dict:
    """DnCNN and Fast-DDPM (the demo's small sizes; x0-prediction) train under gpu1 and gpu1_fast on `device`,
    and their best.pt is scored by the evaluation code there (Fast-DDPM's sampling steps included)."""
    facts = {}
    for model, kwargs in (("dncnn", {"depth": 5, "channels": 16}),
                          ("fastddpm", {"base_channels": 8, "prediction": "x0"})):
        for setup in ("gpu1", "gpu1_fast"):
            name = f"{model}_{setup}"
            record = run_training(_settings(setup, device, model=model, model_kwargs=kwargs, epochs=1,
                                            fast={"compile": False} if setup == "gpu1_fast" else {}),
                                  Pairs(16, size), Pairs(8, size, seed=1), out / name, single_process(device.type))
            facts[name] = _check_record(record, device)
            facts[name].update(_evaluate_on(device, out / name / "best.pt", Pairs(8, size, seed=2), out / name / "eval"))
    return facts


def check_classical(data_dir: Path, out: Path, max_images: int = 4) -> dict:
    """The classical baselines that need no optional package (Gaussian, TV, NLM, wavelet when PyWavelets is
    there) on the phantom test images through the classical stage's own code: on the CPU wherever the check
    runs (they have no GPU path), scored like the nets."""
    from cxrdenoise.baselines import evaluate_classical_shard
    from cxrdenoise.classical import missing_package

    facts = {}
    for method in ("gaussian", "tv", "nlm", "wavelet", "bm3d"):
        summary = evaluate_classical_shard(method, "0.1", 0, out / method, data_dir=data_dir, max_images=max_images,
                                           seed=7, lpips_enabled=False, progress=False)
        if missing_package(method):
            facts[method] = {"status": "skipped", "reason": missing_package(method)}
            continue
        psnr = summary["metrics"]["psnr"]["mean"]
        assert summary["n_images"] > 0 and psnr is not None and math.isfinite(psnr), (method, summary.get("status"))
        facts[method] = {"psnr_mean": psnr, "n_images": summary["n_images"],
                         "ms_per_image": summary["inference"]["ms_per_image_mean"]}
    return facts


def check_federated_one_device(device: torch.device, data_dir: Path, out: Path) -> dict:
    """Federated learning's site and server code on one device, in one process (no Flower, which the GPU machines
    may lack): two sites train one local epoch each from the same global weights, FedAvg merges them, and one
    site trains alone for the same budget; every loss finite, the merged weights a weighted mean."""
    from cxrdenoise.federated.alone import train_alone
    from cxrdenoise.federated.fedavg import fedavg
    from cxrdenoise.federated.runner import prepare_sites
    from cxrdenoise.federated.site import local_train
    from cxrdenoise.federated.weights import build, to_arrays

    spec = {"run_dir": str(out), "data_dir": str(data_dir), "sigma": 0.1, "model": "dncnn",
            "model_kwargs": {"depth": 3, "channels": 8}, "sites": [1, 1], "partition": {"mode": "random",
            "column": None}, "rounds": 1, "local_epochs": 1, "lr": 3e-3, "batch_size": 4, "strategy": "fedavg",
            "mu": 0.0, "dp": {"enabled": False}, "seed": 5, "device": device.type, "config_hash": "gpu_check",
            "insecure": False}
    out.mkdir(parents=True, exist_ok=True)
    prepare_sites(spec)
    start = to_arrays(build(spec, seeded=True))
    results = [local_train(spec, site, start, 1) for site in (0, 1)]
    merged = fedavg([(arrays, metrics["num-examples"]) for arrays, metrics in results])
    n = [metrics["num-examples"] for _, metrics in results]
    expected = (results[0][0][0] * n[0] + results[1][0][0] * n[1]) / sum(n)
    assert np.allclose(merged[0], expected, rtol=1e-5, atol=1e-6)
    assert all(math.isfinite(m["train_loss"]) and m["steps"] > 0 for _, m in results)
    alone = train_alone(spec, 0, out / "alone")
    assert alone["device"] == device.type and math.isfinite(alone["val_loss"])
    return {"sites_examples": n, "site_train_loss": [m["train_loss"] for _, m in results],
            "alone_val_loss": alone["val_loss"], "alone_wall_s": alone["wall_s"]}


CHECKS = {
    "gpu1_precisions": check_gpu1_precisions,
    "ddp_world_size_1": check_ddp_world_size_1,
}
