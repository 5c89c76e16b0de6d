"""What the tables, figures and docs say about each registered model: its label, colour, description, whether the
study reports it, and the line that sums up its architecture.

Why apart from the model classes: the table and figure jobs must not import torch (tests/test_startup_imports.py),
and every model module does. So each model's display facts are a card here, the registry (`.registry.register`)
refuses a model class without one, and nothing outside ``models/`` keeps a list of model names. Adding a model:
its module with ``@register(name)``, its card below, its ``models.<name>`` entry in the schema (the only place of
its defaults), and a test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping


@dataclass(frozen=True)
class ModelCard:
    """One model's display facts; `name` is its registry name."""

    name: str
    label: str  # short label in tables, figure legends and captions ("U-Net++")
    description: str  # one line for docs and listings
    module: str  # the module under cxrdenoise.models that registers it (imported when a model is built)
    color: str | None = None  # its colour in figures; None: matplotlib's next colour
    in_study: bool = False  # the study reports numbers for it (its claims name it; its protocol applies)
    # the protocol line's words for the net (tables.protocol): "{key}" is the run's model keyword `key` (for
    # "block", the recorded block); `unrecorded` gives the value of a keyword that runs older than it did not record
    architecture: str = "base width {base_channels}, block {block}"
    unrecorded: Mapping[str, str] = field(default_factory=dict)


_CARDS: dict[str, ModelCard] = {card.name: card for card in (
    ModelCard("unet", "U-Net", "five-level U-Net (Ronneberger et al. 2015), the study's first network", "unet",
              color="#4477aa", in_study=True),
    ModelCard("unetpp", "U-Net++", "five-level UNet++ with nested dense skips (Zhou et al. 2018), the study's second "
              "network", "unetpp", color="#228833", in_study=True),
    ModelCard("dncnn", "DnCNN", "DnCNN-S residual denoiser (Zhang et al. 2017), Table VI's learned baseline", "dncnn",
              color="#ccbb44", architecture="depth {depth}, {channels} channels"),
    ModelCard("fastddpm", "Fast-DDPM", "conditional 10-step diffusion denoiser (Jiang et al. 2024)", "fastddpm",
              architecture="base width {base_channels}, predicts {prediction}", unrecorded={"prediction": "eps"}),
)}


def model_cards() -> list[ModelCard]:
    """Every card, in the order above (the study's nets first)."""
    return list(_CARDS.values())


def has_card(name: str) -> bool:
    return name in _CARDS


def model_card(name: str) -> ModelCard:
    """The card of model `name`; for a name without one (a result of a model since removed), a plain card that
    shows the name itself, so old results still render."""
    return _CARDS.get(name) or ModelCard(name, name, "", "")


def study_models() -> tuple[str, ...]:
    """The models the study reports, in card order: ("unet", "unetpp")."""
    return tuple(card.name for card in _CARDS.values() if card.in_study)
