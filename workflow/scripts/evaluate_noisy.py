"""Score the noisy test images themselves, the "no denoising" baseline (rule evaluate_noisy)."""

from __future__ import annotations

import argparse

from cxrdenoise.errors import cli_entry
from cxrdenoise.evaluate import evaluate_noisy


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", required=True, help="results/data (clean and noisy shards)")
    parser.add_argument("--out-dir", required=True, help="folder for per_image.csv, summary.json, examples.npz")
    parser.add_argument("--sigma", required=True)
    parser.add_argument("--device", choices=("cpu", "cuda"), required=True, help="where LPIPS runs")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--figure-images", type=int, default=3)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    parser.add_argument("--no-lpips", action="store_true", help="evaluate.lpips: false")
    parser.add_argument("--config-hash", help="sha256 of the resolved config, for provenance")
    parser.add_argument("--no-progress", action="store_true")
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    summary = evaluate_noisy(
        a.sigma, a.out_dir, data_dir=a.data_dir, device=a.device, batch_size=a.batch_size,
        figure_images=a.figure_images, lpips_enabled=not a.no_lpips, num_workers=a.workers,
        config_hash=a.config_hash, progress=not a.no_progress,
    )
    m = summary["metrics"]
    print(f"{a.out_dir}: n={summary['n_images']} PSNR {m['psnr']['mean']} SSIM {m['ssim']['mean']} "
          f"LPIPS {m['lpips']['mean']} ({summary['lpips_status']})")
    if summary["lpips_status"] != "ok":
        print(f"note: {summary['lpips_message']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
