"""The deploykit command line: a thin click layer over the library.

Subcommands live in ``deploykit/commands/<name>.py`` and are imported only when run, so
``deploykit --help`` and every ``--help`` answer without importing torch or onnx.
"""

from __future__ import annotations

import importlib
import sys

import click

from deploykit.errors import DeployKitError

# name -> (module in deploykit.commands, one-line help shown by `deploykit --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "models": ("models", "List the zoo with params and GMACs."),
    "analyze": ("analyze", "Per-layer table: shapes, activation memory, params, MACs."),
    "estimate": ("estimate", "Roofline bound per layer on GPUs (datasheets) and this CPU (measured)."),
    "export": ("export", "Export a zoo model to verified ONNX in the model repository."),
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
        try:
            return super().invoke(ctx)
        except DeployKitError as exc:
            click.echo(f"error: {exc.message}", err=True)
            if exc.hint:
                click.echo(f"hint: {exc.hint}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="deploykit")
def cli() -> None:
    """deploykit: classic CNNs from PyTorch to production on NVIDIA GPUs, measured at every step.

    \b
    Pipeline:  zoo -> analyze -> export -> quantize -> build -> bench / parity -> serve
    """


def main() -> None:
    cli(prog_name="deploykit")


if __name__ == "__main__":
    sys.exit(main())
