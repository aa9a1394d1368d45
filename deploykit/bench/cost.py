"""Analytic cost of a configuration (MACs from ``deploykit.analyze``) and the memory check made
before a worker allocates anything.

Achieved GFLOP/s = 2 x MACs per image x batch / mean latency.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from deploykit.bench.config import BenchConfig
from deploykit.machine import available_memory_bytes


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


def traffic_bytes_per_batch(batch: int, cost: dict[str, Any] | None) -> int | None:
    """The least memory traffic of one batch in the model the copy-bandwidth fraction uses:
    FP32 weights read once plus every layer's FP32 output written once and read once."""
    if cost is None or not cost.get("activation_bytes"):
        return None
    return int(cost["params"] * 4 + batch * 2 * cost["activation_bytes"])


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
