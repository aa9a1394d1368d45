"""The lecture's Figure 8.2: activation memory, params and MACs per layer, three bar charts.

matplotlib is imported inside ``plot_layers`` (the ``[plot]`` extra); the figure is rendered
to memory with the Agg canvas (no pyplot, no GUI backend) and written atomically.
"""

from __future__ import annotations

import io
import os
from pathlib import Path

from deploykit._deps import require
from deploykit.analyze.stats import ModelStats
from deploykit.errors import UsageError
from deploykit.fileio import atomic_write_bytes

PLOT_FORMATS = ("png", "svg", "pdf")
KIND_COLORS = {
    "conv": "#1f77b4",
    "pool": "#7f7f7f",
    "linear": "#ff7f0e",
    "flatten": "#bcbd22",
    "other": "#2ca02c",
}


def check_plot_path(path: str | os.PathLike) -> Path:
    """The output path of a chart: its suffix picks the format (png, svg, pdf)."""
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt not in PLOT_FORMATS:
        raise UsageError(
            f"cannot tell the chart format of {str(path)!r}",
            hint=f"end the file name in .{', .'.join(PLOT_FORMATS)}",
        )
    return path


def plot_layers(stats: ModelStats, path: str | os.PathLike, dpi: int = 130) -> Path:
    """Draw memory (KiB), params (thousands) and MACs (millions) per layer; write ``path``.

    Horizontal bars, layers top to bottom in execution order, colored by kind, so the three
    takeaways read at a glance: memory sits in the early convs, params in the FC layers,
    compute in the convs.
    """
    path = check_plot_path(path)
    require("matplotlib", "--plot")
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch
    from matplotlib.ticker import FuncFormatter

    layers = stats.layers
    names = [r.name for r in layers]
    colors = [KIND_COLORS.get(r.kind, KIND_COLORS["other"]) for r in layers]
    panels = (
        ("Activation memory (KiB)", [r.activation_bytes / 1024 for r in layers]),
        ("Params (thousands)", [r.params / 1e3 for r in layers]),
        ("MACs (millions)", [r.macs / 1e6 for r in layers]),
    )
    height = max(3.5, 0.24 * len(layers) + 1.6)
    label_width = max((len(n) for n in names), default=8)
    fig = Figure(figsize=(12 + 0.06 * label_width, height), layout="constrained")
    axes = fig.subplots(1, 3, sharey=True)
    y = list(range(len(layers)))
    for ax, (title, values) in zip(axes, panels, strict=True):
        ax.barh(y, values, color=colors)
        ax.set_title(title, fontsize=10)
        ax.grid(axis="x", alpha=0.3)
        ax.tick_params(axis="x", labelsize=8)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        peak = max(values, default=0)
        # Label only the bars that matter, so 150-row ResNets stay readable.
        threshold = 0.25 * peak if len(layers) <= 30 else peak
        for yi, v in zip(y, values, strict=True):
            if peak and v >= threshold:
                ax.annotate(f"{v:,.0f}", (v, yi), xytext=(2, 0), textcoords="offset points",
                            va="center", fontsize=7)
        ax.margins(x=0.18)
    axes[0].set_yticks(y, names, fontsize=8 if len(layers) <= 40 else 6)
    axes[0].set_ylim(len(layers) - 0.5, -0.5)  # first layer on top, no empty margin
    kinds = [k for k in KIND_COLORS if any(r.kind == k for r in layers)]
    fig.legend(
        handles=[Patch(color=KIND_COLORS[k], label=k) for k in kinds],
        loc="outside lower center",
        ncols=len(kinds),
        fontsize=8,
        frameon=False,
    )
    t = stats.totals
    fig.suptitle(
        f"{stats.model} @ {'x'.join(map(str, stats.input_shape))}: "
        f"{int(t['params']) / 1e6:,.1f} M params, {int(t['macs']) / 1e9:,.2f} GMACs, "
        f"{int(t['activation_bytes']) / 2**20:,.1f} MiB activations per image (FP32)",
        fontsize=11,
    )
    buf = io.BytesIO()
    fig.savefig(buf, format=path.suffix.lower().lstrip("."), dpi=dpi)
    return atomic_write_bytes(path, buf.getvalue())
