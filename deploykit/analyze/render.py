"""Renderers of ``ModelStats``: rich table, JSON, CSV, Markdown, and the side-by-side comparison.

Every function takes the frozen result objects and returns text (or a rich renderable); none
of them computes anything. Units: memory in KiB/MiB (1024), MACs in millions/billions.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any

from deploykit.analyze.catalog import ZooEntry
from deploykit.analyze.stats import ModelStats

# (header, right-aligned) of the per-layer table, the lecture's columns
LAYER_COLUMNS: tuple[tuple[str, bool], ...] = (
    ("Layer", False),
    ("Kind", False),
    ("Input", True),
    ("Filters", True),
    ("Kernel", True),
    ("Stride", True),
    ("Pad", True),
    ("Output", True),
    ("Memory (KiB)", True),
    ("Params", True),
    ("MACs (M)", True),
)


def fmt_shape(shape: Sequence[int] | None) -> str:
    return "x".join(str(s) for s in shape) if shape else ""


def fmt_pair(value: Any) -> str:
    """(11, 11) -> '11'; (1, 7) -> '1x7'; 'same' -> 'same'; None -> ''."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    values = tuple(value)
    if values and all(v == values[0] for v in values):
        return str(values[0])
    return "x".join(str(v) for v in values)


def fmt_kib(nbytes: int) -> str:
    return f"{nbytes / 1024:,.1f}"


def fmt_mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:,.1f} MiB"


def fmt_millions(n: int) -> str:
    return f"{n / 1e6:,.1f}"


def fmt_percent(x: float) -> str:
    return f"{100 * x:.1f}%"


def print_renderable(renderable, console=None) -> None:
    """Print a rich table uncropped: when stdout is not a terminal (a pipe, a file, a test),
    widen the console to the table's natural width instead of rich's default 80 columns."""
    from rich.console import Console
    from rich.measure import Measurement

    console = console or Console(soft_wrap=False)
    if not console.is_terminal:
        width = Measurement.get(console, console.options.update(width=10_000), renderable).maximum
        console.width = max(console.width, width)
    console.print(renderable)


def layer_cells(stats: ModelStats) -> list[list[str]]:
    """The per-layer table as strings, one list per row, in LAYER_COLUMNS order."""
    rows = []
    for r in stats.layers:
        rows.append(
            [
                r.name,
                r.kind,
                fmt_shape(r.in_shape),
                "" if r.filters is None else str(r.filters),
                fmt_pair(r.kernel),
                fmt_pair(r.stride),
                fmt_pair(r.padding),
                fmt_shape(r.out_shape),
                fmt_kib(r.activation_bytes),
                f"{r.params:,}",
                fmt_millions(r.macs),
            ]
        )
    return rows


def total_cells(stats: ModelStats) -> list[str]:
    t = stats.totals
    return [
        "total",
        "",
        fmt_shape(stats.input_shape),
        "",
        "",
        "",
        "",
        "",
        fmt_kib(int(t["activation_bytes"])),
        f"{int(t['params']):,}",
        fmt_millions(int(t["macs"])),
    ]


def summary_line(stats: ModelStats, with_model: bool = True) -> str:
    """Peak memory, where the params and the compute are, in one line."""
    t = stats.totals
    peak = max(stats.layers, key=lambda r: r.activation_bytes, default=None)
    parts = [f"{stats.model} @ {fmt_shape(stats.input_shape)}"] if with_model else []
    parts += [
        f"{int(t['params']) / 1e6:,.2f} M params",
        f"{int(t['macs']) / 1e9:,.3f} GMACs",
        f"activations {fmt_mib(int(t['activation_bytes']))} "
        f"(peak {fmt_kib(int(t['peak_activation_bytes']))} KiB"
        + (f" at {peak.name})" if peak else ")"),
        f"params in FC {fmt_percent(t['fc_params_share'])}",
        f"MACs in conv {fmt_percent(t['conv_macs_share'])}",
    ]
    if t.get("params_not_run"):
        parts.append(f"{int(t['params_not_run']):,} params in modules the forward pass never runs")
    return " · ".join(parts)


