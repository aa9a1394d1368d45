"""The shape the architecture issue (#11) asks of deploykit/: short functions, no repeated blocks.

- No function over MAX_LINES lines (``def`` to its last line, docstring included), except
  pure data tables (a body that only builds and returns literals).
- No block of MIN_SIMILAR or more lines repeated inside deploykit/ (pylint's duplicate-code
  check, R0801, ignoring imports, comments, docstrings and signatures), except the zoo's
  one-row builders.

Each has an allowlist of today's offenders. The lead trims it as refactors land: a test fails
when an allowlisted entry no longer offends, so the lists only shrink.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "deploykit"
MAX_LINES = 60
MIN_SIMILAR = 6

# "path::function" (methods "path::Class.method", nested "path::outer.inner") over MAX_LINES.
ALLOWLIST: set[str] = set()

# Repeated blocks allowed for now: "module + module" (sorted) -> how many such blocks.
DUPLICATE_BASELINE: dict[str, int] = {}

_DATA_NODES = (
    ast.Return, ast.Assign, ast.AnnAssign, ast.Expr, ast.Constant, ast.Dict, ast.List,
    ast.Tuple, ast.Set, ast.Name, ast.Attribute, ast.Call, ast.keyword, ast.Load, ast.Store,
    ast.UnaryOp, ast.USub, ast.Starred,
)  # fmt: skip


def _is_data_table(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A body that only assigns and returns literals (or rows built from literals)."""
    return all(isinstance(node, _DATA_NODES) for stmt in fn.body for node in ast.walk(stmt))


def _functions(tree: ast.AST, prefix: str = ""):
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield f"{prefix}{node.name}", node
            yield from _functions(node, f"{prefix}{node.name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def long_functions() -> dict[str, int]:
    """Every function in deploykit/ over MAX_LINES lines that is not a data table: key -> lines."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for name, fn in _functions(ast.parse(path.read_text(), filename=rel)):
            lines = fn.end_lineno - fn.lineno + 1
            if lines > MAX_LINES and not _is_data_table(fn):
                found[f"{rel}::{name}"] = lines
    return found


def test_no_function_over_the_limit_but_the_allowlisted():
    found = long_functions()
    new = {k: v for k, v in found.items() if k not in ALLOWLIST}
    assert not new, f"functions over {MAX_LINES} lines (split them): {new}"


def test_allowlist_only_shrinks():
    stale = sorted(ALLOWLIST - set(long_functions()))
    assert not stale, f"these are {MAX_LINES} lines or fewer now (or gone): remove them from ALLOWLIST: {stale}"


def test_the_length_check_sees_long_functions_and_spares_data_tables():
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_LINES))
    long_fn = ast.parse(f"def f():\n{body}\n    return x0 + 1\n").body[0]
    table = ast.parse("def rows():\n    return [\n" + "        ('a', 1),\n" * 80 + "    ]\n").body[0]
    assert not _is_data_table(long_fn)  # x0 + 1 is computation
    assert _is_data_table(table)
    assert [name for name, _ in _functions(ast.parse("class A:\n    def m(self):\n        def g(): pass\n"))] == [
        "A.m", "A.m.g",
    ]  # fmt: skip


def duplicate_blocks() -> Counter:
    """pylint's duplicate-code report over deploykit/: Counter of "module + module" keys."""
    proc = subprocess.run(
        [sys.executable, "-m", "pylint", "--disable=all", "--enable=duplicate-code",
         f"--min-similarity-lines={MIN_SIMILAR}", "--ignore-imports=y", "--ignore-comments=y",
         "--ignore-docstrings=y", "--ignore-signatures=y", "--score=n", "deploykit"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if "No module named pylint" in proc.stderr:
        pytest.skip("pylint is not installed (it is in the [dev] extra)")
    blocks = Counter()
    for report in proc.stdout.split("R0801: Similar lines in ")[1:]:
        modules = sorted(set(re.findall(r"^==([\w.]+):\[\d+:\d+\]", report, flags=re.M)))
        in_zoo = all(m.startswith("deploykit.zoo.") for m in modules)
        if in_zoo and "register_model" in report:
            continue  # the zoo's one-row builders: a decorator row and a one-line body each
        blocks[" + ".join(modules)] += 1
    return blocks


@pytest.mark.slow
def test_no_repeated_blocks_but_the_baseline():
    blocks = duplicate_blocks()
    grown = {k: n for k, n in blocks.items() if n > DUPLICATE_BASELINE.get(k, 0)}
    assert not grown, (
        f"blocks of {MIN_SIMILAR}+ lines repeated (run pylint --enable=duplicate-code to see them): {grown}"
    )
    shrunk = {k: n for k, n in DUPLICATE_BASELINE.items() if blocks.get(k, 0) < n}
    assert not shrunk, f"fewer repeated blocks now: lower DUPLICATE_BASELINE to {dict(blocks)}"


# Only the TensorRT build module creates a Builder (import contracts cannot say this: every
# TensorRT module imports tensorrt).
BUILDER_MODULES = {"deploykit/tensorrt/build.py"}
_BUILDER_CALLS = {"Builder", "create_builder", "create_inference_builder"}


def builder_calls() -> dict[str, list[int]]:
    """deploykit/ file -> lines that call ``*.Builder(...)`` or a ``create_builder``-style factory."""
    found: dict[str, list[int]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), filename=rel)):
            if isinstance(node, ast.Call):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                if name in _BUILDER_CALLS:
                    found.setdefault(rel, []).append(node.lineno)
    return found


def test_only_the_tensorrt_build_module_creates_a_builder():
    found = builder_calls()
    outside = {path: lines for path, lines in found.items() if path not in BUILDER_MODULES}
    assert not outside, f"a TensorRT Builder is created outside {sorted(BUILDER_MODULES)}: {outside}"
    assert set(found) & BUILDER_MODULES, "the check found no Builder at all: is it still looking?"
