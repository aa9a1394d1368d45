"""``make_variant``: ``<model>_onnx_fp32`` -> ``<model>_onnx_fp16`` / ``<model>_onnx_int8`` in the repository.

The FP16/INT8 variant is a Triton model folder like its parent (``config.pbtxt``, lineage
sidecar, ``1/model.onnx``), written atomically. Its sidecar names the parent and says how
it was made: tool and version, calibration set (source, size, sha256), method, the
precision of the parts left unquantized and why.

Conversions are cached under ``<repo>/.cache/precision/``, keyed by the parent model's
sha256, the calibration set's sha256 and size, the method and every option that changes the
result, so rebuilding a variant with the same data does not calibrate again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploykit.errors import DeployKitError, UsageError
from deploykit.precision.calibration import DEFAULT_CALIB_SIZE, CalibrationSet, load_calibration
from deploykit.precision.fp16 import REFERENCE_SAMPLES, KeptNode
from deploykit.precision.int8 import DEFAULT_PERCENTILE, validate_high_precision, validate_method
from deploykit.repository import ModelRepository

Progress = Callable[[str], None]
CACHE_DIR = ".cache/precision"
CACHE_SCHEMA = 1
CACHE_KEEP = 3  # entries kept per model and precision (a VGG-16 entry is ~0.5 GB)
HIGH_PRECISION_REASONS = {
    "fp32": (
        "layers left unquantized run in FP32: exact on CPU runtimes (ONNX Runtime, OpenVINO), "
        "where FP16 arithmetic is emulated or slow"
    ),
    "fp16": (
        "layers left unquantized run in FP16: for TensorRT on GPUs, where FP16 beats FP32; "
        "CPU runtimes run it slower and a little less exactly"
    ),
}
STRONGLY_TYPED_NOTE = (
    "precision lives in the graph (FP16 tensors / Q/DQ nodes): TensorRT 11 builds it as is "
    "(every network is strongly typed); TensorRT 10 needs the STRONGLY_TYPED network flag"
)


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


def _parent_facts(parent) -> tuple[dict[str, Any], dict[str, Any], Any]:
    """(input spec, output spec, Preprocessing) of the FP32 parent, from its sidecar or graph."""
    from dataclasses import fields

    import onnx

    from deploykit.zoo import Preprocessing

    spec_in, spec_out = parent.meta.get("input"), parent.meta.get("output")
    if not (isinstance(spec_in, dict) and spec_in.get("shape") and isinstance(spec_out, dict)):
        graph = onnx.load(str(parent.path), load_external_data=False).graph

        def spec(value) -> dict[str, Any]:
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in value.type.tensor_type.shape.dim]
            dtype = str(onnx.helper.tensor_dtype_to_np_dtype(value.type.tensor_type.elem_type))
            return {"name": value.name, "shape": dims, "dtype": dtype}

        spec_in, spec_out = spec(graph.input[0]), spec(graph.output[0])
    shape = list(spec_in["shape"])
    if len(shape) != 4:
        raise UsageError(f"{parent.variant} takes a rank-{len(shape)} input; deploykit calibrates N x C x H x W images")
    pre_dict = parent.meta.get("preprocessing") or {}
    known = {f.name for f in fields(Preprocessing)}
    pre_args = {k: tuple(v) if isinstance(v, list) else v for k, v in pre_dict.items() if k in known}
    pre = Preprocessing(**pre_args) if pre_args else Preprocessing(resize=shape[-1], crop=shape[-1])
    return dict(spec_in), dict(spec_out), pre


def _cache_key(facts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


def _cache_lookup(entry: Path) -> dict[str, Any] | None:
    """The cached conversion report if the entry is complete and its model file is intact."""
    from deploykit.fileio import sha256_file

    info_path, model_path = entry / "conversion.json", entry / "model.onnx"
    if not (info_path.is_file() and model_path.is_file()):
        return None
    try:
        info = json.loads(info_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if info.get("schema") != CACHE_SCHEMA or sha256_file(model_path) != info.get("model_sha256"):
        return None
    return info


def _cache_prune(root: Path, model: str, precision: str, keep: str) -> None:
    """Keep the newest CACHE_KEEP entries of this model and precision (and ``keep``)."""
    entries = []
    for entry in root.iterdir() if root.is_dir() else ():
        info = entry / "conversion.json"
        with contextlib.suppress(OSError, json.JSONDecodeError):
            data = json.loads(info.read_text())
            if data.get("model") == model and data.get("precision") == precision:
                entries.append((info.stat().st_mtime, entry))
    for _, entry in sorted(entries, reverse=True)[CACHE_KEEP:]:
        if entry.name != keep:
            shutil.rmtree(entry, ignore_errors=True)


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

    Raises UsageError for bad input (the FP32 parent missing, names ``deploykit export``),
    MissingDependencyError naming the ``[int8]`` extra without ModelOpt, DeployKitError when
    the conversion fails. On any failure the repository is left as it was.
    """
    from deploykit import onnx_checks
    from deploykit.artifacts import library_versions, variant_name
    from deploykit.fileio import atomic_directory, atomic_write_json, sha256_file
    from deploykit.precision._modelopt import io_types, modelopt_version, require_modelopt
    from deploykit.repository import validate_name
    from deploykit.triton.config import (
        PLATFORMS,
        TensorConfig,
        TritonModelConfig,
        default_preferred,
    )

    start = time.perf_counter()
    repository = repo if isinstance(repo, ModelRepository) else ModelRepository(repo)
    validate_name(model)
    if precision == "fp32":
        raise UsageError("the FP32 variant is made by export", hint=f"deploykit export {model}")
    if precision not in ("fp16", "int8"):
        raise UsageError(f"unknown precision {precision!r} for quantize", hint="choose fp16 or int8")
    method = validate_method(calib_method) if precision == "int8" else None
    hp_dtype = validate_high_precision(high_precision_dtype) if precision == "int8" else None
    if not isinstance(keep_io_types, bool):
        raise UsageError(f"keep_io_types must be True or False, got {keep_io_types!r}")
    require_modelopt("FP16 conversion (ModelOpt AutoCast)" if precision == "fp16" else "INT8 quantization (ModelOpt ONNX PTQ)")

    parent = repository.get(model, "onnx", "fp32")
    spec_in, spec_out, pre = _parent_facts(parent)
    repository.check_writable()

    _say(progress, "loading calibration data" if precision == "int8" else "loading reference data")
    calib: CalibrationSet = load_calibration(
        calib_data,
        spec_in["shape"][1:],
        pre,
        size=calib_size,
        input_name=spec_in["name"],
        seed=seed,
        default_size=DEFAULT_CALIB_SIZE if precision == "int8" else REFERENCE_SAMPLES,
    )
    parent_sha = parent.meta.get("sha256") or sha256_file(parent.path)
    facts = {
        "schema": CACHE_SCHEMA,
        "model": model,
        "precision": precision,
        "parent_sha256": parent_sha,
        "calibration_sha256": calib.sha256,
        "calibration_size": calib.size,
        "method": method,
        "percentile": float(percentile) if method == "percentile" else None,
        "keep_io_types": keep_io_types,
        "high_precision_dtype": hp_dtype,
        "modelopt": modelopt_version(),
    }
    key = _cache_key(facts)
    cache_root = repository.root / CACHE_DIR
    entry = cache_root / key[:32]
    info = _cache_lookup(entry) if use_cache else None
    cached = info is not None

    repository.root.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{variant_name(model, 'onnx', precision)}.quantize-", dir=repository.root))
    try:
        if cached:
            _say(progress, f"reusing the cached {precision} conversion ({key[:12]})")
            produced = entry / "model.onnx"
            conversion = info["conversion"]
        else:
            produced = scratch / "model.onnx"
            if precision == "fp16":
                from deploykit.precision.fp16 import convert_onnx_fp16

                _say(progress, "converting to FP16 (ModelOpt AutoCast)")
                report = convert_onnx_fp16(
                    parent.path, produced, keep_io_types, reference_data=calib.array, reference_source=calib.source
                )
            else:
                from deploykit.precision.int8 import quantize_onnx_int8

                _say(progress, f"calibrating on {calib.size} samples ({method}) and quantizing to INT8 (ModelOpt)")
                report = quantize_onnx_int8(
                    parent.path, produced, calib.array, method, high_precision_dtype=hp_dtype, percentile=percentile
                )
            conversion = report.to_dict()
            conversion.pop("path", None)
            if use_cache:
                with atomic_directory(entry) as tmp:
                    shutil.copyfile(produced, tmp / "model.onnx")
                    atomic_write_json(
                        tmp / "conversion.json",
                        {**facts, "model_sha256": sha256_file(produced), "conversion": conversion, "calibration": calib.to_dict()},
                    )
                _cache_prune(cache_root, model, precision, keep=entry.name)

        import onnx

        produced_model = onnx.load(str(produced), load_external_data=False)
        dtypes = io_types(produced_model)
        opset = onnx_checks.main_opset(produced_model)
        del produced_model
        max_batch = int(parent.meta.get("max_batch_size", 0) or 0)
        dynamic = max_batch > 0

        def dims(spec: dict[str, Any]) -> tuple[int, ...]:
            shape = tuple(int(d) for d in spec["shape"])
            return shape[1:] if dynamic else shape

        new_in = {**spec_in, "dtype": dtypes.get(spec_in["name"], spec_in.get("dtype", "float32"))}
        new_out = {**spec_out, "dtype": dtypes.get(spec_out["name"], spec_out.get("dtype", "float32"))}
        variant = variant_name(model, "onnx", precision)
        config = TritonModelConfig(
            name=variant,
            platform=PLATFORMS["onnx"],
            max_batch_size=max_batch,
            inputs=(TensorConfig(new_in["name"], new_in["dtype"], dims(spec_in)),),
            outputs=(TensorConfig(new_out["name"], new_out["dtype"], dims(spec_out)),),
            instance_kind="KIND_CPU",
            preferred_batch_sizes=default_preferred(max_batch) if dynamic else (),
        )
        calibration = CalibrationInfo(
            kind=calib.kind,
            source=calib.source,
            size=calib.size if precision == "fp16" else int(conversion.get("calibration_samples", calib.size)),
            sha256=calib.sha256,
            method=method,
            cached=cached,
            available=calib.available,
            augmentation=calib.augmentation,
            percentile=float(percentile) if method == "percentile" else None,
            purpose="int8 calibration" if precision == "int8" else "fp16 range check (activations above data_max stay FP32)",
            warnings=calib.warnings if precision == "int8" else (),
        )
        kept = tuple(KeptNode(**k) for k in conversion.get("kept_fp32", []))
        quantized = {}
        if precision == "int8":
            quantized = {
                "qdq": conversion["qdq"],
                "quantized_nodes": conversion["quantized_nodes"],
                "weights": conversion["weights"],
                "activation_quantizers": conversion["activation_quantizers"],
            }
        recipe: dict[str, Any] = {"tool": conversion["tool"], "strongly_typed": STRONGLY_TYPED_NOTE}
        if precision == "fp16":
            recipe.update(
                keep_io_types=keep_io_types,
                rules=conversion["rules"],
                kept_fp32=conversion["kept_fp32"],
                nodes=conversion["nodes"],
                nodes_fp16=conversion["nodes_fp16"],
                initializers=conversion["initializers"],
            )
        else:
            recipe.update(
                method=method,
                high_precision_dtype=hp_dtype,
                high_precision_reason=HIGH_PRECISION_REASONS[hp_dtype],
                keep_io_types=True,
                scheme="symmetric per-channel INT8 weights (axis 0 of conv weights), symmetric per-tensor activations",
                **quantized,
            )
            if "percentile" in conversion:
                recipe["percentile"] = conversion["percentile"]
        carried = {
            k: parent.meta[k]
            for k in ("source", "weights_sha256", "num_classes", "preprocessing", "labels", "labels_source", "model_card")
            if k in parent.meta
        }
        sidecar = {
            **carried,
            "lineage": parent.lineage(),
            "parent_sha256": parent_sha,
            "input": {**(parent.meta.get("input") or {}), **new_in},
            "output": {**(parent.meta.get("output") or {}), **new_out},
            "max_batch_size": max_batch,
            "opset": opset,
            "precision_recipe": recipe,
            "calibration": calibration.to_dict(),
            "libraries": library_versions("nvidia-modelopt", "onnx", "onnxruntime", "numpy"),
        }

        def write_model(target: Path) -> None:
            _say(progress, "writing to the model repository")
            if cached:
                shutil.copyfile(produced, target)
            else:
                os.replace(produced, target)

        artifact = repository.write_variant(
            model, "onnx", precision, write_model=write_model, config_pbtxt=config.render(), sidecar=sidecar, parent=parent.variant
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    if not artifact.path.is_file():  # pragma: no cover - write_variant guarantees it
        raise DeployKitError(f"{artifact.variant} was not written")
    return PrecisionResult(
        model=model,
        precision=precision,
        artifact=artifact,
        parent=parent.variant,
        parent_bytes=parent.bytes,
        keep_io_types=keep_io_types if precision == "fp16" else True,
        high_precision_dtype=hp_dtype,
        calibration=calibration,
        seconds=time.perf_counter() - start,
        kept_fp32=kept,
        quantized=quantized,
        conversion=conversion,
        tool=dict(conversion["tool"]),
        warnings=calibration.warnings,
    )
