"""Export's verification: ONNX Runtime vs PyTorch on the same preprocessed photos.

The comparison is parity's (``deploykit.parity``): the same metrics, static-batch padding and
constant-reference guard, judged with export's own tolerance row, ``Tolerance(max_rel=...)``:
the error of each image is measured against the size of that image's logits,
``max|onnx - torch| / max|torch|``, and a top-1 disagreement only fails when the reference's
top-1 margin is larger than the error the tolerance allows, so near-ties (random weights give
near-constant outputs) cannot flip a verdict by float noise. A constant reference is not an
error here (the export is still verified); it is reported as ``constant_output``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from deploykit.errors import CheckFailedError, DeployKitError

if TYPE_CHECKING:
    from torch import nn

    from deploykit.parity import Tolerance

# Why the exported graph alone gives NaN/inf (the hint of a NonFiniteOutputError).
EXPORTED_NONFINITE = (
    "PyTorch's outputs are finite, so the ONNX graph computes differently (an operator lowered "
    "into steps that overflow float32): try another --opset, or report the operator"
)
# Relative to each image's largest |logit|: FP32 ORT vs FP32 PyTorch differ by
# ~1e-6 of that; a wrong operator or weight shows up as 1e-1 or more.
DEFAULT_TOLERANCE = 1e-3
VERIFY_BATCH = 8  # the batch > 1 of the verification (dynamic batch)
REFERENCE_BATCH = 2  # PyTorch's reference runs in small batches: its activations never outweigh the export's peak
# A few images: one thread per backend costs the least CPU (no threads spinning at barriers,
# 6x less CPU for resnet50's reference on a busy 2-core machine, and less wall time there too).
VERIFY_THREADS = 1


def export_tolerance(tolerance: float = DEFAULT_TOLERANCE) -> Tolerance:
    """Export's row of the parity tolerances: per-image relative error, decisive top-1 only."""
    from deploykit.parity import Tolerance

    return Tolerance(max_rel=float(tolerance))


@dataclass(frozen=True)
class Parity:
    """How closely the ONNX model (ONNX Runtime, CPU) reproduces PyTorch's logits.

    ``max_abs``: largest |onnx - torch| over all images, classes and batch sizes.
    ``max_rel``: largest per-image ``max|onnx - torch| / max|torch|``.
    ``top1_agreement``: fraction of (image, batch size) pairs with the same top-1 class.
    ``decisive``: images whose reference top-1 leads the runner-up by more than the
    tolerated error; only those can fail on a top-1 disagreement.
    """

    max_abs: float
    max_rel: float
    top1_agreement: float
    images: int
    batch_sizes: tuple[int, ...]
    decisive: int
    tolerance: float
    passed: bool
    constant_output: bool = False
    image_names: tuple[str, ...] = ()
    failures: tuple[str, ...] = ()
    compared: int = 0  # (image, batch size) pairs compared: batch 1 may run on the first images only

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_abs": float(self.max_abs),
            "max_rel": float(self.max_rel),
            "top1_agreement": float(self.top1_agreement),
            "images": self.images,
            "batch_sizes": list(self.batch_sizes),
            "decisive_images": self.decisive,
            "tolerance": self.tolerance,
            "passed": self.passed,
            "constant_output": self.constant_output,
            "image_names": list(self.image_names),
            "failures": list(self.failures),
            "compared": self.compared,
        }


def _constant(reference: np.ndarray) -> bool:
    """Parity's degenerate-reference guard, as a fact rather than an error."""
    from deploykit.parity import ReferenceStats, degenerate_reason

    stats = ReferenceStats()
    stats.update(reference)
    return degenerate_reason(stats.summary("torch", {})) is not None


def compare_logits(
    reference: np.ndarray,
    candidates: Mapping[int, np.ndarray],
    tolerance: float = DEFAULT_TOLERANCE,
    image_names: Sequence[str] = (),
) -> Parity:
    """Compare candidate logits (one N x classes array per batch size) with the reference.

    A candidate with fewer rows (a batch run on the first images only) is compared with the
    reference's first rows. Pass when every image's relative error is within ``tolerance`` and every *decisive*
    image (reference top-1 margin > 2 x the tolerated error) keeps its top-1 class.
    """
    from deploykit.parity import VariantMetrics, judge, relative_margins

    ref = np.asarray(reference, dtype=np.float64)
    names = [image_names[i] if i < len(image_names) else f"image {i}" for i in range(len(ref))]
    row = export_tolerance(tolerance)
    max_abs = max_rel = 0.0
    agree, total, failures = 0, 0, []
    for batch_size, cand in candidates.items():
        cand = np.asarray(cand, dtype=np.float64)
        if cand.shape[1:] != ref.shape[1:] or not 0 < len(cand) <= len(ref):
            raise CheckFailedError(f"ONNX output shape {cand.shape} at batch {batch_size} differs from PyTorch's {ref.shape}")
        acc = VariantMetrics(max_flips=len(ref))
        acc.update(ref[: len(cand)], cand, None, names[: len(cand)])
        metrics = acc.metrics()
        max_abs, max_rel = max(max_abs, metrics.max_abs_error), max(max_rel, metrics.max_rel_error)
        agree, total = agree + round(metrics.top1_agreement * metrics.images), total + metrics.images
        failures.extend(f"batch {batch_size}, {line}" for line in judge(metrics, row))
    return Parity(
        max_abs=max_abs,
        max_rel=max_rel,
        top1_agreement=agree / total if total else 0.0,
        images=len(ref),
        batch_sizes=tuple(candidates),
        decisive=int((relative_margins(ref) > 2.0 * tolerance).sum()),
        tolerance=float(tolerance),
        passed=not failures,
        constant_output=_constant(ref),
        image_names=tuple(image_names),
        failures=tuple(failures[:10]),
        compared=total,
    )


