"""`deploykit import FILE.onnx`: an ONNX image classifier from elsewhere into the model repository."""

from __future__ import annotations

from typing import Any

import click

from deploykit.commands._common import console, echo_json, format_option, repo_option


@click.command(name="import")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--name", help="Model name in the repository (default: the file's name).")
@click.option("--input-size", type=int, help="Image side in pixels (needed when the file's H and W are not fixed).")
@click.option("--labels", type=click.Path(dir_okay=False), help="Class names, one per line, in output order.")
@click.option("--max-batch-size", type=int, default=32, show_default=True, help="Triton max_batch_size (dynamic batch only).")
@repo_option()
@format_option("table", "json")
def command(file: str, fmt: str, **options: Any) -> None:
    """Check FILE (onnx.checker, strict shape inference, opset, one NCHW image input and one
    logits output), run it once on the sample photos with ONNX Runtime, and write it as
    <repo>/<NAME>_onnx_fp32/ with a Triton config and a sidecar (source file hash, I/O,
    preprocessing). Quantize, build, bench, serve and parity then work on it; parity compares
    with this FP32 file under ONNX Runtime.

    \b
    Example:
      deploykit import classifier.onnx --name mynet --labels classes.txt
    """
    from rich.markup import escape

    from deploykit.export import import_onnx

    with console(stderr=True).status(f"importing {file}", spinner="dots") as status:
        result = import_onnx(file, progress=status.update, **options)
    if fmt == "json":
        echo_json(result.to_dict())
        return
    out = console()
    shape = ", ".join("batch" if d < 0 else str(d) for d in result.onnx.input.shape)
    out.print(f"[green]imported[/green] {escape(file)} -> {escape(str(result.artifact.directory))}")
    out.print(f"input {escape(result.onnx.input.name)} [{shape}], {result.onnx.output.shape[-1]} classes, opset {result.onnx.opset}")
    for note in result.notes:
        out.print(f"[dim]note: {escape(note)}[/dim]")
