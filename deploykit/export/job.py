"""``deploykit export NAME``: a model into the model repository, verified, with its lineage.

:func:`export_model` builds a zoo model (or loads ``--weights``), exports it
(:func:`~deploykit.export.export_onnx`), verifies it against PyTorch with ONNX Runtime on real
photos at batch 1 and batch > 1 (:func:`~deploykit.export.verify_onnx`), then writes
``<repo>/<name>_onnx_fp32/`` atomically with its Triton ``config.pbtxt`` and lineage sidecar.
Nothing lands in the repository unless every step passed. :func:`export_models` does several.
"""

from __future__ import annotations

import contextlib
import gc
import itertools
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deploykit.errors import CheckFailedError, DeployKitError, UsageError
from deploykit.export.exporter import (
    DEFAULT_EXPORTER,
    DEFAULT_OPSET,
    OnnxExport,
    _check_opset_request,
    _first_line,
    _run_forward,
    check_exporter,
    check_written,
    write_onnx,
)
from deploykit.export.record import Origin, onnx_metadata, sidecar, tensorrt_notes, triton_config
from deploykit.export.verify import (
    DEFAULT_TOLERANCE,
    VERIFY_BATCH,
    Parity,
    reference_logits,
    verify_against,
)
from deploykit.fileio import no_space_is_an_error, scratch_directory
from deploykit.onnx_graph import TensorSpec

if TYPE_CHECKING:

    from deploykit.artifacts import Artifact
    from deploykit.zoo import ModelCard, Preprocessing

DEFAULT_MAX_BATCH_SIZE = 32
# Verification images (--verify-images): ONNX Runtime runs them as one batch and the first at
# batch 1. Each image compares every logit, so a wrong operator or weight shows on any photo;
# accuracy on many images is parity's job. Two keep the check under a third of the bare export's
# cost on VGG-16 (benchmarks/results/export_cost.md).
VERIFY_IMAGES = 2
MAX_VERIFY_IMAGES = 16

Progress = Callable[[str], None]


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
    weights: str  # sha256 of the checkpoint file, or of the state dict (random init, torchvision)
    onnx: OnnxExport
    labels: str | None = None  # where the class labels came from, if known
    images: str = "scikit-image sample photos"
    notes: tuple[str, ...] = ()
    weights_origin: dict[str, Any] | None = None  # the sidecar's "weights" entry: kind, seed, name, ...

    @property
    def path(self) -> Path:
        return self.artifact.path

    def to_dict(self) -> dict[str, Any]:
        parity = {k: v for k, v in self.parity.to_dict().items() if k not in ("passed", "image_names", "failures")}
        return {
            "model": self.model,
            "path": str(self.artifact.path),
            "opset": self.opset,
            "bytes": self.bytes,
            "parity": parity,
            "seconds": round(self.seconds, 3),
            "variant": self.artifact.variant,
            "input": asdict(self.input),
            "output": asdict(self.output),
            "num_classes": self.num_classes,
            "weights": self.weights,
            "weights_origin": self.weights_origin,
            "dropped_keys": list(self.dropped_keys),
            "unsupported_tensorrt_ops": list(self.unsupported_ops),
            "external_data": self.onnx.external_data.name if self.onnx.external_data else None,
            "labels": self.labels,
            "verification_images": self.images,
            "notes": list(self.notes),
            "replaced": self.artifact.meta.get("replaced"),
        }


@dataclass(frozen=True)
class ExportOptions:
    opset: int = DEFAULT_OPSET
    batch: int | None = None
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE
    tolerance: float = DEFAULT_TOLERANCE
    data: str | os.PathLike | None = None
    external_data_threshold: int | None = None
    force: bool = False  # discard files deploykit did not write in the version folder replaced
    exporter: str = DEFAULT_EXPORTER
    verify_images: int = VERIFY_IMAGES

    def validate(self) -> None:
        _check_opset_request(self.opset)
        check_exporter(self.exporter)
        _positive(self.verify_images, "--verify-images", 2, MAX_VERIFY_IMAGES)
        _positive(self.batch, "--batch", 1, 4096)
        _positive(self.max_batch_size, "--max-batch-size", 1, 4096)
        if not isinstance(self.tolerance, (int, float)) or not self.tolerance >= 0:
            raise UsageError(f"tolerance must be a number >= 0, got {self.tolerance!r}")


def _positive(value: Any, what: str, low: int = 1, high: int | None = None) -> None:
    if value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < low or (high and value > high):
        limit = f"{low}..{high}" if high else f">= {low}"
        raise UsageError(f"{what} must be an integer {limit}, got {value!r}")


def _step(progress: Progress | None, text: str) -> None:
    if progress is not None:
        progress(text)


