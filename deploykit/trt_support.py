"""Everything around the TensorRT builder and runtime, as plain functions that run anywhere.

``deploykit.build`` and ``deploykit.runtimes.tensorrt_runner`` are the only modules that
call ``tensorrt``; they stay thin and hand every decision to this module, which never
imports TensorRT, so each rule here is tested on machines without a GPU:

- the batch profile from ``--min/--opt/--max-batch`` and its input shapes;
- which network-creation flags a TensorRT version needs (strong typing: a flag on 10.x,
  the only mode on 11.x);
- that the ONNX graph really carries its precision (FP16 weights; INT8 Q/DQ pairs with
  per-channel weight scales), since a strongly typed network builds exactly what the graph says;
- the precision the built engine really runs in, read from the engine inspector's JSON;
- ONNX-parser errors as a per-node list;
- whether an engine was built for this GPU and TensorRT version;
- the lineage sidecar and the Triton ``config.pbtxt`` of a ``<model>_trt_<precision>`` variant.

References (TensorRT documentation, cited where a rule depends on them):
- Migrating 10.x -> 11.x: https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x.html
- Removed Python APIs: https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-reference.html
- Inspector JSON changes: https://docs.nvidia.com/deeplearning/tensorrt/11.0.0/api/migration/tensorrt-10x-to-11x-IEngineInspector.html
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deploykit.errors import CheckFailedError, DeployKitError, MissingDependencyError, UsageError

# --------------------------------------------------------------------------------------
# TensorRT availability and versions
# --------------------------------------------------------------------------------------

# device_memory_size_v2 (the only device-memory query left in 11.x) arrived with the V2
# memory APIs in TensorRT 10.1; JetPack 6.1/6.2 ship 10.3.
MIN_TENSORRT = (10, 1)

TENSORRT_INSTALL_HINT = (
    "on an x86_64 Linux host with an NVIDIA GPU and CUDA: pip install 'deploykit[gpu]' "
    "(or pip install tensorrt); or build and run the docker/Dockerfile.trt image "
    "(docs/tensorrt.md); on Jetson, TensorRT comes with JetPack 6.1+ "
    "(apt install nvidia-jetpack, which provides python3-libnvinfer)"
)


def tensorrt_missing_error(purpose: str = "building TensorRT engines") -> MissingDependencyError:
    """The error for a machine without the ``tensorrt`` module, naming every way to get it."""
    error = MissingDependencyError("tensorrt", "gpu", purpose)
    error.hint = TENSORRT_INSTALL_HINT
    return error


def parse_version(version: str) -> tuple[int, ...]:
    """``"10.8.0.43"`` -> ``(10, 8, 0, 43)``; non-numeric tails (``"11.0.0rc1"``) are cut."""
    parts = []
    for piece in str(version).split("."):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
        if digits.group() != piece:
            break
    if not parts:
        raise DeployKitError(f"cannot read the TensorRT version {version!r}")
    return tuple(parts)


def check_tensorrt_version(version: str) -> tuple[int, ...]:
    """Refuse TensorRT older than :data:`MIN_TENSORRT` (no strongly typed ONNX path, no V2 memory API)."""
    parsed = parse_version(version)
    if parsed[:2] < MIN_TENSORRT:
        need = ".".join(map(str, MIN_TENSORRT))
        raise DeployKitError(
            f"TensorRT {version} is too old: deploykit needs {need} or newer",
            hint=f"upgrade TensorRT ({TENSORRT_INSTALL_HINT})",
        )
    return parsed


def uses_strongly_typed_flag(version: str) -> bool:
    """Whether ``create_network`` must be given ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``.

    TensorRT 10.x builds weakly typed networks unless the flag is set. In 11.x every network
    is strongly typed and the flag is deprecated and ignored, so deploykit passes 0 there
    ("Strongly Typed Networks Are Now Required", migration guide above).
    """
    return check_tensorrt_version(version)[0] < 11


def same_tensorrt_release(a: str, b: str) -> bool:
    """Engines only load in the TensorRT release that built them: compare major.minor.patch."""
    return parse_version(a)[:3] == parse_version(b)[:3]


# --------------------------------------------------------------------------------------
# Build settings: the batch profile and the builder options
# --------------------------------------------------------------------------------------

MAX_BATCH_LIMIT = 4096
PROFILING_VERBOSITIES = ("detailed", "layer_names_only", "none")
OPT_LEVELS = (0, 1, 2, 3, 4, 5)


@dataclass(frozen=True)
class BatchProfile:
    """The optimization profile's batch sizes: ``1 <= min <= opt <= max``."""

    min: int
    opt: int
    max: int

    def shapes(self, dims: Sequence[int]) -> dict[str, tuple[int, ...]]:
        """Full input shapes for ``dims`` (the input's shape without the batch dimension)."""
        dims = tuple(int(d) for d in dims)
        return {"min": (self.min, *dims), "opt": (self.opt, *dims), "max": (self.max, *dims)}

    def contains(self, batch: int) -> bool:
        return self.min <= batch <= self.max


