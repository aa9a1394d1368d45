"""PyTorch -> verified ONNX in the model repository.

- ``exporter``: :func:`export_onnx`, any ``nn.Module`` to a checked ONNX file (the only caller
  of ``torch.onnx`` in deploykit).
- ``verify``: :func:`verify_onnx` / :func:`compare_logits`, ONNX Runtime against PyTorch through
  parity's comparison with export's own tolerance row.
- ``job``: :func:`export_model` / :func:`export_models`, the whole ``deploykit export`` job:
  build or load, export, verify, write ``<repo>/<name>_onnx_fp32/`` atomically with its Triton
  config and lineage sidecar.
- ``module``: :func:`export_module` / :func:`export_factory`, any ``nn.Module`` through the same job.
- ``onnx_import``: :func:`import_onnx`, an ONNX classifier from elsewhere, checked and written.
- ``render``: the command's tables.
"""

from __future__ import annotations

from deploykit.export.exporter import (
    DEFAULT_OPSET,
    EXPORTER,
    OnnxExport,
    export_onnx,
    exporter_versions,
)
from deploykit.export.job import (
    DEFAULT_MAX_BATCH_SIZE,
    VERIFY_IMAGES,
    ExportBatch,
    ExportFailure,
    ExportResult,
    export_model,
    export_models,
    export_variant,
    imagenet_labels,
)
from deploykit.export.module import export_factory, export_module
from deploykit.export.onnx_import import ImportResult, import_onnx
from deploykit.export.verify import (
    DEFAULT_TOLERANCE,
    VERIFY_BATCH,
    Parity,
    compare_logits,
    verify_onnx,
)

__all__ = [
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_OPSET",
    "DEFAULT_TOLERANCE",
    "EXPORTER",
    "VERIFY_BATCH",
    "VERIFY_IMAGES",
    "ExportBatch",
    "ExportFailure",
    "ExportResult",
    "ImportResult",
    "OnnxExport",
    "Parity",
    "compare_logits",
    "export_model",
    "export_models",
    "export_factory",
    "export_module",
    "export_onnx",
    "export_variant",
    "exporter_versions",
    "imagenet_labels",
    "import_onnx",
    "verify_onnx",
]
