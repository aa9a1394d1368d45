"""The lecture's trade-off table for the zoo: one row per model from ``deploykit.analyze``."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


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
