"""Denoise every image in a folder with a best.pt: any size (reflect-padded to a multiple of 16 and cropped back),
RGB/RGBA converted to grey, written as greyscale PNGs with the same names. Named pipes, sockets and devices in the
folder are skipped with a note; an image with a NaN or infinite pixel is refused, naming it."""

from __future__ import annotations

import argparse
from pathlib import Path

from cxrdenoise.errors import cli_entry


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cxrdenoise denoise", description=__doc__)
    parser.add_argument("--checkpoint", required=True, type=Path, help="a best.pt written by training")
    parser.add_argument("--input", required=True, type=Path, help="folder of images (PNG, JPEG, ...; any size)")
    parser.add_argument("--output", required=True, type=Path,
                        help="folder for the denoised greyscale PNGs (same names; created if absent)")
    parser.add_argument("--bits", type=int, choices=(8, 16), default=8,
                        help="bit depth of the output PNGs: 8 (default, 256 grey levels) or 16 (65536 levels)")
    parser.add_argument("--overwrite", action="store_true", help="replace output files that already exist")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass (default 8)")
    parser.add_argument("--device", choices=("cpu", "cuda"), default=None, help="default: cuda when available")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    from cxrdenoise.denoise import denoise_folder  # imports torch: only when the command runs

    args = parse_args(argv)
    written = denoise_folder(args.checkpoint, args.input, args.output, batch_size=args.batch_size,
                             device=args.device, progress=not args.no_progress, bits=args.bits,
                             overwrite=args.overwrite)
    print(f"denoised {len(written)} image(s) into {args.output} ({args.bits}-bit PNGs)")
    return 0
