"""Fast-DDPM's noise schedule, its two 10-step time-step schedules and the deterministic (DDIM, eta = 0) sampler.

Fast-DDPM (Jiang, Mao, Zhang, Fang & Zou, arXiv:2405.14802) keeps DDPM's linear beta schedule over T = 1000
steps (beta from 1e-4 to 0.02) but trains and samples on only a few of those steps:

* ``non-uniform`` (the paper's default): 0, 199, 399, 599, 699, 799, 849, 899, 949, 999 -- four steps spread
  over the low-noise part, six packed into the high-noise part (t >= 699). For another count n the reference
  takes ceil(linspace(0, 699, 0.4n + 1)[:-1]) followed by ceil(linspace(699, 999, 0.6n)).
* ``uniform``: n steps evenly spaced over [0, 999], rounded: 0, 111, 222, ..., 888, 999 for n = 10. The
  reference code builds it as ``range(-1, 1000, 1000 // n)`` with the first entry set to 0, which yields
  n + 1 = 11 steps (0, 99, 199, ..., 999); we keep both ends and exactly n steps, as the issue and the paper's
  "10 time steps" ask (a stated deviation).

Training draws t from the schedule only (antithetically paired, as in the reference); sampling runs the same
steps backwards with DDIM's update at eta = 0, which adds no noise: the only random input is the starting
x_T, so a fixed seed makes the output a deterministic function of the condition.
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from .blocks import KeywordError

T_TOTAL = 1000
BETA_START, BETA_END = 1e-4, 0.02
SCHEDULES = ("uniform", "non-uniform")
NON_UNIFORM_10 = (0, 199, 399, 599, 699, 799, 849, 899, 949, 999)


def alphas_cumprod(total: int = T_TOTAL) -> torch.Tensor:
    """abar_t = prod_{s<=t} (1 - beta_s) for DDPM's linear betas, float64, index t = 0 .. total-1."""
    betas = torch.linspace(BETA_START, BETA_END, total, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


def time_steps(schedule: str, steps: int = 10, total: int = T_TOTAL) -> list[int]:
    """The ascending time steps (in 0 .. total-1) a Fast-DDPM with `steps` steps trains and samples on."""
    if schedule not in SCHEDULES:
        raise KeywordError("fastddpm", "schedule", f"must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 2 <= steps <= total:
        raise KeywordError("fastddpm", "steps", f"must be an integer in 2..{total}, got {steps!r}")
    last = total - 1
    if schedule == "uniform":
        seq = [round(i * last / (steps - 1)) for i in range(steps)]
    elif steps == 10 and total == T_TOTAL:
        seq = list(NON_UNIFORM_10)
    else:  # the reference's rule for other counts: 40 % of the steps below t = 0.7 T, 60 % from there on
        n1, n2 = int(steps * 0.4), int(steps * 0.6)
        knee = round(0.7 * total) - 1
        low = [math.ceil(knee * i / n1) for i in range(n1)] if n1 else []
        high = [math.ceil(knee + (last - knee) * i / (n2 - 1)) for i in range(n2)] if n2 > 1 else [last]
        seq = low + high
    if len(set(seq)) != steps:
        raise KeywordError(
            "fastddpm", "steps", f"{steps} gives {len(set(seq))} distinct time steps under the {schedule} rule; "
            "use steps 10 (the paper's) or another count it splits exactly (at T = 1000: a multiple of 5 up to 500), "
            "or schedule uniform"
        )
    return seq


def antithetic_indices(n: int, k: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """n indices into a k-step schedule, drawn in antithetic pairs (i, k-1-i) as the reference does, which
    balances low- and high-noise steps within every batch."""
    first = torch.randint(0, k, (n // 2 + 1,), generator=generator, device=device)
    return torch.cat([first, k - 1 - first])[:n]


PREDICTIONS = ("eps", "x0", "v")


def clean_estimate(prediction: str, out: torch.Tensor, x_t: torch.Tensor, a_t: float) -> torch.Tensor:
    """The x0 implied by the network's output `out` at x_t (abar_t = a_t) for what it predicts: the noise e
    (x0 = (x_t - sqrt(1 - a_t) e) / sqrt(a_t)), x0 itself, or v = sqrt(a_t) e - sqrt(1 - a_t) x0
    (x0 = sqrt(a_t) x_t - sqrt(1 - a_t) v)."""
    if prediction == "eps":
        return (x_t - math.sqrt(1.0 - a_t) * out) / math.sqrt(a_t)
    if prediction == "x0":
        return out
    return math.sqrt(a_t) * x_t - math.sqrt(1.0 - a_t) * out


def ddim_sample(
    predict_noise: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    x_t: torch.Tensor,
    seq: list[int],
    abar: torch.Tensor,
    prediction: str = "eps",
) -> torch.Tensor:
    """Run DDIM (eta = 0) from x_T at t = seq[-1] down through `seq` to the clean estimate x_0.

    At each step x0 = (x_t - sqrt(1 - a_t) e) / sqrt(a_t), clamped to the data range [-1, 1], e recomputed from
    the clamped x0, and x_next = sqrt(a_next) x0 + sqrt(1 - a_next) e, with a_next = 1 after the last step (so
    the result is the final x0). The clamp is DDPM's "clip denoised" (the reference applies it in its DDPM
    sampler, not in its DDIM one): at t = 999, sqrt(1 - a_t) / sqrt(a_t) is about 156, so without it a small
    error in the predicted noise throws x0 far outside the image range and the next steps cannot recover.
    `predict_noise(x_t, t)` gets t as an (N,) float tensor of time-step indices and returns the noise, or x0 or
    v when `prediction` says so (:func:`clean_estimate`).
    """
    n = x_t.shape[0]
    nexts = [-1] + list(seq[:-1])
    for t, t_next in zip(reversed(seq), reversed(nexts)):
        a_t = float(abar[t])
        a_next = float(abar[t_next]) if t_next >= 0 else 1.0
        out = predict_noise(x_t, torch.full((n,), float(t), device=x_t.device)).float()
        x0 = clean_estimate(prediction, out, x_t, a_t).clamp(-1.0, 1.0)
        eps = (x_t - math.sqrt(a_t) * x0) / math.sqrt(1.0 - a_t)  # the noise that agrees with the clamped x0
        x_t = math.sqrt(a_next) * x0 + math.sqrt(1.0 - a_next) * eps
    return x_t
