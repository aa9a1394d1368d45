"""How an image becomes a network's input: the one ``Preprocessing`` record.

A leaf module (it imports nothing): the zoo's model cards, the sidecars, image loading
(``deploykit.data``), calibration and the serving client all describe preprocessing with it,
and none of them needs torch to do so. ``deploykit.zoo`` re-exports it.
"""

from __future__ import annotations

from dataclasses import dataclass

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the network's input: resize the short side, center-crop, normalize."""

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"
