"""Read-only facts about an ONNX file: inputs and outputs, opset, IR version, operator counts
and the precision the graph carries.

One tensor description (``TensorSpec``) for the whole package; every module that needs to know
what a graph takes and returns, which operators it has, or whether it is an FP32, FP16 or INT8
(Q/DQ) graph asks here. Weights are never loaded (``load_external_data=False``): only names,
types, dims and initializer metadata are read. Writing ONNX (save, slim, external data, checker,
shape inference) lives in ``deploykit.onnx_io``.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from deploykit.errors import DeployKitError, UsageError

DEFAULT_DOMAINS = ("", "ai.onnx")


@dataclass(frozen=True)
class TensorSpec:
    """Name, shape (-1 for a dynamic dimension) and numpy dtype name of a tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: str = "float32"

    def matches(self, array: Any) -> bool:
        if array.ndim != len(self.shape):
            return False
        return all(s < 0 or s == a for s, a in zip(self.shape, array.shape, strict=True))

    @property
    def dynamic_batch(self) -> bool:
        return bool(self.shape) and self.shape[0] < 0

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TensorSpec:
        shape = data.get("shape") or data.get("dims") or ()
        return cls(str(data["name"]), tuple(int(d) for d in shape), str(data.get("dtype") or "float32"))


def load_graph(model: Any) -> Any:
    """An ``onnx.ModelProto`` from a path (weights left on disk) or the proto itself."""
    if not isinstance(model, (str, os.PathLike)):
        return model
    import onnx

    path = Path(model)
    if not path.is_file():
        raise UsageError(f"no ONNX model at {path}")
    try:
        return onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises DecodeError and friends
        raise DeployKitError(
            f"{path} is not a readable ONNX model: {str(exc).strip()[:200]}",
            hint="the file is corrupt or truncated; re-export it",
        ) from exc


def _dtype_name(elem_type: int) -> str:
    from onnx import helper

    try:
        return helper.tensor_dtype_to_np_dtype(elem_type).name
    except (KeyError, ValueError, TypeError):
        return f"onnx:{elem_type}"


def tensor_spec(value_info: Any) -> TensorSpec:
    """A TensorSpec from an ONNX ValueInfoProto (unknown or non-positive dims become -1)."""
    ttype = value_info.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in ttype.shape.dim)
    return TensorSpec(value_info.name, shape, _dtype_name(ttype.elem_type))


def graph_io(model: Any) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """(inputs, outputs) of an ONNX model; initializers listed as inputs (old exporters) are left out."""
    graph = load_graph(model).graph
    initializers = {i.name for i in graph.initializer}
    inputs = [tensor_spec(v) for v in graph.input if v.name not in initializers]
    return inputs, [tensor_spec(v) for v in graph.output]


def single_io(model: Any) -> tuple[TensorSpec, TensorSpec]:
    """The one image input and one logits output deploykit's classifiers have."""
    inputs, outputs = graph_io(model)
    if len(inputs) != 1 or len(outputs) != 1:
        raise UsageError(
            f"expected one input and one output, the graph has {len(inputs)} and {len(outputs)}",
            hint="deploykit runs image classifiers: one N x C x H x W input, one logits output",
        )
    return inputs[0], outputs[0]


def main_opset(model: Any) -> int | None:
    """The default-domain (ai.onnx) opset the model imports, None if it imports none."""
    versions = [o.version for o in load_graph(model).opset_import if o.domain in DEFAULT_DOMAINS]
    return max(versions) if versions else None


def ir_version(model: Any) -> int:
    return int(load_graph(model).ir_version)


def input_size(model: Any) -> int | None:
    """The square spatial size of the single image input, None when it is not fixed."""
    spec, _ = single_io(model)
    if len(spec.shape) == 4 and spec.shape[-1] > 0 and spec.shape[-1] == spec.shape[-2]:
        return int(spec.shape[-1])
    return None


# ---- operators ---------------------------------------------------------------------------------
def subgraphs(graph: Any) -> Iterator[Any]:
    """``graph`` and every subgraph (If/Loop/Scan bodies), depth first."""
    import onnx

    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from subgraphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from subgraphs(sub)


