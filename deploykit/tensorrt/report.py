"""What a built engine really runs in, from the engine inspector's JSON; per-layer times.

Since TensorRT 11 dropped the FP16/INT8 builder flags, "the build succeeded" proves nothing
about precision: the inspector's layer descriptions do.

Inspector JSON changes: https://docs.nvidia.com/deeplearning/tensorrt/11.0.0/api/migration/tensorrt-10x-to-11x-IEngineInspector.html
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from deploykit.errors import CheckFailedError

# Type words in the inspector's tensor descriptions, e.g. 10.x "Format/Datatype":
# "Row major linear FP32", "Channel major FP16 format where channel % 8 == 0",
# "Thirty-two wide channel vectorized row major Int8 format"; 11.x "DataType": "Half".
_TYPE_WORDS = {
    "fp32": "FP32", "float": "FP32",
    "fp16": "FP16", "half": "FP16",
    "bfloat16": "BF16", "bf16": "BF16",
    "int8": "INT8",
    "fp8": "FP8", "fp4": "FP4", "int4": "INT4",
    "int32": "INT32", "int64": "INT64", "uint8": "UINT8", "bool": "BOOL",
}
_TYPE_RE = re.compile(r"\b(" + "|".join(sorted(_TYPE_WORDS, key=len, reverse=True)) + r")\b", re.IGNORECASE)
FLOAT_TYPES = ("FP32", "FP16", "BF16", "INT8", "FP8", "FP4", "INT4")
REDUCED = {"fp16": ("FP16", "BF16"), "int8": ("INT8",)}
# Layers that only move or reformat data: they tell nothing about compute precision.
_DATA_MOVEMENT = {"reformat", "noop", "shuffle", "constant", "identity", "cast", "slice", "concatenation", "gather"}
# Layers whose boundary tensors do not state what runs inside: a Myelin region (a fused
# "{ForeignNode[...]}" subgraph) keeps FP32 boundary tensors when the graph's Casts to FP16 are
# fused into it, and a plugin computes in whatever it likes. Only their declared weights count.
_OPAQUE = {"myelin", "foreignnode", "plugin", "pluginv2", "pluginv3"}
UNKNOWN = "unknown"


def type_from_description(text: Any) -> str | None:
    """``"Channel major FP16 format where channel % 8 == 0"`` -> ``"FP16"``; unknown -> None."""
    if not isinstance(text, str):
        return None
    match = _TYPE_RE.search(text)
    return _TYPE_WORDS[match.group(1).lower()] if match else None


def tensor_type(tensor: Mapping[str, Any]) -> str | None:
    """The data type of one inspector tensor entry (10.x ``Format/Datatype`` or 11.x ``DataType``)."""
    for key in ("DataType", "Datatype", "Format/Datatype", "Format/DataType", "Format"):
        found = type_from_description(tensor.get(key))
        if found:
            return found
    return None


@dataclass(frozen=True)
class EngineLayer:
    """One layer of a built engine, as the inspector describes it."""

    name: str
    type: str
    precision: str | None  # the narrowest float type among its inputs, weights and outputs; None: not stated
    types: tuple[str, ...] = ()
    macs: int = 0  # weights x output positions (per sample): the layer's share of compute, 0 if unknown

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "precision": self.precision}

    @property
    def moves_data(self) -> bool:
        return self.type.lower() in _DATA_MOVEMENT


def _weights(layer: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    # "Weights": {"Type": "Half", "Count": 9408}, "ConvWeights": {"Type": "Int8", ...}
    return [v for k, v in layer.items() if k.endswith("Weights") and isinstance(v, Mapping)]


def _opaque(layer: Mapping[str, Any]) -> bool:
    kind = str(layer.get("LayerType") or layer.get("ParameterType") or "").lower()
    return kind in _OPAQUE or str(layer.get("Name", "")).startswith("{ForeignNode[")


def _layer_types(layer: Mapping[str, Any]) -> list[str]:
    found = [t for w in _weights(layer) if (t := type_from_description(w.get("Type")))]
    if _opaque(layer):
        return found
    for key in ("Inputs", "Outputs"):
        for tensor in layer.get(key) or []:
            if isinstance(tensor, Mapping) and (t := tensor_type(tensor)):
                found.append(t)
    return found


def _layer_macs(layer: Mapping[str, Any]) -> int:
    """Weights x output positions per sample (a convolution's or GEMM's MACs); 0 when not stated."""
    count = sum(int(w.get("Count") or 0) for w in _weights(layer))
    outputs = [t for t in layer.get("Outputs") or [] if isinstance(t, Mapping)]
    dims = outputs[0].get("Dimensions") if outputs else None
    positions = 1
    if isinstance(dims, list) and len(dims) > 2 and all(isinstance(d, int) and d > 0 for d in dims[2:]):
        for d in dims[2:]:
            positions *= d
    return count * positions


def layer_precision(types: Iterable[str]) -> str | None:
    """The compute precision of a layer from the types it touches: the narrowest float type wins."""
    present = set(types)
    for candidate in ("FP4", "INT4", "FP8", "INT8", "FP16", "BF16", "FP32"):
        if candidate in present:
            return candidate
    return None


@dataclass(frozen=True)
class EnginePrecisionReport:
    """The engine's layers and the precisions they run in, from ``get_engine_information(JSON)``."""

    verifiable: bool
    layers: tuple[EngineLayer, ...]
    reason: str = ""

    @property
    def compute_layers(self) -> tuple[EngineLayer, ...]:
        """Compute layers whose precision the inspector states."""
        return tuple(layer for layer in self.layers if layer.precision and not layer.moves_data)

    @property
    def unknown_layers(self) -> tuple[EngineLayer, ...]:
        """Compute layers whose precision the inspector does not state (Myelin regions, plugins)."""
        return tuple(
            layer for layer in self.layers if layer.precision is None and not layer.moves_data and layer.type != "?"
        )

    def counts(self) -> dict[str, int]:
        """Compute layers per stated precision, e.g. ``{"FP16": 21, "FP32": 1}``."""
        return dict(Counter(layer.precision for layer in self.compute_layers).most_common())

    def shares(self) -> dict[str, float]:
        """The share of compute in each precision (``"unknown"`` where not stated), summing to 1.

        Weighted by each layer's MACs (weights x output positions) when the inspector gives
        weight counts, including for every layer of unknown precision; else by layer count.
        """
        layers = self.compute_layers + self.unknown_layers
        by_macs = any(layer.macs for layer in layers) and all(layer.macs for layer in self.unknown_layers)
        totals: Counter = Counter()
        for layer in layers:
            totals[layer.precision or UNKNOWN] += layer.macs if by_macs else 1
        grand = sum(totals.values())
        return {p: round(n / grand, 4) for p, n in totals.most_common()} if grand else {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "verifiable": self.verifiable,
            "reason": self.reason,
            "layer_count": len(self.layers),
            "compute_layers": len(self.compute_layers),
            "unknown_precision_layers": len(self.unknown_layers),
            "layer_precisions": self.counts(),
            "compute_shares": self.shares(),
            "layers": [layer.to_dict() for layer in self.layers],
        }


