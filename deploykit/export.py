"""PyTorch -> verified ONNX: the only module that calls ``torch.onnx``.

Two entry points:

- :func:`export_onnx` turns any ``nn.Module`` into an ONNX file with the maintained exporter
  (``torch.onnx.export(..., dynamo=True)``), checks the opset it really produced, slims the
  graph, runs ``onnx.checker`` and strict shape inference, and lists the operators TensorRT's
  ONNX parser would refuse. Models above 2 GB get ONNX external data on the same path.
- :func:`export_model` does the whole ``deploykit export NAME`` job for a zoo model: build (or
  load ``--weights``), export, verify against PyTorch with ONNX Runtime on real photos at
  batch 1 and batch > 1, then write ``<repo>/<name>_onnx_fp32/`` atomically with its Triton
  ``config.pbtxt`` and lineage sidecar. Nothing lands in the repository unless every step passed.

Verification tolerance (see :func:`compare_logits`): the error of each image is measured
against the size of that image's logits, ``max|onnx - torch| / max|torch|``, and a
top-1 disagreement only fails when the reference's top-1 margin is larger than the error
the tolerance allows, so near-ties (random weights give near-constant outputs) cannot flip
a verdict by float noise.
"""

from __future__ import annotations

import contextlib
import gc
import json
import logging
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deploykit.errors import CheckFailedError, DeployKitError, UsageError
from deploykit.runtimes.base import TensorSpec

if TYPE_CHECKING:
    import onnx
    import torch
    from torch import nn

    from deploykit.artifacts import Artifact
    from deploykit.checkpoints import LoadReport
    from deploykit.onnx_checks import TrtPreflight
    from deploykit.zoo import ModelCard

DEFAULT_OPSET = 18
# Relative to each image's largest |logit|: FP32 ORT vs FP32 PyTorch differ by
# ~1e-6 of that; a wrong operator or weight shows up as 1e-1 or more.
DEFAULT_TOLERANCE = 1e-3
DEFAULT_MAX_BATCH_SIZE = 32
VERIFY_IMAGES = 16  # at most this many images from --data; the bundled sample set has 8
VERIFY_BATCH = 8  # the batch > 1 of the verification (dynamic batch)
EXPORTER = "torch.onnx.export(dynamo=True)"
_QUIET_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "torch.fx", "torch._dynamo", "onnxscript", "onnx_ir")

Progress = Callable[[str], None]


# =================================================================================================
# export_onnx: any nn.Module
# =================================================================================================
@dataclass(frozen=True)
class OnnxExport:
    """A checked ONNX file written by :func:`export_onnx`.

    ``input``/``output`` shapes use -1 for the dynamic batch dimension. ``bytes`` counts the
    model file plus its external-data file (``external_data``, None when self-contained).
    """

    path: Path
    opset: int
    input: TensorSpec
    output: TensorSpec
    dynamic_batch: bool
    bytes: int
    external_data: Path | None
    operators: Mapping[str, int]
    tensorrt: TrtPreflight
    nodes_exported: int
    nodes: int
    exporter: Mapping[str, str]
    notes: tuple[str, ...] = ()
    seconds: float = 0.0

    @property
    def unsupported_ops(self) -> tuple[str, ...]:
        return self.tensorrt.unsupported

    def files(self) -> list[Path]:
        """The model file and its external-data file, if any."""
        return [self.path, *([self.external_data] if self.external_data else [])]

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "opset": self.opset,
            "input": asdict(self.input),
            "output": asdict(self.output),
            "dynamic_batch": self.dynamic_batch,
            "bytes": self.bytes,
            "external_data": self.external_data.name if self.external_data else None,
            "operators": dict(self.operators),
            "nodes": {"exported": self.nodes_exported, "slimmed": self.nodes},
            "tensorrt_preflight": self.tensorrt.to_dict(),
            "exporter": dict(self.exporter),
            "notes": list(self.notes),
            "seconds": round(self.seconds, 3),
        }


