"""``deploykit parity NAME``: a model's variants in the repository against the PyTorch FP32
reference, on each backend, with verdicts written into each variant's sidecar."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploykit.artifacts import PRECISIONS, Artifact, now_iso, variant_name
from deploykit.errors import DeployKitError, MissingDependencyError, UsageError
from deploykit.parity.compare import Run, data_notes, run_batches
from deploykit.parity.metrics import ReferenceSummary, check_reference, judge
from deploykit.parity.record import check_recordable, sidecar_key, try_record
from deploykit.parity.reference import (
    exact_fp32,
    onnx_reference,
    reference_module,
    reference_runner,
)
from deploykit.parity.results import DataSummary, ParityReport, VariantResult
from deploykit.parity.tolerances import Tolerance, resolve_tolerances

if TYPE_CHECKING:
    from torch import nn

    from deploykit.runtimes.base import Runner
    from deploykit.zoo import Preprocessing


def _format_for(backend: str) -> str:
    from deploykit.runtimes import get_backend

    return get_backend(backend).format or "onnx"


def _skip_reason(backend: str) -> str | None:
    """Why ``backend`` cannot run here (not installed; a GPU-only backend without a GPU), or None."""
    from deploykit.runtimes import get_backend

    row = get_backend(backend)
    reason = row.unavailable_reason()
    if reason is None and "cpu" not in row.device_kinds:
        import torch

        if not torch.cuda.is_available():
            reason = f"no CUDA GPU is visible ({backend} runs on a GPU)"
    return reason


@dataclass(frozen=True)
class _Planned:
    model: str
    backend: str
    precision: str  # "*" when a skipped backend had no precision to look for
    artifact: Artifact | None
    skip: str | None
    broken: str | None = None  # the variant's sidecar is missing or corrupt: an error, never a pass
    sha256: str | None = None  # the file's hash as checked (with --trust it may differ from the sidecar's)

    @property
    def name(self) -> str:
        """``<variant>@<backend>``: one file can be checked on several backends."""
        return f"{variant_name(self.model, _format_for(self.backend), self.precision)}@{self.backend}"

    def skipped(self) -> VariantResult:
        status, reason = ("error", self.broken) if self.broken else ("skipped", self.skip)
        return VariantResult(name=self.name, backend=self.backend, precision=self.precision, status=status, reason=reason)


def _plan(repo: Any, model: str, backends: Sequence[str], precisions: Sequence[str] | None) -> list[_Planned]:
    from deploykit.pipeline import make_command
    from deploykit.repository import validate_precision
    from deploykit.runtimes import check_backend

    plan: list[_Planned] = []
    for backend in backends:
        check_backend(backend)
        fmt = _format_for(backend)
        wanted = list(precisions) if precisions else _present(repo, model, fmt)
        for p in wanted:
            validate_precision(p)
        skip = _skip_reason(backend)
        if not wanted and not skip:
            raise UsageError(
                f"no {fmt} variant of {model} in the repository {repo.root}",
                hint=f"make one with `{make_command(model, fmt, 'fp32')} --repo {repo.root}`",
            )
        for precision in wanted or ["*"]:
            plan.append(_planned(repo, model, backend, fmt, precision, skip))
    return plan


def _present(repo: Any, model: str, fmt: str) -> list[str]:
    """The precisions of ``model``'s ``fmt`` variants in ``repo``, broken ones (no readable sidecar) included."""
    from deploykit.repository import BrokenVariantError

    present = []
    for precision in PRECISIONS:
        try:
            found = repo.find(model, fmt, precision) is not None
        except BrokenVariantError:
            found = True  # planned, and reported as an error: never silently left out
        if found:
            present.append(precision)
    return present


def _planned(repo: Any, model: str, backend: str, fmt: str, precision: str, skip: str | None) -> _Planned:
    from deploykit.repository import BrokenVariantError

    if skip:
        return _Planned(model, backend, precision, None, skip)
    try:
        return _Planned(model, backend, precision, repo.get(model, fmt, precision), None)
    except BrokenVariantError as exc:
        return _Planned(model, backend, precision, None, None, broken=f"{exc.message} (hint: {exc.hint})")


def _items(data: str | os.PathLike | None, labels: Any, limit: int | None, classes: int) -> tuple[list[Any], str, list[str]]:
    """The images to compare on (sample photos, or a folder with its labels), their source, notes."""
    from deploykit import data as datalib

    if data is None:
        if labels is not None:
            raise UsageError("--labels needs --data: the sample photos have no labels")
        items: list[Any] = datalib.sample_images()
        return (items[:limit] if limit else items), "sample photos (scikit-image)", []
    root = Path(data)
    found, notes = datalib.label_items(datalib.list_images(root), root, classes, labels)
    return datalib.take(found, limit), str(root), notes


