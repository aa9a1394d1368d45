"""`deploykit export`: a zoo model -> verified ONNX in the Triton model repository."""

from __future__ import annotations

from typing import Any

import click

from deploykit.commands._common import console, echo_json, format_option, repo_option, split_list
from deploykit.errors import DeployKitError, UsageError

PRECISIONS = ("fp32", "fp16", "int8")


@click.command(name="export")
@click.argument("name", required=False)
@click.option("--all", "all_models", is_flag=True, help="Export every zoo model (one failure does not stop the others).")
@click.option("--weights", type=click.Path(dir_okay=False), help="A state dict or checkpoint (torch.save) to load.")
@click.option("--num-classes", type=int, help="Classifier outputs (default 1000; must match --weights).")
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset to produce.")
@click.option("--batch", type=int, help="Fix the batch size (default: dynamic batch).")
@click.option("--input-size", type=int, help="Image side in pixels (default: the model card's, e.g. 227 for AlexNet).")
@click.option(
    "--max-batch-size", type=int, default=32, show_default=True, help="Triton max_batch_size (dynamic batch only)."
)
@click.option("--data", type=click.Path(file_okay=False), help="Folder of images to verify on (default: sample photos).")
@click.option("--tolerance", type=float, default=1e-3, show_default=True, help="Max error relative to the logits' size.")
@repo_option()
@click.option("--precision", default="fp32", show_default=True, help="Also make these variants, e.g. fp32,fp16,int8.")
@click.option("--calib-data", type=click.Path(), help="INT8 calibration images (see `deploykit quantize`).")
@click.option("--calib-size", type=int, help="Number of INT8 calibration images.")
@click.option("--calib-method", help="INT8 calibration method (see `deploykit quantize`).")
@click.option("--keep-io-types/--no-keep-io-types", default=True, show_default=True, help="FP16/INT8: keep FP32 input/output.")
@format_option("table", "json")
def command(
    name: str | None,
    all_models: bool,
    weights: str | None,
    num_classes: int | None,
    opset: int,
    batch: int | None,
    input_size: int | None,
    max_batch_size: int,
    data: str | None,
    tolerance: float,
    repo: str,
    precision: str,
    calib_data: str | None,
    calib_size: int | None,
    calib_method: str | None,
    keep_io_types: bool,
    fmt: str,
) -> None:
    """Export NAME to ONNX, verify it against PyTorch, and write it to the model repository.

    \b
    Writes <repo>/<NAME>_onnx_fp32/1/model.onnx, config.pbtxt (Triton, onnxruntime_onnx)
    and deploykit.json (lineage: weights hash, input spec, preprocessing, labels, opset,
    library versions, parity figures). Verification runs ONNX Runtime (CPU) on real photos
    at batch 1 and 8 and fails, writing nothing, beyond --tolerance.

    \b
    Examples:
      deploykit export vgg16
      deploykit export googlenet --weights googlenet.pth
      deploykit export resnet18 --num-classes 10 --weights digits.pt --input-size 64
      deploykit export --all --input-size 64
    """
    precisions = split_list(precision, PRECISIONS, what="precision") or ["fp32"]
    if all_models and name:
        raise UsageError("give a model NAME or --all, not both")
    if not all_models and not name:
        raise UsageError("which model?", hint="deploykit export NAME (see `deploykit models`), or --all")
    if all_models and weights:
        raise UsageError("--weights fits one model, not --all", hint="export that model by name")
    options: dict[str, Any] = dict(
        repo=repo,
        weights=weights,
        opset=opset,
        batch=batch,
        input_size=input_size,
        num_classes=num_classes,
        data=data,
        max_batch_size=max_batch_size,
        tolerance=tolerance,
    )
    extra = [p for p in dict.fromkeys(precisions) if p != "fp32"]
    # Only what the user gave: the precision stage keeps its own defaults for the rest.
    calibration = {
        k: v
        for k, v in dict(calib_data=calib_data, calib_size=calib_size, calib_method=calib_method).items()
        if v is not None
    }
    calibration["keep_io_types"] = keep_io_types
    if all_models:
        _export_all(options, extra, calibration, fmt)
    else:
        _export_one(name, options, extra, calibration, fmt)


