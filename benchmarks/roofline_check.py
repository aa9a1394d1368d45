"""Every measured result against its roofline bound: the bound must hold, measured / bound is
the efficiency.

    python benchmarks/roofline_check.py                 # all three sources below
    python benchmarks/roofline_check.py --no-live       # recorded and published figures only

Three sources of measurements:

1. **Recorded**: every ``status == "ok"`` row of ``benchmarks/results/*.json`` that is a bench
   run (``cpu_bench.json``, any GPU run). CPU rows are bounded by this CPU's ceilings measured
   now, the same way (``deploykit.ceilings``, in-process, at the row's thread count), unless
   the row carries the ceilings measured beside it (``ceilings``), which are then used. A VM's
   ceilings vary run to run, and a recorded run may even come from another host of the same
   name: the machines are written side by side so a reader can tell.
2. **Live**: FP32 on this CPU with torch eager, ONNX Runtime and OpenVINO (the last two on the
   model exported to ONNX, through deploykit's runners), measured now beside the ceilings in
   this process, at 1 thread and all cores (the same conditions on both sides of the ratio).
3. **Published**: MLPerf Inference v3.1 closed-division ResNet-50 Offline results (INT8,
   TensorRT) for H100 SXM, L4 and Jetson AGX Orin 64GB, each with its source file. Offline
   runs large batches: the bound is taken at batch 1024, where weight traffic is negligible.

Writes ``benchmarks/results/roofline_check.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
MLPERF = "https://github.com/mlcommons/inference_results_v3.1/blob/main/closed/NVIDIA"
# (label, device, samples/s, source, note)
PUBLISHED = (
    ("MLPerf v3.1 H100-SXM-80GB x1 TensorRT", "h100", 88526.0,
     f"{MLPERF}/results/DGX-H100_H100-SXM-80GBx1_TRT/resnet50/Offline/performance/run_1/mlperf_log_summary.txt",
     "one H100 SXM of a DGX H100"),
    ("MLPerf v3.1 L4 x1 TensorRT", "l4", 12881.7,
     f"{MLPERF}/results/L4x1_TRT/resnet50/Offline/performance/run_1/mlperf_log_summary.txt", ""),
    ("MLPerf v3.1 Jetson AGX Orin 64G TensorRT (MaxN)", "agx-orin", 6423.63,
     f"{MLPERF}/results/Orin_TRT/resnet50/Offline/performance/run_1/mlperf_log_summary.txt",
     "GPU and both DLAs were used (systems/Orin_TRT.json hw_notes); the bound is the GPU's alone, "
     "so it is stricter than the hardware's"),
)
OFFLINE_BATCH = 1024
LIVE_MODELS = ("resnet18", "mobilenet_v2", "googlenet")
LIVE_BATCHES = (1, 8)


def _bench_rows(path: Path) -> list[dict]:
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        return []
    rows = []
    for row in data["results"]:
        if isinstance(row, dict) and row.get("status") == "ok" and row.get("throughput_ips"):
            rows.append({**row, "_machine": data.get("machine") or {}, "_file": path.name})
    return rows


def _spec_for_row(row: dict, ceilings_cache: dict):
    from deploykit.estimate.check import device_for_gpu, spec_for_run
    from deploykit.estimate.devices import cpu_from_ceilings

    config = row["config"]
    precision = config["precision"]
    if str(config.get("device", "cpu")).startswith("cuda"):
        gpus = row["_machine"].get("gpus") or [{}]
        device = device_for_gpu(gpus[0].get("name"), gpus[0].get("memory_bytes"))
        return spec_for_run(device, precision) if device else None
    recorded = row.get("ceilings")
    if recorded and precision == "fp32":  # ceilings measured beside the run: use them
        return cpu_from_ceilings(precision, recorded["sgemm_gflops"], recorded["copy_gbps"],
                                 recorded["threads"])
    threads = config.get("threads") or None
    key = (precision, threads)
    if key not in ceilings_cache:
        ceilings_cache[key] = spec_for_run("cpu", precision, threads)
    return ceilings_cache[key]


def _same_host(row: dict) -> bool:
    """A recorded CPU row is comparable with ceilings measured now only on the same hardware
    (or when it carries its own ceilings)."""
    from deploykit.estimate.check import is_this_cpu

    if row.get("ceilings") or str(row["config"].get("device", "cpu")).startswith("cuda"):
        return True
    return is_this_cpu(row["_machine"])


def check_recorded() -> list[dict]:
    from deploykit.estimate.check import check_throughput

    checks, cache = [], {}
    for path in sorted(RESULTS.glob("*.json")):
        if path.name == "roofline_check.json":
            continue
        for row in _bench_rows(path):
            config = row["config"]
            spec = _spec_for_row(row, cache)
            if spec is None:
                continue
            label = f"{row.get('label', config['backend'])} threads={config.get('threads')}"
            check = check_throughput(label, config["model"], spec, int(config["batch"]),
                                     row["throughput_ips"], f"benchmarks/results/{path.name}",
                                     config.get("input_size"))
            checks.append({**check.to_dict(), "kind": "recorded", "backend": config["backend"],
                           "comparable": _same_host(row),
                           "threads": config.get("threads"), "peak_gflops": spec.peak_gflops,
                           "bandwidth_gbps": spec.bandwidth_gbps})
    return checks


def _best_ips(run, batch: int, seconds: float = 3.0) -> float:
    """Images/s of the fastest of the calls made in about ``seconds`` (after one warm-up)."""
    run()
    best, deadline = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < deadline or best == float("inf"):
        start = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - start)
    return batch / best


def _live_runs(model_name: str, onnx_dir: Path):
    """(backend, make(threads, batch) -> a callable that runs one batch) for torch eager and,
    when installed, ONNX Runtime and OpenVINO on the model exported to ONNX (FP32)."""
    import numpy as np
    import torch

    from deploykit._deps import is_available
    from deploykit.zoo import get_model

    module = get_model(model_name).eval()

    def torch_run(threads, batch):
        torch.set_num_threads(threads)
        x = torch.randn(batch, 3, 224, 224)
        return lambda: torch.inference_mode()(module)(x)

    runs = [("torch", torch_run)]
    backends = [b for b in ("onnxruntime", "openvino") if is_available(b)]
    if backends:
        from deploykit.export import export_onnx
        from deploykit.runtimes import get_runner

        path = onnx_dir / f"{model_name}.onnx"
        export_onnx(module, (1, 3, 224, 224), path)
        for backend in backends:
            def runner_run(threads, batch, backend=backend):
                runner = get_runner(backend, path, threads=threads).activate()
                x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
                return lambda: runner.infer(x)

            runs.append((backend, runner_run))
    return runs


def check_live(threads_list: list[int]) -> list[dict]:
    """Each live backend on this CPU, at each thread count, beside ceilings measured here."""
    import tempfile

    from deploykit.estimate.check import check_throughput
    from deploykit.estimate.devices import get_device

    checks = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in LIVE_MODELS:
            for backend, make in _live_runs(model, Path(tmp)):
                for threads in threads_list:
                    spec = get_device("cpu", "fp32", threads=threads)
                    for batch in LIVE_BATCHES:
                        ips = _best_ips(make(threads, batch), batch)
                        check = check_throughput(f"{backend} fp32 threads={threads}", model, spec,
                                                 batch, ips, "measured now (best of ~3 s)")
                        checks.append({**check.to_dict(), "kind": "live", "backend": backend,
                                       "comparable": True, "threads": threads,
                                       "peak_gflops": spec.peak_gflops,
                                       "bandwidth_gbps": spec.bandwidth_gbps})
    return checks


def _layer_inputs(model, x) -> dict:
    """Input of every conv / linear / pool module in one forward, by module name."""
    import torch

    inputs, hooks = {}, []

    def keep(name):
        def hook(module, args, output) -> None:  # returns None: the output is left as it is
            inputs.setdefault(name, (module, args[0]))

        return hook

    for name, module in model.named_modules():
        if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear, torch.nn.MaxPool2d,
                               torch.nn.AvgPool2d, torch.nn.AdaptiveAvgPool2d)):
            hooks.append(module.register_forward_hook(keep(name)))
    with torch.inference_mode():
        model(x)
    for hook in hooks:
        hook.remove()
    return inputs


def _best_seconds(module, x, repeats: int = 7) -> float:
    import torch

    best = float("inf")
    with torch.inference_mode():
        module(x)
        for _ in range(repeats):
            start = time.perf_counter()
            module(x)
            best = min(best, time.perf_counter() - start)
    return best


def check_layers(models=("resnet18", "mobilenet_v2"), batch: int = 1) -> list[dict]:
    """Each conv, linear and pooling layer run alone (torch, 1 thread) against its own bound."""
    import torch

    from deploykit.analyze import analyze_model
    from deploykit.estimate.devices import get_device
    from deploykit.estimate.roofline import bound_layer
    from deploykit.zoo import get_model

    spec = get_device("cpu", "fp32", threads=1)
    torch.set_num_threads(1)
    rows = []
    for name in models:
        by_name = {layer.name: layer for layer in analyze_model(name).layers}
        inputs = _layer_inputs(get_model(name).eval(), torch.randn(batch, 3, 224, 224))
        for layer_name, (module, x) in inputs.items():
            if layer_name not in by_name:
                continue
            bound = bound_layer(by_name[layer_name], spec, batch)
            measured = _best_seconds(module, x)
            rows.append({"model": name, "layer": layer_name, "kind": bound.kind, "engine": bound.engine,
                         "bound_us": bound.seconds * 1e6, "measured_us": measured * 1e6,
                         "efficiency": bound.seconds / measured, "bound": bound.bound})
    return rows


def layer_summary(rows: list[dict]) -> list[dict]:
    """Median efficiency of the layers by the size of their bound (small layers first)."""
    import statistics

    buckets = (("< 50 us", 0, 50), ("50-500 us", 50, 500), (">= 500 us", 500, float("inf")))
    out = []
    for label, low, high in buckets:
        chosen = [r["efficiency"] for r in rows if low <= r["bound_us"] < high]
        if chosen:
            out.append({"bound": label, "layers": len(chosen), "median_efficiency": statistics.median(chosen),
                        "min_efficiency": min(chosen), "max_efficiency": max(chosen)})
    return out


def check_published() -> list[dict]:
    from deploykit.estimate.check import check_throughput
    from deploykit.estimate.devices import get_device

    checks = []
    for label, device, ips, source, note in PUBLISHED:
        spec = get_device(device, "int8")
        check = check_throughput(label, "resnet50", spec, OFFLINE_BATCH, ips, source)
        checks.append({**check.to_dict(), "kind": "published", "backend": "tensorrt", "comparable": True,
                       "threads": None, "note": note, "peak_gflops": spec.peak_gflops,
                       "bandwidth_gbps": spec.bandwidth_gbps})
    return checks


def _check_table(checks: list[dict]) -> list[str]:
    lines = ["| kind | label | model | device | prec | batch | measured img/s | roofline img/s "
             "| efficiency | floor img/s | under floor |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for c in checks:
        lines.append(
            f"| {c['kind']} | {c['label']} | {c['model']} | {c['device']} | {c['precision']} | {c['batch']} "
            f"| {c['measured_ips']:,.1f} | {c['bound_ips']:,.1f} | {c['efficiency']:.0%} "
            f"| {c['floor_ips']:,.1f} | {'yes' if c['holds'] else '**NO**'} |"
        )
    return lines


def render_markdown(data: dict) -> str:
    from deploykit.machine import summarize_machine

    lines = [
        "# Roofline check: every measurement against its bound",
        "",
        f"Run {data['created_at']} on {summarize_machine(data['machine'])}.",
        "",
        "The roofline is `deploykit estimate`'s (sum over layers of max(FLOP / peak, bytes / bandwidth), "
        "activations through DRAM between layers); efficiency = measured images/s / roofline images/s, "
        "above 100 % where fusion or caches keep activations on chip. The floor is the hard one "
        "(compute alone, or weights + input + output over the bandwidth): nothing may beat it. "
        "CPU bounds use this CPU's ceilings measured in this run at the row's thread count "
        "(a VM's ceilings vary run to run).",
        "",
    ]
    for note in data["notes"]:
        lines.append(f"- {note}")
    lines += [
        "",
        f"**Hard floor held for {data['held']} of {data['total']} comparable measurements; the per-layer "
        f"roofline for {data['within_roofline']} of {data['total']}.** "
        f"{data['not_comparable']} recorded rows were measured on other hardware and are listed apart.",
        "",
    ]
    comparable = [c for c in data["checks"] if c["comparable"]]
    others = [c for c in data["checks"] if not c["comparable"]]
    lines += _check_table(comparable)
    if others:
        lines += ["", "## Not comparable: recorded on other hardware (ceilings of this host)", ""]
        lines += _check_table(others)
    if data.get("layer_summary"):
        lines += ["", "## Per layer on this CPU (torch, 1 thread, batch 1: each layer run alone)", "",
                  "Efficiency = the layer's bound time / its measured time; small layers are where "
                  "the bound is most optimistic (call overhead, no cache reuse across calls modelled).", "",
                  "| bound time | layers | median efficiency | min | max |", "|---|---|---|---|---|"]
        lines += [f"| {b['bound']} | {b['layers']} | {b['median_efficiency']:.0%} | {b['min_efficiency']:.0%} "
                  f"| {b['max_efficiency']:.0%} |" for b in data["layer_summary"]]
        over = [r for r in data["layers"] if r["efficiency"] > 1]
        lines += ["", f"Layers faster than their bound: {len(over)} of {len(data['layers'])}"
                  + (": " + ", ".join(f"{r['model']}.{r['layer']} ({r['efficiency']:.0%})" for r in over) if over else ".")]
    lines += ["", "Sources of published figures:", ""]
    lines += [f"- {c['label']}: {c['source']}" + (f" ({c['note']})" if c.get("note") else "")
              for c in data["checks"] if c["kind"] == "published"]
    return "\n".join(lines) + "\n"


def _notes(recorded: list[dict], machine: dict) -> list[str]:
    import os

    load = os.getloadavg()[0]
    notes = [f"load average {load:.1f} on {machine.get('logical_cpus')} CPUs at the end of the run "
             "(other work shares this VM: the live rows and the ceilings beside them are both depressed, "
             "the 2-thread rows most)"]
    for path in sorted({c["source"] for c in recorded}):
        data = json.loads((RESULTS.parent.parent / path).read_text())
        then = set((data.get("machine") or {}).get("cpu_flags") or ())
        now = set(machine.get("cpu_flags") or ())
        if then != now:
            notes.append(f"{path} was recorded on a host with ISA flags {sorted(then)}; this run's host has "
                         f"{sorted(now)}: same VM name, different hardware, so its CPU rows are bounded "
                         "by ceilings of another host")
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-live", action="store_true", help="Skip the live torch runs on this CPU.")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)

    from datetime import datetime, timezone

    from deploykit.ceilings import default_threads
    from deploykit.fileio import atomic_write_json, atomic_write_text
    from deploykit.machine import describe_machine

    machine = describe_machine().to_dict()
    recorded = check_recorded()
    live = [] if args.no_live else check_live(sorted({1, default_threads()}))
    checks = recorded + live + check_published()
    layers = [] if args.no_live else check_layers()
    data = {
        "schema": 1,
        "kind": "roofline-check",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": machine,
        "notes": _notes(recorded, machine),
        "held": sum(c["holds"] for c in checks if c["comparable"]),
        "within_roofline": sum(c["within_roofline"] for c in checks if c["comparable"]),
        "total": sum(c["comparable"] for c in checks),
        "not_comparable": sum(not c["comparable"] for c in checks),
        "checks": checks,
        "layers": layers,
        "layer_summary": layer_summary(layers),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out / "roofline_check.json", data)
    atomic_write_text(args.out / "roofline_check.md", render_markdown(data))
    print(render_markdown(data))
    return 0 if data["held"] == data["total"] else 1  # the floor must hold


if __name__ == "__main__":
    sys.exit(main())
