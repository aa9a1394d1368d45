"""This CPU's real ceilings, measured in-process: an SGEMM rate and a memory copy bandwidth.

A clock-times-ISA estimate of a CPU's peak is a guess (in a VM ``/proc/cpuinfo`` shows the base
clock, so measured rows read over 100 %). These two numbers are measured instead, in the process
and at the thread count of the run they are compared with:

- **SGEMM**: a square float32 matrix product ``C = A @ B`` (``2 n^3`` FLOP), best of a few,
  run by both BLAS libraries at hand (torch's MKL, numpy's OpenBLAS) and the faster kept.
- **Copy bandwidth**: ``dst.copy_(src)`` of a float32 array larger than the caches; the
  bytes counted are read + written (``2 x nbytes``), as STREAM's copy counts them. Best of a few.

Why both libraries for SGEMM: a ceiling must not be beaten by the runtimes it bounds, and no
single BLAS is fastest everywhere. torch's MKL is the GEMM its runner reaches and
``torch.set_num_threads`` sets its pool in-process, but on AMD CPUs MKL may take its AVX2
path where numpy's OpenBLAS picks AVX-512 kernels (on this AMD EPYC VM, n = 1024: 51 vs 44
GFLOP/s on one core; n = 384: 104 vs 102), and ONNX Runtime's MLAS and OpenVINO bring their
own kernels; the faster of the two BLAS is the better stand-in for them. OpenBLAS's pool is
capped through threadpoolctl when it is installed (it comes with scikit-learn); without it
only torch is measured. The copy runs on torch: ``copy_`` splits a large copy over the same
intra-op pool, so it honours the thread count too. Thread counts are restored afterwards.

On a shared VM the ceilings vary run to run (noisy neighbours, turbo, other work on the host,
even the host itself: the same VM name has come up with and without AVX-512): measure them in
the same run as the figures they bound, never take them from a file.
"""

from __future__ import annotations

import importlib.util
import math
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Any

# Short kernels, many repeats, best kept. On a shared VM (other work running, CPUs
# time-sliced) a kernel longer than a scheduler slice is always preempted somewhere, so a
# 1024^3 SGEMM (20-50 ms) read 62-69 GFLOP/s on one core where 384^3 (about 1 ms) read 104 and
# a 3x3 convolution of resnet18 ran alone at 109: the ceiling would be beaten by the very runs
# it bounds. n = 384 reaches the GEMM plateau (256..512 read the same on an idle core).
SGEMM_N = 384
REPEATS = 30
# 16 Mi float32 = 64 MiB per array: twice the largest L3 seen here (32 MiB), so the copy
# streams DRAM (64 and 128 MiB read the same), and one copy stays under ~10 ms.
COPY_ELEMENTS = 16 * 1024 * 1024
COPY_REPEATS = 10


@dataclass(frozen=True)
class CpuCeilings:
    """Measured ceilings of this CPU at ``threads`` threads (best of the repeats)."""

    sgemm_gflops: float  # float32 GEMM rate, GFLOP/s (2 FLOP per multiply-accumulate)
    copy_gbps: float  # copy bandwidth, GB/s (1e9 bytes; read + written)
    threads: int
    sizes: dict[str, int]  # {"sgemm_n": n, "copy_bytes": bytes of one array}
    seconds: float  # wall time the measurement took
    sgemm_by_library: dict[str, float] = field(default_factory=dict)  # e.g. {"torch": .., "numpy": ..}

    @property
    def sgemm_library(self) -> str:
        """The library whose SGEMM set the ceiling."""
        if not self.sgemm_by_library:
            return "unknown"
        return max(self.sgemm_by_library, key=self.sgemm_by_library.__getitem__)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "sgemm_library": self.sgemm_library}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CpuCeilings:
        return cls(
            sgemm_gflops=float(data["sgemm_gflops"]),
            copy_gbps=float(data["copy_gbps"]),
            threads=int(data["threads"]),
            sizes=dict(data.get("sizes") or {}),
            seconds=float(data.get("seconds", 0.0)),
            sgemm_by_library=dict(data.get("sgemm_by_library") or {}),
        )


