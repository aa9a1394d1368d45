"""The report's charts: latency and throughput vs batch, accuracy vs cost and vs measured latency."""

from __future__ import annotations

import io
import math
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deploykit.bench import BenchResult, BenchRun
from deploykit.errors import UsageError
from deploykit.report.zoo import ZooRow


def _machine_key(machine: dict[str, Any]) -> str:
    """A short name for a machine in chart legends: the GPU when there is one, else the CPU."""
    gpus = machine.get("gpus") or []
    if gpus:
        return str(gpus[0].get("name", "GPU")).replace("NVIDIA ", "")
    cpu = str(machine.get("cpu_model") or "CPU")
    return f"{cpu} x{machine.get('logical_cpus', '?')}"


def _series(runs: Sequence[BenchRun]) -> dict[str, dict[str, list[BenchResult]]]:
    """model -> series name -> ok results sorted by batch (one per batch size).

    A series is one backend/precision; its name adds the machine when the files come from
    several machines, else the device when one machine ran both CPU and CUDA configurations.
    """
    several_machines = len({_machine_key(run.machine) for run in runs}) > 1
    several_devices = len({r.config.device for run in runs for r in run.results}) > 1
    out: dict[str, dict[str, list[BenchResult]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        where = _machine_key(run.machine)
        for r in run.results:
            if not r.ok or r.latency is None:
                continue
            name = r.config.label
            if several_machines:
                name += f" @ {where}"
            elif several_devices:
                name += f" ({r.config.device})"
            out[r.config.model][name].append(r)
    for series in out.values():
        for name in series:
            # One point per batch size: a later file's result replaces an earlier one.
            series[name] = sorted({r.config.batch: r for r in series[name]}.values(), key=lambda r: r.config.batch)
    return out


# ======================================================================================
# charts
# ======================================================================================


def load_pyplot():
    from deploykit._deps import require

    matplotlib = require("matplotlib", "report charts")
    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    from deploykit.fileio import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    load_pyplot().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _grid(n: int) -> tuple[int, int]:
    cols = min(3, n)
    return math.ceil(n / cols), cols


def plot_vs_batch(runs: Sequence[BenchRun], path: Path, metric: str) -> Path | None:
    """Latency (p50, with the p90 as a thin band) or throughput against batch size, a panel per model."""
    plt = load_pyplot()
    series = _series(runs)
    if not series:
        return None
    models = sorted(series)
    rows, cols = _grid(len(models))
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.9 * rows), squeeze=False)
    for ax, model in zip(axes.flat, models, strict=False):
        for name, results in sorted(series[model].items()):
            batches = [r.config.batch for r in results]
            if metric == "latency":
                y = [r.latency.p50_ms for r in results]
                line = ax.plot(batches, y, marker="o", label=name)[0]
                ax.fill_between(
                    batches, [r.latency.p50_ms for r in results], [r.latency.p90_ms for r in results],
                    color=line.get_color(), alpha=0.15, linewidth=0,
                )
            else:
                y = [r.throughput_ips for r in results]
                ax.plot(batches, y, marker="o", label=name)
        ax.set_title(model)
        _log_axes(ax, sorted({r.config.batch for rs in series[model].values() for r in rs}))
        ax.set_xlabel("batch size")
        ax.set_ylabel("latency per batch, p50 (ms)" if metric == "latency" else "throughput (images/s)")
        ax.grid(True, which="both", alpha=0.3)
    for ax in list(axes.flat)[len(models):]:
        ax.set_visible(False)
    # One legend for the figure, below the panels: per-panel legends hide the lines.
    handles: dict[str, Any] = {}
    for ax in axes.flat:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    ncol = min(len(handles), 5)
    fig.legend(list(handles.values()), list(handles), loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    title = "Latency vs batch size (band: p50 to p90)" if metric == "latency" else "Throughput vs batch size"
    fig.suptitle(title)
    legend_rows = math.ceil(len(handles) / ncol) if ncol else 0
    fig.tight_layout(rect=(0, 0.035 * legend_rows / rows + 0.02, 1, 1))
    return _save(fig, path)


def _plain_log(axis: Any) -> None:
    """Log scale with plain numbers (0.5, 2, 30) instead of powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 3.0, 5.0)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    axis.set_minor_formatter(NullFormatter())


def _log_axes(ax: Any, batches: Sequence[int]) -> None:
    """x: log2 with a tick at every measured batch size; y: log10 with plain labels."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullFormatter

    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_locator(FixedLocator(list(batches)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_yscale("log")
    _plain_log(ax.yaxis)


def _place_labels(ax: Any, points: Sequence[tuple[float, float, str]], fontsize: float = 7.5) -> None:
    """Annotate points without labels overlapping: for each point, in order, the first
    candidate offset whose (estimated) text box clears the boxes already placed."""
    fig = ax.figure
    fig.canvas.draw()  # fix the axis limits so data -> pixel transforms are final
    scale = fig.dpi / 72.0
    placed: list[tuple[float, float, float, float]] = []
    candidates = [(5, 4, "left"), (5, -11, "left"), (-5, 4, "right"), (-5, -11, "right"),
                  (5, 15, "left"), (5, -22, "left"), (-5, 15, "right"), (-5, -22, "right")]
    for x, y, text in sorted(points, key=lambda p: (p[0], p[1])):
        px, py = ax.transData.transform((x, y))
        lines = text.split("\n")
        width = max(len(line) for line in lines) * fontsize * 0.62 * scale + 4 * scale
        height = len(lines) * fontsize * 1.25 * scale
        choice = candidates[0]
        for dx, dy, ha in candidates:
            x0 = px + dx * scale - (width if ha == "right" else 0)
            y0 = py + dy * scale
            box = (x0, y0, x0 + width, y0 + height)
            if not any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in placed):
                choice = (dx, dy, ha)
                placed.append(box)
                break
        else:
            dx, dy, ha = choice
            x0 = px + dx * scale
            placed.append((x0, py + dy * scale, x0 + width, py + dy * scale + height))
        dx, dy, ha = choice
        ax.annotate(text, (x, y), xytext=(dx, dy), textcoords="offset points", fontsize=fontsize, ha=ha,
                    va="bottom")


def _family_colors(families: Sequence[str]) -> dict[str, Any]:
    plt = load_pyplot()
    cmap = plt.get_cmap("tab10")
    return {f: cmap(i % 10) for i, f in enumerate(sorted(set(families)))}


def plot_accuracy_vs_gmacs(rows: Sequence[ZooRow], path: Path) -> Path | None:
    """Canziani-style bubble chart: GMACs per image vs published top-1, bubble area ~ params."""
    rows = [r for r in rows if r.top1 is not None]
    if not rows:
        return None
    plt = load_pyplot()
    colors = _family_colors([r.family for r in rows])
    fig, ax = plt.subplots(figsize=(10, 6.5))
    max_params = max(r.params for r in rows)
    for r in rows:
        size = 2500 * r.params / max_params
        ax.scatter(r.macs / 1e9, r.top1, s=size, color=colors[r.family], alpha=0.45, edgecolors="black", linewidths=0.6)
        ax.scatter(r.macs / 1e9, r.top1, s=6, color="black")
    ax.set_xscale("log")
    _plain_log(ax.xaxis)
    ax.set_xlabel("GMACs per image (log scale; at each model's input size)")
    ax.set_ylabel("ImageNet top-1 (%, published for the torchvision weights)")
    ax.set_title("Accuracy vs cost (after Canziani et al. 2017): bubble area ~ parameters")
    for family, color in colors.items():
        ax.scatter([], [], color=color, alpha=0.6, s=60, label=family)
    for params in (5e6, 25e6, 100e6):
        ax.scatter([], [], s=2500 * params / max_params, facecolors="none", edgecolors="gray", label=f"{params / 1e6:.0f} M params")
    ax.legend(fontsize=8, loc="lower right", ncol=2, labelspacing=1.3, borderpad=1.0)
    ax.grid(True, which="both", alpha=0.3)
    y = [r.top1 for r in rows]
    ax.set_ylim(min(y) - 2.5, max(y) + 2.0)
    fig.tight_layout()
    _place_labels(ax, [(r.macs / 1e9, r.top1, r.model) for r in rows])
    return _save(fig, path)


def fastest_batch1(runs: Sequence[BenchRun]) -> list[tuple[str, str, BenchResult]]:
    """(model, machine, result): each model's fastest batch-1 configuration on each machine."""
    best: dict[tuple[str, str], BenchResult] = {}
    for run in runs:
        where = _machine_key(run.machine)
        for r in run.results:
            if r.ok and r.latency and r.config.batch == 1:
                key = (r.config.model, where)
                if key not in best or r.latency.p50_ms < best[key].latency.p50_ms:
                    best[key] = r
    return [(m, w, r) for (m, w), r in sorted(best.items())]


def plot_accuracy_vs_latency(runs: Sequence[BenchRun], rows: Sequence[ZooRow], path: Path) -> Path | None:
    """Published top-1 vs measured batch-1 latency (fastest configuration), bubble area ~ params."""
    from deploykit.zoo import get_card

    points = []
    params = {r.model: r.params for r in rows}
    for model, where, r in fastest_batch1(runs):
        try:
            top1 = get_card(model).top1
        except UsageError:
            continue
        if top1 is not None:
            points.append((model, where, r, top1))
    if not points:
        return None
    plt = load_pyplot()
    machines = sorted({w for _, w, _, _ in points})
    cmap = plt.get_cmap("tab10")
    max_params = max((params.get(m, 0) for m, *_ in points), default=0) or 1
    fig, ax = plt.subplots(figsize=(9, 6))
    for model, where, r, top1 in points:
        color = cmap(machines.index(where) % 10)
        size = 2000 * params.get(model, max_params / 4) / max_params
        ax.scatter(r.latency.p50_ms, top1, s=size, color=color, alpha=0.45, edgecolors="black", linewidths=0.6)
        ax.scatter(r.latency.p50_ms, top1, s=6, color="black")
    for i, where in enumerate(machines):
        ax.scatter([], [], color=cmap(i % 10), alpha=0.6, s=60, label=where)
    ax.set_xscale("log")
    _plain_log(ax.xaxis)
    ax.set_xlabel("measured latency at batch 1, p50 (ms, log scale; fastest backend/precision)")
    ax.set_ylabel("ImageNet top-1 (%, published)")
    ax.set_title("Accuracy vs measured latency: bubble area ~ parameters")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(True, which="both", alpha=0.3)
    y = [p[3] for p in points]
    ax.set_ylim(min(y) - 2.5, max(y) + 2.0)
    fig.tight_layout()
    _place_labels(ax, [(r.latency.p50_ms, top1, f"{model}\n{r.config.label}") for model, _, r, top1 in points], 7)
    return _save(fig, path)
