"""Validate a model repository the way Triton will load it, and say what is wrong per model.

The checks are the mismatches users most often hit when a repository meets a real
tritonserver: a config.pbtxt that does not parse, a model folder without a numeric version
folder, a model file under the wrong name, dims that include the batch dimension (Triton
prepends it when ``max_batch_size > 0``), dims or dtypes that disagree with the model file,
a ``max_batch_size`` above the TensorRT engine's optimization profile, TensorRT plans on
``KIND_CPU`` instances, and preferred batch sizes above ``max_batch_size``.

Errors are what makes Triton refuse the model (or fail its first request); warnings are
legal configurations that probably are not what was meant. Only errors fail the check.
The ONNX file is read with ``onnx`` (lazily); a plan cannot be read without TensorRT, so it
is checked against the engine profile and shapes that ``deploykit build`` recorded in the
sidecar.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deploykit._deps import is_available
from deploykit.artifacts import MODEL_FILES, SIDECAR
from deploykit.errors import UsageError
from deploykit.serve.pbtxt import Ident, Message, PbtxtError, parse, schema_available, schema_error

# platform (or backend) -> deploykit format
_PLATFORM_FORMATS = {
    "onnxruntime_onnx": "onnx",
    "onnxruntime": "onnx",
    "tensorrt_plan": "trt",
    "tensorrt": "trt",
}
# Triton platforms/backends deploykit does not produce: known, not file-checked.
_OTHER_PLATFORMS = {
    "pytorch_libtorch", "tensorflow_graphdef", "tensorflow_savedmodel", "ensemble",
    "pytorch", "python", "openvino", "fil", "dali", "identity",
}  # fmt: skip
TRITON_DTYPES = {
    "TYPE_BOOL": "bool",
    "TYPE_UINT8": "uint8",
    "TYPE_UINT16": "uint16",
    "TYPE_UINT32": "uint32",
    "TYPE_UINT64": "uint64",
    "TYPE_INT8": "int8",
    "TYPE_INT16": "int16",
    "TYPE_INT32": "int32",
    "TYPE_INT64": "int64",
    "TYPE_FP16": "float16",
    "TYPE_FP32": "float32",
    "TYPE_FP64": "float64",
    "TYPE_STRING": "object",
    "TYPE_BF16": "bfloat16",
}
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


@dataclass(frozen=True)
class ModelCheck:
    """The verdict on one model folder of the repository."""

    name: str
    platform: str | None
    max_batch_size: int | None
    versions: tuple[int, ...]
    problems: tuple[Problem, ...]

    @property
    def errors(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.severity == "warning")

    @property
    def ok(self) -> bool:
        return not self.errors

    def codes(self) -> set[str]:
        return {p.code for p in self.problems}


@dataclass(frozen=True)
class RepoCheckReport:
    """Every model folder's verdict; truthy when no model has an error."""

    root: str
    models: tuple[ModelCheck, ...]
    schema_checked: bool  # Triton's protobuf schema was available (tritonclient installed)
    dims_checked: bool  # onnx was available to read ONNX input/output shapes

    @property
    def ok(self) -> bool:
        return all(m.ok for m in self.models)

    def __bool__(self) -> bool:
        return self.ok

    @property
    def error_count(self) -> int:
        return sum(len(m.errors) for m in self.models)

    @property
    def warning_count(self) -> int:
        return sum(len(m.warnings) for m in self.models)

    def model(self, name: str) -> ModelCheck:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            "root": self.root,
            "ok": self.ok,
            "errors": self.error_count,
            "warnings": self.warning_count,
            "schema_checked": self.schema_checked,
            "dims_checked": self.dims_checked,
            "models": [
                {**asdict(m), "ok": m.ok, "versions": list(m.versions)} for m in self.models
            ],
        }


# ---- helpers ------------------------------------------------------------------------------------
def _dims_text(dims) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


