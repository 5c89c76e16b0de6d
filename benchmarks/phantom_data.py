"""A real data folder of synthetic phantoms for the benchmarks and the GPU check: the pipeline's own stages
(phantoms -> inventory -> sample -> split -> resize -> noise shards -> manifests), run in-process, no Snakemake.

    build_phantom_data(root, n_images=480, size=256, sigmas=(0.1,)) -> root/results/data
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

from cxrdenoise import stages  # noqa: E402
from cxrdenoise.phantoms import generate_phantoms  # noqa: E402


def build_phantom_data(root: str | Path, *, n_images: int, size: int, sigmas=(0.1,), per_shard: int = 256,
                       seed: int = 2025, dtype: str = "float16", mean: float = 0.1) -> Path:
    """Phantoms rendered at `size` (no resize cost beyond a copy), split 50/33/17 by patient as the demo does."""
    root = Path(root)
    raw = root / "raw"
    # about 2 follow-ups per patient: ask for enough patients that the sample can take n_images
    generate_phantoms(raw, patients=max(8, n_images // 2 + 4), max_follow_ups=3, size=size, seed=seed,
                      progress=False)
    data = root / "results" / "data"
    stages.inventory_stage([str(raw / "images")], data / "inventory.csv", raw / "Data_Entry_synthetic.csv")
    stages.sample_stage(data / "inventory.csv", n_images, seed, data / "sample.csv")
    stages.split_stage(data / "sample.csv", 0.5, 0.33, seed, data / "split.csv", data / "split_counts.json")
    n_shards = -(-n_images // per_shard)
    for k in range(n_shards):
        stages.resize_stage(data / "split.csv", k, per_shard, size, dtype, data / "clean" / f"shard_{k:05d}.npy")
    stages.manifest_stage([data / "clean" / f"shard_{k:05d}.json" for k in range(n_shards)],
                          data / "clean" / "manifest.json")
    for sigma in sigmas:
        noisy = data / "noisy" / f"sigma{sigma:g}"
        for k in range(n_shards):
            stages.noise_stage(data / "clean" / f"shard_{k:05d}.npy", sigma, mean, seed, noisy / f"shard_{k:05d}.npy")
        stages.manifest_stage([noisy / f"shard_{k:05d}.json" for k in range(n_shards)], noisy / "manifest.json")
    return data
