"""A :class:`~deploykit.parity.ParityReport` as a rich table, then failures, flips and notes."""

from __future__ import annotations

from typing import Any

_COLUMNS = (
    ("variant", "left"),
    ("backend", "left"),
    ("top-1 agr", "right"),
    ("top-5 agr", "right"),
    ("accuracy ref -> var", "right"),
    ("Δ pt", "right"),
    ("max abs", "right"),
    ("mean abs", "right"),
    ("min cos", "right"),
    ("flips", "right"),
    ("verdict", "left"),
)
_COLORS = {"pass": "green", "fail": "red", "error": "red", "skipped": "yellow"}


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}%"


def _row(result: Any) -> list[str]:
    from rich.markup import escape

    verdict = f"[{_COLORS[result.status]}]{result.status.upper()}[/]"
    m = result.metrics
    label = escape(result.name.split("@")[0])
    if m is None:
        return [label, result.backend or "", *[""] * 8, verdict]
    accuracy = "" if m.reference_accuracy is None else f"{_pct(m.reference_accuracy)} -> {_pct(m.variant_accuracy)}"
    return [
        label,
        result.backend or "",
        _pct(m.top1_agreement),
        _pct(m.top5_agreement),
        accuracy,
        "" if m.accuracy_delta is None else f"{m.accuracy_delta:+.2f}",
        f"{m.max_abs_error:.2e}",
        f"{m.mean_abs_error:.2e}",
        f"{m.min_cosine:.6f}",
        str(m.flipped_count),
        verdict,
    ]


def _details(out: Any, result: Any) -> None:
    from rich.markup import escape

    name = escape(result.name)
    if result.status in ("skipped", "error"):
        out.print(f"[{_COLORS[result.status]}]{name}[/]: {result.status} ({escape(result.reason or '')})", highlight=False)
    for failure in result.failures:
        out.print(f"[red]{name}[/]: {escape(failure)}", highlight=False)
    if result.status == "fail" and result.metrics and result.metrics.flipped:
        m = result.metrics
        out.print(f"  first flipped images ({len(m.flipped)} of {m.flipped_count}):", highlight=False)
        for flip in m.flipped:
            label = "" if flip.label is None else f"  label {flip.label}"
            out.print(
                f"    {escape(flip.name)}: reference {flip.reference} -> variant {flip.variant}{label}"
                f"  (reference margin {flip.reference_margin:.3g})",
                highlight=False,
            )


def render_table(report: Any, out: Any) -> None:
    """Print ``report`` on the rich console ``out``."""
    from rich.markup import escape
    from rich.table import Table

    if not out.is_terminal:
        out.width = max(out.width, 160)  # a log file or CI output: keep every row on one line
    r = report.reference
    title = (
        f"parity: {report.model} vs {r.name} ({r.details.get('device', 'cpu')}) on {report.data.images} "
        f"images from {report.data.source}"
    )
    table = Table(title=escape(title), title_justify="left")
    for column, justify in _COLUMNS:
        table.add_column(column, justify=justify)
    for result in report.results:
        table.add_row(*_row(result))
    out.print(table)
    for result in report.results:
        _details(out, result)
    for note in report.notes:
        out.print(f"[dim]note: {escape(note)}[/]", highlight=False)
    verdict = "[green]PASS[/]" if report else "[red]FAIL[/]"
    checked = len(report.checked)
    out.print(f"{verdict}: {checked - len(report.failed)} of {checked} checked variants within tolerance")
