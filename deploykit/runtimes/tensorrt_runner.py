"""TensorRT: run a ``model.plan`` with PyTorch owning the CUDA context, memory and stream.

No pycuda: ``torch`` already creates the CUDA context, allocates device memory through its
caching allocator and exposes streams, and TensorRT only needs raw device pointers and a
stream handle. So inputs and outputs are ``torch.empty(..., device="cuda")`` tensors whose
``data_ptr()`` goes to ``context.set_tensor_address``, and ``execute_async_v3`` runs on a
``torch.cuda.Stream``'s ``cuda_stream`` handle (the name-based I/O API of TensorRT 10/11:
https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/ExecutionContext.html).

Before deserializing, the runner compares the TensorRT version and GPU recorded in the
variant's sidecar with this machine and refuses an engine built elsewhere (the comparison is
:func:`deploykit.tensorrt.compatibility.ensure_engine_compatible`, tested without a GPU). The lines that
call ``tensorrt`` are checked against each supported release's real bindings
(tests/test_trt_bindings.py) and the staging around them runs on a CPU stand-in
(tests/test_trt_timing.py); what they do on a GPU has not been run by their authors.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.artifacts import SIDECAR, Artifact
from deploykit.errors import DeployKitError, UsageError
from deploykit.runtimes.base import Runner, TensorSpec, memory_total
from deploykit.tensorrt.compatibility import (
    EngineTarget,
    ensure_engine_compatible,
    gpu_info,
    target_from_sidecar,
)
from deploykit.tensorrt.loading import (
    create_runtime,
    load_tensorrt,
    require_cuda,
    tensorrt_logger,
    trt_dtype_name,
)
from deploykit.tensorrt.profiles import BatchProfile
from deploykit.tensorrt.report import LayerTimes


def _sidecar_for(path: Path, artifact: Artifact | None) -> dict[str, Any]:
    """The variant's sidecar facts (``<variant>/deploykit.json`` beside ``1/model.plan``)."""
    if artifact is not None:
        return artifact.to_sidecar()
    candidate = path.parent.parent / SIDECAR
    if candidate.is_file():
        try:
            return json.loads(candidate.read_text())
        except json.JSONDecodeError:
            return {}
    return {}


def engine_math(meta: dict[str, Any]) -> str | None:
    """The arithmetic an engine's "% of peak" compares against, from its sidecar.

    An FP32 engine may run on TF32 tensor cores unless it was built with ``--no-tf32``
    (TensorRT's builder enables TF32 by default, so sidecars from before the ``tf32`` field
    count as TF32 too).
    """
    if meta.get("math"):
        return str(meta["math"])
    precision = meta.get("precision")
    if precision == "fp32":
        return "tf32" if (meta.get("build") or {}).get("tf32", True) else "fp32"
    return precision


def _make_profiler(trt, sink: LayerTimes):
    """An IProfiler forwarding ``report_layer_time`` to ``sink`` (subclasses must init the base)."""

    class LayerProfiler(trt.IProfiler):
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)

        def report_layer_time(self, layer_name, ms):
            sink.record(str(layer_name), float(ms))

    return LayerProfiler()


