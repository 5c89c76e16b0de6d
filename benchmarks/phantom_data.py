"""A real data folder of synthetic phantoms for the benchmarks and the GPU check: the pipeline's own stages
(phantoms -> inventory -> sample -> split -> resize -> noise shards -> manifests), run in-process, no Snakemake.

    build_phantom_data(root, n_images=480, size=256, sigmas=(0.1,)) -> root/results/data
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
for folder in (REPO / "src", REPO / "tests"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from datadir import build_data_dir  # noqa: E402  (the tests' builder: one implementation of the data stages)


def build_phantom_data(root: str | Path, *, n_images: int, size: int, sigmas=(0.1,), per_shard: int = 256,
                       seed: int = 2025, dtype: str = "float16") -> Path:
    """Phantoms rendered at `size` (no resize cost beyond a copy), split 50/33/17 by patient as the demo does;
    about 2 follow-ups per patient, so ask for enough patients that the sample can take n_images."""
    return build_data_dir(Path(root), n_images=n_images, size=size, sigmas=tuple(sigmas), per_shard=per_shard,
                          seed=seed, dtype=dtype, patients=max(8, n_images // 2 + 4), phantom_size=size)
