"""Metrics of a variant against its reference, accumulated batch by batch, and the verdict.

Nothing here holds all images or all logits: :class:`VariantMetrics` and
:class:`ReferenceStats` keep running sums, so a validation set of any size streams through.
The degenerate-reference guard (a reference whose outputs ignore the input proves nothing)
lives here too, once, for ``deploykit parity`` and export's verification alike.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from deploykit.errors import DeployKitError, UsageError
from deploykit.parity.tolerances import Tolerance

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


@dataclass(frozen=True)
class Flip:
    """An image whose top-1 class differs between reference and variant.

    ``reference_margin`` is the reference's own logit gap between its choice and the
    variant's choice: a small margin means a near tie that any rounding can flip.
    ``relative_margin`` is the reference's lead over its runner-up divided by the image's
    largest |logit| (what a ``max_rel`` tolerance calls decisive).
    """

    name: str
    reference: int
    variant: int
    label: int | None
    reference_margin: float
    relative_margin: float = math.inf


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
    max_rel_error: float = 0.0  # largest per-image max|error| / max|reference logit|
    largest_rel_errors: tuple[tuple[str, float], ...] = ()  # the worst images, worst first
    max_flip_margin: float = 0.0  # largest relative_margin among all flipped images
    nonfinite_images: int = 0  # images whose variant logits hold NaN or inf

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["flipped"] = [asdict(f) for f in self.flipped]
        data["largest_rel_errors"] = [list(pair) for pair in self.largest_rel_errors]
        return data


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


class DegenerateReferenceError(DeployKitError):
    """The reference's outputs do not vary across inputs: agreement with it proves nothing."""

    exit_code = 1


class NonFiniteOutputError(UsageError):
    """One side of a comparison gave NaN/inf logits: bad input (its weights or its file), not a
    failed comparison, since no tolerance can judge them."""


# Why a side gives NaN/inf, for the hint. The reference runs in FP32 on finite weights (a
# checkpoint with NaN/inf is refused when it is read), so it is its activations that overflow.
REFERENCE_NONFINITE = (
    "its activations overflow float32 (weights far larger than training produces, e.g. a "
    "mis-scaled or damaged checkpoint, or NaN/inf in the module's own tensors): check the weights"
)
VARIANT_NONFINITE = (
    "the reference's outputs are finite, so the variant computes differently: a reduced-precision "
    "variant whose activations exceed its range (FP16 ends at 65504: keep those layers in FP32), "
    "or a damaged file: re-create the variant"
)


def check_finite(logits: np.ndarray, side: str, cause: str, names: Sequence[str] = ()) -> None:
    """Raise :class:`NonFiniteOutputError` naming ``side`` (and ``cause`` as the hint) when
    ``logits`` (N x classes) hold NaN or inf."""
    bad = np.flatnonzero(~np.isfinite(logits).reshape(len(logits), -1).all(axis=1))
    if len(bad):
        few = ", ".join(str(names[i]) if i < len(names) else f"image {i}" for i in bad[:3])
        raise NonFiniteOutputError(
            f"{side} produced non-finite outputs (NaN or inf) for {len(bad)} of {len(logits)} images "
            f"({few}{', ...' if len(bad) > 3 else ''}): bad input, not a failed comparison",
            hint=cause,
        )


def image_scales(reference: np.ndarray) -> np.ndarray:
    """Each image's largest |logit|; an image whose logits are all ~0 borrows a millionth of
    the batch's scale (no absolute floor: random-init zoo models give logits from ~1e-9 to ~5)."""
    scale = np.abs(reference).max(axis=1)
    return np.maximum(scale, max(1e-6 * float(scale.max(initial=0.0)), 1e-30))


def relative_margins(reference: np.ndarray) -> np.ndarray:
    """Each image's top-1 lead over its runner-up, relative to :func:`image_scales` (inf for one class)."""
    ref = np.asarray(reference, dtype=np.float64)
    if ref.shape[1] < 2:
        return np.full(len(ref), np.inf)
    top2 = np.sort(ref, axis=1)[:, -2:]
    return (top2[:, 1] - top2[:, 0]) / image_scales(ref)


class ReferenceStats:
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


def degenerate_reason(summary: ReferenceSummary) -> str | None:
    """Why the reference ignores its input, or None. Needs two images (one cannot show it)."""
    if summary.images < 2:
        return None
    if summary.logit_scale < VANISHING_LOGITS and summary.logit_spread < VANISHING_LOGITS:
        return f"its logits vanish (mean |logit| {summary.logit_scale:.2e})"
    if summary.relative_spread < COLLAPSED_RELATIVE_SPREAD:
        return f"its logits barely move across inputs (relative spread {summary.relative_spread:.2e})"
    if summary.distinct_top1 == 1 and summary.relative_spread < SINGLE_CLASS_RELATIVE_SPREAD:
        return (
            f"it predicts one class for all {summary.images} images with little spread "
            f"(relative spread {summary.relative_spread:.2e})"
        )
    return None


def check_reference(summary: ReferenceSummary) -> None:
    """Raise :class:`DegenerateReferenceError` when the reference ignores its input."""
    reason = degenerate_reason(summary)
    if reason:
        raise DegenerateReferenceError(
            f"the reference {summary.name} ignores its input: {reason}; agreement with it would prove nothing",
            hint="use trained weights (--weights), or re-estimate BatchNorm statistics of random weights "
            "(deploykit.parity.recalibrate_batchnorm) and export those",
        )


def _cosines(r: np.ndarray, v: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(r, axis=1) * np.linalg.norm(v, axis=1)
    dots = (r * v).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 1.0)
    return np.nan_to_num(cos, nan=-1.0)  # a NaN output is as dissimilar as it gets