def _dims_fit(config_dims: tuple[int, ...], model_dims: tuple[int, ...]) -> bool:
    """Config dims fit the model's: same rank; a dynamic (-1) model dim accepts any config dim."""
    if len(config_dims) != len(model_dims):
        return False
    return all(m < 0 or c == m for c, m in zip(config_dims, model_dims, strict=True))


@dataclass(frozen=True)
class _Tensor:
    name: str
    dtype: str | None  # numpy dtype name, None if unknown
    dims: tuple[int, ...]  # -1 for dynamic


@dataclass
class _Findings:
    problems: list[Problem] = field(default_factory=list)

    def error(self, code: str, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem("error", code, message, hint))

    def warning(self, code: str, message: str, hint: str | None = None) -> None:
        self.problems.append(Problem("warning", code, message, hint))


def _config_tensors(config: Message, section: str, out: _Findings) -> list[_Tensor]:
    tensors = []
    for index, msg in enumerate(config.messages(section)):
        name = msg.get("name")
        if not isinstance(name, str) or isinstance(name, Ident) or not name:
            out.error("tensor-name", f"{section} #{index + 1} has no name")
            continue
        data_type = msg.get("data_type")
        dtype = None
        if data_type is None:
            out.error("data-type", f"{section} {name!r} has no data_type")
        elif str(data_type) not in TRITON_DTYPES:
            out.error(
                "data-type",
                f"{section} {name!r} has data_type {data_type}, not a Triton type",
                hint=f"use one of {', '.join(sorted(TRITON_DTYPES))}",
            )
        else:
            dtype = TRITON_DTYPES[str(data_type)]
        dims = msg.all("dims")
        if "dims" not in msg:
            out.error("dims", f"{section} {name!r} has no dims")
        bad = [d for d in dims if isinstance(d, bool) or not isinstance(d, int) or (d < 1 and d != -1)]
        if bad:
            out.error("dims", f"{section} {name!r} has invalid dims {dims} (each must be -1 or > 0)")
            dims = []
        tensors.append(_Tensor(name, dtype, tuple(dims)))
    return tensors


def _onnx_tensors(path: Path) -> tuple[list[_Tensor], list[_Tensor], int, int]:
    """Graph inputs (initializers left out), outputs, IR version and default-domain opset."""
    import onnx
    from onnx import helper

    model = onnx.load(str(path), load_external_data=False)
    initializers = {t.name for t in model.graph.initializer}

    def tensor(value_info) -> _Tensor:
        ttype = value_info.type.tensor_type
        try:
            dtype = str(helper.tensor_dtype_to_np_dtype(ttype.elem_type))
        except (KeyError, ValueError, TypeError):
            dtype = None
        dims = tuple(
            d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else -1 for d in ttype.shape.dim
        )
        return _Tensor(value_info.name, dtype, dims)

    inputs = [tensor(v) for v in model.graph.input if v.name not in initializers]
    outputs = [tensor(v) for v in model.graph.output]
    opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=0)
    return inputs, outputs, int(model.ir_version), int(opset)


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


def _sidecar_tensor(sidecar: dict[str, Any], key: str) -> _Tensor | None:
    """``input``/``output`` recorded in the sidecar (``{"name", "shape", "dtype"}``), if any."""
    value = sidecar.get(key)
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    shape = value.get("shape")
    if not isinstance(shape, list) or not all(isinstance(d, int) for d in shape):
        return None
    dtype = value.get("dtype") if isinstance(value.get("dtype"), str) else None
    return _Tensor(value["name"], dtype, tuple(d if d > 0 else -1 for d in shape))


# ---- the checks ------------------------------------------------------------------------------------
def _check_versions(directory: Path, out: _Findings) -> list[int]:
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


def _check_model_file(directory: Path, version: int, filename: str, out: _Findings) -> Path | None:
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


