"""`deploykit models`: the zoo with family, year, params and GMACs."""

from __future__ import annotations

import click

from deploykit.commands._common import format_option


@click.command("models")
@click.option("--weights", "show_weights", is_flag=True, help="List torchvision's published weights per model instead (imports torchvision).")
@format_option("table", "json", "markdown")
def command(fmt, show_weights):
    """List the zoo: family, year, input size, params, GMACs and torchvision's top-1.

    Params and MACs are analyzed on the meta device at each model's own input size
    (227 for alexnet, 224 for the others), one image. The table is packaged with deploykit
    (a test keeps it equal to a live analysis), so this answers without importing torch.
    """
    from deploykit.analyze import render, zoo_catalog
    from deploykit.commands._common import console

    if show_weights:
        _print_weights(fmt)
        return
    entries = zoo_catalog()
    if fmt == "json":
        click.echo(render.zoo_json(entries))
    elif fmt == "markdown":
        click.echo(render.zoo_markdown(entries), nl=False)
    else:
        render.print_renderable(render.zoo_table(entries), console())


def _print_weights(fmt: str) -> None:
    """The names ``deploykit export NAME --weights WEIGHTS`` takes, per zoo model."""
    import json

    from deploykit.pretrained import published

    table = published()
    if fmt == "json":
        click.echo(json.dumps(table, indent=2))
        return
    for name, weights in table.items():
        click.echo(f"{name:24s} {', '.join(weights)}")
