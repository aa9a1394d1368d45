"""A Markdown report with PNG charts from one or more bench result files, plus ``analyze``.

``make_report(paths, out_dir)`` writes into ``out_dir``:

- ``report.md``: the machines, the lecture's trade-off table for the zoo (params, MACs,
  activation memory, where params and MACs concentrate, published top-1), the measurements
  and the charts below, each with a sentence that says how to read it;
- ``latency_vs_batch.png`` and ``throughput_vs_batch.png``: one panel per model, one line
  per backend/precision (and machine, when the files come from several);
- ``accuracy_vs_gmacs.png``: the zoo as an accuracy-vs-cost bubble chart in the style of
  Canziani et al. 2017 (x: GMACs per image, y: published ImageNet top-1, area: params);
- ``accuracy_vs_latency.png``: the same y against the measured batch-1 latency of each
  benchmarked model (its fastest configuration per machine);
- ``roofline.png`` and ``latency_bound.png``: ``deploykit estimate``'s roofline (one point per
  layer, each device's roofs) and latency bound across devices and precisions for the
  benchmarked zoo models.

Every file is written atomically; files already in ``out_dir`` that the report does not
make are left alone.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploykit.bench import BenchRun
from deploykit.errors import UsageError
from deploykit.estimate.plot import report_charts
from deploykit.report.charts import (
    fastest_batch1,
    load_pyplot,
    plot_accuracy_vs_gmacs,
    plot_accuracy_vs_latency,
    plot_vs_batch,
)
from deploykit.report.markdown import CHART_SECTIONS, report_markdown
from deploykit.report.zoo import ZooRow, zoo_markdown, zoo_table

CHARTS = ("latency_vs_batch.png", "throughput_vs_batch.png", "accuracy_vs_gmacs.png", "accuracy_vs_latency.png",
          "roofline.png", "latency_bound.png")


@dataclass(frozen=True)
class Report:
    """What :func:`make_report` wrote."""

    directory: Path
    markdown: Path
    charts: tuple[Path, ...]
    runs: int
    results: int
    zoo_rows: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "markdown": str(self.markdown),
            "charts": [str(p) for p in self.charts],
            "runs": self.runs,
            "results": self.results,
            "zoo_rows": self.zoo_rows,
            "notes": list(self.notes),
        }


def _load_runs(paths: Sequence[str | os.PathLike], out: Path) -> list[BenchRun]:
    """The result files, and ``out`` created; UsageError for a missing or malformed file."""
    if not paths:
        raise UsageError("no result files given", hint="pass the JSON files `deploykit bench --out` wrote")
    runs = [BenchRun.load(p) for p in paths]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {out}: {exc.strerror}") from None
    load_pyplot()  # fail early, before any file is written, when matplotlib is missing
    return runs


def _make_charts(runs: Sequence[BenchRun], rows: Sequence[ZooRow], out: Path) -> dict[str, Path | None]:
    return {
        "latency_vs_batch.png": plot_vs_batch(runs, out / "latency_vs_batch.png", "latency"),
        "throughput_vs_batch.png": plot_vs_batch(runs, out / "throughput_vs_batch.png", "throughput"),
        "accuracy_vs_gmacs.png": plot_accuracy_vs_gmacs(rows, out / "accuracy_vs_gmacs.png"),
        "accuracy_vs_latency.png": plot_accuracy_vs_latency(runs, rows, out / "accuracy_vs_latency.png"),
        **report_charts([r.config.model for run in runs for r in run.results if r.ok], out),
    }

def make_report(
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    zoo_models: Sequence[str] | None = None,
    title: str = "deploykit performance report",
) -> Report:
    """Read bench JSON files and write ``report.md`` plus PNG charts into ``out_dir``.

    ``zoo_models`` limits the trade-off table (default: the whole zoo). Raises UsageError
    for a missing or malformed result file.
    """
    from deploykit.fileio import atomic_write_text

    out = Path(out_dir)
    runs = _load_runs(paths, out)
    rows, notes = zoo_table(zoo_models)
    made = _make_charts(runs, rows, out)
    markdown = atomic_write_text(out / "report.md", report_markdown(title, paths, runs, rows, made, notes))
    return Report(
        directory=out,
        markdown=markdown,
        charts=tuple(p for p in made.values() if p is not None),
        runs=len(runs),
        results=sum(len(r.results) for r in runs),
        zoo_rows=len(rows),
        notes=tuple(notes),
    )


__all__ = [
    "CHARTS",
    "CHART_SECTIONS",
    "Report",
    "ZooRow",
    "fastest_batch1",
    "make_report",
    "plot_accuracy_vs_gmacs",
    "plot_accuracy_vs_latency",
    "plot_vs_batch",
    "report_markdown",
    "zoo_markdown",
    "zoo_table",
]
