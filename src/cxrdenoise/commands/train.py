"""Train one (model, sigma, setup, replicate): `cxrdenoise train --model unet --sigma 0.1 --setup ddp2 --replicate 1
...` (rule train).

Thin command line over cxrdenoise.train.launch: it claims GPUs (CUDA only), then trains in this process or
starts torchrun for the DDP set-ups. Failures print one line (`error: ...`) and exit 1.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from cxrdenoise.errors import CxrError, cli_entry
from cxrdenoise.provenance import CONFIG_HASH_ENV, hash_config
from cxrdenoise.train.launch import launch
from cxrdenoise.train.settings import TrainSettings


def _json_arg(text: str, what: str) -> dict:
    """A JSON object given inline or as @path."""
    try:
        return json.loads(Path(text[1:]).read_text() if text.startswith("@") else text)
    except (OSError, json.JSONDecodeError) as err:
        raise CxrError(f"--{what}: not a JSON object ({err})") from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="cxrdenoise train", description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--sigma", required=True, help="sigma label as in the paths, e.g. 0.1")
    p.add_argument("--setup", required=True, help="gpu1 | dp2 | ddp2 | ddp2_amp")
    p.add_argument("--replicate", type=int, default=1,
                   help="replicate k of train.replicates (rep{k} in the paths): its initial weights' seed")
    p.add_argument("--data-dir", default="results/data")
    p.add_argument("--out-dir", required=True)
    p.add_argument("--settings", required=True,
                   help="JSON (or @file) with the keys training depends on: seed, models, noise.mean, train")
    p.add_argument("--config-hash", default=None,
                   help="hash of the whole resolved config, for provenance (default: $CXRDENOISE_CONFIG_HASH, "
                        "which Snakemake jobs inherit from common.smk, else the hash of --settings)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads for the job (split over processes)")
    return p.parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    subset = _json_arg(args.settings, "settings")
    settings = TrainSettings.from_config(subset, args.model, args.sigma, args.setup, threads=args.threads,
                                         replicate=args.replicate)
    chash = args.config_hash or os.environ.get(CONFIG_HASH_ENV) or hash_config(subset)
    launch(settings, args.data_dir, args.out_dir, chash)
    return 0
