"""GPU timing as trtexec does it, for the torch and TensorRT runners: buffers allocated once,
phases timed apart.

:class:`StagedIO` holds, for one batch shape, a pinned host input and output, the device
input the model reads and the output it writes (the CUDA graph's static buffers when the
runner replays graphs). Its phases are ``h2d`` (pinned host -> device input), ``compute``
(the forward, or the graph replay, on device-resident input) and ``d2h`` (output -> pinned
host); ``end_to_end`` runs all three. On CUDA :meth:`StagedIO.timer` times a call with CUDA
events on the current stream; on a CPU it returns None (the host clock), so the same code
runs, and is tested, without a GPU. A runner with its own CUDA stream (TensorRT's) exposes it as
``stream``: copies and events then go on that stream, where its compute is queued.

What a runner offers StagedIO: ``device`` (``"cuda:0"`` or an index), ``to_device(batch)`` (the
input buffer, allocated), ``compute_fn(x)`` (a zero-argument compute returning the output
buffer, and the buffer it reads) and ``synchronize()``.

Device memory is measured the same way for every part, as drops in the device's free memory
(``torch.cuda.mem_get_info``) across loading the weights, allocating the I/O buffers and the
first forward (activations, cuDNN workspace, a captured graph's pool). The caching
allocator's block rounding is included: these are what the process takes from the GPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch


def free_device_bytes(device: str) -> int | None:
    """Free memory of a CUDA device now (after its queued work), or None on a CPU."""
    if not device.startswith("cuda"):
        return None
    torch.cuda.synchronize(device)
    return int(torch.cuda.mem_get_info(torch.device(device))[0])


class MemoryDelta:
    """``with MemoryDelta(device) as d: ...`` then ``d.bytes``: the drop in free device memory."""

    def __init__(self, device: str):
        self.device = device
        self.bytes: int | None = None

    def __enter__(self) -> MemoryDelta:
        self._before = free_device_bytes(self.device)
        return self

    def __exit__(self, *exc: Any) -> None:
        after = free_device_bytes(self.device)
        if self._before is not None and after is not None:
            self.bytes = max(0, self._before - after)


def device_name(device: str | int) -> str:
    """``"cuda:1"`` for a runner's device given as a string or as a CUDA index."""
    return device if isinstance(device, str) else f"cuda:{device}"


class StagedIO:
    """One batch shape's buffers, allocated once, and the phases timed on them (module docstring)."""

    def __init__(self, runner: Any, batch: np.ndarray):
        self.runner = runner
        self.stream = getattr(runner, "stream", None)  # None: the current stream
        device = device_name(runner.device)
        with MemoryDelta(device) as io:
            x = runner.to_device(batch)
        self.cuda = bool(x.is_cuda)
        with MemoryDelta(device) as scratch:
            self._compute, self.device_in = runner.compute_fn(x)
            self._out = self._compute()  # first call: lazy allocations, cuDNN autotuning, graph capture
            runner.synchronize()
        out_bytes = self._out.numel() * self._out.element_size()
        host = torch.from_numpy(np.ascontiguousarray(batch, dtype=np.float32))
        self.host_in = host.pin_memory() if self.cuda else host.clone()
        self.host_out = torch.empty(tuple(self._out.shape), dtype=self._out.dtype, pin_memory=self.cuda)
        self.memory = {
            "io_bytes": (io.bytes + out_bytes) if io.bytes is not None else None,
            "activations_bytes": max(0, scratch.bytes - out_bytes) if scratch.bytes is not None else None,
        }

    @contextlib.contextmanager
    def _on_stream(self) -> Iterator[None]:
        if self.stream is None:
            yield
        else:
            with torch.cuda.stream(self.stream):
                yield

    def h2d(self) -> None:
        with self._on_stream():
            self.device_in.copy_(self.host_in, non_blocking=self.cuda)

    def compute(self) -> None:
        with self._on_stream():
            self._out = self._compute()

    def d2h(self) -> None:
        with self._on_stream():
            self.host_out.copy_(self._out, non_blocking=self.cuda)

    def end_to_end(self) -> None:
        self.h2d()
        self.compute()
        self.d2h()

    def synchronize(self) -> None:
        self.runner.synchronize()

    def timer(self) -> Callable[[Callable[[], Any]], float] | None:
        """Seconds of one call measured with CUDA events on the runner's stream (the current
        one unless the runner has its own); None on a CPU."""
        if not self.cuda:
            return None
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)

        def time_one(fn: Callable[[], Any]) -> float:
            start.record(self.stream)
            fn()
            end.record(self.stream)
            end.synchronize()
            return start.elapsed_time(end) / 1000.0

        return time_one

    def output(self) -> np.ndarray:
        """The last output, as float32 numpy (after :meth:`d2h` and a synchronize)."""
        self.synchronize()
        return self.host_out.float().numpy()
