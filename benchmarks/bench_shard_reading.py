"""Reading (noisy, clean) pairs from memory-mapped shards versus decoding one PNG per image, as the study's
code did (decode, convert to float, draw the noise on the fly). Both run in this process, side by side.

    python benchmarks/bench_shard_reading.py [--images 256] [--size 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from datadir import build_data_dir  # noqa: E402

from cxrdenoise.data import PairDataset  # noqa: E402


def png_pairs(paths: list[Path], size: int, sigma: float, mean: float) -> None:
    rng = np.random.default_rng(0)
    for path in paths:
        with Image.open(path) as img:
            clean = np.asarray(img.convert("L").resize((size, size)), dtype=np.float32) / 255.0
        noisy = np.clip(clean + rng.normal(mean, sigma, clean.shape), 0, 1)
        torch.from_numpy(noisy.astype(np.float32))[None], torch.from_numpy(clean)[None]


def shard_pairs(ds: PairDataset) -> None:
    for i in range(len(ds)):
        ds[i]


def best_rate(fn, n: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return n / min(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=256)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        patients = a.images  # 1..3 follow-ups each: always enough images
        data = build_data_dir(Path(tmp), n_images=a.images, size=a.size, sigmas=(0.1,), per_shard=128,
                              patients=patients, phantom_size=a.size)
        pngs = sorted((Path(tmp) / "raw" / "images").glob("*.png"))
        splits = ("train", "val", "test")
        datasets = [PairDataset(data, s, 0.1) for s in splits]
        n = sum(len(d) for d in datasets)
        png_rate = best_rate(lambda: png_pairs(pngs[:n], a.size, 0.1, 0.1), n, a.repeats)
        shard_rate = best_rate(lambda: [shard_pairs(d) for d in datasets], n, a.repeats)
        pre = [PairDataset(data, s, 0.1, preload=True) for s in splits]
        pre_rate = best_rate(lambda: [shard_pairs(d) for d in pre], n, a.repeats)
    print(f"{n} images at {a.size}x{a.size}, one process, best of {a.repeats}")
    print(f"  PNG decode + noise per image (study): {png_rate:9.1f} images/s")
    print(f"  memory-mapped shards:                 {shard_rate:9.1f} images/s  ({shard_rate / png_rate:.1f}x)")
    print(f"  preloaded shards:                     {pre_rate:9.1f} images/s  ({pre_rate / png_rate:.1f}x)")


if __name__ == "__main__":
    main()
