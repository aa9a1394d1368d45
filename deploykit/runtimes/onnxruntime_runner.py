"""ONNX Runtime: the embedded default backend (CPUExecutionProvider unless told otherwise)."""

from __future__ import annotations

import json
import os
import tempfile
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
        prepack: bool = True,
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
        # False: kernels use the weights as stored, no packed copy (less memory and load time
        # for a few runs, e.g. export's verification; packing pays off over many runs).
        self.prepack = prepack
        self.session = None

    def _session_options(self, profile_prefix: str | None = None) -> Any:
        """This runner's ``SessionOptions`` (with ORT's profiler on when ``profile_prefix`` is given)."""
        import onnxruntime as ort

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
        if not self.prepack:
            options.add_session_config_entry("session.disable_prepacking", "1")
        if profile_prefix is not None:
            options.enable_profiling = True
            options.profile_file_prefix = profile_prefix
        return options

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
        try:
            self.session = ort.InferenceSession(str(self.path), self._session_options(), providers=self.providers)
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

    def _profile_impl(self, batch: np.ndarray, repeats: int) -> tuple[dict[str, float], dict[str, str]]:
        """ORT's own profiler on a second session with the same options (profiling is a
        session option: the timed session stays untouched); kernel time per node."""
        import onnxruntime as ort

        with tempfile.TemporaryDirectory() as tmp:
            options = self._session_options(profile_prefix=str(Path(tmp) / "ort"))
            session = ort.InferenceSession(str(self.path), options, providers=self.providers)
            for _ in range(repeats):
                session.run(None, {self._input.name: batch})
            events = json.loads(Path(session.end_profiling()).read_text())
        times: dict[str, float] = {}
        ops: dict[str, str] = {}
        for event in events:
            if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
                continue
            node = event["name"][: -len("_kernel_time")]
            times[node] = times.get(node, 0.0) + event.get("dur", 0) / 1000.0
            ops[node] = (event.get("args") or {}).get("op_name", "")
        return {k: v / repeats for k, v in times.items()}, ops

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.backend,
            "device": self.device,
            "providers": self.session.get_providers() if self.session is not None else self.providers,
            "threads": self.threads,
            "graph_optimization": self.graph_optimization,
        }
