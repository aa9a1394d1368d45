"""How one op of the traced forward pass becomes a row: its kind, shapes and MACs.

The counting conventions are stated once, in ``deploykit.analyze.trace``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deploykit.analyze.stats import BYTES_PER_ELEMENT, LayerStats, Shape

if TYPE_CHECKING:
    from torch import nn


# --------------------------------------------------------------------------- op classification

_POOL_OPS = {
    "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
    "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
    "max_pool2d_with_indices", "lp_pool2d", "mean", "amax", "amin", "sum",
}
_FLATTEN_OPS = {"flatten", "view", "reshape"}
_NORM_OPS = {"batch_norm", "instance_norm", "group_norm", "layer_norm"}
_CONCAT_OPS = {"cat", "concat", "concatenate", "stack"}
# Ops that only re-describe or split memory, or inspect a tensor: never a row.
_SHAPE_OPS = {
    "view", "reshape", "transpose", "permute", "contiguous", "chunk", "split", "unbind",
    "getitem", "squeeze", "unsqueeze", "expand", "expand_as", "narrow", "select", "t",
    "detach", "clone", "to", "type", "float", "half", "size", "dim", "numel", "flatten",
    "get", "set_", "requires_grad_", "unflatten", "movedim", "split_with_sizes",
}


def _op_name(func: Any) -> str:
    name = getattr(func, "__name__", None) or str(func)
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        # __iadd__ -> add, __imul__ -> mul (in-place dunders); keep __invert__ etc. readable
        if name.startswith("i") and name[1:] in {"add", "sub", "mul", "truediv", "and", "or"}:
            name = name[1:]
    return name.rstrip("_") or name


def _module_kind(module: nn.Module) -> str:
    from torch import nn

    if isinstance(module, (nn.modules.conv._ConvNd,)):
        return "conv"
    if isinstance(
        module,
        (
            nn.modules.pooling._MaxPoolNd,
            nn.modules.pooling._AvgPoolNd,
            nn.modules.pooling._AdaptiveAvgPoolNd,
            nn.modules.pooling._AdaptiveMaxPoolNd,
            nn.modules.pooling._LPPoolNd,
        ),
    ):
        return "pool"
    if isinstance(module, (nn.Linear, nn.Bilinear)):
        return "linear"
    if isinstance(module, nn.Flatten):
        return "flatten"
    return "other"


def _tup(value: Any, n: int) -> tuple[int, ...] | str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, (tuple, list)):
        return tuple(int(v) if v is not None else 0 for v in value)
    return (int(value),) * n


def _first_tensor(obj: Any):
    import torch

    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)):
        for item in obj:
            t = _first_tensor(item)
            if t is not None:
                return t
    if isinstance(obj, dict):
        for item in obj.values():
            t = _first_tensor(item)
            if t is not None:
                return t
    return None


def _tensors(obj: Any) -> Iterator:
    import torch

    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, (tuple, list)):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


def _shape(t) -> Shape:
    # Drop the batch dimension; a 0-d or 1-d result keeps what it has.
    return tuple(int(s) for s in t.shape[1:]) if t.dim() >= 1 else ()


def _numel(shape: Shape) -> int:
    return math.prod(shape) if shape else 1


def _window(in_shape: Shape, out_shape: Shape) -> int:
    """Window size of an adaptive/global pool: ceil(in/out) per spatial dim; 0 when a no-op."""
    if in_shape == out_shape or len(in_shape) != len(out_shape) or len(in_shape) < 2:
        return 0
    return math.prod(-(-i // max(o, 1)) for i, o in zip(in_shape[1:], out_shape[1:], strict=True))


@dataclass
class _Row:
    name: str
    kind: str
    in_shape: Shape
    out_shape: Shape
    kernel: Any = None
    stride: Any = None
    padding: Any = None
    filters: int | None = None
    params: int = 0
    macs: int = 0
    elementwise: bool = False
    fold: bool = False  # element-wise and consumes the previous row's output
    folded: list[str] = field(default_factory=list)

    def freeze(self) -> LayerStats:
        return LayerStats(
            name=self.name,
            kind=self.kind,
            in_shape=self.in_shape,
            out_shape=self.out_shape,
            kernel=self.kernel,
            stride=self.stride,
            padding=self.padding,
            filters=self.filters,
            params=int(self.params),
            macs=int(self.macs),
            activation_bytes=int(_numel(self.out_shape) * BYTES_PER_ELEMENT),
            folded=tuple(self.folded),
        )


def _module_row(name: str, module: nn.Module, inputs: tuple, output: Any, params: int) -> _Row:
    x = _first_tensor(inputs)
    y = _first_tensor(output)
    in_shape = _shape(x) if x is not None else ()
    out_shape = _shape(y) if y is not None else ()
    kind = _module_kind(module)
    row = _Row(name=name, kind=kind, in_shape=in_shape, out_shape=out_shape, params=params)
    out_elems = _numel(out_shape) if y is not None else 0
    if kind == "conv":
        k = tuple(module.kernel_size)
        row.kernel, row.stride = k, tuple(module.stride)
        row.padding = module.padding if isinstance(module.padding, str) else tuple(module.padding)
        row.filters = int(module.out_channels)
        if getattr(module, "transposed", False):
            # Each input element scatters into out_c/groups x kernel outputs.
            in_elems = _numel(in_shape)
            row.macs = in_elems * (module.out_channels // module.groups) * math.prod(k)
        else:
            row.macs = out_elems * (module.in_channels // module.groups) * math.prod(k)
    elif kind == "linear":
        row.filters = int(module.out_features)
        if hasattr(module, "in1_features"):  # nn.Bilinear
            row.macs = out_elems * module.in1_features * module.in2_features
        else:
            row.macs = out_elems * int(module.in_features)
    elif kind == "pool":
        dims = max(len(out_shape) - 1, 1)
        if hasattr(module, "kernel_size"):
            row.kernel = _tup(module.kernel_size, dims)
            row.stride = _tup(module.stride if module.stride else module.kernel_size, dims)
            row.padding = _tup(getattr(module, "padding", 0), dims)
            row.macs = out_elems * math.prod(row.kernel)
        else:  # adaptive
            row.macs = out_elems * _window(in_shape, out_shape)
    row.elementwise = kind not in ("conv", "linear") and _same_shape_as_input(inputs, output)
    return row


def _same_shape_as_input(inputs: Any, output: Any) -> bool:
    y = _first_tensor(output)
    if y is None:
        return True  # produces no tensor: nothing to show
    return any(tuple(t.shape) == tuple(y.shape) for t in _tensors(inputs))


def _functional_row(name: str, op: str, args: tuple, kwargs: dict, output: Any) -> _Row | None:
    """A row for a functional op run by a container between its children, or None."""
    y = _first_tensor(output)
    if y is None or not hasattr(y, "shape"):
        return None
    if op in _CONCAT_OPS:
        first = _first_tensor(args)
        in_shape = _shape(first) if first is not None else ()
        return _Row(name=name, kind="other", in_shape=in_shape, out_shape=_shape(y))
    x = _first_tensor(args)
    if x is None:
        return None
    in_shape, out_shape = _shape(x), _shape(y)
    if op in _FLATTEN_OPS and x.dim() > 2 and y.dim() == 2:
        return _Row(name=name, kind="flatten", in_shape=in_shape, out_shape=out_shape)
    if op in _SHAPE_OPS:
        return None
    if op in _POOL_OPS and x.dim() >= 3 and in_shape != out_shape:
        row = _Row(name=name, kind="pool", in_shape=in_shape, out_shape=out_shape)
        dims = max(len(out_shape) - 1, 1)
        kernel = args[1] if len(args) > 1 else kwargs.get("kernel_size")
        # F.max_pool2d(x, kernel, stride, padding); lp_pool puts norm_type first, so it and the
        # adaptive pools take the reduction branch.
        if op.startswith(("max_pool", "avg_pool")) and kernel is not None:
            row.kernel = _tup(kernel, dims)
            stride = args[2] if len(args) > 2 else kwargs.get("stride")
            row.stride = _tup(stride or kernel, dims)
            row.padding = _tup(args[3] if len(args) > 3 else kwargs.get("padding", 0), dims)
            row.macs = _numel(out_shape) * math.prod(row.kernel)
        else:  # adaptive or a reduction such as x.mean([2, 3]): every input read once
            window = _window(in_shape, out_shape) if len(out_shape) == len(in_shape) else 0
            row.macs = _numel(out_shape) * window if window else _numel(in_shape)
        return row
    if op in ("conv1d", "conv2d", "conv3d"):
        w = args[1] if len(args) > 1 else kwargs.get("weight")
        groups = kwargs.get("groups", args[6] if len(args) > 6 else 1)
        macs = _numel(out_shape) * (x.shape[1] // groups) * math.prod(w.shape[2:])
        return _Row(name=name, kind="conv", in_shape=in_shape, out_shape=out_shape,
                    kernel=tuple(w.shape[2:]), filters=int(w.shape[0]), macs=macs)
    if op == "linear":
        return _Row(name=name, kind="linear", in_shape=in_shape, out_shape=out_shape,
                    filters=int(y.shape[-1]), macs=_numel(out_shape) * int(x.shape[-1]))
    if op in ("matmul", "mm", "bmm"):
        return _Row(name=name, kind="other", in_shape=in_shape, out_shape=out_shape,
                    macs=_numel(out_shape) * int(x.shape[-1]))
    row = _Row(name=name, kind="other", in_shape=in_shape, out_shape=out_shape)
    row.elementwise = _same_shape_as_input((args, kwargs), output)
    return row
