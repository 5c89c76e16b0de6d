"""DnCNN (Zhang, Zuo, Chen, Meng & Zhang, IEEE TIP 2017, arXiv:1608.03981), the DnCNN-S layout."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import ConvBNReLU, check_input, check_positive_int
from .registry import register


@register("dncnn")
class DnCNN(nn.Module):
    """Residual-learning denoiser: the layers predict the noise, ``forward`` returns ``x - noise``.

    ``depth`` 3x3 convolutions (padding 1) of ``channels`` features: conv + ReLU, then ``depth - 2`` times
    conv + BatchNorm + ReLU (convolutions without bias, which BatchNorm makes redundant), then a conv to one
    channel. Like every model in the registry it maps noisy -> clean, so trainers and evaluators treat all
    models alike. The predicted noise need not have zero mean: the study's noise has mean 0.1, which the biases
    of the first and last convolutions and BatchNorm's shifts learn. No output activation or clipping.

    Any H and W work. 556,097 parameters at the default (depth 17, 64 channels).
    """

    @classmethod
    def check_config(cls, kwargs: dict, image_size: int) -> None:
        """The constructor's constraints on the keywords (defaults filled in), without building the network (the
        start-up config check); KeywordError naming the keyword. Any image size works."""
        check_positive_int("dncnn", "depth", kwargs["depth"], minimum=3)
        check_positive_int("dncnn", "channels", kwargs["channels"])

    def __init__(self, depth: int = 17, channels: int = 64) -> None:
        super().__init__()
        depth = check_positive_int("dncnn", "depth", depth, minimum=3)
        channels = check_positive_int("dncnn", "channels", channels)
        self.layers = nn.Sequential(
            nn.Conv2d(1, channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            *(ConvBNReLU(channels, channels, bias=False) for _ in range(depth - 2)),
            nn.Conv2d(channels, 1, kernel_size=3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input("dncnn", x)
        return x - self.layers(x)