def _topk_sets(x: np.ndarray, k: int) -> np.ndarray:
    return np.sort(np.argpartition(-x, k - 1, axis=1)[:, :k], axis=1)


class VariantMetrics:
    """Running metrics of one variant against the reference, updated batch by batch."""

    def __init__(self, max_flips: int = 10):
        self.max_flips = max_flips
        self.n = self.agree1 = self.agree5 = self.labeled = self.correct_ref = self.correct_var = 0
        self.topk = 5
        self.max_abs = self.sum_abs = self.scale = self.sum_cos = self.max_rel = self.max_flip_margin = 0.0
        self.elements = self.flip_count = self.nonfinite = 0
        self.min_cos = math.inf
        self.flips: list[Flip] = []
        self.worst: list[tuple[float, int, str]] = []  # a min-heap of the largest relative errors

    def update(self, ref: np.ndarray, var: np.ndarray, labels: np.ndarray | None, names: Sequence[str]) -> None:
        if var.shape != ref.shape:
            raise DeployKitError(
                f"the variant returned logits of shape {var.shape}, the reference {ref.shape}",
                hint="are they the same model with the same number of classes (--num-classes)?",
            )
        r, v = ref.astype(np.float64), var.astype(np.float64)
        self.topk = k = min(5, r.shape[1])
        ref_top, var_top = r.argmax(axis=1), v.argmax(axis=1)
        same = ref_top == var_top
        self.agree1 += int(same.sum())
        self.agree5 += int((_topk_sets(r, k) == _topk_sets(v, k)).all(axis=1).sum())
        if labels is not None:
            self.labeled += len(labels)
            self.correct_ref += int((ref_top == labels).sum())
            self.correct_var += int((var_top == labels).sum())
        finite = np.isfinite(v)
        err = np.where(finite, np.abs(v - r), np.inf)  # NaN must not hide as "no error"
        self.nonfinite += int((~finite.all(axis=1)).sum())
        self.max_abs = max(self.max_abs, float(err.max()))
        self.sum_abs += float(err.sum())
        self.elements += err.size
        self.scale = max(self.scale, float(np.abs(r).max()))
        cos = _cosines(r, v)
        self.min_cos = min(self.min_cos, float(cos.min()))
        self.sum_cos += float(cos.sum())
        self._relative(err.max(axis=1) / image_scales(r), names)
        self._flips(r, ref_top, var_top, ~same, labels, names)
        self.n += len(r)

    def _relative(self, rel: np.ndarray, names: Sequence[str]) -> None:
        self.max_rel = max(self.max_rel, float(rel.max()))
        for i in np.argsort(-rel)[: self.max_flips]:
            entry = (float(rel[i]), self.n + int(i), str(names[i]))
            if len(self.worst) < self.max_flips:
                heapq.heappush(self.worst, entry)
            elif entry > self.worst[0]:
                heapq.heapreplace(self.worst, entry)

    def _flips(self, r, ref_top, var_top, flipped, labels, names) -> None:
        margins = relative_margins(r)
        for i in np.flatnonzero(flipped):
            self.flip_count += 1
            self.max_flip_margin = max(self.max_flip_margin, float(margins[i]))
            if len(self.flips) < self.max_flips:
                self.flips.append(
                    Flip(
                        name=str(names[i]),
                        reference=int(ref_top[i]),
                        variant=int(var_top[i]),
                        label=None if labels is None else int(labels[i]),
                        reference_margin=float(r[i, ref_top[i]] - r[i, var_top[i]]),
                        relative_margin=float(margins[i]),
                    )
                )

    def drop_labels(self) -> None:
        """Accuracy over a subset would mislead: forget it when some images had no label."""
        self.labeled = self.correct_ref = self.correct_var = 0

    def metrics(self) -> ParityMetrics:
        n = max(self.n, 1)
        ref_acc = var_acc = delta = None
        if self.labeled:
            ref_acc, var_acc = self.correct_ref / self.labeled, self.correct_var / self.labeled
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
            max_rel_error=self.max_rel,
            largest_rel_errors=tuple((name, rel) for rel, _, name in sorted(self.worst, reverse=True)),
            max_flip_margin=self.max_flip_margin,
            nonfinite_images=self.nonfinite,
        )


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _relative_failures(metrics: ParityMetrics, bound: float) -> list[str]:
    """Per-image lines for a ``max_rel`` tolerance: errors above it, decisive top-1 changes."""
    out = [f"{name}: relative error {rel:.2e}" for name, rel in metrics.largest_rel_errors if not rel <= bound]
    if not metrics.max_rel_error <= bound and not out:
        out.append(f"relative error {metrics.max_rel_error:.2e} > {bound:g}")
    decisive = [f for f in metrics.flipped if f.relative_margin > 2.0 * bound]
    out.extend(f"{f.name}: top-1 changed" for f in decisive)
    if metrics.max_flip_margin > 2.0 * bound and not decisive:
        out.append(f"top-1 changed on an image the reference decides by {metrics.max_flip_margin:.2e} of its scale")
    return out


def judge(metrics: ParityMetrics, tolerance: Tolerance) -> tuple[str, ...]:
    """The reasons ``metrics`` fall outside ``tolerance`` (empty: pass)."""
    failures = []
    if metrics.nonfinite_images:
        failures.append(f"non-finite outputs (NaN or inf) for {metrics.nonfinite_images} of {metrics.images} images")
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
    if tolerance.max_rel is not None:
        failures.extend(_relative_failures(metrics, tolerance.max_rel))
    return tuple(failures)
