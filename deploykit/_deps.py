"""Optional dependencies: checked without importing them, imported only when used."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from deploykit.errors import MissingDependencyError

# module -> the extra that installs it
EXTRAS = {
    "onnx": "onnx",
    "onnxscript": "onnx",
    "onnxslim": "onnx",
    "onnxruntime": "onnx",
    "skimage": "onnx",
    "PIL": "onnx",
    "modelopt": "int8",
    "onnx_graphsurgeon": "int8",
    "openvino": "openvino",
    "matplotlib": "plot",
    "tritonclient": "serve",
    "requests": "serve",
    "tensorrt": "gpu",
}


def is_available(module: str) -> bool:
    """True when ``module`` can be imported; does not import it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require(module: str, purpose: str = "", extra: str | None = None) -> ModuleType:
    """Import an optional dependency or raise an error that names the extra to install."""
    if not is_available(module):
        raise MissingDependencyError(module, extra or EXTRAS.get(module.split(".")[0], "dev"), purpose)
    return importlib.import_module(module)
