"""Latency, throughput and memory per backend, precision and batch size.

``run_matrix(configs)`` measures each :class:`BenchConfig` and returns a :class:`BenchRun`
(the machine plus one :class:`BenchResult` per configuration); every output format (rich
table, JSON, CSV, Markdown, the report's charts) renders that one object.

How a number is made (the contract the docs repeat):

- Each configuration runs in a fresh Python process by default (``isolate=True``), so one
  backend's memory, thread pools and JIT caches do not colour the next one. Artifacts are
  found (or exported / quantized) and the analytic cost computed in the parent first.
- ``warmup`` untimed calls, then timed calls in windows; on a GPU the runner synchronizes
  before each clock read. Measuring stops once two consecutive windows' medians differ by at
  most ``tolerance`` (5 % by default) of the larger and at least the requested iterations /
  seconds were timed, or when ``max_seconds`` is hit (then ``stable`` is False). Statistics
  come from the last two windows.
- Latency is per batch (ms); throughput is batch / mean latency (images/s).
- Achieved GFLOP/s = 2 x MACs per image (from ``deploykit.analyze``) x batch / mean latency.
  The fraction of peak uses ``--peak-gflops`` when given, else the device table
  ``deploykit/data/devices.json`` (GPUs), else a labelled CPU estimate (cores x clock x FP32
  FLOP/cycle of its vector ISA); ``peak_source`` says which.

Only the standard library, numpy and light deploykit modules are imported here at module
level: the GPU check runs this module on hosts that have torch and nothing else.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.errors import DeployKitError, UsageError

SCHEMA = 1
STATUSES = ("ok", "skipped", "failed")
DEFAULT_ITERATIONS = 20
DEFAULT_TOLERANCE = 0.05
DEVICES_JSON = Path(__file__).with_name("data") / "devices.json"

# backend -> device kind -> precisions it runs there. A combination outside this table is
# "skipped" (it does not apply), not "failed".
SUPPORT: dict[str, dict[str, tuple[str, ...]]] = {
    "torch": {"cpu": ("fp32",), "cuda": ("fp32", "fp16")},
    "onnxruntime": {"cpu": ("fp32", "fp16", "int8"), "cuda": ("fp32", "fp16", "int8")},
    "openvino": {"cpu": ("fp32", "fp16", "int8")},
    "tensorrt": {"cuda": ("fp32", "fp16", "int8")},
}
ARTIFACT_FORMAT = {"torch": None, "onnxruntime": "onnx", "openvino": "onnx", "tensorrt": "trt"}


# ======================================================================================
# configuration and results
# ======================================================================================


@dataclass(frozen=True)
class BenchConfig:
    """One cell of the benchmark matrix.

    ``iterations`` / ``seconds``: the least timed work (default 20 iterations), split in two
    windows; more windows follow until two agree within ``tolerance`` or ``max_seconds`` of
    timing is spent. ``timeout_s`` bounds the whole worker process (load + warm-up + timing).
    ``input_size`` None: the artifact's static size, else the model card's.
    """

    model: str
    backend: str = "onnxruntime"
    precision: str = "fp32"
    batch: int = 1
    device: str = "cpu"
    threads: int | None = None
    warmup: int = 10
    iterations: int | None = None
    seconds: float | None = None
    tolerance: float = DEFAULT_TOLERANCE
    max_seconds: float = 60.0
    timeout_s: float = 900.0
    input_size: int | None = None
    num_classes: int = 1000
    repo: str = "models"
    build: bool = True
    channels_last: bool = False
    cuda_graphs: bool = False
    compile: bool = False
    weights: str | None = None
    peak_gflops: float | None = None
    per_layer: bool = False

    @property
    def device_kind(self) -> str:
        return self.device.split(":")[0]

    @property
    def label(self) -> str:
        """``torch/fp16+cl+graphs``: backend, precision and the options that change speed."""
        extras = [
            flag
            for flag, on in (("cl", self.channels_last), ("graphs", self.cuda_graphs), ("compile", self.compile))
            if on
        ]
        return f"{self.backend}/{'+'.join([self.precision, *extras])}"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class LatencyResult:
    """Timing of one configuration: milliseconds per batch, from the last two windows."""

    batch: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    samples: int
    stable: bool
    tolerance: float
    window_medians_ms: tuple[float, ...]
    timed_seconds: float
    warmup: int
    includes_host_copies: bool = True

    @property
    def throughput_ips(self) -> float:
        """Images per second: batch / mean latency."""
        return self.batch * 1000.0 / self.mean_ms if self.mean_ms > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["window_medians_ms"] = list(self.window_medians_ms)
        data["throughput_ips"] = self.throughput_ips
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyResult:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["window_medians_ms"] = tuple(kwargs.get("window_medians_ms", ()))
        return cls(**kwargs)


@dataclass(frozen=True)
class LayerTiming:
    """One row of a per-layer profile: time per batch in ms and the share of the total."""

    name: str
    op: str
    time_ms: float
    share: float
    macs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BenchResult:
    """The outcome of one configuration: ``ok`` with measurements, or ``skipped`` / ``failed``
    with a one-line ``reason``."""

    config: BenchConfig
    status: str
    reason: str | None = None
    latency: LatencyResult | None = None
    input_shape: tuple[int, ...] | None = None
    peak_rss_bytes: int | None = None
    baseline_rss_bytes: int | None = None
    device_memory_bytes: int | None = None
    artifact: str | None = None
    artifact_bytes: int | None = None
    macs_per_image: int | None = None
    peak_gflops: float | None = None
    peak_source: str | None = None
    runner: dict[str, Any] = field(default_factory=dict)
    layers: tuple[LayerTiming, ...] = ()
    wall_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def throughput_ips(self) -> float | None:
        return self.latency.throughput_ips if self.latency else None

    @property
    def achieved_gflops(self) -> float | None:
        """2 FLOP per MAC x MACs per image x images per second / 1e9."""
        if self.latency is None or not self.macs_per_image:
            return None
        return 2.0 * self.macs_per_image * self.latency.throughput_ips / 1e9

    @property
    def peak_fraction(self) -> float | None:
        achieved = self.achieved_gflops
        if achieved is None or not self.peak_gflops:
            return None
        return achieved / self.peak_gflops

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "label": self.config.label,
            "status": self.status,
            "reason": self.reason,
            "latency": self.latency.to_dict() if self.latency else None,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "throughput_ips": self.throughput_ips,
            "peak_rss_bytes": self.peak_rss_bytes,
            "baseline_rss_bytes": self.baseline_rss_bytes,
            "device_memory_bytes": self.device_memory_bytes,
            "artifact": self.artifact,
            "artifact_bytes": self.artifact_bytes,
            "macs_per_image": self.macs_per_image,
            "achieved_gflops": self.achieved_gflops,
            "peak_gflops": self.peak_gflops,
            "peak_source": self.peak_source,
            "peak_fraction": self.peak_fraction,
            "runner": self.runner,
            "layers": [layer.to_dict() for layer in self.layers],
            "wall_seconds": self.wall_seconds,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResult:
        return cls(
            config=BenchConfig.from_dict(data["config"]),
            status=data["status"],
            reason=data.get("reason"),
            latency=LatencyResult.from_dict(data["latency"]) if data.get("latency") else None,
            input_shape=tuple(data["input_shape"]) if data.get("input_shape") else None,
            peak_rss_bytes=data.get("peak_rss_bytes"),
            baseline_rss_bytes=data.get("baseline_rss_bytes"),
            device_memory_bytes=data.get("device_memory_bytes"),
            artifact=data.get("artifact"),
            artifact_bytes=data.get("artifact_bytes"),
            macs_per_image=data.get("macs_per_image"),
            peak_gflops=data.get("peak_gflops"),
            peak_source=data.get("peak_source"),
            runner=data.get("runner") or {},
            layers=tuple(LayerTiming(**row) for row in data.get("layers") or ()),
            wall_seconds=data.get("wall_seconds"),
        )


@dataclass(frozen=True)
class BenchRun:
    """A whole matrix: the machine it ran on, when, and one result per configuration."""

    results: tuple[BenchResult, ...]
    machine: dict[str, Any]
    created_at: str
    isolate: bool = True
    notes: tuple[str, ...] = ()

    @property
    def failed(self) -> tuple[BenchResult, ...]:
        return tuple(r for r in self.results if r.status == "failed")

    @property
    def exit_code(self) -> int:
        """0 when nothing failed (skipped configurations do not count), else 1."""
        return 1 if self.failed else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "kind": "deploykit.bench",
            "created_at": self.created_at,
            "isolate": self.isolate,
            "notes": list(self.notes),
            "machine": self.machine,
            "results": [r.to_dict() for r in self.results],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=_json_default) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchRun:
        if data.get("kind") != "deploykit.bench" or "results" not in data:
            raise UsageError("not a deploykit bench result (no 'kind': 'deploykit.bench')")
        return cls(
            results=tuple(BenchResult.from_dict(r) for r in data["results"]),
            machine=data.get("machine") or {},
            created_at=data.get("created_at", ""),
            isolate=bool(data.get("isolate", True)),
            notes=tuple(data.get("notes") or ()),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> BenchRun:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise UsageError(f"no such file: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path} is not valid JSON ({exc})") from None
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{path} is not a deploykit bench result ({exc})") from None


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


# ======================================================================================
# timing
# ======================================================================================


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
) -> LatencyResult:
    """Time ``fn`` in windows until two consecutive windows agree (see the module docstring).

    A window is ``ceil(iterations / 2)`` calls, or ``seconds / 2`` of calls. ``synchronize``
    runs after every call, before the clock is read (a no-op on CPU).
    """
    if iterations is None and seconds is None:
        iterations = DEFAULT_ITERATIONS
    if iterations is not None and iterations < 1:
        raise UsageError(f"iterations must be at least 1, got {iterations}")
    if seconds is not None and seconds <= 0:
        raise UsageError(f"seconds must be positive, got {seconds}")
    if warmup < 0:
        raise UsageError(f"warmup must be 0 or more, got {warmup}")
    for _ in range(warmup):
        fn()
        synchronize()
    window_iterations = math.ceil(iterations / 2) if iterations is not None else None
    window_seconds = seconds / 2 if seconds is not None else None
    windows: list[list[float]] = []
    stable = False
    start = clock()
    capped = False
    while True:
        window: list[float] = []
        window_start = clock()
        while True:
            t0 = clock()
            fn()
            synchronize()
            t1 = clock()
            window.append(t1 - t0)
            if window_iterations is not None and len(window) >= window_iterations:
                break
            if window_seconds is not None and t1 - window_start >= window_seconds:
                break
            if t1 - start >= max_seconds:
                capped = True
                break
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


def measure(
    runner: Any,
    batch: np.ndarray,
    *,
    warmup: int = 10,
    iterations: int | None = None,
    seconds: float | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    max_seconds: float = 60.0,
    clock: Callable[[], float] = time.perf_counter,
) -> LatencyResult:
    """Time an active runner on ``batch`` (see :func:`time_callable`).

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
        fn,
        runner.synchronize,
        batch=int(batch.shape[0]),
        warmup=warmup,
        iterations=iterations,
        seconds=seconds,
        tolerance=tolerance,
        max_seconds=max_seconds,
        clock=clock,
        includes_host_copies=includes_copies,
    )


