"""Timing: warm up, then windows of timed calls until two consecutive windows agree.

On a GPU the runner synchronizes before each clock read. Measuring stops once two
consecutive windows' medians differ by at most ``tolerance`` (5 % by default) of the larger
and at least the requested iterations / seconds were timed, or when ``max_seconds`` is hit
(then ``stable`` is False). Statistics come from the last two windows. Latency is per batch
(ms); throughput is batch / mean latency (images/s).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from deploykit.bench.config import DEFAULT_ITERATIONS, DEFAULT_TOLERANCE
from deploykit.bench.results import LatencyResult
from deploykit.errors import UsageError


def windows_agree(a: float, b: float, tolerance: float) -> bool:
    """True when two window medians differ by at most ``tolerance`` of the larger one."""
    if a <= 0 or b <= 0:
        return a == b
    return abs(a - b) <= tolerance * max(a, b)


def latency_statistics(
    windows: Sequence[Sequence[float]],
    *,
    batch: int,
    stable: bool,
    tolerance: float,
    timed_seconds: float,
    warmup: int,
    includes_host_copies: bool = True,
) -> LatencyResult:
    """A :class:`LatencyResult` from per-window samples in seconds (statistics over the last two)."""
    if not windows or not any(windows):
        raise ValueError("no timed samples")
    samples = np.asarray([s for w in windows[-2:] for s in w], dtype=np.float64) * 1000.0
    p50, p90, p99 = np.percentile(samples, [50, 90, 99])
    return LatencyResult(
        batch=batch,
        p50_ms=float(p50),
        p90_ms=float(p90),
        p99_ms=float(p99),
        mean_ms=float(samples.mean()),
        min_ms=float(samples.min()),
        max_ms=float(samples.max()),
        std_ms=float(samples.std()),
        samples=int(samples.size),
        stable=stable,
        tolerance=tolerance,
        window_medians_ms=tuple(float(np.median(w)) * 1000.0 for w in windows if len(w)),
        timed_seconds=timed_seconds,
        warmup=warmup,
        includes_host_copies=includes_host_copies,
    )


def _check_amount(iterations: int | None, seconds: float | None, warmup: int) -> int | None:
    """The iterations to time (the default when neither amount is given); UsageError for nonsense."""
    if iterations is None and seconds is None:
        iterations = DEFAULT_ITERATIONS
    if iterations is not None and iterations < 1:
        raise UsageError(f"iterations must be at least 1, got {iterations}")
    if seconds is not None and seconds <= 0:
        raise UsageError(f"seconds must be positive, got {seconds}")
    if warmup < 0:
        raise UsageError(f"warmup must be 0 or more, got {warmup}")
    return iterations


Timer = Callable[[Callable[[], Any]], float]  # seconds of one call of its argument


def _timed_window(
    fn: Callable[[], Any],
    timer: Timer,
    clock: Callable[[], float],
    *,
    iterations: int | None,
    seconds: float | None,
    deadline: float,
) -> tuple[list[float], bool]:
    """One window of timed calls; returns the durations and whether the deadline cut it short."""
    window: list[float] = []
    window_start = clock()
    while True:
        window.append(timer(fn))
        t1 = clock()
        if iterations is not None and len(window) >= iterations:
            return window, False
        if seconds is not None and t1 - window_start >= seconds:
            return window, False
        if t1 >= deadline:
            return window, True


def time_callable(
    fn: Callable[[], Any],
    synchronize: Callable[[], None] = lambda: None,
    *,
    batch: int = 1,
    warmup: int = 10,
    iterations: int | None = None,
    seconds: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    max_seconds: float = 60.0,
    clock: Callable[[], float] = time.perf_counter,
    includes_host_copies: bool = True,
    timer: Timer | None = None,
) -> LatencyResult:
    """Time ``fn`` in windows until two consecutive windows agree (see the module docstring).

    A window is ``ceil(iterations / 2)`` calls, or ``seconds / 2`` of calls. ``synchronize``
    runs after every call, before the clock is read (a no-op on CPU). ``timer`` measures one
    call instead of the clock (CUDA events on a GPU); windows and the cap still use ``clock``.
    """
    iterations = _check_amount(iterations, seconds, warmup)
    if timer is None:

        def timer(call: Callable[[], Any]) -> float:
            t0 = clock()
            call()
            synchronize()
            return clock() - t0

    for _ in range(warmup):
        fn()
        synchronize()
    window_iterations = math.ceil(iterations / 2) if iterations is not None else None
    window_seconds = seconds / 2 if seconds is not None else None
    windows: list[list[float]] = []
    stable = False
    start = clock()
    while True:
        window, capped = _timed_window(
            fn, timer, clock, iterations=window_iterations, seconds=window_seconds, deadline=start + max_seconds
        )
        windows.append(window)
        if len(windows) >= 2 and windows_agree(float(np.median(windows[-1])), float(np.median(windows[-2])), tolerance):
            stable = True
            break
        if capped or clock() - start >= max_seconds:
            break
    return latency_statistics(
        windows,
        batch=batch,
        stable=stable,
        tolerance=tolerance,
        timed_seconds=clock() - start,
        warmup=warmup,
        includes_host_copies=includes_host_copies,
    )


def measure(runner: Any, batch: np.ndarray, **timing: Any) -> LatencyResult:
    """Time an active runner on ``batch``; ``timing`` are :func:`time_callable`'s keywords
    (warmup, iterations, seconds, tolerance, max_seconds, clock).

    A runner that offers ``benchmark_fn(batch)`` (torch) is timed on device-resident input;
    others through :meth:`Runner.infer`, host copies included; the result says which.
    """
    staged = getattr(runner, "benchmark_fn", None)
    if staged is not None:
        fn = staged(batch)
        includes_copies = False
    else:

        def fn() -> Any:
            return runner.infer(batch)

        includes_copies = True
    return time_callable(
        fn, runner.synchronize, batch=int(batch.shape[0]), includes_host_copies=includes_copies, **timing
    )


# Timing of the copies beside the timed phase: short, they only need a stable median.
_SIDE_TIMING = {"warmup": 3, "iterations": 20, "seconds": None, "max_seconds": 5.0}


def measure_phases(
    runner: Any, batch: np.ndarray, *, end_to_end: bool = False, staged: bool | None = None, **timing: Any
) -> tuple[LatencyResult, dict[str, float] | None]:
    """Time a runner that stages its I/O (torch on CUDA) the way trtexec does: buffers allocated
    once, each phase timed apart (CUDA events on a GPU). The latency is ``compute`` on
    device-resident input, or ``end_to_end`` (pinned copies included) when asked; the other
    phases get a short timing of their own. Phases are p50 ms: ``h2d``, ``compute``, ``d2h``,
    ``end_to_end``.

    ``staged`` None: stage on CUDA only; True forces it (the CPU dry run of the GPU check).
    Other runners: :func:`measure` and no phases.
    """
    on_cuda = getattr(runner, "kind", "cpu") == "cuda"
    if not hasattr(runner, "staged_io") or not (on_cuda if staged is None else staged):
        return measure(runner, batch, **timing), None
    io = runner.staged_io(batch)
    n = int(batch.shape[0])
    main = "end_to_end" if end_to_end else "compute"
    latency = time_callable(getattr(io, main), io.synchronize, batch=n, timer=io.timer(),
                            includes_host_copies=end_to_end, **timing)
    side = {**_SIDE_TIMING, **{k: v for k, v in timing.items() if k == "clock"}}
    phases = {main: latency.p50_ms}
    for phase in ("h2d", "compute", "d2h", "end_to_end"):
        if phase != main:
            phases[phase] = time_callable(getattr(io, phase), io.synchronize, batch=n, timer=io.timer(), **side).p50_ms
    return latency, {k: phases[k] for k in ("h2d", "compute", "d2h", "end_to_end")}