def operator_counts(model: Any) -> dict[str, int]:
    """How often each operator occurs, subgraphs and local-function bodies included.

    Operators outside the default ONNX domain are keyed ``domain::Op``; a call of a local
    function counts the function's body instead of the call. Sorted by operator name.
    """
    proto = load_graph(model)
    functions = {(f.domain, f.name): f for f in proto.functions}
    counts: Counter[str] = Counter()

    def visit(nodes: Iterable[Any], depth: int = 0) -> None:
        for node in nodes:
            key = (node.domain, node.op_type)
            if key in functions and depth < 32:
                visit(functions[key].node, depth + 1)
            elif node.domain in DEFAULT_DOMAINS:
                counts[node.op_type] += 1
            else:
                counts[f"{node.domain}::{node.op_type}"] += 1

    for graph in subgraphs(proto.graph):
        visit(graph.node)
    return dict(sorted(counts.items()))


# ---- precision -----------------------------------------------------------------------------------
ONNX_FLOAT, ONNX_FLOAT16 = 1, 10
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
# Which input of a weighted operator is its weight.
_WEIGHTED_OPS = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}


@dataclass(frozen=True)
class PrecisionReport:
    """Which precision an ONNX graph carries, and the counts behind the decision.

    ``precision`` is ``int8`` when the graph has QuantizeLinear/DequantizeLinear nodes,
    ``fp16`` when weights or graph inputs/outputs are stored as FLOAT16, else ``fp32``;
    ``why`` says it in words. ``weighted_nodes`` counts Conv/ConvTranspose/Gemm/MatMul nodes
    with a stored weight, split by storage (``fp16_weights``, ``fp32_weights``,
    ``quantized_weights`` behind a DequantizeLinear); quantized weights are ``per_channel``
    (one scale per output channel on that axis) or ``per_tensor``. ``quantized_activations``
    counts weighted nodes whose data input comes from a DequantizeLinear; ``qdq_pairs`` the
    QuantizeLinear -> DequantizeLinear pairs. ``odd_scales`` names weights whose scale is neither.
    """

    precision: str
    why: str
    weighted_nodes: int = 0
    fp16_weights: int = 0
    fp32_weights: int = 0
    quantized_weights: int = 0
    per_channel: int = 0
    per_tensor: int = 0
    quantized_activations: int = 0
    qdq_pairs: int = 0
    qdq_nodes: int = 0
    fp16_initializers: int = 0
    fp16_io: tuple[str, ...] = ()
    odd_scales: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["fp16_io"], data["odd_scales"] = list(self.fp16_io), list(self.odd_scales)
        return data


class _Weights:
    """Stored tensors of one graph (initializers and Constant nodes) and who produces what."""

    def __init__(self, graph: Any):
        self.initializers = {i.name: i for i in graph.initializer}
        self.constants = {}
        for node in graph.node:
            if node.op_type == "Constant" and node.output:
                for attr in node.attribute:
                    if attr.name == "value":
                        self.constants[node.output[0]] = attr.t
        self.producer = {out: n for n in graph.node for out in n.output}

    def stored(self, name: str) -> Any:
        return self.initializers.get(name) or self.constants.get(name)

    def made_by(self, name: str, op_type: str) -> Any:
        node = self.producer.get(name)
        return node if node is not None and node.op_type == op_type else None


def _int_attribute(node: Any, name: str, default: int) -> int:
    return next((int(a.i) for a in node.attribute if a.name == name), default)


def _output_channel_axis(node: Any) -> int:
    """The weight axis that indexes output channels (where per-channel scales run).

    Conv weights are [C_out, C_in/g, k...]; ConvTranspose [C_in, C_out/g, k...]; MatMul
    [K, N]; Gemm [N, K] with transB=1 (what torch exports for Linear), else [K, N].
    """
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        return 0 if _int_attribute(node, "transB", 0) else 1
    return 1


