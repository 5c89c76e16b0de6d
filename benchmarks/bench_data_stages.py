"""Images/s of the two per-image data stages, resize (PNG decode + grey + resize to --size) and noise
(the project's seeded Gaussian noise + clip), and how they grow with the number of images and of jobs.

    python benchmarks/bench_data_stages.py [--images 28,112] [--jobs 1,2] [--size 256]

The sources are the 14 real NIH radiographs in ../shared/data/nih-sample (1024x1024 PNG) tiled to --images, or
phantoms rendered at 1024x1024 when that folder is absent (the output says which). Jobs are processes sharing
the images in equal parts, as Snakemake runs one shard per job. Each cell is the best of --repeats, and the
scaling columns are measured side by side in one run. Writes benchmarks/results/bench_data_stages_<UTC>.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from cxrdenoise.imaging import load_grey, resize_grey  # noqa: E402
from cxrdenoise.provenance import cpu_name, git_commit  # noqa: E402
from cxrdenoise.shards import image_noise  # noqa: E402
from bench_output import save_result  # noqa: E402

NIH_SAMPLE = REPO.parent / "shared" / "data" / "nih-sample"


def sources(tmp: Path) -> tuple[list[Path], str]:
    paths = sorted(NIH_SAMPLE.glob("*.png")) if NIH_SAMPLE.is_dir() else []
    if paths:
        return paths, f"{len(paths)} real NIH radiographs (1024x1024 PNG, nih-sample)"
    from cxrdenoise.phantoms import generate_phantoms

    generate_phantoms(tmp, patients=4, max_follow_ups=1, size=1024, seed=1, progress=False)
    paths = sorted((tmp / "images").glob("*.png"))
    return paths, f"{len(paths)} phantoms rendered at 1024x1024 (nih-sample not found)"


def resize_part(paths: list[str], size: int) -> int:
    for p in paths:
        resize_grey(load_grey(p)[0], size, p)
    return len(paths)


def noise_part(ids: list[str], size: int) -> int:
    clean = np.full((size, size), 0.5, dtype=np.float32)
    for image_id in ids:
        np.clip(clean + image_noise(2025, image_id, 0.2, 0.1, clean.shape), 0.0, 1.0)
    return len(ids)


def timed(fn, items: list, jobs: int, size: int, pool: ProcessPoolExecutor | None) -> float:
    t0 = time.perf_counter()
    if jobs == 1:
        fn(items, size)
    else:
        parts = [items[k::jobs] for k in range(jobs)]
        assert sum(pool.map(fn, parts, [size] * jobs)) == len(items)
    return time.perf_counter() - t0


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", default="28,112")
    p.add_argument("--jobs", default="1,2")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results")
    a = p.parse_args(argv)
    counts = [int(x) for x in a.images.split(",")]
    jobs_list = [int(x) for x in a.jobs.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        paths, label = sources(Path(tmp))
        print(f"{label}; resize to {a.size}x{a.size}; {os.cpu_count()} CPUs ({cpu_name()}), "
              f"load average {os.getloadavg()[0]:.1f}")
        rows = []
        pools = {j: ProcessPoolExecutor(j) for j in jobs_list if j > 1}
        try:
            for pool in pools.values():  # start the workers before timing
                list(pool.map(noise_part, [["warm"]] * 4, [8] * 4))
            for n in counts:
                tiled = [str(paths[i % len(paths)]) for i in range(n)]
                ids = [f"img{i}" for i in range(n)]
                for jobs in jobs_list:
                    pool = pools.get(jobs)
                    for stage, fn, items in (("resize", resize_part, tiled), ("noise", noise_part, ids)):
                        best = min(timed(fn, items, jobs, a.size, pool) for _ in range(a.repeats))
                        rows.append({"stage": stage, "images": n, "jobs": jobs, "seconds": best,
                                     "images_per_s": n / best})
        finally:
            for pool in pools.values():
                pool.shutdown()
    for row in rows:
        one = next(r for r in rows if r["stage"] == row["stage"] and r["images"] == row["images"] and r["jobs"] == 1)
        row["speedup_vs_1_job"] = row["images_per_s"] / one["images_per_s"]
        print(f"  {row['stage']:<6} {row['images']:5d} images {row['jobs']:2d} jobs: {row['images_per_s']:8.1f} img/s"
              f"  x{row['speedup_vs_1_job']:.2f} vs 1 job")
    result = {
        "benchmark": "bench_data_stages",
        "measured_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(), "git_commit": git_commit(REPO), "device": "cpu", "device_name": cpu_name(),
        "cpus": os.cpu_count(), "load_average_1min": os.getloadavg()[0], "sources": label,
        "image_size": [a.size, a.size], "repeats": a.repeats, "rows": rows,
    }
    save_result(a.out, "bench_data_stages", result)
    return result


if __name__ == "__main__":
    main()
