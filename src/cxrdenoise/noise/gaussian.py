"""Additive Gaussian noise, clipped to [0, 1]: the study's (mean `noise.mean`) and the literature's (zero mean)."""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

from .registry import NoiseModel, register


@register("gaussian_study")
@dataclasses.dataclass(frozen=True)
class StudyGaussian(NoiseModel):
    """The study's obfuscation: noisy = clip(clean + N(mean, sigma^2), 0, 1), at `noise.sigmas` with
    `noise.mean`; the level is sigma."""

    mean: float

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> StudyGaussian:
        return cls(mean=float(config["noise"]["mean"]))

    def draw(self, rng: np.random.Generator, level: float, shape: tuple[int, ...]) -> np.ndarray:
        """The additive noise N(mean, level^2) (float64), before clipping."""
        return rng.normal(self.mean, level, size=shape)

    def apply(self, clean: np.ndarray, rng: np.random.Generator, level: float) -> np.ndarray:
        return np.clip(clean + self.draw(rng, level, clean.shape), 0.0, 1.0)

    def sidecar(self, level: float) -> dict[str, Any]:
        return {"sigma": float(level), "noise_mean": float(self.mean)}  # the sidecar of before the registry


@register("gaussian_literature")
@dataclasses.dataclass(frozen=True)
class LiteratureGaussian(StudyGaussian):
    """The literature's setting (BSD68 papers in Table VI): the same draw and clipping at
    `noise.literature.mean` (0) and `noise.literature.sigmas`; no model is trained at it."""

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> LiteratureGaussian:
        return cls(mean=float(config["noise"]["literature"]["mean"]))

    @classmethod
    def levels(cls, config: Mapping[str, Any]) -> list[float]:
        return [float(s) for s in config["noise"]["literature"]["sigmas"]]
