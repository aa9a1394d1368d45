"""The README's quick-start test command is what CI runs, and every docs page is linked from it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


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


def test_readme_links_every_docs_page_and_stays_short():
    readme = (ROOT / "README.md").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert f"(docs/{page.name})" in readme, f"README.md does not link docs/{page.name}"
    assert len(readme.splitlines()) <= 220


def test_ci_runs_the_import_contracts():
    assert "lint-imports" in (ROOT / ".ci/run").read_text()
