"""Everything one training job needs to know, taken from the config in one place.

The launcher, every DDP worker and the resume check read the same frozen object, so a rank can never train with
a different learning rate or batch than the record says.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Mapping

from ..errors import CxrError
from . import setups
from .setups import get_setup, job_nodes, job_processes_per_node

# Settings that change the trained weights: a `last.pt` written under different values is not resumed.
_MATH_KEYS = ("model", "model_kwargs", "setup", "sigma", "noise_mean", "lr", "batch_per_gpu", "seed", "device",
              "nodes", "replicate", "sync_bn", "grad_clip")


@dataclass(frozen=True)
class TrainSettings:
    # Defaults of config keys are the schema's (workflow/schemas/config.schema.yaml): tests/test_config_schema.py
    # holds them equal.
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
    timing_exclusive: bool = True
    log_every: int = 50
    keep_last: bool = False  # keep last.pt after a finished run (it holds optimizer state: 3x the weights)
    threads: int | None = None  # CPU threads for the whole job (Snakemake `threads`), split over processes
    nodes: int = 1  # nodes of a DDP job (train.nodes): torchrun --nnodes; gpu1 and dp2 always run on one node
    replicate: int = 1  # which of the train.replicates runs this is (rep{k} in the paths): init and order differ
    sync_bn: bool = False  # DDP: SyncBatchNorm instead of per-rank BatchNorm (train.sync_bn); off, as in the study
    # DDP processes (GPUs) on each node of a multi-node job (train.processes_per_node); None: the setup's own count
    processes_per_node: int | None = None
    grad_clip: float = 0.0  # max global L2 norm of the gradients (train.grad_clip); 0 = no clipping (the study)
    fast: dict = field(default_factory=dict)  # train.fast: the fast set-ups' switches (cxrdenoise.train.fastpath)

    def __post_init__(self) -> None:
        get_setup(self.setup)
        if self.device not in ("cpu", "cuda"):
            raise CxrError(f"train.device must be 'cpu' or 'cuda', not {self.device!r}")
        for key in ("epochs", "batch_per_gpu", "log_every"):
            if int(getattr(self, key)) < 1:
                raise CxrError(f"train.{key} must be at least 1, not {getattr(self, key)!r}")
        if int(self.nodes) < 1:
            raise CxrError(f"train.nodes must be at least 1, not {self.nodes!r}")
        setup = get_setup(self.setup)
        if self.processes_per_node is not None and not 1 <= int(self.processes_per_node) <= setup.processes:
            raise CxrError(f"train.processes_per_node must be between 1 and {setup.processes} (the processes of "
                           f"setup {self.setup}), not {self.processes_per_node!r}")
        if self.workers < 0:
            raise CxrError(f"train.workers must be >= 0, not {self.workers!r}")
        if not self.lr > 0:
            raise CxrError(f"train.lr must be positive, not {self.lr!r}")
        if isinstance(self.replicate, bool) or not isinstance(self.replicate, int) or self.replicate < 1:
            raise CxrError(f"replicate must be an integer >= 1 (rep1, rep2, ...), not {self.replicate!r}")
        if self.sync_bn and self.device == "cpu" and get_setup(self.setup).ddp:
            raise CxrError(
                f"train.sync_bn: torch's SyncBatchNorm needs CUDA, but setup {self.setup} runs on the cpu; "
                "set train.sync_bn: false"
            )
        if not float(self.grad_clip) >= 0:
            raise CxrError(f"train.grad_clip must be >= 0 (0 = off), not {self.grad_clip!r}")
        from .fastopts import fast_options

        fast_options(self.fast)  # an unknown switch or bad value stops here, naming it

    @property
    def init_seed(self) -> int:
        """Seed of the initial weights: replicate 1 uses the config seed itself (so one replicate is exactly the
        single run of before), replicate k > 1 a seed derived from (seed, "init", k). Data, noise and split are
        the same for every replicate; the batch order is `order_seed`'s."""
        return init_seed(self.seed, self.replicate)

    @property
    def order_seed(self) -> int:
        """Seed of the training batch order (DistributedSampler's `seed`, shuffled by `order_seed + epoch`, on
        the DataLoader and the device-data path alike): the config seed for replicate 1 (today's order, byte for
        byte), a seed derived from (seed, "order", k) for replicate k > 1, so replicates differ in their initial
        weights and their batch order, never in data, noise or split."""
        return order_seed(self.seed, self.replicate)

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], model: str, sigma: str, setup: str, threads: int | None = None,
        replicate: int = 1,
    ) -> "TrainSettings":
        """Build from the validated pipeline config, or the subset of it rule_settings_json passes to a job
        (sections `seed`, `models`, `noise`, `train`). A key the given config lacks (a hand-written --settings,
        a test's) takes the dataclass field's default, which tests/test_config_schema.py holds equal to the
        schema's, so no default is written here a second time."""
        models = config["models"]
        if model not in models:
            raise CxrError(f"model {model!r} has no entry under `models:` in the config (have: {', '.join(models)})")
        default = {f.name: f.default for f in fields(cls)}
        train = config.get("train", {})

        def pick(name: str, kind):
            return kind(train.get(name, default[name]))

        return cls(
            model=model,
            setup=setup,
            sigma=str(sigma),
            model_kwargs=dict(models[model] or {}),
            noise_mean=float(config.get("noise", {}).get("mean", default["noise_mean"])),
            epochs=pick("epochs", int),
            lr=pick("lr", float),
            batch_per_gpu=pick("batch_per_gpu", int),
            workers=pick("workers", int),
            seed=int(config.get("seed", default["seed"])),
            device=pick("device", str),
            preload=pick("preload", bool),
            timing_exclusive=pick("timing_exclusive", bool),
            log_every=pick("log_every", int),
            keep_last=pick("keep_last", bool),
            threads=threads,
            nodes=job_nodes(config, setup),
            replicate=int(replicate),
            sync_bn=pick("sync_bn", bool),
            processes_per_node=job_processes_per_node(config, setup) if job_nodes(config, setup) > 1 else None,
            grad_clip=pick("grad_clip", float),
            fast=dict(train.get("fast") or {}),  # absent for the study's set-ups (rule_settings_json drops it)
        )

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TrainSettings":
        return cls(**dict(d))

    def to_dict(self) -> dict:
        return asdict(self)

    # the counts of this job (setups.py computes every count)
    def per_node(self) -> int:
        return setups.processes_per_node(self.setup, self.nodes, self.processes_per_node)

    def world_size(self) -> int:
        return setups.world_size(self.setup, self.nodes, self.processes_per_node)

    def global_batch(self) -> int:
        return setups.global_batch(self.setup, self.batch_per_gpu, self.nodes, self.processes_per_node)

    def fingerprint(self, data_digest: str = "", block: str | None = None) -> str:
        """Hash of what determines the weights (not epochs): resuming is only allowed when it matches.

        `block` is the U-Net block the model was built with (its default filled in), so a last.pt of one block
        is never resumed into the other when the config leaves `block` out."""
        payload = {k: getattr(self, k) for k in _MATH_KEYS}
        payload.update(processes_per_node=self.per_node())  # more ranks: a larger global batch
        if get_setup(self.setup).fast:  # the fast set-ups' math switches (amp dtype, layout, compile, data path)
            from .fastopts import FAST_MATH_KEYS, fast_options

            payload["fast"] = {k: fast_options(self.fast)[k] for k in FAST_MATH_KEYS}
        if block is not None:
            payload["model_kwargs"] = {**self.model_kwargs, "block": block}
        payload["data"] = data_digest
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def init_seed(seed: int, replicate: int) -> int:
    """The initial-weights seed of replicate `replicate` (1-based): the config seed for replicate 1, else a
    63-bit seed derived from (seed, "init", replicate) (cxrdenoise.seeding), recorded in record.json."""
    from ..seeding import replicate_seed

    return replicate_seed(seed, "init", replicate)


