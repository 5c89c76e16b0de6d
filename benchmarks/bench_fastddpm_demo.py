"""Fast-DDPM on the demo's data and training settings, beside U-Net, in one run: seconds per training job, the
per-step training loss (finite? spikes?), and the test PSNR against no denoising -- with and without the
stability options (train.grad_clip, EMA of the weights).

Builds the demo's data in a scratch folder with the pipeline's own stages (synthetic phantoms, seed 7, 48 images
at 64x64, the demo's split), trains each variant with the project's Trainer (gpu1 on the CPU, the demo's epochs,
batch and lr) and scores the best.pt on the test split. A "spike" is a step whose loss exceeds 10x the median
of the 20 steps before it.

    python benchmarks/bench_fastddpm_demo.py [--sigma 0.1] [--epochs 15] [--variants none clip ema clip+ema]
        [--predictions eps x0 v]   (default: the demo's models.fastddpm.prediction)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from cxrdenoise.commands import data as stages
from cxrdenoise.data import PairDataset
from cxrdenoise.denoise import load_denoiser
from cxrdenoise.metrics import psnr
from cxrdenoise.models import build_model
from cxrdenoise.models.diffusion import PREDICTIONS
from cxrdenoise.phantoms import generate_phantoms
from cxrdenoise.provenance import cpu_name, git_commit
from cxrdenoise.train.distributed import single_process
from cxrdenoise.train.engine import run_training
from cxrdenoise.train.settings import TrainSettings

ROOT = Path(__file__).resolve().parents[1]
VARIANTS = {"none": (0.0, 0.0), "clip": (1.0, 0.0), "ema": (0.0, 0.999), "clip+ema": (1.0, 0.999)}


def demo_data(root: Path, demo: dict, sigma: float) -> Path:
    """The demo's data stages, in process: phantoms -> inventory -> sample -> split -> shards (+ noise)."""
    syn, seed = demo["data"]["synthetic"], demo["seed"]
    generate_phantoms(root / "raw", patients=syn["patients"], max_follow_ups=syn["max_follow_ups"],
                      size=syn["size"], seed=seed, progress=False)
    base = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    data = root / "data"
    stages.inventory_stage([str(root / "raw" / "images")], data / "inventory.csv",
                           root / "raw" / "Data_Entry_synthetic.csv")
    stages.sample_stage(data / "inventory.csv", demo["sample"]["n_images"], seed, data / "sample.csv")
    fr = base["split"]["fractions"]
    stages.split_stage(data / "sample.csv", fr["train"], fr["val"], seed, data / "split.csv",
                       data / "split_counts.json")
    per, n = demo["shards"]["images_per_shard"], demo["sample"]["n_images"]
    shards = range(-(-n // per))
    for k in shards:
        stages.resize_stage(data / "split.csv", k, per, demo["resize"]["size"], base["shards"]["dtype"],
                            data / "clean" / f"shard_{k:05d}.npy")
    stages.manifest_stage([data / "clean" / f"shard_{k:05d}.json" for k in shards], data / "clean" / "manifest.json")
    noisy = data / "noisy" / f"sigma{sigma:g}"
    for k in shards:
        stages.noise_stage(data / "clean" / f"shard_{k:05d}.npy", sigma, base["noise"]["mean"], seed,
                           noisy / f"shard_{k:05d}.npy")
    stages.manifest_stage([noisy / f"shard_{k:05d}.json" for k in shards], noisy / "manifest.json")
    return data


def train_one(data: Path, out: Path, model: str, kwargs: dict, demo: dict, sigma: float, grad_clip: float,
              epochs: int) -> dict:
    train = demo["train"]
    settings = TrainSettings(model=model, setup="gpu1", sigma=f"{sigma:g}", model_kwargs=kwargs, epochs=epochs,
                             lr=train["lr"], batch_per_gpu=train["batch_per_gpu"], workers=0, seed=demo["seed"],
                             device="cpu", log_every=1000, keep_last=False, threads=1, grad_clip=grad_clip)
    losses: list[float] = []

    def factory(name: str, **kw) -> torch.nn.Module:
        net = build_model(name, **kw)
        def record_loss(module, args, output):  # Fast-DDPM's training call, model(noisy, clean), is its loss
            if len(args) == 2:
                losses.append(float(output.detach().float().mean()))

        net.register_forward_hook(record_loss)
        return net

    t0 = time.perf_counter()
    record = run_training(settings, PairDataset(data, "train", sigma, preload=True),
                          PairDataset(data, "val", sigma, preload=True), out, single_process("cpu"),
                          model_factory=factory)
    seconds = time.perf_counter() - t0
    test = PairDataset(data, "test", sigma)
    den = load_denoiser(out / "best.pt", "cpu")
    scores = [psnr(den(test[i][0][None])[0, 0].numpy(), test[i][1][0].numpy()) for i in range(len(test))]
    spikes = [i for i in range(20, len(losses)) if losses[i] > 10 * statistics.median(losses[i - 20:i])]
    return {
        "model": model, "model_kwargs": record["model_kwargs"], "grad_clip": grad_clip,
        "job_seconds": seconds, "steps": len(losses) if model == "fastddpm" else None,
        "loss_all_finite": all(math.isfinite(v) for v in losses) if losses else None,
        "loss_first_10_mean": float(np.mean(losses[:10])) if losses else None,
        "loss_last_10_mean": float(np.mean(losses[-10:])) if losses else None,
        "loss_max": max(losses) if losses else None, "spikes": len(spikes),
        "val_l1_per_epoch": [round(r["val_loss"], 5) for r in record["epochs"]],
        "best_epoch": record["best_epoch"], "test_psnr": float(np.mean(scores)), "test_images": len(test),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sigma", type=float, default=0.1)
    p.add_argument("--epochs", type=int, default=None, help="default: the demo's train.epochs")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--predictions", nargs="+", default=None, choices=list(PREDICTIONS),
                   help="what the network predicts; default: the demo's models.fastddpm.prediction")
    p.add_argument("--out", type=Path, default=None,
                   help="default: benchmarks/results/fastddpm_demo_sigma<sigma>.json")
    a = p.parse_args()
    a.out = a.out or ROOT / "benchmarks" / "results" / f"fastddpm_demo_sigma{a.sigma:g}.json"
    torch.set_num_threads(1)
    demo = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    epochs = a.epochs or demo["train"]["epochs"]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = demo_data(Path(tmp), demo, a.sigma)
        test = PairDataset(data, "test", a.sigma)
        noisy_psnr = float(np.mean([psnr(test[i][0][0].numpy(), test[i][1][0].numpy()) for i in range(len(test))]))
        print(f"demo data: {len(test)} test images at {test.image_shape}, sigma {a.sigma:g}; no denoising "
              f"{noisy_psnr:.2f} dB; {epochs} epochs; one thread on {cpu_name()}", flush=True)
        jobs = [("unet", dict(demo["models"]["unet"]), 0.0, "unet")]
        ddpm = {k: v for k, v in demo["models"].get("fastddpm", {"base_channels": 8}).items() if k != "ema"}
        predictions = a.predictions or [ddpm.get("prediction", "eps")]
        jobs += [("fastddpm", {**ddpm, "prediction": pred, "ema": VARIANTS[v][1]}, VARIANTS[v][0], f"{v}/{pred}")
                 for pred in predictions for v in a.variants]
        for model, kwargs, clip, label in jobs:
            row = {"variant": label, **train_one(data, Path(tmp) / label, model, kwargs, demo, a.sigma, clip,
                                                 epochs)}
            row["beats_no_denoising_db"] = row["test_psnr"] - noisy_psnr
            rows.append(row)
            print(f"  {label:12s} {model:8s} job {row['job_seconds']:6.1f} s  test PSNR {row['test_psnr']:.2f} dB "
                  f"({row['beats_no_denoising_db']:+.2f} vs noisy)  loss first/last {row['loss_first_10_mean']} / "
                  f"{row['loss_last_10_mean']}  max {row['loss_max']}  spikes {row['spikes']}  finite "
                  f"{row['loss_all_finite']}", flush=True)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({
        "what": "demo data and settings (gpu1, CPU, one thread): Fast-DDPM variants beside U-Net",
        "sigma": a.sigma, "epochs": epochs, "lr": demo["train"]["lr"], "noisy_psnr": noisy_psnr, "cpu": cpu_name(),
        "torch": torch.__version__, "git_commit": git_commit(),
        "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "rows": rows,
    }, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
