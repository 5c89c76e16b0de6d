"""UNet++ (Zhou, Rahman Siddiquee, Tajbakhsh & Liang, DLMIA 2018, arXiv:1807.10165)."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import check_block, check_bool, check_image_size, check_input, check_positive_int
from .registry import register


@register("unetpp")
class UNetPlusPlus(nn.Module):
    """Five-level UNet++ denoiser with nested, dense skip pathways: one grey channel in, one out.

    Nodes X^{i,j} (level i = 0..4, position along the skip pathway j = 0..4-i) are two-convolution blocks (see
    ``block`` below) with ``base_channels * 2**i`` output channels. The backbone X^{i,0} is a
    U-Net encoder (2x2 max-pooling between levels). Every other node takes the concatenation of all earlier
    nodes of its level, X^{i,0..j-1}, and the bilinearly up-sampled (x2, ``align_corners=True``) node below it,
    X^{i+1,j-1}, so its input has ``j * width(i) + width(i+1)`` channels, as in the authors' and the reference
    PyTorch implementation. Heads are 1x1 convolutions to one channel, with no output activation.

    ``deep_supervision=False`` (default): only the head on X^{0,4} exists (so DDP finds no unused parameter) and
    ``forward`` returns its output. ``deep_supervision=True``: heads on X^{0,1}..X^{0,4}; in training mode
    ``forward`` returns the list of the four outputs, shallowest first (the trainer averages the loss over
    them); in eval mode it returns the X^{0,4} output alone, the full-depth prediction.

    ``block="study"`` (default): conv, ReLU, conv, BatchNorm, ReLU (:class:`StudyConv`), as the study's U-Net++
    code; ``block="double_bn"``: (conv, BatchNorm, ReLU) twice (:class:`DoubleConv`).

    H and W must be divisible by 16. Parameters at ``base_channels=64``: 36,621,185 with the study block and one
    head (the study's net counts 36,621,380 with the four heads it defines but trains one of; here that is
    ``deep_supervision=True``); 36,628,481 / 36,628,676 with ``double_bn``.
    """

    levels = 5

    @classmethod
    def check_config(cls, kwargs: dict, image_size: int) -> None:
        """The constructor's and forward's constraints on the keywords (defaults filled in) and the image size,
        without building the network (the start-up config check); KeywordError naming the keyword."""
        check_positive_int("unetpp", "base_channels", kwargs["base_channels"])
        check_bool("unetpp", "deep_supervision", kwargs["deep_supervision"])
        check_block("unetpp", kwargs["block"])
        check_image_size("unetpp", image_size, cls.levels - 1)

    def __init__(self, base_channels: int = 64, deep_supervision: bool = False, block: str = "study") -> None:
        super().__init__()
        base = check_positive_int("unetpp", "base_channels", base_channels)
        Block = check_block("unetpp", block)
        self.block = block
        self.deep_supervision = check_bool("unetpp", "deep_supervision", deep_supervision)
        widths = [base * 2**i for i in range(self.levels)]
        self.pool = nn.MaxPool2d(2)
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.nodes = nn.ModuleDict()
        for j in range(self.levels):
            for i in range(self.levels - j):
                if j == 0:
                    in_channels = 1 if i == 0 else widths[i - 1]
                else:
                    in_channels = j * widths[i] + widths[i + 1]
                self.nodes[f"{i}_{j}"] = Block(in_channels, widths[i])
        n_heads = self.levels - 1 if deep_supervision else 1
        self.heads = nn.ModuleList(nn.Conv2d(widths[0], 1, kernel_size=1) for _ in range(n_heads))

    def forward(self, x: torch.Tensor) -> torch.Tensor | list[torch.Tensor]:
        check_input("unetpp", x, multiple=2 ** (self.levels - 1))
        out: dict[tuple[int, int], torch.Tensor] = {}
        for j in range(self.levels):  # column by column: X^{i+1,j-1} is ready before X^{i,j}
            for i in range(self.levels - j):
                if j == 0:
                    inp = x if i == 0 else self.pool(out[i - 1, 0])
                else:
                    inp = torch.cat([out[i, k] for k in range(j)] + [self.up(out[i + 1, j - 1])], dim=1)
                out[i, j] = self.nodes[f"{i}_{j}"](inp)
        last = self.levels - 1
        if not self.deep_supervision:
            return self.heads[0](out[0, last])
        if not self.training:
            return self.heads[-1](out[0, last])
        return [head(out[0, j + 1]) for j, head in enumerate(self.heads)]
