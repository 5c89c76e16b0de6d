"""Build denoisers by name, in the style of BasicSR's ``ARCH_REGISTRY``.

Each network class registers itself with ``@register("name")``; the pipeline builds one from the ``models``
section of the configuration with ``build_model(name, **kwargs)``. Unknown names and unknown keyword arguments
fail with a one-line :class:`CxrError` that lists what is valid. A model's display facts (label, colour,
description) are its card in :mod:`.cards`, which needs no torch: ``register`` refuses a class without a card, and
the registry imports the module each card names the first time a model is looked up, so importing this package
costs no torch until a model is built.

The keyword arguments must be JSON-serialisable: ``build_model`` records the name and the complete keyword set
(defaults filled in) on the model as ``model_name`` and ``model_kwargs``, and a checkpoint that stores those two
rebuilds the same network with ``build_model(model_name, **model_kwargs)``.
"""

from __future__ import annotations

import importlib
import inspect
import json
from typing import Any, Callable, Mapping, TypeVar

from torch import nn

from ..errors import CxrError
from .cards import has_card, model_card, model_cards

M = TypeVar("M", bound=type[nn.Module])

_REGISTRY: dict[str, type[nn.Module]] = {}
_loaded = False


def register(name: str) -> Callable[[M], M]:
    """Class decorator: make ``cls`` buildable as ``build_model(name, ...)``; its card (.cards) must name the
    module that defines it, so that the registry finds it without a list of its own."""

    def decorator(cls: M) -> M:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise CxrError(f"model name {name!r} is registered twice ({_REGISTRY[name].__name__}, {cls.__name__})")
        if not has_card(name):
            raise CxrError(f"model {name!r} ({cls.__name__}) has no card in cxrdenoise.models.cards (its label, "
                           "colour and description)")
        where = f"{__package__}.{model_card(name).module}"
        if cls.__module__ != where:
            raise CxrError(f"model {name!r}: its card names module {where}, but {cls.__name__} is defined in "
                           f"{cls.__module__}")
        _REGISTRY[name] = cls
        return cls

    return decorator


def _load_models() -> None:
    """Import the module of every card (each registers its class), once, on the first look-up."""
    global _loaded
    if not _loaded:
        for card in model_cards():
            importlib.import_module(f"{__package__}.{card.module}")
        _loaded = True


def available_models() -> list[str]:
    """Registered model names, sorted."""
    _load_models()
    return sorted(_REGISTRY)


def model_classes() -> dict[str, type[nn.Module]]:
    """Every registered class by its class name (``UNet``), for ``from cxrdenoise.models import UNet``."""
    _load_models()
    return {cls.__name__: cls for cls in _REGISTRY.values()}


def model_class(name: str) -> type[nn.Module]:
    """The class registered as `name` (for its class attributes, e.g. ``trains_on_target``); one-line error if
    unknown."""
    return _lookup(name)


def model_kwarg_names(name: str) -> list[str]:
    """The keyword arguments the model `name` accepts, in signature order."""
    return list(_signature(_lookup(name)).parameters)


def check_model_config(name: str, kwargs: Mapping[str, Any], image_size: int) -> None:
    """Check the keywords `kwargs` of model `name` (known ones; defaults filled in) against the model's own
    constraints at `image_size` without building it: its classmethod ``check_config(kwargs, image_size)``, which
    raises a one-line :class:`~.blocks.KeywordError` naming the keyword. A model without one is not checked."""
    cls = _lookup(name)
    check = getattr(cls, "check_config", None)
    if check is not None:
        bound = _signature(cls).bind_partial(**kwargs)
        bound.apply_defaults()
        check(dict(bound.arguments), image_size)


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model `name`; fail in one line on an unknown name, keyword or non-JSON value."""
    cls = _lookup(name)
    sig = _signature(cls)
    unknown = sorted(set(kwargs) - set(sig.parameters))
    if unknown:
        raise CxrError(
            f"model {name!r}: unknown argument(s) {', '.join(unknown)}; valid: {', '.join(sig.parameters) or 'none'}"
        )
    try:
        json.dumps(kwargs, allow_nan=False)
    except (TypeError, ValueError) as err:
        raise CxrError(f"model {name!r}: arguments must be JSON-serialisable for checkpoints ({err})") from None
    bound = sig.bind(**kwargs)
    bound.apply_defaults()
    model = cls(**bound.arguments)
    model.model_name = name
    model.model_kwargs = dict(bound.arguments)
    return model


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameter elements (all of them, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def _lookup(name: str) -> type[nn.Module]:
    _load_models()
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        raise CxrError(f"unknown model {name!r}; available: {', '.join(available_models())}") from None


def _signature(cls: type[nn.Module]) -> inspect.Signature:
    sig = inspect.signature(cls.__init__)
    params = [p for p in sig.parameters.values() if p.name != "self"]
    return sig.replace(parameters=params)
