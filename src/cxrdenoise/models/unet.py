"""U-Net (Ronneberger, Fischer & Brox, MICCAI 2015, arXiv:1505.04597), as the study describes it."""

from __future__ import annotations

import torch
from torch import nn

from .blocks import check_block, check_image_size, check_input, check_positive_int
from .registry import register


@register("unet")
class UNet(nn.Module):
    """Five-level U-Net denoiser: one grey channel in, one out.

    Encoder: a two-convolution block (see ``block`` below; 3x3 convs, padding 1) at each of 5 levels with
    ``base_channels * (1, 2, 4, 8, 16)`` channels (64 ... 1024 at the default), 2x2 max-pooling between levels.
    Decoder: at each of the 4 upper levels a 2x2 transposed convolution (stride 2) halves the channels and
    doubles the resolution, the result is concatenated with the encoder's output at that level (the skip
    connection) and a block maps it back to that level's width. Head: a 1x1 convolution to one channel, with no
    output activation (the network regresses intensities).

    Unlike the paper (unpadded convolutions, cropped skips) the convolutions are padded, so the output has the
    input's size; the input's H and W must be divisible by 16 (four poolings).

    ``block="study"`` (default): conv, ReLU, conv, BatchNorm, ReLU (:class:`StudyConv`), the block of the study's
    1-GPU and DataParallel notebooks; 31,036,481 parameters at ``base_channels=64``, as the study's U-Net.
    ``block="double_bn"``: (conv, BatchNorm, ReLU) twice (:class:`DoubleConv`), as the study's DDP U-Net
    script; 31,042,369 parameters (one more BatchNorm per block).
    """

    levels = 5

    @classmethod
    def check_config(cls, kwargs: dict, image_size: int) -> None:
        """The constructor's and forward's constraints on the keywords (defaults filled in) and the image size,
        without building the network (the start-up config check); KeywordError naming the keyword."""
        check_positive_int("unet", "base_channels", kwargs["base_channels"])
        check_block("unet", kwargs["block"])
        check_image_size("unet", image_size, cls.levels - 1)

    def __init__(self, base_channels: int = 64, block: str = "study") -> None:
        super().__init__()
        base = check_positive_int("unet", "base_channels", base_channels)
        Block = check_block("unet", block)
        self.block = block
        widths = [base * 2**i for i in range(self.levels)]
        self.pool = nn.MaxPool2d(2)
        self.encoder = nn.ModuleList(
            Block(1 if i == 0 else widths[i - 1], widths[i]) for i in range(self.levels)
        )
        # ups[i] / decoder[i] bring level i+1 up to level i (i = 0 .. levels-2).
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], kernel_size=2, stride=2) for i in range(self.levels - 1)
        )
        self.decoder = nn.ModuleList(Block(2 * widths[i], widths[i]) for i in range(self.levels - 1))
        self.head = nn.Conv2d(widths[0], 1, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input("unet", x, multiple=2 ** (self.levels - 1))
        skips = []
        for i, block in enumerate(self.encoder):
            x = block(x if i == 0 else self.pool(x))
            skips.append(x)
        x = skips.pop()
        for i in reversed(range(self.levels - 1)):
            x = self.decoder[i](torch.cat([skips[i], self.ups[i](x)], dim=1))
        return self.head(x)
