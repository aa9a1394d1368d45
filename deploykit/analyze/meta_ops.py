"""Shape-only stand-ins for the meta-device ops whose kernels are Python decompositions.

On the meta device, normalizations, activations, ``addmm``, ``cat``, adaptive pools,
element-wise arithmetic and weight initialization run Python reference kernels, and the
first of them imports ``torch._dynamo`` (about a second, most of a whole-zoo analysis). Their
results are fixed by the input shapes, so the trace computes those directly. A stand-in
returns None whenever it cannot decide (not meta, a shape mismatch): the real op then runs and
raises its own error.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from deploykit.analyze.layers import _NORM_OPS

# Ops whose output has their first input's shape: name -> position of the ``inplace`` flag
# in F.<name>'s signature (None: no flag; a trailing underscore means in place too).
_SAME_SHAPE: dict[str, int | None] = {
    **{op: None for op in _NORM_OPS},
    "relu": 1, "relu_": None, "relu6": 1, "hardtanh": 3, "hardtanh_": None, "hardswish": 1,
    "hardsigmoid": 1, "silu": 1, "leaky_relu": 2, "elu": 2, "gelu": None, "sigmoid": None,
    "tanh": None, "dropout": 3, "dropout2d": 3,
}  # fmt: skip
# Element-wise binary ops (residual adds, gates): the output has the broadcast shape.
_BINARY = {"add", "add_", "__add__", "__iadd__", "__radd__", "mul", "mul_", "__mul__",
           "__imul__", "__rmul__", "sub", "sub_", "__sub__", "__isub__"}
_CAT = {"cat", "concat", "concatenate"}
# In-place ops that change a tensor's metadata, not only its values: never skipped.
_METADATA_OPS = {"requires_grad_", "share_memory_", "set_", "resize_", "resize_as_", "t_",
                 "transpose_", "squeeze_", "unsqueeze_", "as_strided_", "swapdims_"}


def _is_meta(x: Any) -> bool:
    return bool(getattr(x, "is_meta", False))


def _in_place(name: str, args: tuple, kwargs: dict) -> bool:
    if name.startswith("__i") or (name.endswith("_") and not name.startswith("_")):
        return True
    if kwargs.get("inplace"):
        return True
    pos = _SAME_SHAPE.get(name)
    return pos is not None and len(args) > pos and args[pos] is True


def _linear(x, weight):
    if not _is_meta(weight) or weight.dim() != 2 or x.shape[-1] != weight.shape[1]:
        return None
    return x.new_empty((*x.shape[:-1], weight.shape[0]))


def _cat(tensors, dim: int):
    if not (isinstance(tensors, (list, tuple)) and tensors and all(map(_is_meta, tensors))):
        return None
    shape = list(tensors[0].shape)
    dim = dim % len(shape)
    rest = [s for i, s in enumerate(shape) if i != dim]
    if any([s for i, s in enumerate(t.shape) if i != dim] != rest for t in tensors):
        return None
    shape[dim] = sum(int(t.shape[dim]) for t in tensors)
    return tensors[0].new_empty(shape)


def _adaptive_pool(x, output_size):
    spatial = tuple(x.shape[2:])
    size = (output_size,) * len(spatial) if isinstance(output_size, int) else tuple(output_size)
    if len(size) != len(spatial):
        return None
    return x.new_empty((*x.shape[:2], *(s if o is None else o for o, s in zip(size, spatial, strict=True))))


def _binary(name: str, x, other):
    import torch

    if _in_place(name, (), {}):
        return x if not hasattr(other, "shape") or _broadcasts_into(other.shape, x.shape) else None
    try:
        shape = x.shape if not hasattr(other, "shape") else torch.broadcast_shapes(x.shape, other.shape)
    except RuntimeError:
        return None
    return x.new_empty(shape)


def _broadcasts_into(small, big) -> bool:
    import torch

    try:
        return tuple(torch.broadcast_shapes(small, big)) == tuple(big)
    except RuntimeError:
        return False


def meta_shortcut(name: str, args: tuple, kwargs: dict):
    """The result of op ``name`` on meta inputs from shapes alone, or None to run the op."""
    first = args[0] if args else None
    if name in _CAT:
        return _cat(first, args[1] if len(args) > 1 else kwargs.get("dim", 0))
    if not _is_meta(first):
        return None
    if name == "linear":
        return _linear(first, args[1] if len(args) > 1 else kwargs.get("weight"))
    if name.startswith("adaptive_") and name.endswith("pool2d"):
        return _adaptive_pool(first, args[1] if len(args) > 1 else kwargs.get("output_size"))
    if name in _BINARY and len(args) > 1:
        return _binary(name, first, args[1])
    if name in _SAME_SHAPE:
        return first if _in_place(name, args, kwargs) else first.new_empty(first.shape)
    return None


@contextmanager
def skip_meta_init() -> Iterator[None]:
    """Weight initialization of meta tensors as a no-op: there are no values to fill."""
    from torch.overrides import TorchFunctionMode

    class _Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            name = getattr(func, "__name__", "")
            # nn.init functions pass the tensor by keyword.
            first = args[0] if args else (kwargs or {}).get("tensor")
            in_place = name.endswith("_") and not name.startswith("_")
            if in_place and name not in _METADATA_OPS and _is_meta(first):
                return first
            return func(*args, **(kwargs or {}))

    with _Mode():
        yield