# ======================================================================================
# memory, peaks, analytic cost
# ======================================================================================


def current_rss_bytes() -> int | None:
    """Resident memory of this process now (Linux /proc), or None."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far.

    Linux: ``VmHWM`` of /proc/self/status, the high-water mark of this program's own memory.
    Not ``getrusage``: its ``ru_maxrss`` survives fork and exec, so a worker started from a
    700 MB parent would report at least 700 MB whatever it did. Elsewhere ``ru_maxrss``.
    """
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


@lru_cache(maxsize=1)
def load_devices() -> list[dict[str, Any]]:
    """The known-device peak table (``deploykit/data/devices.json``)."""
    return json.loads(DEVICES_JSON.read_text())["devices"]


def match_device(name: str | None) -> dict[str, Any] | None:
    """The first devices.json entry whose pattern matches a GPU name, else None."""
    if not name:
        return None
    for entry in load_devices():
        if any(re.search(p, name, re.IGNORECASE) for p in entry["match"]):
            return entry
    return None


def cpu_peak_estimate(
    machine: dict[str, Any], math_kind: str = "fp32", threads: int | None = None
) -> tuple[float | None, str]:
    """FP32 peak of the cores a run may use: cores x clock x FLOP/cycle of the widest FMA ISA
    (2 FMA units assumed). ``threads`` limits the cores counted (a 1-thread run is compared
    with one core's peak).

    Only FP32 is estimated: INT8 and FP16 rates depend on VNNI/AMX details a flag list does
    not settle, so those return None (pass --peak-gflops).
    """
    if math_kind != "fp32":
        return None, f"unknown: no {math_kind} peak estimate for CPUs (pass --peak-gflops)"
    flags = set(machine.get("cpu_flags") or ())
    # cpufreq's maximum (boost) when the kernel has it; else /proc/cpuinfo's clock, which in a
    # VM is usually the base clock: boost runs higher, so the fraction may then exceed 100 %.
    mhz = machine.get("cpu_max_mhz") or machine.get("cpu_mhz")
    clock = "max clock" if machine.get("cpu_max_mhz") else "clock from /proc/cpuinfo, boost may run higher"
    cores = machine.get("physical_cores") or machine.get("logical_cpus")
    if not mhz or not cores:
        return None, "unknown: CPU clock or core count not reported (pass --peak-gflops)"
    if threads:
        cores = min(cores, threads)
    if "avx512f" in flags:
        per_cycle, isa = 64, "AVX-512 FMA"
    elif "avx2" in flags and "fma" in flags:
        per_cycle, isa = 32, "AVX2 FMA"
    else:
        per_cycle, isa = 8, "SSE"
    ghz = mhz / 1000.0
    return (
        cores * ghz * per_cycle,
        f"estimate: {cores} core{'s' if cores > 1 else ''} x {ghz:.2f} GHz ({clock}) x {per_cycle} FP32 "
        f"FLOP/cycle ({isa}, 2 units assumed)",
    )


