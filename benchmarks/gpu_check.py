"""GPU check: torch CUDA FP32 vs FP16 vs FP16 + channels_last + CUDA graphs, within a time budget.

Made for a GPU host that has Python, PyTorch (CUDA) and numpy and nothing else installable:
it uses only those and the deploykit modules that need nothing more (zoo, analyze, the torch
runner, bench's timing). Run it through ``benchmarks/gpu_check.sh OUT_DIR`` (which sets
PYTHONPATH to the checkout and a hard timeout), or directly::

    PYTHONPATH=. python benchmarks/gpu_check.py OUT_DIR [--device cpu --input-size 32 ...]

Writes ``OUT_DIR/gpu_check.json`` (a ``deploykit.bench`` result file that ``deploykit
report`` reads) after every configuration, so a run cut short keeps what it measured, and
``OUT_DIR/gpu_check.md`` at the end: the table and the best ResNet-50 throughput as a ratio
of the MLPerf Inference v4.0 anchor.
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
    "fp32": {"precision": "fp32", "channels_last": False, "cuda_graphs": False},
    "fp16": {"precision": "fp16", "channels_last": False, "cuda_graphs": False},
    "fp16+cl+graphs": {"precision": "fp16", "channels_last": True, "cuda_graphs": True},
}
DEFAULT_MODELS = ("resnet50", "vgg16", "googlenet", "mobilenet_v2")
DEFAULT_BATCHES = (1, 8, 64, 256)


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out_dir", type=Path)
    p.add_argument("--device", default="cuda", help="cuda (default) or cpu (a dry run of the script itself)")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS))
    p.add_argument("--batches", default=",".join(map(str, DEFAULT_BATCHES)))
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--input-size", type=int, default=None, help="default: each model card's size (224)")
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--seconds", type=float, default=1.0, help="least timed seconds per configuration")
    p.add_argument("--max-seconds", type=float, default=4.0, help="timing cap per configuration")
    p.add_argument("--budget-seconds", type=float, default=420.0,
                   help="stop starting new configurations after this long (the shell adds a hard timeout)")
    return p.parse_args(argv)


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x.strip()]


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import torch

    from deploykit import bench
    from deploykit.artifacts import now_iso
    from deploykit.errors import DeployKitError
    from deploykit.fileio import atomic_write_text
    from deploykit.machine import describe_machine, peak_rss_bytes
    from deploykit.runtimes.torch_runner import TorchRunner, torch_supports
    from deploykit.zoo import get_card

    start = time.monotonic()
    out_dir: Path = args.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    models, batches, variants = _names(args.models), _ints(args.batches), _names(args.variants)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        print(f"error: unknown variant(s) {unknown}; choose from {list(VARIANTS)}", file=sys.stderr)
        return 2
    if args.device == "cuda" and not torch.cuda.is_available():
        print("error: no CUDA GPU visible to PyTorch (use --device cpu for a dry run)", file=sys.stderr)
        return 2
    # Let cuDNN pick the fastest convolution per shape during warm-up, as a deployment would.
    torch.backends.cudnn.benchmark = True
    machine = describe_machine(probe_torch=True).to_dict()
    notes = [
        "torch CUDA timings exclude host<->device copies: the input is staged on the GPU once (as in "
        "MLPerf's offline scenario) and the output stays there",
        f"cudnn.benchmark=True; TF32 for convolutions: {torch.backends.cudnn.allow_tf32} (PyTorch default)",
        f"per configuration: {args.warmup} warm-up calls, at least {args.seconds:g} s timed in two windows, "
        f"cap {args.max_seconds:g} s; budget {args.budget_seconds:g} s for the whole check",
    ]
    results: list = []
    json_path, md_path = out_dir / "gpu_check.json", out_dir / "gpu_check.md"

    def save() -> None:
        run = bench.BenchRun(tuple(results), machine, now_iso(), isolate=False, notes=tuple(notes))
        atomic_write_text(json_path, run.to_json())

    def record(config, status, reason=None, raw=None, job=None) -> None:
        job = job or {"config": config.to_dict()}
        raw = raw or {"status": status, "reason": reason}
        results.append(bench.finish_result(job, raw, machine))
        r = results[-1]
        shown = f"{r.throughput_ips:,.0f} img/s, p50 {r.latency.p50_ms:.2f} ms" if r.ok else f"{r.status}: {r.reason}"
        print(f"[{time.monotonic() - start:5.0f}s] {config.model:13s} {config.label:22s} b{config.batch:<4d} {shown}",
              flush=True)
        save()

    device = args.device
    for model in models:
        size = args.input_size or get_card(model).input_size
        try:
            cost = bench.model_cost(model, size)
        except Exception as exc:  # analyze is optional here: timing still works without MACs
            cost = None
            notes.append(f"{model}: no MACs ({exc})")
        for variant in variants:
            opts = VARIANTS[variant]
            configs = [
                bench.BenchConfig(model=model, backend="torch", batch=b, device=device, warmup=args.warmup,
                                  seconds=args.seconds, max_seconds=args.max_seconds, input_size=size, **opts)
                for b in batches
            ]
            reason = torch_supports(device, opts["precision"]) or (
                "CUDA graphs need a GPU" if opts["cuda_graphs"] and device != "cuda" else None
            )
            if reason:
                for config in configs:
                    record(config, "skipped", reason)
                continue
            runner = TorchRunner(model, device=device, precision=opts["precision"], input_size=size,
                                 channels_last=opts["channels_last"], cuda_graphs=opts["cuda_graphs"])
            try:
                runner.activate()
            except (DeployKitError, RuntimeError) as exc:
                for config in configs:
                    record(config, "failed", f"cannot load: {exc}")
                continue
            try:
                for config in configs:
                    if time.monotonic() - start > args.budget_seconds:
                        record(config, "skipped", f"time budget of {args.budget_seconds:g} s spent")
                        continue
                    too_big = bench.check_memory(config, size, cost)
                    if too_big:
                        record(config, "failed", too_big)
                        continue
                    job = {"config": config.to_dict(), "macs_per_image": cost["macs"] if cost else None}
                    raw = {"status": "failed"}
                    try:
                        if device == "cuda":
                            torch.cuda.reset_peak_memory_stats()
                        batch = bench.make_input(config.batch, size)
                        latency = bench.measure(runner, batch, warmup=config.warmup, seconds=config.seconds,
                                                max_seconds=config.max_seconds, tolerance=config.tolerance)
                        raw = {
                            "status": "ok",
                            "latency": latency.to_dict(),
                            "input_shape": list(batch.shape),
                            "device_memory_bytes": runner.device_memory_bytes(),
                            "runner": bench.jsonable(runner.describe()),
                            "peak_rss_bytes": peak_rss_bytes(),
                        }
                    except torch.cuda.OutOfMemoryError:
                        raw = {"status": "failed", "reason": f"CUDA out of memory at batch {config.batch}"}
                    except Exception as exc:  # one configuration's failure must not end the check
                        raw = {"status": "failed", "reason": bench.one_line(exc)}
                    finally:
                        if device == "cuda":
                            runner.release_graphs()  # free this batch size's graph before the next
                            torch.cuda.empty_cache()
                    record(config, raw["status"], raw.get("reason"), raw, job)
            finally:
                runner.deactivate()

    save()
    run = bench.BenchRun.load(json_path)
    md_path.write_text(render_markdown(run, time.monotonic() - start))
    print()
    print(md_path.read_text())
    return 1 if run.failed else 0


def best_resnet50(run) -> object | None:
    candidates = [r for r in run.results if r.ok and r.config.model == "resnet50"]
    return max(candidates, key=lambda r: r.throughput_ips) if candidates else None


def render_markdown(run, seconds: float) -> str:
    from deploykit.bench import to_markdown

    lines = ["# GPU check: torch CUDA FP32 vs FP16 vs FP16 + channels_last + CUDA graphs", ""]
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
