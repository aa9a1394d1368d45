"""What ``deploykit export NAME`` costs against the bare ``torch.onnx.export`` call it wraps.

    python benchmarks/export_cost.py                              # resnet50 and vgg16, both exporters
    python benchmarks/export_cost.py --models resnet18 --exporters dynamo --tag smoke

For each model and exporter, three fresh child processes run one after the other (so their
RSS peaks never mix): (a) the bare exporter call in a script, ``torch.onnx.export(model, (x,),
path, dynamo=True|False, ...)`` with a dynamic batch, (b) the command ``deploykit export NAME
--exporter E`` (what the goal is about: build, export, checks, PyTorch and ONNX Runtime
verification, hashing, the atomic write), and (c) the same job as a library call,
``export_model()`` in a script, whose progress steps give the stage profile. All build the same
zoo network with random weights and import torch. CPU time (user + sys) and peak RSS come from
``os.wait4`` (the child's own rusage). A script pays the interpreter's teardown of torch at
exit (about 1.3 s of CPU); the command skips it (``deploykit.cli._leave``), the library row
shows what that is worth.

Writes ``benchmarks/results/export_cost[_TAG].json`` and ``.md`` with the machine, its load
average before and after, and the busiest other processes: the machine may be shared, so
compare the ratios, which are measured side by side in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent
GOAL_CPU, GOAL_RSS = 1.3, 1.2


# ---- the children -----------------------------------------------------------------------------
def child_bare(model: str, exporter: str, out: Path) -> dict:
    """The bare exporter call on the zoo network (what a user would write by hand)."""
    import torch

    from deploykit.zoo import get_card, get_model

    size = get_card(model).input_size
    module = get_model(model).eval()
    example = torch.randn(2, 3, size, size)
    start = time.perf_counter()
    if exporter == "dynamo":
        torch.onnx.export(
            module, (example,), str(out / "model.onnx"), dynamo=True, opset_version=18,
            input_names=["input"], output_names=["logits"],
            dynamic_shapes=({0: torch.export.Dim("batch", min=1)},),
        )  # fmt: skip
    else:
        torch.onnx.export(
            module, (example,), str(out / "model.onnx"), dynamo=False, opset_version=18,
            input_names=["input"], output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )  # fmt: skip
    return {"stages": {"export call": time.perf_counter() - start}}


def child_deploykit(model: str, exporter: str, out: Path) -> dict:
    """deploykit's whole export job; each progress step closes the stage before it."""
    import inspect

    from deploykit.export import export_model

    stages: dict[str, float] = {}
    cpu: dict[str, float] = {}
    current = ["start", time.perf_counter(), time.process_time()]

    def progress(step: str) -> None:
        now, used = time.perf_counter(), time.process_time()
        label = current[0]
        stages[label] = stages.get(label, 0.0) + now - current[1]
        cpu[label] = cpu.get(label, 0.0) + used - current[2]
        current[:] = [step.split(" (")[0], now, used]

    kwargs = {"exporter": exporter} if "exporter" in inspect.signature(export_model).parameters else {}
    if exporter != "dynamo" and not kwargs:
        raise SystemExit("this deploykit has no exporter option")
    result = export_model(model, repo=out / "repo", progress=progress, **kwargs)
    progress("done")
    return {"stages": stages, "stages_cpu": cpu, "bytes": result.bytes, "max_rel": result.parity.max_rel, "batch_sizes": list(result.parity.batch_sizes)}


