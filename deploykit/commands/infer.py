"""`deploykit infer`: send images to a Triton server and print the top classes."""

from __future__ import annotations

import click

from deploykit.commands._common import echo_json, format_option, repo_option


@click.command(name="infer")
@click.argument("variant")
@click.argument("images", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--url", default=None, help="Server URL [default: http://127.0.0.1:8000, grpc://127.0.0.1:8001 for gRPC].")
@click.option("--protocol", type=click.Choice(["http", "grpc"]), default="http", show_default=True)
@click.option("--top", type=click.IntRange(1, 1000), default=5, show_default=True, help="Classes per image.")
@click.option("--timeout", type=click.FloatRange(0.1, 3600), default=60.0, show_default=True, help="Seconds.")
@repo_option()
@format_option("table", "json")
def command(variant, images, url, protocol, top, timeout, repo, fmt) -> None:
    """Preprocess IMAGES for VARIANT, send them as one batch, print the top classes.

    \b
    Preprocessing and labels come from the variant's sidecar in --repo (else the zoo's
    model card); tensor names and sizes come from the server.
    Example:  deploykit infer resnet50_onnx_fp32 cat.jpg dog.png --top 3
    """
    from deploykit.serve.client import infer

    result = infer(variant, list(images), url=url, protocol=protocol, top=top, repo=repo, timeout=timeout)
    if fmt == "json":
        echo_json(result.to_dict())
        return
    from rich.table import Table

    from deploykit.commands._common import console

    table = Table(title=f"{result.model} @ {result.url} ({result.protocol})", title_justify="left")
    table.add_column("image", overflow="fold")
    for column in ("rank", "class", "label", "score"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for item in result.results:
        for rank, p in enumerate(item.top, 1):
            table.add_row(item.image if rank == 1 else "", str(rank), str(p.index), p.label or "", f"{p.score:.4f}")
    out = console()
    out.print(table)
    out.print(
        f"{result.batch_size} image(s) in one request: round trip {result.round_trip_ms:.1f} ms "
        f"(preprocessing from the {result.preprocessing_source})"
    )
