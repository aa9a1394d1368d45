"""Measurements against the roofline: efficiency = measured throughput / bound throughput.

:func:`check_throughput` puts one measured images/s beside the per-layer roofline of the same
model, precision and batch on the same device (``efficiency`` = measured / roofline) and beside
the hard floor (``holds``: no measurement may beat the floor; one that beats the per-layer
roofline shows fusion or caches keeping activations on chip, which that model ignores), and
:func:`device_for_gpu` maps a GPU name (as torch or nvidia-smi report it) to a table row whose
figures are at least that GPU's (an H100 PCIe is bounded by the H100 SXM row: a looser bound,
never a wrong one).
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

from deploykit.estimate.devices import CPU, PRECISIONS, DeviceSpec, get_device
from deploykit.estimate.roofline import estimate_stats

# (pattern on the GPU name, table device); first match wins.
GPU_PATTERNS = (
    (r"H200", "h200"),
    (r"H100", "h100"),
    (r"A100", "a100"),
    (r"\bL4\b", "l4"),
    (r"\bT4\b", "t4"),
    (r"Orin.*Nano", "orin-nano"),
    (r"Orin", "agx-orin"),
)


@dataclass(frozen=True)
class BoundCheck:
    """One measured throughput against its roofline bound."""

    label: str
    model: str
    device: str
    precision: str
    batch: int
    measured_ips: float
    bound_ips: float  # the per-layer roofline's images/s ceiling
    floor_ips: float  # the hard ceiling (compute alone, or unavoidable traffic)
    source: str  # where the measurement comes from

    @property
    def efficiency(self) -> float:
        return self.measured_ips / self.bound_ips if self.bound_ips else float("nan")

    @property
    def holds(self) -> bool:
        """True when the measurement is at or below the hard ceiling."""
        return self.measured_ips <= self.floor_ips

    @property
    def within_roofline(self) -> bool:
        """True when the measurement is at or below the per-layer roofline too."""
        return self.measured_ips <= self.bound_ips

    def to_dict(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "efficiency": self.efficiency,
            "holds": self.holds,
            "within_roofline": self.within_roofline,
        }


def device_for_gpu(name: str | None, memory_bytes: int | None = None) -> str | None:
    """The roofline table device for a GPU name, or None when the table has none."""
    if not name:
        return None
    for pattern, device in GPU_PATTERNS:
        if re.search(pattern, name, re.IGNORECASE):
            if device == "agx-orin" and memory_bytes and memory_bytes < 12e9:
                return "orin-nano"  # torch names every Orin module "Orin"; memory tells them apart
            return device
    return None


@lru_cache(maxsize=64)
def _stats(model: str, input_size: int | None):
    from deploykit.analyze import analyze_model

    return analyze_model(model, input_size=input_size)


def ceiling_ips(model: str, spec: DeviceSpec, batch: int, input_size: int | None = None) -> tuple[float, float]:
    """The per-layer roofline's and the hard floor's images/s ceilings of ``model``."""
    item = estimate_stats(_stats(model, input_size), spec, batch)
    return item.images_per_s, item.floor_images_per_s


def check_throughput(
    label: str,
    model: str,
    spec: DeviceSpec,
    batch: int,
    measured_ips: float,
    source: str,
    input_size: int | None = None,
) -> BoundCheck:
    """Measured images/s beside the bound of the same model, precision and batch."""
    roofline, floor = ceiling_ips(model, spec, batch, input_size)
    return BoundCheck(
        label=label,
        model=model,
        device=spec.device,
        precision=spec.precision,
        batch=batch,
        measured_ips=float(measured_ips),
        bound_ips=roofline,
        floor_ips=floor,
        source=source,
    )


def spec_for_run(device: str, precision: str, threads: int | None = None) -> DeviceSpec | None:
    """The bound's device for a measured run: a table GPU, or ``cpu`` measured now at
    ``threads``; None for a precision the table has no row for (e.g. bf16)."""
    if precision not in PRECISIONS:
        return None
    return get_device(device, precision, threads=threads if device == CPU else None)


def _recorded_ceilings(result: Any) -> dict[str, Any] | None:
    """Ceilings measured beside a bench run (in the worker), when the run recorded them."""
    found = getattr(result, "ceilings", None) or (getattr(result, "runner", None) or {}).get("ceilings")
    if hasattr(found, "to_dict"):
        found = found.to_dict()
    return found if isinstance(found, dict) and found.get("sgemm_gflops") else None


def bench_spec(result: Any, machine: dict[str, Any]) -> DeviceSpec | None:
    """The roofline device of a bench result: its GPU's table row, or this CPU at the run's
    thread count (its recorded ceilings when it has them, else measured now); None otherwise."""
    from deploykit.estimate.devices import cpu_from_ceilings

    config = result.config
    precision = config.precision
    if precision not in PRECISIONS:
        return None
    if str(config.device).startswith("cuda"):
        gpus = machine.get("gpus") or [{}]
        device = device_for_gpu(gpus[0].get("name"), gpus[0].get("memory_bytes"))
        return get_device(device, precision) if device else None
    recorded = _recorded_ceilings(result)
    if recorded and precision == "fp32":
        return cpu_from_ceilings(precision, recorded["sgemm_gflops"], recorded["copy_gbps"],
                                 int(recorded.get("threads") or 1))
    if not is_this_cpu(machine):
        return None  # ceilings measured here say nothing about a run on other hardware
    threads = (result.runner or {}).get("threads") or config.threads
    return get_device(CPU, precision, threads=threads)


def is_this_cpu(machine: dict[str, Any]) -> bool:
    """True when a recorded machine has this machine's CPU model and ISA flags."""
    from deploykit.machine import describe_machine

    here = describe_machine()
    return machine.get("cpu_model") == here.cpu_model and set(machine.get("cpu_flags") or ()) == set(
        here.cpu_flags
    )


def bench_efficiency(result: Any, machine: dict[str, Any]) -> float | None:
    """Measured images/s of a bench result over its roofline ceiling; None when the device or
    model is not one the roofline knows."""
    from deploykit.errors import DeployKitError

    if not getattr(result, "ok", False) or not result.throughput_ips:
        return None
    try:
        spec = bench_spec(result, machine)
        if spec is None:
            return None
        config = result.config
        roofline, _ = ceiling_ips(config.model, spec, config.batch, config.input_size)
    except (DeployKitError, ImportError):  # not a zoo model; torch or analyze not importable
        return None
    return result.throughput_ips / roofline
