"""Evaluate trained checkpoints on the test split (rule evaluate: every replicate of one trained run, one process),
or, with --noisy, score the noisy test images themselves as the "no denoising" baseline (rule evaluate_noisy);
see cxrdenoise.evaluate."""

from __future__ import annotations

import argparse
import sys
import traceback

from cxrdenoise.errors import CxrError, cli_entry


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cxrdenoise evaluate", description=__doc__)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--checkpoint", nargs="+",
                      help="results/train/{model}/sigma{sigma}/{setup}/rep{k}/best.pt; several (the replicates of "
                           "one run) are scored in one process, each into its --out-dir")
    what.add_argument("--noisy", action="store_true", help="score the noisy input itself")
    parser.add_argument("--data-dir", required=True, help="results/data (clean and noisy shards)")
    parser.add_argument("--out-dir", required=True, nargs="+",
                        help="folder for per_image.csv, summary.json, examples.npz; one per --checkpoint, same order")
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
    wanted = len(args.checkpoint) if args.checkpoint else 1
    if len(args.out_dir) != wanted:
        parser.error(f"{len(args.out_dir)} --out-dir for {wanted} {'--checkpoint' if args.checkpoint else '--noisy'}: "
                     "give one folder each")
    return args


def report(out_dir: str, summary: dict) -> None:
    m = summary["metrics"]
    print(f"{out_dir}: n={summary['n_images']} PSNR {m['psnr']['mean']} SSIM {m['ssim']['mean']} "
          f"LPIPS {m['lpips']['mean']} ({summary['lpips_status']})")
    if summary["lpips_status"] != "ok":
        print(f"note: {summary['lpips_message']}")


@cli_entry
def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    from cxrdenoise.evaluate import test_set, evaluate_checkpoint, evaluate_noisy  # torch: when the command runs

    common = dict(device=a.device, batch_size=a.batch_size, figure_images=a.figure_images,
                  lpips_enabled=not a.no_lpips, num_workers=a.workers, config_hash=a.config_hash,
                  progress=not a.no_progress)
    if a.noisy:
        report(a.out_dir[0], evaluate_noisy(a.sigma, a.out_dir[0], data_dir=a.data_dir, **common))
        return 0
    # the replicates share one process, one test set and one LPIPS scorer: start-up is paid once, not per replicate
    from cxrdenoise.denoise import resolve_device
    from cxrdenoise.lpips_weights import load_lpips

    dataset = test_set(a.data_dir, a.sigma)
    scorer = load_lpips(not a.no_lpips, None, resolve_device(a.device))
    run = dict(dataset=dataset, setup=a.setup, expected_sigma=a.sigma, scorer=scorer, **common)
    if len(a.checkpoint) == 1:  # one run: its error is the command's, as it always was
        report(a.out_dir[0], evaluate_checkpoint(a.checkpoint[0], a.out_dir[0], **run))
        return 0
    failed = []
    for checkpoint, out_dir in zip(a.checkpoint, a.out_dir):
        try:
            summary = evaluate_checkpoint(checkpoint, out_dir, **run)
        except Exception as err:  # one replicate's failure names it and does not hide the others' results
            failed.append(checkpoint)
            reason = str(err) if isinstance(err, CxrError) else traceback.format_exc()
            print(f"FAILED: {checkpoint} -> {out_dir}: {reason}", file=sys.stderr, flush=True)
            continue
        report(out_dir, summary)
    if failed:
        raise CxrError(f"evaluation failed for {len(failed)} of {len(a.checkpoint)} checkpoints: {', '.join(failed)}"
                       " (each named above with its reason)")
    return 0