def device_peak(
    machine: dict[str, Any],
    device: str,
    math_kind: str,
    override: float | None = None,
    threads: int | None = None,
) -> tuple[float | None, str]:
    """Peak GFLOP/s (GOP/s for int8) for a device and the math a runner uses, and where it came from."""
    if override:
        return float(override), "--peak-gflops"
    if device.split(":")[0] == "cuda":
        gpus = machine.get("gpus") or []
        name = gpus[0]["name"] if gpus else None
        entry = match_device(name)
        if entry is None:
            return None, f"unknown: {name or 'this GPU'} is not in devices.json (pass --peak-gflops)"
        value = entry["peak_gflops"].get(math_kind)
        if not value:
            return None, f"unknown: devices.json has no {math_kind} peak for {entry['name']}"
        return float(value), f"devices.json: {entry['name']}, {math_kind} dense"
    return cpu_peak_estimate(machine, math_kind, threads)


@lru_cache(maxsize=64)
def model_cost(model: str, input_size: int, num_classes: int = 1000) -> dict[str, Any] | None:
    """Analytic cost of one image from ``deploykit.analyze`` (None when analyze is unavailable)."""
    try:
        from deploykit.analyze import analyze_model
    except ImportError:
        return None
    stats = analyze_model(model, input_size=input_size, num_classes=num_classes)
    return {
        "macs": int(stats.totals["macs"]),
        "params": int(stats.totals["params"]),
        "activation_bytes": int(stats.totals.get("activation_bytes", 0)),
        "peak_activation_bytes": int(stats.totals.get("peak_activation_bytes", 0)),
        "layers": {row.name: int(row.macs) for row in stats.layers},
    }


def estimate_memory_bytes(batch: int, input_size: int, cost: dict[str, Any] | None) -> dict[str, int]:
    """A rough upper estimate of what one inference of ``batch`` images needs, in bytes.

    Input (FP32) plus, per image, twice the largest layer output (a layer's input and output
    are alive together) plus the FP32 weights once. Frameworks reuse activation buffers, so
    the sum of all activations would overstate it by an order of magnitude.
    """
    input_bytes = batch * 3 * input_size * input_size * 4
    if cost is None:
        return {"input": input_bytes, "activations": 2 * input_bytes, "weights": 0, "total": 3 * input_bytes}
    activations = batch * 2 * cost["peak_activation_bytes"]
    weights = cost["params"] * 4
    return {
        "input": input_bytes,
        "activations": activations,
        "weights": weights,
        "total": input_bytes + activations + weights,
    }


def available_memory_bytes(device: str) -> tuple[int | None, str]:
    """Memory a new allocation can use on ``device`` now, and what it is (host RAM or GPU)."""
    if device.split(":")[0] == "cuda":
        try:
            import torch

            free, _ = torch.cuda.mem_get_info(torch.device(device))
            return int(free), "free GPU memory"
        except Exception:  # no torch or no GPU: the runner will say so
            return None, "GPU memory"
    from deploykit.machine import memory_available_bytes

    return memory_available_bytes(), "available host memory"


