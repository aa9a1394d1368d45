"""The pipeline as one table: which stage makes each variant, from which parent, with which command.

``(format, precision) -> Stage(parent, make, command)``. ``ensure_variant`` walks the table
to make a missing variant and its missing ancestors; ``make_command`` derives the "how to make
this" hint from the same rows. Build, bench, parity and ``export --precision`` ask here; no
other module knows which stage makes what.

The makers are named by dotted path and imported only when a variant is really made, so
asking this table costs nothing (no torch, onnx or TensorRT import).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from deploykit.artifacts import variant_name
from deploykit.errors import DeployKitError, UsageError

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Stage:
    """How one (format, precision) variant is made."""

    format: str
    precision: str
    parent: tuple[str, str] | None  # (format, precision) of the input variant; None: from PyTorch
    make: str  # "module:function", called as make(repo, model, precision, **options) -> Artifact
    command: str  # the CLI command, "{model}" and "{precision}" filled in

    def command_for(self, model: str) -> str:
        return self.command.format(model=model, precision=self.precision)


STAGES: dict[tuple[str, str], Stage] = {
    (s.format, s.precision): s
    for s in (
        Stage("onnx", "fp32", None, "deploykit.export:export_variant", "deploykit export {model}"),
        Stage("onnx", "fp16", ("onnx", "fp32"), "deploykit.precision:make_variant",
              "deploykit quantize {model} --precision {precision}"),
        Stage("onnx", "int8", ("onnx", "fp32"), "deploykit.precision:make_variant",
              "deploykit quantize {model} --precision {precision}"),
        Stage("trt", "fp32", ("onnx", "fp32"), "deploykit.tensorrt.build:build_variant",
              "deploykit build {model} --precision {precision}"),
        Stage("trt", "fp16", ("onnx", "fp16"), "deploykit.tensorrt.build:build_variant",
              "deploykit build {model} --precision {precision}"),
        Stage("trt", "int8", ("onnx", "int8"), "deploykit.tensorrt.build:build_variant",
              "deploykit build {model} --precision {precision}"),
    )
}


def stage(fmt: str, precision: str) -> Stage:
    try:
        return STAGES[(fmt, precision)]
    except KeyError:
        formats = sorted({f for f, _ in STAGES})
        precisions = sorted({p for _, p in STAGES})
        raise UsageError(
            f"no stage makes a {fmt} {precision} variant",
            hint=f"formats: {', '.join(formats)}; precisions: {', '.join(precisions)}",
        ) from None


def make_command(model: str, fmt: str, precision: str) -> str:
    """The deploykit command that creates a variant."""
    return stage(fmt, precision).command_for(model)


def chain(fmt: str, precision: str) -> list[Stage]:
    """The stages from PyTorch to (fmt, precision), oldest first."""
    out = [stage(fmt, precision)]
    while out[0].parent is not None:
        out.insert(0, stage(*out[0].parent))
    return out


def _maker(st: Stage) -> Callable[..., Any]:
    module, function = st.make.split(":")
    return getattr(importlib.import_module(module), function)


def ensure_variant(
    repo: Any,
    model: str,
    fmt: str,
    precision: str,
    *,
    progress: Progress | None = None,
    options: dict[tuple[str, str], dict[str, Any]] | None = None,
) -> tuple[Any, bool]:
    """The artifact ``(model, fmt, precision)`` of ``repo``, made with its missing ancestors.

    ``options`` maps a (format, precision) stage to keyword arguments of its maker (export
    size and classes, calibration data, engine batch profile, ...). Returns ``(artifact,
    made)``; ``made`` is True when this call created the requested variant.
    """
    found = repo.find(model, fmt, precision)
    if found is not None:
        return found, False
    say = progress or (lambda _msg: None)
    options = options or {}
    for st in chain(fmt, precision):
        if repo.find(model, st.format, st.precision) is not None:
            continue
        say(f"making {variant_name(model, st.format, st.precision)} ({st.command_for(model)})")
        _maker(st)(repo=repo, model=model, precision=st.precision, **options.get((st.format, st.precision), {}))
    made = repo.find(model, fmt, precision)
    if made is None:
        raise DeployKitError(
            f"{variant_name(model, fmt, precision)} was not created in {repo.root}",
            hint=f"run `{make_command(model, fmt, precision)} --repo {repo.root}` and look at its error",
        )
    return made, True
