"""`cxrdenoise data STAGE`: the file-to-file data stages (inventory, sample, split, resize, noise, manifest).

One function per Snakemake rule: read inputs, write outputs atomically. The rules call them through `main` (the
argparse table at the end maps each flag onto a keyword of the function); tests call the functions directly.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TYPE_CHECKING

from ..atomic import write_json, write_text
from ..errors import CxrError, cli_entry
from ..noise import make_noise
from ..provenance import provenance
from ..shards import noise_shard, resize_shard, write_manifest
from ..split import read_test_list, split_sample, split_summary, target_counts

if TYPE_CHECKING:  # pandas is imported where a CSV is read: the noise and manifest jobs read none
    import pandas as pd


def write_csv(df: pd.DataFrame, path: str | Path) -> None:
    write_text(path, df.to_csv(index=False))


def read_csv(path: str | Path) -> pd.DataFrame:
    import pandas as pd

    try:
        return pd.read_csv(path, dtype={"image_id": str, "view_position": str}, keep_default_na=False)
    except OSError as err:
        raise CxrError(f"{path}: cannot read ({err.strerror})") from None


def inventory_stage(roots: list[str], out_csv: str, metadata_csv: str | None = None) -> pd.DataFrame:
    """List every readable image under the roots with its patient, follow-up and view (inventory.csv)."""
    from ..inventory import build_inventory  # pandas: imported by the stages that read or write a CSV

    inv = build_inventory(roots, metadata_csv)
    write_csv(inv, out_csv)
    print(f"inventory: {len(inv)} images of {inv['patient_id'].nunique()} patients")
    return inv


def sample_stage(inventory_csv: str, n_images: int, seed: int, out_csv: str) -> pd.DataFrame:
    """Draw the configured number of images with the config seed (sample.csv)."""
    from ..sampling import sample_images

    sample = sample_images(read_csv(inventory_csv), n_images, seed)
    write_csv(sample, out_csv)
    print(f"sample: {len(sample)} images of {sample['patient_id'].nunique()} patients (seed {seed})")
    return sample


def split_stage(sample_csv: str, train: float, val: float, seed: int, out_csv: str, out_json: str,
                test_list: str | None = None) -> pd.DataFrame:
    """Split the sample by patient into train/val/test, or by the official test list (split.csv, split.json)."""
    sample = read_csv(sample_csv)
    test_ids = read_test_list(test_list) if test_list else None
    split = split_sample(sample, train, val, seed, test_ids)
    targets = None if test_ids is not None else target_counts(len(sample), train, val)
    summary = split_summary(split, targets)
    summary.update({"mode": "official" if test_ids is not None else "patient",
                    "fractions": {"train": train, "val": val}, "seed": seed,
                    "provenance": provenance(device="cpu")})  # a CPU stage: labelled so, without importing torch
    write_csv(split, out_csv)
    write_json(out_json, summary)
    counts, patients = summary["counts"], summary["patients"]
    print("split (images / patients): " + ", ".join(f"{k} {counts[k]} / {patients[k]}" for k in counts)
          + ("" if summary.get("exact", True) else f"; closest to targets {targets}"))
    return split


def resize_stage(split_csv: str, shard: int, images_per_shard: int, size: int, dtype: str, out_npy: str) -> dict:
    """Resize one shard of the split's images to size x size into a memory-mappable .npy with its sidecar."""
    meta = resize_shard(read_csv(split_csv), shard, images_per_shard, size, dtype, out_npy)
    print(f"shard {shard}: {meta['shape'][0]} images, {meta['colour_converted']} converted from colour")
    return meta


def noise_stage(clean_npy: str, sigma: float, mean: float | None, seed: int, out_npy: str,
                noise: str = "gaussian_study", noise_params: dict | None = None) -> dict:
    """Add noise to one clean shard: the registered noise type `noise` (cxrdenoise.noise) with its parameters at
    level `sigma`; by default the study's obfuscation, clip(clean + N(mean, sigma^2), 0, 1)."""
    params = dict(noise_params or {})
    if mean is not None:
        params["mean"] = mean
    meta = noise_shard(clean_npy, sigma, make_noise(noise, params), seed, out_npy)
    print(f"noisy shard {meta['shard']} sigma {sigma:g}: {meta['shape'][0]} images")
    return meta


def manifest_stage(sidecars: list[str], out_json: str, config_hash: str | None = None) -> dict:
    """Gather the shard sidecars (with their sha256) into the manifest that every reading job verifies."""
    manifest = write_manifest(sidecars, out_json, provenance=provenance(config_hash=config_hash, device="cpu"))
    print(f"manifest: {manifest['n_images']} images in {len(manifest['shards'])} shards -> {out_json}")
    return manifest


# stage name -> (function, its arguments as (flag, argparse options)); flags map onto keyword names.
REQUIRED = {"required": True}
INT = {"type": int, "required": True}
FLOAT = {"type": float, "required": True}
STAGES = {
    "inventory": (inventory_stage, [("--roots", {"action": "append", "required": True}),
                                    ("--metadata-csv", {}), ("--out-csv", REQUIRED)]),
    "sample": (sample_stage, [("--inventory-csv", REQUIRED), ("--n-images", INT), ("--seed", INT),
                              ("--out-csv", REQUIRED)]),
    "split": (split_stage, [("--sample-csv", REQUIRED), ("--train", FLOAT), ("--val", FLOAT), ("--seed", INT),
                            ("--test-list", {}), ("--out-csv", REQUIRED), ("--out-json", REQUIRED)]),
    "resize": (resize_stage, [("--split-csv", REQUIRED), ("--shard", INT), ("--images-per-shard", INT),
                              ("--size", INT), ("--dtype", REQUIRED), ("--out-npy", REQUIRED)]),
    "noise": (noise_stage, [("--clean-npy", REQUIRED), ("--sigma", FLOAT),
                            ("--mean", {"type": float, "help": "the Gaussian types' mean parameter"}),
                            ("--seed", INT), ("--out-npy", REQUIRED),
                            ("--noise", {"default": "gaussian_study", "help": "a registered noise type "
                                         "(cxrdenoise.noise; default: %(default)s)"}),
                            ("--noise-params", {"type": json.loads, "help": "the noise type's parameters, a JSON "
                                                "object (--mean adds 'mean')"})]),
    "manifest": (manifest_stage, [("--out-json", REQUIRED), ("--config-hash", {}), ("sidecars", {"nargs": "+"})]),
}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="cxrdenoise data", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="stage", required=True, metavar="STAGE")
    for name, (function, arguments) in STAGES.items():
        s = sub.add_parser(name, help=(function.__doc__ or "").strip().split("\n")[0] or None)
        for flag, options in arguments:
            s.add_argument(flag, **options)
        s.set_defaults(function=function)
    return p


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    return parser().parse_args(argv)


@cli_entry
def main(argv: list[str] | None = None) -> int:
    args = vars(parse_args(argv))
    args.pop("stage")
    args.pop("function")(**args)
    return 0
