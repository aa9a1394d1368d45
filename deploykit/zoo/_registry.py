"""The model registry: a decorator records each builder under its function name.

``list_models()`` and ``get_model(name, num_classes=1000, **cfg)`` are the only entry points.
This module imports none of the families (torchvision's ``_api`` way): the families import it
to register, and the package ``deploykit.zoo`` imports every family, so any use of the
registry through the package sees them all.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from deploykit.errors import UsageError
from deploykit.preprocessing import IMAGENET_MEAN, IMAGENET_STD, Preprocessing

if TYPE_CHECKING:
    from torch import nn

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "ModelCard", "Preprocessing", "get_card", "get_model",
           "list_models", "register_model"]

@dataclass(frozen=True)
class ModelCard:
    """What a user needs to know to deploy a network: where it comes from and what it eats."""

    name: str
    family: str
    year: int
    paper: str
    input_size: int = 224
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    torchvision_name: str | None = None
    # Published ImageNet-1k top-1 (%) of the torchvision weights, for accuracy-vs-cost charts.
    top1: float | None = None
    # Ends in global pooling: any num_classes and smaller inputs work.
    global_pool: bool = True

    def to_dict(self) -> dict:
        from dataclasses import asdict

        return asdict(self)


_BUILDERS: dict[str, Callable[..., nn.Module]] = {}
_CARDS: dict[str, ModelCard] = {}


def register_model(
    *,
    family: str,
    year: int,
    paper: str,
    input_size: int = 224,
    preprocessing: Preprocessing | None = None,
    torchvision_name: str | None = None,
    top1: float | None = None,
    global_pool: bool = True,
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Register ``fn`` under its function name with a model card. A duplicate name is an error."""

    def decorator(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = fn.__name__
        if name in _BUILDERS:
            raise ValueError(f"model {name!r} is registered twice")
        pre = preprocessing or Preprocessing(resize=int(input_size * 256 / 224), crop=input_size)
        _CARDS[name] = ModelCard(
            name=name,
            family=family,
            year=year,
            paper=paper,
            input_size=input_size,
            preprocessing=pre,
            torchvision_name=torchvision_name,
            top1=top1,
            global_pool=global_pool,
        )
        _BUILDERS[name] = fn
        return fn

    return decorator


def list_models() -> list[str]:
    """Every registered model name, sorted."""
    return sorted(_BUILDERS)


def _check_name(name: str) -> str:
    if name not in _BUILDERS:
        close = difflib.get_close_matches(name, list(_BUILDERS), n=3, cutoff=0.5)
        hint = f"did you mean {', '.join(close)}?" if close else "see `deploykit models`"
        raise UsageError(f"unknown model {name!r}", hint=hint)
    return name


def get_card(name: str) -> ModelCard:
    """The model card of a registered model."""
    return _CARDS[_check_name(name)]


def get_model(name: str, num_classes: int = 1000, **cfg) -> nn.Module:
    """Build a registered model with fresh (random) weights."""
    if not isinstance(num_classes, int) or num_classes < 1:
        raise UsageError(f"num_classes must be a positive integer, got {num_classes!r}")
    model = _BUILDERS[_check_name(name)](num_classes=num_classes, **cfg)
    return model
