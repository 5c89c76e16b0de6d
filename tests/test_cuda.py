"""The CUDA checks (benchmarks/cuda_checks.py) under pytest: gpu1 in float32, float16 + GradScaler and bfloat16,
a world-size-1 nccl DDP run of ddp2_amp and ddp2_fast, device metrics equal to scikit-image, and the CUDA peak
memory and timing records. Marker `cuda`; skipped where no CUDA device is visible (run them on a lent GPU with
`python -m pytest -m cuda tests/test_cuda.py`, or without pytest through benchmarks/gpu_check.py)."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import cuda_checks  # noqa: E402

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device visible")]
CUDA = torch.device("cuda")


def test_gpu1_float32_float16_gradscaler_and_bfloat16(tmp_path):
    facts = cuda_checks.check_gpu1_precisions(CUDA, tmp_path)
    assert set(facts) == {"gpu1_fp32", "gpu1_fast_fp16", "gpu1_fast_bf16"}


def test_ddp_world_size_1_over_nccl(tmp_path):
    facts = cuda_checks.check_ddp_world_size_1(CUDA, tmp_path)
    assert {f["backend"] for f in facts.values()} == {"nccl"}


def test_device_metrics_on_cuda_equal_scikit_image():
    assert cuda_checks.check_device_metrics(CUDA)["max_abs_difference"] <= 1e-5


def test_dncnn_and_fastddpm_train_and_score_on_cuda(tmp_path):
    facts = cuda_checks.check_models(CUDA, tmp_path)
    assert set(facts) == {f"{m}_{s}" for m in ("dncnn", "fastddpm") for s in ("gpu1", "gpu1_fast")}
    assert all(f["metrics_backend"].startswith("torch, batched") for f in facts.values())
