"""`deploykit parity NAME`: deployed variants against the PyTorch FP32 reference."""

from __future__ import annotations

from typing import Any

import click

from deploykit.commands._common import (
    console,
    echo_json,
    format_option,
    repo_option,
    split_list,
    trust_option,
)


@click.command("parity")
@click.argument("name")
@click.option(
    "--backend",
    "backends",
    default="onnxruntime",
    show_default=True,
    help="Backends to run the variants on, comma-separated (onnxruntime, openvino, tensorrt).",
)
@click.option(
    "--precision",
    "precisions",
    default=None,
    help="Precisions to check, comma-separated (fp32, fp16, int8). Default: every one in the repository.",
)
@click.option("--weights", type=click.Path(dir_okay=False), default=None, help="The weights the variants were exported from (state dict).")
@click.option("--num-classes", type=click.IntRange(1, 100_000), default=None, help="Classes of the model (default: from the sidecar, else 1000).")
@click.option("--data", type=click.Path(), default=None, help="Image folder (ImageFolder layout gives labels). Default: the sample photos.")
@click.option("--labels", type=click.Path(dir_okay=False), default=None, help="File mapping image file name -> class index (CSV/TSV lines or JSON).")
@click.option("--limit", type=click.IntRange(1), default=None, help="Use at most N images (round-robin over classes).")
@click.option("--batch", "batch_size", type=click.IntRange(1, 4096), default=32, show_default=True, help="Images per batch.")
@click.option("--resize", type=click.IntRange(1, 8192), default=None, help="Resize the short side to N before the center crop (default: the model card's ratio).")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True, help="Where the PyTorch reference runs (TF32 off on CUDA).")
@click.option(
    "--tol",
    "tol",
    multiple=True,
    metavar="PRECISION.METRIC=VALUE",
    help="Override a tolerance, e.g. fp16.agreement=0.98, int8.accuracy_drop=1, fp32.max_abs=none. Repeatable.",
)
@click.option("--max-flips", type=click.IntRange(0, 1000), default=10, show_default=True, help="Flipped images to list per variant.")
@trust_option("a variant's model file")
@click.option("--write/--no-write", "write_sidecar", default=True, show_default=True, help="Record each verdict in the variant's sidecar.")
@repo_option()
@format_option("table", "json")
def command(name: str, backends: str, precisions: str | None, tol: tuple[str, ...], fmt: str, **options: Any) -> None:
    """Check NAME's deployed variants against the PyTorch FP32 reference on real images.

    Per variant: top-1/top-5 agreement, accuracy with labels, logit errors, cosine
    similarity and the images that flipped, judged against per-precision tolerances
    (FP32: 100% agreement and max abs error <= 1e-3 x max(1, max |logit|); FP16: 99%
    agreement; INT8: 97% agreement and at most 1.5 points of accuracy lost). Exit code 1
    when a variant fails or its verdict could not be recorded, 2 for bad input (a repository
    it cannot write: refused before any work, see --no-write).

    \b
    Example:
      deploykit parity resnet50 --weights resnet50.pt --data val/ --precision fp32,fp16,int8
    """
    from deploykit.artifacts import PRECISIONS
    from deploykit.errors import UsageError
    from deploykit.parity import check, parse_tolerance_overrides
    from deploykit.parity.render import render_table
    from deploykit.repository import validate_name
    from deploykit.runtimes import list_backends

    validate_name(name)
    backend_list = split_list(backends, list_backends(), "backend")
    if "torch" in backend_list:
        raise UsageError("torch is the reference, not a variant backend", hint="choose from onnxruntime, openvino, tensorrt")
    report = check(
        name,
        backends=backend_list,
        precisions=split_list(precisions, PRECISIONS, "precision") or None,
        tolerances=parse_tolerance_overrides(tol),
        progress=fmt == "table",
        **options,
    )
    if fmt == "json":
        echo_json(report.to_dict())
    else:
        render_table(report, console())
    for result in report.not_recorded:  # shown above, but not written: say so, and fail the run
        click.echo(f"error: the verdict of {result.name} was {result.not_recorded}", err=True)
        click.echo("hint: free space or make the repository writable and run again, or pass --no-write", err=True)
    if not report or report.not_recorded:
        raise SystemExit(1)
