"""Writing ONNX files: save (with external data above a threshold: protobuf's 2 GB limit, 64 MiB for an export), slim,
strict shape inference written back, ``onnx.checker``, and the byte count of a saved model.

Every function works on a file path as well as in memory, so models above protobuf's limit
(weights in ONNX external data) go through the same code. Read-only facts about a graph
live in ``deploykit.onnx_graph``.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploykit.errors import CheckFailedError

if TYPE_CHECKING:
    import onnx

# Protobuf cannot serialize a message of 2 GiB or more; stay a little below it so the
# graph structure itself (nodes, names, metadata) always fits beside the weights.
PROTOBUF_LIMIT = 2**31 - 1
EXTERNAL_DATA_THRESHOLD = PROTOBUF_LIMIT - 64 * 2**20
# An export keeps weights of more than 64 MiB beside the graph (``model.onnx.data``), as
# torch.onnx.export(dynamo=True) keeps all of them: onnx.checker, ONNX Runtime and TensorRT's
# parser then read the weights (ONNX Runtime maps them) instead of parsing a protobuf that
# carries them, which holds the file twice in memory while it parses. VGG-16's export peaks at
# 1.5 GB instead of 1.9 GB (benchmarks/results/export_cost.md); small networks stay one file.
EXPORT_EXTERNAL_DATA_THRESHOLD = 64 * 2**20


# ---- checker, shape inference, slimming -------------------------------------------------------
def _first_line(exc: BaseException, limit: int = 400) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:limit]


def check_model(path: str | os.PathLike, full_check: bool = True) -> None:
    """``onnx.checker`` full check (it runs strict shape inference too) on a saved model;
    ``full_check=False`` skips that inference (for a file whose shapes were just inferred strictly).

    Works on models with external data (the checker reads the file itself).
    """
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=full_check)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise CheckFailedError(
            f"the exported ONNX model fails onnx.checker: {_first_line(exc)}",
            hint="this is an exporter bug or an unsupported construct in the model",
        ) from exc


def infer_shapes_in_place(path: str | os.PathLike) -> None:
    """Strict shape inference written back into the file, so every tensor carries its shape
    (Netron shows them; TensorRT and ORT do not need to guess). Path-based, so large models work."""
    import onnx

    try:
        onnx.shape_inference.infer_shapes_path(str(path), str(path), check_type=True, strict_mode=True, data_prop=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise CheckFailedError(
            f"ONNX shape inference fails on the exported model: {_first_line(exc)}",
            hint="an operator's shapes do not agree; re-export with a static --batch to narrow it down",
        ) from exc


@dataclass(frozen=True)
class SlimResult:
    model: onnx.ModelProto
    nodes_before: int
    nodes_after: int
    note: str | None = None


def slim(model: onnx.ModelProto) -> SlimResult:
    """Constant folding, dead-node and common-subexpression elimination with onnxslim.

    Names of the graph inputs and outputs are kept. If onnxslim is missing or fails, the
    model is returned unchanged with a note: slimming is a clean-up, never a requirement.
    """
    from deploykit._deps import is_available

    before = len(model.graph.node)
    if not is_available("onnxslim"):
        return SlimResult(model, before, before, "onnxslim is not installed: graph not slimmed")
    import onnxslim

    io_names = ([i.name for i in model.graph.input], [o.name for o in model.graph.output])
    try:
        slimmed = onnxslim.slim(model)
    except Exception as exc:  # onnxslim raises assorted errors; keep the exporter's graph
        return SlimResult(model, before, before, f"onnxslim failed ({_first_line(exc, 120)}): graph not slimmed")
    if slimmed is None or ([i.name for i in slimmed.graph.input], [o.name for o in slimmed.graph.output]) != io_names:
        return SlimResult(model, before, before, "onnxslim changed the graph's inputs/outputs: kept the original")
    return SlimResult(slimmed, before, len(slimmed.graph.node))


# ---- saving ---------------------------------------------------------------------------------
def proto_bytes(model: onnx.ModelProto) -> int:
    """Serialized size of ``model``; weights of a >2 GB model are counted one by one."""
    try:
        return model.ByteSize()
    except Exception:  # protobuf refuses to size messages past 2 GiB on some builds
        tensors = list(model.graph.initializer)
        return sum(len(t.raw_data) for t in tensors) + PROTOBUF_LIMIT // 2


def save_model(model: onnx.ModelProto, path: str | os.PathLike, external_data_threshold: int = EXTERNAL_DATA_THRESHOLD) -> Path | None:
    """Write ``model`` to ``path``; above ``external_data_threshold`` bytes the weights go to
    ``<path>.data`` beside it (ONNX external data, one file). Returns that file, or None when
    everything stayed in ``path``.

    ``onnx.load``, ONNX Runtime, TensorRT and Triton all read the pair when it stays together.
    """
    import onnx

    path = Path(path)
    if proto_bytes(model) <= external_data_threshold:
        onnx.save_model(model, str(path))
        return None
    location = f"{path.name}.data"
    onnx.save_model(
        model,
        str(path),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=location,
        size_threshold=1024,  # small constants stay inline
        convert_attribute=False,
    )
    written = external_data_files(path)  # none when every tensor was small enough to stay inline
    return written[0] if written else None


def save_ir_model(model: Any, path: str | os.PathLike, external_data_threshold: int = EXTERNAL_DATA_THRESHOLD) -> Path | None:
    """An ``onnx_ir`` model (the dynamo exporter's) to ``path``, as :func:`save_model` does for a
    ``ModelProto``: above ``external_data_threshold`` bytes of weights they go to ``<path>.data``.

    Below it the file is self-contained but written without a serialized copy of the weights in
    memory (:func:`_write_inline`): the graph is serialized without its initializers, and each
    weight is appended straight from the tensor's memory.
    """
    import onnx_ir as ir

    path = Path(path)
    weights = sum(v.const_value.nbytes for g in model.graphs() for v in g.initializers.values() if v.const_value is not None)
    if weights > external_data_threshold:
        ir.save(model, path, external_data=f"{path.name}.data", size_threshold_bytes=1024)  # small constants stay inline
        written = external_data_files(path)
        return written[0] if written else None
    if not _write_inline(model, path):
        ir.save(model, path)
    return None


def save_proto_streamed(model: onnx.ModelProto, path: str | os.PathLike, external_data_threshold: int = EXTERNAL_DATA_THRESHOLD) -> Path | None:
    """:func:`save_model` through onnx_ir (:func:`save_ir_model`): the weights are written from the
    proto's own buffers, without the serialized copy and the per-tensor ``bytes`` copies that
    ``onnx.save_model`` makes (VGG-16 from the TorchScript exporter: 1.4 GB less peak, 0.4 s less CPU)."""
    import onnx_ir as ir

    return save_ir_model(ir.from_proto(model), path, external_data_threshold=external_data_threshold)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _weight_chunks(model: Any) -> list[tuple[bytes, memoryview]] | None:
    """(TensorProto without raw_data + the raw_data field's key and length, the raw bytes) per
    initializer of the main graph, or None when some weight is not a plain in-memory array."""
    import sys

    import numpy as np
    import onnx
    import onnx_ir as ir

    if sys.byteorder != "little" or any(g.initializers for g in model.graphs() if g is not model.graph):
        return None
    chunks = []
    for value in model.graph.initializers.values():
        tensor = value.const_value
        if tensor is None or isinstance(tensor, (ir.ExternalTensor, ir.StringTensor, ir.serde.TensorProtoTensor)):
            return None
        array = np.ascontiguousarray(tensor.numpy())
        if array.nbytes != tensor.nbytes:  # packed sub-byte types: let onnx_ir serialize them
            return None
        header = onnx.TensorProto(name=value.name, data_type=tensor.dtype.value, dims=list(tensor.shape.numpy()))
        chunks.append((header.SerializeToString() + b"\x4a" + _varint(array.nbytes), memoryview(array).cast("B")))
    return chunks


def _write_inline(model: Any, path: Path) -> bool:
    """A self-contained file with the weights streamed from memory (False: not possible here).

    Protobuf merges a message field that appears twice, so the file is the model without
    initializers followed by a second ``graph`` field (ModelProto field 7) holding only the
    ``initializer`` entries (GraphProto field 5), each written from the tensor's own buffer.
    """
    from onnx_ir import serde

    chunks = _weight_chunks(model)
    if chunks is None:
        return False
    initializers = dict(model.graph.initializers)
    model.graph.initializers.clear()
    try:
        head = serde.serialize_model(model).SerializeToString()
    finally:
        model.graph.initializers.update(initializers)
    sizes = [len(header) + len(data) for header, data in chunks]
    graph_size = sum(1 + len(_varint(size)) + size for size in sizes)
    with open(path, "wb") as f:
        f.write(head + b"\x3a" + _varint(graph_size))
        for (header, data), size in zip(chunks, sizes, strict=True):
            f.write(b"\x2a" + _varint(size) + header)
            f.write(data)
    return True


def external_data_files(path: str | os.PathLike, model: onnx.ModelProto | None = None) -> list[Path]:
    """The external-data files a saved model refers to (empty for a self-contained file);
    ``model`` is the file already read (weights left on disk), to save reading it again."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    from deploykit.onnx_graph import subgraphs

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False) if model is None else model
    files = set()
    for graph in subgraphs(model.graph):
        for tensor in graph.initializer:
            if uses_external_data(tensor):
                files.add(ExternalDataInfo(tensor).location)
    return [path.parent / name for name in sorted(files)]


def model_file_bytes(path: str | os.PathLike, model: onnx.ModelProto | None = None) -> int:
    """Bytes on disk of a model and its external-data files (``model``: the file already read)."""
    path = Path(path)
    return path.stat().st_size + sum(p.stat().st_size for p in external_data_files(path, model) if p.is_file())


def remove_model_files(path: str | os.PathLike) -> None:
    """Remove a model file and its external-data file, whichever exist (clean-up after a failure)."""
    path = Path(path)
    for leftover in (path, path.with_name(f"{path.name}.data")):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()


def write_checked(
    model: onnx.ModelProto,
    path: str | os.PathLike,
    *,
    external_data_threshold: int = EXTERNAL_DATA_THRESHOLD,
    infer_shapes: bool = True,
) -> Path | None:
    """:func:`save_model`, then (optionally) :func:`infer_shapes_in_place` and :func:`check_model`.

    Returns the external-data file (or None). On any failure, what was written is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        external = save_model(model, path, external_data_threshold=external_data_threshold)
        if infer_shapes:
            infer_shapes_in_place(path)
        check_model(path)
    except BaseException:
        remove_model_files(path)
        raise
    return external