def exporter_versions() -> dict[str, str]:
    """The exporter and the libraries that shape its output, for sidecars and metadata."""
    from deploykit.artifacts import library_versions

    return {"exporter": EXPORTER, **library_versions("torch", "onnx", "onnxscript", "onnx-ir", "onnxslim")}


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[list[str]]:
    """Silence the exporter's warnings and log chatter (deploykit reports what matters itself);
    yields the captured messages so an error can still show them."""
    captured: list[str] = []

    class Capture(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            with contextlib.suppress(Exception):
                captured.append(record.getMessage().splitlines()[0][:300])

    handler = Capture(level=logging.WARNING)
    saved = []
    for name in _QUIET_LOGGERS:
        # torch installs its own stderr handlers on these loggers: swap them out for the capture.
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate, logger.handlers[:]))
        logger.handlers = [handler]
        logger.setLevel(logging.WARNING)
        logger.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield captured
    finally:
        for logger, level, propagate, handlers in saved:
            logger.handlers = handlers
            logger.setLevel(level)
            logger.propagate = propagate


def _check_opset_request(opset: int) -> None:
    import onnx

    newest = onnx.defs.onnx_opset_version()
    if not isinstance(opset, int) or isinstance(opset, bool) or not 1 <= opset <= newest:
        raise UsageError(
            f"opset {opset!r} is not an ONNX opset this onnx ({onnx.__version__}) knows",
            hint=f"use an opset from {DEFAULT_OPSET} to {newest} (default {DEFAULT_OPSET})",
        )


def _first_line(exc: BaseException, limit: int = 300) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return (lines[0] if lines else type(exc).__name__)[:limit]


def _run_forward(module: nn.Module, example: torch.Tensor) -> torch.Tensor:
    """One eager forward pass: a clear error for a wrong input size or several outputs."""
    import torch

    try:
        with torch.inference_mode():
            out = module(example)
    except Exception as exc:  # any model error on this input is the user's input-size problem
        raise UsageError(
            f"the model cannot run on an input of shape {tuple(example.shape)}: {_first_line(exc)}",
            hint="check --input-size (the card's default suits the model)",
        ) from exc
    if not isinstance(out, torch.Tensor):
        n = len(out) if isinstance(out, (tuple, list)) else "several"
        raise UsageError(
            f"the model returns {type(out).__name__} ({n} outputs), not one logits tensor",
            hint="export the eval-mode network without training-only heads (e.g. GoogLeNet's aux_logits=False)",
        )
    return out


def _torch_export(module, example, opset, dynamic_batch, input_name, output_name) -> onnx.ModelProto:
    """``torch.onnx.export(dynamo=True)`` with a symbolic batch dimension (or a fixed one)."""
    import torch

    kwargs = dict(
        dynamo=True,
        opset_version=opset,
        input_names=[input_name],
        output_names=[output_name],
        verbose=False,
        optimize=True,
    )
    attempts = [None]
    if dynamic_batch:
        # min=1 first; some torch versions specialize a 0/1-sized dim, where min=2 is the fix
        # (batch 1 is still verified in ONNX Runtime afterwards).
        attempts = [({0: torch.export.Dim("batch", min=1)},), ({0: torch.export.Dim("batch", min=2)},)]
    last: Exception | None = None
    for dynamic_shapes in attempts:
        with _quiet_exporter():
            try:
                program = torch.onnx.export(module, (example,), dynamic_shapes=dynamic_shapes, **kwargs)
            except Exception as exc:  # the exporter raises many types; each becomes one message
                last = exc
                if _is_shape_constraint(exc):
                    continue  # try the next batch range
                break
        if program is None:  # pragma: no cover - only the legacy exporter returns None
            raise DeployKitError("torch.onnx.export returned no program")
        return program.model_proto
    assert last is not None
    hint = "report the model; a static --batch N sometimes avoids it" if dynamic_batch else None
    if dynamic_batch and _is_shape_constraint(last):
        hint = "the model fixes its batch size internally: export with a static --batch N"
    raise DeployKitError(f"torch.onnx.export failed: {_first_line(last)}", hint=hint) from last


