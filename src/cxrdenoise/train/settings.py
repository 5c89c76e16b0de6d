"""Everything one training job needs to know, taken from the config in one place.

The launcher, every DDP worker and the resume check read the same frozen object, so a rank can never train with
a different learning rate or batch than the record says.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Mapping

from ..errors import CxrError
from .setups import get_setup

# Settings that change the trained weights: a `last.pt` written under different values is not resumed.
_MATH_KEYS = ("model", "model_kwargs", "setup", "sigma", "noise_mean", "lr", "batch_per_gpu", "seed", "device")


@dataclass(frozen=True)
class TrainSettings:
    model: str
    setup: str
    sigma: str  # the label used in paths, e.g. "0.1"
    model_kwargs: dict = field(default_factory=dict)
    noise_mean: float = 0.1
    epochs: int = 50
    lr: float = 1e-3
    batch_per_gpu: int = 16
    workers: int = 4
    seed: int = 2025
    device: str = "cuda"
    preload: bool = False
    timing_exclusive: bool = False
    log_every: int = 50
    keep_last: bool = False  # keep last.pt after a finished run (it holds optimizer state: 3x the weights)
    threads: int | None = None  # CPU threads for the whole job (Snakemake `threads`), split over processes

    def __post_init__(self) -> None:
        get_setup(self.setup)
        if self.device not in ("cpu", "cuda"):
            raise CxrError(f"train.device must be 'cpu' or 'cuda', not {self.device!r}")
        for key in ("epochs", "batch_per_gpu", "log_every"):
            if int(getattr(self, key)) < 1:
                raise CxrError(f"train.{key} must be at least 1, not {getattr(self, key)!r}")
        if self.workers < 0:
            raise CxrError(f"train.workers must be >= 0, not {self.workers!r}")
        if not self.lr > 0:
            raise CxrError(f"train.lr must be positive, not {self.lr!r}")

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], model: str, sigma: str, setup: str, threads: int | None = None
    ) -> "TrainSettings":
        """Build from the resolved pipeline config (sections `seed`, `models`, `noise`, `train`)."""
        train = config.get("train", {})
        models = config.get("models", {})
        if model not in models:
            raise CxrError(f"model {model!r} has no entry under `models:` in the config (have: {', '.join(models)})")
        return cls(
            model=model,
            setup=setup,
            sigma=str(sigma),
            model_kwargs=dict(models[model] or {}),
            noise_mean=float(config.get("noise", {}).get("mean", 0.1)),
            epochs=int(train.get("epochs", 50)),
            lr=float(train.get("lr", 1e-3)),
            batch_per_gpu=int(train.get("batch_per_gpu", 16)),
            workers=int(train.get("workers", 4)),
            seed=int(config.get("seed", 2025)),
            device=str(train.get("device", "cuda")),
            preload=bool(train.get("preload", False)),
            timing_exclusive=bool(train.get("timing_exclusive", False)),
            log_every=int(train.get("log_every", 50)),
            keep_last=bool(train.get("keep_last", False)),
            threads=threads,
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainSettings":
        return cls(**dict(d))

    def to_dict(self) -> dict:
        return asdict(self)

    def fingerprint(self, data_digest: str = "") -> str:
        """Hash of what determines the weights (not epochs): resuming is only allowed when it matches."""
        payload = {k: getattr(self, k) for k in _MATH_KEYS}
        payload["data"] = data_digest
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def rule_settings_json(config: Mapping[str, Any], model: str) -> str:
    """The config keys one training job depends on, as the JSON the Snakemake rule passes to --settings.

    Also the rule's params, so Snakemake re-runs a job exactly when one of these changed (not when the list of
    models or setups to train, or another stage's keys, changed).
    """
    train = {k: v for k, v in config["train"].items() if k not in ("models", "setups")}
    subset = {
        "seed": config["seed"],
        "models": {model: config["models"].get(model, {})},
        "noise": {"mean": config["noise"]["mean"]},
        "train": train,
    }
    return json.dumps(subset, sort_keys=True)
