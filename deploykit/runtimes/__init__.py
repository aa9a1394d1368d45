"""Runtimes: one Runner interface, one module per backend, imported only when used.

Every fact about a backend lives in its row of ``BACKENDS``: the module and class that run it,
the package it needs and the extra that installs it, the artifact format it runs, and the
precisions it runs on each device kind. Bench, parity, serve and ``repo check`` ask the row;
nothing else keeps a copy.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from deploykit._deps import is_available
from deploykit.errors import MissingDependencyError, UsageError
from deploykit.runtimes.base import Runner, TensorSpec

_ALL = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Backend:
    """One backend: where its runner lives, what it needs, what it runs and where."""

    name: str
    module: str
    cls: str
    needs: str  # the importable package it needs
    extra: str  # the deploykit extra that installs it
    format: str | None  # artifact format it runs ("onnx", "trt"); None: the PyTorch module itself
    devices: tuple[tuple[str, tuple[str, ...]], ...]  # device kind -> precisions it runs there
    platforms: tuple[str, ...] = ()  # Triton platform/backend names of that format
    servable: bool = False  # can the local Triton server run it (deploykit.serve)

    @property
    def device_kinds(self) -> tuple[str, ...]:
        return tuple(kind for kind, _ in self.devices)

    def precisions_on(self, kind: str) -> tuple[str, ...]:
        return dict(self.devices).get(kind, ())

    def support_reason(self, device: str, precision: str) -> str | None:
        """None when this backend runs ``precision`` on ``device``; else why the pair does not apply."""
        kind = device.split(":")[0]
        if kind not in self.device_kinds:
            return f"{self.name} does not run on {kind} (it runs on {', '.join(self.device_kinds)})"
        runs = self.precisions_on(kind)
        if precision not in runs:
            extra = " (INT8 runs through the ONNX backends)" if self.name == "torch" and precision == "int8" else ""
            return f"{self.name} on {kind} runs {', '.join(runs)}, not {precision}{extra}"
        return None

    def unavailable_reason(self) -> str | None:
        """None when the backend's package can be imported here, else a one-line reason."""
        if not is_available(self.needs):
            return f"{self.needs} is not installed (pip install 'deploykit[{self.extra}]')"
        return None


_ONNX_PLATFORMS = ("onnxruntime_onnx", "onnxruntime")
_TRT_PLATFORMS = ("tensorrt_plan", "tensorrt")

BACKENDS: dict[str, Backend] = {
    row.name: row
    for row in (
        Backend("torch", "deploykit.runtimes.torch_runner", "TorchRunner", "torch", "dev", None,
                (("cpu", ("fp32",)), ("cuda", ("fp32", "fp16")))),
        Backend("onnxruntime", "deploykit.runtimes.onnxruntime_runner", "OnnxRuntimeRunner", "onnxruntime",
                "onnx", "onnx", (("cpu", _ALL), ("cuda", _ALL)), _ONNX_PLATFORMS, servable=True),
        Backend("openvino", "deploykit.runtimes.openvino_runner", "OpenVinoRunner", "openvino", "openvino",
                "onnx", (("cpu", _ALL),), _ONNX_PLATFORMS, servable=True),
        Backend("tensorrt", "deploykit.runtimes.tensorrt_runner", "TensorRTRunner", "tensorrt", "gpu",
                "trt", (("cuda", _ALL),), _TRT_PLATFORMS, servable=True),
    )
}


def list_backends() -> list[str]:
    return list(BACKENDS)


def get_backend(name: str) -> Backend:
    """The row of backend ``name`` (UsageError naming the choices for an unknown one)."""
    if name not in BACKENDS:
        raise UsageError(f"unknown backend {name!r}", hint=f"choose from {', '.join(BACKENDS)}")
    return BACKENDS[name]


def check_backend(backend: str) -> str:
    return get_backend(backend).name


def servable_backends() -> list[str]:
    return [b.name for b in BACKENDS.values() if b.servable]


def platform_format(platform: str) -> str | None:
    """The artifact format a Triton platform/backend name runs ("onnx", "trt"), or None."""
    for row in BACKENDS.values():
        if platform in row.platforms:
            return row.format
    return None


def backend_unavailable_reason(backend: str) -> str | None:
    """None when the backend can be imported here, else a one-line reason."""
    return get_backend(backend).unavailable_reason()


def runner_class(backend: str) -> type[Runner]:
    row = get_backend(backend)
    if not is_available(row.needs):
        raise MissingDependencyError(row.needs, row.extra, f"the {backend} backend")
    return getattr(importlib.import_module(row.module), row.cls)


def get_runner(backend: str, source: Any, **options: Any) -> Runner:
    """A runner for ``source`` (a model file, an Artifact or, for torch, an nn.Module)."""
    return runner_class(backend)(source, **options)


__all__ = [
    "BACKENDS",
    "Backend",
    "Runner",
    "TensorSpec",
    "backend_unavailable_reason",
    "check_backend",
    "get_backend",
    "get_runner",
    "list_backends",
    "platform_format",
    "runner_class",
    "servable_backends",
]