def _gb(n: float) -> str:
    return f"{n / 1e9:.1f} GB"


def check_memory(config: BenchConfig, input_size: int, cost: dict[str, Any] | None) -> str | None:
    """None when the batch should fit, else a one-line reason (checked before allocating)."""
    need = estimate_memory_bytes(config.batch, input_size, cost)
    available, what = available_memory_bytes(config.device)
    if available is None:
        return None
    # Leave room for the framework, the process itself and the other processes on the host.
    if need["total"] > 0.8 * available:
        return (
            f"batch {config.batch} at {input_size}x{input_size} needs about {_gb(need['total'])} "
            f"(input {_gb(need['input'])}, activations {_gb(need['activations'])}, weights "
            f"{_gb(need['weights'])}) but only {_gb(available)} of {what} is there"
        )
    return None


# ======================================================================================
# preparing a configuration (parent process)
# ======================================================================================


def support_reason(backend: str, device: str, precision: str) -> str | None:
    """None when ``backend`` runs ``precision`` on ``device``, else why the combination does not apply."""
    kind = device.split(":")[0]
    devices = SUPPORT[backend]
    if kind not in devices:
        return f"{backend} does not run on {kind} (it runs on {', '.join(devices)})"
    if precision not in devices[kind]:
        extra = " (INT8 runs through the ONNX backends)" if backend == "torch" and precision == "int8" else ""
        return f"{backend} on {kind} runs {', '.join(devices[kind])}, not {precision}{extra}"
    return None


def validate_config(config: BenchConfig) -> None:
    """Raise UsageError for input that no configuration could run (unknown names, bad sizes)."""
    from deploykit.artifacts import PRECISIONS
    from deploykit.repository import validate_name

    if config.backend not in SUPPORT:
        raise UsageError(f"unknown backend {config.backend!r}", hint=f"choose from {', '.join(SUPPORT)}")
    if config.precision not in PRECISIONS:
        raise UsageError(f"unknown precision {config.precision!r}", hint=f"choose from {', '.join(PRECISIONS)}")
    if config.device_kind not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {config.device!r}", hint="use cpu or cuda")
    validate_name(config.model)
    if not isinstance(config.batch, int) or config.batch < 1:
        raise UsageError(f"batch size must be a positive integer, got {config.batch!r}")
    if config.input_size is not None and config.input_size < 8:
        raise UsageError(f"input size {config.input_size} is too small", hint="use 32 or more")
    if config.threads is not None and config.threads < 1:
        raise UsageError(f"threads must be at least 1, got {config.threads}")


def _artifact_input_size(artifact: Any) -> int | None:
    """The square spatial size an ONNX artifact was exported for, if its sidecar or graph says."""
    meta = getattr(artifact, "meta", {}) or {}
    info = meta.get("input") if isinstance(meta.get("input"), dict) else {}
    shape = info.get("shape") or info.get("dims")
    if isinstance(shape, (list, tuple)) and len(shape) == 4 and isinstance(shape[-1], int) and shape[-1] > 0:
        return int(shape[-1])
    if isinstance(info.get("size"), int):
        return int(info["size"])
    if artifact.format == "onnx":
        try:
            import onnx

            graph = onnx.load(str(artifact.path), load_external_data=False).graph
            dims = graph.input[0].type.tensor_type.shape.dim
            if len(dims) == 4 and dims[3].dim_value > 0:
                return int(dims[3].dim_value)
        except Exception:  # a corrupt file is reported by the runner that loads it
            return None
    return None


def ensure_artifact(config: BenchConfig, input_size: int | None) -> Any:
    """The repository artifact a backend runs, exporting / quantizing it first unless ``build`` is off.

    Raises DeployKitError (missing with --no-build, or the build failed).
    """
    from deploykit.repository import ModelRepository, make_command

    fmt = ARTIFACT_FORMAT[config.backend]
    repo = ModelRepository(config.repo)
    artifact = repo.find(config.model, fmt, config.precision)
    if artifact is not None:
        return artifact
    if not config.build:
        return repo.get(config.model, fmt, config.precision)  # raises, naming the command
    if fmt == "trt":
        from deploykit.build import build_engine  # lazily: needs TensorRT and a GPU

        max_batch = max(32, config.batch)
        build_engine(config.model, config.precision, repo=repo, opt_batch=min(8, max_batch), max_batch=max_batch)
        return repo.get(config.model, fmt, config.precision, how=make_command(config.model, fmt, config.precision))
    from deploykit.export import export_model  # lazily: pulls torch and onnx

    if repo.find(config.model, "onnx", "fp32") is None:
        export_model(config.model, repo=config.repo, input_size=input_size, num_classes=config.num_classes)
    if config.precision != "fp32":
        from deploykit.precision import make_variant

        make_variant(repo, config.model, config.precision)
    return repo.get(config.model, fmt, config.precision)


def one_line(exc: BaseException) -> str:
    if isinstance(exc, DeployKitError):
        return f"{exc.message} ({exc.hint})" if exc.hint else exc.message
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


def _skip_or_fail(config: BenchConfig, status: str, reason: str, **extra: Any) -> BenchResult:
    return BenchResult(config=config, status=status, reason=reason, **extra)