def batch_profile(min_batch: int = 1, opt_batch: int = 8, max_batch: int = 32) -> BatchProfile:
    """Validate ``--min-batch/--opt-batch/--max-batch``; a bad combination is a UsageError."""
    values = {"--min-batch": min_batch, "--opt-batch": opt_batch, "--max-batch": max_batch}
    for flag, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{flag} must be an integer, not {value!r}")
        if not 1 <= value <= MAX_BATCH_LIMIT:
            raise UsageError(f"{flag} {value} is out of range", hint=f"use 1..{MAX_BATCH_LIMIT}")
    if not min_batch <= opt_batch <= max_batch:
        raise UsageError(
            f"batch sizes must satisfy min <= opt <= max, got min {min_batch}, opt {opt_batch}, max {max_batch}",
            hint="e.g. --min-batch 1 --opt-batch 8 --max-batch 32",
        )
    return BatchProfile(min_batch, opt_batch, max_batch)


@dataclass(frozen=True)
class BuildSettings:
    """Everything the builder is told besides the graph (recorded in the sidecar)."""

    precision: str
    profile: BatchProfile
    workspace_mb: int | None = None
    opt_level: int | None = None
    timing_cache: str | None = None
    profiling_verbosity: str = "detailed"


def build_settings(
    precision: str,
    min_batch: int = 1,
    opt_batch: int = 8,
    max_batch: int = 32,
    workspace_mb: int | None = None,
    opt_level: int | None = None,
    timing_cache: str | os.PathLike | None = None,
    profiling_verbosity: str = "detailed",
) -> BuildSettings:
    """Validate the builder options before anything slow happens."""
    from deploykit.repository import validate_precision

    validate_precision(precision)
    profile = batch_profile(min_batch, opt_batch, max_batch)
    if workspace_mb is not None and not 1 <= workspace_mb <= 1 << 20:
        raise UsageError(f"--workspace-mb {workspace_mb} is out of range", hint="use 1..1048576 (MiB)")
    if opt_level is not None and opt_level not in OPT_LEVELS:
        raise UsageError(f"--opt-level {opt_level} is out of range", hint="use 0..5 (TensorRT's default is 3)")
    if profiling_verbosity not in PROFILING_VERBOSITIES:
        raise UsageError(
            f"unknown profiling verbosity {profiling_verbosity!r}",
            hint=f"choose from {', '.join(PROFILING_VERBOSITIES)}",
        )
    if precision != "fp32" and profiling_verbosity != "detailed":
        # Only detailed verbosity puts tensor types into the inspector's JSON; without them
        # an FP32 fallback would go unnoticed, which is the failure this build exists to catch.
        raise UsageError(
            f"--profiling-verbosity {profiling_verbosity} cannot verify that a {precision} engine "
            f"runs in {precision}",
            hint="use --profiling-verbosity detailed (the default)",
        )
    cache = None
    if timing_cache is not None:
        path = Path(timing_cache)
        if path.exists() and not path.is_file():
            raise UsageError(f"--timing-cache {path} is not a file")
        cache = str(path)
    return BuildSettings(precision, profile, workspace_mb, opt_level, cache, profiling_verbosity)


# --------------------------------------------------------------------------------------
# The ONNX graph the builder receives
# --------------------------------------------------------------------------------------

_ONNX_DTYPES = {1: "float32", 10: "float16", 16: "bfloat16", 3: "int8", 2: "uint8", 6: "int32", 7: "int64", 9: "bool"}
ONNX_FLOAT, ONNX_FLOAT16, ONNX_BFLOAT16, ONNX_INT8, ONNX_UINT8 = 1, 10, 16, 3, 2


@dataclass(frozen=True)
class TensorInfo:
    """A graph input or output: name, numpy dtype name and shape (-1 for a dynamic dimension)."""

    name: str
    dtype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}


