"""Write synthetic chest-radiograph phantoms with NIH-style names and a Data_Entry-style metadata CSV.

Usage: cxrdenoise phantoms --out-dir resources/synthetic --patients 60 --max-follow-ups 4 --size 256 --seed 2025
Writes {out-dir}/images/{patient:08d}_{follow_up:03d}.png and {out-dir}/Data_Entry_synthetic.csv.
"""

from __future__ import annotations

import argparse
import time

from cxrdenoise.errors import cli_entry
from cxrdenoise.phantoms import generate_phantoms


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cxrdenoise phantoms", description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", required=True, help="folder that receives images/ and Data_Entry_synthetic.csv")
    parser.add_argument("--patients", type=int, required=True, help="data.synthetic.patients")
    parser.add_argument("--max-follow-ups", type=int, required=True, help="data.synthetic.max_follow_ups")
    parser.add_argument("--size", type=int, required=True, help="data.synthetic.size (pixels, square)")
    parser.add_argument("--seed", type=int, required=True, help="the config's seed")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start = time.perf_counter()
    table = generate_phantoms(args.out_dir, args.patients, args.max_follow_ups, args.size, args.seed,
                              progress=not args.no_progress)
    print(f"wrote {len(table)} phantoms of {table['Patient ID'].nunique()} patients "
          f"({args.size}x{args.size}, seed {args.seed}) to {args.out_dir} in {time.perf_counter() - start:.1f} s")
    return 0
