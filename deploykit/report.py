"""A Markdown report with PNG charts from one or more bench result files, plus ``analyze``.

``make_report(paths, out_dir)`` writes into ``out_dir``:

- ``report.md``: the machines, the lecture's trade-off table for the zoo (params, MACs,
  activation memory, where params and MACs concentrate, published top-1), the measurements
  and the charts below, each with a sentence that says how to read it;
- ``latency_vs_batch.png`` and ``throughput_vs_batch.png``: one panel per model, one line
  per backend/precision (and machine, when the files come from several);
- ``accuracy_vs_gmacs.png``: the zoo as an accuracy-vs-cost bubble chart in the style of
  Canziani et al. 2017 (x: GMACs per image, y: published ImageNet top-1, area: params);
- ``accuracy_vs_latency.png``: the same y against the measured batch-1 latency of each
  benchmarked model (its fastest configuration per machine);
- ``roofline.png`` and ``latency_bound.png``: ``deploykit estimate``'s roofline (one point per
  layer, each device's roofs) and latency bound across devices and precisions for the
  benchmarked zoo models.

Every file is written atomically; files already in ``out_dir`` that the report does not
make are left alone.
"""

from __future__ import annotations

import io
import math
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploykit.bench import BenchResult, BenchRun, machine_line, to_markdown
from deploykit.errors import UsageError
from deploykit.estimate.plot import report_charts

CHARTS = ("latency_vs_batch.png", "throughput_vs_batch.png", "accuracy_vs_gmacs.png", "accuracy_vs_latency.png",
          "roofline.png", "latency_bound.png")


@dataclass(frozen=True)
class ZooRow:
    """One row of the trade-off table (per image, at the model card's input size)."""

    model: str
    family: str
    year: int
    input_size: int
    params: int
    macs: int
    activation_bytes: int
    peak_activation_bytes: int
    fc_params_share: float
    conv_macs_share: float
    top1: float | None


@dataclass(frozen=True)
class Report:
    """What :func:`make_report` wrote."""

    directory: Path
    markdown: Path
    charts: tuple[Path, ...]
    runs: int
    results: int
    zoo_rows: int
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "markdown": str(self.markdown),
            "charts": [str(p) for p in self.charts],
            "runs": self.runs,
            "results": self.results,
            "zoo_rows": self.zoo_rows,
            "notes": list(self.notes),
        }


# ======================================================================================
# data
# ======================================================================================


def zoo_table(models: Sequence[str] | None = None) -> tuple[list[ZooRow], list[str]]:
    """Trade-off rows for ``models`` (default: the whole zoo) from ``deploykit.analyze``.

    Returns the rows and notes for models that could not be analyzed (the report says so
    rather than failing).
    """
    from deploykit.zoo import get_card, list_models

    notes: list[str] = []
    try:
        from deploykit.analyze import analyze_model
    except ImportError as exc:
        return [], [f"trade-off table left out: deploykit.analyze is unavailable ({exc})"]
    rows = []
    for name in models or list_models():
        card = get_card(name)
        try:
            stats = analyze_model(name, input_size=card.input_size)
        except Exception as exc:  # one model's analysis problem must not sink the report
            notes.append(f"{name}: analyze failed ({str(exc).splitlines()[0][:120]})")
            continue
        t = stats.totals
        rows.append(
            ZooRow(
                model=name,
                family=card.family,
                year=card.year,
                input_size=card.input_size,
                params=int(t["params"]),
                macs=int(t["macs"]),
                activation_bytes=int(t.get("activation_bytes", 0)),
                peak_activation_bytes=int(t.get("peak_activation_bytes", 0)),
                fc_params_share=float(t.get("fc_params_share", 0.0)),
                conv_macs_share=float(t.get("conv_macs_share", 0.0)),
                top1=card.top1,
            )
        )
    return rows, notes


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


def _pyplot():
    from deploykit._deps import require

    matplotlib = require("matplotlib", "report charts")
    matplotlib.use("Agg")  # files only: never needs a display
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> Path:
    from deploykit.fileio import atomic_write_bytes

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    _pyplot().close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def _grid(n: int) -> tuple[int, int]:
    cols = min(3, n)
    return math.ceil(n / cols), cols