def _load_graph(model: Any):
    """An ``onnx.ModelProto`` from a path (weights left on disk: only names, types and dims are read)."""
    if isinstance(model, (str, os.PathLike)):
        import onnx

        path = Path(model)
        if not path.is_file():
            raise UsageError(f"no ONNX model at {path}")
        try:
            return onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # onnx raises DecodeError and friends
            raise DeployKitError(f"{path} is not a readable ONNX model: {exc}") from exc
    return model


def _tensor_info(value_info) -> TensorInfo:
    tensor_type = value_info.type.tensor_type
    shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in tensor_type.shape.dim)
    return TensorInfo(value_info.name, _ONNX_DTYPES.get(tensor_type.elem_type, f"onnx:{tensor_type.elem_type}"), shape)


def graph_io(model: Any) -> tuple[list[TensorInfo], list[TensorInfo]]:
    """(inputs, outputs) of an ONNX model; initializers listed as inputs (old exporters) are left out."""
    graph = _load_graph(model).graph
    initializers = {i.name for i in graph.initializer}
    inputs = [_tensor_info(v) for v in graph.input if v.name not in initializers]
    return inputs, [_tensor_info(v) for v in graph.output]


def single_io(model: Any) -> tuple[TensorInfo, TensorInfo]:
    """The one image input and one logits output deploykit's classifiers have."""
    inputs, outputs = graph_io(model)
    if len(inputs) != 1 or len(outputs) != 1:
        raise UsageError(
            f"expected one input and one output, the graph has {len(inputs)} and {len(outputs)}",
            hint="deploykit builds image classifiers exported by `deploykit export`",
        )
    return inputs[0], outputs[0]


def profile_input_dims(input: TensorInfo, profile: BatchProfile) -> tuple[int, ...]:
    """The input's non-batch dimensions, checked against the profile.

    A graph with a fixed batch size can only be built for that size, and TensorRT needs every
    other dimension static (or a profile for it, which deploykit does not make).
    """
    if len(input.shape) < 2:
        raise UsageError(f"input {input.name!r} has shape {list(input.shape)}: expected N x C x H x W")
    batch, dims = input.shape[0], input.shape[1:]
    if any(d < 0 for d in dims):
        raise UsageError(
            f"input {input.name!r} has dynamic dimensions besides the batch: {list(input.shape)}",
            hint="export with a fixed image size (deploykit export NAME --size ...)",
        )
    if batch > 0 and not profile.min == profile.max == batch:
        raise UsageError(
            f"the ONNX input {input.name!r} has a fixed batch size of {batch}, so the engine cannot "
            f"take batches {profile.min}..{profile.max}",
            hint=f"re-export with a dynamic batch, or build with --min-batch {batch} --opt-batch {batch} --max-batch {batch}",
        )
    return dims


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


