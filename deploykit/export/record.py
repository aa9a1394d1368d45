"""What an export records: the ONNX file's metadata, the Triton config and the lineage sidecar.

:class:`Origin` says where the exported network came from (a zoo model with random or loaded
weights, ...); everything written about it is assembled here from that and the export.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from torch import nn

    from deploykit.export.exporter import OnnxExport
    from deploykit.export.job import ExportOptions
    from deploykit.export.verify import Parity
    from deploykit.zoo import Preprocessing


@dataclass
class Origin:
    """Where the exported network comes from, and what its sidecar says about it."""

    module: nn.Module | None  # None for an imported ONNX file
    source: str  # "pytorch:resnet18"
    weights_id: str  # sha256 of the weights file, or of the state dict (random init, torchvision weights)
    weights: Any  # the sidecar's "weights" entry
    preprocessing: Preprocessing
    num_classes: int
    input_size: int
    notes: list[str] = field(default_factory=list)
    dropped_keys: tuple[str, ...] = ()
    labels: list[str] | None = None
    labels_source: str | None = None
    model_card: dict[str, Any] | None = None
    accuracy: dict[str, Any] | None = None  # published accuracy of pretrained weights


def onnx_metadata(name: str, origin: Origin, options: ExportOptions, created: str) -> dict[str, Any]:
    """The ``metadata_props`` of the ONNX file: enough to know what it is without the sidecar."""
    from deploykit import __version__
    from deploykit.artifacts import variant_name

    size = origin.input_size
    return {
        "model": name,
        "variant": variant_name(name, "onnx", "fp32"),
        "source": origin.source,
        "precision": "fp32",
        "opset": str(options.opset),
        "weights_sha256": origin.weights_id,
        "num_classes": str(origin.num_classes),
        "input": f"input float32 [{'batch' if options.batch is None else options.batch}, 3, {size}, {size}] NCHW RGB",
        "preprocessing": asdict(origin.preprocessing),
        "created_at": created,
        "producer": f"deploykit {__version__}",
        **({"labels": origin.labels} if origin.labels else {}),
    }


def tensorrt_notes(exported: OnnxExport) -> list[str]:
    trt = exported.tensorrt
    notes = []
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
    return notes


def config_parameters(origin: Origin) -> tuple[tuple[str, str], ...]:
    """What a client needs beside the tensors, as Triton config ``parameters`` (JSON strings):
    the preprocessing, where the weights came from, the labels and the published accuracy."""
    import json

    entry = origin.weights if isinstance(origin.weights, dict) else {}
    weights = {k: entry[k] for k in ("kind", "seed", "name", "factory", "sha256") if k in entry}
    params = {"preprocessing": asdict(origin.preprocessing), "weights": weights or origin.weights_id}
    if origin.labels:
        params["labels"] = origin.labels
    if origin.accuracy:
        params["accuracy"] = origin.accuracy
    return tuple((f"deploykit_{key}", json.dumps(value, separators=(",", ":"))) for key, value in params.items())


def triton_config(variant: str, exported: OnnxExport, options: ExportOptions, origin: Origin) -> Any:
    """The Triton config of the ONNX variant: a dynamic batch up to ``max_batch_size``, or the fixed one."""
    from deploykit.triton.config import TritonModelConfig

    max_batch = options.max_batch_size if options.batch is None else 0  # 0: the batch is in the dims
    return TritonModelConfig.for_variant(
        variant, "onnx", [exported.input], [exported.output], max_batch,
        instance_kind="KIND_CPU", parameters=config_parameters(origin),
    )  # fmt: skip


def _libraries() -> dict[str, str]:
    from deploykit.artifacts import library_versions

    return library_versions("torch", "torchvision", "onnx", "onnxscript", "onnxslim", "onnxruntime", "numpy")


def sidecar(
    origin: Origin, exported: OnnxExport, parity: Parity | None, images: str, max_batch_size: int, created: str
) -> dict[str, Any]:
    """The lineage sidecar ``deploykit.json`` of the ONNX FP32 variant (docs/export.md lists its fields)."""
    dynamic = exported.dynamic_batch
    return {
        "source": origin.source,
        "lineage": [],
        "weights_sha256": origin.weights_id,
        "weights": origin.weights,
        "num_classes": origin.num_classes,
        "input": {**asdict(exported.input), "layout": "NCHW", "color": "RGB", "dynamic_batch": dynamic},
        "output": asdict(exported.output),
        "preprocessing": asdict(origin.preprocessing),
        "labels": origin.labels,
        "labels_source": origin.labels_source,
        "opset": exported.opset,
        "exporter": dict(exported.exporter),
        "libraries": _libraries(),
        "parity": {**parity.to_dict(), "runtime": "onnxruntime (CPUExecutionProvider)", "images_from": images}
        if parity is not None
        else None,
        "unsupported_tensorrt_ops": list(exported.unsupported_ops),
        "tensorrt_preflight": exported.tensorrt.to_dict(),
        "operators": dict(exported.operators),
        "external_data": exported.external_data.name if exported.external_data else None,
        "max_batch_size": max_batch_size,
        "model_card": origin.model_card,
        "accuracy": origin.accuracy,
        "dropped_keys": list(origin.dropped_keys),
        "onnx_created_at": created,
    }


