"""Importing deploykit and every --help work without the heavy optional dependencies."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from deploykit.cli import COMMANDS

HEAVY = ["torch", "torchvision", "onnx", "onnxruntime", "onnxscript", "openvino", "tensorrt",
         "modelopt", "tritonclient", "matplotlib", "skimage", "pytriton"]

# A meta-path finder that makes the heavy modules unimportable, as on a core-only install.
_BLOCKER = textwrap.dedent(
    """
    import sys, importlib.abc
    BLOCKED = set({blocked!r})
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked for the test: {{name}}")
            return None
    sys.meta_path.insert(0, Blocker())
    """
)


def _run(code: str) -> subprocess.CompletedProcess:
    script = _BLOCKER.format(blocked=HEAVY) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)


def test_import_loads_no_heavy_module():
    proc = _run(
        """
        import deploykit, deploykit.cli, deploykit.runtimes, deploykit.repository
        loaded = [m for m in {heavy!r} if m in sys.modules]
        assert not loaded, loaded
        print("ok")
        """.format(heavy=HEAVY)  # noqa: UP032 (the code's own braces would need doubling)
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_help_works_without_heavy_modules(command):
    args = ["--help"] if command is None else [command, "--help"]
    proc = _run(
        f"""
        import sys
        from deploykit.cli import cli
        try:
            cli.main(args={args!r}, prog_name="deploykit", standalone_mode=False)
        except SystemExit as e:
            assert not e.code, e.code
        loaded = [m for m in {HEAVY!r} if m in sys.modules]
        assert not loaded, loaded
        """
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "Usage:" in proc.stdout


def test_missing_backend_names_the_extra():
    proc = _run(
        """
        from deploykit.runtimes import backend_unavailable_reason
        print(backend_unavailable_reason("tensorrt"))
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert "deploykit[gpu]" in proc.stdout
