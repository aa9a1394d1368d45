"""The deploykit command line: a thin click layer over the library.

Subcommands live in ``deploykit/commands/<name>.py`` and are imported only when run, so
``deploykit --help`` and every ``--help`` answer without importing torch or onnx.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click

from deploykit.errors import DeployKitError

# name -> (module in deploykit.commands, one-line help shown by `deploykit --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("models", "List the zoo with params and GMACs."),
    "analyze": ("analyze", "Per-layer table: shapes, activation memory, params, MACs."),
    "estimate": ("estimate", "Roofline bound per layer on GPUs (datasheets) and this CPU (measured)."),
    "export": ("export", "Export a zoo model to verified ONNX in the model repository."),
    "import": ("import_onnx", "Check an ONNX classifier from elsewhere and add it to the model repository."),
    "quantize": ("quantize", "Make FP16 / INT8 ONNX variants of an exported model."),
    "build": ("build", "Build a strongly typed TensorRT engine from an ONNX variant."),
    "bench": ("bench", "Latency, throughput and memory per backend, precision and batch."),
    "report": ("report", "Markdown report with charts from bench results."),
    "parity": ("parity", "Check deployed variants against the PyTorch FP32 reference."),
    "repo": ("repo", "Inspect and validate the Triton model repository."),
    "serve": ("serve", "Serve the model repository with a local Triton server."),
    "infer": ("infer", "Send images to a Triton server and print the top classes."),
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        module = importlib.import_module(f"deploykit.commands.{COMMANDS[name][0]}")
        return module.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(name, text) for name, (_, text) in COMMANDS.items()])

    def invoke(self, ctx: click.Context):
        # The subcommand's raw arguments, read before click consumes them: an error is also
        # printed as JSON on stdout when they ask for --format json.
        raw = [*getattr(ctx, "_protected_args", ()), *ctx.args]
        with _sigint_recorded() as interrupted:
            try:
                result = super().invoke(ctx)
            except DeployKitError as exc:
                if interrupted:
                    _exit_interrupted(ctx, raw)
                report_error(raw, exc.message, exc.hint, exc.exit_code)
                ctx.exit(exc.exit_code)
            except click.ClickException as exc:  # click's own usage errors; click prints them
                if interrupted:
                    _exit_interrupted(ctx, raw)
                if wants_json(raw):
                    echo_error_json(exc.format_message(), "see --help", exc.exit_code)
                raise
            except BaseException as exc:
                if _exit_code(exc) == INTERRUPTED:
                    raise  # the command handled Ctrl+C itself (serve stops on it)
                # Ctrl+C, or whatever a library made of a KeyboardInterrupt it swallowed.
                if interrupted or isinstance(exc, KeyboardInterrupt):
                    _exit_interrupted(ctx, raw)
                raise
        if interrupted:  # a library swallowed the KeyboardInterrupt and carried on
            _exit_interrupted(ctx, raw)
        return result


def _exit_code(exc: BaseException) -> int | None:
    if isinstance(exc, SystemExit):
        return exc.code if isinstance(exc.code, int) else None
    return getattr(exc, "exit_code", None) if isinstance(exc, click.exceptions.Exit) else None


def _exit_interrupted(ctx: click.Context, raw: list[str]) -> None:
    report_error(raw, "interrupted", None, INTERRUPTED)
    ctx.exit(INTERRUPTED)


@contextmanager
def _sigint_recorded() -> Iterator[list[int]]:
    """Record Ctrl+C (and still raise KeyboardInterrupt): some libraries swallow the exception
    with a bare ``except:`` while importing, and the run must end with 130 all the same."""
    seen: list[int] = []

    def on_sigint(signum, frame):
        seen.append(signum)
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGINT, on_sigint)
    except ValueError:  # not the main thread: leave the handler alone
        yield seen
        return
    try:
        yield seen
    finally:
        signal.signal(signal.SIGINT, previous)


INTERRUPTED = 130  # 128 + SIGINT: the shell's code for a run stopped by Ctrl+C


def wants_json(args: list[str]) -> bool:
    """True when the command line asks for ``--format json``."""
    return "--format=json" in args or any(
        a == "--format" and b == "json" for a, b in zip(args, args[1:], strict=False)
    )


def echo_error_json(message: str, hint: str | None, exit_code: int) -> None:
    import json

    click.echo(json.dumps({"error": message, "hint": hint, "exit_code": exit_code}))


def report_error(args: list[str], message: str, hint: str | None, exit_code: int) -> None:
    """One ``error:`` line (and a ``hint:``) on stderr; with --format json also a JSON object
    on stdout, so scripts need not parse text."""
    click.echo(f"error: {message}", err=True)
    if hint:
        click.echo(f"hint: {hint}", err=True)
    if wants_json(args):
        echo_error_json(message, hint, exit_code)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="deploykit")
def cli() -> None:
    """deploykit: classic CNNs from PyTorch to production on NVIDIA GPUs, measured at every step.

    \b
    Pipeline:  zoo -> analyze -> export -> quantize -> build -> bench / parity -> serve
    """


# SIGTERM (a supervisor's stop, `kill`, `timeout`) ends a run the way Ctrl+C does: it raises
# KeyboardInterrupt, so every scratch folder and half-written file is removed on the way out;
# the exit code is 143 (128 + SIGTERM), the shell's convention, so a caller can tell a stop it
# asked for from a user's Ctrl+C (130).
TERMINATED = 128 + signal.SIGTERM


def _on_sigterm(signum, frame) -> None:
    global _terminated
    _terminated = True
    raise KeyboardInterrupt


_terminated = False


def main() -> None:
    with contextlib.suppress(ValueError):  # not the main thread: leave the handler alone
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        cli(prog_name="deploykit")
    except SystemExit as exc:
        _leave(TERMINATED if _terminated else exc.code)
    except KeyboardInterrupt:
        _leave(TERMINATED if _terminated else 130)


def _leave(code: Any) -> None:
    """End the process with ``code`` without the interpreter's teardown of torch, ONNX Runtime and
    the exporter's modules: after ``deploykit export resnet50`` that teardown alone costs 1.2 s of
    CPU and raises the peak memory by 90 MB (benchmarks/results/export_cost.md). By now every
    command has closed its files and stopped its children; the atexit handlers (logging's flush)
    still run and stdout/stderr are flushed. With another non-daemon thread alive, or under a
    debugger or coverage tool (``sys.gettrace()``), Python exits the usual way."""
    import threading

    if sys.gettrace() is not None or any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        raise SystemExit(code)
    if code is None:
        code = 0
    elif not isinstance(code, int):
        print(code, file=sys.stderr)  # SystemExit("message"): what Python itself would print
        code = 1
    import atexit

    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code & 0xFF)


if __name__ == "__main__":
    sys.exit(main())