def prepare(config: BenchConfig) -> dict[str, Any] | BenchResult:
    """Everything decided before a worker starts: a job dict, or a skipped / failed result.

    Order: support table, backend installed, artifact (found or made), input size, memory.
    """
    from deploykit.runtimes import backend_unavailable_reason

    reason = support_reason(config.backend, config.device, config.precision)
    if reason:
        return _skip_or_fail(config, "skipped", reason)
    reason = backend_unavailable_reason(config.backend)
    if reason:
        return _skip_or_fail(config, "skipped", reason)
    if config.backend == "onnxruntime" and config.device_kind == "cuda":
        from deploykit.runtimes.onnxruntime_runner import device_unavailable_reason

        reason = device_unavailable_reason(config.device)
        if reason:
            return _skip_or_fail(config, "skipped", reason)
    job: dict[str, Any] = {"config": config.to_dict(), "artifact_path": None}
    input_size = config.input_size
    try:
        if ARTIFACT_FORMAT[config.backend] is not None:
            artifact = ensure_artifact(config, input_size)
            job.update(
                artifact_path=str(artifact.path),
                artifact=artifact.variant,
                artifact_bytes=artifact.bytes,
            )
            input_size = input_size or _artifact_input_size(artifact)
        if input_size is None:
            from deploykit.zoo import get_card

            input_size = get_card(config.model).input_size
        job["input_size"] = input_size
        try:
            cost = model_cost(config.model, input_size, config.num_classes)
        except DeployKitError:
            raise
        except Exception:  # analyze is another module's contract: a gap there must not stop timing
            cost = None
        job["macs_per_image"] = cost["macs"] if cost else None
        job["layer_macs"] = cost["layers"] if cost and config.per_layer else None
        reason = check_memory(config, input_size, cost)
        if reason:
            return _skip_or_fail(config, "failed", reason, artifact=job.get("artifact"))
    except DeployKitError as exc:
        return _skip_or_fail(config, "failed", one_line(exc), artifact=job.get("artifact"))
    except Exception as exc:  # an export or quantize crash is this configuration's failure only
        return _skip_or_fail(config, "failed", one_line(exc), artifact=job.get("artifact"))
    return job


# ======================================================================================
# running a configuration (worker process, or in-process with isolate=False)
# ======================================================================================


def make_runner(config: BenchConfig, artifact_path: str | None, input_size: int | None) -> Any:
    """The runner for a configuration (its module imported only now)."""
    from deploykit.runtimes import get_runner

    if config.backend == "torch":
        return get_runner(
            "torch",
            config.model,
            device=config.device,
            precision=config.precision,
            channels_last=config.channels_last,
            cuda_graphs=config.cuda_graphs,
            compile=config.compile,
            weights=config.weights,
            num_classes=config.num_classes,
            input_size=input_size,
            threads=config.threads,
        )
    if config.backend == "onnxruntime":
        return get_runner("onnxruntime", artifact_path, device=config.device, threads=config.threads)
    if config.backend == "openvino":
        return get_runner("openvino", artifact_path, threads=config.threads)
    index = int(config.device.split(":")[1]) if ":" in config.device else 0
    return get_runner("tensorrt", artifact_path, device=index)


def make_input(batch: int, input_size: int, seed: int = 0) -> np.ndarray:
    """A deterministic normalized-image-like batch (N x 3 x S x S float32)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, 3, input_size, input_size), dtype=np.float32)


def execute_job(job: dict[str, Any]) -> dict[str, Any]:
    """Load, warm up, time and (optionally) profile one configuration; returns plain data.

    Never raises for a problem of the configuration: it comes back as ``status: failed``.
    """
    config = BenchConfig.from_dict(job["config"])
    start = time.perf_counter()
    out: dict[str, Any] = {"status": "failed", "baseline_rss_bytes": current_rss_bytes()}
    try:
        runner = make_runner(config, job.get("artifact_path"), job.get("input_size"))
        with runner:
            spec_shape = runner.input_spec().shape
            size = job.get("input_size") or (spec_shape[-1] if spec_shape[-1] > 0 else 224)
            batch = make_input(config.batch, size)
            latency = measure(
                runner,
                batch,
                warmup=config.warmup,
                iterations=config.iterations,
                seconds=config.seconds,
                tolerance=config.tolerance,
                max_seconds=config.max_seconds,
            )
            out["latency"] = latency.to_dict()
            out["input_shape"] = list(batch.shape)
            out["device_memory_bytes"] = runner.device_memory_bytes()
            out["runner"] = jsonable(runner.describe())
            if config.per_layer:
                try:
                    layers = profile_layers(runner, batch, job.get("layer_macs") or {})
                    out["layers"] = [layer.to_dict() for layer in layers]
                except Exception as exc:  # profiling is extra: keep the timing
                    out["runner"]["per_layer_error"] = one_line(exc)
        out["status"] = "ok"
    except MemoryError:
        out["reason"] = f"out of host memory at batch {config.batch}"
    except DeployKitError as exc:
        out["reason"] = one_line(exc)
    except Exception as exc:  # a backend's own error types (ORT Fail, OpenVINO RuntimeError, CUDA OOM)
        out["reason"] = one_line(exc)
    out["peak_rss_bytes"] = peak_rss_bytes()
    out["wall_seconds"] = time.perf_counter() - start
    return out


def jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, default=_json_default))


def finish_result(job: dict[str, Any], raw: dict[str, Any], machine: dict[str, Any]) -> BenchResult:
    """Combine a job, the worker's raw output and the machine into a :class:`BenchResult`."""
    config = BenchConfig.from_dict(job["config"])
    runner = raw.get("runner") or {}
    math_kind = runner.get("math") or config.precision
    peak, source = device_peak(machine, config.device, math_kind, config.peak_gflops, config.threads)
    return BenchResult.from_dict(
        {
            **raw,
            "config": job["config"],
            "status": raw.get("status", "failed"),
            "runner": runner,
            "artifact": job.get("artifact"),
            "artifact_bytes": job.get("artifact_bytes"),
            "macs_per_image": job.get("macs_per_image"),
            "peak_gflops": peak,
            "peak_source": source,
        }
    )


