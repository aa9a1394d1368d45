"""`deploykit bench`: latency, throughput and memory per backend, precision and batch."""

from __future__ import annotations

import sys

import click

from deploykit.artifacts import PRECISIONS as PRECISION_CHOICES
from deploykit.commands._common import (
    console,
    format_option,
    repo_option,
    split_ints,
    split_list,
    trust_option,
)
from deploykit.runtimes import BACKENDS

BACKEND_CHOICES = tuple(BACKENDS)
# Far above any real batch: the per-configuration memory check turns down what will not fit.
MAX_BATCH = 1 << 20


@click.command(name="bench")
@click.argument("names", nargs=-1, required=True)
@click.option("--backend", "backends", default="torch,onnxruntime", show_default=True,
              help=f"Comma-separated: {', '.join(BACKEND_CHOICES)}.")
@click.option("--precision", "precisions", default="fp32", show_default=True,
              help="Comma-separated: fp32, fp16, int8.")
@click.option("--batch", "batches", default="1", show_default=True, help="Comma-separated batch sizes.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True,
              help="Untimed calls before timing.")
@click.option("--iterations", type=click.IntRange(min=1), default=None,
              help="Least number of timed calls (default 20), split in two windows.")
@click.option("--seconds", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Least timed seconds instead of --iterations.")
@click.option("--max-seconds", type=click.FloatRange(min=0, min_open=True), default=60.0, show_default=True,
              help="Time cap per configuration when the windows do not agree.")
@click.option("--tolerance", type=click.FloatRange(min=0, min_open=True), default=0.05, show_default=True,
              help="Two consecutive windows' medians must agree within this fraction.")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="Intra-op threads (default on CPU: all physical cores).")
@click.option("--ceilings/--no-ceilings", default=True, show_default=True,
              help="CPU: measure SGEMM and copy ceilings in each worker after timing ('% SGEMM', '% copy').")
@click.option("--input-size", type=click.IntRange(min=8), default=None,
              help="Square input size (default: the artifact's, else the model card's).")
@click.option("--num-classes", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Classes of the torch model (match the exported artifacts).")
@click.option("--weights", type=click.Path(dir_okay=False), default=None,
              help="State dict for the torch backend (weights_only load).")
@click.option("--channels-last", is_flag=True, help="torch: NHWC memory format.")
@click.option("--cuda-graphs", is_flag=True, help="torch on CUDA: capture and replay CUDA graphs.")
@click.option("--compile", "compile", is_flag=True, help="torch: torch.compile the model.")
@repo_option()
@trust_option("an artifact's model file")
@click.option("--no-build", is_flag=True, help="Fail instead of exporting / quantizing missing artifacts.")
@click.option("--no-isolate", is_flag=True, help="Run every configuration in this process (faster, less fair).")
@click.option("--peak-gflops", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Device peak for the '% peak' column (default: known-device table or CPU estimate).")
@click.option("--per-layer", is_flag=True, help="Also profile time per layer (apart from the timed loop).")
@format_option("table", "json", "csv", "markdown")
@click.option("--out", type=click.Path(dir_okay=False), default=None,
              help="Also save the results: JSON, or CSV / Markdown by the file's suffix.")
def command(names, backends, precisions, batches, no_build, no_isolate, fmt, out, **settings) -> None:
    """Benchmark NAMES (zoo models) on every backend x precision x batch.

    \b
    Each configuration runs in a fresh process (unless --no-isolate), warms up, then times
    windows of calls until two consecutive windows agree within --tolerance or --max-seconds
    is hit. Missing ONNX variants are exported / quantized first unless --no-build.
    Combinations that do not apply (torch int8) are skipped; the exit code is 1 when any
    configuration failed or when every one was skipped (nothing measured).

    \b
    Example:
      deploykit bench resnet50 vgg16 --backend torch,onnxruntime,openvino \\
          --precision fp32,int8 --batch 1,8 --format json --out results.json
    """
    from deploykit import bench

    if settings.get("weights"):
        from deploykit.checkpoints import read_checkpoint

        read_checkpoint(settings["weights"])  # a refused checkpoint is bad input: exit 2, before any work
    configs = bench.plan_matrix(
        names,
        split_list(backends, BACKEND_CHOICES, "backend"),
        split_list(precisions, PRECISION_CHOICES, "precision"),
        split_ints(batches, "batch size", low=1, high=MAX_BATCH),
        build=not no_build,
        **settings,
    )
    run = bench.run_matrix(configs, isolate=not no_isolate, progress=True)
    if out:
        bench.save(run, out)
    if fmt == "table":
        bench.render_table(run, console())
    else:
        click.echo(bench.render_text(run, fmt), nl=False)
    if run.exit_code:
        click.echo(
            f"error: {len(run.failed)} of {len(run.results)} configuration(s) failed (see their reasons)",
            err=True,
        )
        sys.exit(run.exit_code)
    if all(r.status == "skipped" for r in run.results):
        click.echo(f"error: all {len(run.results)} configuration(s) were skipped: nothing was measured "
                   "(see their reasons)", err=True)
        sys.exit(1)
