"""Triton ``config.pbtxt`` for a variant: one renderer used by export, quantize and build.

Dims leave out the batch dimension when ``max_batch_size > 0`` (Triton adds it).
Reference: Triton Inference Server docs, "Model Configuration".
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PLATFORMS = {"onnx": "onnxruntime_onnx", "trt": "tensorrt_plan"}
_TRITON_DTYPES = {
    "float32": "TYPE_FP32",
    "float16": "TYPE_FP16",
    "int8": "TYPE_INT8",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "uint8": "TYPE_UINT8",
}


def triton_dtype(dtype: str | np.dtype) -> str:
    return _TRITON_DTYPES[np.dtype(dtype).name]


@dataclass(frozen=True)
class TensorConfig:
    name: str
    dtype: str  # numpy dtype name
    dims: tuple[int, ...]  # without the batch dimension when max_batch_size > 0


@dataclass(frozen=True)
class TritonModelConfig:
    name: str
    platform: str
    max_batch_size: int
    inputs: tuple[TensorConfig, ...]
    outputs: tuple[TensorConfig, ...]
    instance_kind: str = "KIND_CPU"
    instance_count: int = 1
    preferred_batch_sizes: tuple[int, ...] = field(default=())
    max_queue_delay_us: int = 100

    def render(self) -> str:
        lines = [
            f'name: "{self.name}"',
            f'platform: "{self.platform}"',
            f"max_batch_size: {self.max_batch_size}",
        ]
        for section, tensors in (("input", self.inputs), ("output", self.outputs)):
            lines.append(f"{section} [")
            body = []
            for t in tensors:
                dims = ", ".join(str(d) for d in t.dims)
                body.append(
                    f'  {{\n    name: "{t.name}"\n    data_type: {triton_dtype(t.dtype)}\n    dims: [ {dims} ]\n  }}'
                )
            lines.append(",\n".join(body))
            lines.append("]")
        if self.max_batch_size > 0:
            preferred = [b for b in self.preferred_batch_sizes if 0 < b <= self.max_batch_size]
            lines.append("dynamic_batching {")
            if preferred:
                lines.append(f"  preferred_batch_size: [ {', '.join(str(b) for b in preferred)} ]")
            lines.append(f"  max_queue_delay_microseconds: {self.max_queue_delay_us}")
            lines.append("}")
        lines.append("instance_group [")
        lines.append(f"  {{\n    count: {self.instance_count}\n    kind: {self.instance_kind}\n  }}")
        lines.append("]")
        return "\n".join(lines) + "\n"


def default_preferred(max_batch_size: int) -> tuple[int, ...]:
    """Powers of two up to max_batch_size, from 4 (small batches gain little from waiting)."""
    sizes, b = [], 4
    while b <= max_batch_size:
        sizes.append(b)
        b *= 2
    return tuple(sizes) or ((max_batch_size,) if max_batch_size > 0 else ())
