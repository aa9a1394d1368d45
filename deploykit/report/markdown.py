"""The text of report.md: machines, the zoo's trade-offs, the measurements and each chart's reading."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from deploykit.bench import BenchRun, machine_line, to_markdown
from deploykit.report.zoo import ZooRow, zoo_markdown


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
