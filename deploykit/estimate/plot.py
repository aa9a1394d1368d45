"""Charts of an :class:`EstimateResult`: the roofline with one point per layer, and the
per-model latency bound across devices and precisions.

matplotlib (the ``[plot]`` extra) is imported inside the functions; figures are drawn with the
Agg canvas (no pyplot, no display) and written atomically.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence
from pathlib import Path

from deploykit._deps import require
from deploykit.analyze.plot import KIND_COLORS, check_plot_path
from deploykit.estimate.api import EstimateResult
from deploykit.estimate.roofline import ModelEstimate
from deploykit.fileio import atomic_write_bytes

PRECISION_COLORS = {"fp32": "#1f77b4", "fp16": "#2ca02c", "int8": "#d62728"}

__all__ = ["check_plot_path", "plot_latency_bounds", "plot_roofline", "save_charts"]


def _figure(width: float, height: float):
    require("matplotlib", "--plot")
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _write(fig, path: Path, dpi: int = 120) -> Path:
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lower().lstrip("."), dpi=dpi)
    return atomic_write_bytes(path, buf.getvalue())


def _grid(n: int, cols: int = 3) -> tuple[int, int]:
    cols = max(1, min(cols, n))
    return math.ceil(n / cols), cols


def _draw_roofline(ax, item: ModelEstimate) -> None:
    spec = item.device
    points = [layer for layer in item.layers if layer.flops and layer.bytes]
    low = min((p.intensity for p in points), default=0.1) / 3
    high = max(max((p.intensity for p in points), default=10) * 3, spec.ridge_intensity * 10)
    xs = [low * (high / low) ** (i / 200) for i in range(201)]
    ax.plot(xs, [min(spec.peak_gflops, x * spec.bandwidth_gbps) for x in xs], color="black",
            lw=1.6, label=f"roof: {spec.peak_gflops / 1e3:,.1f} TFLOP/s, {spec.bandwidth_gbps:,.0f} GB/s")
    if spec.vector_gflops and spec.vector_gflops != spec.peak_gflops:
        ax.plot(xs, [min(spec.vector_gflops, x * spec.bandwidth_gbps) for x in xs], color="gray",
                lw=1.0, ls="--", label=f"vector roof (depthwise, pooling): {spec.vector_gflops / 1e3:,.1f}")
    for kind, color in KIND_COLORS.items():
        chosen = [p for p in points if p.kind == kind]
        if chosen:
            ax.scatter([p.intensity for p in chosen], [p.attainable_gflops for p in chosen],
                       s=18, color=color, alpha=0.8, label=kind, zorder=3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("arithmetic intensity (FLOP / byte)")
    ax.set_ylabel("attainable GFLOP/s")
    ax.set_title(f"{item.model} on {spec.device} {item.precision}, batch {item.batch}", fontsize=10)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(fontsize=7, loc="lower right")


def plot_roofline(items: Sequence[ModelEstimate], path: str | os.PathLike) -> Path:
    """One roofline panel per estimate: the device's roofs and one point per layer."""
    path = check_plot_path(path)
    rows, cols = _grid(len(items))
    fig = _figure(5.6 * cols, 4.4 * rows)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, item in zip(axes, items, strict=False):
        _draw_roofline(ax, item)
    for ax in axes[len(items):]:
        ax.set_visible(False)
    return _write(fig, path)


def plot_latency_bounds(result: EstimateResult, path: str | os.PathLike) -> Path:
    """Per model and batch: the latency bound on each device, one bar per precision (log)."""
    path = check_plot_path(path)
    models = list(dict.fromkeys(item.model for item in result.estimates))
    batches = list(dict.fromkeys(item.batch for item in result.estimates))
    devices = list(dict.fromkeys(item.device.device for item in result.estimates))
    precisions = list(dict.fromkeys(item.precision for item in result.estimates))
    fig = _figure(max(6.0, 0.9 * len(devices) * len(batches) + 2), 3.4 * len(models))
    axes = fig.subplots(len(models), len(batches), squeeze=False)
    width = 0.8 / len(precisions)
    for row, model in enumerate(models):
        for col, batch in enumerate(batches):
            ax = axes[row][col]
            for k, precision in enumerate(precisions):
                values = [result.find(model, d, precision, batch).latency_ms for d in devices]
                xs = [i + (k - (len(precisions) - 1) / 2) * width for i in range(len(devices))]
                ax.bar(xs, values, width, color=PRECISION_COLORS.get(precision), label=precision)
            ax.set_yscale("log")
            ax.set_xticks(range(len(devices)), devices, rotation=30, fontsize=8)
            ax.set_ylabel("latency bound (ms)")
            ax.set_title(f"{model}, batch {batch}", fontsize=10)
            ax.grid(axis="y", which="both", alpha=0.25)
    axes[0][0].legend(fontsize=8)
    return _write(fig, path)


def roofline_items(result: EstimateResult) -> list[ModelEstimate]:
    """The estimates the roofline chart draws: the first model and precision at the largest
    batch, one panel per device."""
    first = result.estimates[0]
    batch = max(item.batch for item in result.estimates)
    return [
        item
        for item in result.estimates
        if item.model == first.model and item.precision == first.precision and item.batch == batch
    ]


def save_charts(result: EstimateResult, path: str | os.PathLike) -> list[Path]:
    """The roofline to ``path`` and the latency bounds beside it (``<stem>_latency<suffix>``)."""
    path = check_plot_path(path)
    latency = path.with_name(f"{path.stem}_latency{path.suffix}")
    return [plot_roofline(roofline_items(result), path), plot_latency_bounds(result, latency)]


REPORT_CHARTS = ("roofline.png", "latency_bound.png")


def report_charts(models: Sequence[str], out: Path, batches: Sequence[int] = (1, 64)) -> dict[str, Path | None]:
    """The two roofline charts of the trade-off report for the zoo models it measured (the
    first four): the roofline of the first on every device, and every model's latency bound
    across devices and precisions. None for each when no zoo model was measured."""
    from deploykit.estimate import estimate
    from deploykit.zoo import list_models

    known = [m for m in dict.fromkeys(models) if m in list_models()][:4]
    if not known:
        return dict.fromkeys(REPORT_CHARTS)
    result = estimate(known, batches=list(batches))
    return {
        "roofline.png": plot_roofline(roofline_items(result), out / "roofline.png"),
        "latency_bound.png": plot_latency_bounds(result, out / "latency_bound.png"),
    }
