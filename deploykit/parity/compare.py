"""Comparison as its own layer over runners (Polygraphy's comparator): a reference runner and
any number of variant runners see the same batches; each variant's metrics accumulate batch by
batch and are judged against its :class:`~deploykit.parity.Tolerance`."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from deploykit.errors import UsageError
from deploykit.parity.metrics import (
    REFERENCE_NONFINITE,
    VARIANT_NONFINITE,
    ReferenceStats,
    VariantMetrics,
    check_finite,
    check_reference,
    judge,
)
from deploykit.parity.results import DataSummary, ParityReport, VariantResult
from deploykit.parity.tolerances import DEFAULT_TOLERANCES, Tolerance

if TYPE_CHECKING:
    from deploykit.data import Batch
    from deploykit.runtimes.base import Runner


def infer_padded(runner: Runner, array: np.ndarray) -> np.ndarray:
    """``runner.infer`` that also serves models with a static batch size: the batch is cut
    into pieces of that size and the last piece padded by repeating its last image (the
    padding rows are dropped from the result)."""
    spec = runner.input_spec()
    fixed = spec.shape[0] if spec.shape and spec.shape[0] > 0 else None
    if fixed is None or fixed == len(array):
        return runner.infer(array)
    outs = []
    for start in range(0, len(array), fixed):
        piece = array[start : start + fixed]
        real = len(piece)
        if real < fixed:
            piece = np.concatenate([piece, np.repeat(piece[-1:], fixed - real, axis=0)])
        outs.append(runner.infer(piece)[:real])
    return np.concatenate(outs)


def as_batch(item: Any, index: int) -> Batch:
    """Accept data.Batch, an N x C x H x W array, or an ``(array, labels)`` pair."""
    from deploykit.data import Batch

    if isinstance(item, Batch):
        return item
    labels = None
    if isinstance(item, tuple) and len(item) == 2:
        item, labels = item
    array = np.asarray(item, dtype=np.float32)
    if array.ndim != 4:
        raise UsageError(f"batch {index} has shape {array.shape}; expected N x C x H x W")
    names = tuple(f"batch{index}[{i}]" for i in range(len(array)))
    return Batch(array=array, labels=None if labels is None else np.asarray(labels, np.int64), names=names)


@contextlib.contextmanager
def _progress(enabled: bool, total: int | None, description: str) -> Iterator[Any]:
    """A rich progress bar on stderr (or a no-op): yields ``advance(n)``."""
    if not enabled:
        yield lambda n: None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


@dataclass
class Run:
    """What one pass over the data produced."""

    accumulators: dict[str, VariantMetrics]
    reference: ReferenceStats
    images: int
    labeled: bool
    sha256: str


class _Digest:
    """One hash per stream (names, inputs, labels), so the digest does not depend on where batches are cut."""

    def __init__(self) -> None:
        self.parts = {part: hashlib.sha256() for part in ("names", "inputs", "labels")}
        self.labeled = True

    def update(self, batch: Batch) -> None:
        self.parts["names"].update("".join(f"{name}\n" for name in batch.names).encode())
        self.parts["inputs"].update(np.ascontiguousarray(batch.array, dtype=np.float32).tobytes())
        if batch.labels is None:
            self.labeled = False
        else:
            self.parts["labels"].update(batch.labels.astype(np.int64).tobytes())

    def hexdigest(self) -> str:
        return hashlib.sha256(b"".join(d.digest() for d in self.parts.values())).hexdigest()


def run_batches(
    reference: Runner,
    variants: Mapping[str, Runner],
    batches: Iterable[Any],
    max_flips: int = 10,
    progress: bool = False,
    total: int | None = None,
) -> Run:
    """Run the reference and every variant on each batch, accumulating metrics.

    NaN/inf logits from either side are a :class:`NonFiniteOutputError` (bad input, exit 2)
    naming the side, the reference checked first: no tolerance can judge them."""
    accumulators = {name: VariantMetrics(max_flips) for name in variants}
    stats = ReferenceStats()
    digest = _Digest()
    images = 0
    with _progress(progress, total, "parity") as advance:
        for index, raw in enumerate(batches):
            batch = as_batch(raw, index)
            digest.update(batch)
            ref = infer_padded(reference, batch.array)
            check_finite(ref, f"the reference {reference.name}", REFERENCE_NONFINITE, batch.names)
            stats.update(ref)
            for name, runner in variants.items():
                out = infer_padded(runner, batch.array)
                check_finite(out, f"the variant {name}", VARIANT_NONFINITE, batch.names)
                accumulators[name].update(ref, out, batch.labels, batch.names)
            images += len(batch)
            advance(len(batch))
    if images == 0:
        raise UsageError("no images to compare", hint="pass a folder with images (--data DIR)")
    if not digest.labeled:
        for acc in accumulators.values():
            acc.drop_labels()
    return Run(accumulators, stats, images, digest.labeled, digest.hexdigest())


def data_notes(images: int, labeled: bool) -> tuple[str, ...]:
    notes = []
    if images < 2:
        notes.append("one image cannot show whether the reference's outputs depend on its input")
    if images < 100:
        notes.append(f"{images} images make a smoke test: agreement over a real validation set is the check that counts")
    if not labeled:
        notes.append("no labels: accuracy not measured (ImageFolder layout or --labels FILE)")
    return tuple(notes)


def _activated(stack: contextlib.ExitStack, runner: Runner) -> Runner:
    if not runner.is_active:
        stack.enter_context(runner)
    return runner


def compare(
    reference: Runner,
    variants: Mapping[str, Runner] | Sequence[Runner],
    batches: Iterable[Batch | np.ndarray | tuple[np.ndarray, np.ndarray | None]],
    tolerances: Tolerance | Mapping[str, Tolerance] | None = None,
    *,
    max_flips: int = 10,
    progress: bool = False,
    total: int | None = None,
    model: str | None = None,
    source: str = "batches",
) -> ParityReport:
    """Run ``reference`` and every variant on the same ``batches`` and judge each variant.

    ``variants`` maps a display name to a runner (a sequence uses ``runner.name``).
    ``batches`` are :class:`deploykit.data.Batch` objects, N x C x H x W float32 arrays, or
    ``(array, labels)`` pairs; they are consumed once, in order. ``tolerances`` is one
    :class:`Tolerance` for all, or one per variant name; by default the FP32 tolerance
    (lower-precision variants should say so). Runners not yet active are activated and
    deactivated here. Raises :class:`DegenerateReferenceError` when the reference's outputs
    do not depend on the input. For a CUDA torch reference, call it inside
    :func:`exact_fp32` (``check`` does) so TF32 rounding is not blamed on the variants.
    """
    if not isinstance(variants, Mapping):
        variants = {runner.name: runner for runner in variants}
    if not variants:
        raise UsageError("no variants to compare")
    with contextlib.ExitStack() as stack:
        _activated(stack, reference)
        for runner in variants.values():
            _activated(stack, runner)
        run = run_batches(reference, dict(variants), batches, max_flips, progress, total)
    summary = run.reference.summary(reference.name, reference.describe())
    check_reference(summary)
    results = []
    for name, acc in run.accumulators.items():
        tol = tolerances if isinstance(tolerances, Tolerance) else (tolerances or {}).get(name, DEFAULT_TOLERANCES["fp32"])
        metrics = acc.metrics()
        failures = judge(metrics, tol)
        backend = getattr(variants[name], "backend", None)
        status = "fail" if failures else "pass"
        results.append(VariantResult(name, backend, None, status, metrics=metrics, tolerance=tol, failures=failures))
    data = DataSummary(source=source, images=run.images, labeled=run.labeled, sha256=run.sha256)
    notes = data_notes(run.images, run.labeled)
    return ParityReport(model=model, reference=summary, data=data, results=tuple(results), notes=notes)
