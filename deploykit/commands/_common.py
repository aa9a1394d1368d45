"""Options and helpers shared by the subcommands (click only: nothing heavy at import)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from deploykit.errors import UsageError


def format_option(*choices: str, default: str = "table"):
    return click.option(
        "--format",
        "fmt",
        type=click.Choice(list(choices)),
        default=default,
        show_default=True,
        help="Output format.",
    )


def repo_option(default: str = "models"):
    return click.option(
        "--repo",
        type=click.Path(file_okay=False),
        default=default,
        show_default=True,
        help="The model repository (Triton layout).",
    )


def trust_option(what: str):
    """``--trust``: use ``what`` even if it is not the file its sidecar hashed (see ``check_model_file``)."""
    return click.option(
        "--trust",
        is_flag=True,
        help=f"Use {what} even if it is not the one its sidecar hashed (the real hash is recorded).",
    )


def split_list(value: str | None, valid: tuple[str, ...] | list[str] | None = None, what: str = "value") -> list[str]:
    """'fp32,int8' -> ['fp32', 'int8'], each checked against ``valid``."""
    items = [v.strip() for v in (value or "").split(",") if v.strip()]
    if valid is not None:
        bad = [v for v in items if v not in valid]
        if bad:
            raise UsageError(f"unknown {what} {', '.join(map(repr, bad))}", hint=f"choose from {', '.join(valid)}")
    return items


def split_ints(value: str | None, what: str = "batch size", low: int = 1, high: int = 4096) -> list[int]:
    out = []
    for item in split_list(value):
        try:
            n = int(item)
        except ValueError:
            raise UsageError(f"{what} {item!r} is not an integer") from None
        if not low <= n <= high:
            raise UsageError(f"{what} {n} is out of range", hint=f"use {low}..{high}")
        out.append(n)
    return out


def echo_json(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, default=str))


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=False)


@contextmanager
def remove_if_left_empty(folder: str | os.PathLike) -> Iterator[None]:
    """On failure, remove ``folder`` again when this block created it and left it empty, so a
    failed command does not leave an empty output folder behind."""
    path = Path(folder)
    existed = path.exists()
    try:
        yield
    except BaseException:
        if not existed and path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        raise
