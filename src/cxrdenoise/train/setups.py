"""The four training set-ups of the study, and two fast ones beside them, by name.

One table says how each set-up uses hardware (processes, GPUs, DataParallel, DDP, AMP), so the launcher, the
training loop, the Snakemake rule and the records all agree instead of re-deriving it from the name.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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
