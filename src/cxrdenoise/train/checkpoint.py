"""best.pt and last.pt: atomic writes, RNG capture, and the rule for when resuming is allowed.

`best.pt` holds only what evaluation needs to rebuild the network (name, kwargs, unwrapped weights) and loads
with `torch.load(..., weights_only=True)`. `last.pt` holds everything an interrupted job needs to continue as if
it had never stopped: weights, optimiser, GradScaler, the python/numpy/torch(/cuda) RNG states, the epoch
records so far and the best checkpoint so far (Snakemake deletes a failed job's outputs, best.pt included, so
the resume state must carry it). It is written after every epoch and only trusted when its settings
fingerprint matches the current job's.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_path

LAST_FORMAT = 1


def cpu_state_dict(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A detached CPU copy of the weights, so later optimiser steps cannot change it."""
    return {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def save(obj: Any, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def rng_state(device: torch.device) -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def seed_everything(seed: int) -> None:
    """Same seed on every rank: identical initial weights (DDP would broadcast rank 0's anyway)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_last(path: str | Path, fingerprint: str, epochs: int) -> tuple[dict | None, str]:
    """The resume state at `path` if it may be continued, else None; the second value says why (for the log)."""
    path = Path(path)
    if not path.exists():
        return None, "no last.pt: starting at epoch 1"
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)  # our own file: RNG states are pickled
    except Exception as err:  # a torn file cannot happen (atomic rename), an old format can
        return None, f"{path} unreadable ({type(err).__name__}): starting at epoch 1"
    if state.get("format") != LAST_FORMAT or state.get("fingerprint") != fingerprint:
        return None, f"{path} was written with other settings or data: starting at epoch 1"
    if state["epoch"] > epochs:
        return None, f"{path} is at epoch {state['epoch']}, beyond train.epochs={epochs}: starting at epoch 1"
    if state["epoch"] == epochs:
        return state, f"{path} is already at epoch {epochs}: rewriting the outputs from it (delete it to retrain)"
    return state, f"resuming from {path} after epoch {state['epoch']}"
