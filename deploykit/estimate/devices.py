"""The roofline device table: one row per device and precision, every value with its source.

GPU rows come from ``deploykit/data/roofline_devices.json`` (datasheet figures, dense, no
sparsity). ``cpu`` is this machine: its rows are filled at run time with ceilings measured by
:mod:`deploykit.ceilings` at the thread count asked for, so a bound for this CPU is always
measured the same way as the runs it is compared with.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from deploykit.errors import UsageError

TABLE_JSON = Path(__file__).resolve().parent.parent / "data" / "roofline_devices.json"
PRECISIONS = ("fp32", "fp16", "int8")
BYTES_PER_ELEMENT = {"fp32": 4, "fp16": 2, "int8": 1}
CPU = "cpu"


@dataclass(frozen=True)
class DeviceSpec:
    """One device at one precision: the two roofs (compute, memory) and where each came from."""

    device: str  # the key users type: "h100", "orin-nano", "cpu"
    precision: str
    title: str
    peak_gflops: float  # dense tensor-core (GPU) or measured GEMM (CPU) rate, GFLOP/s or GOP/s
    vector_gflops: float  # rate of depthwise convolutions and pooling (CUDA cores / CPU FMAs)
    bandwidth_gbps: float  # DRAM bandwidth, GB/s
    memory_gb: float | None
    power_mode: str | None
    sources: dict[str, str]  # field -> source
    measured: bool = False  # True for the cpu rows (ceilings measured in this process)

    @property
    def ridge_intensity(self) -> float:
        """FLOP per byte where the compute roof meets the memory roof."""
        return self.peak_gflops / self.bandwidth_gbps

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ridge_intensity": self.ridge_intensity}


@lru_cache(maxsize=1)
def _table() -> tuple[dict[str, Any], ...]:
    return tuple(json.loads(TABLE_JSON.read_text())["rows"])


def device_names() -> tuple[str, ...]:
    """Every device the table knows, in table order (``cpu`` last)."""
    return tuple(dict.fromkeys(row["device"] for row in _table()))


def _row(device: str, precision: str) -> dict[str, Any]:
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", hint=f"choose from {', '.join(PRECISIONS)}")
    for row in _table():
        if row["device"] == device and row["precision"] == precision:
            return row
    raise UsageError(
        f"unknown device {device!r}", hint=f"choose from {', '.join(device_names())}"
    )


def _spec(row: dict[str, Any]) -> DeviceSpec:
    sources = {k[: -len("_source")]: v for k, v in row.items() if k.endswith("_source")}
    sources["confirmed"] = row.get("confirmed", "")
    return DeviceSpec(
        device=row["device"],
        precision=row["precision"],
        title=row["title"],
        peak_gflops=float(row["peak_tflops"] or 0.0) * 1000.0,
        vector_gflops=float(row["vector_tflops"] or 0.0) * 1000.0,
        bandwidth_gbps=float(row["bandwidth_gbps"] or 0.0),
        memory_gb=row.get("memory_gb"),
        power_mode=row.get("power_mode"),
        sources=sources,
    )


def get_device(device: str, precision: str, threads: int | None = None) -> DeviceSpec:
    """The spec of ``device`` at ``precision``; ``cpu`` is measured now at ``threads``."""
    spec = _spec(_row(device, precision))
    if device == CPU:
        return measured_cpu(spec, threads)
    return spec


def _rates(threads: int | None) -> tuple[int, dict[str, float]]:
    """SGEMM, copy, int8 and bf16 GEMM rates measured now at ``threads`` (0 where absent)."""
    from deploykit.ceilings import measure_cpu_ceilings, measure_cpu_gemm

    ceilings = measure_cpu_ceilings(threads)
    rates = {"sgemm": ceilings.sgemm_gflops, "copy": ceilings.copy_gbps}
    for kind in ("int8", "bf16"):
        rates[kind] = measure_cpu_gemm(kind, ceilings.threads) or 0.0
    return ceilings.threads, rates


@lru_cache(maxsize=16)
def _cpu_ceilings(threads: int | None) -> tuple[float, float, dict[str, float | None], int]:
    """This CPU's roofs at ``threads``. With several threads each rate is also taken from one
    thread times the thread count, whichever is higher: on a busy, time-sliced VM a kernel
    using every thread stalls whenever one of them waits for a descheduled other (measured
    here: 2.6 GFLOP/s on 2 threads beside 105 on one), and per-core rate x cores is an upper
    bound that does not collapse."""
    used, rates = _rates(threads)
    if used > 1:
        _, single = _rates(1)
        rates = {k: max(v, single[k] * used) for k, v in rates.items()}
    low = {"int8": rates["int8"] or None, "bf16": rates["bf16"] or None}
    return rates["sgemm"], rates["copy"], low, used


def cpu_peak(precision: str, sgemm: float, low: dict[str, float | None]) -> float:
    """The compute roof of this CPU at a precision: FP16 runs as the faster of FP32 and BF16
    math; INT8 at the measured int8 GEMM rate (never below the SGEMM rate)."""
    if precision == "fp16":
        return max(sgemm, low.get("bf16") or 0.0)
    if precision == "int8":
        return max(sgemm, low.get("int8") or 0.0)
    return sgemm


def measured_cpu(spec: DeviceSpec, threads: int | None = None) -> DeviceSpec:
    """The ``cpu`` row filled with ceilings measured in this process (cached per thread count)."""
    sgemm, copy_gbps, low, used = _cpu_ceilings(threads)
    peak = cpu_peak(spec.precision, sgemm, low)
    return cpu_spec_from(spec, peak, copy_gbps, used)


def cpu_from_ceilings(precision: str, peak: float, copy_gbps: float, threads: int) -> DeviceSpec:
    """The ``cpu`` row from ceilings recorded elsewhere (e.g. beside a benchmark run)."""
    return cpu_spec_from(_spec(_row(CPU, precision)), peak, copy_gbps, threads)


def cpu_spec_from(spec: DeviceSpec, peak: float, copy_gbps: float, threads: int) -> DeviceSpec:
    """A ``cpu`` row with the given ceilings (measured now or recorded beside a benchmark)."""
    from deploykit.machine import describe_machine

    machine = describe_machine()
    memory = machine.memory_bytes / 1e9 if machine.memory_bytes else None
    return replace(
        spec,
        title=f"{machine.cpu_model}, {threads} thread{'s' if threads != 1 else ''}",
        peak_gflops=peak,
        vector_gflops=peak,
        bandwidth_gbps=copy_gbps,
        memory_gb=memory,
        measured=True,
    )
