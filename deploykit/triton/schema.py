"""Triton's ``ModelConfig`` protobuf message, as ``tritonclient`` ships it.

``tritonclient/grpc/model_config_pb2.py`` is generated from Triton's ``model_config.proto`` and
needs only protobuf. It is loaded by path: ``import tritonclient.grpc`` would import grpc too,
which reading a config does not need. Imported on first use only.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from deploykit.errors import MissingDependencyError

_PB2 = "tritonclient.grpc.model_config_pb2"


def _find_pb2() -> Path | None:
    try:
        if importlib.util.find_spec("google.protobuf") is None:
            return None
        spec = importlib.util.find_spec("tritonclient")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    return path if path.is_file() else None


def _load_pb2() -> ModuleType | None:
    if _PB2 in sys.modules:
        return sys.modules[_PB2]
    path = _find_pb2()
    if path is None:
        return None
    # Registered under its real name so a later `import tritonclient.grpc` reuses it
    # (protobuf refuses to register the same .proto file twice).
    module_spec = importlib.util.spec_from_file_location(_PB2, path)
    module = importlib.util.module_from_spec(module_spec)
    try:
        module_spec.loader.exec_module(module)
    except Exception:  # an incompatible protobuf runtime: treated as not installed
        return None
    sys.modules[_PB2] = module
    return module


def schema_available() -> bool:
    return _load_pb2() is not None


def model_config_pb2(purpose: str = "reading and writing Triton's config.pbtxt") -> ModuleType:
    """The generated module (``ModelConfig``, ``DataType``, ``ModelInstanceGroup``, ...)."""
    module = _load_pb2()
    if module is None:
        raise MissingDependencyError("tritonclient", "onnx", purpose)
    return module
