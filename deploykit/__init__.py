"""deploykit: the classic CNN architectures from PyTorch to production, measured at every step.

Importing the package is cheap: the library functions below load torch, onnx and the
runtimes only when called.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (loaded on first access)
_LAZY = {
    "get_model": "deploykit.zoo",
    "list_models": "deploykit.zoo",
    "get_card": "deploykit.zoo",
    "analyze_model": "deploykit.analyze",
    "export_onnx": "deploykit.export",
    "export_model": "deploykit.export",
    "export_module": "deploykit.export",
    "import_onnx": "deploykit.export",
    "get_runner": "deploykit.runtimes",
    "ModelRepository": "deploykit.repository",
    "Artifact": "deploykit.artifacts",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'deploykit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = list(_LAZY)
