"""`deploykit estimate`: roofline bounds of zoo models on GPUs you may not own, and this CPU."""

from __future__ import annotations

import click

from deploykit.commands._common import format_option


@click.command("estimate")
@click.argument("names", metavar="NAME[,NAME...]", nargs=-1, required=True)
@click.option(
    "--device",
    "devices",
    default=None,
    metavar="LIST",
    help="Devices, comma-separated (default: orin-nano,agx-orin,t4,l4,a100,h100,h200,cpu).",
)
@click.option(
    "--precision", "precisions", default="fp32,fp16,int8", show_default=True, metavar="LIST"
)
@click.option("--batch", "batches", default="1,8,64", show_default=True, metavar="LIST")
@click.option("--input-size", "input_size", default=None, metavar="N|HxW", help="Input resolution.")
@click.option("--threads", type=int, default=None, help="Threads for the cpu ceilings (default: all cores).")
@click.option("--layers", is_flag=True, help="Also print the per-layer table of each estimate.")
@format_option("table", "json")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Draw the roofline (first estimate's layers) and the latency bounds to this .png/.svg/.pdf.",
)
def command(names, devices, precisions, batches, input_size, threads, layers, fmt, plot_path):
    """Per-layer roofline: MACs, bytes moved, arithmetic intensity, compute or memory bound,
    and the time max(2*MACs/peak, bytes/bandwidth); per model the sum and the images/s ceiling.

    GPU figures are dense datasheet peaks (see deploykit/data/roofline_devices.json for the
    source of each); `cpu` is this machine with its SGEMM and copy bandwidth measured now.

    \b
    Examples:
      deploykit estimate resnet50 --device h100,orin-nano --precision int8 --batch 1,64
      deploykit estimate alexnet,mobilenet_v2 --device cpu --format json
      deploykit estimate resnet50 --device agx-orin --plot roofline.png
    """
    from deploykit.analyze import parse_input_size
    from deploykit.analyze.render import print_renderable
    from deploykit.commands._common import console
    from deploykit.estimate import estimate, render

    if plot_path is not None:
        from deploykit.estimate.plot import check_plot_path

        check_plot_path(plot_path)
    models = [name for arg in names for name in arg.split(",") if name.strip()]
    result = estimate(models, devices, precisions, batches, parse_input_size(input_size), threads)
    if plot_path is not None:
        from deploykit.estimate.plot import save_charts

        for path in save_charts(result, plot_path):
            click.echo(f"wrote {path}", err=True)
    if fmt == "json":
        click.echo(render.result_json(result, layers=layers))
        return
    out = console()
    print_renderable(render.summary_table(result), out)
    print_renderable(render.device_table(result), out)
    if layers:
        for item in result.estimates:
            print_renderable(render.layer_table(item), out)
