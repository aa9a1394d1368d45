"""FP32 ONNX -> strongly typed FP16 ONNX with NVIDIA ModelOpt AutoCast.

TensorRT 11 builds every network strongly typed: a tensor runs in FP16 only when the ONNX
graph says so. AutoCast rewrites the graph: FP16 initializers (weights), FP16 activations,
and Cast nodes at the graph's edges when ``keep_io_types`` (clients keep sending FP32).

What stays FP32 (the rule set; every kept node is reported with its reason):

- weights beyond FP16's range (|w| > 65504, AutoCast ``init_max``);
- nodes whose inputs or outputs exceed ``data_max`` (512) on real reference data: above
  512 FP16's spacing is 0.5 or more, so activations that large lose their fractional part;
  the reference data is the calibration set, not random noise, so the check sees the
  magnitudes the deployed model sees;
- op types that overflow or lose precision in FP16: exponentials and logarithms, powers,
  softmax, and LRN (AlexNet-era local response normalization sums squared activations).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.onnx_graph import graph_io, load_graph, operator_counts
from deploykit.precision._modelopt import (
    modelopt_version,
    refuse_converted,
    require_modelopt,
    running_modelopt,
    save_checked,
)

DATA_MAX = 512.0  # FP16 spacing is 0.5 at 512: larger activations lose their fraction
INIT_MAX = float(np.finfo(np.float16).max)  # 65504
REFERENCE_SAMPLES = 32  # one batch through the FP32 graph with every tensor marked as output
FP32_OP_TYPES: dict[str, str] = {
    "Exp": "exponentials overflow FP16 above e^11",
    "Log": "logarithms of small FP16 values lose precision",
    "Pow": "powers overflow FP16",
    "Softmax": "softmax sums exponentials (overflow in FP16)",
    "LogSoftmax": "log-softmax sums exponentials (overflow in FP16)",
    "LRN": "local response normalization sums squared activations (overflow in FP16)",
}
_SKIP = re.compile(r"^Skipping node (?P<name>.+?): (?P<reason>.*)$")
_RULE_REASONS = {
    "DisabledOpTypes": "op type kept in FP32 by deploykit's rule set",
    "DisabledNodeNameRegexRule": "excluded by name (nodes_to_exclude)",
    "DepthOfReductionRule": "reduction too deep for FP16 accumulation",
}


@dataclass(frozen=True)
class KeptNode:
    """A node AutoCast left in FP32, and why."""

    name: str
    op_type: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "op_type": self.op_type, "reason": self.reason}


@dataclass(frozen=True)
class Fp16Conversion:
    """What :func:`convert_onnx_fp16` wrote."""

    path: Path
    nodes: int
    kept: tuple[KeptNode, ...]
    keep_io_types: bool
    fp16_initializers: int
    fp32_initializers: int
    casts: int
    operators: dict[str, int]
    rules: dict[str, Any]
    reference: str
    tool: dict[str, str]
    seconds: float
    inputs: dict[str, str] = field(default_factory=dict)  # name -> dtype after conversion

    @property
    def converted(self) -> int:
        """Nodes running in FP16 (the graph's nodes less the kept ones and the inserted Casts)."""
        return self.nodes - self.casts - len(self.kept)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "nodes": self.nodes,
            "nodes_fp16": self.converted,
            "kept_fp32": [k.to_dict() for k in self.kept],
            "keep_io_types": self.keep_io_types,
            "initializers": {"float16": self.fp16_initializers, "float32": self.fp32_initializers},
            "casts": self.casts,
            "operators": dict(self.operators),
            "rules": dict(self.rules),
            "reference_data": self.reference,
            "io_dtypes": dict(self.inputs),
            "tool": dict(self.tool),
            "seconds": round(self.seconds, 3),
        }


def _reason(message: str) -> str:
    """AutoCast's log reason -> a sentence (its rule class name alone says little)."""
    if message in _RULE_REASONS:
        return _RULE_REASONS[message]
    if message.startswith("initializer"):
        return f"weights beyond FP16's range: {message}"
    if message.startswith("reference IO out of range"):
        return f"activations beyond {DATA_MAX:g} on the reference data ({message.split(': ', 1)[-1]})"
    return message


