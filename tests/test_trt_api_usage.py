"""deploykit uses no TensorRT API that TensorRT 11 removed.

Old scripts keep working on 10.x and break (or silently build FP32 engines) on 11.x, so the
package source is scanned for the removed names. The scan walks the syntax tree (attribute
accesses, names, imports, class bases and getattr-style string lookups), so documentation
that *mentions* ``BuilderFlag.FP16`` in a docstring or comment does not trip it.

Removed APIs: https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-reference.html
"""

from __future__ import annotations

import ast
import re
import textwrap
from pathlib import Path

import pytest

import deploykit

PACKAGE = Path(deploykit.__file__).parent

# BuilderFlag members removed in 11.x (weak typing and implicit quantization)
REMOVED_BUILDER_FLAGS = {
    "FP16", "INT8", "BF16", "FP8", "INT4", "FP4",
    "OBEY_PRECISION_CONSTRAINTS", "PREFER_PRECISION_CONSTRAINTS", "DIRECT_IO",
}
# attributes/methods removed in 11.x, wherever they are accessed
REMOVED_ATTRIBUTES = {
    "int8_calibrator": "IBuilderConfig.int8_calibrator (use Q/DQ nodes)",
    "set_calibration_profile": "IBuilderConfig.set_calibration_profile (use Q/DQ nodes)",
    "get_calibration_profile": "IBuilderConfig.get_calibration_profile (use Q/DQ nodes)",
    "set_quantization_flag": "IBuilderConfig.set_quantization_flag (use Q/DQ nodes)",
    "get_quantization_flag": "IBuilderConfig.get_quantization_flag (use Q/DQ nodes)",
    "clear_quantization_flag": "IBuilderConfig.clear_quantization_flag (use Q/DQ nodes)",
    "quantization_flags": "IBuilderConfig.quantization_flags (use Q/DQ nodes)",
    "device_memory_size": "ICudaEngine.device_memory_size (use device_memory_size_v2)",
    "device_memory_size_for_profile": "ICudaEngine.device_memory_size_for_profile (use the _v2 form)",
    "platform_has_fast_fp16": "Builder.platform_has_fast_fp16 (strong typing decides)",
    "platform_has_fast_int8": "Builder.platform_has_fast_int8 (strong typing decides)",
    "platform_has_tf32": "Builder.platform_has_tf32",
    "OBEY_PRECISION_CONSTRAINTS": "BuilderFlag.OBEY_PRECISION_CONSTRAINTS (strong typing always obeys)",
    "PREFER_PRECISION_CONSTRAINTS": "BuilderFlag.PREFER_PRECISION_CONSTRAINTS",
    # removed earlier (10.0) but still found in copied scripts
    "execute_async_v2": "IExecutionContext.execute_async_v2 (use execute_async_v3)",
    "max_workspace_size": "IBuilderConfig.max_workspace_size (use set_memory_pool_limit)",
    "get_binding_shape": "ICudaEngine.get_binding_shape (use get_tensor_shape)",
    "binding_is_input": "ICudaEngine.binding_is_input (use get_tensor_mode)",
}
CALIBRATOR = re.compile(r"^IInt8\w*Calibrator\w*$|^CalibrationAlgoType$")
_LOOKUPS = {"getattr", "hasattr", "setattr", "delattr"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return "?"


def _looked_up_name(node: ast.AST) -> str | None:
    """``"name"`` for ``getattr(obj, "name")``-style calls, else None."""
    if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _LOOKUPS):
        return None
    if len(node.args) >= 2 and isinstance(node.args[1], ast.Constant) and isinstance(node.args[1].value, str):
        return node.args[1].value
    return None


def find_removed_api_uses(source: str, filename: str = "<source>") -> list[str]:
    """``file:line: what`` for every removed TensorRT API the code touches."""
    found = []

    def hit(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Attribute):
            owner = _dotted(node.value)
            if owner.split(".")[-1] == "BuilderFlag" and node.attr in REMOVED_BUILDER_FLAGS:
                hit(node, f"BuilderFlag.{node.attr}")
            elif node.attr in REMOVED_ATTRIBUTES:
                hit(node, REMOVED_ATTRIBUTES[node.attr])
            elif CALIBRATOR.match(node.attr):
                hit(node, f"{owner}.{node.attr} (implicit INT8 calibration)")
        elif isinstance(node, ast.Name) and CALIBRATOR.match(node.id):
            hit(node, f"{node.id} (implicit INT8 calibration)")
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "tensorrt":
            for alias in node.names:
                if CALIBRATOR.match(alias.name) or alias.name in REMOVED_ATTRIBUTES:
                    hit(node, f"from {node.module} import {alias.name}")
        elif (name := _looked_up_name(node)) is not None:
            # getattr(engine, "device_memory_size") would dodge the attribute check
            if name in REMOVED_ATTRIBUTES or CALIBRATOR.match(name):
                hit(node, f"{node.func.id}(..., {name!r})")
            if name in REMOVED_BUILDER_FLAGS and _dotted(node.args[0]).split(".")[-1] == "BuilderFlag":
                hit(node, f"{node.func.id}(BuilderFlag, {name!r})")
    return found


