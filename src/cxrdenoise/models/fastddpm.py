"""Conditional Fast-DDPM denoiser (Jiang et al., arXiv:2405.14802): a 10-step diffusion model conditioned on the
noisy radiograph, with a time-conditioned U-Net as its noise predictor."""

from __future__ import annotations

import copy
import math

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

from .blocks import KeywordError, check_input, check_positive_int
from .diffusion import PREDICTIONS, alphas_cumprod, antithetic_indices, ddim_sample, time_steps
from .registry import register


def _groups(channels: int) -> int:
    """GroupNorm groups: 8 when they divide the channels (the usual choice), else the largest divisor below."""
    return math.gcd(8, channels)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Transformer-style sinusoidal embedding of (N,) time steps into (N, dim) (dim even)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.sin(args), torch.cos(args)], dim=1)


class TimeResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the time embedding added in between, plus a (1x1 if needed) skip."""

    def __init__(self, in_channels: int, out_channels: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_channels), in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_channels)
        self.norm2 = nn.GroupNorm(_groups(out_channels), out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class TimeUNet(nn.Module):
    """Noise predictor: (condition, x_t, t) -> predicted noise, all (N, 1, H, W) images.

    The condition and x_t are concatenated (2 channels in). ``levels`` resolutions with
    ``base_channels * 2**i`` channels, one :class:`TimeResBlock` per level on the way down and one on the way up
    (after concatenating the skip), 2x2 average pooling down and nearest-neighbour x2 + 3x3 conv up. t enters
    every block through a sinusoidal embedding and a 2-layer MLP (width 4 * base). GroupNorm, not BatchNorm, so
    the noise prediction does not depend on the batch (nor on BatchNorm's statistics under DDP).
    """

    def __init__(self, base_channels: int, levels: int) -> None:
        super().__init__()
        widths = [base_channels * 2**i for i in range(levels)]
        emb_dim = 4 * base_channels
        self.sin_dim = 2 * max(1, base_channels // 2)
        self.time_mlp = nn.Sequential(nn.Linear(self.sin_dim, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.stem = nn.Conv2d(2, widths[0], 3, padding=1)
        self.down = nn.ModuleList(TimeResBlock(widths[max(i - 1, 0)], widths[i], emb_dim) for i in range(levels))
        self.ups = nn.ModuleList(nn.Conv2d(widths[i + 1], widths[i], 3, padding=1) for i in range(levels - 1))
        self.up = nn.ModuleList(TimeResBlock(2 * widths[i], widths[i], emb_dim) for i in range(levels - 1))
        self.head = nn.Sequential(nn.GroupNorm(_groups(widths[0]), widths[0]), nn.SiLU(),
                                  nn.Conv2d(widths[0], 1, 3, padding=1))

    def forward(self, condition: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        emb = self.time_mlp(timestep_embedding(t, self.sin_dim))
        x = self.stem(torch.cat([condition, x_t], dim=1))
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.avg_pool2d(x, 2), emb)
            skips.append(x)
        x = skips.pop()
        for i in reversed(range(len(self.up))):
            x = self.ups[i](F.interpolate(x, scale_factor=2.0, mode="nearest"))
            x = self.up[i](torch.cat([skips[i], x], dim=1), emb)
        return self.head(x)


@register("fastddpm")
class FastDDPM(nn.Module):
    """Conditional Fast-DDPM: learns to draw the clean image given the noisy one, in ``steps`` (10) steps.

    Images live in [0, 1] in this pipeline and in [-1, 1] inside the diffusion (x0 = 2 clean - 1, and the same
    for the condition). Two calls:

    * ``forward(noisy, clean)``: the training loss, per image (shape (N,)): t is drawn from the Fast-DDPM
      schedule (antithetic pairs), noise e ~ N(0, I), x_t = sqrt(abar_t) x0 + sqrt(1 - abar_t) e, and the loss
      is the mean squared error between e and the predicted noise (``prediction: eps``, the reference's; the
      reference sums the squared error over pixels, the mean differs by the constant H*W, which Adam all but
      ignores). ``prediction: x0`` has the network predict the clean image and the loss is the MSE against x0;
      ``v`` predicts v = sqrt(abar_t) e - sqrt(1 - abar_t) x0 (Salimans & Ho 2022). Why these exist: an error d
      in a predicted noise becomes an error sqrt(1 - abar_t) / sqrt(abar_t) d in x0, about 156 d at t = 999, so
      a briefly trained noise predictor (the demo's 180 steps) sends DDIM's high-noise steps far off, which the
      later steps cannot undo (docs/models.md). Every random draw comes from
      the global RNG of the batch's device, which the trainer seeds and checkpoints, offset by the DDP rank
      (or the DataParallel replica's GPU) so ranks draw differently but reproducibly.
    * ``forward(noisy)``: the clean estimate (in [0, 1]: DDIM clamps its x0 estimates), by DDIM
      (eta = 0) over the same steps from an x_T drawn by a generator seeded with ``sample_seed``. The same
      (H, W) noise field starts every image, so an image's estimate depends only on the image and the seed,
      not on its batch or device.

    ``schedule``: ``non-uniform`` (the paper's default) or ``uniform`` (see :mod:`.diffusion`). ``ema``: decay of
    an exponential moving average of the weights (0 = off, the study's rules; 0.999 is the reference's); when
    on, a frozen copy of the noise predictor tracks the average (warm-up min(ema, (1+n)/(10+n)) after n
    updates), sampling uses it, so validation, best.pt and evaluation all score the averaged weights. The
    trainer calls :meth:`after_optimizer_step` after every optimiser step.

    Cost: ``steps`` network evaluations per image. H and W must be divisible by 2**(levels-1).
    """

    trains_on_target = True
    _LOSS_TARGETS = {"eps": "drawn and predicted noise", "x0": "clean and predicted clean image (x0-prediction)",
                     "v": "true and predicted v (v-prediction)"}

    @classmethod
    def check_config(cls, kwargs: dict, image_size: int) -> None:
        """The constructor's and forward's constraints on the keywords (defaults filled in) and the image size,
        without building the network (the start-up config check); KeywordError naming the keyword."""
        check_positive_int("fastddpm", "base_channels", kwargs["base_channels"], minimum=2)
        levels = check_positive_int("fastddpm", "levels", kwargs["levels"], minimum=2)
        check_positive_int("fastddpm", "sample_seed", kwargs["sample_seed"], minimum=0)
        _check_ema(kwargs["ema"])
        _check_prediction(kwargs["prediction"])
        time_steps(kwargs["schedule"], kwargs["steps"])
        multiple = 2 ** (levels - 1)
        if image_size % multiple:
            deepest = max((n for n in range(2, levels) if image_size % 2 ** (n - 1) == 0), default=None)
            fix = f"use levels {deepest} or fewer, or" if deepest else "give"
            raise KeywordError("fastddpm", "levels", f"{levels} needs image sizes divisible by 2^{levels - 1} = "
                                                     f"{multiple}, and resize.size is {image_size}; {fix} a "
                                                     f"resize.size divisible by {multiple}")

    def __init__(
        self,
        base_channels: int = 64,
        levels: int = 4,
        schedule: str = "non-uniform",
        steps: int = 10,
        ema: float = 0.0,
        sample_seed: int = 0,
        prediction: str = "eps",
    ) -> None:
        super().__init__()
        base = check_positive_int("fastddpm", "base_channels", base_channels, minimum=2)
        self.levels = check_positive_int("fastddpm", "levels", levels, minimum=2)
        self.sample_seed = check_positive_int("fastddpm", "sample_seed", sample_seed, minimum=0)
        self.ema = _check_ema(ema)
        self.prediction = _check_prediction(prediction)
        self.seq = time_steps(schedule, steps)
        self.register_buffer("abar", alphas_cumprod().float(), persistent=False)
        self.net = TimeUNet(base, self.levels)
        self.ema_net: nn.Module | None = None
        if self.ema > 0:
            self.ema_net = copy.deepcopy(self.net).requires_grad_(False)
            self.register_buffer("ema_updates", torch.zeros((), dtype=torch.long))

    @property
    def loss_name(self) -> str:
        """What train_loss measures (record.json's `loss`)."""
        return f"diffusion: MSE between {self._LOSS_TARGETS[self.prediction]}, per image (Fast-DDPM steps)"

    @property
    def record_note(self) -> str:
        weights = f"EMA (decay {self.ema}) of the weights" if self.ema_net is not None else "the trained weights"
        return (f"validation L1 and evaluation use the clean image sampled in {len(self.seq)} DDIM steps "
                f"({self.seq}) with {weights}; the network predicts {self.prediction}")

    def forward(self, noisy: torch.Tensor, clean: torch.Tensor | None = None) -> torch.Tensor:
        check_input("fastddpm", noisy, multiple=2 ** (self.levels - 1))
        if clean is not None:
            return self.loss(noisy, clean)
        return self.sample(noisy)

    def loss(self, noisy: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
        gen = _draw_generator(noisy.device)
        k = len(self.seq)
        idx = antithetic_indices(noisy.shape[0], k, gen, noisy.device)
        t = torch.tensor(self.seq, device=noisy.device)[idx]
        x0 = 2.0 * clean - 1.0
        eps = torch.randn(x0.shape, generator=gen, device=x0.device, dtype=x0.dtype)
        a = self.abar[t].view(-1, 1, 1, 1).to(x0.dtype)
        x_t = a.sqrt() * x0 + (1.0 - a).sqrt() * eps
        pred = self.net(2.0 * noisy - 1.0, x_t, t.float())
        if self.prediction == "eps":
            target = eps
        elif self.prediction == "x0":
            target = x0
        else:
            target = a.sqrt() * eps - (1.0 - a).sqrt() * x0
        return (pred.float() - target.float()).pow(2).flatten(1).mean(1)

    @torch.no_grad()
    def sample(self, noisy: torch.Tensor) -> torch.Tensor:
        net = self.ema_net if self.ema_net is not None else self.net
        n, _, h, w = noisy.shape
        gen = torch.Generator().manual_seed(self.sample_seed)
        x_t = torch.randn((1, 1, h, w), generator=gen).to(noisy.device).expand(n, 1, h, w)
        condition = 2.0 * noisy.float() - 1.0
        x0 = ddim_sample(lambda x, t: net(condition, x, t), x_t.float(), self.seq, self.abar, self.prediction)
        return (x0 + 1.0) / 2.0

    @torch.no_grad()
    def after_optimizer_step(self) -> None:
        """Move the EMA copy towards the current weights (no-op without EMA)."""
        if self.ema_net is None:
            return
        n = int(self.ema_updates)
        decay = min(self.ema, (1.0 + n) / (10.0 + n))
        ema_params = list(self.ema_net.parameters())
        torch._foreach_lerp_(ema_params, [p.detach() for p in self.net.parameters()], 1.0 - decay)
        self.ema_updates += 1


def _check_ema(ema: object) -> float:
    if isinstance(ema, bool) or not isinstance(ema, (int, float)) or not 0.0 <= ema < 1.0:
        raise KeywordError("fastddpm", "ema", f"must be a decay in [0, 1) (0 = off), got {ema!r}")
    return float(ema)


def _check_prediction(prediction: object) -> str:
    if prediction not in PREDICTIONS:
        raise KeywordError("fastddpm", "prediction", f"must be one of {', '.join(PREDICTIONS)} (eps = the "
                                                     f"reference's noise prediction), got {prediction!r}")
    return prediction


def _draw_generator(device: torch.device) -> torch.Generator:
    """A generator for one training step's draws: seeded from the device's global RNG (seeded and checkpointed
    by the trainer, so runs and resumes repeat) mixed with this process's stream (DDP rank, or the GPU index of a
    DataParallel replica), so ranks that share a seed still draw different t and noise."""
    stream = dist.get_rank() if dist.is_available() and dist.is_initialized() else (device.index or 0)
    base = int(torch.randint(0, 2**62, (1,), device=device).item())
    gen = torch.Generator(device=device)
    gen.manual_seed((base + stream * 0x9E3779B97F4A7C15) % 2**63)
    return gen
