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

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from deploykit._deps import is_available
from deploykit.artifacts import MODEL_FILES
from deploykit.errors import UsageError
from deploykit.fileio import stale_scratch, tree_bytes
from deploykit.runtimes import platform_format
from deploykit.serve.check_rules import (
    Findings,
    Problem,
    check_batching,
    check_instances,
    check_model_file,
    check_onnx,
    check_plan,
    check_versions,
    config_tensors,
    engine_profile,
    read_sidecar,
)

__all__ = ["ModelCheck", "Problem", "RepoCheckReport", "check_model", "check_repository", "engine_profile"]

# Triton platforms/backends deploykit does not produce: known, not file-checked.
_OTHER_PLATFORMS = {
    "pytorch_libtorch", "tensorflow_graphdef", "tensorflow_savedmodel", "ensemble",
    "pytorch", "python", "openvino", "fil", "dali", "identity",
}  # fmt: skip


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
    # (name, bytes) of temporary files a killed deploykit process left (a warning each)
    stale_scratch: tuple[tuple[str, int], ...] = ()

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
        return sum(len(m.warnings) for m in self.models) + len(self.stale_scratch)

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
            "stale_scratch": [{"name": name, "bytes": size} for name, size in self.stale_scratch],
            "models": [
                {**asdict(m), "ok": m.ok, "versions": list(m.versions)} for m in self.models
            ],
        }


def _read_config(directory: Path, out: Findings) -> Any | None:
    """The parsed ModelConfig, or None with the syntax/schema error recorded (line and column)."""
    from deploykit.triton.config import ConfigError, read_config

    if not (directory / "config.pbtxt").is_file():
        out.error(
            "missing-config",
            "no config.pbtxt",
            hint="deploykit export/quantize/build write one; Triton auto-completes only some backends",
        )
        return None
    try:
        return read_config(directory / "config.pbtxt")
    except ConfigError as exc:
        if exc.kind == "syntax":
            out.error("pbtxt-syntax", exc.message)
        else:
            out.error("pbtxt-schema", f"config.pbtxt is not a Triton ModelConfig: {exc.line}:{exc.column} : {exc.reason}")
        return None


def check_model(directory: str | os.PathLike, read_onnx: bool = True) -> ModelCheck:
    """Check one Triton model folder (``<repo>/<name>/``)."""
    directory = Path(directory)
    out = Findings()
    versions = check_versions(directory, out)
    sidecar = read_sidecar(directory, out)
    config = _read_config(directory, out)
    platform, max_batch_size = None, None
    if config is not None:
        platform, max_batch_size = _check_config(directory, config, versions, sidecar, out, read_onnx)
    return ModelCheck(directory.name, platform, max_batch_size, tuple(versions), tuple(out.problems))


def _check_platform(directory: Path, config: Any, out: Findings) -> tuple[str, str | None]:
    """The platform (or backend) name and the deploykit format it runs (None: not deploykit's)."""
    if config.name and config.name != directory.name:
        out.error(
            "name-mismatch",
            f"config.pbtxt names the model {config.name!r} but its folder is {directory.name!r}",
            hint="Triton requires them to be equal",
        )
    kind = config.platform or config.backend
    fmt = platform_format(kind) if kind else None
    if not kind:
        out.error("no-platform", "config.pbtxt sets neither platform nor backend")
    elif fmt is None and kind in _OTHER_PLATFORMS:
        out.warning("other-platform", f"platform {kind!r} is not made by deploykit; file checks skipped")
    elif fmt is None:
        out.error("unknown-platform", f"unknown platform/backend {kind!r}", hint="deploykit writes onnxruntime_onnx or tensorrt_plan")
    return kind, fmt


def _check_config(directory, config, versions, sidecar, out: Findings, read_onnx: bool) -> tuple[str | None, int]:
    kind, fmt = _check_platform(directory, config, out)
    max_batch_size = config.max_batch_size
    if max_batch_size < 0:
        out.error("max-batch-size", f"max_batch_size {max_batch_size} is negative")
        max_batch_size = 0
    inputs = config_tensors(config, "input", out)
    outputs = config_tensors(config, "output", out)
    if not inputs:
        out.error("no-inputs", "config.pbtxt declares no input")
    if not outputs:
        out.error("no-outputs", "config.pbtxt declares no output")
    check_batching(config, max_batch_size, out)
    check_instances(config, fmt, out)
    if fmt is None:
        return kind or None, max_batch_size
    filename = config.default_model_filename or MODEL_FILES[fmt]
    files = [p for v in versions if (p := check_model_file(directory, v, filename, out)) is not None]
    if fmt == "onnx" and files and read_onnx:
        if is_available("onnx"):
            check_onnx(files[-1], directory, inputs, outputs, max_batch_size, out)
        else:
            out.warning("dims-unchecked", "onnx is not installed: dims not compared with the model file", hint="pip install 'deploykit[onnx]'")
    if fmt == "trt" and files:
        check_plan(sidecar, inputs, outputs, max_batch_size, out)
    if files:
        _check_recorded_size(directory, filename, sidecar, out)
    return kind, max_batch_size


def _check_recorded_size(directory: Path, filename: str, sidecar: dict[str, Any], out: Findings) -> None:
    """The model file against the size and sha256 its sidecar recorded (the check every stage
    makes before reading its input): a mismatch is an error, the lineage no longer describes it."""
    from deploykit.fileio import model_bytes
    from deploykit.pipeline import make_command
    from deploykit.repository import check_model_file, read_variant

    if not sidecar.get("sha256") or sidecar.get("version") is None:
        return
    recorded = directory / str(sidecar.get("version")) / filename
    if not recorded.is_file():
        return
    artifact = read_variant(directory)  # readable: read_sidecar found it so
    size = model_bytes(recorded)  # with its external data
    if isinstance(sidecar.get("bytes"), int) and size != sidecar["bytes"]:
        changed = f"has {size} bytes; the sidecar recorded {sidecar['bytes']}"
    else:
        check = check_model_file(artifact, trust=True)
        if check.matches:
            return
        changed = f"has sha256 {check.sha256[:12]}; the sidecar recorded {str(check.recorded)[:12]}"
    out.error(
        "file-changed",
        f"{recorded.relative_to(directory)} {changed}: it was changed, replaced or truncated after deploykit wrote it",
        hint=f"re-create it with `{make_command(artifact.model, artifact.format, artifact.precision)}` (the lineage no longer describes the file)",
    )


def check_repository(root: str | os.PathLike = "models", read_onnx: bool = True) -> RepoCheckReport:
    """Check every model folder under ``root`` (folders starting with '.' are skipped, as Triton does).

    Needs Triton's schema (``tritonclient``, in the ``onnx`` and ``serve`` extras) to read the configs.
    """
    from deploykit.triton.schema import model_config_pb2

    root = Path(root)
    if not root.is_dir():
        raise UsageError(f"no model repository at {root}", hint="pass --repo, or create one with `deploykit export`")
    model_config_pb2("reading the repository's config.pbtxt files")  # a missing schema is one clear error
    models = tuple(
        check_model(d, read_onnx=read_onnx)
        for d in sorted(root.iterdir())
        if d.is_dir() and not d.name.startswith(".")
    )
    return RepoCheckReport(
        root=str(root),
        models=models,
        schema_checked=True,
        dims_checked=read_onnx and is_available("onnx"),
        stale_scratch=tuple((p.name, tree_bytes(p)) for p in stale_scratch(root)),
    )
