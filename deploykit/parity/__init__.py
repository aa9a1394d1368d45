"""Accuracy parity: does a deployed variant still classify like the PyTorch model it came from?

Comparison is its own layer over runners (Polygraphy's comparator): a reference runner and
any number of variant runners see the same preprocessed batches; per variant, metrics are
accumulated batch by batch (nothing holds all images or all logits) and judged against a
per-precision :class:`Tolerance`. Three entry points:

- :func:`compare` — any runners, any batches: the building block.
- :func:`check` — a model in the repository: the PyTorch FP32 reference (same weights, same
  preprocessing, TF32 off on GPU) against ``<model>_onnx_<precision>`` /
  ``<model>_trt_<precision>`` on each backend, verdicts written into each variant's sidecar.
- :func:`assert_parity` — :func:`check` for pytest: raises ``AssertionError`` with a
  readable summary.

Metrics (per variant, over all images):
- top-1 agreement: the variant's argmax equals the reference's;
- top-5 agreement: the variant's five highest classes are the reference's five (any order);
- with labels: top-1 accuracy of reference and variant, and the difference in points;
- logits: max and mean absolute error, per-image relative error; min and mean cosine
  similarity per image;
- flipped images: how many, and the first few with both predictions.

A reference whose logits do not vary across the images (random-weight GoogLeNet collapses to
a constant) makes agreement meaningless: that is a :class:`DegenerateReferenceError`, never a
pass. Export's verification uses the same metrics and guard with its own tolerance row.

Modules: ``tolerances`` (the rows and their parsing), ``metrics`` (accumulation, the verdict,
the reference guard), ``compare`` (runners over batches), ``reference`` (the PyTorch
reference), ``check`` (the repository check), ``record`` (sidecar verdicts), ``results`` (the
typed report) and ``render`` (its table).
"""

from __future__ import annotations

from deploykit.data import label_items, read_labels_file, take
from deploykit.parity.check import assert_parity, check
from deploykit.parity.compare import as_batch, compare, infer_padded, run_batches
from deploykit.parity.metrics import (
    COLLAPSED_RELATIVE_SPREAD,
    SINGLE_CLASS_RELATIVE_SPREAD,
    VANISHING_LOGITS,
    DegenerateReferenceError,
    Flip,
    NonFiniteOutputError,
    ParityMetrics,
    ReferenceStats,
    ReferenceSummary,
    VariantMetrics,
    check_finite,
    check_reference,
    degenerate_reason,
    image_scales,
    judge,
    relative_margins,
)
from deploykit.parity.record import PARITY_SECTION
from deploykit.parity.reference import (
    RANDOM_INIT,
    exact_fp32,
    recalibrate_batchnorm,
    reference_runner,
)
from deploykit.parity.results import DataSummary, ParityReport, VariantResult
from deploykit.parity.tolerances import (
    DEFAULT_TOLERANCES,
    TOLERANCE_FIELDS,
    Tolerance,
    parse_tolerance_overrides,
    resolve_tolerances,
)

__all__ = [
    "COLLAPSED_RELATIVE_SPREAD",
    "DEFAULT_TOLERANCES",
    "PARITY_SECTION",
    "RANDOM_INIT",
    "SINGLE_CLASS_RELATIVE_SPREAD",
    "TOLERANCE_FIELDS",
    "VANISHING_LOGITS",
    "DataSummary",
    "DegenerateReferenceError",
    "Flip",
    "NonFiniteOutputError",
    "ParityMetrics",
    "ParityReport",
    "ReferenceStats",
    "ReferenceSummary",
    "Tolerance",
    "VariantMetrics",
    "VariantResult",
    "as_batch",
    "assert_parity",
    "check",
    "check_finite",
    "check_reference",
    "compare",
    "degenerate_reason",
    "image_scales",
    "exact_fp32",
    "infer_padded",
    "judge",
    "label_items",
    "parse_tolerance_overrides",
    "read_labels_file",
    "recalibrate_batchnorm",
    "reference_runner",
    "relative_margins",
    "resolve_tolerances",
    "run_batches",
    "take",
]
