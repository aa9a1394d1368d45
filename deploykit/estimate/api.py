"""``estimate``: roofline bounds of zoo models across devices, precisions and batch sizes."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from deploykit.errors import UsageError
from deploykit.estimate.devices import PRECISIONS, DeviceSpec, device_names, get_device
from deploykit.estimate.roofline import ModelEstimate, estimate_stats

DEFAULT_DEVICES = ("orin-nano", "agx-orin", "t4", "l4", "a100", "h100", "h200", "cpu")
DEFAULT_BATCHES = (1, 8, 64)


@dataclass(frozen=True)
class EstimateResult:
    """Every (model, device, precision, batch) estimate of one call, in that nesting order."""

    estimates: tuple[ModelEstimate, ...]
    input_size: int | tuple[int, int, int] | None = None
    threads: int | None = None  # thread count of the cpu ceilings, when cpu was asked for

    @property
    def devices(self) -> tuple[DeviceSpec, ...]:
        seen: dict[tuple[str, str], DeviceSpec] = {}
        for item in self.estimates:
            seen.setdefault((item.device.device, item.precision), item.device)
        return tuple(seen.values())

    def find(self, model: str, device: str, precision: str, batch: int) -> ModelEstimate:
        for item in self.estimates:
            key = (item.model, item.device.device, item.precision, item.batch)
            if key == (model, device, precision, batch):
                return item
        raise KeyError((model, device, precision, batch))

    def to_dict(self, layers: bool = True) -> dict[str, Any]:
        return {
            "schema": 1,
            "kind": "roofline-estimate",
            "input_size": self.input_size,
            "devices": [spec.to_dict() for spec in self.devices],
            "estimates": [item.to_dict(layers=layers) for item in self.estimates],
        }


def _names(value: str | Iterable[str] | None, default: Sequence[str]) -> list[str]:
    if value is None:
        return list(default)
    if isinstance(value, str):
        value = value.split(",")
    names = [str(v).strip().lower() for v in value if str(v).strip()]
    if not names:
        raise UsageError("an empty list was given", hint="e.g. --device h100,cpu")
    return list(dict.fromkeys(names))


def parse_batches(value: str | Iterable[int] | None) -> list[int]:
    """``"1,8,64"`` or ``[1, 8]`` -> positive batch sizes (UsageError otherwise)."""
    if value is None:
        return list(DEFAULT_BATCHES)
    items = value.split(",") if isinstance(value, str) else list(value)
    try:
        batches = [int(str(item).strip()) for item in items if str(item).strip()]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        raise UsageError(f"batch sizes must be positive integers, got {value!r}", hint="e.g. --batch 1,8,64")
    return list(dict.fromkeys(batches))


def _check_names(devices: list[str], precisions: list[str]) -> None:
    known = device_names()
    for device in devices:
        if device not in known:
            raise UsageError(f"unknown device {device!r}", hint=f"choose from {', '.join(known)}")
    for precision in precisions:
        if precision not in PRECISIONS:
            raise UsageError(
                f"unknown precision {precision!r}", hint=f"choose from {', '.join(PRECISIONS)}"
            )


def estimate(
    models: str | Iterable[str],
    devices: str | Iterable[str] | None = None,
    precisions: str | Iterable[str] | None = None,
    batches: str | Iterable[int] | None = None,
    input_size: int | tuple[int, int, int] | None = None,
    threads: int | None = None,
) -> EstimateResult:
    """Roofline bounds for every model x device x precision x batch.

    ``models``, ``devices`` and ``precisions`` take lists or comma-separated strings; devices
    default to every GPU in the table plus ``cpu`` (this machine, ceilings measured now at
    ``threads``, default all cores). Unknown names raise UsageError before anything is measured.
    """
    from deploykit.analyze import analyze_model

    model_names = _names(models, ())
    device_list = _names(devices, DEFAULT_DEVICES)
    precision_list = _names(precisions, PRECISIONS)
    batch_list = parse_batches(batches)
    _check_names(device_list, precision_list)
    stats = [analyze_model(name, input_size=input_size) for name in model_names]
    estimates = []
    for model in stats:
        for device in device_list:
            for precision in precision_list:
                spec = get_device(device, precision, threads=threads)
                estimates.extend(estimate_stats(model, spec, batch) for batch in batch_list)
    return EstimateResult(estimates=tuple(estimates), input_size=input_size, threads=threads)
