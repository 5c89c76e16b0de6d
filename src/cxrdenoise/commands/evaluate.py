"""Evaluate a trained checkpoint on the test split (rule evaluate), or, with --noisy, score the noisy test
images themselves as the "no denoising" baseline (rule evaluate_noisy); see cxrdenoise.evaluate."""

from __future__ import annotations

import argparse

from cxrdenoise.errors import cli_entry
from cxrdenoise.evaluate import evaluate_checkpoint, evaluate_noisy


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cxrdenoise evaluate", description=__doc__)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", help="results/train/{model}/sigma{sigma}/{setup}/rep{k}/best.pt")
    what.add_argument("--noisy", action="store_true", help="score the noisy input itself")
    parser.add_argument("--data-dir", required=True, help="results/data (clean and noisy shards)")
    parser.add_argument("--out-dir", required=True, help="folder for per_image.csv, summary.json, examples.npz")
    parser.add_argument("--sigma", required=True, help="noise level of the path; must match the checkpoint's")
    parser.add_argument("--setup", help="training setup label (gpu1, dp2, ddp2, ddp2_amp); with --checkpoint")
    parser.add_argument("--device", choices=("cpu", "cuda"), required=True)
    parser.add_argument("--batch-size", type=int, required=True, help="evaluate.batch_size")
    parser.add_argument("--figure-images", type=int, required=True, help="evaluate.figure_images")
    parser.add_argument("--workers", type=int, required=True, help="DataLoader workers (train.workers)")
    parser.add_argument("--no-lpips", action="store_true", help="evaluate.lpips: false")
    parser.add_argument("--config-hash", help="sha256 of the resolved config, for provenance")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.checkpoint and not args.setup:
        parser.error("--setup is required with --checkpoint")
    return args


@cli_entry
def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    common = dict(data_dir=a.data_dir, device=a.device, batch_size=a.batch_size, figure_images=a.figure_images,
                  lpips_enabled=not a.no_lpips, num_workers=a.workers, config_hash=a.config_hash,
                  progress=not a.no_progress)
    if a.noisy:
        summary = evaluate_noisy(a.sigma, a.out_dir, **common)
    else:
        summary = evaluate_checkpoint(a.checkpoint, a.out_dir, setup=a.setup, expected_sigma=a.sigma, **common)
    m = summary["metrics"]
    print(f"{a.out_dir}: n={summary['n_images']} PSNR {m['psnr']['mean']} SSIM {m['ssim']['mean']} "
          f"LPIPS {m['lpips']['mean']} ({summary['lpips_status']})")
    if summary["lpips_status"] != "ok":
        print(f"note: {summary['lpips_message']}")
    return 0
