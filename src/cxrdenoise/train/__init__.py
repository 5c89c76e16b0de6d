"""Training stage: one job = one (model, sigma, setup, replicate) trained to
results/train/{model}/sigma{sigma}/{setup}/rep{k}/.

Modules, one job each (one epoch reads in `engine` and `distributed`):
`setups` (what gpu1/dp2/ddp2/... mean, and every GPU, node and process count of a job), `settings` (config ->
frozen settings, the resume fingerprint), `gpus` (claiming GPU ids), `launch` (claim, then run in-process or
under torchrun), `multinode` (srun + torchrun on several SLURM nodes), `worker` (one process), `distributed`
(everything that differs per rank: process group, DP/DDP wrapping, loaders, padding masks), `engine` (the loop
and its clocks), `state` (everything a run writes: best.pt/last.pt, record.json, epochs.csv, TensorBoard, from
the run's facts and progress that `engine` hands it; `state` never imports `engine`),
`fastpath` (which fast paths a job uses), `val_views` (what TensorBoard shows beyond the losses).
"""

from .settings import TrainSettings
from .setups import SETUPS, Setup, get_setup, gpus_needed

__all__ = ["SETUPS", "Setup", "TrainSettings", "get_setup", "gpus_needed"]