def _autocast(src_path: Path, keep_io_types: bool, reference: dict | None, rules: dict[str, Any]) -> tuple[Any, Any]:
    """Run ModelOpt AutoCast; returns (the converted model, what it logged)."""
    with running_modelopt("FP16 conversion") as captured:
        from modelopt.onnx.autocast import convert_to_mixed_precision

        model = convert_to_mixed_precision(
            onnx_path=str(src_path),
            low_precision_type="fp16",
            keep_io_types=keep_io_types,
            calibration_data=reference,
            data_max=rules["data_max"],
            init_max=rules["init_max"],
            op_types_to_exclude=list(rules["op_types_kept_fp32"]),
            nodes_to_exclude=list(rules["nodes_to_exclude"]),
            providers=["cpu"],
        )
    return model, captured


def _kept_nodes(model, captured, op_types: dict[str, str]) -> tuple[KeptNode, ...]:
    """The nodes AutoCast logged as kept in FP32, each with a sentence saying why."""
    by_name = {node.name: node for node in model.graph.node}
    kept: dict[str, KeptNode] = {}
    for message in captured.messages():
        match = _SKIP.match(message)
        if match and match["name"] in by_name and match["name"] not in kept:
            node = by_name[match["name"]]
            reason = _reason(match["reason"])
            if node.op_type in op_types and reason == _RULE_REASONS["DisabledOpTypes"]:
                reason = f"{node.op_type}: {op_types[node.op_type]}"
            kept[node.name] = KeptNode(node.name, node.op_type, reason)
    return tuple(kept.values())


def _reference(reference_data: np.ndarray | None, input_names: list[str]) -> dict[str, np.ndarray] | None:
    if reference_data is None:
        return None
    if len(input_names) != 1:
        raise ValueError("reference_data is a single array; the model has several inputs")
    return {input_names[0]: np.ascontiguousarray(reference_data[:REFERENCE_SAMPLES], dtype=np.float32)}


def convert_onnx_fp16(
    src_path: str | os.PathLike,
    dst_path: str | os.PathLike,
    keep_io_types: bool = True,
    *,
    reference_data: np.ndarray | None = None,
    reference_source: str = "random inputs in [-1, 1] (AutoCast's default)",
    data_max: float = DATA_MAX,
    init_max: float = INIT_MAX,
    op_types_to_exclude: Sequence[str] | None = None,
    nodes_to_exclude: Sequence[str] = (),
) -> Fp16Conversion:
    """Convert the FP32 ONNX model at ``src_path`` to FP16, writing ``dst_path``.

    ``reference_data`` (N x C x H x W float32, the first :data:`REFERENCE_SAMPLES` are used)
    drives the ``data_max`` range check; without it AutoCast feeds random data. ``op_types_to_exclude``
    defaults to :data:`FP32_OP_TYPES`. Raises UsageError when the source is already FP16 or
    quantized, MissingDependencyError (``[int8]`` extra) without ModelOpt, DeployKitError when
    AutoCast fails; ``dst_path`` is only written on success.
    """
    require_modelopt("FP16 conversion (ModelOpt AutoCast)")
    import onnx

    start = time.perf_counter()
    src_path, dst_path = Path(src_path), Path(dst_path)
    source = load_graph(src_path)  # DeployKitError for a missing, corrupt or truncated file
    refuse_converted(source, src_path)
    input_names = [i.name for i in source.graph.input]
    del source
    op_types = dict(FP32_OP_TYPES) if op_types_to_exclude is None else {op: "excluded by the caller" for op in op_types_to_exclude}
    rules = {"init_max": init_max, "data_max": data_max, "op_types_kept_fp32": op_types, "nodes_to_exclude": list(nodes_to_exclude)}
    reference = _reference(reference_data, input_names)
    model, captured = _autocast(src_path, keep_io_types, reference, rules)
    kept = _kept_nodes(model, captured, op_types)
    save_checked(model, dst_path)
    f16 = onnx.TensorProto.FLOAT16
    counts = operator_counts(model)
    return Fp16Conversion(
        path=dst_path,
        nodes=len(model.graph.node),
        kept=kept,
        keep_io_types=keep_io_types,
        fp16_initializers=sum(1 for t in model.graph.initializer if t.data_type == f16),
        fp32_initializers=sum(1 for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT),
        casts=counts.get("Cast", 0),
        operators=counts,
        rules=rules,
        reference=f"{reference_source}, {len(reference[input_names[0]])} samples" if reference else reference_source,
        tool={"name": "NVIDIA ModelOpt AutoCast (modelopt.onnx.autocast.convert_to_mixed_precision)", "version": modelopt_version()},
        seconds=time.perf_counter() - start,
        inputs={spec.name: spec.dtype for specs in graph_io(model) for spec in specs},
    )
