"""INT8 ONNX with INT8 weights: file size, accuracy against the Q/DQ-FP32-weights form, CPU latency.

    python benchmarks/int8_weights.py                                  # everything
    python benchmarks/int8_weights.py --latency-models resnet50,googlenet --skip-accuracy

Three measurements, one run, written to ``benchmarks/results/int8_weights.json`` and ``.md``
with the machine and what else was running on it:

1. **Accuracy** (scikit-learn digits, 32x32, the zoo networks trained as the test suite does):
   the same calibration (256 training images, entropy) quantized twice, with FP32 weights
   behind QuantizeLinear/DequantizeLinear (ModelOpt's default) and with INT8 weights behind
   DequantizeLinear only (what deploykit writes). Top-1 of both on the held-out split, their
   agreement and largest logit difference. Goal: within 0.2 points.
2. **File size**: the FP32 file and the INT8 file of each latency model, and their ratio
   (goal: about a quarter).
3. **Latency** at batch 8, every core: ONNX Runtime and OpenVINO, FP32 and INT8, each timed
   after a warm-up in the same process; best INT8 / best FP32 (goal: at most 0.6).

Latency models use random weights (latency does not depend on them); INT8 calibrates on
augmented sample photos, which is enough to place the ranges for a timing run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# The digits model and the ORT prediction of the accuracy benchmark (this script's folder is on sys.path).
from precision_accuracy import DEFAULT_CACHE, predict_onnx, trained_digits

RESULTS = Path(__file__).resolve().parent / "results"
INT8_VS_FP32_TARGET = 0.6
SIZE_TARGET = 0.25
ACCURACY_POINTS = 0.2


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _load_snapshot() -> dict:
    """The load average and the busiest other processes, to record what else ran."""
    ps = subprocess.run(["ps", "-eo", "pcpu,rss,args", "--sort=-pcpu"], capture_output=True, text=True, check=False)
    mine = str(os.getpid())
    busy = []
    for line in ps.stdout.splitlines()[1:]:
        parts = line.split(None, 2)
        if len(parts) == 3 and float(parts[0]) >= 5.0 and mine not in line:
            busy.append(f"{parts[0]}% cpu, {int(parts[1]) // 1024} MB: {parts[2][:110]}")
    return {"at": time.strftime("%H:%M:%S"), "load_average": list(os.getloadavg()), "busy_processes": busy[:8]}


# ---- 1. accuracy on digits ------------------------------------------------------------------------
def accuracy(name: str, split, folder: Path, cache: Path, calib_size: int) -> dict:
    from deploykit import onnx_io
    from deploykit.export import export_model
    from deploykit.precision import quantize_onnx_int8
    from deploykit.repository import ModelRepository

    _say(f"accuracy: {name}")
    export_model(name, repo=folder, weights=trained_digits(name, split, cache)[1], input_size=32, num_classes=10)
    fp32 = ModelRepository(folder).get(name, "onnx", "fp32").path
    calib = split.x_train[np.random.default_rng(0).permutation(len(split.x_train))[:calib_size]]
    forms = {}
    for label, int8_weights in (("fp32 weights (Q/DQ)", False), ("int8 weights (DQ only)", True)):
        out = folder / f"{name}-{'int8w' if int8_weights else 'fp32w'}.onnx"
        quantize_onnx_int8(fp32, out, calib, "entropy", int8_weights=int8_weights)
        forms[label] = (out, predict_onnx(out, split.x_test))
    ref = predict_onnx(fp32, split.x_test)
    (old_path, old), (new_path, new) = forms.values()
    acc = {label: float((logits.argmax(1) == split.y_test).mean()) for label, (_, logits) in forms.items()}
    return {
        "model": name,
        "test_images": int(len(split.y_test)),
        "calibration": f"{calib_size} training images, entropy",
        "fp32_accuracy": float((ref.argmax(1) == split.y_test).mean()),
        "accuracy": acc,
        "delta_points": round((acc["int8 weights (DQ only)"] - acc["fp32 weights (Q/DQ)"]) * 100, 3),
        "agreement": float((old.argmax(1) == new.argmax(1)).mean()),
        "max_abs_logit_diff": float(np.abs(old - new).max()),
        "bytes": {"fp32": onnx_io.model_file_bytes(fp32), "int8_fp32_weights": onnx_io.model_file_bytes(old_path),
                  "int8_int8_weights": onnx_io.model_file_bytes(new_path)},
    }


# ---- 2 and 3. file size and latency ----------------------------------------------------------------
def _time_interleaved(runners: dict, batch: np.ndarray, warmup: int, rounds: int, max_seconds: float) -> dict:
    """Time every runner once per round, round after round, so each sees the same machine load.

    On a shared machine the load drifts over minutes; timing one configuration after another
    would compare configurations under different loads. At least 3 rounds, then up to
    ``rounds`` while ``max_seconds`` lasts.
    """
    for runner in runners.values():
        for _ in range(warmup):
            runner.infer(batch)
    times = {key: [] for key in runners}
    start = time.perf_counter()
    for done in range(rounds):
        if done >= 3 and time.perf_counter() - start > max_seconds:
            break
        for key, runner in runners.items():
            t0 = time.perf_counter()
            runner.infer(batch)
            times[key].append(time.perf_counter() - t0)
    return {
        key: {"p50_ms": statistics.median(t) * 1e3, "min_ms": min(t) * 1e3, "iterations": len(t)} for key, t in times.items()
    }


def latency(name: str, repo_root: Path, args) -> dict:
    from deploykit import onnx_io
    from deploykit.export import export_model
    from deploykit.precision import make_variant
    from deploykit.repository import ModelRepository
    from deploykit.runtimes import get_runner

    repo = ModelRepository(repo_root)
    _say(f"latency: {name}: export")
    t0 = time.perf_counter()
    if repo.find(name, "onnx", "fp32") is None:
        export_model(name, repo=repo_root)
    export_s = time.perf_counter() - t0
    _say(f"latency: {name}: quantize")
    t0 = time.perf_counter()
    int8 = make_variant(repo, name, "int8", calib_size=args.calib_size)
    quantize_s = time.perf_counter() - t0
    paths = {"fp32": repo.get(name, "onnx", "fp32").path, "int8": int8.artifact.path}
    batch = np.random.default_rng(0).standard_normal((args.batch, 3, 224, 224)).astype(np.float32)
    _say(f"latency: {name}: onnxruntime and openvino, fp32 and int8, interleaved")
    runners = {(b, p): get_runner(b, path, threads=args.threads) for b in ("onnxruntime", "openvino") for p, path in paths.items()}
    try:
        for runner in runners.values():
            runner.activate()
        timed = _time_interleaved(runners, batch, args.warmup, args.iterations, args.max_seconds)
    finally:
        for runner in runners.values():
            runner.deactivate()
    rows = [{"backend": b, "precision": p, **t} for (b, p), t in timed.items()]
    best = {p: min((r for r in rows if r["precision"] == p), key=lambda r: r["p50_ms"]) for p in paths}
    size = {p: onnx_io.model_file_bytes(path) for p, path in paths.items()}
    return {
        "model": name,
        "batch": args.batch,
        "export_seconds": round(export_s, 1),
        "quantize_seconds": round(quantize_s, 1),
        "bytes": size,
        "size_ratio": size["int8"] / size["fp32"],
        "weights": int8.quantized["weights"],
        "rows": rows,
        "best": {p: f"{r['backend']} {r['p50_ms']:.1f} ms" for p, r in best.items()},
        "int8_vs_fp32": best["int8"]["p50_ms"] / best["fp32"]["p50_ms"],
    }


# ---- rendering --------------------------------------------------------------------------------------
def render_markdown(data: dict) -> str:
    from deploykit.machine import summarize_machine

    lines = [
        "# INT8 ONNX with INT8 weights: size, accuracy, CPU latency",
        "",
        f"Generated by `benchmarks/int8_weights.py` on {data['created_at']} in {data['minutes']:.1f} min. "
        f"Machine: {summarize_machine(data['machine'])}. ModelOpt {data['machine']['libraries'].get('nvidia-modelopt', '?')}, "
        f"ONNX Runtime {data['machine']['libraries'].get('onnxruntime', '?')}, "
        f"OpenVINO {data['machine']['libraries'].get('openvino', '?')}; threads: {data['threads'] or 'each backend default (all cores)'}.",
        "",
    ]
    if data["accuracy"]:
        lines += [
            f"## Accuracy: INT8 weights against FP32 weights behind Q/DQ (goal: within {ACCURACY_POINTS} points)",
            "",
            "| model | FP32 top-1 | INT8, FP32 weights (Q/DQ) | INT8, INT8 weights (DQ only) | Δ (points) | agreement | max \\|Δ logit\\| | files FP32 / Q/DQ / DQ-only |",
            "|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for a in data["accuracy"]:
            acc, b = a["accuracy"], a["bytes"]
            lines.append(
                f"| {a['model']} | {a['fp32_accuracy'] * 100:.2f}% | {acc['fp32 weights (Q/DQ)'] * 100:.2f}% | "
                f"{acc['int8 weights (DQ only)'] * 100:.2f}% | {a['delta_points']:+.2f} | {a['agreement'] * 100:.2f}% | "
                f"{a['max_abs_logit_diff']:.4f} | {b['fp32'] / 1e6:.1f} / {b['int8_fp32_weights'] / 1e6:.1f} / "
                f"{b['int8_int8_weights'] / 1e6:.1f} MB |"
            )
        lines += ["", f"Digits 32x32, {data['accuracy'][0]['test_images']} held-out images; both INT8 forms from one calibration "
                  f"({data['accuracy'][0]['calibration']}).", ""]
    if data["latency"]:
        lines += [
            f"## File size and latency at batch {data['latency'][0]['batch']} "
            f"(goals: INT8 file about {SIZE_TARGET:.2f}x FP32; best INT8 <= {INT8_VS_FP32_TARGET}x best FP32)",
            "",
            "| model | FP32 file | INT8 file | ratio | ORT FP32 | ORT INT8 | OpenVINO FP32 | OpenVINO INT8 | best INT8 / best FP32 | |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for m in data["latency"]:
            ms = {(r["backend"], r["precision"]): f"{r['p50_ms']:.1f} ms" for r in m["rows"]}
            verdict = "met" if m["int8_vs_fp32"] <= INT8_VS_FP32_TARGET else "**missed**"
            lines.append(
                f"| {m['model']} | {m['bytes']['fp32'] / 1e6:.1f} MB | {m['bytes']['int8'] / 1e6:.1f} MB | {m['size_ratio']:.2f} | "
                f"{ms[('onnxruntime', 'fp32')]} | {ms[('onnxruntime', 'int8')]} | {ms[('openvino', 'fp32')]} | "
                f"{ms[('openvino', 'int8')]} | {m['int8_vs_fp32']:.2f} | {verdict} |"
            )
        lines += ["", "Latency is the median of the timed calls after a warm-up. The four configurations of a model run in "
                  "one process, interleaved: each round times each once, so all see the same machine load; the ratios "
                  "are the figures to read on a shared machine, the absolute times are inflated by it.", ""]
    lines += ["## What else ran", ""]
    for snap in data["load"]:
        lines.append(f"- {snap['label']} ({snap['at']}): load average {', '.join(f'{x:.1f}' for x in snap['load_average'])}"
                     f" on {data['machine'].get('logical_cpus', os.cpu_count())} CPUs")
        lines += [f"  - {p}" for p in snap["busy_processes"]]
    if data.get("notes"):
        lines += ["", "## Notes", "", *[f"- {n}" for n in data["notes"]]]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from deploykit.artifacts import now_iso
    from deploykit.digits import load_digits_split
    from deploykit.fileio import atomic_write_json, atomic_write_text
    from deploykit.machine import describe_machine

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--accuracy-models", default="resnet18,preact_resnet18")
    p.add_argument("--latency-models", default="resnet50,googlenet,vgg16")
    p.add_argument("--skip-accuracy", action="store_true")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--threads", type=int, default=None, help="intra-op threads (default: all cores)")
    p.add_argument("--calib-size", type=int, default=32, help="latency models: sample-photo crops to calibrate on")
    p.add_argument("--accuracy-calib-size", type=int, default=256)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iterations", type=int, default=10, help="rounds: each configuration timed once per round")
    p.add_argument("--max-seconds", type=float, default=240.0, help="per model: rounds stop (after 3) past this")
    p.add_argument("--repo", default=None, help="model repository for the latency models (default: a temporary one)")
    p.add_argument("--cache", default=str(DEFAULT_CACHE), help="digits-trained weights are kept here")
    p.add_argument("--note", action="append", default=[], help="a line for the Notes section")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)

    start = time.perf_counter()
    load = [{"label": "start", **_load_snapshot()}]
    data = {"benchmark": "int8_weights", "created_at": now_iso(), "threads": args.threads, "accuracy": [], "latency": []}
    with tempfile.TemporaryDirectory(prefix="deploykit-int8-weights-") as tmp:
        if not args.skip_accuracy:
            split = load_digits_split(size=32, seed=0)
            for name in filter(None, args.accuracy_models.split(",")):
                data["accuracy"].append(accuracy(name, split, Path(tmp) / name, Path(args.cache), args.accuracy_calib_size))
            load.append({"label": "after the accuracy runs", **_load_snapshot()})
        for name in filter(None, args.latency_models.split(",")):
            data["latency"].append(latency(name, Path(args.repo or Path(tmp) / "models"), args))
            load.append({"label": f"after {name}", **_load_snapshot()})
    data.update(machine=describe_machine().to_dict(), minutes=(time.perf_counter() - start) / 60, load=load, notes=args.note)
    out = Path(args.out)
    atomic_write_json(out / "int8_weights.json", data)
    atomic_write_text(out / "int8_weights.md", render_markdown(data))
    _say(render_markdown(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