def parse_engine_information(text: str | Mapping[str, Any]) -> EnginePrecisionReport:
    """Read the inspector's JSON (``IEngineInspector.get_engine_information(JSON)``).

    With ``ProfilingVerbosity.DETAILED`` every layer is an object with ``Name``, ``LayerType``
    and ``Inputs``/``Outputs`` whose entries name their type. With ``LAYER_NAMES_ONLY`` the
    layers are plain strings and with ``NONE`` there is nothing: then the report is not
    verifiable (Engine Inspector docs:
    https://docs.nvidia.com/deeplearning/tensorrt/latest/inference-library/engine-tools.html).
    """
    try:
        data = json.loads(text) if isinstance(text, (str, bytes)) else dict(text)
    except (json.JSONDecodeError, TypeError, ValueError) as exc:
        return EnginePrecisionReport(False, (), f"the inspector output is not JSON ({exc})")
    raw_layers = data.get("Layers") if isinstance(data, Mapping) else None
    if not raw_layers:
        return EnginePrecisionReport(False, (), "the inspector listed no layers (profiling verbosity NONE?)")
    layers = []
    detailed = False
    for raw in raw_layers:
        if isinstance(raw, Mapping):
            types = _layer_types(raw)
            detailed = detailed or bool(types) or bool(raw.get("Inputs") or raw.get("Outputs"))
            layers.append(
                EngineLayer(
                    name=str(raw.get("Name", "?")),
                    type=str(raw.get("LayerType") or raw.get("ParameterType") or "?"),
                    precision=layer_precision(types),
                    types=tuple(dict.fromkeys(types)),
                    macs=_layer_macs(raw),
                )
            )
        else:
            layers.append(EngineLayer(name=str(raw), type="?", precision=None))
    if not detailed:
        return EnginePrecisionReport(
            False,
            tuple(layers),
            "the inspector gave layer names only: the engine was not built with detailed profiling verbosity",
        )
    return EnginePrecisionReport(True, tuple(layers))


