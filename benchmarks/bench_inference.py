"""Seconds per 256x256 image for U-Net, U-Net++ and Fast-DDPM (its 10 sampling steps included), at the sizes in
config.yaml (base 64), batch 1 and 8, measured side by side in one run, with the ratio to U-Net.

On the CPU one thread by default; with --device cuda on the visible GPU (synchronised around each batch). The
device name is printed and recorded, so a CPU timing is never read as a GPU one. Random weights and inputs:
the time of a forward pass does not depend on their values.

    python benchmarks/bench_inference.py [--device cpu] [--threads 1] [--repeats 1] [--batches 1 8]
    python benchmarks/bench_inference.py --config config/demo.yaml --size 64   # the demo's widths and size

--pipeline: what the evaluation stage and the ``denoise`` command cost next to the forward pass they run, on the
same images (smooth random pairs) and the same U-Net (config widths, random weights), interleaved round by round:
evaluation time / forward time (``run_evaluation``: metrics, LPIPS as available here, per_image.csv, summary.json,
examples.npz) and denoise time / forward time (``denoise_folder`` on a folder of PNGs, in process: reading,
denoising, writing PNGs), printed as ratios with the device and torch version, plus the ``cxrdenoise denoise``
process's start-up (its whole call minus the in-process time). Forward = ``Denoiser`` over the images in batches
of --eval-batch (padding and clamp included), as both run it. Writes benchmarks/results/pipeline_<device>_<UTC>.json.

    python benchmarks/bench_inference.py --pipeline --config config/demo.yaml --size 256 --images 32 --rounds 5
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import yaml

from cxrdenoise.config import validate_config
from cxrdenoise.models import build_model, count_parameters
from cxrdenoise.provenance import device_info, git_commit

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("unet", "unetpp", "fastddpm")


def seconds_per_image(model: torch.nn.Module, batch: int, size: int, device: torch.device, repeats: int) -> float:
    """Best of `repeats` timed passes over one batch, per image (the caller warms the model up first)."""
    x = torch.rand(batch, 1, size, size, generator=torch.Generator().manual_seed(0)).to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    with torch.inference_mode():
        best = float("inf")
        for _ in range(repeats):
            sync()
            t0 = time.perf_counter()
            model(x)
            sync()
            best = min(best, time.perf_counter() - t0)
    return best / batch


class Pairs:
    """(noisy, clean) smooth random float32 pairs in [0, 1], with the ids evaluation needs."""

    def __init__(self, n: int, size: int, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        low = torch.rand(n, 1, max(size // 8, 2), max(size // 8, 2), generator=g)
        self.clean = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
        self.noisy = (self.clean + 0.1 + 0.1 * torch.randn(self.clean.shape, generator=g)).clamp(0, 1)
        self.image_ids = [f"img{k:04d}" for k in range(n)]
        self.patient_ids = [f"p{k // 2:04d}" for k in range(n)]  # two images a patient, as follow-ups

    def __len__(self) -> int:
        return len(self.clean)

    def __getitem__(self, i: int):
        return self.noisy[i], self.clean[i]


def pipeline(a: argparse.Namespace, device: torch.device, info: dict, kwargs: dict) -> None:
    """Evaluation / forward and denoise / forward, interleaved on the same images (see the module docstring)."""
    import numpy as np
    from PIL import Image

    from cxrdenoise.denoise import denoise_folder, load_denoiser
    from cxrdenoise.evaluate import run_evaluation
    from cxrdenoise.lpips_weights import load_lpips

    tmp = Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    data = Pairs(a.images, a.size)
    torch.manual_seed(0)
    model = build_model("unet", **kwargs["unet"])
    ckpt = tmp / "best.pt"
    torch.save({"model": "unet", "model_kwargs": model.model_kwargs, "state_dict": model.state_dict(),
                "sigma": 0.1, "epoch": 1}, ckpt)
    folder = tmp / "in"
    folder.mkdir()
    for image_id, x in zip(data.image_ids, data.noisy):
        Image.fromarray(np.round(x[0].numpy() * 255).astype(np.uint8)).save(folder / f"{image_id}.png")
    denoiser = load_denoiser(ckpt, device)
    lpips_status = load_lpips(True, None, device).status
    header = {"model": "unet", "sigma": 0.1}

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def forward() -> float:
        sync()
        t0 = time.perf_counter()
        for start in range(0, a.images, a.eval_batch):
            denoiser(data.noisy[start : start + a.eval_batch])
        sync()
        return time.perf_counter() - t0

    def evaluation() -> float:
        t0 = time.perf_counter()
        run_evaluation(data, denoiser, tmp / "eval", header, device=device, batch_size=a.eval_batch,
                       figure_images=a.figure_images, progress=False)
        sync()
        return time.perf_counter() - t0

    def denoise() -> float:
        t0 = time.perf_counter()
        denoise_folder(ckpt, folder, tmp / "out", batch_size=a.eval_batch, device=device.type, progress=False,
                       overwrite=True)
        return time.perf_counter() - t0

    forward(), evaluation(), denoise()  # warm-up round, untimed
    rounds = []
    for r in range(a.rounds):
        row = {"forward_s": forward(), "evaluation_s": evaluation(), "denoise_s": denoise()}
        row.update(evaluation_over_forward=row["evaluation_s"] / row["forward_s"],
                   denoise_over_forward=row["denoise_s"] / row["forward_s"])
        rounds.append(row)
        print(f"  round {r + 1}: forward {row['forward_s']:.3f} s, evaluation {row['evaluation_s']:.3f} s "
              f"({row['evaluation_over_forward']:.2f}x), denoise {row['denoise_s']:.3f} s "
              f"({row['denoise_over_forward']:.2f}x)", flush=True)
    cli = []
    for _ in range(a.cli_runs):  # the command as a user runs it: start-up = whole call - in-process time
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "cxrdenoise", "denoise", "--checkpoint", str(ckpt), "--input",
                        str(folder), "--output", str(tmp / "cli"), "--overwrite", "--no-progress", "--batch-size",
                        str(a.eval_batch), "--device", device.type], check=True, capture_output=True,
                       env={**os.environ, "OMP_NUM_THREADS": str(a.threads)})
        cli.append(time.perf_counter() - t0)
    med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
    denoise_call = statistics.median(cli) if cli else None
    result = {
        "what": "evaluation and denoise wall time over the net's forward pass on the same images, interleaved "
                "round by round (median of rounds; ratios are medians of the per-round ratios)",
        "config": str(a.config) if a.config else "config.yaml", "model": "unet", "model_kwargs": model.model_kwargs,
        "size": a.size, "images": a.images, "batch": a.eval_batch, "figure_images": a.figure_images,
        "lpips_status": lpips_status, "device": device.type, "device_name": info["device_name"],
        "threads": a.threads if device.type == "cpu" else None, "torch": torch.__version__,
        "python": platform.python_version(), "git_commit": git_commit(),
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "rounds": rounds, "median": med,
        "denoise_command_s": cli, "denoise_startup_s": (denoise_call - med["denoise_s"]) if cli else None,
    }
    label = "CPU" if device.type == "cpu" else device.type
    print(f"{label} ({info['device_name']}), torch {torch.__version__}, {a.images} images {a.size}x{a.size}, "
          f"batch {a.eval_batch}: evaluation / forward {med['evaluation_over_forward']:.2f}x, "
          f"denoise / forward {med['denoise_over_forward']:.2f}x"
          + (f"; cxrdenoise denoise call {denoise_call:.2f} s, of which start-up "
             f"{result['denoise_startup_s']:.2f} s" if cli else ""))
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = a.out or ROOT / "benchmarks" / "results" / f"pipeline_{device.type}_{stamp}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--threads", type=int, default=1, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--repeats", type=int, default=1, help="timing: best of this many passes")
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--config", type=Path, default=None,
                   help="overrides whose `models:` widths replace config.yaml's (e.g. config/demo.yaml)")
    p.add_argument("--out", type=Path, default=None, help="default: benchmarks/results/inference_<device>.json")
    p.add_argument("--pipeline", action="store_true",
                   help="evaluation / forward and denoise / forward instead of the models' forward passes")
    p.add_argument("--images", type=int, default=32, help="--pipeline: images")
    p.add_argument("--eval-batch", type=int, default=8, help="--pipeline: batch (the demo's evaluate.batch_size)")
    p.add_argument("--figure-images", type=int, default=2, help="--pipeline: evaluate.figure_images")
    p.add_argument("--rounds", type=int, default=5, help="--pipeline: interleaved rounds")
    p.add_argument("--cli-runs", type=int, default=2, help="--pipeline: whole `cxrdenoise denoise` calls timed")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    info = device_info(device)
    # config.yaml holds no keys (the schema's defaults are the study's): fill them in, then apply --config
    overrides = (yaml.safe_load(a.config.read_text()) or {}) if a.config is not None else {}
    kwargs = validate_config({"models": overrides.get("models", {})}, check_models=False)["models"]
    if a.pipeline:
        return pipeline(a, device, info, kwargs)
    print(f"{a.size}x{a.size} images, batches {a.batches}, best of {a.repeats}; device {device.type}: "
          f"{info['device_name']}" + (f", {a.threads} thread(s)" if device.type == "cpu" else ""))
    rows = []
    for name in MODELS:
        torch.manual_seed(0)
        model = build_model(name, **kwargs[name]).to(device).eval()
        with torch.inference_mode():  # one untimed warm-up pass (allocator, cuDNN/oneDNN choices)
            model(torch.rand(1, 1, a.size, a.size, device=device))
        for b in a.batches:
            s = seconds_per_image(model, b, a.size, device, a.repeats)
            rows.append({"model": name, "model_kwargs": model.model_kwargs, "batch": b, "seconds_per_image": s,
                         "n_parameters": count_parameters(model, trainable_only=True),
                         "network_evaluations_per_image": len(getattr(model, "seq", [None]))})
            print(f"  {name:9s} batch {b}: {s:.4f} s/image", flush=True)
        del model
    unet = {r["batch"]: r["seconds_per_image"] for r in rows if r["model"] == "unet"}
    for r in rows:
        r["ratio_to_unet"] = r["seconds_per_image"] / unet[r["batch"]]
    print("ratio to U-Net (same batch): " + ", ".join(
        f"{r['model']} b{r['batch']} {r['ratio_to_unet']:.2f}x" for r in rows if r["model"] != "unet"))
    out = a.out or ROOT / "benchmarks" / "results" / f"inference_{device.type}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "what": f"seconds per {a.size}x{a.size} image, forward pass (Fast-DDPM: all its sampling steps), random "
                "weights and inputs, best of repeats after one warm-up pass at batch 1",
        "config": str(a.config) if a.config else "config.yaml", "size": a.size,
        "device": device.type, "device_name": info["device_name"],
        "threads": a.threads if device.type == "cpu" else None, "repeats": a.repeats,
        "torch": torch.__version__, "python": platform.python_version(), "git_commit": git_commit(),
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "rows": rows,
    }, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
