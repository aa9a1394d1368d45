"""OpenVINO (optional extra): runs the same FP32 / FP16 / INT8 (Q/DQ) ONNX files on the CPU.

On CPUs without VNNI, ONNX Runtime's INT8 kernels are slower than its FP32 ones while
OpenVINO's are faster; benchmarking both side by side shows which holds on a given CPU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.artifacts import Artifact
from deploykit.errors import DeployKitError, UsageError
from deploykit.runtimes.base import Runner, TensorSpec

_HINTS = ("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT")


class OpenVinoRunner(Runner):
    """An ONNX file compiled by OpenVINO for one device (``CPU`` by default).

    ``threads`` sets ``INFERENCE_NUM_THREADS``. ``inference_precision`` (default ``f32``)
    sets ``INFERENCE_PRECISION_HINT``: OpenVINO would otherwise run FP32 models in BF16 on
    CPUs with AMX or AVX512-BF16, which changes both the numbers and the speed of a
    "FP32" measurement; pass ``None`` to let OpenVINO choose. Precision reductions the file
    itself carries (FP16 weights, INT8 Q/DQ nodes) are honoured either way.
    """

    backend = "openvino"

    def __init__(
        self,
        source: str | os.PathLike | Artifact,
        device: str = "CPU",
        threads: int | None = None,
        performance_hint: str = "LATENCY",
        inference_precision: str | None = "f32",
        name: str | None = None,
    ):
        path = source.path if isinstance(source, Artifact) else Path(source)
        super().__init__(name or f"openvino:{path.parent.parent.name or path.name}")
        if performance_hint not in _HINTS:
            raise UsageError(f"unknown performance hint {performance_hint!r}", hint=f"choose from {', '.join(_HINTS)}")
        self.path = path
        self.device = device.upper()
        self.threads = threads
        self.performance_hint = performance_hint
        self.inference_precision = inference_precision
        self.compiled = None
        self.request = None

    def _compile_config(self, perf_count: bool = False) -> dict[str, Any]:
        """This runner's compile settings (with OpenVINO's performance counters when asked)."""
        config: dict[str, Any] = {"PERFORMANCE_HINT": self.performance_hint}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        if self.inference_precision:
            config["INFERENCE_PRECISION_HINT"] = self.inference_precision
        if perf_count:
            config["PERF_COUNT"] = True
        return config

    def _activate_impl(self) -> None:
        import openvino as ov

        if not self.path.is_file():
            raise UsageError(f"no ONNX model at {self.path}")
        core = ov.Core()
        if self.device not in core.available_devices:
            raise DeployKitError(
                f"OpenVINO has no device {self.device!r} here (available: {', '.join(core.available_devices)})"
            )
        try:
            model = core.read_model(str(self.path))
            self.compiled = core.compile_model(model, self.device, self._compile_config())
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses with long C++ traces
            raise DeployKitError(
                f"OpenVINO cannot load {self.path}: {str(exc).strip().splitlines()[0][:300]}",
                hint="the file may be corrupt: re-create it",
            ) from exc
        self.request = self.compiled.create_infer_request()
        port = self.compiled.inputs[0]
        # Read once: infer() checks every batch against it, and asking OpenVINO costs ~40 us a call.
        shape = tuple(d.get_length() if d.is_static else -1 for d in port.get_partial_shape())
        self._spec = TensorSpec(port.get_any_name(), shape, "float32")

    def input_spec(self) -> TensorSpec:
        if self.compiled is None:
            self.activate()
        return self._spec

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        self.request.infer({0: batch})
        # The output tensor is reused by the next request: copy it out.
        return np.array(self.request.get_output_tensor(0).data, dtype=np.float32, copy=True)

    def _deactivate_impl(self) -> None:
        self.request = None
        self.compiled = None

    def _profile_impl(self, batch: np.ndarray, repeats: int) -> tuple[dict[str, float], dict[str, str]]:
        """Performance counters of a second compilation with the same settings plus PERF_COUNT
        (counters are a compile option: the timed model stays untouched)."""
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(core.read_model(str(self.path)), self.device, self._compile_config(True))
        request = compiled.create_infer_request()
        times: dict[str, float] = {}
        ops: dict[str, str] = {}
        for _ in range(repeats):
            request.infer({0: batch})
            for info in request.profiling_info:
                ms = info.real_time.total_seconds() * 1000.0
                if ms > 0:
                    times[info.node_name] = times.get(info.node_name, 0.0) + ms
                    ops[info.node_name] = f"{info.node_type} ({info.exec_type})"
        return {k: v / repeats for k, v in times.items()}, ops

    def describe(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "backend": self.backend,
            "device": self.device,
            "threads": self.threads,
            "performance_hint": self.performance_hint,
            "inference_precision": self.inference_precision,
        }
        if self.compiled is not None:
            try:
                out["threads"] = int(self.compiled.get_property("INFERENCE_NUM_THREADS"))
                hint = self.compiled.get_property("INFERENCE_PRECISION_HINT")
                out["inference_precision"] = hint.get_type_name() if hasattr(hint, "get_type_name") else str(hint)
            except Exception:  # property names differ between OpenVINO releases
                pass
        return out
