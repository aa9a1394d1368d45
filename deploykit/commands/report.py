"""`deploykit report`: a Markdown report with PNG charts from bench results."""

from __future__ import annotations

import click

from deploykit.commands._common import echo_json, format_option, remove_if_left_empty, split_list


@click.command(name="report")
@click.argument("results", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="report", show_default=True,
              help="Folder for report.md and the charts (created; other files in it are kept).")
@click.option("--models", default=None,
              help="Comma-separated zoo models for the trade-off table (default: the whole zoo).")
@click.option("--title", default="deploykit performance report", show_default=True)
@format_option("table", "json")
def command(results, out_dir, models, title, fmt) -> None:
    """Write report.md and charts from RESULTS (JSON files from `deploykit bench --out`).

    \b
    Charts: latency and throughput vs batch per backend, and accuracy vs cost bubble charts
    (GMACs and measured latency against published top-1, bubble area = parameters).
    """
    from deploykit.report import make_report

    with remove_if_left_empty(out_dir):
        report = make_report(
            list(results), out_dir, zoo_models=split_list(models) or None, title=title
        )
    if fmt == "json":
        echo_json(report.to_dict())
        return
    click.echo(f"wrote {report.markdown} ({report.results} results from {report.runs} file(s), "
               f"{report.zoo_rows} zoo rows)")
    for chart in report.charts:
        click.echo(f"  chart {chart}")
    for note in report.notes:
        click.echo(f"  note: {note}")
