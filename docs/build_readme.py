"""Assemble README.md from docs/README.head.md and the per-topic pages in docs/.

The topic pages are the source; the README carries them whole, one heading level down, so
the README documents every feature and the pages stay readable alone. Run after editing docs:

    python3 docs/build_readme.py
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ORDER = ["zoo", "analyze", "export", "precision", "tensorrt", "bench", "parity", "serve"]


def demote(text: str) -> str:
    """Push every Markdown heading one level down, leaving code blocks alone."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        if not fenced and line.startswith("#"):
            line = "#" + line
        out.append(line)
    return "\n".join(out).rstrip() + "\n"


def build() -> str:
    parts = [(DOCS / "README.head.md").read_text().rstrip() + "\n"]
    for name in ORDER:
        parts.append(f"\n<!-- generated from docs/{name}.md by docs/build_readme.py: edit that file -->\n")
        parts.append(demote((DOCS / f"{name}.md").read_text()))
    tail = DOCS / "README.tail.md"
    if tail.exists():
        parts.append("\n" + tail.read_text().rstrip() + "\n")
    return "".join(parts)


if __name__ == "__main__":
    readme = DOCS.parent / "README.md"
    text = build()
    if "--check" in sys.argv:
        sys.exit(0 if readme.read_text() == text else "README.md is out of date: run python3 docs/build_readme.py")
    readme.write_text(text)
    print(f"wrote {readme} ({len(text.splitlines())} lines)")
