"""Export every zoo model at its default size; record export time and file size per model.

    python benchmarks/export_all.py                      # all models, a throw-away repository
    python benchmarks/export_all.py --models vgg16,googlenet --repo models
    python benchmarks/export_all.py --exporter dynamo,torchscript   # both exporters, side by side

With several exporters each model is exported with each in turn (``deploykit export
--exporter``). Writes ``benchmarks/results/export_all.json`` and ``export_all.md`` with the machine it ran
on (CPU, cores, library versions). Times are wall-clock seconds on that machine and include
tracing (torch.export), ONNX conversion, slimming, checks, PyTorch and ONNX Runtime
verification on 2 sample photos (as one batch, the first at batch 1 too), and the atomic write;
``onnx seconds`` is the part up to a checked ONNX file, ``cpu seconds`` the process's CPU time
(all threads) over the model's export. Wall times depend on the machine's load (recorded before
and after): compare models within one run, and read the CPU seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    from deploykit.artifacts import now_iso
    from deploykit.export import ExportFailure, ExportResult, export_models
    from deploykit.machine import describe_machine
    from deploykit.zoo import get_card, list_models

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", help="comma-separated subset (default: every zoo model)")
    parser.add_argument("--repo", help="keep the exports in this repository (default: a temporary one)")
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    parser.add_argument("--exporter", default="dynamo", help="dynamo, torchscript, or both comma-separated")
    parser.add_argument("--tag", help="suffix of the results files (export_all_TAG.json)")
    args = parser.parse_args(argv)
    exporters = [e.strip() for e in args.exporter.split(",")]

    names = [n.strip() for n in args.models.split(",")] if args.models else list_models()
    repo = Path(args.repo) if args.repo else Path(tempfile.mkdtemp(prefix="deploykit-export-bench-"))
    rows: list[dict] = []
    exporter = {"name": exporters[0]}
    cpu_start = {"t": 0.0}
    load_before = [round(x, 2) for x in os.getloadavg()]

    def on_start(name: str, index: int) -> None:
        cpu_start["t"] = time.process_time()
        print(f"[{index + 1}/{len(names)}] {name} ({exporter['name']}) ...", file=sys.stderr, flush=True)

    def on_done(name: str, outcome: ExportResult | ExportFailure) -> None:
        if isinstance(outcome, ExportFailure):
            rows.append({"model": name, "exporter": exporter["name"], "ok": False, "error": outcome.error})
            print(f"    failed: {outcome.error}", file=sys.stderr)
            return
        card = get_card(name)
        rows.append(
            {
                "model": name,
                "exporter": exporter["name"],
                "ok": True,
                "input_size": outcome.input.shape[-1],
                "seconds": round(outcome.seconds, 2),
                "cpu_seconds": round(time.process_time() - cpu_start["t"], 2),
                "onnx_seconds": round(outcome.onnx.seconds, 2),
                "bytes": outcome.bytes,
                "external_data": outcome.onnx.external_data is not None,
                "nodes": outcome.onnx.nodes,
                "nodes_exported": outcome.onnx.nodes_exported,
                "operators": dict(outcome.onnx.operators),
                "unsupported_tensorrt_ops": list(outcome.unsupported_ops),
                "max_abs": outcome.parity.max_abs,
                "max_rel": outcome.parity.max_rel,
                "top1_agreement": outcome.parity.top1_agreement,
                "constant_output": outcome.parity.constant_output,
                "family": card.family,
            }
        )
        print(f"    {outcome.seconds:.1f} s, {outcome.bytes / 1e6:.1f} MB", file=sys.stderr)
        # Keep the disk small when the repository is temporary (VGG variants are ~0.5 GB each).
        if not args.repo:
            shutil.rmtree(outcome.artifact.directory, ignore_errors=True)

    start = time.perf_counter()
    try:
        for exporter["name"] in exporters:
            export_models(names, repo=repo, on_start=on_start, on_done=on_done, exporter=exporter["name"])
    finally:
        if not args.repo:
            shutil.rmtree(repo, ignore_errors=True)
    machine = describe_machine()
    report = {
        "benchmark": "export_all",
        "created_at": now_iso(),
        "command": "python benchmarks/export_all.py"
        + (f" --models {args.models}" if args.models else "")
        + (f" --exporter {args.exporter}" if args.exporter != "dynamo" else "")
        + (f" --tag {args.tag}" if args.tag else ""),
        "machine": machine.to_dict(),
        "load_average": {"before": load_before, "after": [round(x, 2) for x in os.getloadavg()]},
        "total_seconds": round(time.perf_counter() - start, 1),
        "results": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"export_all_{args.tag}" if args.tag else "export_all"
    (out / f"{stem}.json").write_text(json.dumps(report, indent=2) + "\n")
    (out / f"{stem}.md").write_text(render_markdown(report, machine.summary()))
    print(f"wrote {out / stem}.json and .md", file=sys.stderr)
    return 0 if all(r["ok"] for r in rows) else 1


def render_markdown(report: dict, machine_line: str) -> str:
    libs = report["machine"].get("libraries", {})
    lines = [
        "# Export time and file size per zoo model",
        "",
        f"`{report['command']}` on {report['created_at']}: {machine_line}.",
        "Libraries: " + ", ".join(f"{k} {v}" for k, v in libs.items()) + ".",
        "",
        f"Load average (1/5/15 min) before {report['load_average']['before']}, after {report['load_average']['after']}.",
        "",
        "Default input size per model card, random weights, opset 18, dynamic batch, one process for",
        "every model (the first model of each exporter also pays its imports). `seconds` is the whole",
        "`deploykit export` (PyTorch reference, trace, convert, slim for TorchScript, check, verify on 2",
        "photos, write) in wall time, `cpu s` its CPU time (all threads); `onnx s` is the wall time up to",
        "a checked ONNX file. `external` marks weights written to model.onnx.data (over 64 MiB).",
        "",
        "| model | exporter | input | seconds | cpu s | onnx s | size (MB) | external | nodes | max rel err | TensorRT-unsupported ops |",
        "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for r in report["results"]:
        if not r["ok"]:
            lines.append(f"| {r['model']} | {r.get('exporter', 'dynamo')} | | failed: {r['error']} | | | | | | | |")
            continue
        lines.append(
            f"| {r['model']} | {r.get('exporter', 'dynamo')} | {r['input_size']} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | "
            f"{r['onnx_seconds']:.1f} | {r['bytes'] / 1e6:,.1f} | {'yes' if r['external_data'] else 'no'} | {r['nodes']} | {r['max_rel']:.1e} | "
            f"{', '.join(r['unsupported_tensorrt_ops']) or 'none'} |"
        )
    lines += ["", f"Total: {report['total_seconds']:.0f} s.", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
