"""``deploykit export`` results as rich tables: one model's facts, or a row per model for ``--all``."""

from __future__ import annotations

from typing import Any

from deploykit.replacement import replacement_summary


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e6 else f"{n / 1e3:,.1f} kB"


def _shape(spec) -> str:
    from rich.markup import escape

    dims = ", ".join("batch" if d < 0 else str(d) for d in spec.shape)
    return escape(f"{spec.name} {spec.dtype} [{dims}]")


def _weights_text(result: Any) -> str:
    origin = result.weights_origin or {}
    kind = {"random": f"random init, seed {origin.get('seed')}", "torchvision": f"torchvision {origin.get('name')}"}
    text = kind.get(origin.get("kind"), "")
    return f"{text}{'; ' if text else ''}sha256 {result.weights[:16]}..."


def render_one(result: Any, variants: list[Any], out: Any) -> None:
    """One :class:`~deploykit.export.ExportResult` and the variants made after it, on console ``out``."""
    from rich.markup import escape
    from rich.table import Table

    p = result.parity
    total = p.compared or p.images * len(p.batch_sizes)
    batches = " and ".join(str(b) for b in p.batch_sizes)
    if total < p.images * len(p.batch_sizes):
        batches += f" ({total} comparisons: batch 1 on the first image only)"
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("variant", result.artifact.variant)
    table.add_row("file", escape(f"{result.path}  ({_mb(result.bytes)})"))
    table.add_row("input", _shape(result.input))
    table.add_row("output", _shape(result.output))
    table.add_row("opset", f"{result.opset}  (torch {result.onnx.exporter.get('torch', '?')}, {result.onnx.exporter.get('exporter', '?')})")
    table.add_row("weights", _weights_text(result))
    table.add_row(
        "parity",
        f"max abs {p.max_abs:.2e}, max rel {p.max_rel:.2e} (tolerance {p.tolerance:g}); "
        f"top-1 {round(p.top1_agreement * total)}/{total} agree; {p.images} images at batch {batches}",
    )
    table.add_row("images", result.images)
    trt = result.onnx.tensorrt
    ops = len(result.onnx.operators)
    if trt.ok:
        trt_text = f"[green]all {ops} operator types supported[/green] by TensorRT {trt.tensorrt_version}'s ONNX parser"
    else:
        problems = [*(f"unsupported {op}" for op in trt.unsupported), *trt.violations]
        if not trt.opset_supported:
            problems.append(f"opset {trt.opset} not documented")
        trt_text = f"[yellow]TensorRT {trt.tensorrt_version}: {escape('; '.join(problems[:4]))}[/yellow]"
    table.add_row("TensorRT", trt_text)
    if result.dropped_keys:
        table.add_row("dropped", f"{len(result.dropped_keys)} auxiliary-classifier tensors (aux1, aux2) from the checkpoint")
    if result.labels:
        table.add_row("labels", result.labels)
    table.add_row("time", f"{result.seconds:.1f} s")
    out.print(f"[green]exported[/green] {result.model} -> {result.artifact.directory}")
    out.print(table)
    replaced = result.artifact.meta.get("replaced")
    if replaced:
        out.print(f"[yellow]{escape(replacement_summary(result.artifact.variant, replaced))}[/yellow]")
    for note in result.notes:
        out.print(f"[dim]note: {escape(note)}[/dim]")
    for variant in variants:
        out.print(f"[green]made[/green] {variant.variant}  {variant.path}")
    out.print(f"[dim]open the graph: netron {result.path}  (or drop the file on https://netron.app)[/dim]")


def render_all(batch: Any, variant_errors: list[tuple[str, str]], out: Any) -> None:
    """An :class:`~deploykit.export.ExportBatch` as one row per model, then the failures."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(title="deploykit export --all", title_justify="left")
    for column, justify in (
        ("model", "left"),
        ("result", "left"),
        ("size", "right"),
        ("opset", "right"),
        ("max rel", "right"),
        ("top-1", "right"),
        ("TensorRT", "left"),
        ("seconds", "right"),
    ):
        table.add_column(column, justify=justify, no_wrap=column == "model")
    for r in batch.results:
        table.add_row(
            r.model,
            "[green]ok[/green]",
            _mb(r.bytes),
            str(r.opset),
            f"{r.parity.max_rel:.1e}",
            f"{r.parity.top1_agreement:.0%}",
            "ok" if r.onnx.tensorrt.ok else f"[yellow]{escape(', '.join(r.unsupported_ops) or 'see sidecar')}[/yellow]",
            f"{r.seconds:.1f}",
        )
    for f in batch.failures:
        table.add_row(f.model, "[red]failed[/red]", "", "", "", "", "", "")
    out.print(table)
    for f in batch.failures:
        out.print(f"[red]{f.model}: {escape(f.error)}[/red]" + (f"  [dim]({escape(f.hint)})[/dim]" if f.hint else ""))
    for model, error in variant_errors:
        out.print(f"[red]{model}: {escape(error)}[/red]")
    total = len(batch.results) + len(batch.failures)
    out.print(f"{len(batch.results)}/{total} exported in {batch.seconds:.0f} s")
