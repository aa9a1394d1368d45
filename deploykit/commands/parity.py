"""`deploykit parity NAME`: deployed variants against the PyTorch FP32 reference."""

from __future__ import annotations

import click

from deploykit.commands._common import console, echo_json, format_option, repo_option, split_list


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
@click.option("--write/--no-write", "write_sidecar", default=True, show_default=True, help="Record each verdict in the variant's sidecar.")
@repo_option()
@format_option("table", "json")
def command(
    name: str,
    backends: str,
    precisions: str | None,
    weights: str | None,
    num_classes: int | None,
    data: str | None,
    labels: str | None,
    limit: int | None,
    batch_size: int,
    resize: int | None,
    device: str,
    tol: tuple[str, ...],
    max_flips: int,
    write_sidecar: bool,
    repo: str,
    fmt: str,
) -> None:
    """Check NAME's deployed variants against the PyTorch FP32 reference on real images.

    Per variant: top-1/top-5 agreement, accuracy with labels, logit errors, cosine
    similarity and the images that flipped, judged against per-precision tolerances
    (FP32: 100% agreement and max abs error <= 1e-3 x max(1, max |logit|); FP16: 99%
    agreement; INT8: 97% agreement and at most 1.5 points of accuracy lost). Exit code 1
    when a variant fails, 2 for bad input.

    \b
    Example:
      deploykit parity resnet50 --weights resnet50.pt --data val/ --precision fp32,fp16,int8
    """
    from deploykit.artifacts import PRECISIONS
    from deploykit.parity import check, parse_tolerance_overrides
    from deploykit.repository import validate_name
    from deploykit.runtimes import list_backends

    validate_name(name)
    backend_list = split_list(backends, list_backends(), "backend")
    if "torch" in backend_list:
        from deploykit.errors import UsageError

        raise UsageError("torch is the reference, not a variant backend", hint="choose from onnxruntime, openvino, tensorrt")
    precision_list = split_list(precisions, PRECISIONS, "precision") or None
    report = check(
        name,
        repo=repo,
        backends=backend_list,
        precisions=precision_list,
        data=data,
        weights=weights,
        num_classes=num_classes,
        labels=labels,
        tolerances=parse_tolerance_overrides(tol),
        limit=limit,
        batch_size=batch_size,
        resize=resize,
        device=device,
        write_sidecar=write_sidecar,
        max_flips=max_flips,
        progress=fmt == "table",
    )
    if fmt == "json":
        echo_json(report.to_dict())
    else:
        render_table(report)
    if not report:
        raise SystemExit(1)


def render_table(report) -> None:
    """The report as a rich table on stdout, then failures, flips and notes."""
    from rich.markup import escape
    from rich.table import Table

    out = console()
    if not out.is_terminal:
        out.width = max(out.width, 160)  # a log file or CI output: keep every row on one line
    r = report.reference
    title = (
        f"parity: {report.model} vs {r.name} ({r.details.get('device', 'cpu')}) on {report.data.images} "
        f"images from {report.data.source}"
    )
    table = Table(title=escape(title), title_justify="left")
    for column, justify in (
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
    ):
        table.add_column(column, justify=justify)
    colors = {"pass": "green", "fail": "red", "error": "red", "skipped": "yellow"}
    for result in report.results:
        verdict = f"[{colors[result.status]}]{result.status.upper()}[/]"
        m = result.metrics
        label = escape(result.name.split("@")[0])
        if m is None:
            table.add_row(label, result.backend or "", *[""] * 8, verdict)
            continue
        accuracy = "" if m.reference_accuracy is None else f"{_pct(m.reference_accuracy)} -> {_pct(m.variant_accuracy)}"
        table.add_row(
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
        )
    out.print(table)
    for result in report.results:
        name = escape(result.name)
        if result.status in ("skipped", "error"):
            out.print(f"[{colors[result.status]}]{name}[/]: {result.status} ({escape(result.reason or '')})", highlight=False)
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
    for note in report.notes:
        out.print(f"[dim]note: {escape(note)}[/]", highlight=False)
    verdict = "[green]PASS[/]" if report else "[red]FAIL[/]"
    checked = len(report.checked)
    out.print(f"{verdict}: {checked - len(report.failed)} of {checked} checked variants within tolerance")


def _pct(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.2f}%"
