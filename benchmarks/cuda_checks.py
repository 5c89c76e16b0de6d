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


def check_gpu1_precisions(device: torch.device, out: Path, size: int = 64) -> dict:
    """gpu1 (float32), gpu1_fast with float16 + GradScaler, and gpu1_fast with bfloat16 (no scaler)."""
    cuda = device.type == "cuda"
    facts = {}
    for name, setup, fast in (("gpu1_fp32", "gpu1", {}),
                              ("gpu1_fast_fp16", "gpu1_fast", {"amp_dtype": "float16", "compile": False}),
                              ("gpu1_fast_bf16", "gpu1_fast", {"amp_dtype": "bfloat16", "compile": False})):
        record = run_training(_settings(setup, device, fast=fast), Pairs(16, size), Pairs(8, size, seed=1),
                              out / name, single_process(device.type))
        facts[name] = _check_record(record, device)
        used = record["fast_paths"]["used"]
        if name == "gpu1_fp32":
            assert record["precision"] == "float32" and not record["grad_scaler"]
        elif name == "gpu1_fast_fp16":
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


CHECKS = {
    "gpu1_precisions": check_gpu1_precisions,
    "ddp_world_size_1": check_ddp_world_size_1,
}
