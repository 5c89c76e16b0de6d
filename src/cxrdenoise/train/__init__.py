"""Training stage: one job = one (model, sigma, setup, replicate) trained to
results/train/{model}/sigma{sigma}/{setup}/rep{k}/.

Modules, one job each: `setups` (what gpu1/dp2/ddp2/ddp2_amp mean), `settings` (config -> frozen settings),
`gpus` (claiming GPU ids), `launch` (claim, then run in-process or under torchrun), `multinode` (srun + torchrun
on several SLURM nodes), `worker` (one process), `distributed` (process group), `parallel` (DP/DDP wrapping),
`loaders` (seed+epoch-determined sampling),
`engine` (the loop), `checkpoint` (best.pt/last.pt), `records` (record.json/epochs.csv/TensorBoard),
`measure` (synchronised clocks, peak memory).
"""

from .settings import TrainSettings
from .setups import SETUPS, Setup, get_setup, gpus_needed

__all__ = ["SETUPS", "Setup", "TrainSettings", "get_setup", "gpus_needed"]
