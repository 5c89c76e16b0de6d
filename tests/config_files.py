"""Config files read as `snakemake --configfile A --configfile B` reads them, for tests: YAML files deep-merged
(later ones win), then validated by the pipeline's own `validate_config`. The pipeline itself gets its config
from Snakemake, so this lives beside the tests."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Mapping

import yaml

from cxrdenoise.config import validate_config
from cxrdenoise.errors import CxrError


def load_config(*paths: str | Path, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Read and deep-merge YAML files (later ones win), then `overrides`, then validate."""
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
