"""`deploykit quantize NAME --precision fp16|int8`: FP16 / INT8 ONNX variants of an exported model."""

from __future__ import annotations

import click

from deploykit.commands._common import console, echo_json, format_option, repo_option, trust_option


@click.command("quantize")
@click.argument("name")
@click.option(
    "--precision",
    type=click.Choice(["fp16", "int8"]),
    required=True,
    help="fp16: ModelOpt AutoCast; int8: ModelOpt PTQ with Q/DQ nodes.",
)
@repo_option()
@click.option(
    "--calib-data",
    type=click.Path(),
    default=None,
    help="Folder of images (ImageFolder or flat) or a preprocessed N x C x H x W .npy/.npz. "
    "Default: augmented sample photos (a demo).",
)
@click.option("--calib-size", type=int, default=None, help="Calibration samples (default: up to 512; FP16 uses 32).")
@click.option(
    "--calib-method",
    type=click.Choice(["entropy", "max", "percentile"]),
    default="entropy",
    show_default=True,
    help="INT8 activation range calibration.",
)
@click.option("--percentile", type=float, default=99.999, show_default=True, help="With --calib-method percentile.")
@click.option(
    "--keep-io-types/--no-keep-io-types",
    default=True,
    show_default=True,
    help="FP16: keep FP32 inputs and outputs (Cast nodes at the edges).",
)
@click.option(
    "--high-precision",
    type=click.Choice(["fp32", "fp16"]),
    default="fp32",
    show_default=True,
    help="INT8: precision of the layers left unquantized (fp32 for CPUs, fp16 for TensorRT).",
)
@click.option("--no-cache", is_flag=True, help="Calibrate again even if this exact conversion is cached.")
@trust_option("the FP32 model file")
@click.option("--force", is_flag=True, help="Discard files deploykit did not write in the variant's 1/ folder.")
@format_option("table", "json")
def command(
    name: str,
    precision: str,
    repo: str,
    calib_data: str | None,
    calib_size: int | None,
    calib_method: str,
    percentile: float,
    keep_io_types: bool,
    high_precision: str,
    no_cache: bool,
    trust: bool,
    force: bool,
    fmt: str,
) -> None:
    """Make NAME's FP16 or INT8 ONNX variant from its exported FP32 model.

    \b
    Reads <repo>/<NAME>_onnx_fp32 (made by `deploykit export NAME`) and writes
    <repo>/<NAME>_onnx_fp16 or _int8 with config.pbtxt and a lineage sidecar (parent,
    tool and version, calibration set hash and size, method). Precision lives in the graph,
    so TensorRT 11 (strongly typed), TensorRT 10 with STRONGLY_TYPED, ONNX Runtime and
    OpenVINO all run the same file. A rebuild with the same data reuses the cached result.

    \b
    Examples:
      deploykit quantize resnet18 --precision fp16
      deploykit quantize resnet18 --precision int8 --calib-data ~/imagenet/val --calib-size 512
      deploykit quantize resnet18 --precision int8 --calib-data calib.npy --calib-method percentile
    """
    from deploykit.precision import make_variant

    err = console(stderr=True)
    with err.status(f"{name}: {precision}", spinner="dots") as status:
        result = make_variant(
            repo,
            name,
            precision,
            calib_data=calib_data,
            calib_size=calib_size,
            calib_method=calib_method,
            keep_io_types=keep_io_types,
            high_precision_dtype=high_precision,
            percentile=percentile,
            use_cache=not no_cache,
            trust=trust,
            force=force,
            progress=lambda step: status.update(f"{name}: {step}"),
        )
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)  # one line, never wrapped
    if fmt == "json":
        echo_json(result.to_dict())
    else:
        render(result)


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB"


def render(result) -> None:
    """A rich table of one PrecisionResult (stdout)."""
    from rich.markup import escape
    from rich.table import Table

    out = console()
    cal = result.calibration
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("variant", f"{result.artifact.variant}  (parent {result.parent})")
    ratio = result.bytes / result.parent_bytes if result.parent_bytes else 0
    table.add_row("file", escape(f"{result.artifact.path}  ({_mb(result.bytes)}, {ratio:.2f}x the FP32 file)"))
    table.add_row("tool", escape(f"{result.tool.get('name', '?')} {result.tool.get('version', '')}"))
    if result.precision == "fp16":
        conv = result.conversion
        table.add_row(
            "graph",
            f"{conv.get('nodes_fp16', '?')} of {conv.get('nodes', '?')} nodes FP16, "
            f"{conv.get('initializers', {}).get('float16', '?')} FP16 initializers, "
            f"I/O {'FP32 (Cast at the edges)' if result.keep_io_types else 'FP16'}",
        )
        kept = ", ".join(f"{k.name} ({k.reason})" for k in result.kept_fp32[:5]) or "none"
        table.add_row("kept FP32", escape(kept + (f", ... ({len(result.kept_fp32)} in all)" if len(result.kept_fp32) > 5 else "")))
        table.add_row("reference", escape(f"{cal.source}, {cal.size} samples (sha256 {cal.sha256[:12]})"))
    else:
        q = result.quantized
        nodes = ", ".join(f"{n} {op}" for op, n in q.get("quantized_nodes", {}).items())
        table.add_row(
            "Q/DQ",
            f"{q['qdq']['QuantizeLinear']} QuantizeLinear / {q['qdq']['DequantizeLinear']} DequantizeLinear; "
            f"weights per-channel (axis {', '.join(map(str, q['weights']['per_channel_axes'])) or '-'}), "
            f"{q['activation_quantizers']} activation scales",
        )
        table.add_row("quantized", escape(nodes or "none"))
        table.add_row("unquantized", f"{result.high_precision_dtype.upper()} layers")
        method = cal.method + (f" {cal.percentile:g}" if cal.percentile is not None else "")
        table.add_row(
            "calibration",
            escape(f"{method} on {cal.size} samples of {cal.source} (sha256 {cal.sha256[:12]})"),
        )
    table.add_row("cached", "yes: reused, not recalibrated" if result.cached else "no")
    table.add_row("time", f"{result.seconds:.1f} s")
    out.print(f"[green]made[/green] {result.artifact.variant} -> {escape(str(result.artifact.directory))}")
    out.print(table)
    if result.artifact.meta.get("replaced"):
        from deploykit.replacement import replacement_summary

        out.print(f"[yellow]{escape(replacement_summary(result.artifact.variant, result.artifact.meta['replaced']))}[/yellow]")
