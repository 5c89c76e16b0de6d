"""The four training set-ups of the study, and two fast ones beside them, by name; and every count derived
from them: GPUs, nodes and processes of a job.

One table says how each set-up uses hardware (processes, GPUs, DataParallel, DDP, AMP), and the functions below
turn it and the config into the counts the Snakemake rule requests, the launcher claims and starts, and the
records state, so none of them re-derives a count from the name. Imports no torch (Snakemake's parse uses it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Mapping

from ..errors import CxrError


@dataclass(frozen=True)
class Setup:
    """How one set-up runs: `processes` workers, each driving `gpus // processes` GPUs."""

    name: str
    label: str  # as in the study's tables
    processes: int  # world size (torchrun --nproc_per_node)
    gpus: int  # GPUs the set-up is meant to use
    data_parallel: bool  # nn.DataParallel inside one process
    ddp: bool  # DistributedDataParallel, one process per GPU
    amp: bool  # autocast (+ GradScaler on CUDA)
    fast: bool = False  # the fast paths of `train.fast` (cxrdenoise.train.fastpath); False: the study's loop

    def global_batch(self, batch_per_gpu: int, nodes: int = 1) -> int:
        """Images per optimiser step: per-GPU batch times the GPUs that share one step (on every node)."""
        return batch_per_gpu * self.gpus * nodes

    def batch_per_process(self, batch_per_gpu: int) -> int:
        """What one process's DataLoader yields: DP splits its batch over its GPUs, DDP does not."""
        return self.global_batch(batch_per_gpu) // self.processes

    def to_dict(self) -> dict:
        return asdict(self)


SETUPS: dict[str, Setup] = {
    s.name: s
    for s in (
        Setup("gpu1", "1 GPU", processes=1, gpus=1, data_parallel=False, ddp=False, amp=False),
        Setup("dp2", "2 GPUs DP", processes=1, gpus=2, data_parallel=True, ddp=False, amp=False),
        Setup("ddp2", "2 GPUs DDP", processes=2, gpus=2, data_parallel=False, ddp=True, amp=False),
        Setup("ddp2_amp", "2 GPUs DDP+AMP", processes=2, gpus=2, data_parallel=False, ddp=True, amp=True),
        # not the study's: one GPU (and two) done well, beside the study's set-ups in Tables IV/V
        Setup("gpu1_fast", "1 GPU, fast paths", processes=1, gpus=1, data_parallel=False, ddp=False, amp=True,
              fast=True),
        Setup("ddp2_fast", "2 GPUs DDP, fast paths", processes=2, gpus=2, data_parallel=False, ddp=True, amp=True,
              fast=True),
    )
}


def get_setup(name: str) -> Setup:
    try:
        return SETUPS[name]
    except KeyError:
        raise CxrError(f"unknown training setup {name!r}; choose one of {', '.join(SETUPS)}") from None


def gpus_needed(
    name: str, device: str, nodes: int = 1, request_on_cpu: bool = False, per_node: int | None = None
) -> int:
    """GPUs a job of this set-up occupies in all (the rule's `resources: gpu=`, which the SLURM executor turns
    into `sbatch --gpus=N`, a count per job): the set-up's GPUs (or `per_node`, train.processes_per_node of a
    multi-node DDP job: one GPU per process) on each of its `nodes`. None when training on the
    CPU, unless `request_on_cpu` (config `train.request_gpus_on_cpu`: the scheduler still hands out the GPUs,
    training ignores them)."""
    if device == "cpu" and not request_on_cpu:
        return 0
    return (get_setup(name).gpus if per_node is None else per_node) * nodes


def processes_per_node(name: str, nodes: int = 1, requested: int | None = None) -> int:
    """Processes (one per GPU under DDP) on each node of a job: `requested` (train.processes_per_node) for a DDP
    set-up on more than one node when set (e.g. ddp2 as one process on each of 2 nodes), else the set-up's own."""
    if get_setup(name).ddp and nodes > 1 and requested is not None:
        return int(requested)
    return get_setup(name).processes


