"""ONNX Runtime: the embedded default backend (CPUExecutionProvider unless told otherwise)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.artifacts import Artifact
from deploykit.errors import DeployKitError, UsageError
from deploykit.runtimes.base import Runner, TensorSpec

_GRAPH_LEVELS = ("disable", "basic", "extended", "all")

# device -> execution providers in priority order (ORT falls back along the list per node).
DEVICE_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


def providers_for(device: str) -> list[str]:
    """Execution providers for ``cpu``, ``cuda`` (onnxruntime-gpu) or ``tensorrt`` (ORT's TensorRT EP)."""
    kind = device.split(":")[0].lower()
    if kind not in DEVICE_PROVIDERS:
        raise UsageError(
            f"unknown device {device!r} for onnxruntime", hint=f"choose from {', '.join(DEVICE_PROVIDERS)}"
        )
    return list(DEVICE_PROVIDERS[kind])


def device_unavailable_reason(device: str) -> str | None:
    """None when this ONNX Runtime build has the device's first provider, else a one-line reason."""
    import onnxruntime as ort

    wanted = providers_for(device)[0]
    if wanted in ort.get_available_providers():
        return None
    return f"this onnxruntime has no {wanted} (install onnxruntime-gpu for CUDA/TensorRT)"


class OnnxRuntimeRunner(Runner):
    backend = "onnxruntime"

    def __init__(
        self,
        source: str | os.PathLike | Artifact,
        providers: list[str] | None = None,
        threads: int | None = None,
        graph_optimization: str = "all",
        name: str | None = None,
        device: str = "cpu",
    ):
        path = source.path if isinstance(source, Artifact) else Path(source)
        super().__init__(name or f"onnxruntime:{path.parent.parent.name or path.name}")
        if graph_optimization not in _GRAPH_LEVELS:
            raise UsageError(
                f"unknown graph optimization level {graph_optimization!r}",
                hint=f"choose from {', '.join(_GRAPH_LEVELS)}",
            )
        self.path = path
        # Explicit providers win; otherwise ``device`` picks them (cpu, cuda, tensorrt).
        self.providers = providers or providers_for(device)
        self.device = device
        self.threads = threads
        self.graph_optimization = graph_optimization
        self.session = None

    def _activate_impl(self) -> None:
        import onnxruntime as ort

        if not self.path.is_file():
            raise UsageError(f"no ONNX model at {self.path}")
        available = ort.get_available_providers()
        missing = [p for p in self.providers if p not in available]
        if missing:
            raise DeployKitError(
                f"ONNX Runtime here has no {', '.join(missing)} (available: {', '.join(available)})",
                hint="install onnxruntime-gpu for CUDA/TensorRT providers",
            )
        options = ort.SessionOptions()
        options.graph_optimization_level = {
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
        }[self.graph_optimization]
        if self.threads:
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=self.providers)
        except Exception as exc:  # ORT raises its own Fail/InvalidGraph/RuntimeException types
            raise DeployKitError(
                f"ONNX Runtime cannot load {self.path}: {str(exc).splitlines()[0][:300]}",
                hint="the file may be corrupt: re-create it",
            ) from exc
        self._input = self.session.get_inputs()[0]
        self._output = self.session.get_outputs()[0]

    def input_spec(self) -> TensorSpec:
        if self.session is None:
            self.activate()
        shape = tuple(d if isinstance(d, int) else -1 for d in self._input.shape)
        return TensorSpec(self._input.name, shape, "float32")

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self._output.name], {self._input.name: batch})[0]

    def _deactivate_impl(self) -> None:
        self.session = None

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "device": self.device,
            "providers": self.session.get_providers() if self.session is not None else self.providers,
            "threads": self.threads,
            "graph_optimization": self.graph_optimization,
        }
