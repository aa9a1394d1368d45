"""Per-layer statistics of a network, computed on the ``meta`` device.

One forward pass of a batch-of-one meta tensor through the model, with forward hooks on every
module and a ``TorchFunctionMode`` that sees the functional ops a container runs between its
children (``torch.flatten``, residual ``+``, ``torch.cat``, ``x.mean([2, 3])``). Meta tensors
carry shapes but no storage, so even VGG-19 is analyzed without allocating one activation.

Conventions (the lecture's, stated once here and in docs/analyze.md):

- One row per module call (or container-level functional op), in execution order.
- Element-wise ops (ReLU, BatchNorm, Dropout, residual add, LocalResponseNorm, a pooling that
  does not change the shape...) are folded into the row they follow unless ``all_layers``:
  their params (BatchNorm's) add to that row. An op is element-wise when its output has the
  shape of one of its inputs and it is not a convolution or a linear layer.
- ``params``: learnable parameters, each counted once (a shared module counts at first use),
  so ``totals["params"] == sum(p.numel() for p in model.parameters())``.
- ``macs``: multiply-accumulates, counted once each. Convolution ``out_elems * in_c/groups *
  kh * kw``; linear ``out_elems * in_features``; pooling ``out_elems * window`` (one
  compare/add per window element, as the lecture counts it); bias, BatchNorm and activations 0.
- ``activation_bytes``: output elements x 4 bytes (FP32), per image.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from deploykit.errors import UsageError

if TYPE_CHECKING:
    from torch import nn

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


# --------------------------------------------------------------------------- the trace


def _expected_spatial(module: nn.Module, in_shape: Shape) -> tuple[int, ...] | None:
    """Spatial output size a conv/pool would compute from ``in_shape`` (may be <= 0)."""
    from torch import nn

    if not isinstance(module, (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd,
                               nn.modules.pooling._AvgPoolNd)):
        return None
    spatial = in_shape[1:]
    n = len(spatial)
    if n == 0 or (isinstance(module, nn.modules.conv._ConvNd) and module.transposed):
        return None
    k = _tup(module.kernel_size, n)
    s = _tup(module.stride or module.kernel_size, n)
    p = _tup(getattr(module, "padding", 0), n)
    if isinstance(p, str):  # 'same' / 'valid'
        p = tuple(0 for _ in range(n)) if p == "valid" else None
        if p is None:
            return tuple(spatial)
    d = _tup(getattr(module, "dilation", 1), n)
    ceil = bool(getattr(module, "ceil_mode", False))
    out = []
    for i, ki, si, pi, di in zip(spatial, k, s, p, d, strict=True):
        span = i + 2 * pi - di * (ki - 1) - 1
        o = (-(-span // si) if ceil else span // si) + 1
        if ceil and (o - 1) * si >= i + pi:
            o -= 1
        out.append(o)
    return tuple(out)


class _TooSmall(Exception):
    def __init__(self, name: str, module: nn.Module | None, out: tuple[int, ...] | None):
        super().__init__(name)
        self.name, self.module, self.out = name, module, out


class _Tracer:
    """Hooks + a TorchFunctionMode that turn one forward pass into rows."""

    def __init__(self, model: nn.Module, owned: dict[str, list[str]], numels: dict[str, int],
                 param_by_id: dict[int, str]):
        self.model = model
        self.names: dict[int, str] = {}
        for n, m in model.named_modules(remove_duplicate=False):
            self.names.setdefault(id(m), n)  # a shared module goes by its first name
        # Parameter names each module owns directly (not through a child), their sizes, and
        # the tensors the forward pass will see (to credit a container's own parameter to the
        # functional op that uses it). Each parameter is counted once, at first use.
        self.owned, self.numels, self.param_by_id = owned, numels, param_by_id
        self.counted: set[str] = set()
        self.rows: list[_Row] = []
        self.stack: list[tuple[str, nn.Module, bool, Shape]] = []  # (name, module, is_leaf, in)
        self.leaf_depth = 0
        self.calls: dict[str, int] = {}
        # Tensors the latest row produced (with what was folded into it and views of it): an
        # element-wise op folds into that row only when it consumes one of them, so a
        # same-shape pooling on a branch's input (GoogLeNet's branch4) stays a row of its own.
        self.last_outputs: list = []

    def consumes_last(self, inputs: Any) -> bool:
        return any(t is o for t in _tensors(inputs) for o in self.last_outputs)

    def append(self, row: _Row, inputs: Any, output: Any) -> None:
        if row.elementwise and self.consumes_last(inputs):
            row.fold = True
            self.last_outputs.extend(_tensors(output))
        else:
            row.fold = False
            self.last_outputs = list(_tensors(output))
        self.rows.append(row)

    def unique(self, name: str) -> str:
        n = self.calls.get(name, 0) + 1
        self.calls[name] = n
        return name if n == 1 else f"{name}#{n}"

    def take_params(self, module_name: str) -> int:
        """Params of ``module_name``'s own parameters not counted yet."""
        return self._take(self.owned.get(module_name, ()))

    def take_tensor_params(self, args: Any) -> int:
        """Params of the parameter tensors among ``args`` not counted yet."""
        return self._take([self.param_by_id[id(t)] for t in _tensors(args)
                           if id(t) in self.param_by_id])

    def _take(self, pnames) -> int:
        fresh = [p for p in dict.fromkeys(pnames) if p not in self.counted]
        self.counted.update(fresh)
        return sum(self.numels[p] for p in fresh)

    def pre_hook(self, module, inputs):
        leaf = next(iter(module.children()), None) is None
        x = _first_tensor(inputs)
        in_shape = _shape(x) if x is not None else ()
        name = self.names.get(id(module), type(module).__name__)
        self.stack.append((name, module, leaf, in_shape))
        if leaf:
            self.leaf_depth += 1
            expected = _expected_spatial(module, in_shape)
            if expected is not None and min(expected) < 1:
                raise _TooSmall(name, module, expected)

    def post_hook(self, module, inputs, output):
        name, _, leaf, _ = self.stack.pop()
        if leaf:
            self.leaf_depth -= 1
        y = _first_tensor(output)
        if y is not None and y.dim() >= 3 and min(y.shape[2:], default=1) < 1:
            raise _TooSmall(name, module, tuple(int(s) for s in y.shape[2:]))
        own = self.take_params(name)
        if leaf:
            # The root has the name "": a bare nn.Conv2d analyzed alone goes by its class name.
            label = self.unique(name or type(module).__name__)
            row = _module_row(label, module, inputs, output, own)
            self.append(row, inputs, output)
        elif own:
            # A container's own parameter that no functional op of it consumed (passed into a
            # child as an argument, say): credit it to the latest row rather than drop it.
            if self.rows:
                self.rows[-1].params += own
            else:
                self.append(_module_row(self.unique(name), module, inputs, output, own),
                            inputs, output)

    def on_functional(self, func, args, kwargs, output):
        if self.leaf_depth > 0:
            return  # inside a leaf module: its hook makes the row
        op = _op_name(func)
        owner = self.stack[-1][0] if self.stack else ""
        owner_prefix = f"{owner}." if owner else ""
        y = _first_tensor(output)
        if y is not None and y.dim() >= 3 and min(y.shape[2:], default=1) < 1:
            raise _TooSmall(owner_prefix + op, None, tuple(int(s) for s in y.shape[2:]))
        row = _functional_row(owner_prefix + op, op, args, kwargs or {}, output)
        if row is not None:
            row.name = self.unique(row.name)
            row.params += self.take_tensor_params((args, kwargs))
            self.append(row, (args, kwargs), output)
        elif self.consumes_last((args, kwargs)):
            # A view or split of the latest row's output still counts as that output.
            self.last_outputs.extend(_tensors(output))

    @contextmanager
    def attached(self) -> Iterator[None]:
        import torch
        from torch.overrides import TorchFunctionMode

        tracer = self

        class _Mode(TorchFunctionMode):
            def __torch_function__(self, func, types, args=(), kwargs=None):
                first = args[0] if args else None
                if (
                    getattr(func, "__name__", "") in _NORM_OPS
                    and isinstance(first, torch.Tensor)
                    and first.is_meta
                ):
                    # Meta normalization runs a Python decomposition (most of the time of a
                    # ResNet-152 trace); its result is just a tensor of the input's shape.
                    out = torch.empty_like(first)
                else:
                    out = func(*args, **(kwargs or {}))
                if isinstance(out, torch.Tensor) or (
                    isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor)
                ):
                    tracer.on_functional(func, args, kwargs, out)
                return out

        handles = []
        try:
            for module in self.model.modules():
                handles.append(module.register_forward_pre_hook(self.pre_hook))
                handles.append(module.register_forward_hook(self.post_hook))
            with _Mode():
                yield
        finally:
            for h in handles:
                h.remove()