def inspect_graph_precision(model: Any, precision: str) -> GraphPrecisionReport:
    """How the graph encodes ``precision``; the problems say why TensorRT 11 would build FP32.

    Conventions followed (ModelOpt's output, TensorRT's explicit-quantization guide):
    FP16 graphs store weights as FLOAT16 initializers (I/O may stay FP32 behind Casts); INT8
    graphs put DequantizeLinear (fed by QuantizeLinear or by an INT8 initializer) on the weight
    input of each quantized Conv/Gemm, with a 1-D scale of one value per output channel and
    ``axis=0`` (per-channel), and Q/DQ pairs on the activations.
    """
    graph = _load_graph(model).graph
    initializers = {i.name: i for i in graph.initializer}
    constants = {n.output[0]: n for n in graph.node if n.op_type == "Constant" and n.output}
    producer = {out: n for n in graph.node for out in n.output}
    op_counts = Counter(n.op_type for n in graph.node)

    def stored_type(name: str) -> int | None:
        if name in initializers:
            return initializers[name].data_type
        if name in constants:
            for attr in constants[name].attribute:
                if attr.name == "value":
                    return attr.t.data_type
        return None

    def dims_of(name: str) -> tuple[int, ...] | None:
        if name in initializers:
            return tuple(initializers[name].dims)
        if name in constants:
            for attr in constants[name].attribute:
                if attr.name == "value":
                    return tuple(attr.t.dims)
        return None

    weighted = fp16 = fp32 = quantized = per_channel = per_tensor = activations = 0
    weight_notes: list[str] = []
    for node in graph.node:
        if node.op_type not in _WEIGHTED_OPS or len(node.input) < 2:
            continue
        weight_name = node.input[_WEIGHTED_OPS[node.op_type]]
        source = producer.get(weight_name)
        if source is not None and source.op_type == "Cast":
            # a weight cast at run time carries the type it is stored in
            weight_name, source = source.input[0], producer.get(source.input[0])
        if source is None or source.op_type == "Constant":
            dtype = stored_type(weight_name)
            if dtype is None:
                continue  # an activation-by-activation MatMul: no weight to classify
            weighted += 1
            if dtype == ONNX_FLOAT16:
                fp16 += 1
            elif dtype == ONNX_FLOAT:
                fp32 += 1
        elif source.op_type == "DequantizeLinear":
            weighted += 1
            quantized += 1
            scale = dims_of(source.input[1]) if len(source.input) > 1 else None
            origin = source.input[0]
            if origin in producer and producer[origin].op_type == "QuantizeLinear":
                origin = producer[origin].input[0]
            weight_dims = dims_of(origin)
            axis = _attribute(source, "axis", 1)
            channel_axis = _output_channel_axis(node)
            channels = weight_dims[channel_axis] if weight_dims and len(weight_dims) > channel_axis else None
            if (
                scale
                and len(scale) == 1
                and scale[0] > 1
                and axis == channel_axis
                and (channels is None or scale[0] == channels)
            ):
                per_channel += 1
            elif scale is not None and (len(scale) == 0 or (len(scale) == 1 and scale[0] == 1)):
                per_tensor += 1
            else:
                weight_notes.append(f"{node.name or node.op_type}: weight scale shape {scale} axis {axis}")
        else:
            continue
        data = producer.get(node.input[0])
        if data is not None and data.op_type == "DequantizeLinear":
            activations += 1

    qdq_pairs = sum(
        1
        for n in graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in producer and producer[n.input[0]].op_type == "QuantizeLinear"
    )
    problems: list[str] = []
    notes: list[str] = list(weight_notes[:5])
    if precision == "fp16":
        if fp16 == 0:
            problems.append(
                f"no Conv/Gemm/MatMul weight is stored as FLOAT16 ({fp32} of {weighted} are FLOAT): "
                "a strongly typed network would build an FP32 engine"
            )
        elif fp32:
            notes.append(f"{fp32} of {weighted} weights stay FP32 (kept in FP32 by the FP16 conversion)")
    elif precision == "int8":
        if op_counts["QuantizeLinear"] == 0 and op_counts["DequantizeLinear"] == 0:
            problems.append(
                "the graph has no QuantizeLinear/DequantizeLinear nodes: TensorRT 11 has no INT8 "
                "calibrator, so only Q/DQ nodes make INT8 layers"
            )
        elif quantized == 0:
            problems.append("no Conv/Gemm weight is behind a DequantizeLinear: no layer can run in INT8")
        elif activations == 0:
            problems.append("no Conv/Gemm input is behind a Q/DQ pair: the quantized weights would run in float")
        if per_tensor:
            notes.append(f"{per_tensor} of {quantized} quantized weights use one scale per tensor (per-channel is more accurate)")
        if quantized and quantized < weighted:
            notes.append(f"{weighted - quantized} of {weighted} weighted layers are left unquantized")
    elif precision == "fp32":
        if quantized or op_counts["QuantizeLinear"]:
            problems.append("an fp32 variant contains Q/DQ nodes")
        if fp16:
            problems.append(f"an fp32 variant stores {fp16} weights as FLOAT16")
    return GraphPrecisionReport(
        precision=precision,
        weighted_nodes=weighted,
        fp16_weights=fp16,
        fp32_weights=fp32,
        quantized_weights=quantized,
        per_channel=per_channel,
        per_tensor=per_tensor,
        quantized_activations=activations,
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


# --------------------------------------------------------------------------------------
# ONNX parser errors
# --------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------
# The engine inspector's JSON: what precision the engine really runs in
# --------------------------------------------------------------------------------------

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
    precision: str | None  # the lowest float type among its inputs, weights and outputs
    types: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "precision": self.precision}