def _package_root() -> str:
    return str(Path(__file__).resolve().parent.parent)


_WORKER_CODE = "import sys; from deploykit.bench import worker_main; sys.exit(worker_main(sys.argv[1:]))"


def run_isolated(job: dict[str, Any]) -> dict[str, Any]:
    """Run :func:`execute_job` in a fresh Python process; a crash or timeout becomes ``failed``."""
    config = BenchConfig.from_dict(job["config"])
    env = dict(os.environ)
    # The worker imports the same deploykit as this process, installed or from a checkout.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_root(), env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="deploykit-bench-") as tmp:
        job_path, out_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(json.dumps(job, default=_json_default))
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _WORKER_CODE, "--worker", str(job_path), str(out_path)],
                capture_output=True,
                text=True,
                timeout=config.timeout_s,
                env=env,
            )
        except subprocess.TimeoutExpired:
            return {"status": "failed", "reason": f"timed out after {config.timeout_s:.0f} s (worker killed)"}
        if out_path.is_file():
            try:
                return json.loads(out_path.read_text())
            except json.JSONDecodeError:
                pass
        tail = [line for line in (proc.stderr or "").strip().splitlines() if line.strip()]
        last = tail[-1][:300] if tail else "no output"
        return {"status": "failed", "reason": f"worker exited with code {proc.returncode}: {last}"}


