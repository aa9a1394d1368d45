"""Accuracy parity: does a deployed variant still classify like the PyTorch model it came from?

Comparison is its own layer over runners (Polygraphy's comparator): a reference runner and
any number of variant runners see the same preprocessed batches; per variant, metrics are
accumulated batch by batch (nothing holds all images or all logits) and judged against a
per-precision :class:`Tolerance`. Three entry points:

- :func:`compare` — any runners, any batches: the building block.
- :func:`check` — a model in the repository: the PyTorch FP32 reference (same weights, same
  preprocessing, TF32 off on GPU) against ``<model>_onnx_<precision>`` /
  ``<model>_trt_<precision>`` on each backend, verdicts written into each variant's sidecar.
- :func:`assert_parity` — :func:`check` for pytest: raises ``AssertionError`` with a
  readable summary.

Metrics (per variant, over all images):
- top-1 agreement: the variant's argmax equals the reference's;
- top-5 agreement: the variant's five highest classes are the reference's five (any order);
- with labels: top-1 accuracy of reference and variant, and the difference in points;
- logits: max and mean absolute error; min and mean cosine similarity per image;
- flipped images: how many, and the first few with both predictions.

A reference whose logits do not vary across the images (random-weight GoogLeNet collapses to
a constant) makes agreement meaningless: that is a :class:`DegenerateReferenceError`, never a
pass.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deploykit.artifacts import PRECISIONS, SIDECAR, Artifact, now_iso, variant_name
from deploykit.errors import DeployKitError, MissingDependencyError, UsageError

if TYPE_CHECKING:
    from torch import nn

    from deploykit.data import Batch, ImageItem
    from deploykit.runtimes.base import Runner
    from deploykit.zoo import Preprocessing

# ---- tolerances ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Tolerance:
    """What a variant must meet; ``None`` means "not checked".

    - ``agreement``: minimum top-1 agreement with the reference, a fraction (0.99 = 99%).
    - ``top5_agreement``: minimum top-5 agreement (same five classes, any order).
    - ``max_abs``: maximum absolute logit error, *scaled by the reference's logit range*: the
      check is ``max_abs_error <= max_abs * max(1, max |reference logit|)``. Float32 rounding
      error grows with the magnitude of the values, so a fixed 1e-3 would fail a correct
      model whose logits reach 1e4 and say nothing about one whose logits are 1e-4; for
      logits within ±1 it is the plain absolute bound.
    - ``min_cosine``: minimum per-image cosine similarity of the logits.
    - ``accuracy_drop``: maximum drop of top-1 accuracy, in percentage points (reference
      minus variant); checked only when the images have labels.
    """

    agreement: float | None = None
    top5_agreement: float | None = None
    max_abs: float | None = None
    min_cosine: float | None = None
    accuracy_drop: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return asdict(self)


TOLERANCE_FIELDS = tuple(f.name for f in fields(Tolerance))

# FP32 variants should match to float rounding: every image agrees. Reduced precisions
# change some near-tie decisions; the bounds are those the precision issue holds FP16 and
# INT8 ONNX to on held-out digits.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "fp32": Tolerance(agreement=1.0, max_abs=1e-3),
    "fp16": Tolerance(agreement=0.99),
    "int8": Tolerance(agreement=0.97, accuracy_drop=1.5),
}

# Fraction-valued fields: "98%" is accepted for them and values above 1 are refused.
_FRACTIONS = ("agreement", "top5_agreement", "min_cosine")


def _parse_value(field_name: str, text: str) -> float | None:
    text = text.strip()
    if text.lower() in ("none", "off", "-"):
        return None
    percent = text.endswith("%")
    try:
        value = float(text[:-1] if percent else text)
    except ValueError:
        raise UsageError(
            f"tolerance {field_name}={text!r} is not a number",
            hint="write e.g. fp16.agreement=0.98, fp16.agreement=98% or fp32.max_abs=none",
        ) from None
    if percent:
        if field_name not in _FRACTIONS:
            raise UsageError(f"tolerance {field_name} is not a fraction: write it without '%'")
        value /= 100.0
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"tolerance {field_name}={text} must be a finite number >= 0")
    if field_name in ("agreement", "top5_agreement") and value > 1:
        raise UsageError(
            f"tolerance {field_name}={text} is above 1",
            hint="agreement is a fraction (0.98) or a percentage (98%)",
        )
    if field_name == "min_cosine" and value > 1:
        raise UsageError(f"tolerance min_cosine={text} is above 1 (cosine similarity is at most 1)")
    return value


def parse_tolerance_overrides(specs: Iterable[str]) -> dict[str, dict[str, float | None]]:
    """``["fp16.agreement=0.98", "int8.accuracy_drop=1"]`` -> ``{"fp16": {"agreement": 0.98}, ...}``.

    A spec without a precision (``agreement=0.995``) applies to every precision. Values:
    numbers, percentages for fractions (``98%``), or ``none`` to switch a check off.
    """
    out: dict[str, dict[str, float | None]] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        if not sep:
            raise UsageError(
                f"tolerance {spec!r} has no '='",
                hint="write PRECISION.METRIC=VALUE, e.g. fp16.agreement=0.98",
            )
        precision, dot, name = key.strip().rpartition(".")
        targets = [precision] if dot else list(PRECISIONS)
        if dot and precision not in PRECISIONS:
            raise UsageError(f"unknown precision {precision!r} in tolerance {spec!r}", hint=f"choose from {', '.join(PRECISIONS)}")
        if name not in TOLERANCE_FIELDS:
            raise UsageError(f"unknown tolerance {name!r} in {spec!r}", hint=f"choose from {', '.join(TOLERANCE_FIELDS)}")
        parsed = _parse_value(name, value)
        for target in targets:
            out.setdefault(target, {})[name] = parsed
    return out


def resolve_tolerances(
    overrides: Mapping[str, Tolerance | Mapping[str, float | None]] | None = None,
) -> dict[str, Tolerance]:
    """The defaults with ``overrides`` applied: a whole :class:`Tolerance` per precision, or
    a mapping of the fields to change (as :func:`parse_tolerance_overrides` returns)."""
    result = dict(DEFAULT_TOLERANCES)
    for precision, value in (overrides or {}).items():
        if precision not in PRECISIONS:
            raise UsageError(f"unknown precision {precision!r} in tolerances", hint=f"choose from {', '.join(PRECISIONS)}")
        if isinstance(value, Tolerance):
            result[precision] = value
            continue
        unknown = [k for k in value if k not in TOLERANCE_FIELDS]
        if unknown:
            raise UsageError(f"unknown tolerance {unknown[0]!r}", hint=f"choose from {', '.join(TOLERANCE_FIELDS)}")
        result[precision] = replace(result[precision], **dict(value))
    return result


# ---- results -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Flip:
    """An image whose top-1 class differs between reference and variant.

    ``reference_margin`` is the reference's own logit gap between its choice and the
    variant's choice: a small margin means a near tie that any rounding can flip.
    """

    name: str
    reference: int
    variant: int
    label: int | None
    reference_margin: float


@dataclass(frozen=True)
class ParityMetrics:
    images: int
    top1_agreement: float
    top5_agreement: float
    topk: int  # 5, or the number of classes when there are fewer
    labeled_images: int
    reference_accuracy: float | None
    variant_accuracy: float | None
    accuracy_delta: float | None  # percentage points, variant minus reference
    max_abs_error: float
    mean_abs_error: float
    logit_scale: float  # max |reference logit| over the images
    min_cosine: float
    mean_cosine: float
    flipped_count: int
    flipped: tuple[Flip, ...]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["flipped"] = [asdict(f) for f in self.flipped]
        return data


@dataclass(frozen=True)
class VariantResult:
    """One variant's verdict: ``status`` is "pass", "fail", "error" (could not run) or "skipped"."""

    name: str
    backend: str | None
    precision: str | None
    status: str
    metrics: ParityMetrics | None = None
    tolerance: Tolerance | None = None
    failures: tuple[str, ...] = ()
    reason: str | None = None
    path: str | None = None
    sidecar_key: str | None = None

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    @property
    def checked(self) -> bool:
        return self.status in ("pass", "fail", "error")

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "backend": self.backend,
            "precision": self.precision,
            "status": self.status,
            "metrics": self.metrics.to_dict() if self.metrics else None,
            "tolerance": self.tolerance.to_dict() if self.tolerance else None,
            "failures": list(self.failures),
            "reason": self.reason,
            "path": self.path,
            "sidecar_key": self.sidecar_key,
        }


