"""Denoising networks, built by name from a registry (see :mod:`.registry`), each with a card of display facts
(see :mod:`.cards`).

Every model maps a noisy (N, 1, H, W) batch to a clean estimate of the same shape, without output activation.
Importing this package imports only the cards, so the table and figure jobs can name and colour models without
torch; the registry's functions and the model classes (``UNet``, ``UNetPlusPlus``, ``DnCNN``, ``FastDDPM``, whatever
is registered) load on first use, and the first look-up registers every model that has a card.
"""

from __future__ import annotations

import importlib
from typing import Any

from .cards import ModelCard, model_card, model_cards, study_models

_FROM_REGISTRY = ("available_models", "build_model", "check_model_config", "count_parameters", "model_class",
                  "model_kwarg_names", "register")


def __getattr__(name: str) -> Any:
    """The registry's functions and the registered classes, imported when first asked for (they need torch)."""
    if name.startswith("__"):
        raise AttributeError(name)
    registry = importlib.import_module(".registry", __name__)
    if name in _FROM_REGISTRY:
        return getattr(registry, name)
    classes = registry.model_classes()
    if name in classes:
        return classes[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["ModelCard", "model_card", "model_cards", "study_models", *_FROM_REGISTRY]
