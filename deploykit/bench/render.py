"""Renderers: every output format (CSV, Markdown, a rich table, a saved file) renders one BenchRun."""

from __future__ import annotations

import csv
import io
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from deploykit.bench.config import describe_config
from deploykit.bench.results import BenchResult, BenchRun
from deploykit.estimate.check import bench_efficiency
from deploykit.runtimes.base import MEMORY_FIELDS, memory_total

ROOFLINE_NOTE = (
    "% roofline: img/s over deploykit estimate's per-layer roofline for the same model, precision "
    "and batch (GPU: datasheet row; CPU: SGEMM and copy ceilings measured at the run's thread count)"
)

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
    "sgemm_gflops",
    "sgemm_fraction",
    "copy_gbps",
    "achieved_gbps",
    "copy_fraction",
    "peak_rss_bytes",
    "device_memory_bytes",
    "gpu_weights_bytes",
    "gpu_activations_bytes",
    "gpu_io_bytes",
    "gpu_engine_scratch_bytes",
    "h2d_ms",
    "compute_ms",
    "d2h_ms",
    "end_to_end_ms",
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
        "sgemm_gflops": (result.ceilings or {}).get("sgemm_gflops"),
        "sgemm_fraction": result.sgemm_fraction,
        "copy_gbps": (result.ceilings or {}).get("copy_gbps"),
        "achieved_gbps": result.achieved_gbps,
        "copy_fraction": result.copy_fraction,
        "peak_rss_bytes": result.peak_rss_bytes,
        "device_memory_bytes": gpu_memory_total(result),
        **{f"gpu_{k}": (result.device_memory or {}).get(k) for k in (*MEMORY_FIELDS, "engine_scratch_bytes")},
        **{f"{k}_ms": (result.phases_ms or {}).get(k) for k in ("h2d", "compute", "d2h", "end_to_end")},
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


def _gpu_memory_cell(result: BenchResult) -> str:
    mem = result.device_memory or {}
    parts = [mem.get(k) for k in MEMORY_FIELDS]
    return "/".join(_fmt(p, ".0f", 1e-6) for p in parts) if any(p is not None for p in parts) else "-"


def gpu_memory_total(result: BenchResult) -> int | None:
    """"GPU MB": weights + activations + I/O, measured alike (free-memory drops) for every GPU
    backend; results without the three fields (older JSON) show none rather than another measure."""
    return memory_total(result.device_memory)


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
        ("% SGEMM", lambda r: _fmt(r.sgemm_fraction, ".1f", 100.0)),
        ("% copy", lambda r: _fmt(r.copy_fraction, ".1f", 100.0)),
        ("% roofline", lambda r: _fmt(bench_efficiency(r, run.machine), ".0f", 100.0)),
        ("RSS MB", lambda r: _fmt(r.peak_rss_bytes, ".0f", 1e-6)),
        ("GPU MB", lambda r: _fmt(gpu_memory_total(r), ".0f", 1e-6)),
        ("weights/act/IO MB", _gpu_memory_cell),
        ("H2D/D2H ms", lambda r: "/".join(_ms((r.phases_ms or {}).get(k)) for k in ("h2d", "d2h")) if r.phases_ms else "-"),
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


def ceiling_notes(run: BenchRun) -> list[str]:
    """One line per thread count: the range of the SGEMM and copy ceilings its workers measured."""
    by_threads: dict[int, list[dict[str, Any]]] = {}
    for r in run.results:
        if r.ok and r.ceilings:
            by_threads.setdefault(int(r.ceilings["threads"]), []).append(r.ceilings)
    lines = []
    for threads, found in sorted(by_threads.items()):
        sgemm = [c["sgemm_gflops"] for c in found]
        copy = [c["copy_gbps"] for c in found]
        library = max(found, key=lambda c: c["sgemm_gflops"]).get("sgemm_library", "?")
        lines.append(
            f"{threads} thread{'s' if threads > 1 else ''}: SGEMM {_range(sgemm, '.0f')} GFLOP/s (best: {library}), "
            f"copy {_range(copy, '.1f')} GB/s, measured after timing in each of {len(found)} worker(s)"
        )
    return lines


def _range(values: list[float], spec: str) -> str:
    low, high = min(values), max(values)
    return f"{low:{spec}}" if f"{low:{spec}}" == f"{high:{spec}}" else f"{low:{spec}}-{high:{spec}}"


def machine_line(machine: dict[str, Any]) -> str:
    from deploykit.machine import summarize_machine

    return summarize_machine(machine)


def footer_notes(run: BenchRun, header: list[str]) -> list[str]:
    """The lines under the table: peaks used, ceilings measured, what '% roofline' means."""
    notes = [f"Peak {note}" for note in peak_notes(run)]
    notes += [f"Measured ceilings, {note}" for note in ceiling_notes(run)]
    return notes + ([ROOFLINE_NOTE] if "% roofline" in header else [])


def to_markdown(run: BenchRun) -> str:
    header, rows, notes = table_rows(run)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    lines.append("")
    lines += [f"{note}  " for note in notes]
    if notes:
        lines.append("")
    lines.append(f"Machine: {machine_line(run.machine)}.")
    lines += [f"{note}." for note in footer_notes(run, header)]
    return "\n".join(lines) + "\n"


def _layer_table(result: BenchResult) -> Any:
    """The per-layer profile of one result as a rich table."""
    from rich.table import Table

    lt = Table(title=f"per layer: {describe_config(result.config)}", title_justify="left")
    for name in ("layer", "op", "ms", "share", "MMACs", "GFLOP/s"):
        lt.add_column(name, justify="left" if name in ("layer", "op") else "right")
    for layer in result.layers:
        seconds = layer.time_ms / 1000
        gflops = 2 * layer.macs * result.config.batch / seconds / 1e9 if layer.macs and layer.time_ms else None
        lt.add_row(
            layer.name,
            layer.op,
            f"{layer.time_ms:.3f}",
            f"{layer.share * 100:.1f}%",
            _fmt(layer.macs, ".1f", 1e-6),
            _fmt(gflops, ".1f"),
        )
    return lt


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
    for note in footer_notes(run, header):
        console.print(note, style="dim", markup=False, highlight=False)
    for r in run.results:
        if r.layers:
            console.print(_layer_table(r))


def render_text(run: BenchRun, fmt: str) -> str:
    """The run as text: ``json``, ``csv`` or ``markdown``."""
    return {"json": run.to_json, "csv": lambda: to_csv(run), "markdown": lambda: to_markdown(run)}[fmt]()


def save(run: BenchRun, path: str | os.PathLike, fmt: str | None = None) -> Path:
    """Write ``run`` atomically as json (default, or by suffix), csv or md."""
    from deploykit.fileio import atomic_write_text

    path = Path(path)
    fmt = fmt or {".csv": "csv", ".md": "markdown"}.get(path.suffix.lower(), "json")
    return atomic_write_text(path, render_text(run, fmt))


