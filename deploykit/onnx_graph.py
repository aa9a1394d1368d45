"""Read-only facts about an ONNX file: its inputs and outputs, opset, IR version.

One tensor description (``TensorSpec``) for the whole package; every module that needs to know
what a graph takes and returns asks here. Weights are never loaded (``load_external_data=False``):
only names, types and dims are read. Writing ONNX (save, slim, external data) lives elsewhere.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploykit.errors import DeployKitError, UsageError


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
    versions = [o.version for o in load_graph(model).opset_import if o.domain in ("", "ai.onnx")]
    return max(versions) if versions else None


def ir_version(model: Any) -> int:
    return int(load_graph(model).ir_version)


def input_size(model: Any) -> int | None:
    """The square spatial size of the single image input, None when it is not fixed."""
    spec, _ = single_io(model)
    if len(spec.shape) == 4 and spec.shape[-1] > 0 and spec.shape[-1] == spec.shape[-2]:
        return int(spec.shape[-1])
    return None
