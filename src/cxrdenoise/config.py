"""Loading and validating the pipeline config.

Snakemake's own validation prints the whole JSON-schema report; users need one line that names the key and
the bad value, so validation errors are re-raised in that form.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import jsonschema
import yaml

from .errors import CxrError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"


def sigma_label(sigma: float | str) -> str:
    """The noise level as it appears in paths (`sigma0.1`): shortest exact decimal form."""
    return f"{float(sigma):g}"


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(p) for p in error.absolute_path]
    return ".".join(parts) if parts else "(top level)"


def _one_line(error: jsonschema.ValidationError) -> str:
    message = " ".join(error.message.split())  # schema messages may span lines
    return f"config key {_key_path(error)}: {message}"


def validate_config(config: dict[str, Any], schema_path: str | Path = SCHEMA_PATH) -> dict[str, Any]:
    """Validate `config` in place, filling schema defaults; raise CxrError naming the first bad key."""
    with open(schema_path) as fh:
        schema = yaml.safe_load(fh)
    validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_cls(schema).iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise CxrError(_one_line(errors[0]))
    _check_consistency(config)
    return config


def _check_consistency(config: Mapping[str, Any]) -> None:
    """Rules the schema cannot express."""
    fractions = config["split"]["fractions"]
    if fractions["train"] + fractions["val"] >= 1:
        raise CxrError(
            f"config key split.fractions: train + val = {fractions['train'] + fractions['val']:g} "
            "leaves nothing for test (must be < 1)"
        )
    source = config["data"]["source"]
    if source == "local" and not config["data"]["local"].get("image_dir"):
        raise CxrError("config key data.local.image_dir: required when data.source is 'local'")
    if config["split"]["mode"] == "official" and source != "synthetic":
        if not config["data"][source].get("test_list"):
            raise CxrError(f"config key data.{source}.test_list: required when split.mode is 'official'")
    labels = [sigma_label(s) for s in config["noise"]["sigmas"]]
    if len(set(labels)) != len(labels):
        raise CxrError(f"config key noise.sigmas: duplicate noise levels {labels}")
    from .train.setups import get_setup  # no torch import: safe for Snakemake's parse

    train = config.get("train") or {}
    if train.get("sync_bn") and train.get("device", "cuda") == "cpu" and any(
        get_setup(s).ddp for s in train.get("setups", [])
    ):
        raise CxrError(
            "config key train.sync_bn: torch's SyncBatchNorm needs CUDA, but train.device is 'cpu' with a DDP setup; "
            "set train.sync_bn: false"
        )


def load_config(*paths: str | Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read and deep-merge YAML files (later ones win, as with Snakemake's --configfile), then validate."""
    merged: dict[str, Any] = {}
    for path in paths:
        try:
            with open(path) as fh:
                data = yaml.safe_load(fh) or {}
        except OSError as err:
            raise CxrError(f"{path}: cannot read config ({err.strerror})") from None
        except yaml.YAMLError as err:
            raise CxrError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
        deep_merge(merged, data)
    if overrides:
        deep_merge(merged, copy.deepcopy(dict(overrides)))
    return validate_config(merged)


def deep_merge(base: dict[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = copy.deepcopy(value)
    return base
