"""``torch.onnx.export`` -> a checked ONNX file: the only module in deploykit that calls ``torch.onnx``.

:func:`export_onnx` turns any ``nn.Module`` into an ONNX file with the maintained exporter
(``torch.onnx.export(..., dynamo=True)``) or, on request, the deprecated TorchScript one
(``dynamo=False``), checks the opset it really produced, runs ``onnx.checker`` and strict
shape inference, and lists the operators TensorRT's ONNX parser would refuse. Models above
64 MiB of weights get ONNX external data beside the file (``model.onnx.data``).

The dynamo exporter's program is written straight to the file (no in-memory ``ModelProto``
copy of the weights) and already carries every tensor's shape and its own optimizer's
constant folding, so it is neither slimmed nor rewritten by shape inference; the file is read
back once for its checks. The TorchScript exporter's graph is slimmed (onnxslim) and its
shapes inferred and written back.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploykit.errors import DeployKitError, UsageError
from deploykit.onnx_graph import TensorSpec

if TYPE_CHECKING:
    import onnx
    import torch
    from torch import nn

    from deploykit.onnx_checks import TrtPreflight

DEFAULT_OPSET = 18
EXPORTERS = {"dynamo": "torch.onnx.export(dynamo=True)", "torchscript": "torch.onnx.export(dynamo=False)"}
DEFAULT_EXPORTER = "dynamo"
EXPORTER = EXPORTERS[DEFAULT_EXPORTER]
TORCHSCRIPT_DEPRECATION = "deprecated upstream since torch 2.9 in favour of dynamo=True"
_QUIET_LOGGERS = ("torch.onnx", "torch.export", "torch._export", "torch.fx", "torch._dynamo", "onnxscript", "onnx_ir")


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


def exporter_versions(exporter: str = DEFAULT_EXPORTER) -> dict[str, str]:
    """The exporter and the libraries that shape its output, for sidecars and metadata."""
    from deploykit.artifacts import library_versions

    return {"exporter": EXPORTERS[exporter], **library_versions("torch", "onnx", "onnxscript", "onnx-ir", "onnxslim")}


def check_exporter(exporter: str) -> str:
    if exporter not in EXPORTERS:
        raise UsageError(f"unknown exporter {exporter!r}", hint=f"use one of: {', '.join(EXPORTERS)}")
    return exporter


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
    """Refuse, before any export, an opset onnx does not know or no deployment target reads."""
    import onnx

    from deploykit.onnx_checks import tensorrt_operator_list

    newest = onnx.defs.onnx_opset_version()
    hint = f"use an opset from {DEFAULT_OPSET} to {newest} (default {DEFAULT_OPSET})"
    if not isinstance(opset, int) or isinstance(opset, bool) or not 1 <= opset <= newest:
        raise UsageError(f"opset {opset!r} is not an ONNX opset this onnx ({onnx.__version__}) knows", hint=hint)
    # The exporter writes opset 18 and converts down as far as onnx's version converter manages;
    # below TensorRT's oldest parsed opset the result could not be deployed anyway.
    table = tensorrt_operator_list()
    if opset < table.opset_min:
        raise UsageError(
            f"opset {opset} is below {table.opset_min}, the oldest opset TensorRT's ONNX parser reads "
            f"(TensorRT {table.tensorrt_version}: opsets {table.opset_min}-{table.opset_max})",
            hint=hint,
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


def _dynamo_export(module, example, opset, dynamic_batch, input_name, output_name) -> Any:
    """``torch.onnx.export(dynamo=True)`` with a symbolic batch dimension (or a fixed one): its ONNXProgram."""
    import torch

    kwargs = dict(dynamo=True, opset_version=opset, input_names=[input_name], output_names=[output_name], verbose=False, optimize=True)
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
        return program
    assert last is not None
    hint = "report the model; a static --batch N sometimes avoids it" if dynamic_batch else None
    if dynamic_batch and _is_shape_constraint(last):
        hint = "the model fixes its batch size internally: export with a static --batch N"
    raise DeployKitError(f"torch.onnx.export failed: {_first_line(last)}", hint=hint) from last


def _torchscript_export(module, example, opset, dynamic_batch, input_name, output_name) -> onnx.ModelProto:
    """``torch.onnx.export(dynamo=False)``, the TorchScript exporter (deprecated upstream), in memory."""
    import io

    import onnx
    import torch

    axes = {input_name: {0: "batch"}, output_name: {0: "batch"}} if dynamic_batch else None
    buffer = io.BytesIO()
    with _quiet_exporter():
        try:
            torch.onnx.export(
                module, (example,), buffer, dynamo=False, opset_version=opset, input_names=[input_name],
                output_names=[output_name], dynamic_axes=axes, do_constant_folding=True,
            )  # fmt: skip
        except Exception as exc:  # the exporter raises many types; each becomes one message
            raise DeployKitError(f"torch.onnx.export (TorchScript) failed: {_first_line(exc)}", hint="try --exporter dynamo") from exc
    model = onnx.ModelProto()
    with buffer.getbuffer() as view:  # parsed from the buffer itself: no bytes copy of the weights
        model.ParseFromString(view)
    return model


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



def _checked_request(input_shape: Sequence[int], path: str | os.PathLike, opset: int) -> tuple[tuple[int, ...], Path]:
    _check_opset_request(opset)
    shape = tuple(int(s) for s in input_shape)
    if len(shape) < 2 or any(s < 1 for s in shape):
        raise UsageError(f"input shape {tuple(input_shape)} must be (batch, ...) with positive sizes")
    path = Path(path)
    if path.suffix != ".onnx":
        raise UsageError(f"the ONNX path {path} must end in .onnx")
    return shape, path


@dataclass
class _Written:
    """What the first half of an export left on disk, for :func:`check_written`."""

    path: Path
    external: Path | None
    opset: int
    dynamic_batch: bool
    exporter: str
    nodes_exported: int
    notes: list[str]
    start: float
    external_data_threshold: int  # bytes of weights above which they went to external data
    shapes_recorded: bool = False  # every node output already carries its type and shape


def _save_program(program: Any, path: Path, metadata: Mapping[str, Any] | None, threshold: int) -> Path | None:
    """The dynamo program straight to ``path`` (onnx_ir; weights above ``threshold`` as external data)."""
    from deploykit import onnx_io

    model = program.model
    for key, value in (metadata or {}).items():
        model.metadata_props[str(key)] = value if isinstance(value, str) else json.dumps(value, default=str)
    try:
        return onnx_io.save_ir_model(model, path, external_data_threshold=threshold)
    finally:
        # The exporter keeps some of its graph objects reachable after the program is gone: cut
        # them loose from the network's weights, so dropping the network frees its memory.
        for graph in model.graphs():
            for value in graph.initializers.values():
                value.const_value = None


def write_onnx(
    module: nn.Module, input_shape: Sequence[int], path: str | os.PathLike, *, opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True, input_name: str = "input", output_name: str = "logits",
    metadata: Mapping[str, Any] | None = None, slim: bool | None = None, external_data_threshold: int | None = None,
    exporter: str = DEFAULT_EXPORTER, check_forward: bool = True,
) -> _Written:  # fmt: skip
    """The first half of :func:`export_onnx`: trace ``module`` and write the file, unchecked.

    The caller may drop its last reference to ``module`` before :func:`check_written` (the
    export job does, so the checks and the verification never hold the network and the ONNX
    weights at once). ``check_forward=False`` skips the eager forward pass that turns a wrong
    input size into a clear error, for callers that have just run the module themselves.
    """
    import torch

    from deploykit import onnx_io

    start = time.perf_counter()
    shape, path = _checked_request(input_shape, path, opset)
    check_exporter(exporter)
    threshold = onnx_io.EXPORT_EXTERNAL_DATA_THRESHOLD if external_data_threshold is None else external_data_threshold
    threshold = min(threshold, onnx_io.EXTERNAL_DATA_THRESHOLD)  # protobuf cannot hold more in one file
    # Trace with a batch of 2 for a dynamic batch, so the exporter cannot specialize size 1.
    example_batch = max(shape[0], 2) if dynamic_batch else shape[0]
    example = torch.randn((example_batch, *shape[1:]), generator=torch.Generator().manual_seed(0))
    names, notes = (input_name, output_name), []
    was_training = module.training
    module.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        if check_forward:
            _run_forward(module, example)
        if exporter == "dynamo":
            program = _dynamo_export(module, example, opset, dynamic_batch, *names)
            nodes_exported = len(program.model.graph)
            shapes = all(v.shape is not None and v.type is not None for node in program.model.graph for v in node.outputs)
            external = _save_program(program, path, metadata, threshold)
            del program
        else:
            model = _torchscript_export(module, example, opset, dynamic_batch, *names)
            nodes_exported = len(model.graph.node)
            if slim is not False:
                slimmed = onnx_io.slim(model)
                model = slimmed.model
                notes.extend([slimmed.note] if slimmed.note else [])
                del slimmed
            _set_metadata(model, metadata)
            shapes = not _missing_shapes(model)
            external = onnx_io.save_proto_streamed(model, path, external_data_threshold=threshold)
            del model
    except BaseException:
        onnx_io.remove_model_files(path)
        raise
    finally:
        module.train(was_training)
    written = _Written(path, external, opset, dynamic_batch, exporter, nodes_exported, notes, start, threshold, shapes)
    if slim and exporter == "dynamo":
        _slim_file(written)
    return written


def _slim_file(written: _Written) -> None:
    """Slim a written file on request (the dynamo exporter's own optimizer has already folded it)."""
    from deploykit import onnx_graph, onnx_io

    slimmed = onnx_io.slim(onnx_graph.load_graph(written.path) if written.external is None else _load_all(written.path))
    written.notes.extend([slimmed.note] if slimmed.note else [])
    onnx_io.remove_model_files(written.path)
    written.external = onnx_io.save_model(slimmed.model, written.path, external_data_threshold=written.external_data_threshold)
    written.shapes_recorded = not _missing_shapes(slimmed.model)


def _load_all(path: Path) -> onnx.ModelProto:
    import onnx

    return onnx.load(str(path), load_external_data=True)


def _check_graph(model: onnx.ModelProto, opset: int, dynamic_batch: bool) -> None:
    """The produced opset, the batch dimension and one tensor in and out, read from the written graph."""
    import torch

    from deploykit.onnx_graph import main_opset

    produced = main_opset(model)
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


def _missing_shapes(model: onnx.ModelProto) -> bool:
    """Whether some node output of the main graph has no recorded type and shape."""
    known = {v.name for v in model.graph.value_info} | {v.name for v in model.graph.output}
    return any(name and name not in known for node in model.graph.node for name in node.output)


def check_written(written: _Written) -> OnnxExport:
    """The second half of :func:`export_onnx`: check the written file and describe it.

    The file is read back once, after the checker (weights left in external data). When it
    already records every tensor's shape (the dynamo exporter's), ``onnx.checker``'s full check
    runs strict shape inference as a check; otherwise shapes are inferred (strictly) and
    written back first.
    On any failure the written files are removed.
    """
    from deploykit import onnx_graph, onnx_io

    path = written.path
    try:
        if not written.shapes_recorded:
            onnx_io.infer_shapes_in_place(path)
            onnx_io.check_model(path, full_check=False)  # the strict inference just ran
        else:
            onnx_io.check_model(path)
        saved = onnx_graph.load_graph(path)  # read after the checker: the two never hold the weights at once
        _check_graph(saved, written.opset, written.dynamic_batch)
    except BaseException:
        onnx_io.remove_model_files(path)
        raise
    if written.external:
        limit = written.external_data_threshold / 2**20
        written.notes.append(f"weights stored as ONNX external data in {written.external.name} (more than {limit:g} MiB of them)")
    w = written
    return _describe(w.path, w.external, w.dynamic_batch, w.nodes_exported, tuple(w.notes), w.start, saved, w.exporter)


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
    slim: bool | None = None,
    external_data_threshold: int | None = None,
    exporter: str = DEFAULT_EXPORTER,
) -> OnnxExport:
    """Export ``module`` (any ``nn.Module`` with one tensor in and one tensor out) to ``path``.

    ``input_shape`` is the full input shape, batch first (``(1, 3, 224, 224)``). With
    ``dynamic_batch`` the batch dimension is symbolic (``batch``) and the given batch is only
    the tracing example; otherwise it is fixed. The module is exported in eval mode (its
    training flag is restored afterwards). ``metadata`` goes into the model's
    ``metadata_props`` (non-string values as JSON). ``exporter`` is ``"dynamo"`` (default) or
    ``"torchscript"`` (deprecated upstream). ``slim`` (onnxslim) defaults to the TorchScript
    exporter only: the dynamo exporter's optimizer already folds what onnxslim would (the same
    node count on every zoo model).

    Raises UsageError when the installed exporter cannot produce ``opset`` (it silently
    moves requests below 18, and unknown ones, to 18: the produced opset is read back),
    CheckFailedError when onnx.checker or strict shape inference reject the graph.
    Above ``external_data_threshold`` bytes of weights (default 64 MiB,
    :data:`deploykit.onnx_io.EXPORT_EXTERNAL_DATA_THRESHOLD`) they go to ``<path>.data``.
    """
    written = write_onnx(
        module, input_shape, path, opset=opset, dynamic_batch=dynamic_batch, input_name=input_name,
        output_name=output_name, metadata=metadata, slim=slim, external_data_threshold=external_data_threshold,
        exporter=exporter,
    )  # fmt: skip
    return check_written(written)


def _describe(
    path: Path, external: Path | None, dynamic_batch: bool, nodes_exported: int, notes: tuple[str, ...], start: float,
    saved: onnx.ModelProto | None = None, exporter: str = DEFAULT_EXPORTER,
) -> OnnxExport:  # fmt: skip
    """The :class:`OnnxExport` record of a written file, from ``saved`` (the graph already read
    back) or the file read now (weights left in external data)."""
    from deploykit import onnx_graph, onnx_io
    from deploykit.onnx_checks import tensorrt_preflight

    saved = onnx_graph.load_graph(path) if saved is None else saved
    operators = onnx_graph.operator_counts(saved)
    inputs, outputs = onnx_graph.graph_io(saved)
    return OnnxExport(
        path=path,
        opset=int(onnx_graph.main_opset(saved) or 0),
        input=inputs[0],
        output=outputs[0],
        dynamic_batch=dynamic_batch,
        bytes=onnx_io.model_file_bytes(path, saved),
        external_data=external,
        operators=operators,
        tensorrt=tensorrt_preflight(saved, operators),
        nodes_exported=nodes_exported,
        nodes=len(saved.graph.node),
        exporter=exporter_versions(exporter),
        notes=notes,
        seconds=time.perf_counter() - start,
    )
