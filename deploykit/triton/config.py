"""A variant's Triton ``config.pbtxt``: rendered and parsed through Triton's ``ModelConfig``.

Writing builds the protobuf message and prints it with ``text_format`` (so every field name
and enum value is Triton's own); reading parses with ``text_format`` into the same message, and
a syntax or schema error keeps its line and column. Dims leave out the batch dimension when
``max_batch_size > 0`` (Triton adds it). Reference: Triton Inference Server docs, "Model
Configuration".
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploykit.errors import DeployKitError
from deploykit.triton.schema import model_config_pb2

PLATFORMS = {"onnx": "onnxruntime_onnx", "trt": "tensorrt_plan"}
# Triton data types <-> numpy dtype names
TRITON_DTYPES = {
    "TYPE_BOOL": "bool",
    "TYPE_UINT8": "uint8",
    "TYPE_UINT16": "uint16",
    "TYPE_UINT32": "uint32",
    "TYPE_UINT64": "uint64",
    "TYPE_INT8": "int8",
    "TYPE_INT16": "int16",
    "TYPE_INT32": "int32",
    "TYPE_INT64": "int64",
    "TYPE_FP16": "float16",
    "TYPE_FP32": "float32",
    "TYPE_FP64": "float64",
    "TYPE_STRING": "object",
    "TYPE_BF16": "bfloat16",
}
_NUMPY_TO_TRITON = {numpy: triton for triton, numpy in TRITON_DTYPES.items()}
# Errors text_format raises for a well-formed text that is not a ModelConfig.
_SCHEMA_WORDS = ("has no field named", "has no value named", "should not have multiple", "Couldn't parse")


def triton_dtype(dtype: Any) -> str:
    """``"float32"`` (or a numpy dtype) -> ``"TYPE_FP32"``."""
    name = getattr(dtype, "name", None) or str(dtype)
    try:
        return _NUMPY_TO_TRITON[name]
    except KeyError:
        raise DeployKitError(f"Triton has no data type for {name}") from None


def dtype_name(data_type: int) -> str | None:
    """A ``DataType`` enum value -> numpy dtype name; None for TYPE_INVALID (not set)."""
    return TRITON_DTYPES.get(model_config_pb2().DataType.Name(data_type))


def dims_text(dims) -> str:
    return "[" + ", ".join(str(d) for d in dims) + "]"


@dataclass(frozen=True)
class TensorConfig:
    name: str
    dtype: str  # numpy dtype name
    dims: tuple[int, ...]  # without the batch dimension when max_batch_size > 0


@dataclass(frozen=True)
class TritonModelConfig:
    """What deploykit writes for a variant; :meth:`render` gives the ``config.pbtxt`` text."""

    name: str
    platform: str
    max_batch_size: int
    inputs: tuple[TensorConfig, ...]
    outputs: tuple[TensorConfig, ...]
    instance_kind: str = "KIND_CPU"
    instance_count: int = 1
    preferred_batch_sizes: tuple[int, ...] = field(default=())
    max_queue_delay_us: int = 100
    parameters: tuple[tuple[str, str], ...] = ()  # free-form key/value facts (``parameters`` map)

    @classmethod
    def for_variant(
        cls, name: str, fmt: str, inputs: Any, outputs: Any, max_batch_size: int, **options: Any
    ) -> TritonModelConfig:
        """A variant's config from its ``TensorSpec``s (batch first): the batch dimension is left out
        of the dims when batching (``max_batch_size > 0``), with the default preferred batch sizes."""
        dynamic = max_batch_size > 0

        def tensor(spec: Any) -> TensorConfig:
            return TensorConfig(spec.name, spec.dtype, tuple(spec.shape[1:] if dynamic else spec.shape))

        return cls(
            name=name,
            platform=PLATFORMS[fmt],
            max_batch_size=max_batch_size,
            inputs=tuple(tensor(s) for s in inputs),
            outputs=tuple(tensor(s) for s in outputs),
            preferred_batch_sizes=default_preferred(max_batch_size) if dynamic else (),
            **options,
        )

    def to_proto(self) -> Any:
        pb2 = model_config_pb2("writing Triton's config.pbtxt")
        config = pb2.ModelConfig(name=self.name, platform=self.platform, max_batch_size=self.max_batch_size)
        for section, tensors in ((config.input, self.inputs), (config.output, self.outputs)):
            for t in tensors:
                section.add(name=t.name, data_type=pb2.DataType.Value(triton_dtype(t.dtype)), dims=list(t.dims))
        if self.max_batch_size > 0:
            preferred = [b for b in self.preferred_batch_sizes if 0 < b <= self.max_batch_size]
            config.dynamic_batching.preferred_batch_size.extend(preferred)
            config.dynamic_batching.max_queue_delay_microseconds = self.max_queue_delay_us
        kind = pb2.ModelInstanceGroup.Kind.Value(self.instance_kind)
        config.instance_group.add(count=self.instance_count, kind=kind)
        for key, value in self.parameters:
            config.parameters[key].string_value = value
        return config

    def render(self) -> str:
        return render_config(self.to_proto())


def render_config(config: Any) -> str:
    """``text_format`` output, with ``max_batch_size`` always stated and lists as ``[ 3, 8, 8 ]``.

    proto3 leaves a zero ``max_batch_size`` out; it is written anyway so the reader sees at a
    glance that the model takes no batch dimension.
    """
    from google.protobuf import text_format

    text = text_format.MessageToString(config, use_short_repeated_primitives=True)
    text = re.sub(r"^(\s*\w+: )\[([-\d, ]*)\]$", r"\1[ \2 ]", text, flags=re.MULTILINE)
    if config.max_batch_size == 0:
        lines = text.splitlines()
        at = next((i + 1 for i, line in enumerate(lines) if line.startswith(("platform:", "backend:"))), 1)
        lines.insert(min(at, len(lines)), "max_batch_size: 0")
        text = "\n".join(lines) + "\n"
    return text


def default_preferred(max_batch_size: int) -> tuple[int, ...]:
    """Powers of two up to max_batch_size, from 4 (small batches gain little from waiting)."""
    sizes, b = [], 4
    while b <= max_batch_size:
        sizes.append(b)
        b *= 2
    return tuple(sizes) or ((max_batch_size,) if max_batch_size > 0 else ())


class ConfigError(DeployKitError):
    """``config.pbtxt`` does not parse (``kind`` "syntax") or is not a ModelConfig ("schema")."""

    def __init__(self, reason: str, line: int, column: int, kind: str):
        super().__init__(f"config.pbtxt:{line}:{column}: {reason}")
        self.reason, self.line, self.column, self.kind = reason, line, column, kind


def parse_config(text: str) -> Any:
    """The ``ModelConfig`` message of ``text``; raises :class:`ConfigError` with line and column."""
    from google.protobuf import text_format

    pb2 = model_config_pb2()
    try:
        return text_format.Parse(text, pb2.ModelConfig())
    except text_format.ParseError as exc:
        line, column = exc.GetLine() or 0, exc.GetColumn() or 0
        # "3:16 : 'max_batch_size 8': Expected ":"." -> 'Expected ":".'
        reason = re.sub(r"^\d+:\d+ : ", "", str(exc))
        reason = re.sub(r"^'[^\n]*?': ", "", reason) if reason.startswith("'") else reason
        kind = "schema" if any(w in reason for w in _SCHEMA_WORDS) else "syntax"
        raise ConfigError(reason, line, column, kind) from None


def read_config(path: str | Path) -> Any:
    """Parse a ``config.pbtxt`` file (undecodable bytes replaced, as Triton would refuse them)."""
    return parse_config(Path(path).read_text(encoding="utf-8", errors="replace"))


def instance_kind_name(kind: int) -> str:
    return model_config_pb2().ModelInstanceGroup.Kind.Name(kind)
