"""The noise registry: `NoiseModel` (the base class), `@register(name)`, `get_noise(name)`, `make_noise`."""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
from typing import Any, Callable, ClassVar, Mapping, NamedTuple, TypeVar

import numpy as np

from ..errors import CxrError
from ..naming import sigma_label
from ..seeding import rng_for

N = TypeVar("N", bound=type["NoiseModel"])

_REGISTRY: dict[str, type[NoiseModel]] = {}
_loaded = False


@dataclasses.dataclass(frozen=True)
class NoiseModel:
    """One noise type. Subclasses are frozen dataclasses whose fields are the type's parameters (no defaults:
    defaults live only in the schema), registered with `@register(name)`."""

    name: ClassVar[str] = ""  # set by @register
    clips: ClassVar[bool] = True  # whether `apply` clips to [0, 1]

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> NoiseModel:
        """The entry with its parameters from the validated config: by default the `noise.<name>` mapping."""
        return make_noise(cls.name, config["noise"].get(cls.name) or {})

    @classmethod
    def levels(cls, config: Mapping[str, Any]) -> list[float]:
        """The levels this entry is made at: by default `noise.sigmas` (the trained levels)."""
        return [float(s) for s in config["noise"]["sigmas"]]

    def label(self, level: float | str) -> str:
        """The level as tables print it and paths spell it (`0.1` in `sigma0.1`)."""
        return sigma_label(level)

    def rng(self, seed: int, image_id: str, level: float) -> np.random.Generator:
        """One image's random stream: a function of (seed, image id, level label) only."""
        return rng_for(seed, "noise", image_id, self.label(level))

    def apply(self, clean: np.ndarray, rng: np.random.Generator, level: float) -> np.ndarray:
        """The noisy image (float, in [0, 1] where the type clips) from a clean one in [0, 1]."""
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def sidecar(self, level: float) -> dict[str, Any]:
        """What a noisy shard's sidecar records of the noise (after `kind`). The readers of shards (data.py,
        baselines.py) read `sigma` and `noise_mean`; None where the type has no mean parameter."""
        return {"noise": self.name, "sigma": float(level), "noise_mean": None, "noise_params": self.params()}


def register(name: str) -> Callable[[N], N]:
    """Class decorator: make `cls` the noise type `name` (`get_noise(name)`)."""

    def decorator(cls: N) -> N:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise CxrError(f"noise type {name!r} is registered twice ({_REGISTRY[name].__name__}, {cls.__name__})")
        if not dataclasses.is_dataclass(cls):
            raise CxrError(f"noise type {name!r}: {cls.__name__} must be a dataclass (its fields are its parameters)")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return decorator


def _load() -> None:
    """Import every module of this package once (each registers its entries): no list of types to keep."""
    global _loaded
    if not _loaded:
        package = importlib.import_module(__package__)
        for info in pkgutil.iter_modules(package.__path__):
            if info.name != "registry":
                importlib.import_module(f"{__package__}.{info.name}")
        _loaded = True


def available_noises() -> list[str]:
    _load()
    return sorted(_REGISTRY)


def get_noise(name: str) -> type[NoiseModel]:
    """The registered class `name`, or one line naming the registered ones."""
    _load()
    if name not in _REGISTRY:
        raise CxrError(f"unknown noise type {name!r}; registered: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def make_noise(name: str, params: Mapping[str, Any] | None = None) -> NoiseModel:
    """Entry `name` with `params`; a missing or unknown parameter is one line naming it and the valid ones."""
    cls = get_noise(name)
    fields = [f.name for f in dataclasses.fields(cls)]
    params = dict(params or {})
    unknown = [k for k in params if k not in fields]
    missing = [k for k in fields if k not in params]
    if unknown or missing:
        problem = f"unknown parameter {unknown[0]!r}" if unknown else f"missing parameter {missing[0]!r}"
        raise CxrError(f"noise type {name!r}: {problem}; its parameters: {', '.join(fields) or 'none'}")
    return cls(**params)


class NoisePlan(NamedTuple):
    noise: NoiseModel
    level: float


def noise_plan(config: Mapping[str, Any]) -> dict[str, NoisePlan]:
    """Level label -> (entry with its parameters, level) for every noisy folder the config makes: the `noise.type`
    entry at its levels, then the literature's zero-mean entry at `noise.literature.sigmas` (what
    `config.noise_means` gives as means today; the noise rule could pass `noise.name` and `noise.params()`)."""
    plan: dict[str, NoisePlan] = {}
    for name in (config["noise"]["type"], "gaussian_literature"):
        cls = get_noise(name)
        noise = cls.from_config(config)
        for level in cls.levels(config):
            plan.setdefault(noise.label(level), NoisePlan(noise, float(level)))
    return plan
