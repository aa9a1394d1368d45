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
@click.option(
    "--weights",
    help="A state dict or checkpoint file (torch.save), or torchvision weights by name: DEFAULT, IMAGENET1K_V1, ...",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Random init seed without --weights (recorded).")
@click.option("--module", "factory", metavar="PKG.MOD:FACTORY", help="Export the nn.Module this factory returns as NAME.")
@click.option("--num-classes", type=int, help="Classifier outputs (default 1000; must match --weights).")
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset to produce.")
@click.option(
    "--exporter",
    type=click.Choice(["dynamo", "torchscript"]),
    default="dynamo",
    show_default=True,
    help="torch.onnx.export(dynamo=True), or the TorchScript exporter (dynamo=False: deprecated upstream "
    "since torch 2.9, faster on some models; verified the same way, recorded in the sidecar).",
)
@click.option("--batch", type=int, help="Fix the batch size (default: dynamic batch).")
@click.option("--input-size", type=int, help="Image side in pixels (default: the model card's, e.g. 227 for AlexNet).")
@click.option(
    "--max-batch-size", type=int, default=32, show_default=True, help="Triton max_batch_size (dynamic batch only)."
)
@click.option("--data", type=click.Path(file_okay=False), help="Folder of images to verify on (default: sample photos).")
@click.option(
    "--verify-images", type=int, default=2, show_default=True,
    help="Photos run through PyTorch and ONNX Runtime to verify the export (2-16; accuracy is `deploykit parity`'s job).",
)  # fmt: skip
@click.option(
    "--external-data-threshold", "external_data_mib", type=click.IntRange(0, 2047), default=64, show_default=True,
    metavar="MIB", help="Weights above this many MiB go to model.onnx.data beside the graph (ONNX external data).",
)  # fmt: skip
@click.option("--tolerance", type=float, default=1e-3, show_default=True, help="Max error relative to the logits' size.")
@repo_option()
@click.option("--force", is_flag=True, help="Discard files deploykit did not write in the variant's 1/ folder.")
@click.option("--precision", default="fp32", show_default=True, help="Also make these variants, e.g. fp32,fp16,int8.")
@click.option("--calib-data", type=click.Path(), help="INT8 calibration images (see `deploykit quantize`).")
@click.option("--calib-size", type=int, help="Number of INT8 calibration images.")
@click.option("--calib-method", help="INT8 calibration method (see `deploykit quantize`).")
@click.option("--keep-io-types/--no-keep-io-types", default=True, show_default=True, help="FP16/INT8: keep FP32 input/output.")
@format_option("table", "json")
def command(name: str | None, all_models: bool, precision: str, fmt: str, **given: Any) -> None:
    """Export NAME to ONNX, verify it against PyTorch, and write it to the model repository.

    \b
    Writes <repo>/<NAME>_onnx_fp32/1/model.onnx, config.pbtxt (Triton, onnxruntime_onnx)
    and deploykit.json (lineage: weights hash, input spec, preprocessing, labels, opset,
    library versions, parity figures). Verification runs PyTorch and ONNX Runtime (CPU) on
    --verify-images real photos, as one batch and the first at batch 1, and fails, writing
    nothing, beyond --tolerance.

    \b
    Examples:
      deploykit export vgg16
      deploykit export googlenet --weights googlenet.pth
      deploykit export resnet50 --weights IMAGENET1K_V2
      deploykit export resnet18 --num-classes 10 --weights digits.pt --input-size 64
      deploykit export --all --input-size 64
      deploykit export mynet --module mypackage.nets:build_net --input-size 160
    """
    precisions = split_list(precision, PRECISIONS, what="precision") or ["fp32"]
    if all_models and name:
        raise UsageError("give a model NAME or --all, not both")
    if not all_models and not name:
        raise UsageError("which model?", hint="deploykit export NAME (see `deploykit models`), or --all")
    for option in ("weights", "factory"):
        if all_models and given[option]:
            flag = "--weights" if option == "weights" else "--module"
            raise UsageError(f"{flag} fits one model, not --all", hint="export that model by name")
    if given["factory"] and given["weights"]:
        raise UsageError("--module builds its own weights: drop --weights", hint="load them inside the factory")
    # Only what the user gave: the precision stage keeps its own defaults for the rest.
    calibration = {k: given.pop(k) for k in ("calib_data", "calib_size", "calib_method", "keep_io_types")}
    calibration = {k: v for k, v in calibration.items() if v is not None}
    given["external_data_threshold"] = given.pop("external_data_mib") * 2**20
    extra = [p for p in dict.fromkeys(precisions) if p != "fp32"]
    if all_models:
        _export_all(given, extra, calibration, fmt)
    else:
        _export_one(name, given, extra, calibration, fmt)


# ---- one model ------------------------------------------------------------------------------
def _export_one(name: str, options: dict[str, Any], extra: list[str], calibration: dict[str, Any], fmt: str) -> None:
    from deploykit.export import export_factory, export_model
    from deploykit.export.render import render_one

    err = console(stderr=True)
    factory = options.pop("factory")
    with err.status(f"{name}: starting", spinner="dots") as status:

        def progress(step: str) -> None:
            status.update(f"{name}: {step}")

        if factory:  # --weights was refused with --module; the factory's module has no card size
            options = {**options, "input_size": options["input_size"] or 224}
            options.pop("weights")
            result = export_factory(factory, name, progress=progress, **options)
        else:
            result = export_model(name, progress=progress, **options)
        variants = _make_variants(name, options["repo"], extra, calibration, status.update)
    if fmt == "json":
        out = result.to_dict()
        if variants:
            out["variants"] = [v.to_sidecar() for v in variants]
        echo_json(out)
    else:
        render_one(result, variants, console())


def _make_variants(name: str, repo: str, precisions: list[str], calibration: dict[str, Any], update) -> list[Any]:
    """FP16/INT8 variants of the fresh FP32 export, through the pipeline's stage table."""
    from deploykit.pipeline import ensure_variant
    from deploykit.repository import ModelRepository

    repository = ModelRepository(repo)
    made = []
    for precision in precisions:
        update(f"{name}: making the {precision} variant")
        options = {("onnx", precision): calibration}
        made.append(ensure_variant(repository, name, "onnx", precision, progress=update, options=options)[0])
    return made


# ---- every model ----------------------------------------------------------------------------
def _export_all(options: dict[str, Any], extra: list[str], calibration: dict[str, Any], fmt: str) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from deploykit.export import ExportFailure, export_models

    options = {k: v for k, v in options.items() if k != "factory"}
    from deploykit.export.render import render_all
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
        render_all(batch, variant_errors, console())
    if batch.failures or variant_errors:
        raise SystemExit(1)