# ---- one model ------------------------------------------------------------------------------
def _export_one(name: str, options: dict[str, Any], extra: list[str], calibration: dict[str, Any], fmt: str) -> None:
    from deploykit.export import export_model

    err = console(stderr=True)
    with err.status(f"{name}: starting", spinner="dots") as status:
        result = export_model(name, progress=lambda step: status.update(f"{name}: {step}"), **options)
        variants = _make_variants(name, options["repo"], extra, calibration, status.update)
    if fmt == "json":
        out = result.to_dict()
        if variants:
            out["variants"] = [_variant_dict(v) for v in variants]
        echo_json(out)
    else:
        _render_one(result, variants)


def _make_variants(name: str, repo: str, precisions: list[str], calibration: dict[str, Any], update) -> list[Any]:
    """FP16/INT8 variants through the precision stage (``deploykit.precision.make_variant``)."""
    if not precisions:
        return []
    try:
        from deploykit.precision import make_variant
    except ImportError as exc:
        raise DeployKitError(
            "the precision stage (deploykit.precision.make_variant) is not available in this install",
            hint=f"the FP32 export was written; make the other variants with `deploykit quantize {name}`",
        ) from exc
    from deploykit.repository import ModelRepository

    made = []
    for precision in precisions:
        update(f"{name}: making the {precision} variant")
        made.append(make_variant(repo=ModelRepository(repo), model=name, precision=precision, **calibration))
    return made


def _variant_dict(variant: Any) -> Any:
    if isinstance(variant, dict):
        return variant
    if hasattr(variant, "to_dict"):
        return variant.to_dict()
    if hasattr(variant, "to_sidecar"):
        return variant.to_sidecar()
    return str(variant)


def _variant_line(variant: Any) -> str:
    artifact = getattr(variant, "artifact", variant)
    path = getattr(artifact, "path", None)
    label = getattr(artifact, "variant", None) or str(variant)
    return f"{label}  {path}" if path else label


def _mb(n: int) -> str:
    return f"{n / 1e6:,.1f} MB" if n >= 1e6 else f"{n / 1e3:,.1f} kB"


def _shape(spec) -> str:
    from rich.markup import escape

    dims = ", ".join("batch" if d < 0 else str(d) for d in spec.shape)
    return escape(f"{spec.name} {spec.dtype} [{dims}]")


