"""Denoising networks, built by name from a registry (see :mod:`.registry`).

Every model maps a noisy (N, 1, H, W) batch to a clean estimate of the same shape, without output activation.
Importing this package registers ``unet``, ``unetpp``, ``dncnn`` and ``fastddpm``.
"""

from .registry import (available_models, build_model, check_model_config, count_parameters, model_kwarg_names,
                       register)
from .unet import UNet
from .unetpp import UNetPlusPlus
from .dncnn import DnCNN
from .fastddpm import FastDDPM

__all__ = [
    "DnCNN",
    "FastDDPM",
    "UNet",
    "UNetPlusPlus",
    "available_models",
    "build_model",
    "check_model_config",
    "count_parameters",
    "model_kwarg_names",
    "register",
]
