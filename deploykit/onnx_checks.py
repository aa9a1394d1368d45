"""Checks and clean-up of an exported ONNX graph: opset, checker, shape inference, slimming,
and a pre-flight against the operators TensorRT's ONNX parser supports.

Every check works on a file path as well as in memory, so models above protobuf's 2 GB
limit (weights in ONNX external data) go through the same functions.
The TensorRT operator list is data (``deploykit/data/trt_onnx_ops.json``) with its source
URL and TensorRT version, so updating it for a new release is a data change.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploykit.errors import CheckFailedError

if TYPE_CHECKING:
    import onnx

# Protobuf cannot serialize a message of 2 GiB or more; stay a little below it so the
# graph structure itself (nodes, names, metadata) always fits beside the weights.
PROTOBUF_LIMIT = 2**31 - 1
EXTERNAL_DATA_THRESHOLD = PROTOBUF_LIMIT - 64 * 2**20
DEFAULT_DOMAINS = ("", "ai.onnx")


# ---- opset and operators -------------------------------------------------------------------
def main_opset(model: onnx.ModelProto) -> int | None:
    """The version of the default ONNX domain the model imports (None when it imports none)."""
    for entry in model.opset_import:
        if entry.domain in DEFAULT_DOMAINS:
            return int(entry.version)
    return None


def _graphs(graph: onnx.GraphProto) -> Iterable[onnx.GraphProto]:
    """``graph`` and every subgraph (If/Loop/Scan bodies), depth first."""
    import onnx

    yield graph
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _graphs(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for sub in attr.graphs:
                    yield from _graphs(sub)


def operator_counts(model: onnx.ModelProto) -> dict[str, int]:
    """How often each operator occurs, subgraphs and local-function bodies included.

    Operators outside the default ONNX domain are keyed ``domain::Op``; a call of a local
    function counts the function's body instead of the call.
    """
    functions = {(f.domain, f.name): f for f in model.functions}
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

    for graph in _graphs(model.graph):
        visit(graph.node)
    return dict(sorted(counts.items()))


@dataclass(frozen=True)
class TrtOperatorList:
    """TensorRT's ONNX-parser operator support, as documented for one TensorRT release."""

    source: str
    tensorrt_version: str
    opset_min: int
    opset_max: int
    supported: frozenset[str]
    unsupported: frozenset[str]
    restrictions: Mapping[str, str] = field(default_factory=dict)


@lru_cache(maxsize=1)
def tensorrt_operator_list() -> TrtOperatorList:
    """The packaged list (``deploykit/data/trt_onnx_ops.json``)."""
    text = resources.files("deploykit").joinpath("data/trt_onnx_ops.json").read_text()
    data = json.loads(text)
    return TrtOperatorList(
        source=data["source"],
        tensorrt_version=data["tensorrt_version"],
        opset_min=int(data["opset_min"]),
        opset_max=int(data["opset_max"]),
        supported=frozenset(data["supported"]),
        unsupported=frozenset(data["unsupported"]),
        restrictions=dict(data.get("restrictions", {})),
    )


@dataclass(frozen=True)
class TrtPreflight:
    """What TensorRT's ONNX parser would say about the graph's operators, before any GPU.

    ``unsupported``: operators the parser does not handle (or does not list), including any
    outside the default ONNX domain (they need a plugin). ``restricted``: operators present
    whose support comes with a documented condition (shown, not checked).
    """

    tensorrt_version: str
    source: str
    opset: int | None
    opset_supported: bool
    unsupported: tuple[str, ...]
    restricted: Mapping[str, str] = field(default_factory=dict)
    violations: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.opset_supported and not self.unsupported and not self.violations

    def to_dict(self) -> dict[str, Any]:
        return {
            "tensorrt_version": self.tensorrt_version,
            "source": self.source,
            "opset": self.opset,
            "opset_supported": self.opset_supported,
            "unsupported": list(self.unsupported),
            "restricted": dict(self.restricted),
            "violations": list(self.violations),
        }


def tensorrt_preflight(
    model: onnx.ModelProto, operators: Mapping[str, int] | None = None, table: TrtOperatorList | None = None
) -> TrtPreflight:
    """Compare the graph's operators and opset with TensorRT's documented ONNX support."""
    table = table or tensorrt_operator_list()
    operators = operator_counts(model) if operators is None else operators
    unsupported = tuple(op for op in operators if "::" in op or op not in table.supported)
    restricted = {op: table.restrictions[op] for op in operators if op in table.restrictions}
    opset = main_opset(model)
    return TrtPreflight(
        tensorrt_version=table.tensorrt_version,
        source=table.source,
        opset=opset,
        opset_supported=opset is not None and table.opset_min <= opset <= table.opset_max,
        unsupported=unsupported,
        restricted=restricted,
        violations=tuple(restriction_violations(model)),
    )


