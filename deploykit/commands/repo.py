"""`deploykit repo`: inspect and validate the Triton model repository."""

from __future__ import annotations

import click

from deploykit.commands._common import console, echo_json, format_option, repo_option


@click.group(name="repo")
def command() -> None:
    """Inspect and validate the Triton model repository."""


@command.command(name="check")
@repo_option()
@format_option("table", "json")
@click.option("--strict", is_flag=True, help="Fail on warnings too.")
def check(repo: str, fmt: str, strict: bool) -> None:
    """Validate every model folder the way Triton will load it.

    \b
    Checks: config.pbtxt parses as Triton's ModelConfig (line and column on error), numeric
    version folders, the model file name for the platform, dims and dtypes against the ONNX
    file (batch dimension left out when max_batch_size > 0), max_batch_size within a
    TensorRT engine's profile (from its sidecar), instance_group kind, dynamic batching.
    Stale temporary folders a killed deploykit run left are warnings.
    Exits 1 when any model has an error.
    """
    from deploykit.serve.check import check_repository

    report = check_repository(repo)
    if fmt == "json":
        echo_json(report.to_dict())
    else:
        _render_check(report)
    if not report.ok or (strict and report.warning_count):
        raise SystemExit(1)


def _render_check(report) -> None:
    from rich.table import Table

    out = console()
    _render_stale(out, report)
    if not report.models:
        out.print(f"[yellow]no model folders in {report.root}[/yellow]")
        return
    summary = Table(title=f"model repository {report.root}", title_justify="left")
    for column in ("model", "platform", "max batch", "versions", "result"):
        summary.add_column(column, justify="right" if column == "max batch" else "left")
    for m in report.models:
        if m.errors:
            verdict = f"[red]{len(m.errors)} error(s)[/red]"
        elif m.warnings:
            verdict = f"[yellow]ok, {len(m.warnings)} warning(s)[/yellow]"
        else:
            verdict = "[green]ok[/green]"
        summary.add_row(
            m.name,
            m.platform or "?",
            "?" if m.max_batch_size is None else str(m.max_batch_size),
            ",".join(map(str, m.versions)) or "-",
            verdict,
        )
    out.print(summary)
    problems = [(m.name, p) for m in report.models for p in m.problems]
    if problems:
        table = Table(title="problems", title_justify="left", show_lines=False)
        for column in ("model", "severity", "code", "problem"):
            table.add_column(column, overflow="fold")
        for name, p in problems:
            color = "red" if p.severity == "error" else "yellow"
            text = p.message + (f"\n[dim]hint: {p.hint}[/dim]" if p.hint else "")
            table.add_row(name, f"[{color}]{p.severity}[/{color}]", p.code, text)
        out.print(table)
    notes = []
    if not report.dims_checked:
        notes.append("onnx not installed (deploykit[onnx]): dims not compared with the ONNX files")
    for note in notes:
        out.print(f"[dim]note: {note}[/dim]")
    verdict = "[green]repository ok[/green]" if report.ok else f"[red]{report.error_count} error(s)[/red]"
    out.print(f"{verdict}, {report.warning_count} warning(s) in {len(report.models)} model(s)")


def _render_stale(out, report) -> None:
    for name, size in report.stale_scratch:
        out.print(
            f"[yellow]warning: {name} ({size / 2**20:.1f} MiB) is a temporary folder a killed deploykit run left"
            "[/yellow]\n[dim]hint: the next deploykit write to this repository removes it (or delete it)[/dim]"
        )


@command.command(name="list")
@repo_option()
@format_option("table", "json")
def list_variants(repo: str, fmt: str) -> None:
    """List the variants in the repository with their lineage.

    A variant folder whose sidecar (deploykit.json) is missing or corrupt is listed as broken,
    with the file and how to re-create it; the command then exits 1.
    """
    from deploykit.repository import ModelRepository

    artifacts, broken = ModelRepository(repo).scan()
    rows = [
        {
            "variant": a.variant,
            "format": a.format,
            "precision": a.precision,
            "bytes": a.bytes,
            "lineage": " -> ".join(a.lineage()),
            "created_at": a.meta.get("created_at"),
        }
        for a in artifacts
    ]
    problems = [{"variant": b.directory.name, "error": b.message, "hint": b.hint} for b in broken]
    if fmt == "json":
        echo_json(rows + problems)  # a broken variant is a row with "error" and "hint"
    else:
        _render_list(repo, rows, problems)
    if problems:
        raise SystemExit(1)


def _render_list(repo: str, rows: list[dict], problems: list[dict]) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = console()
    for problem in problems:
        out.print(f"[red]broken:[/red] {escape(problem['error'])}\n[dim]hint: {escape(problem['hint'])}[/dim]")
    if not rows:
        out.print(f"[yellow]no {'readable ' if problems else ''}variants in {repo}[/yellow]")
        return
    table = Table(title=f"model repository {repo}", title_justify="left")
    for column in ("variant", "format", "precision", "MiB", "lineage"):
        table.add_column(column, justify="right" if column == "MiB" else "left")
    for r in rows:
        table.add_row(r["variant"], r["format"], r["precision"], f"{r['bytes'] / 2**20:.1f}", r["lineage"])
    out.print(table)