def _is_shape_constraint(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(word in text for word in ("constraint", "specializ", "guard", "dynamic_shapes"))


def _set_metadata(model: onnx.ModelProto, metadata: Mapping[str, Any] | None) -> None:
    if not metadata:
        return
    existing = {p.key: p for p in model.metadata_props}
    for key, value in metadata.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        if key in existing:
            existing[key].value = text
        else:
            prop = model.metadata_props.add()
            prop.key, prop.value = str(key), text


def _tensor_spec(value_info: Any) -> TensorSpec:
    import onnx

    dims = tuple(d.dim_value if d.HasField("dim_value") else -1 for d in value_info.type.tensor_type.shape.dim)
    dtype = onnx.helper.tensor_dtype_to_np_dtype(value_info.type.tensor_type.elem_type).name
    return TensorSpec(value_info.name, dims, dtype)


def export_onnx(
    module: nn.Module,
    input_shape: Sequence[int],
    path: str | os.PathLike,
    *,
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
    input_name: str = "input",
    output_name: str = "logits",
    metadata: Mapping[str, Any] | None = None,
    slim: bool = True,
    external_data_threshold: int | None = None,
) -> OnnxExport:
    """Export ``module`` (any ``nn.Module`` with one tensor in and one tensor out) to ``path``.

    ``input_shape`` is the full input shape, batch first (``(1, 3, 224, 224)``). With
    ``dynamic_batch`` the batch dimension is symbolic (``batch``) and the given batch is only
    the tracing example; otherwise it is fixed. The module is exported in eval mode (its
    training flag is restored afterwards). ``metadata`` goes into the model's
    ``metadata_props`` (non-string values as JSON).

    Raises UsageError when the installed exporter cannot produce ``opset`` (it silently
    moves requests below 18, and unknown ones, to 18: the produced opset is read back),
    CheckFailedError when onnx.checker or strict shape inference reject the graph.
    Above ``external_data_threshold`` bytes (default: just under protobuf's 2 GB) the weights
    go to ``<path>.data``.
    """
    import onnx
    import torch

    from deploykit import onnx_checks

    start = time.perf_counter()
    _check_opset_request(opset)
    shape = tuple(int(s) for s in input_shape)
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise UsageError(f"input shape {tuple(input_shape)} must be (batch, ...) with positive sizes")
    path = Path(path)
    if path.suffix != ".onnx":
        raise UsageError(f"the ONNX path {path} must end in .onnx")
    threshold = onnx_checks.EXTERNAL_DATA_THRESHOLD if external_data_threshold is None else external_data_threshold

    # Trace with a batch of 2 for a dynamic batch, so the exporter cannot specialize size 1.
    example_batch = max(shape[0], 2) if dynamic_batch else shape[0]
    example = torch.randn((example_batch, *shape[1:]), generator=torch.Generator().manual_seed(0))
    was_training = module.training
    module.eval()
    try:
        _run_forward(module, example)
        model = _torch_export(module, example, opset, dynamic_batch, input_name, output_name)
    finally:
        module.train(was_training)

    produced = onnx_checks.main_opset(model)
    if produced != opset:
        raise UsageError(
            f"the installed exporter (torch {torch.__version__}) cannot produce opset {opset}: it produced opset {produced}",
            hint=f"use --opset {produced}, or an exporter that supports opset {opset}",
        )
    batch_dim = model.graph.input[0].type.tensor_type.shape.dim[0] if model.graph.input else None
    if dynamic_batch and batch_dim is not None and batch_dim.HasField("dim_value"):
        raise DeployKitError(
            f"the exporter fixed the batch dimension to {batch_dim.dim_value}: the model's code depends on the batch size",
            hint="export with a static batch (--batch N)",
        )
    if len(model.graph.input) != 1 or len(model.graph.output) != 1:
        raise UsageError(
            f"the exported graph has {len(model.graph.input)} inputs and {len(model.graph.output)} outputs; "
            "deploykit deploys one image tensor in and one logits tensor out"
        )

    notes: list[str] = []
    nodes_exported = len(model.graph.node)
    if slim:
        slimmed = onnx_checks.slim(model)
        model = slimmed.model
        if slimmed.note:
            notes.append(slimmed.note)
    _set_metadata(model, metadata)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        external = onnx_checks.save_model(model, path, external_data_threshold=threshold)
        del model
        onnx_checks.infer_shapes_in_place(path)
        onnx_checks.check_model(path)
        saved = onnx.load(str(path), load_external_data=False)
    except BaseException:
        for leftover in (path, path.with_name(f"{path.name}.data")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
        raise
    if external:
        why = "the 2 GB protobuf limit" if external_data_threshold is None else f"{threshold:,} bytes"
        notes.append(f"weights stored as ONNX external data in {external.name} (the model is above {why})")
    operators = onnx_checks.operator_counts(saved)
    preflight = onnx_checks.tensorrt_preflight(saved, operators)
    return OnnxExport(
        path=path,
        opset=int(produced),
        input=_tensor_spec(saved.graph.input[0]),
        output=_tensor_spec(saved.graph.output[0]),
        dynamic_batch=dynamic_batch,
        bytes=onnx_checks.model_file_bytes(path),
        external_data=external,
        operators=operators,
        tensorrt=preflight,
        nodes_exported=nodes_exported,
        nodes=len(saved.graph.node),
        exporter=exporter_versions(),
        notes=tuple(notes),
        seconds=time.perf_counter() - start,
    )


# =================================================================================================
# Verification: ONNX Runtime vs PyTorch on the same preprocessed photos
# =================================================================================================
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
        }


def compare_logits(
    reference: np.ndarray,
    candidates: Mapping[int, np.ndarray],
    tolerance: float = DEFAULT_TOLERANCE,
    image_names: Sequence[str] = (),
) -> Parity:
    """Compare candidate logits (one N x classes array per batch size) with the reference.

    Pass when every image's relative error is within ``tolerance`` and every *decisive*
    image (reference top-1 margin > 2 x the tolerated error) keeps its top-1 class.
    """
    ref = np.asarray(reference, dtype=np.float64)
    # No absolute floor: random-init zoo models give logits from ~1e-9 (MobileNetV2) to ~5
    # (ResNet), so only a scale taken from the logits themselves means the same everywhere.
    # An image whose logits are all ~0 borrows a millionth of the batch's scale.
    image_scale = np.abs(ref).max(axis=1)
    scale = np.maximum(image_scale, max(1e-6 * float(image_scale.max(initial=0.0)), 1e-30))
    if ref.shape[1] > 1:
        top2 = np.sort(ref, axis=1)[:, -2:]
        margin = top2[:, 1] - top2[:, 0]
    else:  # one output: no top-1 to flip
        margin = np.full(len(ref), np.inf)
    decisive = margin > 2.0 * tolerance * scale
    ref_top1 = ref.argmax(axis=1)

    max_abs, max_rel, agree, total, failures = 0.0, 0.0, 0, 0, []
    for batch_size, cand in candidates.items():
        cand = np.asarray(cand, dtype=np.float64)
        if cand.shape != ref.shape:
            raise CheckFailedError(f"ONNX output shape {cand.shape} at batch {batch_size} differs from PyTorch's {ref.shape}")
        if not np.isfinite(cand).all():
            failures.append(f"batch {batch_size}: non-finite outputs")
            max_abs = max_rel = float("inf")
            continue
        err = np.abs(cand - ref).max(axis=1)
        rel = err / scale
        max_abs, max_rel = max(max_abs, float(err.max())), max(max_rel, float(rel.max()))
        same = cand.argmax(axis=1) == ref_top1
        agree, total = agree + int(same.sum()), total + len(same)
        for i in np.flatnonzero(rel > tolerance):
            failures.append(f"batch {batch_size}, {_name(image_names, i)}: relative error {rel[i]:.2e}")
        for i in np.flatnonzero(~same & decisive):
            failures.append(f"batch {batch_size}, {_name(image_names, i)}: top-1 changed")
    spread = np.abs(ref - ref[:1]).max() if len(ref) > 1 else np.inf
    return Parity(
        max_abs=max_abs,
        max_rel=max_rel,
        top1_agreement=agree / total if total else 0.0,
        images=len(ref),
        batch_sizes=tuple(candidates),
        decisive=int(decisive.sum()),
        tolerance=float(tolerance),
        passed=not failures,
        constant_output=bool(spread <= 1e-4 * scale.max()),
        image_names=tuple(image_names),
        failures=tuple(failures[:10]),
    )


def _name(names: Sequence[str], i: int) -> str:
    return names[i] if i < len(names) else f"image {i}"


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
    size and compare (:func:`compare_logits`). With ``static_batch`` the last partial batch is
    padded by repeating images (the padding is not scored)."""
    import torch

    from deploykit.runtimes.onnxruntime_runner import OnnxRuntimeRunner

    inputs = np.ascontiguousarray(inputs, dtype=np.float32)
    was_training = module.training
    module.eval()
    try:
        with torch.inference_mode():
            reference = np.concatenate(
                [module(torch.from_numpy(inputs[i : i + VERIFY_BATCH])).float().numpy() for i in range(0, len(inputs), VERIFY_BATCH)]
            )
    finally:
        module.train(was_training)

    candidates: dict[int, np.ndarray] = {}
    with OnnxRuntimeRunner(onnx_path, name="onnxruntime:verify") as runner:
        for batch_size in batch_sizes:
            outputs = []
            for i in range(0, len(inputs), batch_size):
                chunk = inputs[i : i + batch_size]
                n = len(chunk)
                if static_batch and n < batch_size:
                    chunk = np.concatenate([chunk, np.resize(inputs, (batch_size - n, *inputs.shape[1:]))])
                try:
                    outputs.append(runner.infer(chunk)[:n])
                except DeployKitError:
                    raise
                except Exception as exc:  # ORT raises its own runtime error types
                    raise CheckFailedError(
                        f"ONNX Runtime fails on the exported model at batch {batch_size}: {_first_line(exc)}"
                    ) from exc
            candidates[batch_size] = np.concatenate(outputs)
    return compare_logits(reference, candidates, tolerance, image_names)


# =================================================================================================
# export_model: a zoo model into the model repository
# =================================================================================================
@dataclass(frozen=True)
class ExportResult:
    """What ``deploykit export NAME`` made; ``to_dict()`` is the JSON contract of ``--format json``."""

    model: str
    artifact: Artifact
    opset: int
    bytes: int
    parity: Parity
    dropped_keys: tuple[str, ...]
    unsupported_ops: tuple[str, ...]
    seconds: float
    input: TensorSpec
    output: TensorSpec
    num_classes: int
    weights: str  # sha256 of the checkpoint, or "random-init"
    onnx: OnnxExport
    labels: str | None = None  # where the class labels came from, if known
    images: str = "scikit-image sample photos"
    notes: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        return self.artifact.path

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "path": str(self.artifact.path),
            "opset": self.opset,
            "bytes": self.bytes,
            "parity": {
                "max_abs": float(self.parity.max_abs),
                "max_rel": float(self.parity.max_rel),
                "top1_agreement": float(self.parity.top1_agreement),
                "images": self.parity.images,
                "batch_sizes": list(self.parity.batch_sizes),
                "decisive_images": self.parity.decisive,
                "tolerance": self.parity.tolerance,
                "constant_output": self.parity.constant_output,
            },
            "seconds": round(self.seconds, 3),
            "variant": self.artifact.variant,
            "input": asdict(self.input),
            "output": asdict(self.output),
            "num_classes": self.num_classes,
            "weights": self.weights,
            "dropped_keys": list(self.dropped_keys),
            "unsupported_tensorrt_ops": list(self.unsupported_ops),
            "external_data": self.onnx.external_data.name if self.onnx.external_data else None,
            "labels": self.labels,
            "verification_images": self.images,
            "notes": list(self.notes),
        }


def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names torchvision ships in its weight metadata (no download)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.DEFAULT.meta["categories"])


def _labels_for(card: ModelCard, num_classes: int, data_classes: list[str] | None) -> tuple[list[str] | None, str | None]:
    if data_classes and len(data_classes) == num_classes:
        return data_classes, "class folders of --data"
    if num_classes == 1000:
        with contextlib.suppress(Exception):
            import torchvision

            name = card.torchvision_name
            if name:
                return list(torchvision.models.get_model_weights(name).DEFAULT.meta["categories"]), "imagenet-1k (torchvision)"
            return imagenet_labels(), "imagenet-1k (torchvision)"
    return None, None


def _verification_images(data: str | os.PathLike | None) -> tuple[list[tuple[str, np.ndarray]], list[str] | None, str]:
    from deploykit.data import list_images, load_rgb, sample_images

    if data is None:
        return sample_images(), None, "scikit-image sample photos"
    items = list_images(data)
    classes = sorted({i.class_name for i in items if i.class_name}) or None
    # Spread the pick over the classes (items are sorted by class): every k-th file.
    step = max(1, len(items) // VERIFY_IMAGES)
    picked = items[::step][:VERIFY_IMAGES]
    return [(i.name, load_rgb(i.path)) for i in picked], classes, f"{len(picked)} images from {data}"


def _validate_options(opset, batch, input_size, num_classes, max_batch_size, tolerance) -> None:
    def positive(value, what, low=1, high=None):
        if value is None:
            return
        if not isinstance(value, int) or isinstance(value, bool) or value < low or (high and value > high):
            limit = f"{low}..{high}" if high else f">= {low}"
            raise UsageError(f"{what} must be an integer {limit}, got {value!r}")

    _check_opset_request(opset)
    positive(batch, "--batch", 1, 4096)
    positive(input_size, "--input-size", 16, 4096)
    positive(num_classes, "--num-classes", 1, 1_000_000)
    positive(max_batch_size, "--max-batch-size", 1, 4096)
    if not isinstance(tolerance, (int, float)) or not tolerance >= 0:
        raise UsageError(f"tolerance must be a number >= 0, got {tolerance!r}")


def _step(progress: Progress | None, text: str) -> None:
    if progress is not None:
        progress(text)


def export_model(
    name: str,
    *,
    repo: str | os.PathLike = "models",
    weights: str | os.PathLike | None = None,
    opset: int = DEFAULT_OPSET,
    batch: int | None = None,
    input_size: int | None = None,
    num_classes: int | None = None,
    data: str | os.PathLike | None = None,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    tolerance: float = DEFAULT_TOLERANCE,
    progress: Progress | None = None,
    external_data_threshold: int | None = None,
) -> ExportResult:
    """Export zoo model ``name`` to ``<repo>/<name>_onnx_fp32/`` and verify it.

    ``batch`` None exports a dynamic batch (Triton ``max_batch_size`` = ``max_batch_size``);
    an integer fixes it (Triton ``max_batch_size: 0``, the batch in the dims). ``data`` is a
    folder of images for verification (default: scikit-image's sample photos). Raises
    UsageError for bad input, CheckFailedError when ONNX Runtime disagrees with PyTorch
    beyond ``tolerance``; in every failure (KeyboardInterrupt included) the repository is
    left as it was. ``progress(step)`` is called as each step starts.
    """
    from deploykit.repository import ModelRepository, validate_name
    from deploykit.zoo import get_card

    start = time.perf_counter()
    validate_name(name)
    card = get_card(name)
    _validate_options(opset, batch, input_size, num_classes, max_batch_size, tolerance)
    repository = ModelRepository(repo)
    created_root = not repository.root.exists()
    repository.check_writable()  # before minutes of work, not after
    try:
        return _export_into(
            repository, name, card, start=start, weights=weights, opset=opset, batch=batch,
            input_size=input_size, num_classes=num_classes, data=data, max_batch_size=max_batch_size,
            tolerance=tolerance, progress=progress, external_data_threshold=external_data_threshold,
        )  # fmt: skip
    except BaseException:
        if created_root:  # a failed first export leaves no trace, not even an empty folder
            with contextlib.suppress(OSError):
                repository.root.rmdir()
        raise
    finally:
        gc.collect()


def _export_into(
    repository,
    name: str,
    card: ModelCard,
    *,
    start: float,
    weights,
    opset: int,
    batch: int | None,
    input_size: int | None,
    num_classes: int | None,
    data,
    max_batch_size: int,
    tolerance: float,
    progress: Progress | None,
    external_data_threshold: int | None,
) -> ExportResult:
    from deploykit import __version__
    from deploykit.artifacts import now_iso, variant_name
    from deploykit.data import preprocess_batch
    from deploykit.triton.config import (
        PLATFORMS,
        TensorConfig,
        TritonModelConfig,
        default_preferred,
    )
    from deploykit.zoo import get_model

    size = input_size or card.input_size
    classes = num_classes or 1000
    pre = card.preprocessing

    _step(progress, "reading images")
    images, data_classes, images_desc = _verification_images(data)

    _step(progress, f"building {name}")
    module = get_model(name, num_classes=classes).eval()
    report: LoadReport | None = None
    notes: list[str] = []
    if weights is not None:
        from deploykit.checkpoints import load_weights

        _step(progress, f"loading weights {Path(weights).name}")
        report = load_weights(module, weights)
        notes.extend(report.notes)
    else:
        notes.append("random weights (no --weights): the export is verified, the predictions are meaningless")

    labels, labels_source = _labels_for(card, classes, data_classes)
    preprocessing = {**asdict(pre), "crop": size, "resize": max(int(round(size * pre.resize / pre.crop)), size)}
    variant = variant_name(name, "onnx", "fp32")
    source = f"pytorch:{name}"
    weights_id = report.sha256 if report else "random-init"
    created = now_iso()
    metadata = {
        "model": name,
        "variant": variant,
        "source": source,
        "precision": "fp32",
        "opset": str(opset),
        "weights_sha256": weights_id,
        "num_classes": str(classes),
        "input": f"input float32 [{'batch' if batch is None else batch}, 3, {size}, {size}] NCHW RGB",
        "preprocessing": preprocessing,
        "created_at": created,
        "producer": f"deploykit {__version__}",
        **({"labels": labels} if labels else {}),
    }

    repository.root.mkdir(parents=True, exist_ok=True)
    # Scratch space inside the repository (same file system: the final move is a rename);
    # hidden, so listings skip it, and removed whatever happens.
    scratch = Path(tempfile.mkdtemp(prefix=f".{variant}.export-", dir=repository.root))
    try:
        _step(progress, f"exporting to ONNX (opset {opset})")
        exported = export_onnx(
            module,
            (batch or 1, 3, size, size),
            scratch / "model.onnx",
            opset=opset,
            dynamic_batch=batch is None,
            metadata=metadata,
            external_data_threshold=external_data_threshold,
        )
        notes.extend(exported.notes)
        trt = exported.tensorrt
        if exported.unsupported_ops:
            notes.append(f"TensorRT {trt.tensorrt_version}'s ONNX parser does not support: " + ", ".join(exported.unsupported_ops))
        if trt.violations:
            notes.append(f"TensorRT {trt.tensorrt_version} restrictions broken: " + "; ".join(trt.violations[:3]))
        if not trt.opset_supported:
            from deploykit.onnx_checks import tensorrt_operator_list

            table = tensorrt_operator_list()
            notes.append(
                f"opset {trt.opset} is outside the opsets {table.opset_min}-{table.opset_max} "
                f"TensorRT {trt.tensorrt_version}'s ONNX parser documents"
            )

        _step(progress, f"verifying with ONNX Runtime on {len(images)} images")
        inputs = preprocess_batch([img for _, img in images], pre, size)
        batch_sizes = (1, min(VERIFY_BATCH, len(inputs))) if batch is None else (batch,)
        batch_sizes = tuple(dict.fromkeys(batch_sizes))
        parity = verify_onnx(
            module, exported.path, inputs, batch_sizes, tolerance, [n for n, _ in images], static_batch=batch is not None
        )
        if parity.constant_output:
            notes.append(
                "PyTorch gives (nearly) the same logits for every image (random weights with untouched "
                "BatchNorm statistics?): parity holds, but says little; export trained weights to check predictions"
            )
        if not parity.passed:
            raise CheckFailedError(
                f"ONNX Runtime disagrees with PyTorch for {name}: {'; '.join(parity.failures[:3])} "
                f"(max abs {parity.max_abs:.3g}, max rel {parity.max_rel:.3g}, tolerance {tolerance:g})",
                hint="nothing was written; the exporter or an operator changed the numbers",
            )

        dims_in = tuple(d for d in exported.input.shape[1:]) if batch is None else exported.input.shape
        dims_out = tuple(d for d in exported.output.shape[1:]) if batch is None else exported.output.shape
        config = TritonModelConfig(
            name=variant,
            platform=PLATFORMS["onnx"],
            max_batch_size=max_batch_size if batch is None else 0,
            inputs=(TensorConfig(exported.input.name, exported.input.dtype, dims_in),),
            outputs=(TensorConfig(exported.output.name, exported.output.dtype, dims_out),),
            instance_kind="KIND_CPU",
            preferred_batch_sizes=default_preferred(max_batch_size) if batch is None else (),
        )
        sidecar = {
            "source": source,
            "lineage": [],
            "weights_sha256": weights_id,
            "weights": report.to_dict() if report else "random-init",
            "num_classes": classes,
            "input": {**asdict(exported.input), "layout": "NCHW", "color": "RGB", "dynamic_batch": batch is None},
            "output": asdict(exported.output),
            "preprocessing": preprocessing,
            "labels": labels,
            "labels_source": labels_source,
            "opset": exported.opset,
            "exporter": dict(exported.exporter),
            "libraries": _libraries(),
            "parity": {**parity.to_dict(), "runtime": "onnxruntime (CPUExecutionProvider)", "images_from": images_desc},
            "unsupported_tensorrt_ops": list(exported.unsupported_ops),
            "tensorrt_preflight": exported.tensorrt.to_dict(),
            "operators": dict(exported.operators),
            "external_data": exported.external_data.name if exported.external_data else None,
            "max_batch_size": config.max_batch_size,
            "model_card": {"family": card.family, "year": card.year, "paper": card.paper},
            "dropped_keys": list(report.dropped_keys) if report else [],
            "onnx_created_at": created,
        }

        def write_model(target: Path) -> None:
            for file in exported.files():
                os.replace(file, target.parent / (target.name if file == exported.path else file.name))
            _step(progress, "writing to the model repository")

        artifact = repository.write_variant(
            name, "onnx", "fp32", write_model=write_model, config_pbtxt=config.render(), sidecar=sidecar, parent=source
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        del module

    return ExportResult(
        model=name,
        artifact=artifact,
        opset=exported.opset,
        bytes=exported.bytes,
        parity=parity,
        dropped_keys=report.dropped_keys if report else (),
        unsupported_ops=exported.unsupported_ops,
        seconds=time.perf_counter() - start,
        input=exported.input,
        output=exported.output,
        num_classes=classes,
        weights=weights_id,
        onnx=exported,
        labels=labels_source,
        images=images_desc,
        notes=tuple(notes),
    )


def _libraries() -> dict[str, str]:
    from deploykit.artifacts import library_versions

    return library_versions("torch", "torchvision", "onnx", "onnxscript", "onnxslim", "onnxruntime", "numpy")


# =================================================================================================
# Several models (``deploykit export --all``)
# =================================================================================================
@dataclass(frozen=True)
class ExportFailure:
    model: str
    error: str
    hint: str | None = None
    exit_code: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "error": self.error, "hint": self.hint}


@dataclass(frozen=True)
class ExportBatch:
    """Every model's result or failure; truthy when all succeeded."""

    results: tuple[ExportResult, ...] = ()
    failures: tuple[ExportFailure, ...] = ()
    seconds: float = 0.0

    def __bool__(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict[str, Any]:
        return {
            "results": [r.to_dict() for r in self.results],
            "failures": [f.to_dict() for f in self.failures],
            "seconds": round(self.seconds, 3),
        }


def export_models(
    names: Sequence[str],
    *,
    on_start: Callable[[str, int], None] | None = None,
    on_done: Callable[[str, ExportResult | ExportFailure], None] | None = None,
    **options: Any,
) -> ExportBatch:
    """Export several zoo models; one failing does not stop the others (an interrupt does).

    ``options`` are :func:`export_model`'s keyword arguments. ``on_start(name, index)`` and
    ``on_done(name, result_or_failure)`` drive a progress display.
    """
    start = time.perf_counter()
    results, failures = [], []
    for index, name in enumerate(names):
        if on_start is not None:
            on_start(name, index)
        outcome: ExportResult | ExportFailure
        try:
            outcome = export_model(name, **options)
            results.append(outcome)
        except DeployKitError as exc:
            outcome = ExportFailure(name, exc.message, exc.hint, exc.exit_code)
            failures.append(outcome)
        except Exception as exc:  # one model's unexpected bug must not stop the others
            outcome = ExportFailure(name, f"{type(exc).__name__}: {_first_line(exc)}", "this is a bug: please report it")
            failures.append(outcome)
        if on_done is not None:
            on_done(name, outcome)
    return ExportBatch(tuple(results), tuple(failures), time.perf_counter() - start)


__all__ = [
    "DEFAULT_OPSET",
    "DEFAULT_TOLERANCE",
    "ExportBatch",
    "ExportFailure",
    "ExportResult",
    "OnnxExport",
    "Parity",
    "compare_logits",
    "export_model",
    "export_models",
    "export_onnx",
    "verify_onnx",
]


def export_variant(repo: Any, model: str, precision: str = "fp32", **options: Any) -> ExportResult:
    """The pipeline's maker of ``<model>_onnx_fp32`` (see ``deploykit.pipeline.STAGES``)."""
    if precision != "fp32":
        raise UsageError(f"export writes the fp32 variant, not {precision}", hint="use `deploykit quantize`")
    return export_model(model, repo=repo.root, **options)
