"""The model as a fixed-order list of numpy arrays (what crosses the wire), and back."""

from __future__ import annotations

import numpy as np
import torch

from ..models import build_model
from ..seeding import derived_seed


def build(spec: dict, seeded: bool = False) -> torch.nn.Module:
    """The run's network from the registry; `seeded` gives the round-0 global weights from the config seed."""
    if seeded:
        torch.manual_seed(derived_seed(spec["seed"], "federated", "init") % 2**63)
    return build_model(spec["model"], **spec["model_kwargs"])


def to_arrays(model: torch.nn.Module) -> list[np.ndarray]:
    return [v.detach().cpu().numpy().copy() for v in model.state_dict().values()]


def load_arrays(model: torch.nn.Module, arrays: list[np.ndarray]) -> None:
    keys = list(model.state_dict().keys())
    model.load_state_dict({k: torch.from_numpy(np.asarray(a)) for k, a in zip(keys, arrays, strict=True)})


def state_dict(model: torch.nn.Module, arrays: list[np.ndarray]) -> dict[str, torch.Tensor]:
    keys = list(model.state_dict().keys())
    return {k: torch.from_numpy(np.array(a)) for k, a in zip(keys, arrays, strict=True)}
