"""The ready GPU check: one command that, on one lent GPU, runs within 8 minutes and writes everything it measured
to one folder for benchmarks/results/.

    PYTHONPATH=src python3 benchmarks/gpu_check.py --out benchmarks/results/gpu_check_<name>
    PYTHONPATH=src python3 benchmarks/gpu_check.py --dry-run --out /tmp/gpu_check   # same code, CPU, tiny sizes

Steps (each with its status, seconds and reason when skipped, in summary.json):
  1. environment: python, torch, CUDA, device, and which optional packages are importable;
  2. the CUDA checks (benchmarks/cuda_checks.py, the functions tests/test_cuda.py runs under pytest): gpu1 in
     float32, float16 + GradScaler and bfloat16, each result named after the precision that ran (a fallback, as
     float16 -> bfloat16 on the CPU, is named as one: gpu1_fast_bf16_fallback_from_fp16); a world-size-1 nccl DDP
     run of ddp2_amp and ddp2_fast; device metrics equal to scikit-image within 1e-5; DnCNN and Fast-DDPM trained
     (gpu1, gpu1_fast) and scored by the evaluation code on the device; CUDA peak-memory and timing records. They
     run as plain functions, so the check needs no pytest (the GPU machines may not have it);
  3. phantom data at 256x256 built with the pipeline's own stages (shards, manifests);
  4. a 2-epoch gpu1 vs gpu1_fast run of the study's U-Net (base 64, study block) on those phantoms, through
     the pipeline's own worker (records as a training job writes them);
  5. on those phantoms: the classical baselines through the classical stage (CPU code, on the GPU machine's
     packages), and federated learning's site and FedAvg code on the one device, in one process (no Flower);
  6. the training-step benchmark (benchmarks/bench_train_step.py) for U-Net and U-Net++ at 256x256, base 64,
     batch 16: FLOP counts, eager float32 vs each fast path vs all (torch.compile only in "all"), the Trainer vs a
     bare loop (U-Net), checkpoints, the loaders on the phantom shards vs the study's float32 tensors.
The GPU machines have no network, Snakemake, lpips, maybe no pytest, tensorboard, tqdm or PyYAML: missing tqdm
and PyYAML are replaced by stand-ins that do nothing (progress bars) or fail when called (YAML; nothing here
calls it), and that is recorded; TensorBoard is then recorded as not written. A step that cannot run here is
skipped with its reason printed; one that fails is recorded with its error and the check goes on. `--budget-s`
skips the steps left once that many seconds have passed. Exit status 1 if any step failed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import importlib.machinery
import json
import os
import platform
import sys
import tempfile
import time
import traceback
import types
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(REPO / "benchmarks"))

OPTIONAL = ("pytest", "tensorboard", "tqdm", "yaml", "snakemake", "lpips", "scipy", "skimage", "pandas", "PIL")


def importable(name: str) -> bool:
    try:
        importlib.import_module(name)
        return True
    except Exception:
        return False


def stand_ins() -> dict[str, str]:
    """Stand-ins for tqdm and PyYAML when absent, so the package imports; returns what was replaced and how."""
    done = {}
    if not importable("tqdm"):
        mod = types.ModuleType("tqdm")

        class tqdm:  # noqa: N801 - the name the package imports
            def __init__(self, iterable=None, *args, **kwargs):
                self.iterable = iterable

            def __iter__(self):
                return iter(self.iterable)

            def update(self, *a, **k):
                pass

            def set_postfix(self, *a, **k):
                pass

            def close(self):
                pass

            def __enter__(self):  # `with tqdm(...) as bar:` (the evaluation's progress bar)
                return self

            def __exit__(self, *exc):
                return False

        mod.tqdm = tqdm
        mod.__spec__ = importlib.machinery.ModuleSpec("tqdm", None)  # torch._dynamo calls find_spec("tqdm")
        sys.modules["tqdm"] = mod
        done["tqdm"] = "absent: progress bars replaced by a no-op stand-in"
    if not importable("yaml"):
        mod = types.ModuleType("yaml")

        class YAMLError(Exception):
            pass

        def _absent(*args, **kwargs):
            raise RuntimeError("PyYAML is not installed on this machine (gpu_check stand-in)")

        mod.YAMLError = YAMLError
        mod.safe_load = mod.safe_dump = mod.dump = mod.load = _absent
        mod.__spec__ = importlib.machinery.ModuleSpec("yaml", None)
        sys.modules["yaml"] = mod
        done["yaml"] = "absent: stand-in whose functions raise (the check reads no YAML)"
    return done


def environment(device) -> dict:
    import torch

    from cxrdenoise.provenance import device_info

    info = device_info(device)
    env = {
        "python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.cuda.is_available() else None,
        "cuda_available": torch.cuda.is_available(), "device": device.type, "device_name": info["device_name"],
        "device_count": info["device_count"], "host": platform.node(), "cpus": os.cpu_count(),
        "packages": {name: importable(name) for name in OPTIONAL},
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        env.update(gpu_memory_gib=props.total_memory / 2**30, capability=f"{props.major}.{props.minor}",
                   bf16_supported=torch.cuda.is_bf16_supported())
    return env


def phantoms(root: Path, dry: bool) -> tuple[Path, int, int]:
    """The phantom data folder both the loader benchmark and the 2-epoch run read: (folder, size, images)."""
    from phantom_data import build_phantom_data

    size, n_images = (32, 48) if dry else (256, 360)
    return build_phantom_data(root, n_images=n_images, size=size), size, n_images


def two_epochs(device, out: Path, dry: bool, data: Path, size: int, n_images: int) -> dict:
    """gpu1 vs gpu1_fast, 2 epochs of the study's U-Net on phantoms, through the pipeline's worker."""
    from cxrdenoise.train import worker
    from cxrdenoise.train.settings import TrainSettings

    base = 8 if dry else 64
    result = {"image_size": [size, size], "images_sampled": n_images, "base_channels": base, "setups": {}}
    for setup in ("gpu1", "gpu1_fast"):
        s = TrainSettings(model="unet", setup=setup, sigma="0.1", model_kwargs={"base_channels": base,
                          "block": "study"}, epochs=2, lr=1e-3, batch_per_gpu=2 if dry else 16,
                          workers=0 if dry else 4, seed=2025, device=device.type, keep_last=False,
                          fast={})  # train.fast defaults: compile on CUDA, off on the CPU
        record = worker.run({"settings": s.to_dict(), "data_dir": str(data), "out_dir": str(out / setup)})
        result["setups"][setup] = {
            "epochs": [{k: e[k] for k in ("epoch", "train_s", "val_s", "images_per_s", "train_loss", "val_loss",
                                          "peak_mem_mb", "checkpoint_s")} for e in record["epochs"]],
            "precision": record["precision"], "fast_paths": record["fast_paths"],
            "train_images": record["train_images"], "val_images": record["val_images"],
        }
    e2 = {k: v["epochs"][-1] for k, v in result["setups"].items()}
    result["epoch2_train_s_ratio_gpu1_over_fast"] = e2["gpu1"]["train_s"] / e2["gpu1_fast"]["train_s"]
    result["epoch2_train_plus_val_s"] = {k: v["train_s"] + v["val_s"] for k, v in e2.items()}
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for everything (copy it to benchmarks/results/)")
    p.add_argument("--dry-run", action="store_true", help="the same code paths on the CPU at tiny sizes")
    p.add_argument("--budget-s", type=float, default=450.0, help="skip the steps left after this many seconds")
    p.add_argument("--skip", default="",
                   help="comma-separated steps to skip: cuda_checks,phantom_data,two_epochs,classical,federated,"
                        "train_step")
    a = p.parse_args(argv)
    t_start = time.perf_counter()
    a.out.mkdir(parents=True, exist_ok=True)
    replaced = stand_ins()
    import torch

    if a.dry_run:
        device = torch.device("cpu")
        torch.set_num_threads(min(2, os.cpu_count() or 1))
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA device visible; run with --dry-run for the CPU rehearsal", file=sys.stderr)
        return 2
    else:
        device = torch.device("cuda")
    summary = {"started_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               "dry_run": a.dry_run, "stand_ins": replaced, "steps": {}}
    summary["environment"] = environment(device)
    env = summary["environment"]
    print(f"gpu_check{' (dry run, CPU)' if a.dry_run else ''}: {env['device_name']}, torch {env['torch']}, "
          f"python {env['python']}; packages: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in
                                                            env["packages"].items()))
    for name, why in replaced.items():
        print(f"  stand-in for {name}: {why}")
    skip = set(filter(None, a.skip.split(",")))

    import cuda_checks

    tmp = tempfile.TemporaryDirectory()
    data: dict = {}

    def build_data():
        folder, size, n = phantoms(Path(tmp.name), a.dry_run)
        data.update(folder=folder, size=size, n=n)
        return {"folder": "temporary", "image_size": [size, size], "images": n}

    def bench_args() -> list[str]:
        out = ["--device", device.type, "--out", str(a.out)]
        if "folder" in data:
            out += ["--loader-data", str(data["folder"])]
        else:
            out += ["--sections", "flops,step,loop"]
        if a.dry_run:
            return out + ["--size", "32", "--base", "8", "--batch", "2", "--steps", "1", "--warmup", "1", "--rounds",
                          "1", "--loop-images", "8", "--no-compile", "--loop-models", "unet", "--ckpt-base", "8"]
        return out + ["--steps", "10", "--warmup", "5", "--rounds", "3", "--compile", "--no-compile-solo",
                      "--no-loop-compile", "--loop-models", "unet", "--loop-images", "256"]

    def epochs_run():
        if "folder" not in data:
            raise RuntimeError("no phantom data (its step failed or was skipped)")
        return two_epochs(device, a.out / "two_epochs", a.dry_run, data["folder"], data["size"], data["n"])

    def needs_data() -> Path:
        if "folder" not in data:
            raise RuntimeError("no phantom data (its step failed or was skipped)")
        return data["folder"]

    def train_step():
        import bench_train_step

        return bench_train_step.main(bench_args())

    steps = [
        ("cuda_checks.gpu1_precisions", lambda: cuda_checks.check_gpu1_precisions(
            device, a.out / "cuda_checks", size=32 if a.dry_run else 64)),
        ("cuda_checks.ddp_world_size_1", lambda: cuda_checks.check_ddp_world_size_1(
            device, a.out / "cuda_checks", size=32 if a.dry_run else 64)),
        ("cuda_checks.device_metrics", lambda: cuda_checks.check_device_metrics(
            device, n=3 if a.dry_run else 14, size=64 if a.dry_run else 256)),
        ("cuda_checks.models", lambda: cuda_checks.check_models(
            device, a.out / "cuda_checks" / "models", size=32 if a.dry_run else 64)),
        ("phantom_data", build_data),
        ("two_epochs", epochs_run),
        ("classical", lambda: cuda_checks.check_classical(needs_data(), a.out / "classical",
                                                         max_images=2 if a.dry_run else 8)),
        ("federated.one_device", lambda: cuda_checks.check_federated_one_device(
            device, needs_data(), a.out / "federated")),
        ("train_step", train_step),
    ]
    failed = False
    for name, fn in steps:
        elapsed = time.perf_counter() - t_start
        if name.split(".")[0] in skip:
            summary["steps"][name] = {"status": "skipped", "reason": "--skip"}
        elif elapsed > a.budget_s:
            summary["steps"][name] = {"status": "skipped",
                                      "reason": f"budget: {elapsed:.0f} s used of --budget-s {a.budget_s:.0f}"}
        else:
            t0 = time.perf_counter()
            try:
                facts = fn()
                summary["steps"][name] = {"status": "ok", "seconds": time.perf_counter() - t0, "facts": facts}
            except Exception as err:  # record and go on: one broken step must not hide the others' results
                failed = True
                summary["steps"][name] = {"status": "failed", "seconds": time.perf_counter() - t0,
                                          "error": f"{type(err).__name__}: {err}",
                                          "traceback": traceback.format_exc()}
        st = summary["steps"][name]
        print(f"[{name}] {st['status']}" + (f" in {st['seconds']:.1f} s" if "seconds" in st else "")
              + (f": {st.get('reason') or st.get('error')}" if st["status"] != "ok" else ""), flush=True)
        write_summary(a.out, summary, t_start)
    two = summary["steps"].get("two_epochs", {}).get("facts")
    if two:
        print(f"two epochs of U-Net on phantoms at {two['image_size'][0]}x{two['image_size'][1]}: epoch 2 train "
              + ", ".join(f"{k} {v['epochs'][-1]['train_s']:.2f} s ({v['epochs'][-1]['images_per_s']:.0f} img/s)"
                          for k, v in two["setups"].items())
              + f"; gpu1 / gpu1_fast = {two['epoch2_train_s_ratio_gpu1_over_fast']:.2f}")
    write_summary(a.out, summary, t_start)
    tmp.cleanup()
    print(f"gpu_check: {time.perf_counter() - t_start:.0f} s; wrote {a.out / 'summary.json'}")
    return 1 if failed else 0


def write_summary(out: Path, summary: dict, t_start: float) -> None:
    summary["elapsed_s"] = time.perf_counter() - t_start
    tmp = out / "summary.json.tmp"
    tmp.write_text(json.dumps(summary, indent=2, default=str) + "\n")
    os.replace(tmp, out / "summary.json")


if __name__ == "__main__":
    sys.exit(main())
