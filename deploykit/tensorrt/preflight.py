"""Pre-flight: does the ONNX graph carry the precision a strongly typed network will build?

TensorRT 11 has no FP16/INT8 builder flags: a strongly typed network builds exactly what the
graph says (FP16 weights for FP16; Q/DQ pairs with per-channel weight scales for INT8). So the
graph is checked before the build, and an ONNX-parser failure is listed per node.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from deploykit.errors import CheckFailedError, DeployKitError
from deploykit.onnx_graph import load_graph

ONNX_FLOAT, ONNX_FLOAT16 = 1, 10

@dataclass(frozen=True)
class GraphPrecisionReport:
    """What precision an ONNX graph asks a strongly typed TensorRT network for.

    ``weights`` counts the weight inputs of Conv/Gemm/MatMul nodes by how they are stored;
    ``per_channel``/``per_tensor`` count quantized weights by the shape of their scale.
    """

    precision: str
    weighted_nodes: int
    fp16_weights: int
    fp32_weights: int
    quantized_weights: int
    per_channel: int
    per_tensor: int
    quantized_activations: int
    qdq_pairs: int
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["problems"], data["notes"] = list(self.problems), list(self.notes)
        return data


_WEIGHTED_OPS = {"Conv": 1, "ConvTranspose": 1, "Gemm": 1, "MatMul": 1}


def _attribute(node, name: str, default: Any) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            return attr.i
    return default


def _output_channel_axis(node) -> int:
    """The weight axis that indexes output channels (where per-channel scales must run).

    Conv weights are [C_out, C_in/g, k...]; ConvTranspose [C_in, C_out/g, k...]; MatMul
    [K, N]; Gemm [N, K] with transB=1 (what torch exports for Linear), else [K, N].
    """
    if node.op_type == "Conv":
        return 0
    if node.op_type == "Gemm":
        return 0 if _attribute(node, "transB", 0) else 1
    return 1


class _Graph:
    """Lookups over one graph: who produces a tensor, how a stored tensor is typed and shaped."""

    def __init__(self, graph) -> None:
        self.graph = graph
        self.initializers = {i.name: i for i in graph.initializer}
        self.constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant" and n.output}
        self.producer = {out: n for n in graph.node for out in n.output}
        self.op_counts = Counter(n.op_type for n in graph.node)

    def _stored(self, name: str):
        if name in self.initializers:
            return self.initializers[name]
        for attr in getattr(self.constants.get(name), "attribute", ()):
            if attr.name == "value":
                return attr.t
        return None

    def stored_type(self, name: str) -> int | None:
        tensor = self._stored(name)
        return None if tensor is None else tensor.data_type

    def dims_of(self, name: str) -> tuple[int, ...] | None:
        tensor = self._stored(name)
        return None if tensor is None else tuple(tensor.dims)

    def made_by(self, name: str, op_type: str) -> bool:
        return name in self.producer and self.producer[name].op_type == op_type


@dataclass
class _Counts:
    weighted: int = 0
    fp16: int = 0
    fp32: int = 0
    quantized: int = 0
    per_channel: int = 0
    per_tensor: int = 0
    activations: int = 0
    notes: list[str] = field(default_factory=list)


def _count_quantized_weight(g: _Graph, node, dequantize, counts: _Counts) -> None:
    """Classify a DequantizeLinear weight by its scale: per output channel, per tensor, or odd."""
    counts.weighted += 1
    counts.quantized += 1
    scale = g.dims_of(dequantize.input[1]) if len(dequantize.input) > 1 else None
    origin = dequantize.input[0]
    if g.made_by(origin, "QuantizeLinear"):
        origin = g.producer[origin].input[0]
    weight_dims = g.dims_of(origin)
    axis = _attribute(dequantize, "axis", 1)
    channel_axis = _output_channel_axis(node)
    channels = weight_dims[channel_axis] if weight_dims and len(weight_dims) > channel_axis else None
    if scale and len(scale) == 1 and scale[0] > 1 and axis == channel_axis and channels in (None, scale[0]):
        counts.per_channel += 1
    elif scale is not None and (len(scale) == 0 or (len(scale) == 1 and scale[0] == 1)):
        counts.per_tensor += 1
    else:
        counts.notes.append(f"{node.name or node.op_type}: weight scale shape {scale} axis {axis}")


def _count_weight(g: _Graph, node, counts: _Counts) -> bool:
    """Count one Conv/Gemm/MatMul weight by how it is stored; False when it has no weight."""
    weight_name = node.input[_WEIGHTED_OPS[node.op_type]]
    source = g.producer.get(weight_name)
    if source is not None and source.op_type == "Cast":
        # a weight cast at run time carries the type it is stored in
        weight_name, source = source.input[0], g.producer.get(source.input[0])
    if source is None or source.op_type == "Constant":
        dtype = g.stored_type(weight_name)
        if dtype is None:
            return False  # an activation-by-activation MatMul: no weight to classify
        counts.weighted += 1
        counts.fp16 += dtype == ONNX_FLOAT16
        counts.fp32 += dtype == ONNX_FLOAT
        return True
    if source.op_type == "DequantizeLinear":
        _count_quantized_weight(g, node, source, counts)
        return True
    return False


def _count_weights(g: _Graph) -> _Counts:
    counts = _Counts()
    for node in g.graph.node:
        if node.op_type not in _WEIGHTED_OPS or len(node.input) < 2:
            continue
        if _count_weight(g, node, counts) and g.made_by(node.input[0], "DequantizeLinear"):
            counts.activations += 1
    return counts


def _problems(precision: str, c: _Counts, op_counts: Counter) -> tuple[list[str], list[str]]:
    """Why TensorRT would not build ``precision`` from these counts, and what is worth noting."""
    problems: list[str] = []
    notes: list[str] = list(c.notes[:5])
    if precision == "fp16":
        if c.fp16 == 0:
            problems.append(
                f"no Conv/Gemm/MatMul weight is stored as FLOAT16 ({c.fp32} of {c.weighted} are FLOAT): "
                "a strongly typed network would build an FP32 engine"
            )
        elif c.fp32:
            notes.append(f"{c.fp32} of {c.weighted} weights stay FP32 (kept in FP32 by the FP16 conversion)")
    elif precision == "int8":
        if op_counts["QuantizeLinear"] == 0 and op_counts["DequantizeLinear"] == 0:
            problems.append(
                "the graph has no QuantizeLinear/DequantizeLinear nodes: TensorRT 11 has no INT8 "
                "calibrator, so only Q/DQ nodes make INT8 layers"
            )
        elif c.quantized == 0:
            problems.append("no Conv/Gemm weight is behind a DequantizeLinear: no layer can run in INT8")
        elif c.activations == 0:
            problems.append("no Conv/Gemm input is behind a Q/DQ pair: the quantized weights would run in float")
        if c.per_tensor:
            notes.append(f"{c.per_tensor} of {c.quantized} quantized weights use one scale per tensor (per-channel is more accurate)")
        if c.quantized and c.quantized < c.weighted:
            notes.append(f"{c.weighted - c.quantized} of {c.weighted} weighted layers are left unquantized")
    elif precision == "fp32":
        if c.quantized or op_counts["QuantizeLinear"]:
            problems.append("an fp32 variant contains Q/DQ nodes")
        if c.fp16:
            problems.append(f"an fp32 variant stores {c.fp16} weights as FLOAT16")
    return problems, notes


def inspect_graph_precision(model: Any, precision: str) -> GraphPrecisionReport:
    """How the graph encodes ``precision``; the problems say why TensorRT 11 would build FP32.

    Conventions followed (ModelOpt's output, TensorRT's explicit-quantization guide):
    FP16 graphs store weights as FLOAT16 initializers (I/O may stay FP32 behind Casts); INT8
    graphs put DequantizeLinear (fed by QuantizeLinear or by an INT8 initializer) on the weight
    input of each quantized Conv/Gemm, with a 1-D scale of one value per output channel and
    ``axis=0`` (per-channel), and Q/DQ pairs on the activations.
    """
    g = _Graph(load_graph(model).graph)
    counts = _count_weights(g)
    qdq_pairs = sum(
        1 for n in g.graph.node if n.op_type == "DequantizeLinear" and g.made_by(n.input[0], "QuantizeLinear")
    )
    problems, notes = _problems(precision, counts, g.op_counts)
    return GraphPrecisionReport(
        precision=precision,
        weighted_nodes=counts.weighted,
        fp16_weights=counts.fp16,
        fp32_weights=counts.fp32,
        quantized_weights=counts.quantized,
        per_channel=counts.per_channel,
        per_tensor=counts.per_tensor,
        quantized_activations=counts.activations,
        qdq_pairs=qdq_pairs,
        problems=tuple(problems),
        notes=tuple(notes),
    )


def check_graph_precision(model: Any, precision: str, variant: str | None = None) -> GraphPrecisionReport:
    """:func:`inspect_graph_precision`, raising CheckFailedError when the graph cannot give ``precision``."""
    report = inspect_graph_precision(model, precision)
    if not report.ok:
        what = variant or (str(model) if isinstance(model, (str, os.PathLike)) else "the ONNX graph")
        raise CheckFailedError(
            f"{what} is not a strongly typed {precision} graph: {'; '.join(report.problems)}",
            hint=f"re-create it with `deploykit quantize NAME --precision {precision}`"
            if precision != "fp32"
            else "re-export it with `deploykit export NAME`",
        )
    return report


# ---- ONNX parser errors -----------------------------------------------------------------------


def _call(obj: Any, name: str) -> Any:
    """``obj.name()`` (TensorRT's ParserError exposes methods), or None if it is missing or fails."""
    attr = getattr(obj, name, None)
    if attr is None:
        return None
    try:
        return attr() if callable(attr) else attr
    except Exception:  # a binding that throws for a missing field must not hide the other fields
        return None


def format_parser_errors(errors: Iterable[Any], limit: int = 20) -> str:
    """One line per ONNX-parser error: node index, name, operator, code and message.

    ``errors`` are ``tensorrt.ParserError`` objects (``parser.get_error(i)``), which expose
    ``node()``, ``node_name()``, ``node_operator()``, ``code()`` and ``desc()`` (node_name and
    node_operator since TensorRT 9; see the ``IParserError`` reference:
    https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/c-api/classnvonnxparser_1_1_i_parser_error-members.html).
    """
    errors = list(errors)
    lines = []
    for error in errors[:limit]:
        index = _call(error, "node")
        name = _call(error, "node_name") or ""
        op = _call(error, "node_operator") or ""
        code = _call(error, "code")
        desc = str(_call(error, "desc") or "").strip()
        where = "graph" if index is None or index < 0 else f"node {index}"
        if name or op:
            where += f" {name or '?'} ({op or '?'})"
        code_text = str(code).rsplit(".", 1)[-1] if code is not None else ""
        lines.append(f"  - {where}: {code_text + ': ' if code_text else ''}{desc or 'no message'}")
    if len(errors) > limit:
        lines.append(f"  ... and {len(errors) - limit} more")
    return "\n".join(lines)


def parser_failure(onnx_path: str | os.PathLike, errors: Sequence[Any]) -> DeployKitError:
    """The error for a graph TensorRT's ONNX parser rejected, listing every node it failed on."""
    count = len(errors)
    listing = format_parser_errors(errors) if errors else "  (the parser reported no details)"
    return DeployKitError(
        f"TensorRT's ONNX parser rejected {onnx_path} ({count} error{'s' if count != 1 else ''}):\n{listing}",
        hint="an unsupported operator or opset: check the node above against TensorRT's ONNX operator support",
    )