def _fold(rows: list[_Row], all_layers: bool) -> list[_Row]:
    if all_layers:
        return rows
    out: list[_Row] = []
    for row in rows:
        if row.fold and out:
            prev = out[-1]
            prev.params += row.params
            prev.macs += row.macs
            prev.folded.append(row.name)
        else:
            out.append(row)
    return out


def _param_index(model: nn.Module) -> tuple[dict[str, list[str]], dict[str, int]]:
    """Parameter names owned directly by each module (by module name), and their sizes."""
    owned: dict[str, list[str]] = {}
    numels: dict[str, int] = {}
    for pname, p in model.named_parameters():  # de-duplicates shared parameters
        owner = pname.rsplit(".", 1)[0] if "." in pname else ""
        owned.setdefault(owner, []).append(pname)
        numels[pname] = p.numel()
    return owned, numels


def _totals(layers: list[LayerStats], params_total: int) -> dict[str, int | float]:
    row_params = sum(r.params for r in layers)
    macs = sum(r.macs for r in layers)
    fc = sum(r.params for r in layers if r.kind == "linear")
    conv_macs = sum(r.macs for r in layers if r.kind == "conv")
    return {
        "params": int(params_total),
        "macs": int(macs),
        "activation_bytes": int(sum(r.activation_bytes for r in layers)),
        "peak_activation_bytes": int(max((r.activation_bytes for r in layers), default=0)),
        "fc_params_share": round(fc / params_total, 6) if params_total else 0.0,
        "conv_macs_share": round(conv_macs / macs, 6) if macs else 0.0,
        "params_not_run": int(params_total - row_params),
    }


