"""The ``deploykit`` console script.

It imports the CLI inside a handler, so Ctrl+C while the CLI's modules load (the first
tenth of a second) ends the run with 130 and no traceback, as Ctrl+C does later on.
"""

from __future__ import annotations

import sys


def main() -> None:
    try:
        from deploykit.cli import main as run
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    run()
