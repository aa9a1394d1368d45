"""The import contracts of pyproject.toml ([tool.importlinter]) hold.

`.ci/run` runs `lint-imports` on every contract; this test does the same from pytest, and checks
that each contract id is one this file knows, so a contract is never added or dropped silently.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

CONTRACTS = ["zoo-leaf", "commands-private", "runtimes-only", "no-cycles", "pipeline-layers", "precision-no-torch"]


def test_every_contract_is_listed():
    config = (ROOT / "pyproject.toml").read_text().split("[tool.importlinter]", 1)[1]
    assert sorted(re.findall(r'^id = "([^"]+)"', config, flags=re.M)) == sorted(CONTRACTS)


def test_contracts_are_kept():
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (it is in the [dev] extra)")
    proc = subprocess.run([exe, "--no-logo", "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken" in proc.stdout
