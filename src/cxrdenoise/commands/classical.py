"""Classical baselines (rules classical_shard and classical_merge; cxrdenoise.baselines): `shard` scores one
method at one sigma on one shard's test images among the classical subset (baselines.max_images, drawn
round-robin across patients from the config seed); `merge` joins a (method, sigma)'s shards into one result."""

from __future__ import annotations

import argparse

from cxrdenoise.classical import MEAN_HANDLING, METHODS
from cxrdenoise.errors import cli_entry


def _max_images(text: str) -> int | None:
    return None if text in ("", "None", "null", "all") else int(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cxrdenoise classical", description=__doc__)
    sub = parser.add_subparsers(dest="action", required=True)
    shard = sub.add_parser("shard", help="score one method on one shard's test images")
    shard.add_argument("--method", choices=list(METHODS), required=True)
    shard.add_argument("--sigma", required=True, help="noise level (results/data/noisy/sigma{sigma})")
    shard.add_argument("--shard", type=int, required=True, help="shard number (shard_{shard:05d}.npy)")
    shard.add_argument("--data-dir", required=True, help="results/data (clean and noisy shards)")
    shard.add_argument("--out-dir", required=True, help="folder for per_image.csv and summary.json")
    shard.add_argument("--mean-handling", choices=MEAN_HANDLING, required=True, help="baselines.mean_handling")
    shard.add_argument("--max-images", type=_max_images, required=True,
                       help="baselines.max_images: N test images drawn round-robin across patients (all = the "
                            "whole test split)")
    shard.add_argument("--seed", type=int, required=True,
                       help="config seed, from which the round-robin subset's orders derive")
    shard.add_argument("--threads", type=int, required=True, help="images denoised in parallel (baselines.threads)")
    shard.add_argument("--batch-size", type=int, required=True, help="evaluate.batch_size")
    shard.add_argument("--no-lpips", action="store_true", help="evaluate.lpips: false")
    shard.add_argument("--no-progress", action="store_true")
    merge = sub.add_parser("merge", help="join the shard results of one (method, sigma)")
    merge.add_argument("--method", choices=list(METHODS), required=True)
    merge.add_argument("--sigma", required=True)
    merge.add_argument("--out-dir", required=True, help="results/classical/{method}/sigma{sigma}")
    merge.add_argument("shard_dirs", nargs="+", help="the shard result folders, in shard order")
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    from cxrdenoise import baselines

    a = parse_args(argv)
    if a.action == "merge":
        s = baselines.merge_shards(a.shard_dirs, a.out_dir, a.method, a.sigma)
    else:
        s = baselines.evaluate_classical_shard(
            a.method, a.sigma, a.shard, a.out_dir, data_dir=a.data_dir, mean_handling=a.mean_handling,
            max_images=a.max_images, seed=a.seed, threads=a.threads, batch_size=a.batch_size,
            lpips_enabled=not a.no_lpips, progress=not a.no_progress)
    note = s.get("skipped") or s.get("empty")
    if note:
        print(f"{a.out_dir}: {note}")
    else:
        m = s["metrics"]
        print(f"{a.out_dir}: n={s['n_images']} PSNR {m['psnr']['mean']} SSIM {m['ssim']['mean']} "
              f"ms/image {m['inference_ms']['mean']}")
    return 0