def _compare_tensors(
    section: str,
    config_tensors: list[_Tensor],
    model_tensors: list[_Tensor],
    max_batch_size: int,
    source: str,
    out: _Findings,
) -> None:
    by_name = {t.name: t for t in model_tensors}
    for t in config_tensors:
        model = by_name.get(t.name)
        if model is None:
            out.error(
                "unknown-tensor",
                f"{section} {t.name!r} is not in the {source} "
                f"(its {section}s: {', '.join(by_name) or 'none'})",
            )
            continue
        if t.dtype and model.dtype and t.dtype != model.dtype:
            out.error(
                "dtype-mismatch",
                f"{section} {t.name!r} is {t.dtype} in config.pbtxt but {model.dtype} in the {source}",
            )
        if not t.dims:
            continue
        if max_batch_size > 0:
            if not model.dims:
                out.error(
                    "no-batch-dim",
                    f"{section} {t.name!r} is a scalar in the {source}: it cannot be batched",
                    hint="set max_batch_size: 0",
                )
                continue
            batch, rest = model.dims[0], model.dims[1:]
            if len(t.dims) == len(model.dims) and _dims_fit(t.dims[1:], rest):
                out.error(
                    "batch-dim-in-dims",
                    f"{section} {t.name!r} dims {_dims_text(t.dims)} include the batch dimension: "
                    f"with max_batch_size {max_batch_size} Triton prepends it",
                    hint=f"use dims: {_dims_text(t.dims[1:])}",
                )
                continue
            if not _dims_fit(t.dims, rest):
                out.error(
                    "dims-mismatch",
                    f"{section} {t.name!r} dims {_dims_text(t.dims)} do not match the {source}'s "
                    f"{_dims_text(model.dims)} (batch dimension first)",
                    hint=f"use dims: {_dims_text(rest)}",
                )
            if batch > 0 and not batch == max_batch_size == 1:
                # The dynamic batcher forms batches of any size up to max_batch_size.
                out.error(
                    "fixed-batch-dim",
                    f"the {source} fixes the batch dimension of {t.name!r} at {batch}; "
                    f"with max_batch_size {max_batch_size} Triton sends batches of 1..{max_batch_size}",
                    hint="re-export with a dynamic batch axis, or lower max_batch_size",
                )
        elif not _dims_fit(t.dims, model.dims):
            out.error(
                "dims-mismatch",
                f"{section} {t.name!r} dims {_dims_text(t.dims)} do not match the {source}'s "
                f"{_dims_text(model.dims)} (max_batch_size 0: dims are the full shape)",
                hint=f"use dims: {_dims_text(model.dims)}",
            )
    if section == "input":
        named = {t.name for t in config_tensors}
        missing = [t.name for t in model_tensors if t.name not in named]
        if missing and config_tensors:
            out.error("missing-input", f"the {source}'s input(s) {', '.join(missing)} are not in config.pbtxt")


def _read_sidecar(directory: Path, out: _Findings) -> dict[str, Any]:
    path = directory / SIDECAR
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        out.warning("sidecar", f"{SIDECAR} is unreadable ({exc}); lineage unknown")
        return {}
    return data if isinstance(data, dict) else {}


def check_model(directory: str | os.PathLike, read_onnx: bool = True) -> ModelCheck:
    """Check one Triton model folder (``<repo>/<name>/``)."""
    directory = Path(directory)
    out = _Findings()
    versions = _check_versions(directory, out)
    sidecar = _read_sidecar(directory, out)

    def result(platform: str | None = None, max_batch_size: int | None = None) -> ModelCheck:
        return ModelCheck(directory.name, platform, max_batch_size, tuple(versions), tuple(out.problems))

    config_path = directory / "config.pbtxt"
    if not config_path.is_file():
        out.error(
            "missing-config",
            "no config.pbtxt",
            hint="deploykit export/quantize/build write one; Triton auto-completes only some backends",
        )
        return result()
    text = config_path.read_text(encoding="utf-8", errors="replace")
    try:
        config = parse(text)
    except PbtxtError as exc:
        out.error("pbtxt-syntax", f"config.pbtxt:{exc.line}:{exc.column}: {exc.reason}")
        return result()
    schema = schema_error(text)
    if schema:
        out.error("pbtxt-schema", f"config.pbtxt is not a Triton ModelConfig: {schema}")

    try:
        return _check_config(directory, config, versions, sidecar, out, read_onnx, result)
    except ValueError as exc:  # a field of the wrong kind (a scalar for a message, text for a number)
        out.error("pbtxt-type", f"config.pbtxt: {exc}")
        return result()


