"""The ``cxrdenoise`` console script: one argparse subcommand per job.

Adding a subcommand: write ``_add_<name>(subparsers)`` below, which creates the subparser, adds its arguments
and sets ``handler="package.module:function"`` (the function takes the parsed namespace and returns an exit
status), then append it to ``COMMANDS``. Handlers are imported only when their command runs, so ``--help``
stays fast and one command's heavy imports (torch) do not slow the others. A ``CxrError`` raised anywhere
becomes one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import Callable

from . import __version__
from .errors import cli_entry


def _add_denoise(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "denoise",
        help="denoise your own images with a trained checkpoint",
        description="Denoise every image in a folder with a best.pt: any size (reflect-padded to a multiple of 16 "
        "and cropped back), RGB/RGBA converted to grey, written as 8-bit PNGs with the same names.",
    )
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
    parser.set_defaults(handler="cxrdenoise.denoise:run")


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [_add_denoise]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxrdenoise", description="Chest X-ray denoising: train, evaluate, apply.")
    parser.add_argument("--version", action="version", version=f"cxrdenoise {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in COMMANDS:
        add(subparsers)
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module_name, func_name = args.handler.split(":")
    handler = getattr(importlib.import_module(module_name), func_name)
    return handler(args)


if __name__ == "__main__":
    raise SystemExit(main())