class TensorRTRunner(Runner):
    """A TensorRT engine on one CUDA device.

    ``per_layer=True`` attaches an ``IProfiler``; :meth:`layer_times` then returns the mean
    time per engine layer over the inferences run so far (``deploykit bench --per-layer``).
    Profiling adds a synchronization per layer: do not time end-to-end latency with it on.

    Timing (:meth:`staged_io`, what ``bench`` uses) is trtexec's: the I/O buffers are
    allocated and their addresses set once, and ``execute_async_v3`` runs on the runner's
    stream, replayed from a CUDA graph when ``cuda_graphs=True``; :attr:`memory` holds the
    weights / activations / I/O bytes as free-memory drops, as the torch runner does.
    """

    backend = "tensorrt"
    kind = "cuda"  # bench stages its I/O and times it with CUDA events (measure_phases)

    def __init__(
        self,
        source: str | os.PathLike | Artifact,
        device: int = 0,
        per_layer: bool = False,
        check_compatibility: bool = True,
        cuda_graphs: bool = False,
        name: str | None = None,
    ):
        self.artifact = source if isinstance(source, Artifact) else None
        path = source.path if isinstance(source, Artifact) else Path(source)
        super().__init__(name or f"tensorrt:{path.parent.parent.name or path.name}")
        if isinstance(device, bool) or not isinstance(device, int) or device < 0:
            raise UsageError(f"invalid CUDA device {device!r}", hint="use a device index such as 0")
        self.path = path
        self.device = device
        self.per_layer = per_layer
        self.check_compatibility = check_compatibility
        self.cuda_graphs = cuda_graphs
        self._layer_times = LayerTimes()
        self._engine = self._context = self._stream = self._profiler = self._graph = None
        self._runtime = None
        self._graph_error: str | None = None
        self._context_bytes: int | None = None
        self.meta: dict[str, Any] = {}
        self.memory: dict[str, Any] = {}

    # ---- life cycle ----------------------------------------------------------------------
    def _activate_impl(self) -> None:
        if not self.path.is_file():
            raise UsageError(f"no TensorRT engine at {self.path}", hint="make it with `deploykit build NAME`")
        trt = load_tensorrt("running TensorRT engines")
        require_cuda(self.device)  # torch owns the CUDA context: checked before it is imported
        import torch

        self.meta = _sidecar_for(self.path, self.artifact)
        here = EngineTarget(str(trt.__version__), gpu_info(self.device))
        built = target_from_sidecar(self.meta)
        if self.check_compatibility and built is not None:
            model, precision = self.meta.get("model", "NAME"), self.meta.get("precision", "fp32")
            ensure_engine_compatible(
                self.meta.get("variant", self.path.parent.parent.name),
                built,
                here,
                rebuild=f"deploykit build {model} --precision {precision}",
            )
        self._trt = trt
        self._here = here
        with torch.cuda.device(self.device):
            self._load_engine(trt)
            if self.per_layer:
                self._profiler = _make_profiler(trt, self._layer_times)
                self._context.profiler = self._profiler
            self._stream = torch.cuda.Stream(device=self.device)
        self._stream_handle = self._stream.cuda_stream
        self._torch_device = torch.device("cuda", self.device)

    def _load_engine(self, trt) -> None:
        """Runtime, engine and execution context, with the device memory each one takes."""
        from deploykit.runtimes.torch_staging import MemoryDelta, device_name, free_device_bytes

        gpu = device_name(self.device)
        free_device_bytes(gpu)  # the CUDA context exists before anything is measured
        self._runtime = create_runtime(trt, tensorrt_logger(trt))  # kept alive: the engine must not outlive its runtime
        with MemoryDelta(gpu) as weights:
            self._engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if self._engine is None:
            raise DeployKitError(
                f"TensorRT {trt.__version__} cannot load {self.path}",
                hint="it was probably built by another TensorRT release or for another GPU: rebuild it here",
            )
        self._find_io(trt)
        with MemoryDelta(gpu) as scratch:
            self._context = self._engine.create_execution_context()
        if self._context is None:
            raise DeployKitError(f"TensorRT could not create an execution context for {self.path} (out of GPU memory?)")
        self._context_bytes = scratch.bytes
        self.memory = {
            "weights_bytes": weights.bytes,
            "activations_bytes": scratch.bytes,
            "io_bytes": None,
            # the engine's own figure for one context's scratch, beside the measured one
            "engine_scratch_bytes": int(self._engine.device_memory_size_v2),
            "method": "torch.cuda.mem_get_info deltas",
        }

    def _find_io(self, trt) -> None:
        import torch

        engine = self._engine
        inputs, outputs = [], []
        for i in range(engine.num_io_tensors):
            tensor = engine.get_tensor_name(i)
            (inputs if engine.get_tensor_mode(tensor) == trt.TensorIOMode.INPUT else outputs).append(tensor)
        if len(inputs) != 1 or len(outputs) != 1:
            raise DeployKitError(
                f"{self.path} has {len(inputs)} inputs and {len(outputs)} outputs; deploykit runs classifiers with one of each"
            )
        self._input, self._output = inputs[0], outputs[0]
        self._input_dtype = getattr(torch, trt_dtype_name(engine.get_tensor_dtype(self._input)))
        self._output_dtype = getattr(torch, trt_dtype_name(engine.get_tensor_dtype(self._output)))
        self._input_shape = tuple(engine.get_tensor_shape(self._input))  # -1 marks the batch
        # profile 0 is the only one deploykit builds: (min, opt, max) shapes
        low, opt, high = engine.get_tensor_profile_shape(self._input, 0)
        self._profile = BatchProfile(int(low[0]), int(opt[0]), int(high[0]))

    def _deactivate_impl(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()
        # graph and context before engine before runtime: each holds on to the next
        self._graph = None
        self._context = self._profiler = None
        self._engine = None
        self._runtime = None
        self._stream = None

    # ---- inference -----------------------------------------------------------------------
    @property
    def stream(self) -> Any:
        """The CUDA stream the engine runs on (StagedIO queues copies and events there)."""
        return self._stream

    def input_spec(self) -> TensorSpec:
        if self._engine is None:
            self.activate()
        return TensorSpec(self._input, (-1, *self._input_shape[1:]), "float32")

    def _on_device(self) -> contextlib.ExitStack:
        """This runner's device and stream as the current ones (nothing without a stream)."""
        stack = contextlib.ExitStack()
        if self._stream is not None:
            import torch

            stack.enter_context(torch.cuda.device(self.device))
            stack.enter_context(torch.cuda.stream(self._stream))
        return stack

    def to_device(self, batch: np.ndarray) -> Any:
        """A device buffer for the engine's input, holding ``batch`` (allocated on our stream)."""
        import torch

        n = int(batch.shape[0])
        if not self._profile.contains(n):
            raise DeployKitError(
                f"batch size {n} is outside the engine's profile {self._profile.min}..{self._profile.max}",
                hint=f"rebuild with --max-batch {max(n, self._profile.max)} or send smaller batches",
            )
        with self._on_device():
            x = torch.empty(tuple(batch.shape), dtype=self._input_dtype, device=self._torch_device)
            x.copy_(torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32)))
        return x

    def _bind(self, x: Any) -> Any:
        """Set the input shape and both tensor addresses; returns the output buffer it allocated."""
        import torch

        if not self._context.set_input_shape(self._input, tuple(x.shape)):
            raise DeployKitError(f"TensorRT refused input shape {tuple(x.shape)} for {self._input!r}")
        out_shape = tuple(self._context.get_tensor_shape(self._output))
        with self._on_device():
            out = torch.empty(out_shape, dtype=self._output_dtype, device=x.device)
        self._context.set_tensor_address(self._input, x.data_ptr())
        self._context.set_tensor_address(self._output, out.data_ptr())
        return out

    def _enqueue(self) -> None:
        if not self._context.execute_async_v3(self._stream_handle):
            raise DeployKitError(f"TensorRT failed to run {self.name} (execute_async_v3 returned False)")

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        with self._on_device():
            x = self.to_device(batch)
            out = self._bind(x)
            self._enqueue()
            result = out.float().cpu()  # waits for the stream; x and out stay alive until here
        return result.numpy()

    def compute_fn(self, x: Any) -> tuple[Callable[[], Any], Any]:
        """A zero-argument ``execute_async_v3`` (or CUDA-graph replay) on ``x``, bound once,
        returning the output buffer; and ``x``, the buffer to write the next input to."""
        out = self._bind(x)
        graph = self._capture_graph() if self.cuda_graphs else None

        def run() -> Any:
            with self._on_device():
                if graph is not None:
                    graph.replay()
                else:
                    self._enqueue()
            return out

        return run, x

    def _capture_graph(self) -> Any:
        """One enqueue captured into a CUDA graph (None, and the reason kept, if capture fails)."""
        import torch

        with self._on_device():
            self._enqueue()  # TensorRT: one enqueue before capture, so deferred shape work is done
        self._stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.device(self.device), torch.cuda.graph(graph, stream=self._stream):
                self._enqueue()
        except RuntimeError as exc:  # some engines cannot be captured: trtexec falls back too
            self._graph_error = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
            return None
        self._graph = graph
        return graph

    def staged_io(self, batch: np.ndarray) -> Any:
        """Buffers for ``batch``'s shape allocated and bound once (pinned host memory on CUDA)
        and the phases h2d / compute / d2h (:class:`~deploykit.runtimes.torch_staging.StagedIO`);
        records the I/O bytes, and adds what the first run takes to the activations."""
        if not self.is_active:
            raise DeployKitError(f"runner {self.name} is not active", hint="use it in a `with` block")
        from deploykit.runtimes.torch_staging import StagedIO

        if self._stream is not None:
            import torch

            torch.cuda.empty_cache()  # cached blocks would hide the buffers' allocation
        staged = StagedIO(self, batch)
        first_run = staged.memory["activations_bytes"]
        self.memory["io_bytes"] = staged.memory["io_bytes"]
        if self._context_bytes is not None and first_run is not None:
            self.memory["activations_bytes"] = self._context_bytes + first_run
        return staged

    def synchronize(self) -> None:
        if self._stream is not None:
            self._stream.synchronize()

    # ---- description ---------------------------------------------------------------------
    def layer_times(self) -> list[dict[str, Any]]:
        """Per-layer times recorded by the IProfiler (empty unless ``per_layer=True``)."""
        if not self.per_layer:
            raise UsageError("per-layer times need TensorRTRunner(..., per_layer=True)")
        return self._layer_times.summary()

    def reset_layer_times(self) -> None:
        """Forget recorded layer times (call after warm-up)."""
        self._layer_times.reset()

    def _profile_impl(self, batch: np.ndarray, repeats: int) -> tuple[dict[str, float], dict[str, str]]:
        """The engine's IProfiler on a second runner with ``per_layer=True`` (the profiler
        synchronizes per layer: it must not sit on the timed context)."""
        source = self.artifact or self.path
        with type(self)(source, device=self.device, per_layer=True, check_compatibility=False) as profiled:
            profiled.infer(batch)  # first call: lazy allocations, not part of the profile
            profiled.reset_layer_times()
            for _ in range(repeats):
                profiled.infer(batch)
            rows = profiled.layer_times()
        return {row["layer"]: float(row["mean_ms"]) for row in rows}, {}

    def device_memory_bytes(self) -> int | None:
        """Weights + activations + I/O once all three are measured (:meth:`staged_io`), else None."""
        return memory_total(self.memory)

    def device_memory(self) -> dict[str, Any] | None:
        """The separate device-memory fields: weights, activations/scratch, I/O, the engine's figure."""
        return dict(self.memory) if self.memory else None

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {
            "backend": self.backend,
            "device": self.device,
            "per_layer": self.per_layer,
            "cuda_graphs": self.cuda_graphs,
            "engine": str(self.path),
        }
        if self._graph_error:
            info["cuda_graph_error"] = self._graph_error  # timed without a graph, as trtexec does
        if self._engine is not None:
            info.update(
                {
                    "tensorrt": self._here.tensorrt_version,
                    "gpu": self._here.gpu.name,
                    "compute_capability": self._here.gpu.compute_capability,
                    "profile": {"min": self._profile.min, "opt": self._profile.opt, "max": self._profile.max},
                    "precision": self.meta.get("precision"),
                    "math": engine_math(self.meta),
                }
            )
        return info