def check_engine_precision(report: EnginePrecisionReport, precision: str, variant: str = "the engine") -> None:
    """Raise CheckFailedError when an fp16/int8 engine's known compute layers are none in that precision.

    TensorRT 11 dropped ``BuilderFlag.FP16``/``INT8``: a graph without FP16 tensors or Q/DQ
    nodes now silently builds an FP32 engine, so "the build succeeded" proves nothing. Layers
    whose precision the inspector does not state (Myelin regions with FP32 boundary tensors)
    are unknown, not FP32: they never fail a build, and an engine that is all unknown passes
    (its shares say so).
    """
    if precision == "fp32":
        return
    if not report.verifiable:
        raise CheckFailedError(
            f"cannot verify that {variant} runs in {precision}: {report.reason}",
            hint="rebuild with --profiling-verbosity detailed",
        )
    wanted = REDUCED[precision]
    compute = report.compute_layers
    reduced = [layer for layer in compute if layer.precision in wanted]
    if compute and not reduced:
        counts = ", ".join(f"{n} {p}" for p, n in report.counts().items())
        if report.unknown_layers:
            counts += f"; {len(report.unknown_layers)} more of a precision the inspector does not state"
        raise CheckFailedError(
            f"{variant} was built for {precision} but none of its {len(compute)} compute layers run in "
            f"{'/'.join(wanted)} ({counts}): TensorRT built an FP32 engine",
            hint=f"the ONNX graph must carry the precision: re-create it with "
            f"`deploykit quantize NAME --precision {precision}` and check it with the graph report",
        )


# --------------------------------------------------------------------------------------
# Per-layer times from IProfiler
# --------------------------------------------------------------------------------------


class LayerTimes:
    """Accumulates ``report_layer_time(layer_name, ms)`` calls (the IProfiler callback).

    TensorRT calls the profiler once per layer for each ``execute_async_v3`` when a profiler
    is set on the execution context (IProfiler reference:
    https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/Profiler.html).
    """

    def __init__(self) -> None:
        self._totals: dict[str, float] = {}
        self._calls: dict[str, int] = {}

    def record(self, layer_name: str, ms: float) -> None:
        self._totals[layer_name] = self._totals.get(layer_name, 0.0) + float(ms)
        self._calls[layer_name] = self._calls.get(layer_name, 0) + 1

    def reset(self) -> None:
        self._totals.clear()
        self._calls.clear()

    def summary(self) -> list[dict[str, Any]]:
        """One row per layer in execution order: calls, total and mean ms, share of the total."""
        grand = sum(self._totals.values()) or 1.0
        return [
            {
                "layer": name,
                "calls": self._calls[name],
                "total_ms": total,
                "mean_ms": total / self._calls[name],
                "share": total / grand,
            }
            for name, total in self._totals.items()
        ]
