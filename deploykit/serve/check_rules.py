"""The rules ``repo check`` applies to one model folder, each adding its findings.

A model's config is Triton's own ``ModelConfig`` message (:mod:`deploykit.triton.config`);
model tensors are :class:`deploykit.onnx_graph.TensorSpec` (an empty dtype when unknown), read
from the ONNX file or, for a plan, from what ``deploykit build`` recorded in the sidecar.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploykit.artifacts import SIDECAR
from deploykit.onnx_graph import TensorSpec
from deploykit.triton.config import dims_text

INSTANCE_KINDS = ("KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL")
# What the pinned production container (docker/Dockerfile.triton: tritonserver 25.01, whose
# ONNX Runtime is 1.20) reads: a newer IR or opset loads locally but fails there.
TRITON_CONTAINER = "25.01"
MAX_ONNX_IR_VERSION = 10
MAX_ONNX_OPSET = 21


@dataclass(frozen=True)
class Problem:
    """One finding: ``severity`` is "error" (Triton refuses it) or "warning"."""

    severity: str
    code: str  # a stable slug tests and scripts can match: "batch-dim-in-dims", ...
    message: str
    hint: str | None = None


@dataclass
class Findings:
    problems: list[Problem] = field(default_factory=list)

    def error(self, code: str, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem("error", code, message, hint))

    def warning(self, code: str, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem("warning", code, message, hint))


def _dims_fit(config_dims: tuple[int, ...], model_dims: tuple[int, ...]) -> bool:
    """Config dims fit the model's: same rank; a dynamic (-1) model dim accepts any config dim."""
    if len(config_dims) != len(model_dims):
        return False
    return all(m < 0 or c == m for c, m in zip(config_dims, model_dims, strict=True))


# ---- the config ------------------------------------------------------------------------------------
def config_tensors(config: Any, section: str, out: Findings) -> list[TensorSpec]:
    """The config's inputs or outputs; a tensor without a name is an error and left out."""
    from deploykit.triton.config import dtype_name

    tensors = []
    for index, t in enumerate(getattr(config, section)):
        if not t.name:
            out.error("tensor-name", f"{section} #{index + 1} has no name")
            continue
        dtype = dtype_name(t.data_type)
        if dtype is None:
            out.error("data-type", f"{section} {t.name!r} has no data_type")
        dims = tuple(t.dims)
        if not dims:
            out.error("dims", f"{section} {t.name!r} has no dims")
        if any(d < 1 and d != -1 for d in dims):
            out.error("dims", f"{section} {t.name!r} has invalid dims {list(dims)} (each must be -1 or > 0)")
            dims = ()
        tensors.append(TensorSpec(t.name, dims, dtype or ""))
    return tensors


def check_batching(config: Any, max_batch_size: int, out: Findings) -> None:
    batching = config.HasField("dynamic_batching")
    if max_batch_size > 0 and not batching:
        out.warning(
            "no-dynamic-batching",
            "max_batch_size > 0 but no dynamic_batching: every request runs alone",
            hint="add dynamic_batching { max_queue_delay_microseconds: 100 }",
        )
    if not batching:
        return
    if max_batch_size == 0:
        out.error("batching-without-batch", "dynamic_batching needs max_batch_size > 0")
    dyn = config.dynamic_batching
    over = [b for b in dyn.preferred_batch_size if b < 1 or b > max_batch_size]
    if over and max_batch_size > 0:
        out.error("preferred-over-max", f"preferred_batch_size {over} outside 1..max_batch_size ({max_batch_size})")
    if dyn.max_queue_delay_microseconds < 0:
        out.error("queue-delay", f"max_queue_delay_microseconds {dyn.max_queue_delay_microseconds} is negative")


def check_instances(config: Any, fmt: str | None, out: Findings) -> None:
    from deploykit.triton.config import instance_kind_name

    if not config.instance_group:
        out.warning(
            "no-instance-group",
            "no instance_group: Triton picks KIND_GPU when it sees a GPU, else KIND_CPU",
            hint="state it: KIND_CPU for ONNX on CPU, KIND_GPU for TensorRT plans",
        )
    for group in config.instance_group:
        kind = instance_kind_name(group.kind)
        if fmt == "trt" and kind == "KIND_CPU":
            out.error("instance-kind", "a TensorRT plan cannot run on KIND_CPU", hint="use kind: KIND_GPU")
        elif fmt == "onnx" and kind == "KIND_GPU":
            out.warning(
                "instance-kind",
                "ONNX on KIND_GPU fails to load on a host without a GPU",
                hint="use KIND_CPU for CPU serving (deploykit's default for ONNX variants)",
            )
        if group.count < 0:  # 0 is "not set": Triton makes one instance
            out.error("instance-count", f"instance_group count {group.count} must be >= 1")


