"""How fast the zoo answers: `deploykit models` and `deploykit analyze` of every model vs `import torch`.

    python benchmarks/zoo_speed.py                 # 5 rounds, results in benchmarks/results/
    python benchmarks/zoo_speed.py --rounds 9

Each round runs, in fresh processes one after the other: `python -c "import torch"`,
`deploykit models --format json` and `deploykit analyze <every zoo model> --format json`, and
reads each one's wall time and CPU time (user + sys of the child). Goals (issue 13, goal 2):
`models` under 0.5 s wall without importing torch; the whole-zoo `analyze` under 2x the time
of `import torch` alone. The ratios use the medians of one run, so the machine's load affects
both sides alike; the load average and the busiest other processes are recorded beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
ROOT = Path(__file__).resolve().parent.parent


def timed(cmd: list[str]) -> dict[str, float]:
    """Wall and CPU seconds (user + sys) of one child process; fails loudly on a non-zero exit."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} ... failed ({proc.returncode}): {proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": wall, "cpu_s": cpu}


def other_processes(limit: int = 5) -> list[str]:
    """The busiest other processes right now (what else ran), from ps."""
    try:
        out = subprocess.run(
            ["ps", "-eo", "pid,pcpu,args", "--sort=-pcpu", "--no-headers"],
            capture_output=True, text=True, timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    rows = [line.split(None, 2) for line in out.splitlines() if line.strip()]
    return [
        f"{args.strip()[:70]} ({pcpu}% CPU)"
        for pid, pcpu, args in rows
        if int(pid) != os.getpid() and not args.startswith("ps ")
    ][:limit]


def measure(rounds: int) -> dict[str, dict]:
    from deploykit.analyze import zoo_catalog

    names = [entry.name for entry in zoo_catalog()]
    py = sys.executable
    commands = {
        "import torch": [py, "-c", "import torch"],
        "deploykit models": [py, "-m", "deploykit", "models", "--format", "json"],
        "deploykit analyze (whole zoo)": [py, "-m", "deploykit", "analyze", *names, "--format", "json"],
    }
    samples: dict[str, list[dict[str, float]]] = {key: [] for key in commands}
    timed(commands["import torch"])  # warm the file cache once, unrecorded
    for _ in range(rounds):
        for key, cmd in commands.items():
            samples[key].append(timed(cmd))
    return {
        key: {
            "wall_s": statistics.median(s["wall_s"] for s in runs),
            "cpu_s": statistics.median(s["cpu_s"] for s in runs),
            "wall_s_all": [round(s["wall_s"], 3) for s in runs],
            "models": len(names) if "analyze" in key else None,
        }
        for key, runs in samples.items()
    }


def render_markdown(doc: dict) -> str:
    t = doc["timings"]
    torch_wall, torch_cpu = t["import torch"]["wall_s"], t["import torch"]["cpu_s"]
    lines = [
        "# Zoo listing and analysis speed (`benchmarks/zoo_speed.py`)",
        "",
        f"Machine: {doc['machine_summary']}. Run {doc['when']}, {doc['rounds']} rounds, medians.",
        f"Load average before / after: {doc['load_before']} / {doc['load_after']}; busiest other "
        f"processes: {', '.join(doc['other_processes']) or 'none seen'}.",
        "",
        "| command | wall (s) | CPU (s) | wall / import torch | CPU / import torch |",
        "|---|---:|---:|---:|---:|",
    ]
    for key, row in t.items():
        lines.append(
            f"| `{key}` | {row['wall_s']:.2f} | {row['cpu_s']:.2f} | "
            f"{row['wall_s'] / torch_wall:.2f} | {row['cpu_s'] / torch_cpu:.2f} |"
        )
    g = doc["goals"]
    lines += [
        "",
        f"- `deploykit models` under 0.5 s wall: **{'met' if g['models_under_half_second'] else 'not met'}** "
        f"({t['deploykit models']['wall_s']:.2f} s; it imports no torch).",
        f"- `deploykit analyze` of the whole zoo ({t['deploykit analyze (whole zoo)']['models']} models) "
        f"under 2x `import torch`: **{'met' if g['analyze_under_2x_import_torch'] else 'not met'}** "
        f"({g['analyze_over_import_torch_wall']:.2f}x wall, {g['analyze_over_import_torch_cpu']:.2f}x CPU).",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from deploykit.artifacts import now_iso
    from deploykit.machine import describe_machine

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    args = parser.parse_args(argv)

    load_before = [round(x, 2) for x in os.getloadavg()]
    others = other_processes()
    timings = measure(args.rounds)
    analyze, torch_row = timings["deploykit analyze (whole zoo)"], timings["import torch"]
    machine = describe_machine()
    doc = {
        "benchmark": "zoo_speed",
        "when": now_iso(),
        "rounds": args.rounds,
        "machine": machine.to_dict(),
        "machine_summary": machine.summary(),
        "load_before": load_before,
        "load_after": [round(x, 2) for x in os.getloadavg()],
        "other_processes": others,
        "timings": timings,
        "goals": {
            "models_under_half_second": timings["deploykit models"]["wall_s"] < 0.5,
            "analyze_over_import_torch_wall": analyze["wall_s"] / torch_row["wall_s"],
            "analyze_over_import_torch_cpu": analyze["cpu_s"] / torch_row["cpu_s"],
            "analyze_under_2x_import_torch": analyze["wall_s"] < 2 * torch_row["wall_s"],
        },
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "zoo_speed.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "zoo_speed.md").write_text(render_markdown(doc))
    print(render_markdown(doc))
    return 0


if __name__ == "__main__":
    sys.exit(main())
