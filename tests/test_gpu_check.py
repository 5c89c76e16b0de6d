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
         "phantom_data", "two_epochs", "train_step"]


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


def test_dry_run_without_tqdm_yaml_and_tensorboard(tmp_path):
    summary = run_check(tmp_path, "--skip", "cuda_checks,train_step", block="tqdm,yaml,torch.utils.tensorboard")
    assert set(summary["stand_ins"]) == {"tqdm", "yaml"}
    assert summary["steps"]["two_epochs"]["status"] == "ok"
    record = json.loads((tmp_path / "two_epochs" / "gpu1" / "record.json").read_text())
    assert record["tensorboard"].startswith("not written: tensorboard is not importable")
