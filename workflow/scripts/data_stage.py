"""Command-line front end of the data stages (inventory, sample, split, resize, noise, manifest)."""

import argparse
import sys

from cxrdenoise import stages
from cxrdenoise.errors import cli_entry


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="stage", required=True)
    s = sub.add_parser("inventory")
    s.add_argument("--root", action="append", required=True)
    s.add_argument("--metadata")
    s.add_argument("--out", required=True)
    s = sub.add_parser("sample")
    s.add_argument("--inventory", required=True)
    s.add_argument("--n", type=int, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("split")
    s.add_argument("--sample", required=True)
    s.add_argument("--train", type=float, required=True)
    s.add_argument("--val", type=float, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--test-list")
    s.add_argument("--out", required=True)
    s.add_argument("--summary", required=True)
    s = sub.add_parser("resize")
    s.add_argument("--split", required=True)
    s.add_argument("--shard", type=int, required=True)
    s.add_argument("--per-shard", type=int, required=True)
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--dtype", required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("noise")
    s.add_argument("--clean", required=True)
    s.add_argument("--sigma", type=float, required=True)
    s.add_argument("--mean", type=float, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--out", required=True)
    s = sub.add_parser("manifest")
    s.add_argument("--out", required=True)
    s.add_argument("--config-hash")
    s.add_argument("sidecars", nargs="+")
    return p


@cli_entry
def main(argv=None) -> int:
    a = parser().parse_args(argv)
    if a.stage == "inventory":
        stages.inventory_stage(a.root, a.out, a.metadata)
    elif a.stage == "sample":
        stages.sample_stage(a.inventory, a.n, a.seed, a.out)
    elif a.stage == "split":
        stages.split_stage(a.sample, a.train, a.val, a.seed, a.out, a.summary, a.test_list)
    elif a.stage == "resize":
        stages.resize_stage(a.split, a.shard, a.per_shard, a.size, a.dtype, a.out)
    elif a.stage == "noise":
        stages.noise_stage(a.clean, a.sigma, a.mean, a.seed, a.out)
    else:
        stages.manifest_stage(a.sidecars, a.out, a.config_hash)
    return 0


if __name__ == "__main__":
    sys.exit(main())