def order_seed(seed: int, replicate: int) -> int:
    """The batch-order seed of replicate `replicate` (1-based): the config seed for replicate 1, else a 63-bit
    seed derived from (seed, "order", replicate) (cxrdenoise.seeding), recorded in record.json."""
    from ..seeding import replicate_seed

    return replicate_seed(seed, "order", replicate)


def replicate_count(config: Mapping[str, Any]) -> int:
    """train.replicates: how many times each (model, sigma, setup) is trained (default 1, as in the study)."""
    n = config.get("train", {}).get("replicates", 1)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise CxrError(f"train.replicates must be an integer >= 1, not {n!r}")
    return n


# train keys that change how a job is scheduled, not what it trains: not passed to the job, and editing them
# does not make Snakemake retrain
_SCHEDULING_KEYS = ("models", "setups", "setups_by_model", "nodes", "processes_per_node", "request_gpus_on_cpu",
                    "replicates", "replicates_by_model")


def rule_settings_json(config: Mapping[str, Any], model: str, setup: str | None = None) -> str:
    """The config keys one training job depends on, as the JSON the Snakemake rule passes to --settings.

    Also the rule's params, so Snakemake re-runs a job exactly when one of these changed (not when the list of
    models or setups to train, or another stage's keys, changed). `train.nodes` (and `train.processes_per_node`) are
    included only for a DDP `setup` running on more than one node, so setting them leaves gpu1/dp2 (and 1-node)
    jobs alone; `train.fast` only for the fast set-ups.
    """
    train = {k: v for k, v in config["train"].items() if k not in _SCHEDULING_KEYS}
    if setup is not None and job_nodes(config, setup) > 1:
        train["nodes"] = job_nodes(config, setup)
        if config["train"].get("processes_per_node") is not None:
            train["processes_per_node"] = job_processes_per_node(config, setup)
    if setup is not None and not get_setup(setup).fast:
        train.pop("fast", None)  # the study's set-ups ignore train.fast: editing it retrains only the fast ones
    subset = {
        "seed": config["seed"],
        "models": {model: config["models"].get(model, {})},
        "noise": {"mean": config["noise"]["mean"]},
        "train": train,
    }
    return json.dumps(subset, sort_keys=True)
