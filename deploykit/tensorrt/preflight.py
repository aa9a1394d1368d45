"""Pre-flight: does the ONNX graph carry the precision a strongly typed network will build?

TensorRT 11 has no FP16/INT8 builder flags: a strongly typed network builds exactly what the
graph says (FP16 weights for FP16; Q/DQ pairs with per-channel weight scales for INT8). So the
graph is checked before the build, and an ONNX-parser failure is listed per node.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

from deploykit.errors import CheckFailedError, DeployKitError
from deploykit.onnx_graph import PrecisionReport, precision_report


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


# The counts a pre-flight report takes over from onnx_graph's PrecisionReport unchanged.
_COUNTS = tuple(f.name for f in fields(GraphPrecisionReport) if f.name not in ("precision", "problems", "notes"))


def _problems(precision: str, r: PrecisionReport) -> tuple[list[str], list[str]]:
    """Why TensorRT would not build ``precision`` from this graph's counts, and what is worth noting."""
    problems: list[str] = []
    notes: list[str] = [f"{name}: weight scale is neither per output channel nor per tensor" for name in r.odd_scales[:5]]
    if precision == "fp16":
        if r.fp16_weights == 0:
            problems.append(
                f"no Conv/Gemm/MatMul weight is stored as FLOAT16 ({r.fp32_weights} of {r.weighted_nodes} are FLOAT): "
                "a strongly typed network would build an FP32 engine"
            )
        elif r.fp32_weights:
            notes.append(f"{r.fp32_weights} of {r.weighted_nodes} weights stay FP32 (kept in FP32 by the FP16 conversion)")
    elif precision == "int8":
        if r.qdq_nodes == 0:
            problems.append(
                "the graph has no QuantizeLinear/DequantizeLinear nodes: TensorRT 11 has no INT8 "
                "calibrator, so only Q/DQ nodes make INT8 layers"
            )
        elif r.quantized_weights == 0:
            problems.append("no Conv/Gemm weight is behind a DequantizeLinear: no layer can run in INT8")
        elif r.quantized_activations == 0:
            problems.append("no Conv/Gemm input is behind a Q/DQ pair: the quantized weights would run in float")
        if r.per_tensor:
            notes.append(
                f"{r.per_tensor} of {r.quantized_weights} quantized weights use one scale per tensor (per-channel is more accurate)"
            )
        if r.quantized_weights and r.quantized_weights < r.weighted_nodes:
            notes.append(f"{r.weighted_nodes - r.quantized_weights} of {r.weighted_nodes} weighted layers are left unquantized")
    elif precision == "fp32":
        if r.quantized_weights or r.qdq_nodes:
            problems.append("an fp32 variant contains Q/DQ nodes")
        if r.fp16_weights:
            problems.append(f"an fp32 variant stores {r.fp16_weights} weights as FLOAT16")
    return problems, notes


def inspect_graph_precision(model: Any, precision: str) -> GraphPrecisionReport:
    """How the graph encodes ``precision``; the problems say why TensorRT 11 would build FP32.

    The counts come from :func:`deploykit.onnx_graph.precision_report` (the one place that
    reads a graph's precision). Conventions followed (ModelOpt's output, TensorRT's
    explicit-quantization guide): FP16 graphs store weights as FLOAT16 initializers (I/O may
    stay FP32 behind Casts); INT8 graphs put DequantizeLinear (fed by QuantizeLinear or by an
    INT8 initializer) on the weight input of each quantized Conv/Gemm, with a 1-D scale of one
    value per output channel on the output-channel axis (per-channel), and Q/DQ pairs on the
    activations.
    """
    report = precision_report(model)
    problems, notes = _problems(precision, report)
    return GraphPrecisionReport(
        precision=precision, problems=tuple(problems), notes=tuple(notes), **{k: getattr(report, k) for k in _COUNTS}
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
