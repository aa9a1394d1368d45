"""``make_variant``: ``<model>_onnx_fp32`` -> ``<model>_onnx_fp16`` / ``<model>_onnx_int8`` in the repository.

The FP16/INT8 variant is a Triton model folder like its parent (``config.pbtxt``, lineage
sidecar, ``1/model.onnx``), written atomically. Its sidecar names the parent and says how
it was made: tool and version, calibration set (source, size, sha256), method, the
precision of the parts left unquantized and why.

What differs between precisions is a row of :data:`deploykit.precision.recipes.RECIPES`;
conversions are reused through :mod:`deploykit.precision.cache`.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploykit.errors import DeployKitError, UsageError
from deploykit.onnx_graph import TensorSpec
from deploykit.precision.cache import ConversionCache
from deploykit.precision.calibration import CalibrationSet, load_calibration
from deploykit.precision.fp16 import KeptNode
from deploykit.precision.int8 import DEFAULT_PERCENTILE
from deploykit.precision.recipes import Recipe, RecipeOptions, recipe
from deploykit.repository import FileCheck, ModelRepository

Progress = Callable[[str], None]
CARRIED = ("source", "weights_sha256", "num_classes", "preprocessing", "labels", "labels_source", "model_card")


@dataclass(frozen=True)
class CalibrationInfo:
    """The data a variant was calibrated (INT8) or range-checked (FP16) on."""

    kind: str  # folder | array | samples
    source: str
    size: int
    sha256: str
    method: str | None  # entropy | max | percentile; None for FP16's range check
    cached: bool
    available: int = 0
    augmentation: str | None = None
    percentile: float | None = None
    purpose: str = "int8 calibration"
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = {
            "purpose": self.purpose,
            "kind": self.kind,
            "source": self.source,
            "size": self.size,
            "available": self.available,
            "sha256": self.sha256,
            "method": self.method,
            "cached": self.cached,
            "augmentation": self.augmentation,
            "warnings": list(self.warnings),
        }
        if self.percentile is not None:
            out["percentile"] = self.percentile
        return out


@dataclass(frozen=True)
class PrecisionResult:
    """What ``make_variant`` made; ``to_dict()`` is the JSON contract of ``deploykit quantize --format json``."""

    model: str
    precision: str
    artifact: Any  # deploykit.artifacts.Artifact
    parent: str  # the parent variant, e.g. resnet18_onnx_fp32
    parent_bytes: int
    keep_io_types: bool
    high_precision_dtype: str | None  # INT8 only: precision of the unquantized parts
    calibration: CalibrationInfo
    seconds: float
    kept_fp32: tuple[KeptNode, ...] = ()  # FP16: nodes AutoCast kept in FP32, with reasons
    quantized: dict[str, Any] = field(default_factory=dict)  # INT8: Q/DQ and quantized node counts
    conversion: dict[str, Any] = field(default_factory=dict)  # the converter's full report
    tool: dict[str, str] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def cached(self) -> bool:
        return self.calibration.cached

    @property
    def bytes(self) -> int:
        return self.artifact.bytes

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "precision": self.precision,
            "variant": self.artifact.variant,
            "path": str(self.artifact.path),
            "parent": self.parent,
            "lineage": self.artifact.lineage(),
            "bytes": self.bytes,
            "parent_bytes": self.parent_bytes,
            "keep_io_types": self.keep_io_types,
            "high_precision_dtype": self.high_precision_dtype,
            "kept_fp32": [k.to_dict() for k in self.kept_fp32],
            "quantized": dict(self.quantized),
            "calibration": self.calibration.to_dict(),
            "cached": self.cached,
            "tool": dict(self.tool),
            "seconds": round(self.seconds, 3),
            "warnings": list(self.warnings),
            "conversion": dict(self.conversion),
        }


def _say(progress: Progress | None, text: str) -> None:
    if progress is not None:
        progress(text)


def _parent_facts(parent) -> tuple[TensorSpec, TensorSpec, Any]:
    """(input spec, output spec, Preprocessing) of the FP32 parent, from its sidecar or graph."""
    from dataclasses import fields

    from deploykit.onnx_graph import graph_io
    from deploykit.preprocessing import Preprocessing

    spec_in, spec_out = parent.meta.get("input"), parent.meta.get("output")
    if isinstance(spec_in, dict) and spec_in.get("shape") and isinstance(spec_out, dict):
        tensor_in, tensor_out = TensorSpec.from_dict(spec_in), TensorSpec.from_dict(spec_out)
    else:
        inputs, outputs = graph_io(parent.path)
        tensor_in, tensor_out = inputs[0], outputs[0]
    shape = tensor_in.shape
    if len(shape) != 4:
        raise UsageError(f"{parent.variant} takes a rank-{len(shape)} input; deploykit calibrates N x C x H x W images")
    pre_dict = parent.meta.get("preprocessing") or {}
    known = {f.name for f in fields(Preprocessing)}
    pre_args = {k: tuple(v) if isinstance(v, list) else v for k, v in pre_dict.items() if k in known}
    pre = Preprocessing(**pre_args) if pre_args else Preprocessing(resize=shape[-1], crop=shape[-1])
    return tensor_in, tensor_out, pre


@dataclass(frozen=True)
class _Job:
    """One conversion: the parent, the recipe row, its options and data."""

    repository: ModelRepository
    model: str
    parent: Any  # Artifact of <model>_onnx_fp32
    recipe: Recipe
    options: RecipeOptions
    calib: CalibrationSet
    inputs: TensorSpec
    outputs: TensorSpec
    parent_check: FileCheck  # the parent's model file against its sidecar
    progress: Progress | None

    @property
    def precision(self) -> str:
        return self.recipe.precision

    @property
    def parent_sha256(self) -> str:
        return self.parent_check.sha256

    @property
    def warnings(self) -> tuple[str, ...]:
        return self.parent_check.warnings()

    def say(self, text: str) -> None:
        _say(self.progress, text)


def _convert(job: _Job, scratch: Path, use_cache: bool) -> tuple[Path, dict[str, Any], bool]:
    """(the converted model, the converter's report, whether it came from the cache)."""
    from deploykit.precision._modelopt import modelopt_version

    facts = {
        "model": job.model,
        "precision": job.precision,
        "parent_sha256": job.parent_sha256,
        "calibration_sha256": job.calib.sha256,
        "calibration_size": job.calib.size,
        **job.options.facts(),
        "modelopt": modelopt_version(),
    }
    cache = ConversionCache.of(job.repository.root)
    entry = cache.entry(facts, use=use_cache)
    if entry.hit:
        job.say(f"reusing the cached {job.precision} conversion ({entry.key[:12]})")
        return entry.model, entry.info["conversion"], True
    produced = scratch / "model.onnx"
    conversion = job.recipe.convert(job.parent.path, produced, job.calib, job.options, job.say)
    conversion.pop("path", None)
    if use_cache:
        cache.store(entry, produced, {**facts, "conversion": conversion, "calibration": job.calib.to_dict()})
    return produced, conversion, False


def _calibration_info(job: _Job, conversion: dict[str, Any], cached: bool) -> CalibrationInfo:
    calib, options = job.calib, job.options
    return CalibrationInfo(
        kind=calib.kind,
        source=calib.source,
        size=int(conversion.get("calibration_samples", calib.size)),
        sha256=calib.sha256,
        method=options.method,
        cached=cached,
        available=calib.available,
        augmentation=calib.augmentation,
        percentile=options.percentile,
        purpose=job.recipe.purpose,
        warnings=calib.warnings if job.recipe.calibrates else (),
    )


def _config_pbtxt(variant: str, inputs: TensorSpec, outputs: TensorSpec, max_batch: int) -> str:
    """The variant's Triton config (ONNX Runtime on the CPU; batch dimension left out when batching)."""
    from deploykit.triton.config import TritonModelConfig

    return TritonModelConfig.for_variant(variant, "onnx", [inputs], [outputs], max_batch, instance_kind="KIND_CPU").render()


def _write(job: _Job, produced: Path, conversion: dict[str, Any], calibration: CalibrationInfo, force: bool = False) -> Any:
    """Write the variant folder (model, config.pbtxt, sidecar) atomically; returns its Artifact."""
    from dataclasses import replace

    from deploykit.artifacts import library_versions, variant_name
    from deploykit.onnx_graph import graph_io, load_graph, main_opset

    parent = job.parent
    graph = load_graph(produced)
    dtypes = {spec.name: spec.dtype for specs in graph_io(graph) for spec in specs}
    new_in = replace(job.inputs, dtype=dtypes.get(job.inputs.name, job.inputs.dtype))
    new_out = replace(job.outputs, dtype=dtypes.get(job.outputs.name, job.outputs.dtype))
    max_batch = int(parent.meta.get("max_batch_size", 0) or 0)
    sidecar = {
        **{k: parent.meta[k] for k in CARRIED if k in parent.meta},
        "lineage": parent.lineage(),
        "parent_sha256": job.parent_sha256,
        "input": {**(parent.meta.get("input") or {}), **new_in.to_dict()},
        "output": {**(parent.meta.get("output") or {}), **new_out.to_dict()},
        "max_batch_size": max_batch,
        "opset": main_opset(graph),
        "precision_recipe": job.recipe.record(conversion, job.options),
        "calibration": calibration.to_dict(),
        "libraries": library_versions("nvidia-modelopt", "onnx", "onnxruntime", "numpy"),
    }
    if not job.parent_check.matches:
        sidecar["parent_trusted"] = job.parent_check.to_dict()  # --trust: the file, not its sidecar
    del graph

    def write_model(target: Path) -> None:
        job.say("writing to the model repository")
        if calibration.cached:
            shutil.copyfile(produced, target)
        else:
            os.replace(produced, target)

    config = _config_pbtxt(variant_name(job.model, "onnx", job.precision), new_in, new_out, max_batch)
    return job.repository.write_variant(
        job.model, "onnx", job.precision, write_model=write_model, config_pbtxt=config, sidecar=sidecar,
        parent=parent.variant, force=force,
    )  # fmt: skip


def make_variant(
    repo: ModelRepository | str | os.PathLike,
    model: str,
    precision: str,
    *,
    calib_data: str | os.PathLike | Any | None = None,
    calib_size: int | None = None,
    calib_method: str | None = "entropy",
    keep_io_types: bool = True,
    high_precision_dtype: str | None = "fp32",
    percentile: float = DEFAULT_PERCENTILE,
    seed: int = 0,
    use_cache: bool = True,
    trust: bool = False,
    force: bool = False,
    progress: Progress | None = None,
) -> PrecisionResult:
    """Make ``<model>_onnx_fp16`` or ``<model>_onnx_int8`` from ``<model>_onnx_fp32`` in ``repo``.

    ``calib_data``: a folder of images (ImageFolder or flat), an ``.npy``/``.npz`` file (or an
    in-memory N x C x H x W float array), or None for augmented sample photos (a demo; the
    result warns). INT8 calibrates on ``calib_size`` samples (default up to
    :data:`~deploykit.precision.calibration.DEFAULT_CALIB_SIZE`) with ``calib_method``;
    FP16 uses up to 32 of them to find activations too large for FP16. ``keep_io_types``
    keeps FP32 inputs/outputs for FP16 (INT8 graphs always keep them). ``high_precision_dtype``
    (INT8) is the precision of the unquantized layers: fp32 for CPUs, fp16 for TensorRT.

    Raises UsageError for bad input (the FP32 parent missing, names ``deploykit export``; its
    model file not the one its sidecar hashed, unless ``trust``), MissingDependencyError naming
    the ``[int8]`` extra without ModelOpt, DeployKitError when the conversion fails or the disk
    is full. On any failure the repository is left as it was. Over an existing variant, other
    versions and files are kept; files deploykit did not write in ``1/`` need ``force``.
    """
    from deploykit.precision._modelopt import require_modelopt
    from deploykit.repository import validate_name

    start = time.perf_counter()
    repository = repo if isinstance(repo, ModelRepository) else ModelRepository(repo)
    validate_name(model)
    row = recipe(precision, model)
    if not isinstance(keep_io_types, bool):
        raise UsageError(f"keep_io_types must be True or False, got {keep_io_types!r}")
    options = row.make_options(
        calib_method=calib_method, high_precision_dtype=high_precision_dtype, percentile=percentile, keep_io_types=keep_io_types
    )
    require_modelopt(row.tool)
    repository.check_replaceable(model, "onnx", precision, force=force)  # before the work
    job = _load(repository, model, row, options, progress, calib_data=calib_data, calib_size=calib_size, seed=seed, trust=trust)
    artifact, conversion, calibration = _make(job, use_cache, force)
    return _result(job, artifact, conversion, calibration, time.perf_counter() - start)


def _make(job: _Job, use_cache: bool, force: bool = False) -> tuple[Any, dict[str, Any], CalibrationInfo]:
    """Convert (or reuse the cache) in a scratch folder and write the variant; a full disk is an error line."""
    from deploykit.artifacts import variant_name
    from deploykit.fileio import no_space_is_an_error, scratch_directory

    variant = variant_name(job.model, "onnx", job.precision)
    with no_space_is_an_error(job.repository.root, f"making {variant}"), scratch_directory(job.repository.root, variant, "quantize") as scratch:
        produced, conversion, cached = _convert(job, scratch, use_cache)
        calibration = _calibration_info(job, conversion, cached)
        artifact = _write(job, produced, conversion, calibration, force)
    if not artifact.path.is_file():  # pragma: no cover - write_variant guarantees it
        raise DeployKitError(f"{artifact.variant} was not written")
    return artifact, conversion, calibration


def _load(
    repository: ModelRepository,
    model: str,
    row: Recipe,
    options: RecipeOptions,
    progress: Progress | None,
    *,
    calib_data: Any,
    calib_size: int | None,
    seed: int,
    trust: bool,
) -> _Job:
    """The parent variant (its file checked against its sidecar), its I/O and preprocessing, the data."""
    from deploykit.repository import check_model_file

    parent = repository.get(model, "onnx", "fp32")
    check = check_model_file(parent, trust=trust)
    spec_in, spec_out, pre = _parent_facts(parent)
    repository.check_writable()
    _say(progress, row.data_step)
    calib = load_calibration(
        calib_data, spec_in.shape[1:], pre, size=calib_size, input_name=spec_in.name, seed=seed, default_size=row.default_size
    )
    return _Job(repository, model, parent, row, options, calib, spec_in, spec_out, check, progress)


def _result(job: _Job, artifact: Any, conversion: dict[str, Any], calibration: CalibrationInfo, seconds: float) -> PrecisionResult:
    return PrecisionResult(
        model=job.model,
        precision=job.precision,
        artifact=artifact,
        parent=job.parent.variant,
        parent_bytes=job.parent.bytes,
        keep_io_types=job.options.keep_io_types,
        high_precision_dtype=job.options.high_precision_dtype,
        calibration=calibration,
        seconds=seconds,
        kept_fp32=tuple(KeptNode(**k) for k in conversion.get("kept_fp32", [])),
        quantized=job.recipe.summary(conversion),
        conversion=conversion,
        tool=dict(conversion["tool"]),
        warnings=(*calibration.warnings, *job.warnings),
    )