# ---- the zoo model and its labels ------------------------------------------------------------
def imagenet_labels() -> list[str]:
    """The 1000 ImageNet-1k class names of torchvision's weight metadata, from a packaged copy
    (``deploykit/data/imagenet_classes.txt``, tested equal to torchvision's): reading them
    does not import torchvision, whose import costs the TorchScript exporter's whole job 1.6 s."""
    from importlib import resources

    return resources.files("deploykit").joinpath("data", "imagenet_classes.txt").read_text(encoding="utf-8").splitlines()


def _labels_for(num_classes: int) -> tuple[list[str] | None, str | None]:
    """ImageNet's class names for a 1000-class zoo model (class folders of --data win over them);
    every torchvision ImageNet-1k weight of the zoo's networks names its classes so."""
    if num_classes == 1000:
        return imagenet_labels(), "imagenet-1k (torchvision)"
    return None, None


def zoo_origin(name: str, weights: Any, num_classes: int | None, input_size: int | None, seed: int, progress: Progress | None) -> Origin:
    """A zoo network: random weights under ``seed``, a checkpoint file, or published weights by name."""
    from deploykit import pretrained
    from deploykit import weights as weightslib
    from deploykit.zoo import get_card, get_model

    card = get_card(name)
    if pretrained.is_weights_name(weights):
        return _pretrained_origin(card, str(weights), num_classes, input_size, progress)
    classes, size = num_classes or 1000, input_size or card.input_size
    _step(progress, f"building {name}")
    if weights is None:
        module, entry = weightslib.random_zoo_model(name, classes, seed)
        origin = Origin(module, f"pytorch:{name}", entry["sha256"], entry, _sized(card.preprocessing, size), classes, size)
        origin.notes.append(
            f"random weights (seed {seed}; no --weights): the export is verified and later stages rebuild the same "
            "weights from the seed, but the predictions are meaningless"
        )
    else:
        module = get_model(name, num_classes=classes).eval()
        _step(progress, f"loading weights {Path(weights).name}")
        entry, report = weightslib.file_weights(module, weights)
        origin = Origin(module, f"pytorch:{name}", report.sha256, entry, _sized(card.preprocessing, size), classes, size)
        origin.dropped_keys = report.dropped_keys
        origin.notes.extend(report.notes)
    origin.model_card = {"family": card.family, "year": card.year, "paper": card.paper}
    origin.labels, origin.labels_source = _labels_for(classes)
    return origin


def _pretrained_origin(card: ModelCard, name: str, num_classes: int | None, input_size: int | None, progress) -> Origin:
    from deploykit import weights as weightslib

    _step(progress, f"loading torchvision's {card.name} weights {name}")
    module, entry, weight = weightslib.pretrained_zoo_model(card.name, name, num_classes)
    size = input_size or weight.preprocessing.crop
    classes = len(weight.categories) or 1000
    origin = Origin(module, f"pytorch:{card.name}", entry["sha256"], entry, _sized(weight.preprocessing, size), classes, size)
    origin.model_card = {"family": card.family, "year": card.year, "paper": card.paper}
    origin.labels, origin.labels_source = list(weight.categories) or None, f"torchvision {weight.torchvision}"
    origin.accuracy = weight.metrics
    origin.dropped_keys = tuple(entry["dropped_keys"])
    if entry["hash_prefix_ok"] is False:
        origin.notes.append(f"{weight.file} does not hash to the prefix in its name: not the file torchvision publishes")
    if weight.network_options:
        origin.notes.append(f"built with {weight.network_options} as torchvision does for these weights")
    return origin


def _sized(pre: Preprocessing, size: int) -> Preprocessing:
    """The preprocessing at another input size: the crop is the size, the resize keeps its ratio."""
    from dataclasses import replace

    return replace(pre, crop=size, resize=max(int(round(size * pre.resize / pre.crop)), size))


def _verification_images(data: str | os.PathLike | None, count: int) -> tuple[list[tuple[str, np.ndarray]], list[str] | None, str]:
    """``count`` photos (only those are read): the first sample photos, or spread over --data's classes."""
    from deploykit.data import SAMPLE_IMAGES, list_images, load_rgb, sample_images

    if data is None:
        picked_names = SAMPLE_IMAGES[:count]
        return sample_images(picked_names), None, f"{len(picked_names)} scikit-image sample photos"
    items = list_images(data)
    classes = sorted({i.class_name for i in items if i.class_name}) or None
    # Round-robin over the class folders, so as many classes as there are images are seen.
    groups: dict[str | None, list[Any]] = {}
    for item in items:
        groups.setdefault(item.class_name, []).append(item)
    rounds = itertools.zip_longest(*groups.values())
    picked = [item for row in rounds for item in row if item is not None][:count]
    return [(i.name, load_rgb(i.path)) for i in picked], classes, f"{len(picked)} images from {data}"


