"""FedAvg and the optional differential-privacy step, as pure functions on lists of numpy arrays.

FedAvg (McMahan et al. 2017, the preprint's formula): w_{t+1} = sum_k (n_k / n) w_{t+1}^k, with n_k the
number of training images at site k and n their sum. The DP step follows central DP with fixed clipping
(Flower's DifferentialPrivacyServerSideFixedClipping): each site's update u_k = w^k - w_t is scaled to an L2
norm of at most C, the clipped updates are averaged, and Gaussian noise with std = noise_multiplier * C / m
(m = number of sites) is added to the mean, from a stream derived from the config seed and the round.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import CxrError
from ..seeding import rng_for

Weights = list[np.ndarray]


def fedavg(results: Sequence[tuple[Weights, int]]) -> Weights:
    """Size-weighted mean of each array over sites; `results` holds (weights, n_examples) per site."""
    if not results:
        raise CxrError("FedAvg: no site returned weights")
    total = sum(int(n) for _, n in results)
    if total <= 0:
        raise CxrError("FedAvg: sites reported no training examples")
    shapes = [tuple(a.shape) for a in results[0][0]]
    for weights, _ in results:
        if [tuple(a.shape) for a in weights] != shapes:
            raise CxrError("FedAvg: sites returned weights of different shapes (different models?)")
    out = []
    for i in range(len(shapes)):
        acc = sum(np.asarray(w[i], dtype=np.float64) * (int(n) / total) for w, n in results)
        out.append(np.asarray(acc, dtype=results[0][0][i].dtype))
    return out


def global_norm(arrays: Sequence[np.ndarray]) -> float:
    return float(np.sqrt(sum(float(np.sum(np.asarray(a, dtype=np.float64) ** 2)) for a in arrays)))


def clip_update(update: Weights, clip_norm: float) -> tuple[Weights, float]:
    """Scale `update` to L2 norm <= clip_norm; returns the clipped update and its norm before clipping."""
    norm = global_norm(update)
    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    return [np.asarray(u * scale, dtype=u.dtype) for u in update], norm


def dp_fedavg(current: Weights, results: Sequence[tuple[Weights, int]], clip_norm: float,
              noise_multiplier: float, seed: int, server_round: int) -> tuple[Weights, dict]:
    """Clip every site's update to `clip_norm`, average them (size-weighted), add seeded Gaussian noise.

    Returns the new global weights and a record (pre-clip norms, noise std) for the round's row.
    """
    if clip_norm <= 0 or noise_multiplier < 0:
        raise CxrError(f"federated.dp: clipping_norm {clip_norm} must be > 0 and noise_multiplier "
                       f"{noise_multiplier} >= 0")
    clipped, norms = [], []
    for weights, n in results:
        update = [np.asarray(w, dtype=np.float32) - np.asarray(c, dtype=np.float32) for w, c in zip(weights, current)]
        cu, norm = clip_update(update, clip_norm)
        clipped.append((cu, n))
        norms.append(norm)
    mean_update = fedavg(clipped)
    std = noise_multiplier * clip_norm / len(results)
    rng = rng_for(seed, "federated", "dp-noise", server_round)
    noisy = [u + rng.normal(0.0, std, size=u.shape).astype(u.dtype) if std > 0 else u for u in mean_update]
    new = [np.asarray(c, dtype=np.float32) + u for c, u in zip(current, noisy)]
    return new, {"update_norms": norms, "clip_norm": clip_norm, "noise_std": std,
                 "noise_multiplier": noise_multiplier}


def proximal_term(params: Sequence, global_params: Sequence, mu: float):
    """FedProx's (mu / 2) * ||w - w_global||^2 added to each site's local loss (torch tensors)."""
    if mu <= 0:
        return 0.0
    return (mu / 2.0) * sum(((p - g) ** 2).sum() for p, g in zip(params, global_params))
