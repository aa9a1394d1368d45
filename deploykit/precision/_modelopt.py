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


@contextlib.contextmanager
def running_modelopt(what: str) -> Iterator[Captured]:
    """:func:`captured_output` around a ModelOpt call, its failures raised as :func:`modelopt_failed`.

    A missing import, memory exhaustion, an interrupt and a full disk (which the caller says as
    such) pass through unchanged.
    """
    from deploykit.fileio import NO_SPACE

    with captured_output() as captured:
        try:
            yield captured
        except (ImportError, MemoryError, KeyboardInterrupt):
            raise
        except OSError as exc:
            if exc.errno in NO_SPACE:
                raise
            raise modelopt_failed(what, exc, captured) from exc
        except Exception as exc:
            raise modelopt_failed(what, exc, captured) from exc


# ---- graph facts ----------------------------------------------------------------------------
def refuse_converted(model: onnx.ModelProto, path: Any) -> None:
    """UsageError when the source graph is already FP16 or quantized: precision is applied once."""
    from deploykit.onnx_graph import precision_report

    report = precision_report(model)
    precision, why = report.precision, report.why
    if precision != "fp32":
        raise UsageError(
            f"{path} is already an {precision.upper()} graph ({why}); precision is applied once, to the FP32 export",
            hint="convert the FP32 model (deploykit quantize NAME reads NAME_onnx_fp32)",
        )


def save_checked(model: onnx.ModelProto, dst_path: Any) -> None:
    """Save a converted graph and run the full ONNX check; on failure remove what was written."""
    from deploykit import onnx_io

    dst_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        onnx_io.save_model(model, dst_path)
        onnx_io.check_model(dst_path)
    except BaseException:
        for leftover in (dst_path, dst_path.with_name(f"{dst_path.name}.data")):
            leftover.unlink(missing_ok=True)
        raise
