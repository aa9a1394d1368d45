"""Runtimes: one Runner interface, one module per backend, imported only when used."""

from __future__ import annotations

import importlib
from typing import Any

from deploykit._deps import is_available
from deploykit.errors import MissingDependencyError, UsageError
from deploykit.runtimes.base import Runner, TensorSpec

# backend name -> (module, class, the import it needs, the extra that installs it)
BACKENDS: dict[str, tuple[str, str, str, str]] = {
    "torch": ("deploykit.runtimes.torch_runner", "TorchRunner", "torch", "dev"),
    "onnxruntime": ("deploykit.runtimes.onnxruntime_runner", "OnnxRuntimeRunner", "onnxruntime", "onnx"),
    "openvino": ("deploykit.runtimes.openvino_runner", "OpenVinoRunner", "openvino", "openvino"),
    "tensorrt": ("deploykit.runtimes.tensorrt_runner", "TensorRTRunner", "tensorrt", "gpu"),
}


def list_backends() -> list[str]:
    return list(BACKENDS)


def check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise UsageError(f"unknown backend {backend!r}", hint=f"choose from {', '.join(BACKENDS)}")
    return backend


def backend_unavailable_reason(backend: str) -> str | None:
    """None when the backend can be imported here, else a one-line reason."""
    module, _, needs, extra = BACKENDS[check_backend(backend)]
    if not is_available(needs):
        return f"{needs} is not installed (pip install 'deploykit[{extra}]')"
    return None


def runner_class(backend: str) -> type[Runner]:
    module, cls, needs, extra = BACKENDS[check_backend(backend)]
    if not is_available(needs):
        raise MissingDependencyError(needs, extra, f"the {backend} backend")
    return getattr(importlib.import_module(module), cls)


def get_runner(backend: str, source: Any, **options: Any) -> Runner:
    """A runner for ``source`` (a model file, an Artifact or, for torch, an nn.Module)."""
    return runner_class(backend)(source, **options)


__all__ = [
    "BACKENDS",
    "Runner",
    "TensorSpec",
    "backend_unavailable_reason",
    "check_backend",
    "get_runner",
    "list_backends",
    "runner_class",
]