def _scale_kind(node: Any, dequant: Any, weights: _Weights) -> str:
    """``per_channel``, ``per_tensor`` or ``odd`` for the DequantizeLinear feeding ``node``'s weight."""
    scale = weights.stored(dequant.input[1]) if len(dequant.input) > 1 else None
    scale_dims = tuple(scale.dims) if scale is not None else None
    origin = dequant.input[0]
    quantize = weights.made_by(origin, "QuantizeLinear")
    stored = weights.stored(quantize.input[0] if quantize is not None else origin)
    weight_dims = tuple(stored.dims) if stored is not None else None
    axis, channel_axis = _int_attribute(dequant, "axis", 1), _output_channel_axis(node)
    channels = weight_dims[channel_axis] if weight_dims and len(weight_dims) > channel_axis else None
    if scale_dims and len(scale_dims) == 1 and scale_dims[0] > 1 and axis == channel_axis:
        return "per_channel" if channels is None or scale_dims[0] == channels else "odd"
    if scale_dims is not None and (len(scale_dims) == 0 or scale_dims == (1,)):
        return "per_tensor"
    return "odd"


def _weight_storage(graph: Any) -> Counter[str]:
    """Counts of how the weights of Conv/Gemm/MatMul nodes are stored (see PrecisionReport)."""
    weights = _Weights(graph)
    counts: Counter[str] = Counter()
    for node in graph.node:
        if node.op_type not in _WEIGHTED_OPS or len(node.input) < 2:
            continue
        name = node.input[_WEIGHTED_OPS[node.op_type]]
        cast = weights.made_by(name, "Cast")
        if cast is not None:  # a weight cast at run time carries the type it is stored in
            name = cast.input[0]
        dequant = weights.made_by(name, "DequantizeLinear")
        if dequant is not None:
            kind = _scale_kind(node, dequant, weights)
            counts["quantized"] += 1
            counts[kind] += 1
            if kind == "odd":
                counts[f"odd:{node.name or node.op_type}"] += 1
        elif name not in weights.producer or name in weights.constants:
            stored = weights.stored(name)
            if stored is None:
                continue  # activation x activation MatMul: no weight to classify
            counts["fp16" if stored.data_type == ONNX_FLOAT16 else "fp32" if stored.data_type == ONNX_FLOAT else "other"] += 1
        else:
            continue
        counts["weighted"] += 1
        if weights.made_by(node.input[0], "DequantizeLinear") is not None:
            counts["activations"] += 1
    counts["qdq_pairs"] = sum(
        1 for n in graph.node if n.op_type == "DequantizeLinear" and weights.made_by(n.input[0], "QuantizeLinear") is not None
    )
    return counts


def precision_report(model: Any) -> PrecisionReport:
    """The one answer to "which precision does this graph carry?" (see :class:`PrecisionReport`)."""
    proto = load_graph(model)
    graph = proto.graph
    counts = _weight_storage(graph)
    ops = operator_counts(proto)
    qdq = sum(ops.get(op, 0) for op in QDQ_OPS)
    fp16_inits = sum(1 for t in graph.initializer if t.data_type == ONNX_FLOAT16)
    fp16_io = tuple(v.name for v in (*graph.input, *graph.output) if v.type.tensor_type.elem_type == ONNX_FLOAT16)
    if qdq:
        precision, why = "int8", f"it has {qdq} QuantizeLinear/DequantizeLinear nodes"
    elif fp16_inits or fp16_io:
        parts = [f"{fp16_inits} FP16 initializers"] if fp16_inits else []
        if fp16_io:
            parts.append(f"FP16 inputs/outputs ({', '.join(fp16_io[:3])})")
        precision, why = "fp16", f"it has {' and '.join(parts)}"
    else:
        precision, why = "fp32", "FP32 graph"
    return PrecisionReport(
        precision=precision,
        why=why,
        weighted_nodes=counts["weighted"],
        fp16_weights=counts["fp16"],
        fp32_weights=counts["fp32"],
        quantized_weights=counts["quantized"],
        per_channel=counts["per_channel"],
        per_tensor=counts["per_tensor"],
        quantized_activations=counts["activations"],
        qdq_pairs=counts["qdq_pairs"],
        qdq_nodes=qdq,
        fp16_initializers=fp16_inits,
        fp16_io=fp16_io,
        odd_scales=tuple(k.split(":", 1)[1] for k in counts if k.startswith("odd:")),
    )
