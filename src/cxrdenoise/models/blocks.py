"""Building blocks shared by the networks, and the cheap argument and input checks they all use."""

from __future__ import annotations

import torch
from torch import nn

from ..errors import CxrError


class ConvBNReLU(nn.Sequential):
    """3x3 convolution (padding 1, size-preserving), BatchNorm, ReLU."""

    def __init__(self, in_channels: int, out_channels: int, bias: bool = True) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=bias),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class DoubleConv(nn.Sequential):
    """The ``double_bn`` U-Net block: two (3x3 conv + BatchNorm + ReLU), the first one mapping to `out_channels`.

    As in the study's DDP U-Net script (and the UNet++ reference implementation's ``VGGBlock``). The
    convolutions keep their bias; the parameter counts quoted for the U-Nets include it.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(ConvBNReLU(in_channels, out_channels), ConvBNReLU(out_channels, out_channels))


class StudyConv(nn.Sequential):
    """The ``study`` U-Net block: 3x3 conv, ReLU, 3x3 conv, BatchNorm, ReLU (one BatchNorm per block).

    The block of the study's 1-GPU and DataParallel notebooks (U-Net and U-Net++) and its U-Net++ DDP script,
    which produced its Tables III and IV. Both convolutions keep their bias, as there.
    """

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, kernel_size=3, padding=1),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


# `block:` values of the U-Nets, the default first
BLOCKS: dict[str, type[nn.Sequential]] = {"study": StudyConv, "double_bn": DoubleConv}


class KeywordError(CxrError):
    """A value of a model's keyword that the model cannot work with, in one line: `model 'name': keyword problem`.

    `keyword` names the keyword (None: the problem is the image size, config key resize.size) and `problem` says
    what is wrong and what would do, so the start-up check (cxrdenoise.config) can say it as
    `config key models.<model>.<keyword>: <problem>`."""

    def __init__(self, model: str, keyword: str | None, problem: str) -> None:
        self.model, self.keyword, self.problem = model, keyword, problem
        super().__init__(f"model {model!r}: {keyword + ' ' if keyword else ''}{problem}")


def check_block(model: str, value: object) -> type[nn.Sequential]:
    """The block class named `value`; fail in one line listing the valid names otherwise."""
    if not isinstance(value, str) or value not in BLOCKS:
        raise KeywordError(model, "block", f"must be one of {', '.join(BLOCKS)}, got {value!r}")
    return BLOCKS[value]


def check_positive_int(model: str, key: str, value: object, minimum: int = 1) -> int:
    """Fail in one line unless `value` is an int >= `minimum` (bools rejected)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise KeywordError(model, key, f"must be an integer >= {minimum}, got {value!r}")
    return value


def check_bool(model: str, key: str, value: object) -> bool:
    """Fail in one line unless `value` is true or false."""
    if not isinstance(value, bool):
        raise KeywordError(model, key, f"must be true or false, got {value!r}")
    return value


def check_image_size(model: str, image_size: int, halvings: int) -> None:
    """Fail in one line (naming resize.size) unless the network's `halvings` 2x down-samplings divide
    `image_size` (a model with a fixed depth, such as the U-Nets)."""
    if image_size % 2**halvings:
        raise KeywordError(model, None, f"{image_size} is not divisible by {2**halvings}, which {model!r} needs (it "
                                        f"halves the image {halvings} times); give a multiple of {2**halvings}")


def check_input(model: str, x: torch.Tensor, multiple: int = 1) -> None:
    """Fail in one line unless `x` is (N, 1, H, W) with H and W divisible by `multiple`."""
    shape = tuple(x.shape)
    if len(shape) != 4 or shape[1] != 1 or shape[2] % multiple or shape[3] % multiple:
        need = f" with H and W divisible by {multiple}" if multiple > 1 else ""
        raise CxrError(f"model {model!r}: input of shape {shape}; expected (N, 1, H, W){need}")