# ---- folders and files -----------------------------------------------------------------------------
def check_versions(directory: Path, out: Findings) -> list[int]:
    versions = []
    for child in sorted(directory.iterdir()):
        if not child.is_dir() or child.name.startswith("."):
            continue
        if child.name.isdigit() and int(child.name) > 0:
            versions.append(int(child.name))
        else:
            out.warning(
                "not-a-version",
                f"folder {child.name!r} is not a version folder (Triton ignores it)",
                hint="version folders are positive integers: 1/, 2/, ...",
            )
    if not versions:
        out.error(
            "no-version",
            "no version folder: Triton loads <model>/<version>/<file>, e.g. 1/model.onnx",
            hint=f"move the model file into {directory.name}/1/",
        )
    return sorted(versions)


def check_model_file(directory: Path, version: int, filename: str, out: Findings) -> Path | None:
    folder = directory / str(version)
    path = folder / filename
    if path.is_file():
        return path
    suffix = Path(filename).suffix
    others = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix == suffix)
    if others:
        out.error(
            "wrong-file-name",
            f"{version}/{others[0]} is not loaded: Triton looks for {version}/{filename}",
            hint=f"rename it to {filename} (or set default_model_filename)",
        )
    else:
        out.error("missing-model-file", f"{version}/{filename} does not exist")
    return None


def read_sidecar(directory: Path, out: Findings) -> dict[str, Any]:
    """The sidecar of a deploykit variant ({} for other models); a missing or corrupt one is a
    warning worded as every command words it (Triton can still serve the folder)."""
    from deploykit.repository import BrokenVariantError, parse_variant_name, read_variant

    path = directory / SIDECAR
    if not path.exists() and not parse_variant_name(directory.name):
        return {}  # not made by deploykit
    try:
        read_variant(directory)
    except BrokenVariantError as exc:
        out.warning("sidecar", exc.message, hint=exc.hint)
        return {}
    return json.loads(path.read_text())



# ---- tensors against the model -----------------------------------------------------------------------
def _compare_batched(section: str, t: TensorSpec, model: TensorSpec, max_batch_size: int, source: str, out: Findings) -> None:
    """With max_batch_size > 0 the config's dims leave out the model's (dynamic) batch dimension."""
    if not model.shape:
        out.error(
            "no-batch-dim",
            f"{section} {t.name!r} is a scalar in the {source}: it cannot be batched",
            hint="set max_batch_size: 0",
        )
        return
    batch, rest = model.shape[0], model.shape[1:]
    if len(t.shape) == len(model.shape) and _dims_fit(t.shape[1:], rest):
        out.error(
            "batch-dim-in-dims",
            f"{section} {t.name!r} dims {dims_text(t.shape)} include the batch dimension: "
            f"with max_batch_size {max_batch_size} Triton prepends it",
            hint=f"use dims: {dims_text(t.shape[1:])}",
        )
        return
    if not _dims_fit(t.shape, rest):
        out.error(
            "dims-mismatch",
            f"{section} {t.name!r} dims {dims_text(t.shape)} do not match the {source}'s "
            f"{dims_text(model.shape)} (batch dimension first)",
            hint=f"use dims: {dims_text(rest)}",
        )
    if batch > 0 and not batch == max_batch_size == 1:
        # The dynamic batcher forms batches of any size up to max_batch_size.
        out.error(
            "fixed-batch-dim",
            f"the {source} fixes the batch dimension of {t.name!r} at {batch}; "
            f"with max_batch_size {max_batch_size} Triton sends batches of 1..{max_batch_size}",
            hint="re-export with a dynamic batch axis, or lower max_batch_size",
        )


def _known(dtype: str) -> bool:
    return bool(dtype) and not dtype.startswith("onnx:")


def compare_tensors(
    section: str, config: list[TensorSpec], model: list[TensorSpec], max_batch_size: int, source: str, out: Findings
) -> None:
    """Each config tensor against the model tensor of that name: name, dtype, dims."""
    by_name = {t.name: t for t in model}
    for t in config:
        found = by_name.get(t.name)
        if found is None:
            out.error("unknown-tensor", f"{section} {t.name!r} is not in the {source} (its {section}s: {', '.join(by_name) or 'none'})")
            continue
        if _known(t.dtype) and _known(found.dtype) and t.dtype != found.dtype:
            out.error("dtype-mismatch", f"{section} {t.name!r} is {t.dtype} in config.pbtxt but {found.dtype} in the {source}")
        if not t.shape:
            continue
        if max_batch_size > 0:
            _compare_batched(section, t, found, max_batch_size, source, out)
        elif not _dims_fit(t.shape, found.shape):
            out.error(
                "dims-mismatch",
                f"{section} {t.name!r} dims {dims_text(t.shape)} do not match the {source}'s "
                f"{dims_text(found.shape)} (max_batch_size 0: dims are the full shape)",
                hint=f"use dims: {dims_text(found.shape)}",
            )
    named = {t.name for t in config}
    missing = [t.name for t in model if t.name not in named]
    if section == "input" and missing and config:
        out.error("missing-input", f"the {source}'s input(s) {', '.join(missing)} are not in config.pbtxt")


