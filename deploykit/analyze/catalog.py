"""The zoo at a glance: every model's card and analyzed totals, live or from the packaged table.

``deploykit models`` reads ``deploykit/data/zoo_catalog.json`` through :func:`zoo_catalog`, so it
answers without importing torch; :func:`summarize_zoo` computes the same rows live (a test keeps
the two equal) and :func:`write_zoo_catalog` rewrites the table:
``python3 -c "from deploykit.analyze import write_zoo_catalog; write_zoo_catalog()"``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

CATALOG_FILE = "zoo_catalog.json"

# --------------------------------------------------------------------------- the zoo at a glance


@dataclass(frozen=True)
class ZooEntry:
    """One line of ``deploykit models``: a model card plus its analyzed totals."""

    name: str
    family: str
    year: int
    input_size: int
    params: int
    macs: int  # at input_size x input_size, one image
    top1: float | None
    torchvision_name: str | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize_zoo(names: list[str] | None = None, on_model=None) -> tuple[ZooEntry, ...]:
    """Analyze every zoo model (or ``names``) on the meta device at its card's input size.

    ``on_model(name)`` is called before each model, for progress display.
    """
    from deploykit.analyze.trace import analyze_model
    from deploykit.zoo import get_card, list_models

    entries = []
    for name in names if names is not None else list_models():
        if on_model is not None:
            on_model(name)
        card = get_card(name)
        stats = analyze_model(name)
        entries.append(
            ZooEntry(
                name=name,
                family=card.family,
                year=card.year,
                input_size=card.input_size,
                params=int(stats.totals["params"]),
                macs=int(stats.totals["macs"]),
                top1=card.top1,
                torchvision_name=card.torchvision_name,
            )
        )
    return tuple(entries)


def zoo_catalog() -> tuple[ZooEntry, ...]:
    """Every zoo model's row from the packaged table (no torch; regenerate it with
    :func:`write_zoo_catalog` after changing a model or its card)."""
    text = resources.files("deploykit").joinpath("data", CATALOG_FILE).read_text()
    names = {f.name for f in fields(ZooEntry)}
    return tuple(ZooEntry(**{k: v for k, v in row.items() if k in names}) for row in json.loads(text))


def write_zoo_catalog(
    path: str | Path | None = None, entries: tuple[ZooEntry, ...] | None = None
) -> Path:
    """Write ``entries`` (default: a live analysis of the whole zoo) as the packaged table
    (default path: the installed one)."""
    from deploykit.fileio import atomic_write_text

    target = Path(path) if path else Path(str(resources.files("deploykit").joinpath("data", CATALOG_FILE)))
    rows = [entry.to_dict() for entry in (entries if entries is not None else summarize_zoo())]
    atomic_write_text(target, json.dumps(rows, indent=1) + "\n")
    return target
