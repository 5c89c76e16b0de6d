"""Build small but real data folders (phantoms -> inventory -> sample -> split -> shards) for tests."""

from __future__ import annotations

from pathlib import Path

from cxrdenoise.commands import data as stages
from cxrdenoise.phantoms import generate_phantoms

SHARED = Path(__file__).resolve().parents[2] / "shared"
NIH_SAMPLE = SHARED / "data" / "nih-sample"


def build_data_dir(root: Path, *, n_images: int = 24, size: int = 32, sigmas=(0.1, 0.2), per_shard: int = 10,
                   seed: int = 3, dtype: str = "float16", patients: int = 14, source_dir: Path | None = None,
                   metadata: Path | None = None, phantom_size: int = 64, max_follow_ups: int = 3) -> Path:
    """Run every data stage in-process into `root/results/data`; returns that folder."""
    root = Path(root)
    if source_dir is None:
        generate_phantoms(root / "raw", patients=patients, max_follow_ups=max_follow_ups, size=phantom_size, seed=seed,
                          progress=False)
        source_dir, metadata = root / "raw" / "images", root / "raw" / "Data_Entry_synthetic.csv"
    data = root / "results" / "data"
    stages.inventory_stage([str(source_dir)], data / "inventory.csv", metadata)
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
            stages.noise_stage(data / "clean" / f"shard_{k:05d}.npy", sigma, 0.1, seed, noisy / f"shard_{k:05d}.npy")
        stages.manifest_stage([noisy / f"shard_{k:05d}.json" for k in range(n_shards)], noisy / "manifest.json")
    return data