def _too_small_error(exc: _TooSmall, model_name: str, input_shape: Shape) -> UsageError:
    size = "x".join(str(s) for s in input_shape[1:])
    what = f"{exc.name} ({type(exc.module).__name__})" if exc.module is not None else exc.name
    out = "x".join(str(max(o, 0)) for o in exc.out) if exc.out else "nothing"
    return UsageError(
        f"input {size} is too small for {model_name}: {what} would output {out}",
        hint="use a larger --input-size",
    )


def analyze_model(
    model: nn.Module | str,
    input_size: int | tuple[int, int, int] | None = None,
    *,
    all_layers: bool = False,
    num_classes: int = 1000,
) -> ModelStats:
    """Per-layer table and totals of ``model`` for one image of ``input_size``.

    ``model`` is a zoo name (built on the meta device with ``num_classes``) or any
    ``nn.Module`` (analyzed through meta copies of its parameters: nothing is allocated and
    the module is left as it was). ``input_size`` is N (3xNxN), a (C, H, W) tuple, or None
    (the model card's size for a zoo name, else 224). Raises UsageError for a bad size or one
    that shrinks some layer's output below 1x1, naming that layer.
    """
    import torch

    if isinstance(model, str):
        from deploykit.zoo import get_card, get_model

        card = get_card(model)
        name = card.name
        input_shape = normalize_input_size(input_size, default=card.input_size)
        with torch.device("meta"):
            module = get_model(name, num_classes=num_classes)
        meta_state = None
    else:
        module = model
        name = type(model).__name__
        input_shape = normalize_input_size(input_size)
        # Meta stand-ins for every parameter and buffer: the user's weights are neither
        # copied nor touched, and the forward pass allocates nothing.
        meta_state = {
            k: torch.empty_like(v, device="meta")
            for k, v in [*module.named_parameters(), *module.named_buffers()]
        }

    owned, numels = _param_index(module)
    params_total = sum(numels.values())
    used = meta_state if meta_state is not None else dict(module.named_parameters())
    param_by_id = {id(used[p]): p for p in numels}
    tracer = _Tracer(module, owned, numels, param_by_id)
    was_training = {m: m.training for m in module.modules()}
    module.eval()
    x = torch.empty((1, *input_shape), device="meta")
    try:
        with torch.no_grad(), tracer.attached(), torch.device("meta"):
            if meta_state is None:
                module(x)
            else:
                torch.func.functional_call(module, meta_state, (x,))
    except _TooSmall as exc:
        raise _too_small_error(exc, name, input_shape) from None
    except RuntimeError as exc:
        # A shape error inside the forward pass (a classifier that expects one input size,
        # a kernel larger than its input): the input does not fit this network.
        if tracer.stack:
            where = f"{tracer.stack[-1][0] or 'forward'} ({type(tracer.stack[-1][1]).__name__})"
        else:
            where = "the forward pass"
        raise UsageError(
            f"input {'x'.join(map(str, input_shape))} does not fit {name}: "
            f"{where} failed ({str(exc).strip().splitlines()[0]})",
            hint="check --input-size (the model card's size always works for a zoo model)",
        ) from None
    finally:
        for m, flag in was_training.items():
            m.training = flag

    layers = [row.freeze() for row in _fold(tracer.rows, all_layers)]
    return ModelStats(
        model=name,
        input_shape=input_shape,
        layers=tuple(layers),
        totals=_totals(layers, params_total),
    )



# --------------------------------------------------------------------------- the zoo at a glance


@dataclass(frozen=True)
class ZooEntry:
    """One line of ``deploykit models``: a model card plus its analyzed totals."""

    name: str
    family: str
    year: int
    input_size: int
    params: int
    macs: int  # at input_size x input_size, one image
    top1: float | None
    torchvision_name: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_zoo(names: list[str] | None = None, on_model=None) -> tuple[ZooEntry, ...]:
    """Analyze every zoo model (or ``names``) on the meta device at its card's input size.

    ``on_model(name)`` is called before each model, for progress display.
    """
    from deploykit.zoo import get_card, list_models

    entries = []
    for name in names if names is not None else list_models():
        if on_model is not None:
            on_model(name)
        card = get_card(name)
        stats = analyze_model(name)
        entries.append(
            ZooEntry(
                name=name,
                family=card.family,
                year=card.year,
                input_size=card.input_size,
                params=int(stats.totals["params"]),
                macs=int(stats.totals["macs"]),
                top1=card.top1,
                torchvision_name=card.torchvision_name,
            )
        )
    return tuple(entries)
