"""What an engine build leaves on disk: the build record, the lineage sidecar, config.pbtxt."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deploykit.machine import GpuInfo
from deploykit.onnx_graph import TensorSpec
from deploykit.tensorrt.preflight import GraphPrecisionReport
from deploykit.tensorrt.profiles import BuildSettings
from deploykit.tensorrt.report import EnginePrecisionReport


@dataclass(frozen=True)
class EngineBuildRecord:
    """The facts of one engine build; :func:`engine_sidecar` turns them into the sidecar."""

    model: str
    precision: str
    parent: str  # "<model>_onnx_<precision>"
    parent_lineage: tuple[str, ...]  # ancestors of the parent, oldest first, ending with the parent
    tensorrt_version: str
    gpu: GpuInfo
    input: TensorSpec
    output: TensorSpec
    settings: BuildSettings
    build_seconds: float
    engine_bytes: int
    device_memory_bytes: int | None
    engine: EnginePrecisionReport
    graph: GraphPrecisionReport | None = None
    strongly_typed_flag: bool = False
    timing_cache_reused: bool = False
    cuda_version: str | None = None
    parent_sha256: str | None = None
    preprocessing: Mapping[str, Any] | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def engine_sidecar(record: EngineBuildRecord) -> dict[str, Any]:
    """The lineage sidecar of a TensorRT variant (``deploykit.json``; write_variant adds file facts)."""
    settings = record.settings
    dims = record.input.shape[1:]
    shapes = settings.profile.shapes(dims)
    sidecar: dict[str, Any] = {
        "parent": record.parent,
        "lineage": list(record.parent_lineage) or [record.parent],
        "math": settings.math,  # the arithmetic to compare against a peak: tf32 for a TF32-allowed FP32 engine
        "input": {**record.input.to_dict(), "shape": [-1, *dims]},
        "output": {**record.output.to_dict(), "shape": [-1, *record.output.shape[1:]]},
        "tensorrt": {
            "version": record.tensorrt_version,
            "strongly_typed": True,
            "strongly_typed_flag": record.strongly_typed_flag,
        },
        "gpu": {
            "name": record.gpu.name,
            "compute_capability": record.gpu.compute_capability,
            "cuda": record.cuda_version,
        },
        "profile": {
            "input": record.input.name,
            "batch": {"min": settings.profile.min, "opt": settings.profile.opt, "max": settings.profile.max},
            **{key: list(shape) for key, shape in shapes.items()},
        },
        "build": {
            "seconds": round(record.build_seconds, 3),
            "workspace_mb": settings.workspace_mb,
            "builder_optimization_level": settings.opt_level,
            "profiling_verbosity": settings.profiling_verbosity,
            # the builder lets FP32 layers use TF32 unless --no-tf32 cleared the flag
            "tf32": settings.tf32,
            "timing_cache": settings.timing_cache,
            "timing_cache_reused": record.timing_cache_reused,
            "onnx_sha256": record.parent_sha256,
        },
        "engine": {
            "bytes": record.engine_bytes,
            "device_memory_bytes": record.device_memory_bytes,
            **record.engine.to_dict(),
        },
        "precision_check": {
            "requested": record.precision,
            "verified": record.precision == "fp32" or record.engine.verifiable,
            "layer_precisions": record.engine.counts(),
            "compute_shares": record.engine.shares(),
            "unknown_precision_layers": len(record.engine.unknown_layers),
            "graph": record.graph.to_dict() if record.graph else None,
        },
    }
    if record.preprocessing:
        sidecar["preprocessing"] = dict(record.preprocessing)
    sidecar.update(record.extra)
    return sidecar


def trt_config_pbtxt(variant: str, input: TensorSpec, output: TensorSpec, max_batch: int) -> str:
    """Triton config for a plan: ``tensorrt_plan`` on KIND_GPU, dynamic batching up to the profile's max.

    ``max_batch_size`` must not exceed the engine profile's max batch, or Triton would send
    batches the engine cannot take (Triton docs, "Model Configuration").
    """
    from deploykit.triton.config import TritonModelConfig

    config = TritonModelConfig.for_variant(variant, "trt", [input], [output], max_batch, instance_kind="KIND_GPU", instance_count=1)
    return config.render()