def world_size(name: str, nodes: int = 1, requested: int | None = None) -> int:
    """Processes of the whole job (all nodes): torchrun's WORLD_SIZE for DDP, 1 otherwise."""
    return processes_per_node(name, nodes, requested) * nodes if get_setup(name).ddp else 1


def global_batch(name: str, batch_per_gpu: int, nodes: int = 1, requested: int | None = None) -> int:
    """Images per optimiser step: the per-GPU batch on every DDP process, or the set-up's GPUs (gpu1, dp2)."""
    setup = get_setup(name)
    return batch_per_gpu * world_size(name, nodes, requested) if setup.ddp else setup.global_batch(batch_per_gpu)


def gpus_to_claim(name: str, visible: Callable[[], int]) -> int:
    """GPU ids a one-node job claims: the set-up's count; DataParallel degrades to the `visible()` count (and
    says so in the record). `visible` is only asked for DataParallel (counting may start a subprocess)."""
    setup = get_setup(name)
    if setup.data_parallel:
        return max(1, min(setup.gpus, visible()))
    return setup.gpus


def setup_names(*, ddp: bool | None = None) -> list[str]:
    """Names of all set-ups, or only the DDP ones (`ddp=True`: those a multi-node job spans) or the others."""
    return [name for name, setup in SETUPS.items() if ddp is None or setup.ddp == ddp]


def model_setups(config: Mapping[str, Any], model: str, setups: list[str] | None = None) -> list[str]:
    """The set-ups among `setups` (default train.setups) that `model` is trained, evaluated and tabulated under:
    those train.setups_by_model lists for it (e.g. the demo's Fast-DDPM under gpu1 only), else all of them."""
    only = config["train"]["setups_by_model"].get(model)
    return [u for u in (config["train"]["setups"] if setups is None else setups) if only is None or u in only]


def replicates_for(config: Mapping[str, Any], model: str, setup: str, sigma: Any = None) -> int:
    """Training runs of (model, setup) at `sigma`: train.replicates_by_model[model][setup] where given (a count, or
    {sigma: count} for some sigmas), else train.replicates. The claims need several runs only for the comparisons
    they make (the demo: U-Net and U-Net++ under gpu1, and under ddp2_amp at 0.1), so the rest stay at one run."""
    train = config["train"]
    default = train.get("replicates", 1)
    n = (train.get("replicates_by_model") or {}).get(model, {}).get(setup, default)
    key = f"train.replicates_by_model.{model}.{setup}"
    if isinstance(n, Mapping):
        if sigma is None:  # the largest count over the sigmas (a check of every value)
            return max([default, *(_count(v, key) for v in n.values())])
        at = [v for s, v in n.items() if float(s) == float(sigma)]  # 0.1, "0.1" and "0.10" are one sigma
        return _count(at[0] if at else default, key)
    return _count(n, key)


def _count(n: Any, key: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise CxrError(f"config key {key} must be an integer >= 1 (or {{sigma: integer}}), not {n!r}")
    return n


def job_nodes(config: Mapping[str, Any], setup: str) -> int:
    """Nodes one training job of `setup` runs on: `train.nodes` for the DDP set-ups, 1 for gpu1 and dp2."""
    return int(config.get("train", {}).get("nodes", 1)) if get_setup(setup).ddp else 1


def job_processes_per_node(config: Mapping[str, Any], setup: str) -> int:
    """`processes_per_node` of one training job of `setup`, from the config."""
    return processes_per_node(setup, job_nodes(config, setup), config.get("train", {}).get("processes_per_node"))


def job_gpus(config: Mapping[str, Any], setup: str) -> int:
    """GPUs one training job of `setup` asks for, all its nodes together (the rule's `resources: gpu=`, which the
    SLURM executor passes as `sbatch --gpus=N`): 0 with `train.device: cpu` unless `train.request_gpus_on_cpu`."""
    train = config.get("train", {})
    return gpus_needed(setup, str(train.get("device", "cuda")), job_nodes(config, setup),
                       bool(train.get("request_gpus_on_cpu", False)),
                       per_node=job_processes_per_node(config, setup) if job_nodes(config, setup) > 1 else None)
