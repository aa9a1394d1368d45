"""The matrix: every configuration prepared here and measured in its own worker, with progress."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from deploykit.bench.config import (
    BenchConfig,
    describe_config,
    validate_config,
    with_default_threads,
)
from deploykit.bench.prepare import check_artifact_files, prepare
from deploykit.bench.results import BenchResult, BenchRun
from deploykit.bench.worker import execute_job, finish_result, run_isolated


class _Progress:
    """A rich progress bar on stderr when rich is installed and wanted, else silence or plain lines."""

    def __init__(self, total: int, enabled: bool):
        self.enabled = enabled
        self.total = total
        self.done = 0
        self._progress = None
        if enabled:
            try:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    Progress,
                    TextColumn,
                    TimeElapsedColumn,
                )

                self._progress = Progress(
                    TextColumn("[bold]bench[/] {task.description}"),
                    BarColumn(),
                    MofNCompleteColumn(),
                    TimeElapsedColumn(),
                    console=Console(stderr=True),
                    transient=True,
                )
            except ImportError:
                self._progress = None

    def __enter__(self) -> _Progress:
        if self._progress is not None:
            self._progress.__enter__()
            self._task = self._progress.add_task("", total=self.total)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._progress is not None:
            self._progress.__exit__(*exc)

    def start(self, text: str) -> None:
        if self._progress is not None:
            self._progress.update(self._task, description=text)
        elif self.enabled:
            print(f"[{self.done + 1}/{self.total}] {text}", file=sys.stderr, flush=True)

    def advance(self) -> None:
        self.done += 1
        if self._progress is not None:
            self._progress.advance(self._task)


def measure_config(config: BenchConfig, machine: dict[str, Any], isolate: bool = True) -> BenchResult:
    """One configuration: prepared here, then run in a fresh process (or here, ``isolate=False``)."""
    prepared = prepare(config)
    if isinstance(prepared, BenchResult):
        return prepared
    raw = run_isolated(prepared) if isolate else execute_job(prepared)
    return finish_result(prepared, raw, machine)


def run_matrix(
    configs: Iterable[BenchConfig],
    *,
    isolate: bool = True,
    progress: bool = True,
    machine: dict[str, Any] | None = None,
    on_result: Callable[[BenchResult], None] | None = None,
    notes: Sequence[str] = (),
) -> BenchRun:
    """Measure every configuration; one failure never stops the others.

    ``isolate`` runs each in a fresh process (the default; ``False`` runs them here, one
    after the other: faster, but RSS and thread pools are then shared). ``on_result`` is
    called after each configuration (e.g. to save partial results).
    """
    from deploykit.artifacts import now_iso
    from deploykit.machine import describe_machine

    configs = list(configs)
    for config in configs:
        validate_config(config)
    if machine is None:
        wants_gpu = any(c.device_kind == "cuda" for c in configs)
        machine = describe_machine(probe_torch=wants_gpu).to_dict()
    configs = [with_default_threads(c, machine) for c in configs]
    check_artifact_files(configs)  # a replaced model file is bad input: refused before any timing
    results: list[BenchResult] = []
    with _Progress(len(configs), progress) as bar:
        for config in configs:
            bar.start(describe_config(config))
            result = measure_config(config, machine, isolate)
            results.append(result)
            if on_result is not None:
                on_result(result)
            bar.advance()
    return BenchRun(
        results=tuple(results),
        machine=machine,
        created_at=now_iso(),
        isolate=isolate,
        notes=tuple(notes),
    )
