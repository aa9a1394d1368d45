"""Per-layer analysis: shapes, activation memory, params and MACs, computed on the meta device.

``analyze_model(model_or_name, input_size)`` returns a frozen ``ModelStats``; the renderers in
``deploykit.analyze.render`` (table, JSON, CSV, Markdown, comparison) and the chart in
``deploykit.analyze.plot`` all draw that one object. ``zoo_catalog()`` is the zoo's packaged
table (no torch); ``summarize_zoo()`` computes it live. Importing this package imports no torch.
"""

from deploykit.analyze.catalog import ZooEntry, summarize_zoo, write_zoo_catalog, zoo_catalog
from deploykit.analyze.stats import (
    KINDS,
    LayerStats,
    ModelStats,
    normalize_input_size,
    parse_input_size,
)
from deploykit.analyze.trace import analyze_model

__all__ = [
    "KINDS",
    "LayerStats",
    "ModelStats",
    "ZooEntry",
    "analyze_model",
    "normalize_input_size",
    "parse_input_size",
    "summarize_zoo",
    "write_zoo_catalog",
    "zoo_catalog",
]
