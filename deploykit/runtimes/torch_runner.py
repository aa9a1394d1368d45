"""PyTorch eager (optionally compiled or CUDA-graphed): the reference every user has.

Only torch (and the deploykit zoo for model names) is needed, so the GPU check runs this
runner on hosts with nothing but PyTorch installed.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from deploykit.artifacts import Artifact
from deploykit.errors import DeployKitError, UsageError
from deploykit.runtimes.base import Runner, TensorSpec, memory_total
from deploykit.runtimes.torch_staging import MemoryDelta, StagedIO, free_device_bytes


def _device_kind(device: str) -> str:
    from deploykit.runtimes import get_backend

    kind = device.split(":")[0]
    if kind not in get_backend("torch").device_kinds:
        raise UsageError(f"unknown device {device!r} for the torch backend", hint="use cpu or cuda")
    return kind


def torch_supports(device: str, precision: str) -> str | None:
    """None when the torch backend runs ``precision`` on ``device``, else why not (its BACKENDS row)."""
    from deploykit.runtimes import get_backend

    _device_kind(device)
    return get_backend("torch").support_reason(device, precision)


class TorchRunner(Runner):
    """A PyTorch model in eval mode on CPU or CUDA.

    ``source`` is an ``nn.Module`` (copied: the caller's module is never modified) or a zoo
    name (built with ``num_classes`` and, if given, loaded from ``weights``: a state dict,
    read with ``weights_only=True``). An ``Artifact`` is accepted for its model name only
    (its ONNX file is not what torch runs).

    ``precision`` fp16 (CUDA only) casts weights and inputs to half; outputs come back
    float32. ``channels_last`` converts weights and inputs to NHWC memory format.
    ``cuda_graphs`` captures one CUDA graph per input shape and replays it (static input
    buffers: the input is copied into them). ``compile`` wraps the model in
    ``torch.compile``. On CPU, ``threads`` sets ``torch.set_num_threads`` (process-wide).
    ``tf32`` (CUDA, FP32): True lets convolutions and matmuls use TF32 tensor cores, False
    forbids it (strict FP32); None keeps PyTorch's defaults (TF32 convolutions, FP32 matmuls).
    These are process-wide switches.

    On CUDA, :meth:`staged_io` gives buffers allocated once and the phases timed apart, and
    :attr:`memory` the weights / activations / I/O bytes as free-memory drops.
    """

    backend = "torch"

    def __init__(
        self,
        source: nn.Module | str | Artifact,
        device: str = "cpu",
        precision: str = "fp32",
        channels_last: bool = False,
        cuda_graphs: bool = False,
        compile: bool = False,
        weights: str | os.PathLike | None = None,
        num_classes: int = 1000,
        input_size: int | None = None,
        threads: int | None = None,
        tf32: bool | None = None,
        name: str | None = None,
        **model_config: Any,
    ):
        kind = _device_kind(device)
        if precision not in ("fp32", "fp16", "int8"):
            raise UsageError(f"unknown precision {precision!r}", hint="choose from fp32, fp16")
        reason = torch_supports(device, precision)
        if reason:
            raise UsageError(reason)
        if cuda_graphs and kind != "cuda":
            raise UsageError("CUDA graphs need --device cuda")
        if isinstance(source, Artifact):
            source = source.model
        self.model_name = source if isinstance(source, str) else type(source).__name__
        super().__init__(name or f"torch:{self.model_name}")
        self.source = source
        self.device = device
        self.kind = kind
        self.precision = precision
        self.channels_last = channels_last
        self.cuda_graphs = cuda_graphs
        self.compile = compile
        self.weights = Path(weights) if weights else None
        self.num_classes = num_classes
        self.input_size = input_size
        self.threads = threads
        self.tf32 = tf32
        self.model_config = model_config
        self.memory: dict[str, Any] = {}
        self.model: nn.Module | None = None
        self._forward: Callable[[torch.Tensor], torch.Tensor] | None = None
        self._graphs: dict[tuple[int, ...], tuple[Any, torch.Tensor, torch.Tensor]] = {}

    # ---- life cycle ---------------------------------------------------------------------
    def _build(self) -> nn.Module:
        if isinstance(self.source, nn.Module):
            # A copy: eval(), dtype, device and memory-format changes must not reach the
            # caller's module (which may be trained further or used as a reference).
            model = copy.deepcopy(self.source)
        else:
            from deploykit.zoo import get_card, get_model

            model = get_model(self.source, num_classes=self.num_classes, **self.model_config)
            if self.input_size is None:
                self.input_size = get_card(self.source).input_size
        if self.weights is not None:
            if not self.weights.is_file():
                raise UsageError(f"no weights file at {self.weights}")
            try:
                state = torch.load(self.weights, map_location="cpu", weights_only=True)
            except Exception as exc:  # pickle errors, zip errors: all mean "not a state dict"
                raise DeployKitError(
                    f"cannot read weights {self.weights}: {str(exc).splitlines()[0][:200]}",
                    hint="pass a state dict saved with torch.save(model.state_dict(), path)",
                ) from exc
            if isinstance(state, dict) and "state_dict" in state:
                state = state["state_dict"]
            try:
                model.load_state_dict(state)
            except RuntimeError as exc:
                raise DeployKitError(
                    f"weights {self.weights} do not fit {self.model_name}: {str(exc).splitlines()[0][:200]}",
                    hint="check the model name and num_classes",
                ) from exc
        return model

    def _activate_impl(self) -> None:
        if self.kind == "cuda" and not torch.cuda.is_available():
            raise DeployKitError(
                "no CUDA GPU is visible to PyTorch (torch.cuda.is_available() is False)",
                hint="run on a GPU host or use --device cpu",
            )
        if self.threads and self.kind == "cpu":
            torch.set_num_threads(self.threads)
        if self.tf32 is not None and self.kind == "cuda":
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = bool(self.tf32)
        model = self._build().eval()
        dtype = torch.float16 if self.precision == "fp16" else torch.float32
        free_device_bytes(self.device)  # creates the CUDA context before the weights are measured
        with MemoryDelta(self.device) as weights:
            model = model.to(device=self.device, dtype=dtype)
            if self.channels_last:
                model = model.to(memory_format=torch.channels_last)
        self.memory = {"weights_bytes": weights.bytes, "method": "torch.cuda.mem_get_info deltas"}
        self.model = model
        self._dtype = dtype
        self._forward = torch.compile(model) if self.compile else model
        self._graphs = {}
        if self.kind == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)

    def _deactivate_impl(self) -> None:
        self._graphs = {}
        self._forward = None
        self.model = None
        if self.kind == "cuda":
            torch.cuda.empty_cache()

    # ---- inference ----------------------------------------------------------------------
    def input_spec(self) -> TensorSpec:
        if self.input_size is None and isinstance(self.source, str):
            from deploykit.zoo import get_card

            self.input_size = get_card(self.source).input_size
        size = self.input_size or -1
        return TensorSpec("input", (-1, 3, size, size), "float32")

    def to_device(self, batch: np.ndarray) -> torch.Tensor:
        """A batch as the model's input tensor: on the device, in its dtype and memory format."""
        x = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        x = x.to(self.device, non_blocking=False).to(self._dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x

    def run_tensor(self, x: torch.Tensor) -> torch.Tensor:
        """Forward one device tensor (as :meth:`to_device` makes it); the result stays on the device."""
        if self.cuda_graphs:
            return self._graph_replay(x)
        with torch.inference_mode():
            return self._forward(x)

    def _graph_replay(self, x: torch.Tensor) -> torch.Tensor:
        key = tuple(x.shape)
        if key not in self._graphs:
            static_in = x.clone()
            # Warm up on a side stream first: capture must not see lazy initialisation
            # (cuDNN autotuning, allocator growth), as the CUDA-graphs docs require.
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream), torch.inference_mode():
                for _ in range(3):
                    self._forward(static_in)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph), torch.inference_mode():
                static_out = self._forward(static_in)
            self._graphs[key] = (graph, static_in, static_out)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out

    def release_graphs(self) -> None:
        """Drop captured CUDA graphs (and their static buffers), e.g. before a new batch size."""
        self._graphs = {}

    def _infer_impl(self, batch: np.ndarray) -> np.ndarray:
        out = self.run_tensor(self.to_device(batch))
        return out.float().cpu().numpy()

    def compute_fn(self, x: torch.Tensor) -> tuple[Callable[[], torch.Tensor], torch.Tensor]:
        """A zero-argument forward on device-resident ``x``, and the buffer it reads (write the
        next input there). With CUDA graphs: the graph's replay and its static input."""
        if self.cuda_graphs:
            self._graph_replay(x)
            graph, static_in, static_out = self._graphs[tuple(x.shape)]

            def replay() -> torch.Tensor:
                graph.replay()
                return static_out

            return replay, static_in
        return (lambda: self.run_tensor(x)), x

    def benchmark_fn(self, batch: np.ndarray) -> Callable[[], Any]:
        """A zero-argument call that runs one inference on ``batch`` already on the device.

        On CUDA the input is staged once and the output stays on the GPU, so the timing is
        the model's, not PCIe's (as in MLPerf's offline scenario); :meth:`staged_io` times the
        copies apart. On CPU it is the same work as :meth:`infer` without numpy copies.
        """
        if not self.is_active:
            raise DeployKitError(f"runner {self.name} is not active", hint="use it in a `with` block")
        fn, _ = self.compute_fn(self.to_device(batch))
        return fn

    def staged_io(self, batch: np.ndarray) -> StagedIO:
        """Buffers for ``batch``'s shape allocated once (pinned host memory on CUDA) and the
        phases h2d / compute / d2h; records their device memory in :attr:`memory`."""
        if not self.is_active:
            raise DeployKitError(f"runner {self.name} is not active", hint="use it in a `with` block")
        staged = StagedIO(self, batch)
        self.memory.update(staged.memory)
        return staged

    def _profile_impl(self, batch: np.ndarray, repeats: int) -> tuple[dict[str, float], dict[str, str]]:
        """Forward hooks on every leaf module, synchronizing around each (containers would
        count their children twice)."""
        x = self.to_device(batch)
        times: dict[str, float] = {}
        ops: dict[str, str] = {}
        starts: dict[str, float] = {}

        def pre(name: str) -> Callable[..., None]:
            def hook(*_: Any) -> None:
                self.synchronize()
                starts[name] = time.perf_counter()

            return hook

        def post(name: str) -> Callable[..., None]:
            def hook(*_: Any) -> None:
                self.synchronize()
                times[name] = times.get(name, 0.0) + (time.perf_counter() - starts[name]) * 1000.0

            return hook

        handles = []
        for name, module in self.model.named_modules():
            if next(module.children(), None) is None:
                ops[name] = type(module).__name__
                handles += [module.register_forward_pre_hook(pre(name)), module.register_forward_hook(post(name))]
        try:
            with torch.inference_mode():
                for _ in range(repeats):
                    self.model(x)
        finally:
            for handle in handles:
                handle.remove()
        return {k: v / repeats for k, v in times.items()}, ops

    def synchronize(self) -> None:
        if self.kind == "cuda":
            torch.cuda.synchronize(self.device)

    def device_memory_bytes(self) -> int | None:
        """Weights + activations + I/O once all three are measured (:meth:`staged_io`), else None:
        the same measure as the TensorRT runner's, never the allocator's peak."""
        return memory_total(self.memory) if self.kind == "cuda" else None

    def device_memory(self) -> dict[str, Any] | None:
        """The separate device-memory fields (CUDA only): weights, activations/scratch, I/O."""
        return dict(self.memory) if self.kind == "cuda" else None

    def describe(self) -> dict[str, Any]:
        math = self.precision
        if self.kind == "cuda" and self.precision == "fp32" and torch.backends.cudnn.allow_tf32:
            # PyTorch lets cuDNN convolutions use TF32 tensor cores by default (tf32=None).
            math = "tf32"
        return {
            "backend": self.backend,
            "device": self.device,
            "precision": self.precision,
            "math": math,
            "channels_last": self.channels_last,
            "cuda_graphs": self.cuda_graphs,
            "compile": self.compile,
            "tf32": self.tf32,
            "threads": torch.get_num_threads() if self.kind == "cpu" else None,
            "torch": torch.__version__,
        }