def _render_one(result, variants: list[Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = console()
    p = result.parity
    total = p.images * len(p.batch_sizes)
    batches = " and ".join(str(b) for b in p.batch_sizes)
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    table.add_row("variant", result.artifact.variant)
    table.add_row("file", escape(f"{result.path}  ({_mb(result.bytes)})"))
    table.add_row("input", _shape(result.input))
    table.add_row("output", _shape(result.output))
    table.add_row("opset", f"{result.opset}  (torch {result.onnx.exporter.get('torch', '?')}, dynamo exporter)")
    table.add_row("weights", result.weights if result.weights == "random-init" else f"sha256 {result.weights[:16]}...")
    table.add_row(
        "parity",
        f"max abs {p.max_abs:.2e}, max rel {p.max_rel:.2e} (tolerance {p.tolerance:g}); "
        f"top-1 {round(p.top1_agreement * total)}/{total} agree; {p.images} images at batch {batches}",
    )
    table.add_row("images", result.images)
    trt = result.onnx.tensorrt
    ops = len(result.onnx.operators)
    if trt.ok:
        trt_text = f"[green]all {ops} operator types supported[/green] by TensorRT {trt.tensorrt_version}'s ONNX parser"
    else:
        problems = [*(f"unsupported {op}" for op in trt.unsupported), *trt.violations]
        if not trt.opset_supported:
            problems.append(f"opset {trt.opset} not documented")
        trt_text = f"[yellow]TensorRT {trt.tensorrt_version}: {escape('; '.join(problems[:4]))}[/yellow]"
    table.add_row("TensorRT", trt_text)
    if result.dropped_keys:
        table.add_row("dropped", f"{len(result.dropped_keys)} auxiliary-classifier tensors (aux1, aux2) from the checkpoint")
    if result.labels:
        table.add_row("labels", result.labels)
    table.add_row("time", f"{result.seconds:.1f} s")
    out.print(f"[green]exported[/green] {result.model} -> {result.artifact.directory}")
    out.print(table)
    for note in result.notes:
        out.print(f"[dim]note: {escape(note)}[/dim]")
    for variant in variants:
        out.print(f"[green]made[/green] {_variant_line(variant)}")
    out.print(f"[dim]open the graph: netron {result.path}  (or drop the file on https://netron.app)[/dim]")


# ---- every model ----------------------------------------------------------------------------
def _export_all(options: dict[str, Any], extra: list[str], calibration: dict[str, Any], fmt: str) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from deploykit.export import ExportFailure, export_models
    from deploykit.zoo import list_models

    names = list_models()
    err = console(stderr=True)
    variant_errors: list[tuple[str, str]] = []
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=err
    ) as bar:
        task = bar.add_task("export", total=len(names))
        current = {"name": ""}

        def on_start(name: str, index: int) -> None:
            current["name"] = name
            bar.update(task, description=f"export {name}")

        def on_done(name: str, outcome) -> None:
            if extra and not isinstance(outcome, ExportFailure):
                try:
                    _make_variants(name, options["repo"], extra, calibration, lambda text: bar.update(task, description=text))
                except DeployKitError as exc:
                    variant_errors.append((name, exc.message))
            bar.advance(task)

        batch = export_models(
            names,
            on_start=on_start,
            on_done=on_done,
            progress=lambda step: bar.update(task, description=f"{current['name']}: {step}"),
            **options,
        )
    if fmt == "json":
        out = batch.to_dict()
        if variant_errors:
            out["variant_failures"] = [{"model": m, "error": e} for m, e in variant_errors]
        echo_json(out)
    else:
        _render_all(batch, variant_errors)
    if batch.failures or variant_errors:
        raise SystemExit(1)


def _render_all(batch, variant_errors: list[tuple[str, str]]) -> None:
    from rich.markup import escape
    from rich.table import Table

    out = console()
    table = Table(title="deploykit export --all", title_justify="left")
    for column, justify in (
        ("model", "left"),
        ("result", "left"),
        ("size", "right"),
        ("opset", "right"),
        ("max rel", "right"),
        ("top-1", "right"),
        ("TensorRT", "left"),
        ("seconds", "right"),
    ):
        table.add_column(column, justify=justify, no_wrap=column == "model")
    for r in batch.results:
        table.add_row(
            r.model,
            "[green]ok[/green]",
            _mb(r.bytes),
            str(r.opset),
            f"{r.parity.max_rel:.1e}",
            f"{r.parity.top1_agreement:.0%}",
            "ok" if r.onnx.tensorrt.ok else f"[yellow]{escape(', '.join(r.unsupported_ops) or 'see sidecar')}[/yellow]",
            f"{r.seconds:.1f}",
        )
    for f in batch.failures:
        table.add_row(f.model, "[red]failed[/red]", "", "", "", "", "", "")
    out.print(table)
    for f in batch.failures:
        out.print(f"[red]{f.model}: {escape(f.error)}[/red]" + (f"  [dim]({escape(f.hint)})[/dim]" if f.hint else ""))
    for model, error in variant_errors:
        out.print(f"[red]{model}: {escape(error)}[/red]")
    total = len(batch.results) + len(batch.failures)
    out.print(f"{len(batch.results)}/{total} exported in {batch.seconds:.0f} s")