def worker_main(argv: Sequence[str]) -> int:
    """Entry of the isolated worker: ``--worker JOB.json OUT.json``."""
    if len(argv) != 3 or argv[0] != "--worker":
        print("usage: python -m deploykit.bench --worker JOB.json OUT.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[1]).read_text())
    raw = execute_job(job)
    Path(argv[2]).write_text(json.dumps(raw, default=_json_default))
    return 0


# ======================================================================================
# the matrix
# ======================================================================================


class _Progress:
    """A rich progress bar on stderr when rich is installed and wanted, else silence or plain lines."""

    def __init__(self, total: int, enabled: bool):
        self.enabled = enabled
        self.total = total
        self.done = 0
        self._progress = None
        if enabled:
            try:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,
                )

                self._progress = Progress(
                    TextColumn("[bold]bench[/] {task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    console=Console(stderr=True),
                    transient=True,
                )
            except ImportError:
                self._progress = None

    def __enter__(self) -> _Progress:
        if self._progress is not None:
            self._progress.__enter__()
            self._task = self._progress.add_task("", total=self.total)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def start(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text)
        elif self.enabled:
            print(f"[{self.done + 1}/{self.total}] {text}", file=sys.stderr, flush=True)

    def advance(self) -> None:
        self.done += 1
        if self._progress is not None:
            self._progress.advance(self._task)


def describe_config(config: BenchConfig) -> str:
    return f"{config.model} {config.label} b{config.batch} ({config.device})"


def run_matrix(
    configs: Iterable[BenchConfig],
    *,
    isolate: bool = True,
    progress: bool = True,
    machine: dict[str, Any] | None = None,
    on_result: Callable[[BenchResult], None] | None = None,
    notes: Sequence[str] = (),
) -> BenchRun:
    """Measure every configuration; one failure never stops the others.

    ``isolate`` runs each in a fresh process (the default; ``False`` runs them here, one
    after the other: faster, but RSS and thread pools are then shared). ``on_result`` is
    called after each configuration (e.g. to save partial results).
    """
    from deploykit.artifacts import now_iso
    from deploykit.machine import describe_machine

    configs = list(configs)
    for config in configs:
        validate_config(config)
    if machine is None:
        wants_gpu = any(c.device_kind == "cuda" for c in configs)
        machine = describe_machine(probe_torch=wants_gpu).to_dict()
    results: list[BenchResult] = []
    with _Progress(len(configs), progress) as bar:
        for config in configs:
            bar.start(describe_config(config))
            prepared = prepare(config)
            if isinstance(prepared, BenchResult):
                result = prepared
            else:
                raw = run_isolated(prepared) if isolate else execute_job(prepared)
                result = finish_result(prepared, raw, machine)
            results.append(result)
            if on_result is not None:
                on_result(result)
            bar.advance()
    return BenchRun(
        results=tuple(results),
        machine=machine,
        created_at=now_iso(),
        isolate=isolate,
        notes=tuple(notes),
    )


def expand_matrix(
    models: Sequence[str],
    backends: Sequence[str],
    precisions: Sequence[str],
    batches: Sequence[int],
    **common: Any,
) -> list[BenchConfig]:
    """The cross product, in the order model, backend, precision, batch."""
    return [
        BenchConfig(model=m, backend=b, precision=p, batch=n, **common)
        for m in models
        for b in backends
        for p in precisions
        for n in batches
    ]


# ======================================================================================
# per-layer profiles
# ======================================================================================


def profile_layers(runner: Any, batch: np.ndarray, layer_macs: dict[str, int], repeats: int = 5, top: int = 15) -> tuple[LayerTiming, ...]:
    """Time per layer for an active runner: torch (module hooks), ONNX Runtime (session
    profiling), OpenVINO (performance counters) or TensorRT (its IProfiler). The ``top``
    slowest rows, slowest first. Profiling runs apart from the timed loop: hooks and
    counters slow a model down, so they never touch the latency numbers."""
    backend = getattr(runner, "backend", "")
    if backend == "torch":
        times, ops = _profile_torch(runner, batch, repeats)
    elif backend == "tensorrt":
        times, ops = _profile_tensorrt(runner, batch, repeats)
    elif backend == "onnxruntime":
        times, ops = _profile_onnxruntime(runner, batch, repeats)
    elif backend == "openvino":
        times, ops = _profile_openvino(runner, batch, repeats)
    else:
        raise DeployKitError(f"per-layer profiles are not available for {backend}")
    total = sum(times.values()) or 1.0
    rows = sorted(times.items(), key=lambda kv: -kv[1])[:top]
    return tuple(
        LayerTiming(name=name, op=ops.get(name, ""), time_ms=t, share=t / total, macs=layer_macs.get(name))
        for name, t in rows
    )


def _profile_torch(runner: Any, batch: np.ndarray, repeats: int) -> tuple[dict[str, float], dict[str, str]]:
    model = runner.model
    x = runner.to_device(batch)
    times: dict[str, float] = {}
    ops: dict[str, str] = {}
    starts: dict[str, float] = {}
    handles = []
    for name, module in model.named_modules():
        if any(True for _ in module.children()):
            continue  # leaves only: containers would count their children twice

        def pre(_m: Any, _i: Any, name: str = name) -> None:
            runner.synchronize()
            starts[name] = time.perf_counter()

        def post(_m: Any, _i: Any, _o: Any, name: str = name) -> None:
            runner.synchronize()
            times[name] = times.get(name, 0.0) + (time.perf_counter() - starts[name]) * 1000.0

        ops[name] = type(module).__name__
        handles.append(module.register_forward_pre_hook(pre))
        handles.append(module.register_forward_hook(post))
    try:
        import torch

        with torch.inference_mode():
            for _ in range(repeats):
                model(x)
    finally:
        for h in handles:
            h.remove()
    return {k: v / repeats for k, v in times.items()}, ops


def _profile_tensorrt(runner: Any, batch: np.ndarray, repeats: int) -> tuple[dict[str, float], dict[str, str]]:
    from deploykit.runtimes import get_runner

    with get_runner("tensorrt", runner.artifact or runner.path, device=runner.device, per_layer=True) as profiled:
        profiled.infer(batch)  # first call: lazy allocations, not part of the profile
        profiled.reset_layer_times()
        for _ in range(repeats):
            profiled.infer(batch)
        rows = profiled.layer_times()
    return {row["layer"]: float(row["mean_ms"]) for row in rows}, {}


def _profile_onnxruntime(runner: Any, batch: np.ndarray, repeats: int) -> tuple[dict[str, float], dict[str, str]]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.log_severity_level = 3
    if runner.threads:
        options.intra_op_num_threads = runner.threads
    with tempfile.TemporaryDirectory() as tmp:
        options.profile_file_prefix = str(Path(tmp) / "ort")
        session = ort.InferenceSession(str(runner.path), options, providers=runner.providers)
        name = session.get_inputs()[0].name
        for _ in range(repeats):
            session.run(None, {name: batch})
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


def _profile_openvino(runner: Any, batch: np.ndarray, repeats: int) -> tuple[dict[str, float], dict[str, str]]:
    import openvino as ov

    core = ov.Core()
    config: dict[str, Any] = {"PERF_COUNT": True, "PERFORMANCE_HINT": runner.performance_hint}
    if runner.threads:
        config["INFERENCE_NUM_THREADS"] = int(runner.threads)
    if runner.inference_precision:
        config["INFERENCE_PRECISION_HINT"] = runner.inference_precision
    compiled = core.compile_model(core.read_model(str(runner.path)), runner.device, config)
    request = compiled.create_infer_request()
    times: dict[str, float] = {}
    ops: dict[str, str] = {}
    for _ in range(repeats):
        request.infer({0: batch})
        for info in request.profiling_info:
            ms = info.real_time.total_seconds() * 1000.0
            if ms <= 0:
                continue
            times[info.node_name] = times.get(info.node_name, 0.0) + ms
            ops[info.node_name] = f"{info.node_type} ({info.exec_type})"
    return {k: v / repeats for k, v in times.items()}, ops


# ======================================================================================
# renderers: every format renders one BenchRun
# ======================================================================================

CSV_COLUMNS = (
    "model",
    "backend",
    "precision",
    "batch",
    "device",
    "label",
    "status",
    "reason",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "min_ms",
    "max_ms",
    "std_ms",
    "samples",
    "stable",
    "throughput_ips",
    "macs_per_image",
    "achieved_gflops",
    "peak_gflops",
    "peak_fraction",
    "peak_source",
    "peak_rss_bytes",
    "device_memory_bytes",
    "artifact",
    "artifact_bytes",
    "threads",
    "input_size",
)


def result_row(result: BenchResult) -> dict[str, Any]:
    """One flat row (the CSV and table columns) of a result."""
    c, lat = result.config, result.latency
    row: dict[str, Any] = {
        "model": c.model,
        "backend": c.backend,
        "precision": c.precision,
        "batch": c.batch,
        "device": c.device,
        "label": c.label,
        "status": result.status,
        "reason": result.reason or "",
        "throughput_ips": result.throughput_ips,
        "macs_per_image": result.macs_per_image,
        "achieved_gflops": result.achieved_gflops,
        "peak_gflops": result.peak_gflops,
        "peak_fraction": result.peak_fraction,
        "peak_source": result.peak_source or "",
        "peak_rss_bytes": result.peak_rss_bytes,
        "device_memory_bytes": result.device_memory_bytes,
        "artifact": result.artifact or "",
        "artifact_bytes": result.artifact_bytes,
        "threads": result.runner.get("threads", c.threads),
        "input_size": result.input_shape[-1] if result.input_shape else c.input_size,
    }
    for key in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "min_ms", "max_ms", "std_ms", "samples", "stable"):
        row[key] = getattr(lat, key) if lat else None
    return row


def to_csv(run: BenchRun) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    for result in run.results:
        row = result_row(result)
        writer.writerow({k: "" if row[k] is None else row[k] for k in CSV_COLUMNS})
    return buf.getvalue()