def restriction_violations(model: onnx.ModelProto, limit: int = 20) -> list[str]:
    """The documented restrictions a CNN can break that are checkable from the graph alone:
    constant ``axes`` of Reduce*/Squeeze/Unsqueeze, 2D/3D pooling without dilation, no
    MaxPool ``Indices`` output. One line per offending node (at most ``limit``)."""
    import onnx

    out: list[str] = []
    for graph in _graphs(model.graph):
        constants = {t.name for t in graph.initializer}
        constants |= {o for n in graph.node if n.op_type == "Constant" for o in n.output}
        for node in graph.node:
            if node.domain not in DEFAULT_DOMAINS:
                continue
            label = f"{node.op_type} {node.name or node.output[0]}"
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            takes_axes = node.op_type.startswith("Reduce") or node.op_type in ("Squeeze", "Unsqueeze")
            if takes_axes and len(node.input) > 1 and node.input[1] and node.input[1] not in constants:
                out.append(f"{label}: axes is computed at run time (TensorRT needs a constant)")
            if node.op_type in ("MaxPool", "AveragePool", "LpPool"):
                kernel = attrs.get("kernel_shape") or []
                if len(kernel) not in (2, 3):
                    out.append(f"{label}: {len(kernel)}D pooling (TensorRT pools in 2D or 3D only)")
                if any(d != 1 for d in attrs.get("dilations") or []):
                    out.append(f"{label}: dilated pooling is not supported")
            if node.op_type == "MaxPool" and len(node.output) > 1 and node.output[1]:
                out.append(f"{label}: the Indices output is not supported")
    return out[:limit]


# ---- checker, shape inference, slimming -------------------------------------------------------
def _first_line(exc: BaseException, limit: int = 400) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:limit]


def check_model(path: str | os.PathLike) -> None:
    """``onnx.checker`` full check (it runs strict shape inference too) on a saved model.

    Works on models with external data (the checker reads the file itself).
    """
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise CheckFailedError(
            f"the exported ONNX model fails onnx.checker: {_first_line(exc)}",
            hint="this is an exporter bug or an unsupported construct in the model",
        ) from exc


def infer_shapes_in_place(path: str | os.PathLike) -> None:
    """Strict shape inference written back into the file, so every tensor carries its shape
    (Netron shows them; TensorRT and ORT do not need to guess). Path-based, so large models work."""
    import onnx

    try:
        onnx.shape_inference.infer_shapes_path(str(path), str(path), check_type=True, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise CheckFailedError(
            f"ONNX shape inference fails on the exported model: {_first_line(exc)}",
            hint="an operator's shapes do not agree; re-export with a static --batch to narrow it down",
        ) from exc


@dataclass(frozen=True)
class SlimResult:
    model: onnx.ModelProto
    nodes_before: int
    nodes_after: int
    note: str | None = None


def slim(model: onnx.ModelProto) -> SlimResult:
    """Constant folding, dead-node and common-subexpression elimination with onnxslim.

    Names of the graph inputs and outputs are kept. If onnxslim is missing or fails, the
    model is returned unchanged with a note: slimming is a clean-up, never a requirement.
    """
    from deploykit._deps import is_available

    before = len(model.graph.node)
    if not is_available("onnxslim"):
        return SlimResult(model, before, before, "onnxslim is not installed: graph not slimmed")
    import onnxslim

    io_names = ([i.name for i in model.graph.input], [o.name for o in model.graph.output])
    try:
        slimmed = onnxslim.slim(model)
    except Exception as exc:  # onnxslim raises assorted errors; keep the exporter's graph
        return SlimResult(model, before, before, f"onnxslim failed ({_first_line(exc, 120)}): graph not slimmed")
    if slimmed is None or ([i.name for i in slimmed.graph.input], [o.name for o in slimmed.graph.output]) != io_names:
        return SlimResult(model, before, before, "onnxslim changed the graph's inputs/outputs: kept the original")
    return SlimResult(slimmed, before, len(slimmed.graph.node))


# ---- saving ---------------------------------------------------------------------------------
def proto_bytes(model: onnx.ModelProto) -> int:
    """Serialized size of ``model``; weights of a >2 GB model are counted one by one."""
    try:
        return model.ByteSize()
    except Exception:  # protobuf refuses to size messages past 2 GiB on some builds
        tensors = list(model.graph.initializer)
        return sum(len(t.raw_data) for t in tensors) + PROTOBUF_LIMIT // 2


def save_model(model: onnx.ModelProto, path: str | os.PathLike, external_data_threshold: int = EXTERNAL_DATA_THRESHOLD) -> Path | None:
    """Write ``model`` to ``path``; above ``external_data_threshold`` bytes the weights go to
    ``<path>.data`` beside it (ONNX external data, one file). Returns that file, or None when
    everything stayed in ``path``.

    ``onnx.load``, ONNX Runtime, TensorRT and Triton all read the pair when it stays together.
    """
    import onnx

    path = Path(path)
    if proto_bytes(model) <= external_data_threshold:
        onnx.save_model(model, str(path))
        return None
    location = f"{path.name}.data"
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=1024,  # small constants stay inline
        convert_attribute=False,
    )
    written = external_data_files(path)  # none when every tensor was small enough to stay inline
    return written[0] if written else None


def external_data_files(path: str | os.PathLike) -> list[Path]:
    """The external-data files a saved model refers to (empty for a self-contained file)."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    files = set()
    for graph in _graphs(model.graph):
        for tensor in graph.initializer:
            if uses_external_data(tensor):
                files.add(ExternalDataInfo(tensor).location)
    return [path.parent / name for name in sorted(files)]


def model_file_bytes(path: str | os.PathLike) -> int:
    """Bytes on disk of a model and its external-data files."""
    path = Path(path)
    return path.stat().st_size + sum(p.stat().st_size for p in external_data_files(path) if p.is_file())