def layer_table(stats: ModelStats):
    """A rich Table of the layers with a totals footer."""
    from rich.table import Table

    table = Table(
        title=f"{stats.model} @ {fmt_shape(stats.input_shape)}",
        caption=summary_line(stats, with_model=False),
        title_justify="left",
        caption_justify="left",
        show_footer=True,
    )
    for (header, right), footer in zip(LAYER_COLUMNS, total_cells(stats), strict=True):
        table.add_column(header, footer=footer, justify="right" if right else "left")
    for cells in layer_cells(stats):
        table.add_row(*cells)
    return table


def _markdown(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[bool]) -> str:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"

    out = [line(headers), "|" + "|".join("---:" if r else "---" for r in right) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out) + "\n"


def layer_markdown(stats: ModelStats) -> str:
    """A Markdown table of the layers; the totals are the last row (bold)."""
    headers = [h for h, _ in LAYER_COLUMNS]
    right = [r for _, r in LAYER_COLUMNS]
    totals = [f"**{c}**" if c else "" for c in total_cells(stats)]
    return f"{summary_line(stats)}\n\n" + _markdown(headers, [*layer_cells(stats), totals], right)


CSV_FIELDS = (
    "model", "name", "kind", "in_shape", "out_shape", "filters", "kernel", "stride", "padding",
    "params", "macs", "activation_bytes",
)


