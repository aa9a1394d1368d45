"""Per-layer analysis: shapes, activation memory, params and MACs, computed on the meta device.

``analyze_model(model_or_name, input_size)`` returns a frozen ``ModelStats``; the renderers in
``deploykit.analyze.render`` (table, JSON, CSV, Markdown, comparison) and the chart in
``deploykit.analyze.plot`` all draw that one object. Importing this package imports no torch.
"""

from deploykit.analyze.stats import (
    KINDS,
    LayerStats,
    ModelStats,
    ZooEntry,
    analyze_model,
    normalize_input_size,
    parse_input_size,
    summarize_zoo,
)

__all__ = [
    "KINDS",
    "LayerStats",
    "ModelStats",
    "ZooEntry",
    "analyze_model",
    "normalize_input_size",
    "parse_input_size",
    "summarize_zoo",
]
