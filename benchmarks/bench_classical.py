"""Seconds per 256x256 image for each classical denoiser (Table VI baselines), measured side by side in one run,
one thread, on the real NIH sample images (../shared/data/nih-sample) at the study's noise; with the PSNR each
reaches under each way of handling the noise mean, so the speed and the quality of a choice are read together.

    python benchmarks/bench_classical.py [--images 14] [--sigma 0.1] [--repeats 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import time
from pathlib import Path

import numpy as np

from cxrdenoise import classical
from cxrdenoise.imaging import load_grey
from cxrdenoise.metrics import psnr
from cxrdenoise.provenance import cpu_name, git_commit
from cxrdenoise.shards import image_noise

NIH_SAMPLE = Path(__file__).resolve().parents[2] / "shared" / "data" / "nih-sample"
MEAN = 0.1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=14)
    p.add_argument("--sigma", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=2, help="timing: best of this many passes")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "classical.json")
    a = p.parse_args()
    paths = sorted(NIH_SAMPLE.glob("*.png"))[: a.images]
    if not paths:
        raise SystemExit(f"error: no images in {NIH_SAMPLE} (../shared must sit beside the checkout)")
    cleans = [load_grey(path)[0] / 255.0 for path in paths]
    noisy = [np.clip(c + image_noise(1, path.stem, a.sigma, MEAN, c.shape), 0, 1) for c, path in zip(cleans, paths)]
    size = cleans[0].shape
    rows = []
    print(f"{len(paths)} real NIH images at {size[0]}x{size[1]}, sigma {a.sigma:g}, noise mean {MEAN}; one thread, "
          f"best of {a.repeats}; CPU: {cpu_name()}")
    print(f"  noisy input: PSNR {np.mean([psnr(n, c) for n, c in zip(noisy, cleans)]):.2f} dB")
    for name in classical.METHODS:
        reason = classical.missing_package(name)
        if reason:
            print(f"  {name:9s} skipped: {reason}")
            rows.append({"method": name, "skipped": reason})
            continue
        scores, best = {}, float("inf")
        for mh in classical.MEAN_HANDLING:
            outs = [classical.denoise(name, n, a.sigma, MEAN, mean_handling=mh) for n in noisy]
            scores[mh] = float(np.mean([psnr(o, c) for o, c in zip(outs, cleans)]))
        for _ in range(a.repeats):
            t0 = time.perf_counter()
            for n in noisy:
                classical.denoise(name, n, a.sigma, MEAN)
            best = min(best, (time.perf_counter() - t0) / len(noisy))
        rows.append({"method": name, "s_per_image": best, "psnr_db": scores})
    fastest = min((r["s_per_image"] for r in rows if "s_per_image" in r), default=float("nan"))
    for r in rows:
        if "s_per_image" in r:
            print(f"  {r['method']:9s} {r['s_per_image'] * 1e3:9.1f} ms/image ({r['s_per_image'] / fastest:7.1f}x the "
                  "fastest)  PSNR " + "  ".join(f"{mh} {v:.2f}" for mh, v in r["psnr_db"].items()))
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps({
        "benchmark": "classical denoisers", "when": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "device": f"cpu ({cpu_name()})", "python": platform.python_version(), "git_commit": git_commit(),
        "images": len(paths), "size": list(size), "sigma": a.sigma, "noise_mean": MEAN, "threads": 1,
        "rows": rows}, indent=2) + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
