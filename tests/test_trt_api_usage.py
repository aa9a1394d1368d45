"""deploykit uses no TensorRT API that a newer release removed.

Old scripts keep working on 10.x and break (or silently build FP32 engines) on 11.x, so the
package source is scanned for the removed names. Which names those are comes from the real
bindings: every class, enum value, function and member that some snapshotted release has
(tests/data/trt_api/, 8.6 to the newest) and the newest release does not (tests/trt_api.py,
``removed()``). The scan walks the syntax tree (attribute accesses, names, imports, class bases
and getattr-style string lookups), so documentation that *mentions* ``BuilderFlag.FP16`` in a
docstring or comment does not trip it.

This scan reads every module, with no types: a removed member is flagged by its name alone when
the name is distinctive (``int8_calibrator``, ``device_memory_size``); a plain word such as
``precision`` (``ILayer.precision``, gone in 11.x) is left to tests/test_trt_bindings.py, which
follows TensorRT types through the TensorRT modules and checks every access in every release.

Removed APIs: https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-reference.html
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest
import trt_api

import deploykit

PACKAGE = Path(deploykit.__file__).parent

REMOVED = trt_api.removed()
# member name -> where it lived, for names specific enough to flag wherever they are accessed
REMOVED_ATTRIBUTES = {name: where for name, where in REMOVED.members.items() if trt_api.is_distinctive(name)}
REMOVED_NAMES = {**REMOVED.classes, **REMOVED.functions}  # classes, enums and functions that are gone
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


def _removed_enum_value(owner: str, name: str) -> str | None:
    """``BuilderFlag.FP16`` -> its description when ``owner`` ends with an enum that lost ``name``."""
    return REMOVED.enum_values.get(owner.split(".")[-1], {}).get(name)


def _removed_name(name: str) -> str | None:
    return REMOVED_ATTRIBUTES.get(name) or REMOVED_NAMES.get(name)


def find_removed_api_uses(source: str, filename: str = "<source>") -> list[str]:
    """``file:line: what`` for every removed TensorRT API the code touches."""
    found = []

    def hit(node: ast.AST, what: str) -> None:
        found.append(f"{filename}:{getattr(node, 'lineno', '?')}: {what}")

    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Attribute):
            what = _removed_enum_value(_dotted(node.value), node.attr) or _removed_name(node.attr)
            if what is not None:
                hit(node, what)
        elif isinstance(node, ast.Name) and node.id in REMOVED_NAMES:
            hit(node, REMOVED_NAMES[node.id])
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in trt_api.TRT_MODULES:
            for alias in node.names:
                if (what := _removed_name(alias.name)) is not None:
                    hit(node, f"from {node.module} import {alias.name}: {what}")
        elif (name := _looked_up_name(node)) is not None:
            # getattr(engine, "device_memory_size") would dodge the attribute check
            if (what := _removed_name(name)) is not None:
                hit(node, f"{node.func.id}(..., {name!r}): {what}")
            if (what := _removed_enum_value(_dotted(node.args[0]), name)) is not None:
                hit(node, f"{node.func.id}(..., {name!r}): {what}")
    return found


def test_removed_names_come_from_the_snapshots():
    """What the migration guide lists, as the bindings themselves tell it (and DIRECT_IO stays)."""
    assert {"FP16", "INT8", "BF16", "OBEY_PRECISION_CONSTRAINTS"} <= set(REMOVED.enum_values["BuilderFlag"])
    assert "DIRECT_IO" not in REMOVED.enum_values["BuilderFlag"]
    assert "EXPLICIT_BATCH" in REMOVED.enum_values["NetworkDefinitionCreationFlag"]
    assert {"CUBLAS", "CUDNN"} <= set(REMOVED.enum_values["TacticSource"])
    for member in (
        "create_execution_context_without_device_memory",
        "get_device_memory_size_for_profile",
        "set_output_type",
        "algorithm_selector",
        "weight_streaming_budget",
        "int8_calibrator",
        "device_memory_size",
        "execute_async_v2",  # gone since 10.0 (the 8.6 snapshot has it)
    ):
        assert member in REMOVED_ATTRIBUTES, member
    assert {"IInt8EntropyCalibrator2", "IAlgorithmSelector", "CalibrationAlgoType"} <= set(REMOVED_NAMES)
    assert "device_memory_size_v2" not in REMOVED.members


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
        ("flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)", "EXPLICIT_BATCH"),
        ("ctx = engine.create_execution_context_without_device_memory()", "create_execution_context_without_device_memory"),
        ("n = engine.get_device_memory_size_for_profile(0)", "get_device_memory_size_for_profile"),
        ("layer.set_output_type(0, trt.float16)", "set_output_type"),
        ("config.algorithm_selector = selector", "algorithm_selector"),
        ("sources = 1 << int(trt.TacticSource.CUBLAS)", "TacticSource.CUBLAS"),
        ("sources = 1 << int(trt.TacticSource.CUDNN)", "TacticSource.CUDNN"),
        ("engine.weight_streaming_budget = 1 << 30", "weight_streaming_budget"),
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
        "config.set_flag(trt.BuilderFlag.DIRECT_IO)",  # still in 11.x
        "engine.weight_streaming_budget_v2 = 1 << 30",
        "x = record.precision",  # a plain word: left to the typed check of test_trt_bindings.py
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