def _open_runners(stack: contextlib.ExitStack, runnable: list[_Planned]) -> tuple[dict[str, Runner], list[VariantResult]]:
    """A runner per planned variant; one that cannot start is skipped (missing package) or an error."""
    from deploykit.runtimes import get_runner

    runners: dict[str, Runner] = {}
    results: list[VariantResult] = []
    for p in runnable:
        try:
            runners[p.name] = stack.enter_context(get_runner(p.backend, p.artifact))
        except MissingDependencyError as exc:
            results.append(VariantResult(p.name, p.backend, p.precision, "skipped", reason=exc.message))
        except DeployKitError as exc:
            results.append(VariantResult(p.name, p.backend, p.precision, "error", reason=exc.message, path=str(p.artifact.path)))
    return runners, results


def _preprocessing(artifact: Artifact, size: int, resize: int | None) -> Preprocessing:
    if (pre := artifact.preprocessing) is None:
        from deploykit.zoo import get_card

        pre = get_card(artifact.model).preprocessing
    pre = replace(pre, crop=size, resize=resize or (pre.resize if pre.crop == size else round(size * pre.resize / pre.crop)))
    if pre.resize < pre.crop:
        raise UsageError(f"--resize {pre.resize} is smaller than the input size {pre.crop}")
    return pre


def _input_size(runners: Mapping[str, Runner], artifact: Artifact) -> int:
    """The square input size all variants take (static H = W in the ONNX input, else the sidecar)."""
    sizes = set()
    for runner in runners.values():
        shape = runner.input_spec().shape
        if len(shape) == 4 and shape[2] > 0 and shape[2] == shape[3]:
            sizes.add(int(shape[2]))
    if len(sizes) > 1:
        raise UsageError(
            f"the variants take different input sizes ({', '.join(map(str, sorted(sizes)))})",
            hint="re-export them at one size, or check them one precision at a time",
        )
    if sizes:
        return sizes.pop()
    if artifact.input_size:
        return artifact.input_size
    from deploykit.zoo import get_card

    return get_card(artifact.model).input_size


def _verdict(p: _Planned, run: Run, tol: Tolerance, reference: ReferenceSummary, data: DataSummary, write: bool) -> VariantResult:
    """Judge one variant and, with ``write``, record the verdict in its sidecar."""
    metrics = run.accumulators[p.name].metrics()
    failures = judge(metrics, tol)
    key = sidecar_key(p.backend, reference.name, reference.details.get("weights_sha256"), data.sha256) if write else None
    status = "fail" if failures else "pass"
    result = VariantResult(p.name, p.backend, p.precision, status, metrics, tol, failures, path=str(p.artifact.path), sidecar_key=key)
    if key:
        not_recorded = try_record(p.artifact, key, _entry(p, status, reference, data, metrics, tol, failures))
        if not_recorded:
            result = replace(result, sidecar_key=None, not_recorded=not_recorded)
    return result


def _entry(p: _Planned, status: str, reference: ReferenceSummary, data: DataSummary, metrics: Any, tol: Tolerance, failures: Any) -> dict[str, Any]:
    """The verdict as recorded in the sidecar under ``parity_checks``."""
    details = {k: v for k, v in reference.details.items() if k != "backend"}
    return {
        "verdict": status,
        "backend": p.backend,
        "checked_at": now_iso(),
        "model_sha256": p.sha256 or p.artifact.meta.get("sha256"),
        "reference": {"name": reference.name, **details},
        "data": asdict(data),
        "metrics": metrics.to_dict(),
        "tolerance": tol.to_dict(),
        "failures": list(failures),
    }


