"""A pre-flight of an ONNX graph against the operators TensorRT's ONNX parser supports.

Graph facts (operator counts, opset) come from ``deploykit.onnx_graph``; ONNX writing (save,
slim, checker, shape inference, external data) lives in ``deploykit.onnx_io``.
The TensorRT operator list is data (``deploykit/data/trt_onnx_ops.json``) with its source
URL and TensorRT version, so updating it for a new release is a data change.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import TYPE_CHECKING, Any

from deploykit.onnx_graph import DEFAULT_DOMAINS, main_opset, operator_counts, subgraphs

if TYPE_CHECKING:
    import onnx


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
    for graph in subgraphs(model.graph):
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


