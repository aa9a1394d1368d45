"""The typed results of the per-layer analysis and the input-size conventions.

``LayerStats`` is one row, ``ModelStats`` a model's rows and totals; every renderer in
``deploykit.analyze.render`` draws these. How the rows are computed: ``deploykit.analyze.trace``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deploykit.errors import UsageError

if TYPE_CHECKING:
    pass

KINDS = ("conv", "pool", "linear", "flatten", "other")
BYTES_PER_ELEMENT = 4  # FP32 activations

Shape = tuple[int, ...]


@dataclass(frozen=True)
class LayerStats:
    """One row of the per-layer table. Shapes exclude the batch dimension."""

    name: str
    kind: str  # one of KINDS
    in_shape: Shape
    out_shape: Shape
    kernel: tuple[int, ...] | None
    stride: tuple[int, ...] | None
    padding: tuple[int, ...] | str | None
    filters: int | None  # conv out_channels / linear out_features
    params: int
    macs: int
    activation_bytes: int  # output elements x 4 (FP32, one image)
    folded: tuple[str, ...] = ()  # names of the element-wise ops folded into this row

    def to_dict(self) -> dict[str, Any]:
        """The row as the JSON contract has it (no ``filters``/``folded``)."""
        return {
            "name": self.name,
            "kind": self.kind,
            "in_shape": list(self.in_shape),
            "out_shape": list(self.out_shape),
            "kernel": _listify(self.kernel),
            "stride": _listify(self.stride),
            "padding": _listify(self.padding),
            "params": int(self.params),
            "macs": int(self.macs),
            "activation_bytes": int(self.activation_bytes),
        }


@dataclass(frozen=True)
class ModelStats:
    """A model's per-layer table and totals.

    ``totals`` keys: ``params`` (every learnable parameter once), ``macs`` and
    ``activation_bytes`` (sums over the rows), ``peak_activation_bytes`` (the largest single
    row), ``fc_params_share`` (fraction of params in linear rows), ``conv_macs_share``
    (fraction of MACs in conv rows), ``params_not_run`` (params of modules the eval forward
    never calls, e.g. auxiliary heads; included in ``params``, not in any row).
    """

    model: str
    input_shape: Shape
    layers: tuple[LayerStats, ...]
    totals: dict[str, int | float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """The JSON contract: model, input_shape, layers[...], totals{...}; counts are ints."""
        return {
            "model": self.model,
            "input_shape": list(self.input_shape),
            "layers": [layer.to_dict() for layer in self.layers],
            "totals": dict(self.totals),
        }


def _listify(value):
    if isinstance(value, tuple):
        return list(value)
    return value


# --------------------------------------------------------------------------- input handling


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def normalize_input_size(input_size: Any, default: int = 224, channels: int = 3) -> Shape:
    """``None`` -> (3, d, d); ``N`` -> (3, N, N); ``(C, H, W)`` as is; anything else UsageError."""
    if input_size is None:
        input_size = default
    if _is_int(input_size):
        dims: tuple = (channels, input_size, input_size)
    elif isinstance(input_size, (tuple, list)) and len(input_size) == 3:
        dims = tuple(input_size)
    else:
        raise UsageError(
            f"input size must be an integer or a (C, H, W) tuple, got {input_size!r}",
            hint="e.g. --input-size 224",
        )
    if not all(_is_int(d) and d >= 1 for d in dims):
        raise UsageError(
            f"input size must be positive integers, got {input_size!r}",
            hint="e.g. --input-size 224",
        )
    return dims


def parse_input_size(text: str | None) -> int | tuple[int, int, int] | None:
    """The CLI's ``--input-size``: ``N`` (NxN), ``HxW`` or ``CxHxW``; positive integers only."""
    if text is None:
        return None
    parts = str(text).strip().lower().split("x")
    hint = "use a positive integer such as 224, or HxW such as 224x192"
    if not 1 <= len(parts) <= 3 or not all(p.strip().isdigit() for p in parts):
        raise UsageError(f"--input-size must be a positive integer, got {text!r}", hint=hint)
    dims = [int(p) for p in parts]
    if min(dims) < 1:
        raise UsageError(f"--input-size must be a positive integer, got {text!r}", hint=hint)
    if len(dims) == 1:
        return dims[0]
    if len(dims) == 2:
        return (3, dims[0], dims[1])
    return (dims[0], dims[1], dims[2])