@dataclass(frozen=True)
class ReferenceSummary:
    """How the reference behaved: the facts behind the degenerate-reference guard."""

    name: str
    details: dict[str, Any]
    images: int
    distinct_top1: int  # how many classes the reference predicted at least once
    logit_spread: float  # mean over classes of the std of the logit across images
    logit_scale: float  # mean |logit|
    relative_spread: float  # logit_spread / logit_scale


@dataclass(frozen=True)
class DataSummary:
    source: str
    images: int
    labeled: bool
    sha256: str  # of the image names, the preprocessed input tensors and the labels
    preprocessing: dict[str, Any] | None = None


@dataclass(frozen=True)
class ParityReport:
    """Every variant's verdict against one reference on one data set.

    Truthy when at least one variant was checked and every checked variant passed
    (skipped backends neither pass nor fail, but a report that checked nothing is falsy).
    """

    model: str | None
    reference: ReferenceSummary
    data: DataSummary
    results: tuple[VariantResult, ...]
    notes: tuple[str, ...] = ()
    created_at: str = field(default_factory=now_iso)

    @property
    def checked(self) -> tuple[VariantResult, ...]:
        return tuple(r for r in self.results if r.checked)

    @property
    def failed(self) -> tuple[VariantResult, ...]:
        return tuple(r for r in self.results if r.checked and not r.passed)

    @property
    def skipped(self) -> tuple[VariantResult, ...]:
        return tuple(r for r in self.results if r.status == "skipped")

    @property
    def passed(self) -> bool:
        return bool(self.checked) and not self.failed

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "passed": self.passed,
            "reference": asdict(self.reference),
            "data": asdict(self.data),
            "results": [r.to_dict() for r in self.results],
            "notes": list(self.notes),
            "created_at": self.created_at,
        }

    def summary(self) -> str:
        """A few readable lines: one per variant, the reasons it failed, its first flips."""
        verdict = "PASS" if self.passed else "FAIL"
        lines = [
            f"parity {verdict}: {self.model or 'model'} vs {self.reference.name} on "
            f"{self.data.images} images from {self.data.source}"
        ]
        if not self.checked:
            lines.append("  nothing was checked (every variant was skipped)")
        for r in self.results:
            if r.status == "skipped":
                lines.append(f"  {r.name}: skipped ({r.reason})")
                continue
            if r.status == "error":
                lines.append(f"  {r.name}: ERROR ({r.reason})")
                continue
            m = r.metrics
            assert m is not None
            acc = ""
            if m.accuracy_delta is not None:
                acc = f", accuracy {_pct(m.reference_accuracy)} -> {_pct(m.variant_accuracy)}"
            lines.append(
                f"  {r.name}: {r.status.upper()} top-1 agreement {_pct(m.top1_agreement)}"
                f"{acc}, max abs error {m.max_abs_error:.3g}, min cosine {m.min_cosine:.6f}"
            )
            for failure in r.failures:
                lines.append(f"    - {failure}")
            if r.status == "fail" and m.flipped:
                shown = ", ".join(_flip_text(f) for f in m.flipped[:5])
                more = f" (+{m.flipped_count - 5} more)" if m.flipped_count > 5 else ""
                lines.append(f"    flipped: {shown}{more}")
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _flip_text(f: Flip) -> str:
    label = f", label {f.label}" if f.label is not None else ""
    return f"{f.name} (reference {f.reference}, variant {f.variant}{label})"


