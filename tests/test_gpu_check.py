"""benchmarks/gpu_check.py --dry-run: the GPU check's code paths end to end on the CPU at tiny sizes, also on a
machine without tqdm, PyYAML and tensorboard (as the lent GPU machines may be)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # about 25 s on an idle core, more on a shared one

STEPS = ["cuda_checks.gpu1_precisions", "cuda_checks.ddp_world_size_1", "cuda_checks.device_metrics",
         "cuda_checks.models", "phantom_data", "two_epochs", "classical", "federated.one_device", "train_step"]


def run_check(out: Path, *args: str, block: str = "") -> dict:
    code = (f"import sys; [sys.modules.__setitem__(m, None) for m in {block.split(',') if block else []!r}]; "
            f"sys.argv = ['gpu_check.py', '--dry-run', '--out', {str(out)!r}, *{list(args)!r}]; "
            f"sys.path.insert(0, {str(REPO / 'benchmarks')!r}); import gpu_check; sys.exit(gpu_check.main())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={"PYTHONPATH": str(REPO / "src"), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads((out / "summary.json").read_text())


def test_dry_run_runs_every_step_and_writes_one_folder(tmp_path):
    summary = run_check(tmp_path)
    assert summary["dry_run"] is True and summary["environment"]["device"] == "cpu"
    assert list(summary["steps"]) == STEPS and all(s["status"] == "ok" for s in summary["steps"].values())
    bench = json.loads(next(tmp_path.glob("bench_train_step_cpu_*.json")).read_text())
    assert bench["models"]["unet"]["gflop_per_image_256_base64"]["forward"] == pytest.approx(96.18, abs=0.01)
    assert set(bench["loader"]["loaders"]) == {"study_float32_in_memory", "dataloader_float16_shards",
                                                "device_memory"}
    two = summary["steps"]["two_epochs"]["facts"]
    assert set(two["setups"]) == {"gpu1", "gpu1_fast"} and all(len(s["epochs"]) == 2 for s in two["setups"].values())
    assert two["setups"]["gpu1_fast"]["fast_paths"]["used"]["device_data"] is True
    assert (tmp_path / "two_epochs" / "gpu1_fast" / "record.json").exists()
    # each precision run is named after what ran: on the CPU float16 autocast falls back to bfloat16
    precisions = summary["steps"]["cuda_checks.gpu1_precisions"]["facts"]
    assert set(precisions) == {"gpu1_fp32", "gpu1_fast_bf16_fallback_from_fp16", "gpu1_fast_bf16"}
    assert all(f["precision"] == ("float32" if f["ran"] == "float32" else f"autocast {f['ran']}")
               for f in precisions.values())
    models = summary["steps"]["cuda_checks.models"]["facts"]
    assert set(models) == {f"{m}_{s}" for m in ("dncnn", "fastddpm") for s in ("gpu1", "gpu1_fast")}
    assert all(f["metrics_backend"].startswith("scikit-image") for f in models.values())
    classical = summary["steps"]["classical"]["facts"]
    assert {"gaussian", "tv", "nlm"} <= {m for m, f in classical.items() if "psnr_mean" in f}
    federated = summary["steps"]["federated.one_device"]["facts"]
    assert len(federated["sites_examples"]) == 2 and federated["alone_val_loss"] > 0


def test_dry_run_without_tqdm_yaml_and_tensorboard(tmp_path):
    summary = run_check(tmp_path, "--skip", "cuda_checks,train_step", block="tqdm,yaml,torch.utils.tensorboard")
    assert set(summary["stand_ins"]) == {"tqdm", "yaml"}
    assert summary["steps"]["two_epochs"]["status"] == "ok"
    record = json.loads((tmp_path / "two_epochs" / "gpu1" / "record.json").read_text())
    assert record["tensorboard"].startswith("not written: tensorboard is not importable")


def test_precision_names_say_what_ran():
    """The name of a precision run comes from the precision that ran; a fallback says what was asked."""
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    from cuda_checks import precision_name

    assert precision_name("gpu1_fast", "float16", "float16") == "gpu1_fast_fp16"
    assert precision_name("gpu1_fast", "float16", "bfloat16") == "gpu1_fast_bf16_fallback_from_fp16"
    assert precision_name("gpu1_fast", "bfloat16", "float16") == "gpu1_fast_fp16_fallback_from_bf16"
    assert precision_name("gpu1", "float32", "float32") == "gpu1_fp32"
