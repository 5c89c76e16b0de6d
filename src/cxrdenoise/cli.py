"""The ``cxrdenoise`` console script: one subcommand per job; the Snakemake rules call these.

Each subcommand is a module ``cxrdenoise.commands.<name>`` with ``main(argv) -> int`` and its own argparse parser
(so ``cxrdenoise train --help`` is that module's help). Modules are imported only when their command runs, so
``cxrdenoise --help`` stays fast and one command's heavy imports (torch) do not slow the others. A ``CxrError``
raised anywhere becomes one line on stderr and exit status 1 (``cli_entry``).
Adding a subcommand: write the module, then add one line to ``COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import cli_entry

# name -> one-line help, in the order of the pipeline; the module is cxrdenoise.commands.<name>
COMMANDS = {
    "download": "download one NIH ChestX-ray14 archive with resume and retries",
    "extract": "unpack one downloaded archive's PNGs safely and check their count",
    "phantoms": "write synthetic chest-radiograph phantoms (the demo's data)",
    "data": "data stages: inventory, sample, split, resize, noise, manifest",
    "train": "train one (model, sigma, setup, replicate); DDP set-ups start torchrun",
    "evaluate": "score a checkpoint (or the noisy input itself) on the test split",
    "classical": "classical baselines (BM3D, NLM, TV, wavelet, Gaussian): score one shard, merge shards",
    "tables": "build one of the study's tables (III-VI)",
    "claims": "build the claims table or the paired comparisons",
    "figures": "draw Figure 4, the example figures or the training curves",
    "provenance": "write the report's provenance page",
    "privacy": "privacy stage: attacker, score, table, figure",
    "federated": "federated stage (Flower): sites, run, alone, evaluate, table, figure",
    "denoise": "denoise your own images with a trained checkpoint",
}


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser: lists the subcommands (each parses its own arguments)."""
    parser = argparse.ArgumentParser(
        prog="cxrdenoise", description="Chest X-ray denoising: the pipeline's jobs, and denoising your own images.",
        epilog="`cxrdenoise COMMAND --help` shows a command's arguments.")
    parser.add_argument("--version", action="version", version=f"cxrdenoise {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, help_text in COMMANDS.items():
        subparsers.add_parser(name, help=help_text, add_help=False)
    return parser


@cli_entry
def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in COMMANDS:
        build_parser().parse_args(argv)  # prints the help, the version, or "invalid choice" and exits
        return 2
    command = importlib.import_module(f"cxrdenoise.commands.{argv[0]}")
    return command.main(argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
