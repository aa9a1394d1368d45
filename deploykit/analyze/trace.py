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

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from deploykit.analyze.layers import (
    _first_tensor,
    _functional_row,
    _module_row,
    _op_name,
    _Row,
    _shape,
    _tensors,
    _tup,
)
from deploykit.analyze.meta_ops import meta_shortcut, skip_meta_init
from deploykit.analyze.stats import LayerStats, ModelStats, Shape, normalize_input_size
from deploykit.errors import UsageError

if TYPE_CHECKING:
    from torch import nn


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
                out = meta_shortcut(getattr(func, "__name__", ""), args, kwargs or {})
                if out is None:
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


def _forward_error(exc: Exception, tracer: _Tracer, name: str, input_shape: Shape) -> UsageError:
    """The input does not fit the network: name the layer the forward pass stopped in."""
    if isinstance(exc, _TooSmall):
        size = "x".join(str(s) for s in input_shape[1:])
        what = f"{exc.name} ({type(exc.module).__name__})" if exc.module is not None else exc.name
        out = "x".join(str(max(o, 0)) for o in exc.out) if exc.out else "nothing"
        return UsageError(
            f"input {size} is too small for {name}: {what} would output {out}",
            hint="use a larger --input-size",
        )
    # A shape error inside the forward pass (a classifier that expects one input size,
    # a kernel larger than its input).
    if tracer.stack:
        where = f"{tracer.stack[-1][0] or 'forward'} ({type(tracer.stack[-1][1]).__name__})"
    else:
        where = "the forward pass"
    return UsageError(
        f"input {'x'.join(map(str, input_shape))} does not fit {name}: "
        f"{where} failed ({str(exc).strip().splitlines()[0]})",
        hint="check --input-size (the model card's size always works for a zoo model)",
    )


def _meta_subject(model: nn.Module | str, input_size, num_classes: int):
    """(module, name, input shape, meta state): a zoo name is built on the meta device; a
    user's module is analyzed through meta stand-ins of its parameters and buffers, so its
    weights are neither copied nor touched (meta state None means the module is on meta)."""
    import torch

    if isinstance(model, str):
        from deploykit.zoo import get_card, get_model

        card = get_card(model)
        with torch.device("meta"), skip_meta_init():
            module = get_model(card.name, num_classes=num_classes)
        return module, card.name, normalize_input_size(input_size, default=card.input_size), None
    meta_state = {
        k: torch.empty_like(v, device="meta")
        for k, v in [*model.named_parameters(), *model.named_buffers()]
    }
    return model, type(model).__name__, normalize_input_size(input_size), meta_state


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

    module, name, input_shape, meta_state = _meta_subject(model, input_size, num_classes)
    owned, numels = _param_index(module)
    used = meta_state if meta_state is not None else dict(module.named_parameters())
    tracer = _Tracer(module, owned, numels, {id(used[p]): p for p in numels})
    was_training = {m: m.training for m in module.modules()}
    module.eval()
    x = torch.empty((1, *input_shape), device="meta")
    try:
        with torch.no_grad(), tracer.attached(), torch.device("meta"):
            if meta_state is None:
                module(x)
            else:
                torch.func.functional_call(module, meta_state, (x,))
    except (_TooSmall, RuntimeError) as exc:
        raise _forward_error(exc, tracer, name, input_shape) from None
    finally:
        for m, flag in was_training.items():
            m.training = flag

    layers = [row.freeze() for row in _fold(tracer.rows, all_layers)]
    return ModelStats(
        model=name,
        input_shape=input_shape,
        layers=tuple(layers),
        totals=_totals(layers, sum(numels.values())),
    )