def _fmt(value: Any, spec: str = ".2f", scale: float = 1.0, suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value * scale:{spec}}{suffix}"


def _ms(value: float | None) -> str:
    """Milliseconds with about three significant digits (0.123, 12.3, 1234)."""
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}" if value >= 1 else f"{value:.3f}"


def table_rows(run: BenchRun) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, string cells and footnotes of the human-readable table (rich and Markdown share it).

    Reasons for skipped / failed rows go to numbered footnotes (identical reasons share one),
    so the table stays narrow. Columns that are empty in every row (GPU memory on a CPU run)
    are left out.
    """
    columns: list[tuple[str, Callable[[BenchResult], str]]] = [
        ("model", lambda r: r.config.model),
        ("config", lambda r: r.config.label),
        ("batch", lambda r: str(r.config.batch)),
        ("status", lambda r: r.status),
        ("p50 ms", lambda r: _ms(r.latency.p50_ms if r.latency else None)),
        ("p99 ms", lambda r: _ms(r.latency.p99_ms if r.latency else None)),
        ("img/s", lambda r: _fmt(r.throughput_ips, ".0f" if (r.throughput_ips or 0) >= 100 else ".1f")),
        ("GFLOP/s", lambda r: _fmt(r.achieved_gflops, ".0f" if (r.achieved_gflops or 0) >= 100 else ".1f")),
        ("% peak", lambda r: _fmt(r.peak_fraction, ".1f", 100.0)),
        ("RSS MB", lambda r: _fmt(r.peak_rss_bytes, ".0f", 1e-6)),
        ("GPU MB", lambda r: _fmt(r.device_memory_bytes, ".0f", 1e-6)),
        ("file MB", lambda r: _fmt(r.artifact_bytes, ".1f", 1e-6)),
        ("stable", lambda r: ("yes" if r.latency.stable else "no (cap)") if r.latency else "-"),
    ]
    cells = [[render(r) for _, render in columns] for r in run.results]
    keep = [i for i, (name, _) in enumerate(columns) if i < 4 or any(row[i] != "-" for row in cells)]
    header = [columns[i][0] for i in keep]
    notes: list[str] = []
    rows = []
    for r, row in zip(run.results, cells, strict=True):
        row = [row[i] for i in keep]
        if r.reason:
            if r.reason not in notes:
                notes.append(r.reason)
            row[3] = f"{r.status} [{notes.index(r.reason) + 1}]"
        rows.append(row)
    return header, rows, [f"[{i + 1}] {text}" for i, text in enumerate(notes)]


def peak_notes(run: BenchRun) -> list[str]:
    """The distinct peak sources used for the '% peak' column, one line each."""
    seen: list[str] = []
    for r in run.results:
        if r.ok and r.peak_source:
            line = f"{r.config.device} {r.runner.get('math') or r.config.precision}: " + (
                f"{r.peak_gflops:,.0f} GFLOP/s ({r.peak_source})" if r.peak_gflops else r.peak_source
            )
            if line not in seen:
                seen.append(line)
    return seen


def machine_line(machine: dict[str, Any]) -> str:
    from deploykit.machine import summarize_machine

    return summarize_machine(machine)


def to_markdown(run: BenchRun) -> str:
    header, rows, notes = table_rows(run)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    lines.append("")
    lines += [f"{note}  " for note in notes]
    if notes:
        lines.append("")
    lines.append(f"Machine: {machine_line(run.machine)}.")
    for note in peak_notes(run):
        lines.append(f"Peak {note}.")
    return "\n".join(lines) + "\n"


def render_table(run: BenchRun, console: Any) -> None:
    """Print the run as a rich table (plus the per-layer tables of results that have them)."""
    from rich.table import Table

    header, rows, notes = table_rows(run)
    table = Table(title=f"deploykit bench - {machine_line(run.machine)}", title_justify="left")
    for i, name in enumerate(header):
        table.add_column(
            name,
            justify="right" if i >= 4 or name == "batch" else "left",
            overflow="fold",
            no_wrap=name in ("model", "config", "status"),
        )
    for r, row in zip(run.results, rows, strict=True):
        style = None if r.ok else ("yellow" if r.status == "skipped" else "red")
        table.add_row(*row, style=style)
    console.print(table)
    for note in notes:
        console.print(note, markup=False, highlight=False)
    for note in peak_notes(run):
        console.print(f"[dim]peak {note}[/]")
    for r in run.results:
        if r.layers:
            lt = Table(title=f"per layer: {describe_config(r.config)}", title_justify="left")
            for name in ("layer", "op", "ms", "share", "MMACs", "GFLOP/s"):
                lt.add_column(name, justify="left" if name in ("layer", "op") else "right")
            for layer in r.layers:
                gflops = 2 * layer.macs * r.config.batch / (layer.time_ms / 1000) / 1e9 if layer.macs and layer.time_ms else None
                lt.add_row(
                    layer.name,
                    layer.op,
                    f"{layer.time_ms:.3f}",
                    f"{layer.share * 100:.1f}%",
                    _fmt(layer.macs, ".1f", 1e-6),
                    _fmt(gflops, ".1f"),
                )
            console.print(lt)


def save(run: BenchRun, path: str | os.PathLike, fmt: str | None = None) -> Path:
    """Write ``run`` atomically as json (default, or by suffix), csv or md."""
    from deploykit.fileio import atomic_write_text

    path = Path(path)
    fmt = fmt or {".csv": "csv", ".md": "markdown"}.get(path.suffix.lower(), "json")
    text = {"json": run.to_json, "csv": lambda: to_csv(run), "markdown": lambda: to_markdown(run)}[fmt]()
    return atomic_write_text(path, text)


if __name__ == "__main__":  # python -m deploykit.bench --worker JOB OUT
    sys.exit(worker_main(sys.argv[1:]))
