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


Layout = list[tuple[tuple[int, ...], np.dtype]]


def layout(arrays: list[np.ndarray]) -> Layout:
    return [(tuple(a.shape), np.dtype(a.dtype)) for a in arrays]


def pack(arrays: list[np.ndarray]) -> np.ndarray:
    """All arrays' bytes in one flat uint8 buffer, byte for byte (no casting).

    Flower stores and ships every array of a record as its own object (plus a chunk object each), one HTTP
    request per object and hop; a U-Net's 91 tensors made a round's three hops cost seconds of requests. One
    buffer is one array object (chunked only above Flower's 5 MiB chunk size)."""
    return np.concatenate([np.ascontiguousarray(a).reshape(-1).view(np.uint8) for a in arrays])


def unpack(buffer: np.ndarray, like: Layout) -> list[np.ndarray]:
    """The arrays `pack` joined, cut from `buffer` by the `like` layout (shapes and dtypes of the model)."""
    buffer = np.ascontiguousarray(buffer, dtype=np.uint8).reshape(-1)
    sizes = [int(np.prod(shape, dtype=np.int64)) * dtype.itemsize for shape, dtype in like]
    if sum(sizes) != buffer.size:
        raise ValueError(f"weights buffer holds {buffer.size} bytes, the model's layout {sum(sizes)} "
                         "(a different model or a truncated message)")
    out, at = [], 0
    for (shape, dtype), size in zip(like, sizes):
        out.append(buffer[at:at + size].view(dtype).reshape(shape).copy())
        at += size
    return out