def _validate(batch_size: Any, limit: Any) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch size must be a positive integer, got {batch_size!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise UsageError(f"limit must be a positive integer, got {limit!r}")


def _pass(ref: Runner, runners: Mapping[str, Runner], batches: Any, facts: dict, empty: DataSummary, max_flips: int, progress: bool, total: int):
    """One pass over the data: the run, the reference summary (guarded) and the data summary."""
    run = run_batches(ref, runners, batches, max_flips, progress, total)
    ref_summary = run.reference.summary(ref.name, {**ref.describe(), **facts})
    check_reference(ref_summary)
    return run, ref_summary, replace(empty, images=run.images, labeled=run.labeled, sha256=run.sha256)


def _classes(classes: Any) -> int:
    if not isinstance(classes, int) or classes < 1:
        raise UsageError(f"num_classes must be a positive integer, got {classes!r}")
    return classes


def _split(plan: list[_Planned], write_sidecar: bool, trust: bool) -> tuple[list[_Planned], list[VariantResult]]:
    """The variants to run (each file checked against its sidecar's hash: a mismatch is refused
    unless ``trust``), and the results of those that will not run (skipped, broken)."""
    from deploykit.repository import check_model_file

    runnable = [replace(p, sha256=check_model_file(p.artifact, trust=trust).sha256) for p in plan if p.artifact]
    for p in runnable if write_sidecar else ():
        check_recordable(p.artifact)  # a read-only repository is refused before minutes of work
    return runnable, [p.skipped() for p in plan if not p.artifact]


def _nothing_checked(model: str, data: Any, results: list[VariantResult]) -> ParityReport:
    reference = ReferenceSummary("torch-fp32", {}, 0, 0, 0.0, 0.0, 0.0)
    empty = DataSummary(source=str(data) if data else "sample photos", images=0, labeled=False, sha256="")
    return ParityReport(model, reference, empty, tuple(results), notes=("nothing was checked",))


def check(
    model: str,
    repo: str | os.PathLike = "models",
    backends: Sequence[str] = ("onnxruntime",),
    precisions: Sequence[str] | None = None,
    data: str | os.PathLike | None = None,
    weights: str | os.PathLike | None = None,
    *,
    num_classes: int | None = None,
    labels: str | os.PathLike | None = None,
    tolerances: Mapping[str, Tolerance | Mapping[str, float | None]] | None = None,
    limit: int | None = None,
    batch_size: int = 32,
    reference: nn.Module | None = None,
    resize: int | None = None,
    device: str = "cpu",
    write_sidecar: bool = True,
    max_flips: int = 10,
    progress: bool = False,
    trust: bool = False,
) -> ParityReport:
    """Check ``model``'s variants in ``repo`` against the PyTorch FP32 reference.

    Per backend and precision, ``<model>_onnx_<precision>`` (``_trt_`` for tensorrt) must exist
    (else a UsageError naming the command that makes it) and be the file its sidecar hashed
    (else a UsageError, unless ``trust``); a backend not installed here is skipped;
    ``precisions=None``: every precision present. Reference: the zoo model with ``weights`` (or
    ``reference``), FP32 with TF32 off on ``device``. ``data``: an image folder (ImageFolder
    layout or ``labels``, a file name -> class index file) or None for the sample photos.
    ``tolerances`` override :data:`DEFAULT_TOLERANCES`; verdicts go in the variants' sidecars.
    """
    from deploykit import data as datalib
    from deploykit.repository import ModelRepository

    _validate(batch_size, limit)
    tols, repository = resolve_tolerances(tolerances), ModelRepository(repo)
    plan = _plan(repository, model, backends, precisions)
    runnable, results = _split(plan, write_sidecar, trust)
    if not runnable:
        return _nothing_checked(model, data, results)
    first = runnable[0].artifact
    classes = _classes(num_classes or first.num_classes or 1000)
    items, source, notes = _items(data, labels, limit, classes)  # bad data fails before any model loads
    module, weights_facts = reference_module(first, reference, weights, classes, notes)
    with exact_fp32(), contextlib.ExitStack() as stack:
        runners, errors = _open_runners(stack, runnable)
        results.extend(errors)
        size = _input_size(runners, first)
        pre = _preprocessing(first, size, resize)
        ref_summary = ReferenceSummary("torch-fp32", weights_facts, 0, 0, 0.0, 0.0, 0.0)
        data_summary = DataSummary(source, 0, False, "", asdict(pre))
        if runners:
            ref = stack.enter_context(reference_runner(module, device, size) if module else onnx_reference(repository, model))
            batches = datalib.iter_batches(items, batch_size, pre)
            run, ref_summary, data_summary = _pass(ref, runners, batches, weights_facts, data_summary, max_flips, progress, len(items))
            notes.extend(n for n in data_notes(run.images, run.labeled) if n not in notes)
    results.extend(_verdict(p, run, tols[p.precision], ref_summary, data_summary, write_sidecar) for p in runnable if p.name in runners)
    order = {p.name: i for i, p in enumerate(plan)}
    ordered = tuple(sorted(results, key=lambda r: order.get(r.name, len(order))))
    return ParityReport(model, ref_summary, data_summary, ordered, notes=tuple(notes))


def assert_parity(*args: Any, **kwargs: Any) -> ParityReport:
    """:func:`check` for tests: returns the report when it passes, else raises
    ``AssertionError`` with :meth:`ParityReport.summary` as the message."""
    report = check(*args, **kwargs)
    if not report:
        raise AssertionError(report.summary())
    return report
