"""`deploykit build NAME --precision fp16`: a strongly typed TensorRT engine from an ONNX variant."""

from __future__ import annotations

import click

from deploykit.commands._common import console, echo_json, format_option, repo_option, trust_option


@click.command("build")
@click.argument("name")
@click.option(
    "--precision",
    type=click.Choice(["fp32", "fp16", "int8"]),
    default="fp32",
    show_default=True,
    help="Which ONNX variant to build (<name>_onnx_<precision>); made on the fly if missing.",
)
@repo_option()
@click.option("--min-batch", type=int, default=1, show_default=True, help="Smallest batch the engine accepts.")
@click.option("--opt-batch", type=int, default=8, show_default=True, help="Batch size TensorRT tunes kernels for.")
@click.option("--max-batch", type=int, default=32, show_default=True, help="Largest batch (also Triton's max_batch_size).")
@click.option("--workspace-mb", type=int, default=None, help="Builder workspace limit in MiB (memory-pool API). Default: TensorRT's.")
@click.option("--opt-level", type=int, default=None, help="Builder optimization level 0-5 (TensorRT's default: 3).")
@click.option(
    "--timing-cache",
    type=click.Path(dir_okay=False),
    default=None,
    help="Timing cache file: read if present, written back after the build (speeds up rebuilds).",
)
@click.option(
    "--profiling-verbosity",
    type=click.Choice(["detailed", "layer_names_only", "none"]),
    default="detailed",
    show_default=True,
    help="Layer detail kept in the engine; fp16/int8 need 'detailed' to verify their precision.",
)
@click.option(
    "--tf32/--no-tf32",
    default=True,
    show_default=True,
    help="Let FP32 layers use TF32 tensor cores (TensorRT's default; recorded in the sidecar).",
)
@click.option("--device", type=int, default=0, show_default=True, help="CUDA device index.")
@trust_option("the ONNX variant's model file")
@click.option("--force", is_flag=True, help="Discard files deploykit did not write in the variant's 1/ folder.")
@format_option("table", "json")
def command(
    name: str,
    precision: str,
    repo: str,
    min_batch: int,
    opt_batch: int,
    max_batch: int,
    workspace_mb: int | None,
    opt_level: int | None,
    timing_cache: str | None,
    profiling_verbosity: str,
    tf32: bool,
    device: int,
    force: bool,
    trust: bool,
    fmt: str,
) -> None:
    """Build NAME's ONNX variant into a strongly typed TensorRT engine and verify its precision.

    \b
    No FP16/INT8 builder flags: the precision is in the graph (FP16 weights, INT8 Q/DQ
    nodes), as TensorRT 11 requires; TensorRT 10.x gets the STRONGLY_TYPED flag. After the
    build the engine inspector must show layers in the requested precision, or the build fails.

    \b
    Writes <repo>/<name>_trt_<precision>/1/model.plan, config.pbtxt and deploykit.json.
    Needs TensorRT 10.1+ and an NVIDIA GPU (see docs/tensorrt.md for the Docker image).
    """
    from deploykit.tensorrt.build import build_engine

    err = console(stderr=True)
    with err.status(f"building {name} ({precision})", spinner="dots") as status:
        result = build_engine(
            name,
            precision,
            repo=repo,
            min_batch=min_batch,
            opt_batch=opt_batch,
            max_batch=max_batch,
            workspace_mb=workspace_mb,
            opt_level=opt_level,
            timing_cache=timing_cache,
            profiling_verbosity=profiling_verbosity,
            tf32=tf32,
            device=device,
            force=force,
            trust=trust,
            progress=lambda message: status.update(message),
        )
    for warning in result.warnings:
        click.echo(f"warning: {warning}", err=True)
    if fmt == "json":
        echo_json(result.to_dict())
        return
    render_table(result)


def render_table(result) -> None:
    from rich.table import Table

    record = result.record
    profile = record.settings.profile
    counts = record.engine.counts()
    table = Table(title=f"{result.variant}", show_header=False, title_justify="left")
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = [
        ("engine", str(result.artifact.path)),
        ("parent", record.parent + (" (made now)" if result.made_parent else "")),
        ("TensorRT", f"{record.tensorrt_version} (strongly typed)"),
        ("math", record.settings.math + ("" if record.settings.tf32 else " (TF32 off)")),
        ("GPU", f"{record.gpu.name}, compute capability {record.gpu.compute_capability}"),
        ("batch profile", f"min {profile.min} / opt {profile.opt} / max {profile.max}"),
        ("build time", f"{record.build_seconds:.1f} s"),
        ("engine size", f"{record.engine_bytes / 2**20:.2f} MiB"),
        (
            "device memory",
            f"{record.device_memory_bytes / 2**20:.2f} MiB" if record.device_memory_bytes is not None else "n/a",
        ),
        ("layers", f"{len(record.engine.layers)} ({len(record.engine.compute_layers)} compute)"),
        ("layer precisions", ", ".join(f"{p}: {n}" for p, n in counts.items()) or "n/a"),
        ("share of compute", ", ".join(f"{p} {share:.0%}" for p, share in record.engine.shares().items()) or "n/a"),
    ]
    for field, value in rows:
        table.add_row(field, value)
    console().print(table)
