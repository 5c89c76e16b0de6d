"""Command-line front end of the data stages (inventory, sample, split, resize, noise, manifest)."""

import argparse
import sys

from cxrdenoise import stages
from cxrdenoise.errors import cli_entry

# stage name -> (function, its arguments as (flag, argparse options)); flags map onto keyword names.
REQUIRED = {"required": True}
INT = {"type": int, "required": True}
FLOAT = {"type": float, "required": True}
STAGES = {
    "inventory": (stages.inventory_stage, [("--roots", {"action": "append", "required": True}),
                                           ("--metadata-csv", {}), ("--out-csv", REQUIRED)]),
    "sample": (stages.sample_stage, [("--inventory-csv", REQUIRED), ("--n-images", INT), ("--seed", INT),
                                     ("--out-csv", REQUIRED)]),
    "split": (stages.split_stage, [("--sample-csv", REQUIRED), ("--train", FLOAT), ("--val", FLOAT),
                                   ("--seed", INT), ("--test-list", {}), ("--out-csv", REQUIRED),
                                   ("--out-json", REQUIRED)]),
    "resize": (stages.resize_stage, [("--split-csv", REQUIRED), ("--shard", INT), ("--images-per-shard", INT),
                                     ("--size", INT), ("--dtype", REQUIRED), ("--out-npy", REQUIRED)]),
    "noise": (stages.noise_stage, [("--clean-npy", REQUIRED), ("--sigma", FLOAT), ("--mean", FLOAT),
                                   ("--seed", INT), ("--out-npy", REQUIRED)]),
    "manifest": (stages.manifest_stage, [("--out-json", REQUIRED), ("--config-hash", {}),
                                         ("sidecars", {"nargs": "+"})]),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__)
    sub = p.add_subparsers(dest="stage", required=True)
    for name, (function, arguments) in STAGES.items():
        s = sub.add_parser(name, help=(function.__doc__ or "").strip().split("\n")[0] or None)
        for flag, options in arguments:
            s.add_argument(flag, **options)
        s.set_defaults(function=function)
    return p


@cli_entry
def main(argv=None) -> int:
    args = vars(parser().parse_args(argv))
    args.pop("stage")
    args.pop("function")(**args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
