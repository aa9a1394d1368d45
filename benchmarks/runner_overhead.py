"""Runner overhead: each deploykit runner against its backend's bare API, side by side.

    python benchmarks/runner_overhead.py [--model shufflenet_v2_x1_0] [--batch 1] [--rounds 15]

Issue 13, goal 5: each runner's per-call overhead over the bare API at batch 1 on
shufflenet_v2 is under 3 %. The bare calls use the runner's own loaded model, so the two
sides differ only by the wrapper:

- ONNX Runtime: ``session.run([output], {input: x})`` on the runner's session vs ``runner.infer(x)``;
- OpenVINO: ``request.infer({0: x})`` on the runner's request vs ``runner.infer(x)`` (which also
  copies the output out of the request's reused buffer);
- torch: ``model(torch.from_numpy(x))`` under ``inference_mode`` on the runner's module vs
  ``runner.infer(x)`` (numpy in and out) and vs ``runner.benchmark_fn(x)`` (what bench times).

Calls are paired, bare and wrapped back to back (the order alternates); the overhead is the
median of the pairs' differences over the median bare call, so a load change on a shared
machine hits both sides of a pair alike.

Writes ``benchmarks/results/runner_overhead.json`` and ``.md`` (the machine named).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOAL = 0.03


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="shufflenet_v2_x1_0")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--input-size", type=int, default=224)
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all physical cores)")
    p.add_argument("--rounds", type=int, default=15, help="alternating rounds per pair")
    p.add_argument("--calls", type=int, default=20, help="timed calls per side per round")
    p.add_argument("--backends", default="onnxruntime,openvino,torch")
    p.add_argument("--out", type=Path, default=HERE / "results")
    p.add_argument("--name", default="runner_overhead")
    args = p.parse_args(argv)
    if args.batch < 1 or args.rounds < 1 or args.calls < 1 or args.input_size < 32:
        p.error("--batch, --rounds and --calls must be positive, --input-size at least 32")
    return args


def compare(bare, wrapped, rounds: int, calls: int, warmup: int = 5) -> dict:
    """Pairs of calls, bare and wrapped back to back (which goes first alternates); the overhead
    is the median of the pairs' differences over the median bare time. Pairing cancels the slow
    drift of a shared machine's load that separate blocks would see."""
    for _ in range(warmup):
        bare()
        wrapped()
    bare_s, wrapped_s = [], []
    for i in range(rounds * calls):
        order = (bare, wrapped) if i % 2 == 0 else (wrapped, bare)
        times = []
        for fn in order:
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        t_bare, t_wrapped = times if i % 2 == 0 else times[::-1]
        bare_s.append(t_bare)
        wrapped_s.append(t_wrapped)
    diff = statistics.median(w - b for w, b in zip(wrapped_s, bare_s, strict=True))
    base = statistics.median(bare_s)
    return {
        "bare_ms": base * 1000,
        "runner_ms": statistics.median(wrapped_s) * 1000,
        "overhead": diff / base,
        "overhead_us": diff * 1e6,
        "pairs": len(bare_s),
    }


def export_model(model, path: Path, size: int) -> Path:
    """A quick ONNX file of ``model`` (TorchScript exporter: the file is only a carrier here)."""
    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(1, 3, size, size),), str(path), dynamo=False, opset_version=17,
                          input_names=["input"], output_names=["logits"],
                          dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    return path