def default_threads() -> int:
    """All cores this process may run on (the benchmark's default thread count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _best_seconds(run, repeats: int) -> float:
    run()  # warm-up: page faults, thread-pool start, BLAS dispatch
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return best


def _sgemm_numpy(n: int, threads: int, repeats: int) -> float | None:
    """OpenBLAS SGEMM GFLOP/s at ``threads``; None without threadpoolctl (no thread control)."""
    if importlib.util.find_spec("threadpoolctl") is None:
        return None
    import numpy as np
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.random((n, n), dtype=np.float32)
    b = rng.random((n, n), dtype=np.float32)
    out = np.empty((n, n), dtype=np.float32)
    with threadpool_limits(limits=threads, user_api="blas"):
        seconds = _best_seconds(lambda: np.matmul(a, b, out=out), repeats)
    return 2.0 * n**3 / seconds / 1e9


def _sgemm_torch(n: int, repeats: int) -> float:
    """torch (MKL) SGEMM GFLOP/s at torch's current thread count."""
    import torch

    a = torch.rand(n, n, dtype=torch.float32)
    b = torch.rand(n, n, dtype=torch.float32)
    out = torch.empty(n, n, dtype=torch.float32)
    with torch.inference_mode():
        seconds = _best_seconds(lambda: torch.mm(a, b, out=out), repeats)
    return 2.0 * n**3 / seconds / 1e9


def _copy_torch(elements: int, repeats: int) -> float:
    """Copy GB/s (read + written) at torch's current thread count."""
    import torch

    src = torch.ones(elements, dtype=torch.float32)
    dst = torch.empty_like(src)
    with torch.inference_mode():
        seconds = _best_seconds(lambda: dst.copy_(src), repeats)
    return 2.0 * elements * 4 / seconds / 1e9


def measure_cpu_ceilings(
    threads: int | None = None,
    *,
    sgemm_n: int = SGEMM_N,
    copy_elements: int = COPY_ELEMENTS,
    repeats: int = REPEATS,
) -> CpuCeilings:
    """Measure SGEMM GFLOP/s and copy GB/s at ``threads`` (default: all cores), best of ``repeats``.

    The SGEMM ceiling is the faster of torch's and numpy's; thread counts are restored after.
    """
    import torch

    threads = int(threads) if threads else default_threads()
    if threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    previous = torch.get_num_threads()
    started = time.perf_counter()
    torch.set_num_threads(threads)
    try:
        torch_gflops = _sgemm_torch(sgemm_n, repeats)
        copy_gbps = _copy_torch(copy_elements, min(repeats, COPY_REPEATS))
    finally:
        torch.set_num_threads(previous)
    by_library = {"torch": torch_gflops}
    numpy_gflops = _sgemm_numpy(sgemm_n, threads, repeats)
    if numpy_gflops is not None:
        by_library["numpy"] = numpy_gflops
    return CpuCeilings(
        sgemm_gflops=max(by_library.values()),
        copy_gbps=copy_gbps,
        threads=threads,
        sizes={"sgemm_n": sgemm_n, "copy_bytes": copy_elements * 4},
        seconds=time.perf_counter() - started,
        sgemm_by_library=by_library,
    )


def measure_cpu_gemm(kind: str, threads: int | None = None, *, n: int = SGEMM_N,
                     repeats: int = REPEATS) -> float | None:
    """A low-precision GEMM ceiling in GOP/s: ``"int8"`` (int8 x int8 -> int32, ``torch._int_mm``,
    oneDNN's VNNI/AVX2 kernels) or ``"bf16"`` (``torch.mm`` in bfloat16). None where this torch
    build or CPU has no such kernel. Same thread handling as :func:`measure_cpu_ceilings`.
    """
    import torch

    threads = int(threads) if threads else default_threads()
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        if kind == "int8":
            a = torch.randint(-128, 127, (n, n), dtype=torch.int8)
            b = torch.randint(-128, 127, (n, n), dtype=torch.int8)
            run = lambda: torch._int_mm(a, b)  # noqa: E731
        elif kind == "bf16":
            a = torch.rand(n, n, dtype=torch.bfloat16)
            b = torch.rand(n, n, dtype=torch.bfloat16)
            run = lambda: torch.mm(a, b)  # noqa: E731
        else:
            raise ValueError(f"unknown GEMM kind {kind!r} (int8 or bf16)")
        with torch.inference_mode():
            seconds = _best_seconds(run, repeats)
    except (RuntimeError, AttributeError, NotImplementedError):
        return None
    finally:
        torch.set_num_threads(previous)
    return 2.0 * n**3 / seconds / 1e9
