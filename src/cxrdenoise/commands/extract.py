"""Safely unpack one NIH archive's PNGs and check their count (rule extract_archive); see cxrdenoise.download."""

from __future__ import annotations

import argparse

from cxrdenoise.download import extract_archive
from cxrdenoise.errors import cli_entry


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cxrdenoise extract", description=__doc__)
    parser.add_argument("--archive", required=True)
    parser.add_argument("--out-dir", required=True, help="folder the PNGs land in, flattened")
    parser.add_argument("--done", required=True, help="JSON written last, recording count, sha256, provenance")
    parser.add_argument("--expected", type=int, required=True, help="number of PNGs the archive must hold")
    parser.add_argument("--lock", default=None, help="sha256 lock file to verify the archive against")
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    found = extract_archive(args.archive, args.out_dir, args.done, args.expected, lock_path=args.lock)
    print(f"{args.out_dir}: {found} images")
    return 0
