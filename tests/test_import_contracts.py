"""The import contracts of pyproject.toml ([tool.importlinter]) hold.

ENFORCED contracts must be kept; `.ci/run` checks them with `lint-imports`. PENDING ones are
written down but still broken on main while the refactors of the architecture issue land:
each test below fails once a pending contract holds, so the lead moves it to ENFORCED and the
pending list only shrinks. Run as a script, this file prints the `--contract` arguments
`.ci/run` passes to `lint-imports`.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

ENFORCED = ["zoo-leaf", "commands-private", "runtimes-only", "no-cycles", "pipeline-layers", "precision-no-torch"]
# id -> what still breaks it (the refactor that makes it hold).
PENDING: dict[str, str] = {}


def contract_args(ids) -> list[str]:
    return [arg for cid in ids for arg in ("--contract", cid)]


def _lint(ids) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports")
    if exe is None:
        pytest.skip("import-linter is not installed (it is in the [dev] extra)")
    return subprocess.run(
        [exe, "--no-logo", "--no-cache", *contract_args(ids)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )


def test_every_contract_is_enforced_or_pending():
    config = (ROOT / "pyproject.toml").read_text().split("[tool.importlinter]", 1)[1]
    ids = re.findall(r'^id = "([^"]+)"', config, flags=re.M)
    assert sorted(ids) == sorted([*ENFORCED, *PENDING])
    assert not set(ENFORCED) & set(PENDING)


def test_enforced_contracts_are_kept():
    proc = _lint(ENFORCED)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.parametrize("contract", sorted(PENDING))
def test_pending_contract_is_still_broken(contract):
    proc = _lint([contract])
    assert proc.returncode != 0, (
        f"contract {contract!r} holds now: move it from PENDING to ENFORCED in {Path(__file__).name}"
    )


if __name__ == "__main__":
    sys.stdout.write(" ".join(contract_args(ENFORCED)) + "\n")