class DegenerateReferenceError(DeployKitError):
    """The reference's outputs do not vary across inputs: agreement with it proves nothing."""

    exit_code = 1


# ---- accumulating metrics ------------------------------------------------------------------

# The degenerate-reference guard. Relative spread = (mean over classes of the std of the
# logit across images) / (mean |logit|). Trained models on varied images sit around 0.1-1;
# random-weight GoogLeNet measures 7e-14 and ShuffleNetV2 3e-5 on the sample photos.
COLLAPSED_RELATIVE_SPREAD = 1e-3
# One predicted class for every image is legitimate (a folder of cats) when the logits still
# move with the input; with a spread this small and one class, the model is not looking.
SINGLE_CLASS_RELATIVE_SPREAD = 1e-2
# Logits this small (random-weight MobileNetV2 reaches 4e-9) underflow FP16 and make any
# absolute tolerance vacuous.
VANISHING_LOGITS = 1e-6


class _ReferenceStats:
    """Streaming per-class mean and variance of the reference logits (Chan's parallel update)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None
        self.abs_sum = 0.0
        self.abs_max = 0.0
        self.top1: set[int] = set()

    def update(self, logits: np.ndarray) -> None:
        x = logits.astype(np.float64)
        n_b = len(x)
        mean_b = x.mean(axis=0)
        m2_b = ((x - mean_b) ** 2).sum(axis=0)
        if self.mean is None:
            self.n, self.mean, self.m2 = n_b, mean_b, m2_b
        else:
            n = self.n + n_b
            delta = mean_b - self.mean
            self.mean = self.mean + delta * (n_b / n)
            self.m2 = self.m2 + m2_b + delta**2 * (self.n * n_b / n)
            self.n = n
        self.abs_sum += float(np.abs(x).sum())
        self.abs_max = max(self.abs_max, float(np.abs(x).max()))
        self.top1.update(int(c) for c in np.unique(x.argmax(axis=1)))

    def summary(self, name: str, details: dict[str, Any]) -> ReferenceSummary:
        classes = len(self.mean) if self.mean is not None else 0
        spread = float(np.sqrt(self.m2 / self.n).mean()) if self.n else 0.0
        scale = self.abs_sum / (self.n * classes) if self.n and classes else 0.0
        return ReferenceSummary(
            name=name,
            details=details,
            images=self.n,
            distinct_top1=len(self.top1),
            logit_spread=spread,
            logit_scale=scale,
            relative_spread=spread / scale if scale > 0 else 0.0,
        )


def check_reference(summary: ReferenceSummary) -> None:
    """Raise :class:`DegenerateReferenceError` when the reference ignores its input.

    Needs at least two images; with one, variation cannot be judged (the caller notes it).
    """
    if summary.images < 2:
        return
    reason = None
    if summary.logit_scale < VANISHING_LOGITS and summary.logit_spread < VANISHING_LOGITS:
        reason = f"its logits vanish (mean |logit| {summary.logit_scale:.2e})"
    elif summary.relative_spread < COLLAPSED_RELATIVE_SPREAD:
        reason = f"its logits barely move across inputs (relative spread {summary.relative_spread:.2e})"
    elif summary.distinct_top1 == 1 and summary.relative_spread < SINGLE_CLASS_RELATIVE_SPREAD:
        reason = (
            f"it predicts one class for all {summary.images} images with little spread "
            f"(relative spread {summary.relative_spread:.2e})"
        )
    if reason:
        raise DegenerateReferenceError(
            f"the reference {summary.name} ignores its input: {reason}; agreement with it would prove nothing",
            hint="use trained weights (--weights), or re-estimate BatchNorm statistics of random weights "
            "(deploykit.parity.recalibrate_batchnorm) and export those",
        )


class _VariantAccumulator:
    """Running metrics of one variant against the reference, updated batch by batch."""

    def __init__(self, max_flips: int):
        self.max_flips = max_flips
        self.n = 0
        self.agree1 = 0
        self.agree5 = 0
        self.topk = 5
        self.labeled = 0
        self.correct_ref = 0
        self.correct_var = 0
        self.max_abs = 0.0
        self.sum_abs = 0.0
        self.elements = 0
        self.min_cos = math.inf
        self.sum_cos = 0.0
        self.flip_count = 0
        self.flips: list[Flip] = []
        self.scale = 0.0

    def update(self, ref: np.ndarray, var: np.ndarray, labels: np.ndarray | None, names: Sequence[str]) -> None:
        if var.shape != ref.shape:
            raise DeployKitError(
                f"the variant returned logits of shape {var.shape}, the reference {ref.shape}",
                hint="are they the same model with the same number of classes (--num-classes)?",
            )
        r = ref.astype(np.float64)
        v = var.astype(np.float64)
        classes = r.shape[1]
        self.topk = k = min(5, classes)
        ref_top = r.argmax(axis=1)
        var_top = v.argmax(axis=1)
        same = ref_top == var_top
        self.agree1 += int(same.sum())
        ref_k = np.sort(np.argpartition(-r, k - 1, axis=1)[:, :k], axis=1)
        var_k = np.sort(np.argpartition(-v, k - 1, axis=1)[:, :k], axis=1)
        self.agree5 += int((ref_k == var_k).all(axis=1).sum())

        if labels is not None:
            self.labeled += len(labels)
            self.correct_ref += int((ref_top == labels).sum())
            self.correct_var += int((var_top == labels).sum())

        err = np.abs(v - r)
        if not np.isfinite(v).all():
            err = np.where(np.isfinite(v), err, np.inf)  # NaN must not hide as "no error"
        self.max_abs = max(self.max_abs, float(err.max()))
        self.sum_abs += float(err.sum())
        self.elements += err.size
        self.scale = max(self.scale, float(np.abs(r).max()))

        norms = np.linalg.norm(r, axis=1) * np.linalg.norm(v, axis=1)
        dots = (r * v).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 1.0)
        cos = np.nan_to_num(cos, nan=-1.0)  # a NaN output is as dissimilar as it gets
        self.min_cos = min(self.min_cos, float(cos.min()))
        self.sum_cos += float(cos.sum())

        for i in np.flatnonzero(~same):
            self.flip_count += 1
            if len(self.flips) < self.max_flips:
                self.flips.append(
                    Flip(
                        name=str(names[i]),
                        reference=int(ref_top[i]),
                        variant=int(var_top[i]),
                        label=None if labels is None else int(labels[i]),
                        reference_margin=float(r[i, ref_top[i]] - r[i, var_top[i]]),
                    )
                )
        self.n += len(r)

    def metrics(self) -> ParityMetrics:
        n = max(self.n, 1)
        ref_acc = var_acc = delta = None
        if self.labeled:
            ref_acc = self.correct_ref / self.labeled
            var_acc = self.correct_var / self.labeled
            delta = 100.0 * (var_acc - ref_acc)
        return ParityMetrics(
            images=self.n,
            top1_agreement=self.agree1 / n,
            top5_agreement=self.agree5 / n,
            topk=self.topk,
            labeled_images=self.labeled,
            reference_accuracy=ref_acc,
            variant_accuracy=var_acc,
            accuracy_delta=delta,
            max_abs_error=self.max_abs,
            mean_abs_error=self.sum_abs / max(self.elements, 1),
            logit_scale=self.scale,
            min_cosine=self.min_cos if self.n else 1.0,
            mean_cosine=self.sum_cos / n,
            flipped_count=self.flip_count,
            flipped=tuple(self.flips),
        )


def judge(metrics: ParityMetrics, tolerance: Tolerance) -> tuple[str, ...]:
    """The reasons ``metrics`` fall outside ``tolerance`` (empty: pass)."""
    failures = []
    if tolerance.agreement is not None and metrics.top1_agreement < tolerance.agreement:
        failures.append(
            f"top-1 agreement {_pct(metrics.top1_agreement)} < {_pct(tolerance.agreement)} "
            f"({metrics.flipped_count} of {metrics.images} images flipped)"
        )
    if tolerance.top5_agreement is not None and metrics.top5_agreement < tolerance.top5_agreement:
        failures.append(f"top-{metrics.topk} agreement {_pct(metrics.top5_agreement)} < {_pct(tolerance.top5_agreement)}")
    if tolerance.max_abs is not None:
        bound = tolerance.max_abs * max(1.0, metrics.logit_scale)
        if not metrics.max_abs_error <= bound:
            failures.append(
                f"max abs logit error {metrics.max_abs_error:.3g} > {bound:.3g} "
                f"({tolerance.max_abs:g} x max(1, max |reference logit| {metrics.logit_scale:.3g}))"
            )
    if tolerance.min_cosine is not None and not metrics.min_cosine >= tolerance.min_cosine:
        failures.append(f"min cosine similarity {metrics.min_cosine:.6f} < {tolerance.min_cosine}")
    if tolerance.accuracy_drop is not None and metrics.accuracy_delta is not None:
        drop = -metrics.accuracy_delta
        if drop > tolerance.accuracy_drop:
            failures.append(
                f"accuracy dropped {drop:.2f} points ({_pct(metrics.reference_accuracy)} -> "
                f"{_pct(metrics.variant_accuracy)}) > {tolerance.accuracy_drop:g}"
            )
    return tuple(failures)


# ---- running runners on batches ------------------------------------------------------------


def _infer(runner: Runner, array: np.ndarray) -> np.ndarray:
    """``runner.infer`` that also serves variants exported with a static batch size:
    the batch is cut into pieces of that size and the last piece padded (its extra rows dropped)."""
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


def _as_batch(item: Any, index: int) -> Batch:
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

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(description, total=total)
        yield lambda n: bar.advance(task, n)


@dataclass
class _Run:
    """What one pass over the data produced (internal to compare/check)."""

    accumulators: dict[str, _VariantAccumulator]
    reference: _ReferenceStats
    images: int
    labeled: bool
    sha256: str


def _run(
    reference: Runner,
    variants: Mapping[str, Runner],
    batches: Iterable[Any],
    max_flips: int,
    progress: bool,
    total: int | None,
) -> _Run:
    accumulators = {name: _VariantAccumulator(max_flips) for name in variants}
    stats = _ReferenceStats()
    # One hash per stream, so the digest does not depend on where batches are cut.
    digests = {part: hashlib.sha256() for part in ("names", "inputs", "labels")}
    images = 0
    labeled = True
    with _progress(progress, total, "parity") as advance:
        for index, raw in enumerate(batches):
            batch = _as_batch(raw, index)
            digests["names"].update("".join(f"{name}\n" for name in batch.names).encode())
            digests["inputs"].update(np.ascontiguousarray(batch.array, dtype=np.float32).tobytes())
            if batch.labels is None:
                labeled = False
            else:
                digests["labels"].update(batch.labels.astype(np.int64).tobytes())
            ref = _infer(reference, batch.array)
            stats.update(ref)
            for name, runner in variants.items():
                accumulators[name].update(ref, _infer(runner, batch.array), batch.labels, batch.names)
            images += len(batch)
            advance(len(batch))
    if images == 0:
        raise UsageError("no images to compare", hint="pass a folder with images (--data DIR)")
    if not labeled:
        # Accuracy over a subset would mislead; report it only when every image has a label.
        for acc in accumulators.values():
            acc.labeled = acc.correct_ref = acc.correct_var = 0
    sha256 = hashlib.sha256(b"".join(d.digest() for d in digests.values())).hexdigest()
    return _Run(accumulators, stats, images, labeled, sha256)


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
    default = DEFAULT_TOLERANCES["fp32"]
    with contextlib.ExitStack() as stack:
        _activated(stack, reference)
        for runner in variants.values():
            _activated(stack, runner)
        run = _run(reference, dict(variants), batches, max_flips, progress, total)
    summary = run.reference.summary(reference.name, reference.describe())
    check_reference(summary)
    results = []
    for name, acc in run.accumulators.items():
        if isinstance(tolerances, Tolerance):
            tol = tolerances
        else:
            tol = (tolerances or {}).get(name, default)
        metrics = acc.metrics()
        failures = judge(metrics, tol)
        results.append(
            VariantResult(
                name=name,
                backend=getattr(variants[name], "backend", None),
                precision=None,
                status="fail" if failures else "pass",
                metrics=metrics,
                tolerance=tol,
                failures=failures,
            )
        )
    notes = _data_notes(run.images, run.labeled)
    data = DataSummary(source=source, images=run.images, labeled=run.labeled, sha256=run.sha256)
    return ParityReport(model=model, reference=summary, data=data, results=tuple(results), notes=notes)


def _data_notes(images: int, labeled: bool) -> tuple[str, ...]:
    notes = []
    if images < 2:
        notes.append("one image cannot show whether the reference's outputs depend on its input")
    if images < 100:
        notes.append(f"{images} images make a smoke test: agreement over a real validation set is the check that counts")
    if not labeled:
        notes.append("no labels: accuracy not measured (ImageFolder layout or --labels FILE)")
    return tuple(notes)


# ---- the reference -------------------------------------------------------------------------


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """Turn TF32 off for CUDA matmuls and cuDNN convolutions inside the block (restored after).

    PyTorch lets cuDNN convolutions use TF32 by default on Ampere and later: a "FP32"
    reference would then carry 10-bit-mantissa rounding that gets blamed on the engine.
    """
    import torch

    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def reference_runner(module: nn.Module, device: str = "cpu", input_size: int | None = None) -> Runner:
    """The FP32 PyTorch reference as a runner (eval mode; use it inside :func:`exact_fp32`)."""
    from deploykit.runtimes import get_runner

    return get_runner("torch", module, device=device, precision="fp32", input_size=input_size, name="torch-fp32")


def recalibrate_batchnorm(model: nn.Module, batches: Iterable[Any], device: str = "cpu") -> int:
    """Re-estimate every BatchNorm layer's running mean and variance on ``batches``.

    Random-weight networks with untouched statistics (mean 0, variance 1) can collapse to a
    constant output; statistics measured on real images make each layer normalize what it
    really sees, so the logits depend on the input again. Only BatchNorm layers run in
    training mode (dropout stays off); the statistics are the plain average over all
    batches (``momentum=None``). Weights are not changed. ``batches`` are arrays, torch
    tensors or :class:`deploykit.data.Batch`; each needs more than one image. Returns the
    number of images seen; the model is left in eval mode.
    """
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise UsageError(f"{type(model).__name__} has no BatchNorm layers to recalibrate")
    saved = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over every batch seen
        m.train()
    seen = 0
    try:
        with torch.no_grad():
            for index, item in enumerate(batches):
                x = item if isinstance(item, torch.Tensor) else torch.from_numpy(_as_batch(item, index).array)
                if len(x) < 2:
                    raise UsageError("BatchNorm recalibration needs batches of at least 2 images")
                model(x.to(device))
                seen += len(x)
    finally:
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum
        model.eval()
    if seen == 0:
        raise UsageError("no batches to recalibrate BatchNorm on")
    return seen


# ---- data ----------------------------------------------------------------------------------


def read_labels_file(path: str | os.PathLike) -> dict[str, int]:
    """A labels file: JSON ``{"file.jpg": 3, ...}``, or text lines ``file.jpg,3`` (comma, tab
    or spaces; ``#`` comments and a header line are skipped). Keys are file names or paths
    relative to the data folder."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"labels file {path} does not exist")
    text = path.read_text(encoding="utf-8", errors="replace")
    out: dict[str, int] = {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"labels file {path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise UsageError(f"labels file {path} must hold an object {{file name: class index}}")
        items = list(data.items())
    else:
        items = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = [p for p in line.replace(",", " ").replace("\t", " ").split(" ") if p]
            if len(parts) != 2:
                raise UsageError(f"{path}:{number}: expected 'FILE,CLASS_INDEX', got {line!r}")
            if not items and not out and not _is_int(parts[1]):
                continue  # a header such as "filename,label"
            items.append((parts[0], parts[1]))
    for name, value in items:
        if isinstance(value, bool) or not _is_int(value):
            raise UsageError(f"labels file {path}: the class of {name!r} is {value!r}, not a class index")
        out[str(name)] = int(value)
    if not out:
        raise UsageError(f"labels file {path} holds no labels")
    return out


def _is_int(value: Any) -> bool:
    if isinstance(value, int):
        return True
    try:
        int(str(value))
    except ValueError:
        return False
    return True


def label_items(
    items: list[ImageItem],
    root: Path,
    num_classes: int,
    labels_file: str | os.PathLike | None = None,
) -> tuple[list[ImageItem], list[str]]:
    """Give every image its class index, or none at all; returns ``(items, notes)``.

    - ``labels_file``: every image must be listed (by file name or path relative to ``root``).
    - ImageFolder layout: folders named by integers are class indices (``0/``, ``1/``, ...,
      so a subset of classes is fine); other names follow torchvision's ImageFolder (sorted
      folder names -> 0..K-1), which matches the model's classes only when all
      ``num_classes`` folders are there; with fewer, accuracy is not measured (noted).
    Labels outside ``0..num_classes-1`` are a UsageError.
    """
    notes: list[str] = []
    if labels_file is not None:
        table = read_labels_file(labels_file)
        out = []
        for item in items:
            rel = item.path.relative_to(root).as_posix() if item.path.is_relative_to(root) else item.path.name
            for key in (rel, item.name, item.path.name):
                if key in table:
                    out.append(replace(item, label=table[key]))
                    break
            else:
                raise UsageError(
                    f"labels file {labels_file} has no entry for {rel}",
                    hint="list every image (file name or path relative to the data folder)",
                )
        _check_label_range([i.label for i in out], num_classes, f"labels file {labels_file}")
        return out, notes
    if not items or items[0].class_name is None:
        return items, notes
    classes = sorted({i.class_name for i in items})
    if all(c.isdigit() for c in classes):
        out = [replace(i, label=int(i.class_name)) for i in items]
        _check_label_range([i.label for i in out], num_classes, f"class folders of {root}")
        return out, notes
    if len(classes) > num_classes:
        raise UsageError(
            f"{root} has {len(classes)} class folders but the model has {num_classes} classes",
            hint="pass the right --num-classes, or a folder with one subfolder per model class",
        )
    if len(classes) < num_classes:
        notes.append(
            f"{root} has {len(classes)} class folders for {num_classes} model classes: folder order "
            "cannot say which class each is, so accuracy is not measured (name folders by class "
            "index, e.g. 0/ 1/ ..., or pass --labels FILE)"
        )
        return [replace(i, label=None) for i in items], notes
    return items, notes


def _check_label_range(labels: list[int | None], num_classes: int, where: str) -> None:
    bad = sorted({label for label in labels if label is not None and not 0 <= label < num_classes})
    if bad:
        shown = ", ".join(map(str, bad[:5]))
        raise UsageError(
            f"{where}: class index {shown} outside 0..{num_classes - 1} (the model has {num_classes} classes)",
            hint="labels must be the model's class indices; check --num-classes",
        )


def take(items: list[ImageItem], limit: int | None) -> list[ImageItem]:
    """The first ``limit`` images, taken round-robin across classes when there are classes
    (ImageFolder lists class by class: a plain prefix would test one class only)."""
    if not limit or limit >= len(items):
        return items
    if items[0].class_name is None:
        return items[:limit]
    groups: dict[str, list[ImageItem]] = {}
    for item in items:
        groups.setdefault(item.class_name or "", []).append(item)
    out: list[ImageItem] = []
    depth = 0
    while len(out) < limit:
        for group in groups.values():
            if depth < len(group) and len(out) < limit:
                out.append(group[depth])
        depth += 1
    return out


# ---- the repository check ------------------------------------------------------------------


def _format_for(backend: str) -> str:
    return "trt" if backend == "tensorrt" else "onnx"


def _skip_reason(backend: str, device: str) -> str | None:
    from deploykit.runtimes import backend_unavailable_reason

    reason = backend_unavailable_reason(backend)
    if reason is None and backend == "tensorrt":
        import torch

        if not torch.cuda.is_available():
            reason = "no CUDA GPU is visible (TensorRT engines run on a GPU)"
    return reason


RANDOM_INIT = "random-init"  # what export records when no weights file was given


def _sidecar_weights_sha(meta: Mapping[str, Any]) -> str | None:
    """The sha256 of the weights a variant was exported from, as its sidecar records it."""
    for key in ("weights", "source"):
        section = meta.get(key)
        if isinstance(section, Mapping):
            for sha_key in ("sha256", "weights_sha256"):
                if isinstance(section.get(sha_key), str):
                    return section[sha_key]
    value = meta.get("weights_sha256")
    return value if isinstance(value, str) else None


def _sidecar_num_classes(meta: Mapping[str, Any]) -> int | None:
    for section in (meta, meta.get("source"), meta.get("output"), meta.get("model_config")):
        if isinstance(section, Mapping) and isinstance(section.get("num_classes"), int):
            return section["num_classes"]
    output = meta.get("output")
    if isinstance(output, Mapping) and isinstance(output.get("shape"), list) and output["shape"]:
        last = output["shape"][-1]
        return last if isinstance(last, int) and last > 0 else None
    return None


def _sidecar_preprocessing(meta: Mapping[str, Any], model: str) -> Preprocessing:
    from deploykit.zoo import Preprocessing, get_card

    pre = meta.get("preprocessing")
    if isinstance(pre, Mapping):
        known = {f.name for f in fields(Preprocessing)}
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in pre.items() if k in known}
        with contextlib.suppress(TypeError):
            return Preprocessing(**values)
    return get_card(model).preprocessing


@dataclass(frozen=True)
class _Planned:
    model: str
    backend: str
    precision: str  # "*" when a skipped backend had no precision to look for
    artifact: Artifact | None
    skip: str | None

    @property
    def name(self) -> str:
        """``<variant>@<backend>``: one file can be checked on several backends."""
        return f"{variant_name(self.model, _format_for(self.backend), self.precision)}@{self.backend}"


def _plan(repo: Any, model: str, backends: Sequence[str], precisions: Sequence[str] | None, device: str) -> list[_Planned]:
    from deploykit.repository import make_command, validate_precision
    from deploykit.runtimes import check_backend

    plan: list[_Planned] = []
    for backend in backends:
        check_backend(backend)
        fmt = _format_for(backend)
        wanted = list(precisions) if precisions else [p for p in PRECISIONS if repo.find(model, fmt, p)]
        for p in wanted:
            validate_precision(p)
        skip = _skip_reason(backend, device)
        if not wanted:
            if skip:
                plan.append(_Planned(model, backend, "*", None, skip))
                continue
            raise UsageError(
                f"no {fmt} variant of {model} in the repository {repo.root}",
                hint=f"make one with `{make_command(model, fmt, 'fp32')} --repo {repo.root}`",
            )
        for precision in wanted:
            if skip:
                plan.append(_Planned(model, backend, precision, None, skip))
            else:
                plan.append(_Planned(model, backend, precision, repo.get(model, fmt, precision), None))
    return plan


def _reference_module(
    model: str,
    module: nn.Module | None,
    weights: str | os.PathLike | None,
    num_classes: int,
    meta: Mapping[str, Any],
) -> tuple[nn.Module, dict[str, Any], list[str]]:
    """The reference network, facts about its weights, and warnings."""
    notes: list[str] = []
    exported_sha = _sidecar_weights_sha(meta)
    if module is not None:
        return module, {"weights": "module passed by the caller"}, notes
    from deploykit.checkpoints import load_weights
    from deploykit.zoo import get_model

    net = get_model(model, num_classes=num_classes)
    if weights is None:
        # Fresh random weights are not the ones the variant was exported from: every
        # comparison would fail for reasons that have nothing to do with the conversion.
        if exported_sha == RANDOM_INIT:
            raise UsageError(
                f"{model} was exported with random weights that were not saved, so no reference can match it",
                hint="save the weights (torch.save(model.state_dict(), PATH)), export with --weights PATH "
                "and pass the same file here",
            )
        raise UsageError(
            f"no weights given for the reference of {model}"
            + (f" (the variant was exported from sha256 {exported_sha[:12]}...)" if exported_sha else ""),
            hint="pass the file the variant was exported from with --weights PATH",
        )
    report = load_weights(net, weights)
    if exported_sha and exported_sha != report.sha256:
        notes.append(
            f"--weights {weights} (sha256 {report.sha256[:12]}...) is not the file the variant was "
            f"exported from ({exported_sha[:12]}...): differences may be the weights, not the conversion"
        )
    return net, {"weights": str(weights), "weights_sha256": report.sha256}, notes


def _sidecar_key(backend: str, weights_sha: str | None, data_sha: str) -> str:
    weights = weights_sha[:12] if weights_sha else "module"
    return f"{backend} vs torch-fp32 weights:{weights} data:{data_sha[:12]}"


def _record(artifact: Artifact, key: str, entry: dict[str, Any]) -> None:
    """Add ``entry`` under ``parity_checks[key]`` in the variant's sidecar (atomic rewrite)."""
    from deploykit.fileio import atomic_write_json

    path = artifact.directory / SIDECAR
    data = json.loads(path.read_text())
    section = data.get(PARITY_SECTION)
    if not isinstance(section, dict):
        section = {}
    section[key] = entry
    data[PARITY_SECTION] = section
    atomic_write_json(path, data)


# The sidecar's "parity" section holds the export-time check (ONNX vs PyTorch on the sample
# photos); `deploykit parity` keeps its verdicts beside it, one per backend, reference and
# data set.
PARITY_SECTION = "parity_checks"


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
) -> ParityReport:
    """Check ``model``'s variants in ``repo`` against the PyTorch FP32 reference.

    For each backend and precision, ``<model>_onnx_<precision>`` (``_trt_`` for tensorrt)
    must exist (a missing one is a UsageError naming the command that makes it); a backend
    that is not installed here is skipped. ``precisions=None`` takes every precision present.
    The reference is the zoo model with ``weights`` (or the caller's ``reference`` module),
    run in FP32 with TF32 off on ``device``. ``data`` is an image folder (ImageFolder
    layout gives labels; so does ``labels``, a file mapping file name -> class index) or
    None for the sample photos. ``tolerances`` override :data:`DEFAULT_TOLERANCES` per
    precision. Each checked variant's sidecar gets the verdict under ``parity_checks``.
    """
    from deploykit import data as datalib
    from deploykit.repository import ModelRepository

    if not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch size must be a positive integer, got {batch_size!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise UsageError(f"limit must be a positive integer, got {limit!r}")
    tols = resolve_tolerances(tolerances)
    repository = ModelRepository(repo)
    plan = _plan(repository, model, backends, precisions, device)
    runnable = [p for p in plan if p.artifact is not None]
    skipped = [
        VariantResult(name=p.name, backend=p.backend, precision=p.precision, status="skipped", reason=p.skip)
        for p in plan
        if p.artifact is None
    ]
    if not runnable:
        reference_summary = ReferenceSummary("torch-fp32", {}, 0, 0, 0.0, 0.0, 0.0)
        empty = DataSummary(source=str(data) if data else "sample photos", images=0, labeled=False, sha256="")
        return ParityReport(model, reference_summary, empty, tuple(skipped), notes=("nothing was checked",))

    meta = runnable[0].artifact.meta
    classes = num_classes or _sidecar_num_classes(meta) or 1000
    if not isinstance(classes, int) or classes < 1:
        raise UsageError(f"num_classes must be a positive integer, got {classes!r}")

    # The data first: bad input should fail before any model is loaded.
    notes: list[str] = []
    if data is None:
        if labels is not None:
            raise UsageError("--labels needs --data: the sample photos have no labels")
        items: list[Any] = datalib.sample_images()
        items = items[:limit] if limit else items
        source = "sample photos (scikit-image)"
    else:
        root = Path(data)
        found = datalib.list_images(root)
        found, label_notes = label_items(found, root, classes, labels)
        notes.extend(label_notes)
        items = take(found, limit)
        source = str(root)

    module, weights_facts, weight_notes = _reference_module(model, reference, weights, classes, meta)
    notes.extend(weight_notes)

    results: list[VariantResult] = []
    with exact_fp32(), contextlib.ExitStack() as stack:
        from deploykit.runtimes import get_runner

        runners: dict[str, Runner] = {}
        for p in runnable:
            try:
                runner = stack.enter_context(get_runner(p.backend, p.artifact))
            except MissingDependencyError as exc:
                results.append(VariantResult(p.name, p.backend, p.precision, "skipped", reason=exc.message))
                continue
            except DeployKitError as exc:
                results.append(VariantResult(p.name, p.backend, p.precision, "error", reason=exc.message, path=str(p.artifact.path)))
                continue
            runners[p.name] = runner
        size = _input_size(runners, meta, model)
        pre = _sidecar_preprocessing(meta, model)
        pre = replace(pre, crop=size, resize=resize or (pre.resize if pre.crop == size else round(size * pre.resize / pre.crop)))
        if pre.resize < pre.crop:
            raise UsageError(f"--resize {pre.resize} is smaller than the input size {pre.crop}")
        if runners:
            ref = stack.enter_context(reference_runner(module, device=device, input_size=size))
            batches = datalib.iter_batches(items, batch_size, pre)
            run = _run(ref, runners, batches, max_flips, progress, len(items))
            ref_summary = run.reference.summary("torch-fp32", {**ref.describe(), **weights_facts})
            check_reference(ref_summary)
            data_summary = DataSummary(source, run.images, run.labeled, run.sha256, asdict(pre))
            notes.extend(n for n in _data_notes(run.images, run.labeled) if n not in notes)
        else:
            ref_summary = ReferenceSummary("torch-fp32", weights_facts, 0, 0, 0.0, 0.0, 0.0)
            data_summary = DataSummary(source, 0, False, "", asdict(pre))

    by_name = {p.name: p for p in runnable}
    for name in runners:
        p = by_name[name]
        tol = tols[p.precision]
        metrics = run.accumulators[name].metrics()
        failures = judge(metrics, tol)
        key = _sidecar_key(p.backend, weights_facts.get("weights_sha256"), data_summary.sha256) if write_sidecar else None
        result = VariantResult(
            name=name,
            backend=p.backend,
            precision=p.precision,
            status="fail" if failures else "pass",
            metrics=metrics,
            tolerance=tol,
            failures=failures,
            path=str(p.artifact.path),
            sidecar_key=key,
        )
        results.append(result)
        if key:
            _record(
                p.artifact,
                key,
                {
                    "verdict": result.status,
                    "backend": p.backend,
                    "checked_at": now_iso(),
                    "model_sha256": p.artifact.meta.get("sha256"),
                    "reference": {"name": ref_summary.name, **{k: v for k, v in ref_summary.details.items() if k != "backend"}},
                    "data": asdict(data_summary),
                    "metrics": metrics.to_dict(),
                    "tolerance": tol.to_dict(),
                    "failures": list(failures),
                },
            )
    order = {p.name: i for i, p in enumerate(plan)}
    ordered = sorted([*results, *skipped], key=lambda r: order.get(r.name, len(order)))
    return ParityReport(model, ref_summary, data_summary, tuple(ordered), notes=tuple(notes))


def _input_size(runners: Mapping[str, Runner], meta: Mapping[str, Any], model: str) -> int:
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
    section = meta.get("input")
    if isinstance(section, Mapping):
        shape = section.get("shape")
        if isinstance(shape, list) and len(shape) == 4 and isinstance(shape[-1], int) and shape[-1] > 0:
            return shape[-1]
        if isinstance(section.get("size"), int):
            return section["size"]
    from deploykit.zoo import get_card

    return get_card(model).input_size


def assert_parity(*args: Any, **kwargs: Any) -> ParityReport:
    """:func:`check` for tests: returns the report when it passes, else raises
    ``AssertionError`` with :meth:`ParityReport.summary` as the message."""
    report = check(*args, **kwargs)
    if not report:
        raise AssertionError(report.summary())
    return report
