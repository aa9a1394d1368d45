"""CPU benchmark: torch eager vs ONNX Runtime vs OpenVINO, FP32 vs INT8, side by side in one run.

    python benchmarks/cpu_bench.py [--models resnet18,resnet50,...] [--batches 1,8] [--repo models]

Exports and quantizes what the model repository lacks (``deploykit export`` / ``deploykit
quantize`` through the library), then measures every configuration in a fresh process and
writes ``benchmarks/results/cpu_bench.json`` (a ``deploykit.bench`` file; ``deploykit
report`` reads it) and ``cpu_bench.md``: the machine, the table, and the two targets of the
issue as ratios measured in this run:

- ONNX Runtime FP32 latency <= 0.5 x torch eager FP32 latency;
- the best INT8 backend <= 0.8 x the best FP32 backend.

A target that is missed is reported as missed, with the ratio: nothing is hidden.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_MODELS = ("resnet18", "resnet50", "vgg16", "googlenet", "mobilenet_v2")
BACKENDS = ("torch", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "int8")
ORT_VS_TORCH_TARGET = 0.5
INT8_VS_FP32_TARGET = 0.8
SGEMM_GOAL = 0.75


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(DEFAULT_MODELS))
    p.add_argument("--batches", default="1,8")
    p.add_argument("--backends", default=",".join(BACKENDS), help="a reduced run may leave some out")
    p.add_argument("--precisions", default=",".join(PRECISIONS))
    p.add_argument("--repo", default="models", help="model repository (artifacts are made here when missing)")
    p.add_argument("--out", type=Path, default=HERE / "results", help="folder for cpu_bench.json / .md")
    p.add_argument("--name", default="cpu_bench", help="file stem of the outputs")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iterations", type=int, default=10, help="least timed calls (two windows)")
    p.add_argument("--max-seconds", type=float, default=40.0, help="timing cap per configuration")
    p.add_argument("--threads", default="1,all",
                   help="comma-separated thread counts; 'all' = all physical cores (default: 1,all)")
    p.add_argument("--input-size", type=int, default=None)
    p.add_argument("--no-isolate", action="store_true")
    p.add_argument("--docs", type=Path, default=HERE.parent / "docs" / "bench.md",
                   help="Markdown file whose generated sections are refreshed from the results")
    p.add_argument("--docs-only", action="store_true",
                   help="measure nothing: refresh --docs from the result files already in --out")
    return p.parse_args(argv)


def _demote(markdown: str) -> str:
    """Drop the H1 title and push every other heading two levels down (for embedding)."""
    out = []
    for line in markdown.splitlines():
        if line.startswith("# "):
            continue
        out.append("##" + line if line.startswith("#") else line)
    return "\n".join(out).strip() + "\n"


def update_docs(docs: Path, results: Path) -> list[str]:
    """Replace ``<!-- NAME:begin -->`` ... ``<!-- NAME:end -->`` blocks in ``docs`` with the
    generated ``results/NAME.md`` files (cpu_bench, and gpu_check_* when recorded). Returns
    the names refreshed; blocks without a results file are left as they are."""
    import re

    if not docs.is_file():
        return []
    text = docs.read_text()
    done = []
    for match in re.finditer(r"<!-- ([A-Za-z0-9_.-]+):begin -->", text):
        name = match.group(1)
        source = results / f"{name}.md"
        if not source.is_file():
            continue
        pattern = re.compile(rf"(<!-- {re.escape(name)}:begin -->\n).*?(<!-- {re.escape(name)}:end -->)", re.S)
        body = f"<!-- generated from benchmarks/results/{name}.md by benchmarks/cpu_bench.py: do not edit -->\n"
        text = pattern.sub(lambda m, b=body + _demote(source.read_text()): m.group(1) + b + m.group(2), text)
        done.append(name)
    from deploykit.fileio import atomic_write_text

    atomic_write_text(docs, text)
    return done


def _result(run, model: str, backend: str, precision: str, batch: int, threads: int):
    for r in run.results:
        c = r.config
        if r.ok and (c.model, c.backend, c.precision, c.batch, c.threads) == (model, backend, precision, batch, threads):
            return r
    return None


def _p50(run, model: str, backend: str, precision: str, batch: int, threads: int) -> float | None:
    r = _result(run, model, backend, precision, batch, threads)
    return r.latency.p50_ms if r else None


def _names(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def thread_counts(text: str, physical_cores: int) -> list[int]:
    """'1,all' -> [1, physical cores] (deduplicated, in order)."""
    counts = [physical_cores if t.strip() == "all" else int(t) for t in text.split(",") if t.strip()]
    if not counts or min(counts) < 1:
        raise SystemExit(f"--threads: positive counts or 'all', got {text!r}")
    return list(dict.fromkeys(counts))


def ceiling_rows(run) -> list[dict]:
    """Per (model, batch, threads): the best FP32 configuration and its fraction of the SGEMM and
    copy ceilings measured in its own worker, beside the clock estimate."""
    keys = list(dict.fromkeys((r.config.model, r.config.batch, r.config.threads) for r in run.results))
    rows = []
    for model, batch, threads in keys:
        fp32 = [r for b in BACKENDS if (r := _result(run, model, b, "fp32", batch, threads)) is not None]
        if not fp32:
            continue
        best = min(fp32, key=lambda r: r.latency.p50_ms)
        rows.append({"model": model, "batch": batch, "threads": threads, "best": best})
    return rows


def _geomean(values: list[float]) -> float | None:
    values = [v for v in values if v and v > 0]
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def target_rows(run) -> tuple[list[dict], list[dict]]:
    """Per (model, batch): the two target ratios, and per-backend INT8/FP32 ratios."""
    keys = list(dict.fromkeys((r.config.model, r.config.batch, r.config.threads) for r in run.results))
    targets, int8 = [], []
    for model, batch, threads in keys:
        torch_fp32 = _p50(run, model, "torch", "fp32", batch, threads)
        ort_fp32 = _p50(run, model, "onnxruntime", "fp32", batch, threads)
        fp32 = {b: _p50(run, model, b, "fp32", batch, threads) for b in BACKENDS}
        q = {b: _p50(run, model, b, "int8", batch, threads) for b in ("onnxruntime", "openvino")}
        best_fp32 = min(((v, b) for b, v in fp32.items() if v), default=None)
        best_int8 = min(((v, b) for b, v in q.items() if v), default=None)
        targets.append(
            {
                "model": model,
                "batch": batch,
                "threads": threads,
                "ort_vs_torch": ort_fp32 / torch_fp32 if ort_fp32 and torch_fp32 else None,
                "best_fp32": best_fp32,
                "best_int8": best_int8,
                "int8_vs_fp32": best_int8[0] / best_fp32[0] if best_int8 and best_fp32 else None,
            }
        )
        int8.append(
            {
                "model": model,
                "batch": batch,
                "threads": threads,
                **{b: (q[b] / fp32[b] if q[b] and fp32[b] else None) for b in ("onnxruntime", "openvino")},
            }
        )
    return targets, int8


def _ratio(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _verdict(v: float | None, target: float) -> str:
    if v is None:
        return "not measured"
    return "met" if v <= target else "**missed**"


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v * 100:.0f} %"


def ceiling_markdown(run) -> list[str]:
    """Goal 3 of issue 13: the best FP32 backend against the ceilings measured in its worker."""
    lines = ["", "## Best FP32 against the measured ceilings", "",
             f"SGEMM and copy bandwidth measured in the same worker process and thread count, right after "
             f"timing (deploykit.ceilings); the clock estimate ('% peak') beside them. Goal: >= "
             f"{SGEMM_GOAL * 100:.0f} % of SGEMM for resnet50 and vgg16 at batch 8 on all cores.", "",
             "| model | batch | threads | best FP32 | GFLOP/s | SGEMM GFLOP/s | % SGEMM | copy GB/s | % copy | % peak (clock) |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in ceiling_rows(run):
        r, c = row["best"], row["best"].ceilings or {}
        gflops = f"{r.achieved_gflops:.1f}" if r.achieved_gflops else "-"
        sgemm = f"{c['sgemm_gflops']:.0f}" if c else "-"
        copy = f"{c['copy_gbps']:.1f}" if c else "-"
        lines.append(f"| {row['model']} | {row['batch']} | {row['threads']} | {r.config.label} | {gflops} | {sgemm} | "
                     f"{_pct(r.sgemm_fraction)} | {copy} | {_pct(r.copy_fraction)} | {_pct(r.peak_fraction)} |")
    return lines


def render_markdown(run, elapsed: float, load_before: tuple[float, ...], load_after: tuple[float, ...]) -> str:
    from deploykit.bench import machine_line, to_markdown

    targets, int8 = target_rows(run)
    m = run.machine
    lines = ["# CPU benchmark: torch eager vs ONNX Runtime vs OpenVINO, FP32 vs INT8", ""]
    lines.append(f"Machine: {machine_line(m)}; {m.get('memory_bytes', 0) / 2**30:.0f} GiB RAM; "
                 f"VNNI: {'yes' if m.get('has_vnni') else 'no'}. "
                 + ", ".join(f"{k} {v}" for k, v in (m.get("libraries") or {}).items()) + ".")
    lines.append("")
    lines.append(f"Run {run.created_at}, {elapsed / 60:.1f} min; each configuration in a fresh process "
                 f"({'isolated' if run.isolate else 'not isolated'}). Latency is p50 per batch.")
    lines += [f"- {note}" for note in run.notes]
    lines.append("")
    lines.append("## Targets (ratios measured side by side in this run)")
    lines.append("")
    lines.append(f"| model | batch | threads | ORT FP32 / torch FP32 (target <= {ORT_VS_TORCH_TARGET}) | | "
                 f"best INT8 / best FP32 (target <= {INT8_VS_FP32_TARGET}) | | best FP32 | best INT8 |")
    lines.append("|---|---|---|---|---|---|---|---|---|")
    for t in targets:
        best_fp32 = f"{t['best_fp32'][1]} {t['best_fp32'][0]:.2f} ms" if t["best_fp32"] else "-"
        best_int8 = f"{t['best_int8'][1]} {t['best_int8'][0]:.2f} ms" if t["best_int8"] else "-"
        lines.append(
            f"| {t['model']} | {t['batch']} | {t['threads']} | {_ratio(t['ort_vs_torch'])} | {_verdict(t['ort_vs_torch'], ORT_VS_TORCH_TARGET)} "
            f"| {_ratio(t['int8_vs_fp32'])} | {_verdict(t['int8_vs_fp32'], INT8_VS_FP32_TARGET)} | {best_fp32} | {best_int8} |"
        )
    g1 = _geomean([t["ort_vs_torch"] for t in targets])
    g2 = _geomean([t["int8_vs_fp32"] for t in targets])
    met1 = sum(1 for t in targets if t["ort_vs_torch"] is not None and t["ort_vs_torch"] <= ORT_VS_TORCH_TARGET)
    met2 = sum(1 for t in targets if t["int8_vs_fp32"] is not None and t["int8_vs_fp32"] <= INT8_VS_FP32_TARGET)
    n1 = sum(1 for t in targets if t["ort_vs_torch"] is not None)
    n2 = sum(1 for t in targets if t["int8_vs_fp32"] is not None)
    lines.append("")
    lines.append(f"- ONNX Runtime FP32 at <= {ORT_VS_TORCH_TARGET}x torch eager: met in {met1} of {n1} "
                 f"model/batch pairs; geometric mean ratio {_ratio(g1)}.")
    lines.append(f"- Best INT8 at <= {INT8_VS_FP32_TARGET}x best FP32: met in {met2} of {n2} pairs; "
                 f"geometric mean ratio {_ratio(g2)}.")
    lines.append("")
    lines.append("## INT8 / FP32 latency per backend")
    lines.append("")
    lines.append("Below 1 means INT8 is faster on this CPU. Without VNNI, ONNX Runtime's INT8 kernels are "
                 "expected above 1 and OpenVINO's below (DESIGN.md); these are the measured ratios.")
    lines.append("")
    lines.append("| model | batch | threads | ONNX Runtime INT8/FP32 | OpenVINO INT8/FP32 |")
    lines.append("|---|---|---|---|---|")
    for row in int8:
        lines.append(f"| {row['model']} | {row['batch']} | {row['threads']} | {_ratio(row['onnxruntime'])} "
                     f"| {_ratio(row['openvino'])} |")
    lines += ceiling_markdown(run)
    lines.append("")
    lines.append("## All configurations")
    lines.append("")
    lines.append(to_markdown(run))
    lines.append(f"Load average before / after: {', '.join(f'{x:.1f}' for x in load_before)} / "
                 f"{', '.join(f'{x:.1f}' for x in load_after)} (1, 5, 15 min) on {m.get('logical_cpus')} CPUs.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from deploykit import bench
    from deploykit.fileio import atomic_write_text

    if args.docs_only:
        print("refreshed:", ", ".join(update_docs(args.docs, args.out)) or "nothing")
        return 0
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    batches = [int(b) for b in args.batches.split(",") if b.strip()]
    cpus = os.cpu_count() or 1
    load_before = os.getloadavg()
    notes = []
    if load_before[0] > 0.5 * cpus:
        notes.append(
            f"other processes were running: load average {load_before[0]:.1f} on {cpus} CPUs at the start, so "
            "absolute times are inflated and noisier; ratios were measured side by side in the same conditions"
        )
    from deploykit.machine import describe_machine

    physical = describe_machine().physical_cores or cpus
    threads = thread_counts(args.threads, physical)
    notes.append(f"threads per backend: {', '.join(map(str, threads))} ({physical} physical cores); SGEMM and "
                 "copy ceilings measured in every worker at its thread count")
    configs = [
        config
        for n in threads
        for config in bench.expand_matrix(
            models, _names(args.backends), _names(args.precisions), batches,
            device="cpu", threads=n, warmup=args.warmup, iterations=args.iterations,
            max_seconds=args.max_seconds, input_size=args.input_size, repo=args.repo, build=True,
        )
    ]
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"{args.name}.json"
    md_path = args.out / f"{args.name}.md"
    start = time.monotonic()
    done = []

    def progress(result) -> None:
        done.append(result)
        shown = f"p50 {result.latency.p50_ms:8.2f} ms" if result.ok else f"{result.status}: {result.reason}"
        print(f"[{time.monotonic() - start:6.0f}s] {bench.describe_config(result.config):45s} {shown}", flush=True)

    run = bench.run_matrix(configs, isolate=not args.no_isolate, progress=False, on_result=progress, notes=notes)
    load_after = os.getloadavg()
    if load_after[0] > 0.5 * cpus and not notes[0].startswith("other processes"):
        run = bench.BenchRun(run.results, run.machine, run.created_at, run.isolate, (
            *run.notes, f"other processes were running: load average {load_after[0]:.1f} on {cpus} CPUs at the end"))
    atomic_write_text(json_path, run.to_json())
    atomic_write_text(md_path, render_markdown(run, time.monotonic() - start, load_before, load_after))
    print(md_path.read_text())
    if args.name == "cpu_bench":
        update_docs(args.docs, args.out)
    return run.exit_code


if __name__ == "__main__":
    sys.exit(main())
