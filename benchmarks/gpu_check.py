"""GPU check: the torch CUDA runner in FP32, TF32, FP16, channels-last, eager and CUDA graphs, in a time budget.

Made for a GPU host that has Python, PyTorch (CUDA) and numpy and nothing else installable:
it uses only those and the deploykit modules that need nothing more (zoo, analyze, the torch
runner, bench's timing). Run it through ``benchmarks/gpu_check.sh OUT_DIR`` (which sets
PYTHONPATH to the checkout and a hard timeout), or directly::

    PYTHONPATH=. python benchmarks/gpu_check.py OUT_DIR [--device cpu --input-size 32 ...]

Writes ``OUT_DIR/gpu_check.json`` (a ``deploykit.bench`` result file that ``deploykit
report`` reads) after every configuration, so a run cut short keeps what it measured, and
``OUT_DIR/gpu_check.md`` at the end: the table and the best ResNet-50 throughput as a ratio
of the MLPerf Inference v4.0 anchor.

Timing as trtexec does it: buffers allocated once, the forward (or graph replay) timed with
CUDA events on device-resident input (the latency), host-to-device and device-to-host copies
from pinned host memory timed apart, and end to end (all three) recorded too. Device memory
as separate weights / activations+scratch / I/O fields, each a drop in free device memory
(``torch.cuda.mem_get_info``). ``--device cpu`` runs the same code paths without a GPU.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

# MLPerf Inference v4.0, datacenter, closed division, ResNet-50 offline: one H100-SXM-80GB
# with TensorRT INT8 (NVIDIA's submission), in samples (images) per second.
MLPERF_ANCHOR = {
    "images_per_second": 88714.0,
    "what": "MLPerf Inference v4.0 ResNet-50 offline, 1x H100-SXM-80GB, TensorRT INT8 (NVIDIA submission)",
}
VARIANTS = {
    "fp32": {"precision": "fp32", "tf32": False, "channels_last": False, "cuda_graphs": False},
    "tf32": {"precision": "fp32", "tf32": True, "channels_last": False, "cuda_graphs": False},
    "fp16": {"precision": "fp16", "channels_last": False, "cuda_graphs": False},
    "fp16+cl": {"precision": "fp16", "channels_last": True, "cuda_graphs": False},
    "fp32+graphs": {"precision": "fp32", "tf32": False, "channels_last": False, "cuda_graphs": True},
    "tf32+graphs": {"precision": "fp32", "tf32": True, "channels_last": False, "cuda_graphs": True},
    "fp16+graphs": {"precision": "fp16", "channels_last": False, "cuda_graphs": True},
    "fp16+cl+graphs": {"precision": "fp16", "channels_last": True, "cuda_graphs": True},
}
DEFAULT_VARIANTS = ("fp32", "fp16", "fp16+cl+graphs")  # gpu_check.sh asks for all of VARIANTS
DEFAULT_MODELS = ("resnet50", "vgg16", "googlenet", "mobilenet_v2")
DEFAULT_BATCHES = (1, 8, 64, 256)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir", type=Path)
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (a dry run of the script itself)")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS))
    p.add_argument("--batches", default=",".join(map(str, DEFAULT_BATCHES)))
    p.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help=f"from {', '.join(VARIANTS)}")
    p.add_argument("--input-size", type=int, default=None, help="default: each model card's size (224)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--seconds", type=float, default=1.0, help="least timed seconds per configuration")
    p.add_argument("--max-seconds", type=float, default=4.0, help="timing cap per configuration")
    p.add_argument("--budget-seconds", type=float, default=420.0,
                   help="stop starting new configurations after this long (the shell adds a hard timeout)")
    args = p.parse_args(argv)
    problem = check_args(args)
    if problem:
        p.error(problem)
    return args


def check_args(args: argparse.Namespace) -> str | None:
    """What is wrong with the arguments (one line), or None."""
    try:
        batches = _ints(args.batches)
    except ValueError:
        return f"--batches: comma-separated integers, got {args.batches!r}"
    unknown = [v for v in _names(args.variants) if v not in VARIANTS]
    if unknown:
        return f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}"
    if not batches or min(batches) < 1 or max(batches) > 4096:
        return "--batches: at least one, each 1..4096"
    if not _names(args.models) or not _names(args.variants):
        return "--models and --variants need at least one name each"
    if args.device.split(":")[0] not in ("cuda", "cpu"):
        return f"--device: cuda or cpu, got {args.device!r}"
    from deploykit.errors import DeployKitError
    from deploykit.zoo import get_card

    try:
        for model in _names(args.models):
            get_card(model)
    except DeployKitError as exc:
        return exc.message
    if args.input_size is not None and args.input_size < 32:
        return "--input-size: at least 32"
    if min(args.seconds, args.max_seconds, args.budget_seconds) <= 0 or args.warmup < 0:
        return "--seconds, --max-seconds and --budget-seconds must be positive, --warmup 0 or more"
    return None


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


class Check:
    """The results so far, saved as a deploykit.bench file after every configuration."""

    def __init__(self, args: argparse.Namespace, machine: dict, notes: list[str]):
        self.args, self.machine, self.notes = args, machine, notes
        self.results: list = []
        self.start = time.monotonic()
        self.json_path = args.out_dir / "gpu_check.json"

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def save(self) -> None:
        from deploykit import bench
        from deploykit.artifacts import now_iso
        from deploykit.fileio import atomic_write_text

        run = bench.BenchRun(tuple(self.results), self.machine, now_iso(), isolate=False, notes=tuple(self.notes))
        atomic_write_text(self.json_path, run.to_json())

    def record(self, config, status: str, reason: str | None = None, raw: dict | None = None,
               job: dict | None = None) -> None:
        from deploykit import bench

        job = job or {"config": config.to_dict()}
        raw = raw or {"status": status, "reason": reason}
        self.results.append(bench.finish_result(job, raw, self.machine))
        r = self.results[-1]
        shown = f"{r.throughput_ips:,.0f} img/s, p50 {r.latency.p50_ms:.2f} ms" if r.ok else f"{r.status}: {r.reason}"
        print(f"[{self.elapsed():5.0f}s] {config.model:13s} {config.label:26s} b{config.batch:<4d} {shown}", flush=True)
        self.save()


def measure_one(runner, config, size: int, cost: dict | None) -> dict:
    """One batch size on an active runner: the raw worker-style result (never raises)."""
    import torch

    from deploykit import bench
    from deploykit.machine import peak_rss_bytes

    try:
        batch = bench.make_input(config.batch, size)
        latency, phases = bench.measure_phases(runner, batch, staged=True, warmup=config.warmup,
                                               seconds=config.seconds, max_seconds=config.max_seconds,
                                               tolerance=config.tolerance)
        return {
            "status": "ok",
            "latency": latency.to_dict(),
            "phases_ms": phases,
            "input_shape": list(batch.shape),
            "device_memory_bytes": runner.device_memory_bytes(),
            "device_memory": runner.device_memory(),
            "runner": bench.jsonable(runner.describe()),
            "peak_rss_bytes": peak_rss_bytes(),
        }
    except torch.cuda.OutOfMemoryError:
        return {"status": "failed", "reason": f"CUDA out of memory at batch {config.batch}"}
    except Exception as exc:  # one configuration's failure must not end the check
        return {"status": "failed", "reason": bench.one_line(exc)}
    finally:
        if runner.kind == "cuda":
            runner.release_graphs()  # free this batch size's graph before the next
            torch.cuda.empty_cache()


def skip_reason(device: str, opts: dict) -> str | None:
    from deploykit.runtimes.torch_runner import torch_supports

    if device == "cuda":
        return torch_supports(device, opts["precision"])
    if opts.get("tf32"):
        return "TF32 needs a GPU"
    if opts["cuda_graphs"]:
        return "CUDA graphs need a GPU"
    return torch_supports(device, opts["precision"])


def run_variant(check: Check, model: str, variant: str, size: int, cost: dict | None) -> None:
    """Every batch size of one model and variant on one loaded runner."""
    from deploykit import bench
    from deploykit.errors import DeployKitError
    from deploykit.runtimes.torch_runner import TorchRunner

    args, opts = check.args, VARIANTS[variant]
    configs = [
        bench.BenchConfig(model=model, backend="torch", batch=b, device=args.device, warmup=args.warmup,
                          seconds=args.seconds, max_seconds=args.max_seconds, input_size=size, **opts)
        for b in _ints(args.batches)
    ]
    reason = skip_reason(args.device, opts)
    if reason:
        for config in configs:
            check.record(config, "skipped", reason)
        return
    runner = TorchRunner(model, device=args.device, input_size=size, **opts)
    try:
        runner.activate()
    except (DeployKitError, RuntimeError) as exc:
        for config in configs:
            check.record(config, "failed", f"cannot load: {exc}")
        return
    try:
        for config in configs:
            if check.elapsed() > args.budget_seconds:
                check.record(config, "skipped", f"time budget of {args.budget_seconds:g} s spent")
                continue
            too_big = bench.check_memory(config, size, cost)
            if too_big:
                check.record(config, "failed", too_big)
                continue
            job = {"config": config.to_dict(), "macs_per_image": cost["macs"] if cost else None}
            raw = measure_one(runner, config, size, cost)
            check.record(config, raw["status"], raw.get("reason"), raw, job)
    finally:
        runner.deactivate()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import torch

    from deploykit import bench
    from deploykit.machine import describe_machine
    from deploykit.zoo import get_card

    args.out_dir.mkdir(parents=True, exist_ok=True)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU visible to PyTorch (use --device cpu for a dry run)", file=sys.stderr)
        return 2
    # Let cuDNN pick the fastest convolution per shape during warm-up, as a deployment would.
    torch.backends.cudnn.benchmark = True
    notes = [
        "latency = the forward (or graph replay) on device-resident input, timed with CUDA events; host-to-"
        "device and device-to-host copies from pinned host memory timed apart (H2D/D2H), end to end in the JSON",
        "GPU memory: weights / activations+scratch / I/O, each a drop in free device memory (mem_get_info)",
        "cudnn.benchmark=True; variant fp32 forbids TF32, tf32 allows it for convolutions and matmuls",
        f"per configuration: {args.warmup} warm-up calls, at least {args.seconds:g} s timed in two windows, "
        f"cap {args.max_seconds:g} s; budget {args.budget_seconds:g} s for the whole check",
    ]
    check = Check(args, describe_machine(probe_torch=True).to_dict(), notes)
    for model in _names(args.models):
        size = args.input_size or get_card(model).input_size
        try:
            cost = bench.model_cost(model, size)
        except Exception as exc:  # analyze is optional here: timing still works without MACs
            cost = None
            notes.append(f"{model}: no MACs ({exc})")
        for variant in _names(args.variants):
            run_variant(check, model, variant, size, cost)
    check.save()
    run = bench.BenchRun.load(check.json_path)
    md_path = args.out_dir / "gpu_check.md"
    md_path.write_text(render_markdown(run, check.elapsed()))
    print()
    print(md_path.read_text())
    return 1 if run.failed else 0


def best_resnet50(run) -> object | None:
    candidates = [r for r in run.results if r.ok and r.config.model == "resnet50"]
    return max(candidates, key=lambda r: r.throughput_ips) if candidates else None


def render_markdown(run, seconds: float) -> str:
    from deploykit.bench import to_markdown

    lines = ["# GPU check: the torch CUDA runner in FP32, TF32, FP16, channels-last, eager and CUDA graphs", ""]
    lines += [to_markdown(run)]
    best = best_resnet50(run)
    lines.append("## ResNet-50 against the MLPerf anchor")
    lines.append("")
    if best is None:
        lines.append("No ResNet-50 result: no comparison.")
    else:
        ratio = best.throughput_ips / MLPERF_ANCHOR["images_per_second"]
        lines.append(
            f"Best ResNet-50 here: {best.throughput_ips:,.0f} images/s ({best.config.label}, batch "
            f"{best.config.batch}, {best.config.device}). Anchor: {MLPERF_ANCHOR['images_per_second']:,.0f} "
            f"images/s ({MLPERF_ANCHOR['what']}). Ratio: **{ratio:.3f}** "
            f"({ratio * 100:.1f} % of the anchor)."
        )
        lines.append("")
        lines.append(
            "The anchor is TensorRT INT8 with MLPerf's tuned harness; plain PyTorch FP16 is expected to reach "
            "a fraction of it. The ratio says how much an engine build (deploykit build) has to win."
        )
    lines.append("")
    lines += [f"- {note}" for note in run.notes]
    lines.append(f"- wall time of the check: {seconds:.0f} s")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
