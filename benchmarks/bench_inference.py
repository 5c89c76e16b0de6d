"""Seconds per 256x256 image for U-Net, U-Net++ and Fast-DDPM (its 10 sampling steps included), at the sizes in
config.yaml (base 64), batch 1 and 8, measured side by side in one run, with the ratio to U-Net.

On the CPU one thread by default; with --device cuda on the visible GPU (synchronised around each batch). The
device name is printed and recorded, so a CPU timing is never read as a GPU one. Random weights and inputs:
the time of a forward pass does not depend on their values.

    python benchmarks/bench_inference.py [--device cpu] [--threads 1] [--repeats 1] [--batches 1 8]
    python benchmarks/bench_inference.py --config config/demo.yaml --size 64   # the demo's widths and size
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
from pathlib import Path

import torch
import yaml

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
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    info = device_info(device)
    kwargs = yaml.safe_load((ROOT / "config.yaml").read_text())["models"]
    if a.config is not None:
        kwargs.update((yaml.safe_load(a.config.read_text()) or {}).get("models", {}))
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