# ---- the job ----------------------------------------------------------------------------------
def _reference(origin: Origin, inputs: np.ndarray, progress: Progress | None) -> np.ndarray:
    """PyTorch's logits on the verification images, before the export: they double as the
    check that the network runs at this input size (a failure is diagnosed by one plain forward)."""
    import torch

    _step(progress, f"running PyTorch on {len(inputs)} images")
    try:
        return reference_logits(origin.module, inputs)
    except Exception as exc:
        _run_forward(origin.module.eval(), torch.from_numpy(inputs[:2]))  # a clear UsageError, if that is it
        raise DeployKitError(f"PyTorch fails on the verification images: {_first_line(exc)}") from exc


def _verify(name: str, origin: Origin, exported: OnnxExport, batch: tuple, options: ExportOptions, progress) -> Parity:
    """ONNX Runtime against the PyTorch reference: every image at the larger batch, the first at batch 1."""
    names, inputs, reference = batch
    _step(progress, f"verifying with ONNX Runtime on {len(inputs)} images")
    batch_sizes = (1, min(VERIFY_BATCH, len(inputs))) if options.batch is None else (options.batch,)
    parity = verify_against(reference, exported.path, inputs, tuple(dict.fromkeys(batch_sizes)), options.tolerance, names, 1)
    if parity.constant_output:
        origin.notes.append(
            "PyTorch gives (nearly) the same logits for every image (random weights with untouched "
            "BatchNorm statistics?): parity holds, but says little; export trained weights to check predictions"
        )
    if not parity.passed:
        raise CheckFailedError(
            f"ONNX Runtime disagrees with PyTorch for {name}: {'; '.join(parity.failures[:3])} "
            f"(max abs {parity.max_abs:.3g}, max rel {parity.max_rel:.3g}, tolerance {options.tolerance:g})",
            hint="nothing was written; the exporter or an operator changed the numbers",
        )
    return parity


@contextlib.contextmanager
def scratch_space(repository: Any, name: str, kind: str) -> Iterator[Path]:
    """Hidden scratch on the repository's file system (the final move is a rename), removed
    whatever happens; a full disk is one error line (the scratch is gone by then)."""
    from deploykit.artifacts import variant_name

    variant = variant_name(name, "onnx", "fp32")
    with no_space_is_an_error(repository.root, f"{kind}ing {variant}"), scratch_directory(repository.root, variant, kind) as scratch:
        yield scratch


def write_into_repository(
    repository: Any, name: str, exported: OnnxExport, config: Any, record: dict, source: str, progress, force: bool = False
) -> Artifact:
    """Move the checked file (and its external data) into ``<name>_onnx_fp32/`` with config and sidecar, atomically."""

    def write_model(target: Path) -> None:
        for file in exported.files():
            os.replace(file, target.parent / (target.name if file == exported.path else file.name))
        _step(progress, "writing to the model repository")

    return repository.write_variant(
        name, "onnx", "fp32", write_model=write_model, config_pbtxt=config.render(), sidecar=record, parent=source, force=force
    )


def _export_file(name: str, origin: Origin, options: ExportOptions, path: Path, created: str, progress) -> OnnxExport:
    """Trace and write, drop the network (the checks and ONNX Runtime never hold it beside the
    ONNX weights), then check the file."""
    _step(progress, f"exporting to ONNX (opset {options.opset}, {options.exporter})")
    size = origin.input_size
    written = write_onnx(
        origin.module, (options.batch or 1, 3, size, size), path, opset=options.opset,
        dynamic_batch=options.batch is None, metadata=onnx_metadata(name, origin, options, created),
        external_data_threshold=options.external_data_threshold, exporter=options.exporter, check_forward=False,
    )  # fmt: skip
    origin.module = None  # the reference logits are taken: nothing else needs the network
    gc.collect()
    _step(progress, "checking the ONNX file")
    return check_written(written)