# ---- the scanner itself can fail ----------------------------------------------------------


@pytest.mark.parametrize(
    "snippet, expected",
    [
        ("config.set_flag(trt.BuilderFlag.FP16)", "BuilderFlag.FP16"),
        ("config.set_flag(tensorrt.BuilderFlag.INT8)", "BuilderFlag.INT8"),
        ("from tensorrt import BuilderFlag\nconfig.set_flag(BuilderFlag.BF16)", "BuilderFlag.BF16"),
        ("config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)", "OBEY_PRECISION_CONSTRAINTS"),
        ("config.int8_calibrator = calibrator", "int8_calibrator"),
        ("class Calib(trt.IInt8EntropyCalibrator2):\n    pass", "IInt8EntropyCalibrator2"),
        ("from tensorrt import IInt8MinMaxCalibrator", "IInt8MinMaxCalibrator"),
        ("n = engine.device_memory_size", "device_memory_size"),
        ("n = getattr(engine, 'device_memory_size')", "getattr(..., 'device_memory_size')"),
        ("if builder.platform_has_fast_fp16: pass", "platform_has_fast_fp16"),
        ("if builder.platform_has_fast_int8: pass", "platform_has_fast_int8"),
        ("context.execute_async_v2(bindings, stream)", "execute_async_v2"),
    ],
)
def test_scanner_flags_removed_apis(snippet, expected):
    uses = find_removed_api_uses(textwrap.dedent(snippet))
    assert uses, f"not flagged: {snippet}"
    assert any(expected in use for use in uses), uses


@pytest.mark.parametrize(
    "snippet",
    [
        'def f():\n    """Never use BuilderFlag.FP16 or engine.device_memory_size here."""',
        "# config.set_flag(trt.BuilderFlag.INT8)  -- removed in 11\nx = 1",
        "n = engine.device_memory_size_v2",
        "flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)",
        "config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, 1 << 30)",
        "dtype = trt.DataType.HALF",  # a DataType member, not a builder flag
        "x = precision.FP16",  # an unrelated FP16 attribute
    ],
)
def test_scanner_ignores_allowed_code_and_prose(snippet):
    assert find_removed_api_uses(snippet) == []


# ---- the package ---------------------------------------------------------------------------


def test_package_sources_are_found():
    files = sorted(PACKAGE.rglob("*.py"))
    names = {f.relative_to(PACKAGE).as_posix() for f in files}
    assert {"tensorrt/build.py", "tensorrt/loading.py", "runtimes/tensorrt_runner.py"} <= names


def test_package_uses_no_api_removed_in_tensorrt_11():
    uses = []
    for path in sorted(PACKAGE.rglob("*.py")):
        uses += find_removed_api_uses(path.read_text(encoding="utf-8"), str(path.relative_to(PACKAGE.parent)))
    assert not uses, "TensorRT 11 removed these APIs:\n" + "\n".join(uses)


def test_tensorrt_calls_stay_in_their_modules():
    """Only tensorrt/loading.py imports tensorrt (the rest stays testable without it)."""
    importers = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            modules = []
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [node.module]
            if any(m.split(".")[0] == "tensorrt" for m in modules):
                importers.append(path.relative_to(PACKAGE).as_posix())
    assert set(importers) <= {"tensorrt/loading.py"}, importers
    assert "tensorrt/loading.py" in importers


def test_only_the_build_module_creates_a_builder():
    """``trt.Builder(...)`` appears in deploykit/tensorrt/build.py and nowhere else."""
    creators = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and _dotted(node.func).endswith(".Builder"):
                creators.append(path.relative_to(PACKAGE).as_posix())
    assert creators == ["tensorrt/build.py"], creators