def check_onnx(path: Path, directory: Path, inputs, outputs, max_batch_size: int, out: Findings) -> None:
    """The latest ONNX file's I/O against the config, and its IR/opset against the container."""
    from deploykit import onnx_graph

    try:
        graph = onnx_graph.load_graph(path)
        model_inputs, model_outputs = onnx_graph.graph_io(graph)
        ir_version, opset = onnx_graph.ir_version(graph), onnx_graph.main_opset(graph) or 0
    except Exception as exc:  # onnx raises DecodeError, ValidationError, OSError...
        out.error("corrupt-model", f"{path.relative_to(directory)} is not a readable ONNX model: {str(exc)[:200]}")
        return
    if ir_version > MAX_ONNX_IR_VERSION or opset > MAX_ONNX_OPSET:
        out.warning(
            "onnx-too-new",
            f"IR version {ir_version}, opset {opset}: tritonserver {TRITON_CONTAINER}'s ONNX Runtime "
            f"reads IR <= {MAX_ONNX_IR_VERSION}, opset <= {MAX_ONNX_OPSET}",
            hint="export with a lower --opset, or serve with a newer tritonserver image",
        )
    source = f"ONNX model ({path.relative_to(directory)})"
    compare_tensors("input", inputs, model_inputs, max_batch_size, source, out)
    compare_tensors("output", outputs, model_outputs, max_batch_size, source, out)


# ---- TensorRT plans: checked against what the build recorded -------------------------------------------
def engine_profile(sidecar: dict[str, Any]) -> dict[str, Any] | None:
    """The TensorRT optimization profile recorded by ``deploykit build``, if any.

    Accepted forms (under ``profile``, ``build.profile``, ``tensorrt.profile`` or
    ``engine.profile``): ``{"min": shape, "opt": shape, "max": shape}`` with full input shapes,
    ``{"min": 1, "opt": 8, "max": 32}`` (batch sizes), ``{"max_batch": 32, ...}``, or one of
    these per input name. Returned as ``{"max_batch": int, "max_shape": list | None}``.
    """
    candidates = [sidecar.get("profile")]
    for section in ("build", "tensorrt", "engine", "trt"):
        value = sidecar.get(section)
        if isinstance(value, dict):
            candidates.append(value.get("profile"))
    for profile in candidates:
        found = _profile_max(profile)
        if found is not None:
            return found
    return None


def _profile_max(profile: Any) -> dict[str, Any] | None:
    if isinstance(profile, list) and profile:
        return _profile_max(profile[0])
    if not isinstance(profile, dict):
        return None
    for key in ("max", "max_shape", "max_batch", "max_batch_size"):
        value = profile.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return {"max_batch": value, "max_shape": None}
        if isinstance(value, list) and value and all(isinstance(v, int) for v in value):
            return {"max_batch": value[0], "max_shape": list(value)}
    # {input_name: {"min": ..., "max": ...}}: the first input's profile
    for value in profile.values():
        if isinstance(value, dict):
            found = _profile_max(value)
            if found is not None:
                return found
    return None


def _sidecar_tensor(sidecar: dict[str, Any], key: str) -> TensorSpec | None:
    """``input``/``output`` recorded in the sidecar (``{"name", "shape", "dtype"}``), if any."""
    value = sidecar.get(key)
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    shape = value.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
        return None
    dtype = value.get("dtype") if isinstance(value.get("dtype"), str) else ""
    return TensorSpec(value["name"], tuple(d if d > 0 else -1 for d in shape), dtype)


def check_plan(sidecar: dict[str, Any], inputs: list[TensorSpec], outputs: list[TensorSpec], max_batch_size: int, out: Findings) -> None:
    profile = engine_profile(sidecar)
    if profile is None:
        out.warning(
            "no-profile",
            f"no engine profile in {SIDECAR}: max_batch_size not checked against the engine",
            hint="rebuild with `deploykit build`, which records it",
        )
    elif max_batch_size > profile["max_batch"]:
        out.error(
            "batch-over-profile",
            f"max_batch_size {max_batch_size} exceeds the engine's optimization profile max batch {profile['max_batch']}",
            hint=f"set max_batch_size: {profile['max_batch']} or rebuild with --max-batch {max_batch_size}",
        )
    model_inputs = [t for t in [_sidecar_tensor(sidecar, "input")] if t]
    if not model_inputs and profile and profile["max_shape"] and inputs:
        shape = [-1, *profile["max_shape"][1:]]
        model_inputs = [TensorSpec(inputs[0].name, tuple(shape), "")]
    if model_inputs:
        compare_tensors("input", inputs, model_inputs, max_batch_size, "engine (per its sidecar)", out)
    model_outputs = [t for t in [_sidecar_tensor(sidecar, "output")] if t]
    if model_outputs:
        compare_tensors("output", outputs, model_outputs, max_batch_size, "engine (per its sidecar)", out)
