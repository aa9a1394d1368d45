"""The README is assembled from docs/ and its quick-start test command is what CI runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_readme_is_built_from_docs():
    proc = subprocess.run([sys.executable, "docs/build_readme.py", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    quick = readme.split("## Quick start", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.strip() for line in quick.strip().splitlines()]
    assert len(commands) == 2, commands  # one to install and run the main job, one to test
    assert "deploykit export" in commands[0]
    ci = (ROOT / ".ci/run").read_text()
    for part in re.split(r"\s*&&\s*", commands[1]):
        part = part.replace("pip install", "python3 -m pip install -q")
        assert part in ci, f"{part!r} is in the README's test command but not in .ci/run"
