"""Renderers of an :class:`EstimateResult`: rich tables (summary, per layer, devices) and JSON.

Each function takes the frozen result and returns text or a rich renderable; none computes.
"""

from __future__ import annotations

import json

from deploykit.estimate.api import EstimateResult
from deploykit.estimate.roofline import ModelEstimate

SUMMARY_COLUMNS = (
    "Model", "Device", "Prec", "Batch", "Bound (ms)", "img/s ceiling", "GFLOP", "MB moved",
    "Memory-bound time",
)
LAYER_COLUMNS = (
    "Layer", "Kind", "Engine", "MMACs", "KB moved", "FLOP/B", "Bound", "Time (us)", "Share",
)


def _fmt_ips(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:,.2f}"


def summary_cells(item: ModelEstimate) -> list[str]:
    return [
        item.model,
        item.device.device,
        item.precision,
        str(item.batch),
        f"{item.latency_ms:,.3f}",
        _fmt_ips(item.images_per_s),
        f"{item.flops / 1e9:,.2f}",
        f"{item.bytes / 1e6:,.1f}",
        f"{item.memory_bound_share:.0%}",
    ]


def layer_cells(item: ModelEstimate) -> list[list[str]]:
    total = item.seconds or 1.0
    return [
        [
            layer.name,
            layer.kind,
            layer.engine,
            f"{layer.macs / 1e6:,.1f}",
            f"{layer.bytes / 1e3:,.1f}",
            f"{layer.intensity:,.1f}",
            layer.bound,
            f"{layer.seconds * 1e6:,.2f}",
            f"{layer.seconds / total:.1%}",
        ]
        for layer in item.layers
    ]


def _table(title: str, columns: tuple[str, ...], rows: list[list[str]]):
    from rich.table import Table

    table = Table(title=title, title_justify="left")
    for index, name in enumerate(columns):
        table.add_column(name, justify="left" if index < 3 else "right", no_wrap=True)
    for row in rows:
        table.add_row(*row)
    return table


def summary_table(result: EstimateResult):
    """One row per model, device, precision and batch."""
    rows = [summary_cells(item) for item in result.estimates]
    return _table("Roofline bound (no fusion, no caches, no launch overheads)", SUMMARY_COLUMNS, rows)


def layer_table(item: ModelEstimate):
    """Every layer of one estimate."""
    title = f"{item.model} on {item.device.device} {item.precision}, batch {item.batch}"
    return _table(title, LAYER_COLUMNS, layer_cells(item))


def device_table(result: EstimateResult):
    """The roofs used, with the source of each peak and bandwidth."""
    rows = [
        [
            spec.device,
            spec.precision,
            spec.title,
            f"{spec.peak_gflops / 1e3:,.2f}",
            f"{spec.bandwidth_gbps:,.1f}",
            f"{spec.ridge_intensity:,.1f}",
            spec.power_mode or "",
            "measured now" if spec.measured else "datasheet",
        ]
        for spec in result.devices
    ]
    columns = ("Device", "Prec", "Title", "Peak (TFLOP/s)", "BW (GB/s)", "Ridge FLOP/B", "Power mode", "From")
    return _table("Devices", columns, rows)


def result_json(result: EstimateResult, layers: bool = True) -> str:
    return json.dumps(result.to_dict(layers=layers), indent=2)