def _export_into(repository: Any, name: str, origin: Origin, options: ExportOptions, progress: Progress | None, start: float) -> ExportResult:
    """Export, verify and write ``origin`` as ``<name>_onnx_fp32`` (scratch space inside the repository)."""
    from deploykit.artifacts import now_iso, variant_name
    from deploykit.data import preprocess_batch

    _step(progress, "reading images")
    images, data_classes, images_desc = _verification_images(options.data, options.verify_images)
    if data_classes and len(data_classes) == origin.num_classes:
        origin.labels, origin.labels_source = data_classes, "class folders of --data"
    inputs = preprocess_batch([img for _, img in images], origin.preprocessing, origin.input_size)
    batch = ([n for n, _ in images], inputs, _reference(origin, inputs, progress))
    created = now_iso()
    variant = variant_name(name, "onnx", "fp32")
    with scratch_space(repository, name, "export") as scratch:
        exported = _export_file(name, origin, options, scratch / "model.onnx", created, progress)
        origin.notes.extend([*exported.notes, *tensorrt_notes(exported)])
        parity = _verify(name, origin, exported, batch, options, progress)
        config = triton_config(variant, exported, options, origin)
        record = sidecar(origin, exported, parity, images_desc, config.max_batch_size, created)
        artifact = write_into_repository(repository, name, exported, config, record, origin.source, progress, options.force)
    return ExportResult(
        model=name, artifact=artifact, opset=exported.opset, bytes=exported.bytes, parity=parity,
        dropped_keys=origin.dropped_keys, unsupported_ops=exported.unsupported_ops, seconds=time.perf_counter() - start,
        input=exported.input, output=exported.output, num_classes=origin.num_classes, weights=origin.weights_id,
        onnx=exported, labels=origin.labels_source, images=images_desc, notes=tuple(origin.notes),
        weights_origin=origin.weights if isinstance(origin.weights, dict) else None,
    )  # fmt: skip


def run_export(name: str, make_origin: Callable[[], Origin], repo: Any, options: ExportOptions, progress: Progress | None, into=None) -> Any:
    """The repository side shared by every entry: a failed first export leaves no trace.
    ``into(repository, name, origin, options, progress, start)`` does the work (default: export)."""
    from deploykit.repository import ModelRepository

    start = time.perf_counter()
    options.validate()
    repository = ModelRepository(repo)
    created_root = not repository.root.exists()
    repository.check_writable()  # before minutes of work, not after
    repository.check_replaceable(name, "onnx", "fp32", force=options.force)
    try:
        origin = make_origin()
        return (into or _export_into)(repository, name, origin, options, progress, start)
    except BaseException:
        if created_root:  # not even an empty folder
            with contextlib.suppress(OSError):
                repository.root.rmdir()
        raise
    finally:
        origin = None
        gc.collect()


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
    seed: int = 0,
    force: bool = False,
    exporter: str = DEFAULT_EXPORTER,
    verify_images: int = VERIFY_IMAGES,
) -> ExportResult:
    """Export zoo model ``name`` to ``<repo>/<name>_onnx_fp32/`` and verify it.

    ``weights``: None for random weights initialised under ``seed`` (recorded, so parity and
    bench rebuild them), a checkpoint path, or a torchvision weight name (``DEFAULT``,
    ``IMAGENET1K_V1``, ...) loaded through torchvision's weights API and download cache, whose
    preprocessing, labels and accuracy go into the sidecar and the Triton config.

    ``batch`` None exports a dynamic batch (Triton ``max_batch_size`` = ``max_batch_size``);
    an integer fixes it (Triton ``max_batch_size: 0``, the batch in the dims). ``data`` is a
    folder of images for verification (default: scikit-image's sample photos), of which
    ``verify_images`` (2 to 16) run through PyTorch and ONNX Runtime: all as one batch, the
    first at batch 1 too (dynamic batch). Weights over ``external_data_threshold`` bytes
    (default 64 MiB) are written to ``model.onnx.data`` beside the graph. Raises
    UsageError for bad input, CheckFailedError when ONNX Runtime disagrees with PyTorch
    beyond ``tolerance``; in every failure (KeyboardInterrupt included) the repository is
    left as it was. ``progress(step)`` is called as each step starts. Over an existing variant,
    other versions and files are kept; files deploykit did not write in ``1/`` are a UsageError
    unless ``force`` (see :mod:`deploykit.replacement`). ``exporter`` is
    ``"dynamo"`` (``torch.onnx.export(dynamo=True)``, default) or ``"torchscript"`` (the
    ``dynamo=False`` exporter, deprecated upstream); the sidecar records which one wrote the file.
    """
    from deploykit.repository import validate_name
    from deploykit.zoo import get_card

    validate_name(name)
    get_card(name)  # an unknown name fails before anything else
    _positive(input_size, "--input-size", 16, 4096)
    _positive(num_classes, "--num-classes", 1, 1_000_000)
    _positive(seed, "--seed", 0, 2**63 - 1)
    options = ExportOptions(opset, batch, max_batch_size, tolerance, data, external_data_threshold, force, exporter, verify_images)

    return run_export(name, lambda: zoo_origin(name, weights, num_classes, input_size, seed, progress), repo, options, progress)


# ---- several models (``deploykit export --all``) ---------------------------------------------
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


def export_variant(repo: Any, model: str, precision: str = "fp32", **options: Any) -> ExportResult:
    """The pipeline's maker of ``<model>_onnx_fp32`` (see ``deploykit.pipeline.STAGES``)."""
    if precision != "fp32":
        raise UsageError(f"export writes the fp32 variant, not {precision}", hint="use `deploykit quantize`")
    return export_model(model, repo=repo.root, **options)
