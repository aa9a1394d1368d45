"""Any ``nn.Module`` classifier into the model repository: :func:`export_module` from Python,
``deploykit export NAME --module package.module:factory`` from the command line.

The same export, verification, sidecar and Triton config as a zoo model. The sidecar's
``weights`` entry records the module's class, the factory and seed when there are any, and the
state dict's hash: parity rebuilds a factory-made module from them, and compares the variants of
a module without a factory with the FP32 ONNX file under ONNX Runtime.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from deploykit.errors import UsageError
from deploykit.export.exporter import DEFAULT_OPSET
from deploykit.export.job import (
    DEFAULT_MAX_BATCH_SIZE,
    VERIFY_IMAGES,
    ExportOptions,
    ExportResult,
    Progress,
    _positive,
    _sized,
    run_export,
)
from deploykit.export.record import Origin
from deploykit.export.verify import DEFAULT_TOLERANCE

if TYPE_CHECKING:
    from torch import nn
def _module_classes(module: nn.Module, size: int, num_classes: int | None) -> int:
    """The classifier's output count, read from one forward pass (checked against ``num_classes``)."""
    import torch

    from deploykit.export.exporter import _run_forward

    with torch.random.fork_rng(devices=[]):
        was_training = module.training
        module.eval()
        try:
            out = _run_forward(module, torch.zeros(1, 3, size, size))
        finally:
            module.train(was_training)
    if out.ndim != 2:
        raise UsageError(f"the module returns shape {tuple(out.shape)}, not (batch, classes) logits")
    if num_classes is not None and num_classes != out.shape[1]:
        raise UsageError(f"the module has {out.shape[1]} outputs, not --num-classes {num_classes}")
    return int(out.shape[1])


def module_origin(
    module: nn.Module, entry: dict[str, Any], input_size: int, num_classes: int | None, preprocessing: Any, labels: Any
) -> Origin:
    """Any classifier module: ImageNet preprocessing at ``input_size`` unless given."""
    from deploykit.preprocessing import Preprocessing
    from deploykit.weights import state_sha256

    classes = _module_classes(module, input_size, num_classes)
    entry = {**entry, "class": f"{type(module).__module__}.{type(module).__qualname__}", "sha256": state_sha256(module)}
    pre = _sized(preprocessing or Preprocessing(), input_size)
    source = f"module:{entry['factory']}" if entry.get("factory") else f"python:{entry['class']}"
    origin = Origin(module, source, entry["sha256"], entry, pre, classes, input_size)
    if labels is not None:
        if len(labels) != classes:
            raise UsageError(f"{len(labels)} labels for a module with {classes} outputs")
        origin.labels, origin.labels_source = list(labels), "given"
    if preprocessing is None:
        origin.notes.append("no preprocessing given: ImageNet's (resize 256/224, mean/std) recorded; pass the right one")
    if not entry.get("factory"):
        origin.notes.append("a module without a factory cannot be rebuilt: parity compares with the FP32 ONNX file")
    return origin


def export_module(
    module: nn.Module,
    name: str,
    *,
    repo: str | os.PathLike = "models",
    input_size: int = 224,
    num_classes: int | None = None,
    preprocessing: Any = None,
    labels: Sequence[str] | None = None,
    factory: str | None = None,
    seed: int | None = None,
    opset: int = DEFAULT_OPSET,
    batch: int | None = None,
    data: str | os.PathLike | None = None,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    tolerance: float = DEFAULT_TOLERANCE,
    progress: Progress | None = None,
    force: bool = False,
    exporter: str = "dynamo",
    verify_images: int = VERIFY_IMAGES,
    external_data_threshold: int | None = None,
) -> ExportResult:
    """Any image classifier ``module`` (one N x 3 x H x W tensor in, one logits tensor out) to
    ``<repo>/<name>_onnx_fp32/``, with the same verification, sidecar and Triton config as a
    zoo model. ``preprocessing`` (a :class:`deploykit.preprocessing.Preprocessing`) defaults to
    ImageNet's at ``input_size``; ``labels`` name the outputs; ``verify_images`` and ``external_data_threshold``: as :func:`export_model`'s. ``factory`` ("pkg.mod:fn") and
    ``seed`` are recorded so parity can rebuild the module; without them parity compares the
    variants with the FP32 ONNX file under ONNX Runtime. ``exporter``: as :func:`export_model`'s.
    """
    from deploykit.repository import validate_name

    validate_name(name)
    _positive(input_size, "input_size", 16, 4096)
    _positive(num_classes, "num_classes", 1, 1_000_000)
    options = ExportOptions(opset, batch, max_batch_size, tolerance, data, external_data_threshold, force, exporter, verify_images)
    entry = {"kind": "module", "factory": factory, "seed": seed}

    def make_origin() -> Origin:
        return module_origin(module, entry, input_size, num_classes, preprocessing, labels)

    return run_export(name, make_origin, repo, options, progress)


def export_factory(spec: str, name: str, *, seed: int = 0, **options: Any) -> ExportResult:
    """``deploykit export NAME --module pkg.mod:factory``: call the factory under ``seed``, export the module."""
    from deploykit.weights import module_from_factory

    module, _ = module_from_factory(spec, seed)
    return export_module(module, name, factory=spec, seed=seed, **options)