def _outputs(runner: Any, inputs: np.ndarray, batch_size: int) -> np.ndarray:
    """``inputs`` through ``runner`` in chunks of ``batch_size`` (a static batch is padded by parity)."""
    from deploykit.parity import infer_padded

    outputs = []
    for i in range(0, len(inputs), batch_size):
        try:
            outputs.append(infer_padded(runner, inputs[i : i + batch_size]))
        except DeployKitError:
            raise
        except Exception as exc:  # ORT raises its own runtime error types
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
            raise CheckFailedError(f"ONNX Runtime fails on the exported model at batch {batch_size}: {first}") from exc
    return np.concatenate(outputs)


def reference_logits(module: nn.Module, inputs: np.ndarray) -> np.ndarray:
    """PyTorch's FP32 logits for ``inputs`` (eval mode, TF32 off, batches of REFERENCE_BATCH, VERIFY_THREADS).

    The module itself runs (no copy of its weights); its training flag is restored afterwards.
    """
    import torch

    from deploykit.parity import exact_fp32

    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    was_training, threads = module.training, torch.get_num_threads()
    module.eval()
    torch.set_num_threads(VERIFY_THREADS)
    try:
        with exact_fp32(), torch.inference_mode():
            chunks = [module(torch.from_numpy(inputs[i : i + REFERENCE_BATCH])) for i in range(0, len(inputs), REFERENCE_BATCH)]
            return np.concatenate([chunk.float().numpy() for chunk in chunks])
    finally:
        torch.set_num_threads(threads)
        module.train(was_training)


def verify_against(
    reference: np.ndarray,
    onnx_path: str | os.PathLike,
    inputs: np.ndarray,
    batch_sizes: Sequence[int],
    tolerance: float = DEFAULT_TOLERANCE,
    image_names: Sequence[str] = (),
    batch_one_images: int | None = None,
) -> Parity:
    """ONNX Runtime (CPU) on ``inputs`` at each batch size against ``reference`` (:func:`compare_logits`).

    ``batch_one_images`` limits the batch-1 run to the first images when a larger batch runs
    too (batch 1 checks the graph at that size; the larger batch checks every image). NaN/inf
    logits from PyTorch, then from ONNX Runtime, are a NonFiniteOutputError (bad input) naming the side.
    """
    from deploykit.parity.metrics import REFERENCE_NONFINITE, check_finite
    from deploykit.runtimes.onnxruntime_runner import OnnxRuntimeRunner

    check_finite(reference, "the PyTorch model", REFERENCE_NONFINITE, image_names)
    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    limit = {1: batch_one_images} if batch_one_images and len(set(batch_sizes)) > 1 else {}
    # No prepacked copy of the weights for a few runs: vgg16 loads in 0.15 s of CPU instead of 0.5 s
    # and holds 0.25 GB less (benchmarks/results/export_cost.md).
    with OnnxRuntimeRunner(onnx_path, name="onnxruntime:verify", threads=VERIFY_THREADS, prepack=False) as runner:
        candidates = {b: _outputs(runner, inputs[: limit.get(b, len(inputs))], b) for b in batch_sizes}
    for b, logits in candidates.items():
        check_finite(logits, f"the exported ONNX model (ONNX Runtime, batch {b})", EXPORTED_NONFINITE, image_names)
    return compare_logits(reference, candidates, tolerance, image_names)


def verify_onnx(
    module: nn.Module,
    onnx_path: str | os.PathLike,
    inputs: np.ndarray,
    batch_sizes: Sequence[int],
    tolerance: float = DEFAULT_TOLERANCE,
    image_names: Sequence[str] = (),
    static_batch: bool = False,
) -> Parity:
    """Run ``inputs`` (N x C x H x W) through PyTorch and ONNX Runtime (CPU) at each batch
    size and compare (:func:`compare_logits`). A model with a static batch gets its last
    partial batch padded by repeating an image (the padding is not scored); ``static_batch``
    is read from the file itself and kept for callers that pass it."""
    reference = reference_logits(module, inputs)
    return verify_against(reference, onnx_path, inputs, batch_sizes, tolerance, image_names)