def run_child(kind: str, model: str, exporter: str) -> dict:
    """One fresh process: its wall time, CPU time (user + sys) and peak RSS from wait4."""
    with tempfile.TemporaryDirectory(prefix="deploykit-export-cost-") as tmp:
        report = Path(tmp) / "child.json"
        cmd = [sys.executable, __file__, "--child", kind, model, exporter, tmp]
        if kind == "cli":
            cmd = [sys.executable, "-c", "from deploykit.cli import main; main()", "export", model,
                   "--exporter", exporter, "--repo", str(Path(tmp) / "repo"), "--format", "json"]  # fmt: skip
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        if proc.returncode != 0:
            raise SystemExit(f"{kind} {model} {exporter} failed ({proc.returncode}):\n{err[-3000:]}")
        detail = json.loads(report.read_text()) if kind != "cli" else {"stages": {}}
    return {
        "kind": kind,
        "model": model,
        "exporter": exporter,
        "wall_s": round(wall, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "user_s": round(usage.ru_utime, 2),
        "sys_s": round(usage.ru_stime, 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),  # KiB on Linux
        "load": [round(x, 2) for x in os.getloadavg()],
        **{k: (round(v, 6) if isinstance(v, float) else v) for k, v in detail.items() if not k.startswith("stages")},
        "stages": {k: round(v, 2) for k, v in detail["stages"].items()},
        "stages_cpu": {k: round(v, 2) for k, v in detail.get("stages_cpu", {}).items()},
    }


# ---- the run ----------------------------------------------------------------------------------
def other_processes(limit: int = 6) -> list[str]:
    """The busiest other processes right now (what else ran), from ps."""
    try:
        out = subprocess.run(
            ["ps", "-eo", "pid,pcpu,args", "--sort=-pcpu", "--no-headers"], capture_output=True, text=True, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [line.split(None, 2) for line in out.splitlines() if len(line.split(None, 2)) == 3]
    return [f"{a.strip()[:80]} ({c}% CPU)" for p, c, a in rows if int(p) != os.getpid() and not a.startswith("ps ")][:limit]


def measure_once(model: str, exporter: str) -> dict:
    """One round for one model and exporter: the bare script, the command, the library call."""
    print(f"{model} {exporter}: bare ...", file=sys.stderr, flush=True)
    bare = run_child("bare", model, exporter)
    print(f"    {bare['cpu_s']} s CPU, {bare['peak_rss_mb']} MB; deploykit export ...", file=sys.stderr, flush=True)
    ours = run_child("cli", model, exporter)
    print(f"    {ours['cpu_s']} s CPU, {ours['peak_rss_mb']} MB; export_model() ...", file=sys.stderr, flush=True)
    library = run_child("deploykit", model, exporter)
    print(f"    {library['cpu_s']} s CPU, {library['peak_rss_mb']} MB", file=sys.stderr, flush=True)
    return {
        "model": model,
        "exporter": exporter,
        "bare": bare,
        "deploykit": ours,
        "library": library,
        "library_cpu_ratio": round(library["cpu_s"] / bare["cpu_s"], 3),
        "library_rss_ratio": round(library["peak_rss_mb"] / bare["peak_rss_mb"], 3),
        "cpu_ratio": round(ours["cpu_s"] / bare["cpu_s"], 3),
        "rss_ratio": round(ours["peak_rss_mb"] / bare["peak_rss_mb"], 3),
        "wall_ratio": round(ours["wall_s"] / bare["wall_s"], 3),
    }


def measure(models: list[str], exporters: list[str], repeat: int = 1) -> list[dict]:
    """``repeat`` rounds of every pair, the rounds interleaved (a burst of other work hits one
    round of each, not every round of one); each pair is its median round by CPU ratio, with
    every round's ratios kept under ``rounds``."""
    rounds: dict[tuple[str, str], list[dict]] = {}
    for _ in range(repeat):
        for model in models:
            for exporter in exporters:
                rounds.setdefault((model, exporter), []).append(measure_once(model, exporter))
    pairs = []
    for runs in rounds.values():
        median = sorted(runs, key=lambda r: r["cpu_ratio"])[len(runs) // 2]
        pairs.append({**median, "rounds": [{"cpu_ratio": r["cpu_ratio"], "rss_ratio": r["rss_ratio"]} for r in runs]})
    return pairs


def render_markdown(doc: dict) -> str:
    lines = [
        "# Export cost: `deploykit export` against the bare exporter call",
        "",
        f"`{doc['command']}` on {doc['created_at']}: {doc['machine_summary']}.",
        f"Load average before {doc['load_before']}, after {doc['load_after']} (1/5/15 min); busiest other "
        "processes at the start: " + "; ".join(doc["other_processes"]) + ".",
        "",
        f"Goal (issue 13): deploykit at most {GOAL_CPU}x the CPU time (user + sys) and {GOAL_RSS}x the peak RSS of",
        "the bare call. Each row is three fresh processes run one after the other: the bare call in a",
        "script, the command `deploykit export NAME`, and `export_model()` in a script (the library",
        "columns: it pays the interpreter's teardown at exit, as the bare script does, which the",
        "command skips). All build the network and import torch. Read the ratios, not the seconds.",
        "",
        "With `--repeat N` each row is the median round (by CPU ratio) and the last column lists every",
        "round's CPU / RSS ratio.",
        "",
        "| model | exporter | bare CPU s | deploykit CPU s | CPU ratio | bare RSS MB | deploykit RSS MB | RSS ratio | bare wall s | deploykit wall s | goal met | library CPU ratio | library RSS ratio | rounds (CPU / RSS) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for p in doc["pairs"]:
        b, d = p["bare"], p["deploykit"]
        met = p["cpu_ratio"] <= GOAL_CPU and p["rss_ratio"] <= GOAL_RSS
        lines.append(
            f"| {p['model']} | {p['exporter']} | {b['cpu_s']:.1f} | {d['cpu_s']:.1f} | {p['cpu_ratio']:.2f} | "
            f"{b['peak_rss_mb']:,.0f} | {d['peak_rss_mb']:,.0f} | {p['rss_ratio']:.2f} | {b['wall_s']:.1f} | "
            f"{d['wall_s']:.1f} | {'yes' if met else 'no'} | {p.get('library_cpu_ratio', float('nan')):.2f} | "
            f"{p.get('library_rss_ratio', float('nan')):.2f} | "
            + ", ".join(f"{r['cpu_ratio']:.2f} / {r['rss_ratio']:.2f}" for r in p.get("rounds", []))
            + " |"
        )
    lines += [
        "",
        "## deploykit's stages",
        "",
        "CPU seconds of the process (all threads, `time.process_time`) / wall seconds (`perf_counter`)",
        "between the progress steps of `export_model()` (the library row); `start` is the imports before the first step.",
        "",
    ]
    for p in doc["pairs"]:
        profiled = p.get("library", p["deploykit"])
        cpu = profiled.get("stages_cpu", {})
        stages = ", ".join(f"{k} {cpu.get(k, float('nan')):.1f}/{v:.1f}" for k, v in profiled["stages"].items())
        lines.append(f"- {p['model']} ({p['exporter']}): {stages}; bare export call {p['bare']['stages']['export call']:.1f}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        kind, model, exporter, out = argv[1:5]
        detail = (child_bare if kind == "bare" else child_deploykit)(model, exporter, Path(out))
        (Path(out) / "child.json").write_text(json.dumps(detail))
        return 0
    from deploykit.artifacts import now_iso
    from deploykit.machine import describe_machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="resnet50,vgg16", help="comma-separated zoo models")
    parser.add_argument("--exporters", default="dynamo,torchscript", help="dynamo and/or torchscript")
    parser.add_argument("--tag", help="suffix of the results files (export_cost_TAG.json)")
    parser.add_argument("--repeat", type=int, default=1, help="rounds per pair; the median round is reported")
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    args = parser.parse_args(argv)

    load_before, others = [round(x, 2) for x in os.getloadavg()], other_processes()
    machine = describe_machine()
    pairs = measure(args.models.split(","), args.exporters.split(","), max(1, args.repeat))
    doc = {
        "benchmark": "export_cost",
        "created_at": now_iso(),
        "command": "python benchmarks/export_cost.py " + " ".join(argv),
        "machine": machine.to_dict(),
        "machine_summary": machine.summary(),
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "other_processes": others,
        "goal": {"cpu_ratio": GOAL_CPU, "rss_ratio": GOAL_RSS},
        "pairs": pairs,
    }
    stem = "export_cost" + (f"_{args.tag}" if args.tag else "")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / f"{stem}.md").write_text(render_markdown(doc))
    print(f"wrote {out / stem}.json and .md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