def pairs(backend: str, model, onnx_path: Path, x, threads: int):
    """(label, bare call, runner call, runner) for one backend; the runner is activated."""
    import torch

    from deploykit.runtimes import get_runner

    if backend == "onnxruntime":
        runner = get_runner("onnxruntime", onnx_path, threads=threads).activate()
        session, out, inp = runner.session, runner.session.get_outputs()[0].name, runner.session.get_inputs()[0].name
        return [("session.run vs runner.infer", lambda: session.run([out], {inp: x}), lambda: runner.infer(x))], runner
    if backend == "openvino":
        runner = get_runner("openvino", onnx_path, threads=threads).activate()
        request = runner.request
        return [("request.infer vs runner.infer", lambda: request.infer({0: x}), lambda: runner.infer(x))], runner
    runner = get_runner("torch", model, threads=threads).activate()
    module = runner.model

    def bare():
        with torch.inference_mode():
            return module(torch.from_numpy(x))

    staged = runner.benchmark_fn(x)
    return [("forward vs runner.infer (numpy in/out)", bare, lambda: runner.infer(x)),
            ("forward vs runner.benchmark_fn (bench's timed call)", bare, staged)], runner


def render_markdown(data: dict) -> str:
    from deploykit.machine import summarize_machine

    lines = [f"# Runner overhead over the bare API ({data['model']}, batch {data['batch']})", "",
             f"Machine: {summarize_machine(data['machine'])}; {data['threads']} threads; run {data['created_at']}; "
             f"load average at start {data['load_before'][0]:.1f}.", "",
             f"{data['rounds'] * data['calls']} pairs of calls (bare and runner back to back, order alternating); "
             f"overhead = median pair difference / median bare call. Goal: under {GOAL * 100:.0f} %.", "",
             "| backend | comparison | bare ms | runner ms | overhead | overhead µs | goal |",
             "|---|---|---|---|---|---|---|"]
    for row in data["rows"]:
        verdict = "met" if row["overhead"] < GOAL else "**missed**"
        lines.append(f"| {row['backend']} | {row['comparison']} | {row['bare_ms']:.3f} | {row['runner_ms']:.3f} | "
                     f"{row['overhead'] * 100:+.1f} % | {row['overhead_us']:+.0f} | {verdict} |")
    lines += ["", *[f"- {note}" for note in data["notes"]]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import numpy as np
    import torch

    from deploykit._deps import is_available
    from deploykit.artifacts import now_iso
    from deploykit.fileio import atomic_write_text
    from deploykit.machine import describe_machine
    from deploykit.zoo import get_model

    machine = describe_machine().to_dict()
    threads = args.threads or machine.get("physical_cores") or os.cpu_count() or 1
    torch.manual_seed(0)
    model = get_model(args.model).eval()
    x = np.random.default_rng(0).standard_normal((args.batch, 3, args.input_size, args.input_size), dtype=np.float32)
    load_before = os.getloadavg()
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as tmp:
        onnx_path = export_model(model, Path(tmp) / "model.onnx", args.input_size)
        for backend in [b.strip() for b in args.backends.split(",") if b.strip()]:
            if not is_available(backend):
                notes.append(f"{backend}: not installed, left out")
                continue
            comparisons, runner = pairs(backend, model, onnx_path, x, threads)
            for label, bare, wrapped in comparisons:
                result = compare(bare, wrapped, args.rounds, args.calls)
                rows.append({"backend": backend, "comparison": label, **result})
                print(f"{backend:12s} {label:52s} overhead {result['overhead'] * 100:+6.1f} %", flush=True)
            runner.deactivate()
    if load_before[0] > 0.5 * (os.cpu_count() or 1):
        notes.append(f"other processes were running (load average {load_before[0]:.1f} on {os.cpu_count()} CPUs): "
                     "per-call times are inflated and noisy; pairing the calls keeps the difference fair")
    data = {"kind": "deploykit.runner_overhead", "created_at": now_iso(), "model": args.model, "batch": args.batch,
            "input_size": args.input_size, "threads": threads, "rounds": args.rounds, "calls": args.calls,
            "goal": GOAL, "load_before": list(load_before), "machine": machine, "rows": rows, "notes": notes}
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / f"{args.name}.json", json.dumps(data, indent=2) + "\n")
    atomic_write_text(args.out / f"{args.name}.md", render_markdown(data))
    print((args.out / f"{args.name}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
