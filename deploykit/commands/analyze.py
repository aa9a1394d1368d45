"""`deploykit analyze`: the per-layer table of one or more zoo models."""

from __future__ import annotations

import click

from deploykit.commands._common import format_option


@click.command("analyze")
@click.argument("names", nargs=-1, required=True, metavar="NAME [NAME...]")
@click.option(
    "--input-size",
    "input_size",
    metavar="N|HxW",
    default=None,
    help="Input resolution (default: the model card's, 227 for alexnet, else 224).",
)
@click.option("--all-layers", is_flag=True, help="Show element-wise layers (ReLU, BN, ...) as rows.")
@format_option("table", "json", "csv", "markdown")
@click.option("--compare", is_flag=True, help="Side-by-side totals of the models instead of rows.")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Also draw memory/params/MACs per layer to this .png/.svg/.pdf (one model).",
)
@click.option("--num-classes", type=int, default=1000, show_default=True, help="Classifier width.")
def command(names, input_size, all_layers, fmt, compare, plot_path, num_classes):
    """Per-layer shapes, activation memory (FP32, one image), params and MACs.

    Computed on PyTorch's meta device: nothing is allocated, so even VGG-19 takes a moment.
    Element-wise layers (ReLU, BatchNorm, Dropout, residual add) are folded into the row they
    follow unless --all-layers.

    \b
    Examples:
      deploykit analyze alexnet --input-size 227
      deploykit analyze vgg16 googlenet resnet50 --compare
      deploykit analyze alexnet --plot alexnet.png
    """
    from deploykit.analyze import analyze_model, parse_input_size, render
    from deploykit.commands._common import console
    from deploykit.errors import UsageError

    size = parse_input_size(input_size)
    if plot_path is not None:
        from deploykit.analyze.plot import check_plot_path

        check_plot_path(plot_path)
        if len(names) != 1:
            raise UsageError(
                f"--plot draws one model, got {len(names)}", hint="run it once per model"
            )
    results = [
        analyze_model(name, size, all_layers=all_layers, num_classes=num_classes)
        for name in names
    ]

    if fmt == "table":
        render.print_stats(results, console(), compare=compare)
    else:
        click.echo(render.render_stats(results, fmt, compare=compare), nl=fmt == "json")

    if plot_path is not None:
        from deploykit.analyze.plot import plot_layers

        written = plot_layers(results[0], plot_path)
        click.echo(f"wrote {written}", err=True)
