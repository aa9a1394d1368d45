"""What the FP16 and INT8 converters share: ModelOpt import and output capture, graph facts.

ModelOpt logs to stdout (its handlers bind ``sys.stdout`` when they are configured) and ONNX
Runtime's calibrator prints progress lines; a ``--format json`` run must keep stdout clean,
and a failure should show what ModelOpt said. :func:`captured_output` collects all of it in
memory and hands back the log records, which is also how AutoCast's per-node reasons for
keeping a node in FP32 are read (it reports them only as log lines).
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from deploykit.errors import DeployKitError, UsageError

if TYPE_CHECKING:
    import onnx

MODELOPT_DIST = "nvidia-modelopt"
_LOGGERS = ("modelopt.onnx", "modelopt.onnx.autocast")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def require_modelopt(purpose: str) -> None:
    """Raise MissingDependencyError (naming the ``[int8]`` extra) unless ModelOpt's ONNX stack imports."""
    from deploykit._deps import require

    for module in ("modelopt", "onnx_graphsurgeon", "onnx", "onnxruntime"):
        require(module, purpose, extra="int8")


def modelopt_version() -> str:
    from importlib import metadata

    try:
        return metadata.version(MODELOPT_DIST)
    except metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class Captured:
    """Everything ModelOpt and ONNX Runtime printed or logged during one call."""

    text: io.StringIO = field(default_factory=io.StringIO)
    records: list[logging.LogRecord] = field(default_factory=list)

    def messages(self) -> list[str]:
        return [r.getMessage() for r in self.records]

    def tail(self, lines: int = 6) -> str:
        text = [line for line in self.text.getvalue().splitlines() if line.strip()]
        errors = [m for r in self.records if r.levelno >= logging.WARNING for m in [r.getMessage()]]
        return " | ".join((errors or text)[-lines:])


class _Swallow(logging.Filter):
    """Collects a logger's records and stops them there (no handler, no propagation to root).

    A logger-level filter, because ModelOpt's ``configure_logging()`` (called inside
    ``quantize``) replaces handlers and turns propagation back on; filters it leaves alone.
    """

    def __init__(self, sink: list[logging.LogRecord]):
        super().__init__()
        self.sink = sink

    def filter(self, record: logging.LogRecord) -> bool:
        self.sink.append(record)
        return False


@contextlib.contextmanager
def captured_output(level: int = logging.INFO) -> Iterator[Captured]:
    """Send ModelOpt's log and Python-level prints into memory for the duration of the block."""
    captured = Captured()
    swallow = _Swallow(captured.records)
    names = set(_LOGGERS) | {n for n in list(logging.root.manager.loggerDict) if n.startswith("modelopt")}
    saved = []
    for name in sorted(names):
        logger = logging.getLogger(name)
        saved.append((logger, logger.level))
        logger.setLevel(level)
        logger.addFilter(swallow)
    try:
        with contextlib.redirect_stdout(captured.text), contextlib.redirect_stderr(captured.text):
            yield captured
    finally:
        for logger, old_level in saved:
            logger.removeFilter(swallow)
            logger.setLevel(old_level)


def modelopt_failed(what: str, exc: BaseException, captured: Captured) -> DeployKitError:
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    said = captured.tail()
    return DeployKitError(
        f"{what} failed in ModelOpt {modelopt_version()}: {first}" + (f" (ModelOpt said: {said[:400]})" if said else ""),
        hint="nothing was written; rerun with the same arguments in Python to see the full traceback",
    )


# ---- graph facts ----------------------------------------------------------------------------
def operator_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items()))


def graph_precision(model: onnx.ModelProto) -> tuple[str, str]:
    """(``fp32`` | ``fp16`` | ``int8``, why): what precision work the graph already carries."""
    import onnx

    counts = operator_counts(model)
    qdq = sum(counts.get(op, 0) for op in QDQ_OPS)
    if qdq:
        return "int8", f"it has {qdq} QuantizeLinear/DequantizeLinear nodes"
    fp16_inits = sum(1 for t in model.graph.initializer if t.data_type == onnx.TensorProto.FLOAT16)
    fp16_io = [
        v.name
        for v in (*model.graph.input, *model.graph.output)
        if v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16
    ]
    if fp16_inits or fp16_io:
        parts = [f"{fp16_inits} FP16 initializers"] if fp16_inits else []
        if fp16_io:
            parts.append(f"FP16 inputs/outputs ({', '.join(fp16_io[:3])})")
        return "fp16", f"it has {' and '.join(parts)}"
    return "fp32", "FP32 graph"


def refuse_converted(model: onnx.ModelProto, path: Any) -> None:
    """UsageError when the source graph is already FP16 or quantized: precision is applied once."""
    precision, why = graph_precision(model)
    if precision != "fp32":
        raise UsageError(
            f"{path} is already an {precision.upper()} graph ({why}); precision is applied once, to the FP32 export",
            hint="convert the FP32 model (deploykit quantize NAME reads NAME_onnx_fp32)",
        )


def save_checked(model: onnx.ModelProto, dst_path: Any) -> None:
    """Save a converted graph and run the full ONNX check; on failure remove what was written."""
    from deploykit import onnx_checks

    dst_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        onnx_checks.save_model(model, dst_path)
        onnx_checks.check_model(dst_path)
    except BaseException:
        for leftover in (dst_path, dst_path.with_name(f"{dst_path.name}.data")):
            leftover.unlink(missing_ok=True)
        raise
