"""Published weights by name, through torchvision's own weights API and its download cache.

``deploykit export vgg16 --weights DEFAULT`` (or ``IMAGENET1K_V1``, ``IMAGENET1K_V2``, ...)
resolves the name with ``torchvision.models.get_model_weights``, takes the file from
``$TORCH_HOME/hub/checkpoints/`` (downloading it there, with torchvision's hash check, when it
is missing and the network allows), and loads it into the zoo network with the same safe loader
as a local ``--weights PATH``. The weight's metadata says how a client must preprocess
(resize, crop, mean, std, interpolation), which classes the outputs are, and the accuracy
torchvision published; it goes into the sidecar and the Triton config.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploykit.errors import UsageError

if TYPE_CHECKING:
    from deploykit.zoo import ModelCard, Preprocessing

_NAME = re.compile(r"^(DEFAULT|[A-Z][A-Z0-9]*(_[A-Z0-9]+)+)$")  # torchvision's enum member names
# Zoo-network options the published weights need (torchvision sets them in its builders).
NETWORK_OPTIONS = {"googlenet": {"transform_input": True}}


def is_weights_name(value: Any) -> bool:
    """True for ``DEFAULT`` or an enum-style name such as ``IMAGENET1K_V2`` (not a file path)."""
    return isinstance(value, str) and bool(_NAME.match(value)) and not Path(value).exists()


@dataclass(frozen=True)
class Pretrained:
    """One published weight: its enum name, file, and what its metadata says."""

    model: str  # the zoo name
    torchvision: str  # e.g. "ResNet50_Weights.IMAGENET1K_V2"
    url: str
    file: Path  # where torchvision's cache keeps it
    preprocessing: Preprocessing
    categories: tuple[str, ...]
    metrics: dict[str, Any] = field(default_factory=dict)
    recipe: str | None = None
    num_params: int | None = None
    network_options: dict[str, Any] = field(default_factory=dict)

    @property
    def file_name(self) -> str:
        return self.file.name

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.torchvision,
            "url": self.url,
            "file": self.file.name,
            "accuracy": self.metrics,
            "recipe": self.recipe,
            "num_params": self.num_params,
            "network_options": dict(self.network_options),
        }


def _enum(card: ModelCard) -> Any:
    import torchvision

    if not card.torchvision_name:
        raise UsageError(
            f"{card.name} has no published torchvision weights",
            hint="pass a checkpoint file with --weights PATH, or export random weights (--seed)",
        )
    return torchvision.models.get_model_weights(card.torchvision_name)


def available(card: ModelCard) -> list[str]:
    """The weight names torchvision publishes for the zoo model (``DEFAULT`` first); empty when none."""
    if not card.torchvision_name:
        return []
    members = list(_enum(card).__members__)
    return ["DEFAULT", *[m for m in members if m != "DEFAULT"]]


def _preprocessing(weights: Any) -> Preprocessing:
    from deploykit.zoo import Preprocessing

    t = weights.transforms()
    interpolation = getattr(t.interpolation, "value", str(t.interpolation))
    return Preprocessing(
        resize=int(t.resize_size[0]),
        crop=int(t.crop_size[0]),
        mean=tuple(float(m) for m in t.mean),
        std=tuple(float(s) for s in t.std),
        interpolation=str(interpolation),
    )


def resolve(card: ModelCard, name: str) -> Pretrained:
    """The published weight ``name`` of the zoo model ``card`` (UsageError naming the choices)."""
    import torch

    enum = _enum(card)
    if name not in enum.__members__:
        raise UsageError(
            f"{card.name} has no torchvision weights named {name!r}",
            hint=f"choose from {', '.join(available(card))}, or pass a file with --weights PATH",
        )
    weights = enum[name]
    file = Path(torch.hub.get_dir()) / "checkpoints" / weights.url.rsplit("/", 1)[-1]
    meta = weights.meta
    return Pretrained(
        model=card.name,
        torchvision=f"{type(weights).__name__}.{weights.name}",
        url=weights.url,
        file=file,
        preprocessing=_preprocessing(weights),
        categories=tuple(meta.get("categories") or ()),
        metrics=dict(meta.get("_metrics") or {}),
        recipe=meta.get("recipe"),
        num_params=meta.get("num_params"),
        network_options=dict(NETWORK_OPTIONS.get(card.name, {})),
    )


def fetch(weight: Pretrained) -> Path:
    """The cached file of ``weight``, downloaded into torchvision's cache (with its hash check) if missing.

    Offline with nothing cached: a UsageError saying which file to place where; nothing is written.
    """
    if weight.file.is_file():
        return weight.file
    import torch

    weight.file.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(weight.url, str(weight.file), hash_prefix=_hash_prefix(weight.file.name), progress=False)
    except RuntimeError as exc:  # the hash check
        raise UsageError(f"the download of {weight.url} is corrupt: {str(exc).splitlines()[0][:200]}") from exc
    except OSError as exc:  # URLError and socket errors: offline, proxy, DNS
        raise UsageError(
            f"cannot download {weight.torchvision} ({exc.__class__.__name__}: {str(exc)[:120]})",
            hint=f"place {weight.file.name} (from {weight.url}) in {weight.file.parent}, "
            "or pass a local file with --weights PATH",
        ) from None
    return weight.file


def _hash_prefix(file_name: str) -> str | None:
    """torchvision's file names end in the first hex digits of the file's sha256 (``resnet18-f37072fd.pth``)."""
    match = re.search(r"-([a-f0-9]{6,})\.", file_name)
    return match.group(1) if match else None


def hash_matches(weight: Pretrained, sha256: str) -> bool | None:
    """Whether ``sha256`` starts with the prefix in the file name (None when the name has none)."""
    prefix = _hash_prefix(weight.file.name)
    return None if prefix is None else sha256.startswith(prefix)


def published() -> dict[str, list[str]]:
    """Every zoo model with torchvision weights -> their names (``DEFAULT`` first), for ``deploykit models --weights``."""
    from deploykit.zoo import get_card, list_models

    return {name: names for name in list_models() if (names := available(get_card(name)))}