def _layer_types(layer: Mapping[str, Any]) -> list[str]:
    found = []
    for key in ("Inputs", "Outputs"):
        for tensor in layer.get(key) or []:
            if isinstance(tensor, Mapping) and (t := tensor_type(tensor)):
                found.append(t)
    for key, value in layer.items():
        # "Weights": {"Type": "Half", "Count": 9408}, "ConvWeights": {"Type": "Int8", ...}
        if key.endswith("Weights") and isinstance(value, Mapping) and (t := type_from_description(value.get("Type"))):
            found.append(t)
    return found


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
        return tuple(
            layer for layer in self.layers if layer.precision and layer.type.lower() not in _DATA_MOVEMENT
        )

    def counts(self) -> dict[str, int]:
        """Compute layers per precision, e.g. ``{"FP16": 21, "FP32": 1}``."""
        return dict(Counter(layer.precision for layer in self.compute_layers).most_common())

    def to_dict(self) -> dict[str, Any]:
        return {
            "verifiable": self.verifiable,
            "reason": self.reason,
            "layer_count": len(self.layers),
            "compute_layers": len(self.compute_layers),
            "layer_precisions": self.counts(),
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
            detailed = detailed or bool(types)
            layers.append(
                EngineLayer(
                    name=str(raw.get("Name", "?")),
                    type=str(raw.get("LayerType") or raw.get("ParameterType") or "?"),
                    precision=layer_precision(types),
                    types=tuple(dict.fromkeys(types)),
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
    """Raise CheckFailedError unless an fp16/int8 engine has compute layers in that precision.

    TensorRT 11 dropped ``BuilderFlag.FP16``/``INT8``: a graph without FP16 tensors or Q/DQ
    nodes now silently builds an FP32 engine, so "the build succeeded" proves nothing.
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
    if not reduced:
        counts = ", ".join(f"{n} {p}" for p, n in report.counts().items()) or "no compute layers"
        raise CheckFailedError(
            f"{variant} was built for {precision} but none of its {len(compute)} compute layers run in "
            f"{'/'.join(wanted)} ({counts}): TensorRT built an FP32 engine",
            hint=f"the ONNX graph must carry the precision: re-create it with "
            f"`deploykit quantize NAME --precision {precision}` and check it with the graph report",
        )


# --------------------------------------------------------------------------------------
# Engines belong to one GPU model and one TensorRT release
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: str  # "9.0"

    def __str__(self) -> str:
        return f"{self.name} (compute capability {self.compute_capability})"


def gpu_info(device: int = 0) -> GpuInfo:
    """The CUDA device as torch sees it (torch owns the CUDA context in deploykit)."""
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    return GpuInfo(torch.cuda.get_device_name(device), f"{major}.{minor}")


@dataclass(frozen=True)
class EngineTarget:
    """Where an engine was built, or where it is about to run."""

    tensorrt_version: str
    gpu: GpuInfo

    def __str__(self) -> str:
        return f"TensorRT {self.tensorrt_version} on {self.gpu}"


def target_from_sidecar(meta: Mapping[str, Any]) -> EngineTarget | None:
    """The build target recorded by :func:`engine_sidecar`; None for a sidecar without one."""
    trt_section, gpu = meta.get("tensorrt"), meta.get("gpu")
    if not isinstance(trt_section, Mapping) or not isinstance(gpu, Mapping):
        return None
    if not trt_section.get("version") or not gpu.get("name"):
        return None
    return EngineTarget(
        str(trt_section["version"]), GpuInfo(str(gpu["name"]), str(gpu.get("compute_capability", "?")))
    )


def engine_mismatches(built: EngineTarget, here: EngineTarget) -> list[str]:
    """What differs between the build target and this machine (empty when the engine fits).

    A plan is tied to the TensorRT release that serialized it and to the GPU model it was
    tuned for; TensorRT itself warns that using a plan across device models "is not
    recommended and is likely to affect performance or even cause errors".
    """
    problems = []
    if not same_tensorrt_release(built.tensorrt_version, here.tensorrt_version):
        problems.append(f"TensorRT {built.tensorrt_version} != {here.tensorrt_version}")
    if built.gpu.compute_capability != here.gpu.compute_capability:
        problems.append(
            f"compute capability {built.gpu.compute_capability} != {here.gpu.compute_capability}"
        )
    if built.gpu.name != here.gpu.name:
        problems.append(f"GPU {built.gpu.name} != {here.gpu.name}")
    return problems


def ensure_engine_compatible(variant: str, built: EngineTarget, here: EngineTarget, rebuild: str) -> None:
    """Raise a DeployKitError that says what was built where, when the engine does not fit here."""
    problems = engine_mismatches(built, here)
    if problems:
        raise DeployKitError(
            f"{variant} was built with {built}; this machine has {here} ({'; '.join(problems)})",
            hint=f"TensorRT engines run only on the GPU model and TensorRT release that built them: "
            f"rebuild it here with `{rebuild}`",
        )


# --------------------------------------------------------------------------------------
# What a build leaves on disk: the sidecar and config.pbtxt
# --------------------------------------------------------------------------------------

# tensorrt.DataType member names -> numpy/torch dtype names
TRT_DTYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
}


def trt_dtype_name(dtype: Any) -> str:
    """``tensorrt.DataType.HALF`` -> ``"float16"`` (works on the enum or its name)."""
    name = getattr(dtype, "name", None) or str(dtype).rsplit(".", 1)[-1]
    try:
        return TRT_DTYPES[str(name).upper()]
    except KeyError:
        raise DeployKitError(f"unsupported TensorRT tensor type {name}") from None


@dataclass(frozen=True)
class EngineBuildRecord:
    """The facts of one engine build; :func:`engine_sidecar` turns them into the sidecar."""

    model: str
    precision: str
    parent: str  # "<model>_onnx_<precision>"
    parent_lineage: tuple[str, ...]  # ancestors of the parent, oldest first, ending with the parent
    tensorrt_version: str
    gpu: GpuInfo
    input: TensorInfo
    output: TensorInfo
    settings: BuildSettings
    build_seconds: float
    engine_bytes: int
    device_memory_bytes: int | None
    engine: EnginePrecisionReport
    graph: GraphPrecisionReport | None = None
    strongly_typed_flag: bool = False
    timing_cache_reused: bool = False
    cuda_version: str | None = None
    parent_sha256: str | None = None
    preprocessing: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def engine_sidecar(record: EngineBuildRecord) -> dict[str, Any]:
    """The lineage sidecar of a TensorRT variant (``deploykit.json``; write_variant adds file facts)."""
    settings = record.settings
    dims = record.input.shape[1:]
    shapes = settings.profile.shapes(dims)
    sidecar: dict[str, Any] = {
        "parent": record.parent,
        "lineage": list(record.parent_lineage) or [record.parent],
        "input": {**record.input.to_dict(), "shape": [-1, *dims]},
        "output": {**record.output.to_dict(), "shape": [-1, *record.output.shape[1:]]},
        "tensorrt": {
            "version": record.tensorrt_version,
            "strongly_typed": True,
            "strongly_typed_flag": record.strongly_typed_flag,
        },
        "gpu": {
            "name": record.gpu.name,
            "compute_capability": record.gpu.compute_capability,
            "cuda": record.cuda_version,
        },
        "profile": {
            "input": record.input.name,
            "batch": {"min": settings.profile.min, "opt": settings.profile.opt, "max": settings.profile.max},
            **{key: list(shape) for key, shape in shapes.items()},
        },
        "build": {
            "seconds": round(record.build_seconds, 3),
            "workspace_mb": settings.workspace_mb,
            "builder_optimization_level": settings.opt_level,
            "profiling_verbosity": settings.profiling_verbosity,
            "timing_cache": settings.timing_cache,
            "timing_cache_reused": record.timing_cache_reused,
            "onnx_sha256": record.parent_sha256,
        },
        "engine": {
            "bytes": record.engine_bytes,
            "device_memory_bytes": record.device_memory_bytes,
            **record.engine.to_dict(),
        },
        "precision_check": {
            "requested": record.precision,
            "verified": record.precision == "fp32" or record.engine.verifiable,
            "layer_precisions": record.engine.counts(),
            "graph": record.graph.to_dict() if record.graph else None,
        },
    }
    if record.preprocessing:
        sidecar["preprocessing"] = dict(record.preprocessing)
    sidecar.update(record.extra)
    return sidecar


def trt_config_pbtxt(variant: str, input: TensorInfo, output: TensorInfo, max_batch: int) -> str:
    """Triton config for a plan: ``tensorrt_plan`` on KIND_GPU, dynamic batching up to the profile's max.

    ``max_batch_size`` must not exceed the engine profile's max batch, or Triton would send
    batches the engine cannot take (Triton docs, "Model Configuration").
    """
    from deploykit.triton_config import (
        PLATFORMS,
        TensorConfig,
        TritonModelConfig,
        default_preferred,
    )

    config = TritonModelConfig(
        name=variant,
        platform=PLATFORMS["trt"],
        max_batch_size=max_batch,
        inputs=(TensorConfig(input.name, input.dtype, tuple(input.shape[1:])),),
        outputs=(TensorConfig(output.name, output.dtype, tuple(output.shape[1:])),),
        instance_kind="KIND_GPU",
        instance_count=1,
        preferred_batch_sizes=default_preferred(max_batch),
    )
    return config.render()


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
