"""PSNR + SSIM + SSIM(win 3) per image: the batched torch path on a device (cxrdenoise.device_metrics) versus the
scikit-image path image by image on the host (cxrdenoise.metrics), side by side in one process.

    python benchmarks/bench_metrics.py [--device cpu|cuda] [--batch 16] [--repeats 5] [--sigma 0.2]

Images: the 14 real NIH radiographs in ../shared/data/nih-sample (256x256) when present, tiled to --images, with
the project's noise (seed and mean from config.yaml); otherwise smooth random images, and the output says so.
Each path starts from the noisy and clean batch on --device, as in evaluation: the scikit-image path pays the
copy to the host, the torch path a synchronisation and the copy of three floats per image. Best of --repeats.
Writes benchmarks/results/bench_metrics_<device>_<UTC time>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cxrdenoise.atomic import write_json  # noqa: E402
from cxrdenoise.device_metrics import batch_image_metrics  # noqa: E402
from cxrdenoise.imaging import load_grey, resize_grey  # noqa: E402
from cxrdenoise.metrics import image_metrics  # noqa: E402
from cxrdenoise.provenance import device_info, git_commit  # noqa: E402
from cxrdenoise.shards import image_noise  # noqa: E402

NIH_SAMPLE = REPO.parent / "shared" / "data" / "nih-sample"


def images(n: int, size: int, sigma: float) -> tuple[np.ndarray, np.ndarray, str]:
    """(noisy, clean) float32 (n, size, size) and a label saying what they are."""
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    seed, mean = config["seed"], float(config["noise"]["mean"])
    paths = sorted(NIH_SAMPLE.glob("*.png")) if NIH_SAMPLE.is_dir() else []
    if paths:
        base = [resize_grey(load_grey(p)[0], size, p) for p in paths]
        ids = [p.name for p in paths]
        label = f"{len(paths)} real NIH radiographs (nih-sample), tiled to {n}"
    else:
        g = torch.Generator().manual_seed(seed)
        low = torch.rand(n, 1, size // 8, size // 8, generator=g)
        smooth = torch.nn.functional.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)
        base = list(smooth[:, 0].numpy())
        ids = [f"synthetic_{i}" for i in range(n)]
        label = f"{n} smooth random images (nih-sample not found at {NIH_SAMPLE})"
    clean = np.stack([base[i % len(base)] for i in range(n)]).astype(np.float32)
    noise = np.stack([image_noise(seed, f"{ids[i % len(ids)]}#{i}", sigma, mean, (size, size)) for i in range(n)])
    return np.clip(clean + noise, 0, 1).astype(np.float32), clean, label


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def skimage_path(noisy: torch.Tensor, clean: torch.Tensor, batch: int) -> list[dict[str, float]]:
    rows = []
    for start in range(0, len(noisy), batch):
        out = noisy[start:start + batch].float().clamp(0, 1).cpu().numpy()
        ref = clean[start:start + batch].cpu().numpy()
        rows += [image_metrics(o, c) for o, c in zip(out, ref)]
    return rows


def torch_path(noisy: torch.Tensor, clean: torch.Tensor, batch: int) -> list[dict[str, float]]:
    rows = []
    for start in range(0, len(noisy), batch):
        metrics = batch_image_metrics(noisy[start:start + batch], clean[start:start + batch])
        values = {k: v.tolist() for k, v in metrics.items()}
        rows += [dict(zip(values, vals)) for vals in zip(*values.values())]
    return rows


def best_ms_per_image(fn, device: torch.device, n: int, repeats: int) -> tuple[float, list[dict[str, float]]]:
    fn()  # warm-up: CUDA context, kernels, allocator
    times = []
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        rows = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return min(times) * 1000.0 / n, rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--images", type=int, default=64)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--sigma", type=float, default=0.2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (scikit-image uses one)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    device = torch.device(a.device)
    noisy_np, clean_np, label = images(a.images, a.size, a.sigma)
    noisy, clean = torch.from_numpy(noisy_np)[:, None].to(device), torch.from_numpy(clean_np)[:, None].to(device)

    sk_ms, sk_rows = best_ms_per_image(lambda: skimage_path(noisy, clean, a.batch), device, a.images, a.repeats)
    th_ms, th_rows = best_ms_per_image(lambda: torch_path(noisy, clean, a.batch), device, a.images, a.repeats)
    max_diff = {k: max(abs(r[k] - t[k]) for r, t in zip(sk_rows, th_rows)) for k in ("psnr", "ssim", "ssim_w3")}

    info = device_info(device)
    import skimage

    result = {
        "benchmark": "bench_metrics",
        "measured_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "git_commit": git_commit(REPO),
        "device": device.type,
        "device_name": info["device_name"],
        "torch_version": torch.__version__,
        "skimage_version": skimage.__version__,
        "torch_threads": torch.get_num_threads(),
        "images": label,
        "n_images": a.images,
        "image_size": [a.size, a.size],
        "batch": a.batch,
        "sigma": a.sigma,
        "repeats": a.repeats,
        "metrics": ["psnr", "ssim (7x7)", "ssim_w3"],
        "skimage_ms_per_image": sk_ms,
        "torch_ms_per_image": th_ms,
        "speedup": sk_ms / th_ms,
        "max_abs_difference": max_diff,
    }
    print(f"{label}; {a.size}x{a.size}, batch {a.batch}, sigma {a.sigma}, best of {a.repeats}")
    print(f"device {device.type} ({info['device_name']}), torch {torch.__version__} ({torch.get_num_threads()} "
          f"threads), scikit-image {skimage.__version__}")
    print("PSNR + SSIM + SSIM(win 3) per image:")
    print(f"  scikit-image, per image on the host: {sk_ms:8.3f} ms")
    print(f"  torch, batched on {device.type:<4}:            {th_ms:8.3f} ms  ({sk_ms / th_ms:.1f}x faster)")
    print("  max |difference|: " + ", ".join(f"{k} {v:.1e}" for k, v in max_diff.items()))
    stamp = result["measured_utc"].replace(":", "").replace("-", "").replace("+0000", "Z")
    out = a.out / f"bench_metrics_{device.type}_{stamp}.json"
    write_json(out, result)
    print(f"wrote {out.relative_to(REPO) if out.is_relative_to(REPO) else out}")


if __name__ == "__main__":
    main()