def _check_config(directory, config, versions, sidecar, out, read_onnx, result) -> ModelCheck:
    name = config.get("name")
    if name is not None and str(name) != directory.name:
        out.error(
            "name-mismatch",
            f"config.pbtxt names the model {name!r} but its folder is {directory.name!r}",
            hint="Triton requires them to be equal",
        )
    platform = config.get("platform")
    backend = config.get("backend")
    kind = str(platform or backend or "")
    fmt = _PLATFORM_FORMATS.get(kind)
    if not kind:
        out.error("no-platform", "config.pbtxt sets neither platform nor backend")
    elif fmt is None:
        if kind in _OTHER_PLATFORMS:
            out.warning("other-platform", f"platform {kind!r} is not made by deploykit; file checks skipped")
        else:
            out.error("unknown-platform", f"unknown platform/backend {kind!r}", hint="deploykit writes onnxruntime_onnx or tensorrt_plan")

    max_batch_size = config.get_int("max_batch_size", 0)
    if max_batch_size < 0:
        out.error("max-batch-size", f"max_batch_size {max_batch_size} is negative")
        max_batch_size = 0
    inputs = _config_tensors(config, "input", out)
    outputs = _config_tensors(config, "output", out)
    if not inputs:
        out.error("no-inputs", "config.pbtxt declares no input")
    if not outputs:
        out.error("no-outputs", "config.pbtxt declares no output")

    # ---- batching -------------------------------------------------------------------------
    batching = config.messages("dynamic_batching")
    if max_batch_size > 0 and not batching:
        out.warning(
            "no-dynamic-batching",
            "max_batch_size > 0 but no dynamic_batching: every request runs alone",
            hint="add dynamic_batching { max_queue_delay_microseconds: 100 }",
        )
    if batching and max_batch_size == 0:
        out.error("batching-without-batch", "dynamic_batching needs max_batch_size > 0")
    for dyn in batching:
        preferred = dyn.all("preferred_batch_size")
        over = [b for b in preferred if not isinstance(b, int) or b < 1 or b > max_batch_size]
        if over and max_batch_size > 0:
            out.error(
                "preferred-over-max",
                f"preferred_batch_size {over} outside 1..max_batch_size ({max_batch_size})",
            )
        delay = dyn.get_int("max_queue_delay_microseconds", 0)
        if delay < 0:
            out.error("queue-delay", f"max_queue_delay_microseconds {delay} is negative")

    # ---- instances --------------------------------------------------------------------------
    groups = config.messages("instance_group")
    if not groups:
        out.warning(
            "no-instance-group",
            "no instance_group: Triton picks KIND_GPU when it sees a GPU, else KIND_CPU",
            hint="state it: KIND_CPU for ONNX on CPU, KIND_GPU for TensorRT plans",
        )
    for group in groups:
        kind_value = str(group.get("kind", "KIND_AUTO"))
        count = group.get_int("count", 1)
        if kind_value not in INSTANCE_KINDS:
            out.error("instance-kind", f"unknown instance_group kind {kind_value}", hint=f"use one of {', '.join(INSTANCE_KINDS)}")
        elif fmt == "trt" and kind_value == "KIND_CPU":
            out.error("instance-kind", "a TensorRT plan cannot run on KIND_CPU", hint="use kind: KIND_GPU")
        elif fmt == "onnx" and kind_value == "KIND_GPU":
            out.warning(
                "instance-kind",
                "ONNX on KIND_GPU fails to load on a host without a GPU",
                hint="use KIND_CPU for CPU serving (deploykit's default for ONNX variants)",
            )
        if count < 1:
            out.error("instance-count", f"instance_group count {count} must be >= 1")

    # ---- the model file(s) ------------------------------------------------------------------
    if fmt is None:
        return result(kind or None, max_batch_size)
    filename = str(config.get("default_model_filename") or MODEL_FILES[fmt])
    files = [p for v in versions if (p := _check_model_file(directory, v, filename, out)) is not None]
    if fmt == "onnx" and files and read_onnx:
        if is_available("onnx"):
            latest = files[-1]
            try:
                model_inputs, model_outputs, ir_version, opset = _onnx_tensors(latest)
            except Exception as exc:  # onnx raises DecodeError, ValidationError, OSError...
                out.error("corrupt-model", f"{latest.relative_to(directory)} is not a readable ONNX model: {str(exc)[:200]}")
            else:
                if ir_version > MAX_ONNX_IR_VERSION or opset > MAX_ONNX_OPSET:
                    out.warning(
                        "onnx-too-new",
                        f"IR version {ir_version}, opset {opset}: tritonserver {TRITON_CONTAINER}'s ONNX Runtime "
                        f"reads IR <= {MAX_ONNX_IR_VERSION}, opset <= {MAX_ONNX_OPSET}",
                        hint="export with a lower --opset, or serve with a newer tritonserver image",
                    )
                source = f"ONNX model ({latest.relative_to(directory)})"
                _compare_tensors("input", inputs, model_inputs, max_batch_size, source, out)
                _compare_tensors("output", outputs, model_outputs, max_batch_size, source, out)
        else:
            out.warning("dims-unchecked", "onnx is not installed: dims not compared with the model file", hint="pip install 'deploykit[onnx]'")
    if fmt == "trt" and files:
        _check_plan(sidecar, inputs, outputs, max_batch_size, out)
    if files and sidecar.get("sha256") and sidecar.get("version") is not None:
        recorded = directory / str(sidecar.get("version")) / filename
        if recorded.is_file() and isinstance(sidecar.get("bytes"), int) and recorded.stat().st_size != sidecar["bytes"]:
            out.warning(
                "file-changed",
                f"{recorded.relative_to(directory)} has {recorded.stat().st_size} bytes; the sidecar recorded {sidecar['bytes']}",
                hint="the file was replaced or truncated after deploykit wrote it",
            )
    return result(kind, max_batch_size)


def _check_plan(sidecar: dict[str, Any], inputs: list[_Tensor], outputs: list[_Tensor], max_batch_size: int, out: _Findings) -> None:
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
        model_inputs = [_Tensor(inputs[0].name, None, tuple(shape))]
    if model_inputs:
        _compare_tensors("input", inputs, model_inputs, max_batch_size, "engine (per its sidecar)", out)
    model_outputs = [t for t in [_sidecar_tensor(sidecar, "output")] if t]
    if model_outputs:
        _compare_tensors("output", outputs, model_outputs, max_batch_size, "engine (per its sidecar)", out)


def check_repository(root: str | os.PathLike = "models", read_onnx: bool = True) -> RepoCheckReport:
    """Check every model folder under ``root`` (folders starting with '.' are skipped, as Triton does)."""
    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"no model repository at {root}", hint="pass --repo, or create one with `deploykit export`")
    models = tuple(
        check_model(d, read_onnx=read_onnx)
        for d in sorted(root.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    )
    return RepoCheckReport(
        root=str(root),
        models=models,
        schema_checked=schema_available(),
        dims_checked=read_onnx and is_available("onnx"),
    )