def layers_csv(stats_list: Sequence[ModelStats]) -> str:
    """One CSV row per layer (raw counts and bytes), with a ``model`` column."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for stats in stats_list:
        for r in stats.layers:
            writer.writerow(
                [
                    stats.model, r.name, r.kind, fmt_shape(r.in_shape), fmt_shape(r.out_shape),
                    "" if r.filters is None else r.filters,
                    "x".join(map(str, r.kernel)) if r.kernel else "",
                    "x".join(map(str, r.stride)) if r.stride else "",
                    fmt_pair(r.padding) if isinstance(r.padding, str)
                    else ("x".join(map(str, r.padding)) if r.padding else ""),
                    r.params, r.macs, r.activation_bytes,
                ]
            )
    return buf.getvalue()


def layers_json(stats_list: Sequence[ModelStats]) -> str:
    """The JSON contract: one object for one model, a list of them for several."""
    docs = [s.to_dict() for s in stats_list]
    return json.dumps(docs[0] if len(docs) == 1 else docs, indent=2)


# --------------------------------------------------------------------------- --compare

COMPARE_METRICS: tuple[tuple[str, str], ...] = (
    ("input", "Input"),
    ("params", "Params (M)"),
    ("macs", "MACs (G)"),
    ("peak_activation_bytes", "Peak activation, one layer (MiB)"),
    ("activation_bytes", "Total activations (MiB)"),
    ("fc_params_share", "Params in FC layers"),
    ("conv_macs_share", "MACs in conv layers"),
    ("layers", "Rows"),
)


def _compare_value(stats: ModelStats, key: str) -> str:
    t = stats.totals
    if key == "input":
        return fmt_shape(stats.input_shape)
    if key == "layers":
        return str(len(stats.layers))
    if key == "params":
        return f"{int(t['params']) / 1e6:,.1f}"
    if key == "macs":
        return f"{int(t['macs']) / 1e9:,.2f}"
    if key in ("peak_activation_bytes", "activation_bytes"):
        return f"{int(t[key]) / 2**20:,.2f}"
    return fmt_percent(float(t[key]))


def compare_cells(stats_list: Sequence[ModelStats]) -> tuple[list[str], list[list[str]]]:
    headers = ["", *(s.model for s in stats_list)]
    rows = [[label, *(_compare_value(s, key) for s in stats_list)] for key, label in COMPARE_METRICS]
    return headers, rows


def compare_table(stats_list: Sequence[ModelStats]):
    from rich.table import Table

    headers, rows = compare_cells(stats_list)
    table = Table(title="Model totals (one image, FP32 activations)", title_justify="left")
    table.add_column(headers[0])
    for h in headers[1:]:
        table.add_column(h, justify="right")
    for r in rows:
        table.add_row(*r)
    return table


def compare_markdown(stats_list: Sequence[ModelStats]) -> str:
    headers, rows = compare_cells(stats_list)
    return _markdown(headers, rows, [False, *([True] * (len(headers) - 1))])


def compare_dicts(stats_list: Sequence[ModelStats]) -> list[dict[str, Any]]:
    return [
        {"model": s.model, "input_shape": list(s.input_shape), "totals": dict(s.totals)}
        for s in stats_list
    ]


def compare_json(stats_list: Sequence[ModelStats]) -> str:
    return json.dumps(compare_dicts(stats_list), indent=2)


COMPARE_CSV_FIELDS = (
    "model", "input_shape", "params", "macs", "peak_activation_bytes", "activation_bytes",
    "fc_params_share", "conv_macs_share",
)


def compare_csv(stats_list: Sequence[ModelStats]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COMPARE_CSV_FIELDS)
    for s in stats_list:
        t = s.totals
        writer.writerow([s.model, fmt_shape(s.input_shape), *(t[k] for k in COMPARE_CSV_FIELDS[2:])])
    return buf.getvalue()


# --------------------------------------------------------------------------- deploykit models

ZOO_COLUMNS: tuple[tuple[str, bool], ...] = (
    ("Model", False),
    ("Family", False),
    ("Year", True),
    ("Input", True),
    ("Params (M)", True),
    ("GMACs", True),
    ("Top-1 (%)", True),
    ("torchvision", False),
)


def render_stats(stats_list: Sequence[ModelStats], fmt: str, *, compare: bool = False) -> str:
    """``analyze``'s text output: per-layer rows, or side-by-side totals with ``compare``, as
    ``json``, ``csv`` or ``markdown`` (the ``table`` format is :func:`print_stats`)."""
    if compare:
        renderers = {"json": compare_json, "csv": compare_csv, "markdown": compare_markdown}
    else:
        renderers = {
            "json": layers_json,
            "csv": layers_csv,
            "markdown": lambda results: "\n".join(layer_markdown(s) for s in results),
        }
    return renderers[fmt](stats_list)


def print_stats(stats_list: Sequence[ModelStats], console=None, *, compare: bool = False) -> None:
    """``analyze``'s rich tables: one per model, or one comparison table."""
    tables = [compare_table(stats_list)] if compare else [layer_table(s) for s in stats_list]
    for table in tables:
        print_renderable(table, console)


def zoo_cells(entries: Sequence[ZooEntry]) -> list[list[str]]:
    return [
        [
            e.name,
            e.family,
            str(e.year),
            str(e.input_size),
            f"{e.params / 1e6:,.1f}",
            f"{e.macs / 1e9:,.2f}",
            "" if e.top1 is None else f"{e.top1:.1f}",
            e.torchvision_name or "",
        ]
        for e in entries
    ]


def zoo_table(entries: Sequence[ZooEntry]):
    from rich.table import Table

    table = Table(
        title="The zoo (params and MACs analyzed on the meta device at each model's input size)",
        title_justify="left",
    )
    for header, right in ZOO_COLUMNS:
        table.add_column(header, justify="right" if right else "left")
    for cells in zoo_cells(entries):
        table.add_row(*cells)
    return table


def zoo_markdown(entries: Sequence[ZooEntry]) -> str:
    return _markdown([h for h, _ in ZOO_COLUMNS], zoo_cells(entries), [r for _, r in ZOO_COLUMNS])


def zoo_json(entries: Sequence[ZooEntry]) -> str:
    return json.dumps([e.to_dict() for e in entries], indent=2)
