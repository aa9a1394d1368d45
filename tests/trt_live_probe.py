"""Run by tests/test_trt_bindings.py in a subprocess whose ``tensorrt`` is a real binding wheel
on stand-in native libraries (every entry point returns NULL); not a test module. It prints one
JSON object:

``surface``
    The release's API surface as tools/trt_api_snapshot.py records it.
``factories``
    Finds the ILogger/IProfiler subclasses deploykit defines (a function in a TensorRT module
    that defines ``class X(trt.ILogger)`` and makes an ``X(...)``), makes each through that
    function (``trt`` is the module; every other parameter is built from its annotation with no
    arguments), checks the instance is a real pybind subclass, and calls the C++ virtual
    (``trt.ILogger.log(instance, ...)``, ``trt.IProfiler.report_layer_time(instance, ...)``):
    pybind dispatches it through the trampoline to deploykit's Python override.
``logger``
    deploykit's process-wide logger: the same instance each time, and a ``collecting`` block
    receives what TensorRT logs through it while the block runs (and nothing after).
``cuda_major``
    the CUDA major deploykit reads from the installed binding wheel's distribution.
``native``
    deploykit's loader, then its first native calls (Builder, then Runtime creation), each under
    the CLI's own error handling (``deploykit.cli.LazyGroup``): the exit code and what a user
    sees (``error:``/``hint:``). A traceback would end this process; a crash would kill it.
"""

from __future__ import annotations

import ast
import importlib
import json
import sys
from typing import Any

import trt_api

BASES = ("ILogger", "IProfiler")


def factories() -> list[tuple[str, str, str]]:
    """(module, function, base) for each function that defines and instantiates a TensorRT subclass."""
    found = []
    for module in trt_api.trt_modules():
        for func in module.tree.body:
            if not isinstance(func, ast.FunctionDef):
                continue
            for node in ast.walk(func):
                if not isinstance(node, ast.ClassDef):
                    continue
                base = next(
                    (b.attr for b in node.bases if isinstance(b, ast.Attribute) and b.attr in BASES), None
                )
                made = any(
                    isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == node.name
                    for call in ast.walk(func)
                )
                if base and made:
                    found.append((module.name, func.name, base))
    return found


def _arguments(function: Any, trt: Any) -> dict[str, Any]:
    import inspect
    import typing

    hints = typing.get_type_hints(function, vars(sys.modules[function.__module__]))
    args = {}
    for name in inspect.signature(function).parameters:
        if name == trt_api.TRT_PARAMETER:
            args[name] = trt
        elif name in hints:
            args[name] = hints[name]()
        else:
            raise SystemExit(f"{function.__qualname__}: parameter {name!r} has no annotation to build it from")
    return args


def _strings(obj: Any, depth: int = 0) -> set[str]:
    """Every string held by ``obj`` (its attributes, lists and dicts, a few levels down)."""
    if isinstance(obj, str):
        return {obj}
    if depth > 3:
        return set()
    if isinstance(obj, dict):
        items = [*obj.keys(), *obj.values()]
    elif isinstance(obj, (list, tuple, set)):
        items = list(obj)
    elif hasattr(obj, "__dict__"):
        items = list(vars(obj).values())
    else:
        return set()
    return set().union(*(_strings(item, depth + 1) for item in items)) if items else set()


def probe_subclasses(trt: Any) -> list[dict[str, Any]]:
    report = []
    for module_name, function_name, base in factories():
        function = getattr(importlib.import_module(module_name), function_name)
        args = _arguments(function, trt)
        instance = function(**args)
        entry = {
            "module": module_name,
            "function": function_name,
            "base": base,
            "type": type(instance).__qualname__,
            "is_subclass": isinstance(instance, getattr(trt, base)),
        }
        if base == "ILogger":
            severity = trt.ILogger.Severity
            trt.ILogger.log(instance, severity.ERROR, "probe-error")
            trt.ILogger.log(instance, severity.WARNING, "probe-warning")
            sent = ["probe-error", "probe-warning"]
        else:
            trt.IProfiler.report_layer_time(instance, "probe-layer", 0.25)
            sent = ["probe-layer"]
        held = _strings(args) | _strings(instance)
        entry["received"] = [text for text in sent if text in held]
        entry["sent"] = sent
        report.append(entry)
    return report


def _named(name: str) -> Any:
    """A function a TensorRT module of deploykit defines (wherever the module now lives)."""
    for found in trt_api.trt_modules():
        module = importlib.import_module(found.name)
        value = getattr(module, name, None)
        if callable(value) and value.__module__ == module.__name__:
            return value
    raise SystemExit(f"no TensorRT module defines {name}()")


def probe_native(what: str) -> dict[str, Any]:
    """deploykit's loader, then ``create_<what>`` (its first native call), under the CLI's error handling."""
    import contextlib
    import io

    from deploykit.cli import LazyGroup

    def first_native_call() -> None:
        trt = _named(sorted(trt_api.loaders())[0])()
        _named(f"create_{what}")(trt, _named("tensorrt_logger")(trt))

    group = LazyGroup(name="deploykit", callback=first_native_call, invoke_without_command=True)
    shown = io.StringIO()
    with contextlib.redirect_stderr(shown):
        code = group.main(args=[], prog_name="deploykit", standalone_mode=False)
    return {"exit_code": code, "stderr": shown.getvalue()}


def probe_logger(trt: Any) -> dict[str, Any]:
    """The process-wide logger: one instance, and ``collecting`` sees what is logged inside it."""
    first = _named("tensorrt_logger")(trt)
    again = _named("tensorrt_logger")(trt)
    with _named("collecting")(trt) as messages:
        trt.ILogger.log(first, trt.ILogger.Severity.ERROR, "inside")
        trt.ILogger.log(first, trt.ILogger.Severity.WARNING, "inside-warning")
    trt.ILogger.log(first, trt.ILogger.Severity.ERROR, "outside")
    return {"same": first is again, "errors": messages.errors, "warnings": messages.warnings}


def main() -> None:
    import tensorrt as trt
    import tensorrt_bindings
    import trt_api_snapshot

    print(
        json.dumps(
            {
                "version": trt.__version__,
                "surface": trt_api_snapshot.surface(tensorrt_bindings),
                "factories": probe_subclasses(trt),
                "native": {what: probe_native(what) for what in ("builder", "runtime")},
                "logger": probe_logger(trt),
                "cuda_major": _named("tensorrt_cuda_major")(),
            }
        )
    )


if __name__ == "__main__":
    main()