def plot_vs_batch(runs: Sequence[BenchRun], path: Path, metric: str) -> Path | None:
    """Latency (p50, with the p90 as a thin band) or throughput against batch size, a panel per model."""
    plt = _pyplot()
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
    plt = _pyplot()
    cmap = plt.get_cmap("tab10")
    return {f: cmap(i % 10) for i, f in enumerate(sorted(set(families)))}


def plot_accuracy_vs_gmacs(rows: Sequence[ZooRow], path: Path) -> Path | None:
    """Canziani-style bubble chart: GMACs per image vs published top-1, bubble area ~ params."""
    rows = [r for r in rows if r.top1 is not None]
    if not rows:
        return None
    plt = _pyplot()
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
    plt = _pyplot()
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


# ======================================================================================
# markdown
# ======================================================================================


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f}"


def zoo_markdown(rows: Sequence[ZooRow]) -> str:
    header = (
        "| model | year | input | params (M) | GMACs | activations (MB, sum) | largest activation (MB) "
        "| FC share of params | conv share of MACs | top-1 (%) |"
    )
    lines = [header, "|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: (r.year, r.model)):
        lines.append(
            f"| {r.model} | {r.year} | {r.input_size} | {r.params / 1e6:.1f} | {r.macs / 1e9:.2f} | "
            f"{_mb(r.activation_bytes)} | {_mb(r.peak_activation_bytes)} | {r.fc_params_share * 100:.0f}% | "
            f"{r.conv_macs_share * 100:.0f}% | {'-' if r.top1 is None else f'{r.top1:.1f}'} |"
        )
    return "\n".join(lines) + "\n"


def _libraries_line(machine: dict[str, Any]) -> str:
    libs = machine.get("libraries") or {}
    return ", ".join(f"{k} {v}" for k, v in libs.items())


# Each chart's section: (heading or None to continue the previous one, the text that says how
# to read it, the image's alt text).
CHART_SECTIONS: dict[str, tuple[str | None, str, str]] = {
    "latency_vs_batch.png": (
        "Latency vs batch size",
        "p50 latency per batch (line) and p90 (top of the band); both axes logarithmic. A line "
        "that stays flat while the batch doubles means the device was not yet busy.",
        "latency vs batch",
    ),
    "throughput_vs_batch.png": (
        "Throughput vs batch size",
        "Images per second (batch / mean latency). The curve flattens where the device saturates.",
        "throughput vs batch",
    ),
    "accuracy_vs_gmacs.png": (
        "Accuracy vs cost",
        "After Canziani, Paszke and Culurciello, *An Analysis of Deep Neural Network Models for "
        "Practical Applications* (2017): x is the analytic cost (GMACs per image), y the published "
        "top-1, bubble area the parameter count. Up and to the left is better.",
        "accuracy vs GMACs",
    ),
    "accuracy_vs_latency.png": (
        None,
        "The same accuracy against measured batch-1 latency (each model's fastest configuration on "
        "each machine, labelled with it): what the analytic cost becomes on real hardware. The y "
        "value stays the published FP32 top-1; an FP16 or INT8 point may lose some of it (measure "
        "that with `deploykit parity`).",
        "accuracy vs latency",
    ),
    "roofline.png": (
        "Roofline bounds on devices you may not own",
        "`deploykit estimate` for the first benchmarked model: one point per layer at its arithmetic "
        "intensity (FLOP per byte moved) and the rate its roof allows, under each device's compute "
        "and memory roofs (dense datasheet figures; `cpu` is this machine, measured). Points on the "
        "slope are memory-bound. No fusion, caches or launch overheads are modelled (docs/estimate.md).",
        "roofline per device",
    ),
    "latency_bound.png": (
        None,
        "The latency bound of each benchmarked model per device and precision, at batch 1 and 64 "
        "(log scale): the time no deployment can beat without fusing layers or keeping activations "
        "on chip. `deploykit bench` prints measured / bound as '% roofline'.",
        "latency bound per device and precision",
    ),
}

ZOO_INTRO = (
    "Per image at each model's input size, from `deploykit analyze` (meta device, nothing "
    "allocated). Activations are FP32 outputs of every layer; the largest one bounds the memory "
    "an inference engine needs per image. Top-1 is the published ImageNet accuracy of the "
    "torchvision weights (model cards)."
)


def _load_runs(paths: Sequence[str | os.PathLike], out: Path) -> list[BenchRun]:
    """The result files, and ``out`` created; UsageError for a missing or malformed file."""
    if not paths:
        raise UsageError("no result files given", hint="pass the JSON files `deploykit bench --out` wrote")
    runs = [BenchRun.load(p) for p in paths]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create {out}: {exc.strerror}") from None
    _pyplot()  # fail early, before any file is written, when matplotlib is missing
    return runs


def _make_charts(runs: Sequence[BenchRun], rows: Sequence[ZooRow], out: Path) -> dict[str, Path | None]:
    return {
        "latency_vs_batch.png": plot_vs_batch(runs, out / "latency_vs_batch.png", "latency"),
        "throughput_vs_batch.png": plot_vs_batch(runs, out / "throughput_vs_batch.png", "throughput"),
        "accuracy_vs_gmacs.png": plot_accuracy_vs_gmacs(rows, out / "accuracy_vs_gmacs.png"),
        "accuracy_vs_latency.png": plot_accuracy_vs_latency(runs, rows, out / "accuracy_vs_latency.png"),
        **report_charts([r.config.model for run in runs for r in run.results if r.ok], out),
    }


def _runs_markdown(paths: Sequence[str | os.PathLike], runs: Sequence[BenchRun]) -> tuple[list[str], list[str]]:
    """The machines section and the measurements section."""
    machines = ["## Machines", ""]
    measurements = ["## Measurements", ""]
    for path, run in zip(paths, runs, strict=True):
        name = Path(path).name
        machines.append(f"- `{name}` ({run.created_at}): {machine_line(run.machine)}. {_libraries_line(run.machine)}.")
        machines += [f"  - note: {note}" for note in run.notes]
        measurements += [f"### `{name}`", "", to_markdown(run)]
    return [*machines, ""], measurements


def _charts_markdown(made: dict[str, Path | None]) -> list[str]:
    md: list[str] = []
    for chart, (heading, text, alt) in CHART_SECTIONS.items():
        if made.get(chart):
            md += [f"## {heading}", ""] if heading else []
            md += [text, "", f"![{alt}]({chart})", ""]
    return md


def report_markdown(
    title: str,
    paths: Sequence[str | os.PathLike],
    runs: Sequence[BenchRun],
    rows: Sequence[ZooRow],
    made: dict[str, Path | None],
    notes: Sequence[str],
) -> str:
    """The text of report.md."""
    from deploykit.artifacts import now_iso

    machines, measurements = _runs_markdown(paths, runs)
    md = [f"# {title}", "", f"Generated {now_iso()} from {len(runs)} result file(s).", "", *machines]
    if rows:
        md += ["## Trade-offs of the zoo", "", ZOO_INTRO, "", zoo_markdown(rows)]
    md += [*measurements, *_charts_markdown(made)]
    if notes:
        md += ["## Notes", "", *[f"- {n}" for n in notes], ""]
    return "\n".join(md)


def make_report(
    paths: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    zoo_models: Sequence[str] | None = None,
    title: str = "deploykit performance report",
) -> Report:
    """Read bench JSON files and write ``report.md`` plus PNG charts into ``out_dir``.

    ``zoo_models`` limits the trade-off table (default: the whole zoo). Raises UsageError
    for a missing or malformed result file.
    """
    from deploykit.fileio import atomic_write_text

    out = Path(out_dir)
    runs = _load_runs(paths, out)
    rows, notes = zoo_table(zoo_models)
    made = _make_charts(runs, rows, out)
    markdown = atomic_write_text(out / "report.md", report_markdown(title, paths, runs, rows, made, notes))
    return Report(
        directory=out,
        markdown=markdown,
        charts=tuple(p for p in made.values() if p is not None),
        runs=len(runs),
        results=sum(len(r.results) for r in runs),
        zoo_rows=len(rows),
        notes=tuple(notes),
    )
