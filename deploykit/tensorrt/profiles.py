"""The optimization profile and the builder options, validated before anything slow happens."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from deploykit.errors import UsageError
from deploykit.onnx_graph import TensorSpec

MAX_BATCH_LIMIT = 4096
PROFILING_VERBOSITIES = ("detailed", "layer_names_only", "none")
OPT_LEVELS = (0, 1, 2, 3, 4, 5)


@dataclass(frozen=True)
class BatchProfile:
    """The optimization profile's batch sizes: ``1 <= min <= opt <= max``."""

    min: int
    opt: int
    max: int

    def shapes(self, dims: Sequence[int]) -> dict[str, tuple[int, ...]]:
        """Full input shapes for ``dims`` (the input's shape without the batch dimension)."""
        dims = tuple(int(d) for d in dims)
        return {"min": (self.min, *dims), "opt": (self.opt, *dims), "max": (self.max, *dims)}

    def contains(self, batch: int) -> bool:
        return self.min <= batch <= self.max


def batch_profile(min_batch: int = 1, opt_batch: int = 8, max_batch: int = 32) -> BatchProfile:
    """Validate ``--min-batch/--opt-batch/--max-batch``; a bad combination is a UsageError."""
    values = {"--min-batch": min_batch, "--opt-batch": opt_batch, "--max-batch": max_batch}
    for flag, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{flag} must be an integer, not {value!r}")
        if not 1 <= value <= MAX_BATCH_LIMIT:
            raise UsageError(f"{flag} {value} is out of range", hint=f"use 1..{MAX_BATCH_LIMIT}")
    if not min_batch <= opt_batch <= max_batch:
        raise UsageError(
            f"batch sizes must satisfy min <= opt <= max, got min {min_batch}, opt {opt_batch}, max {max_batch}",
            hint="e.g. --min-batch 1 --opt-batch 8 --max-batch 32",
        )
    return BatchProfile(min_batch, opt_batch, max_batch)


@dataclass(frozen=True)
class BuildSettings:
    """Everything the builder is told besides the graph (recorded in the sidecar)."""

    precision: str
    profile: BatchProfile
    workspace_mb: int | None = None
    opt_level: int | None = None
    timing_cache: str | None = None
    profiling_verbosity: str = "detailed"
    tf32: bool = True  # TensorRT's default: FP32 layers may run on TF32 tensor cores

    @property
    def math(self) -> str:
        """What the engine's arithmetic is, for its peak: ``tf32`` for an FP32 engine that may use TF32."""
        return "tf32" if self.precision == "fp32" and self.tf32 else self.precision


def build_settings(
    precision: str,
    min_batch: int = 1,
    opt_batch: int = 8,
    max_batch: int = 32,
    workspace_mb: int | None = None,
    opt_level: int | None = None,
    timing_cache: str | os.PathLike | None = None,
    profiling_verbosity: str = "detailed",
    tf32: bool = True,
) -> BuildSettings:
    """Validate the builder options before anything slow happens."""
    from deploykit.repository import validate_precision

    validate_precision(precision)
    profile = batch_profile(min_batch, opt_batch, max_batch)
    if workspace_mb is not None and not 1 <= workspace_mb <= 1 << 20:
        raise UsageError(f"--workspace-mb {workspace_mb} is out of range", hint="use 1..1048576 (MiB)")
    if opt_level is not None and opt_level not in OPT_LEVELS:
        raise UsageError(f"--opt-level {opt_level} is out of range", hint="use 0..5 (TensorRT's default is 3)")
    if profiling_verbosity not in PROFILING_VERBOSITIES:
        raise UsageError(
            f"unknown profiling verbosity {profiling_verbosity!r}",
            hint=f"choose from {', '.join(PROFILING_VERBOSITIES)}",
        )
    if precision != "fp32" and profiling_verbosity != "detailed":
        # Only detailed verbosity puts tensor types into the inspector's JSON; without them
        # an FP32 fallback would go unnoticed, which is the failure this build exists to catch.
        raise UsageError(
            f"--profiling-verbosity {profiling_verbosity} cannot verify that a {precision} engine "
            f"runs in {precision}",
            hint="use --profiling-verbosity detailed (the default)",
        )
    cache = None
    if timing_cache is not None:
        path = Path(timing_cache)
        if path.exists() and not path.is_file():
            raise UsageError(f"--timing-cache {path} is not a file")
        cache = str(path)
    return BuildSettings(precision, profile, workspace_mb, opt_level, cache, profiling_verbosity, bool(tf32))



def profile_input_dims(input: TensorSpec, profile: BatchProfile) -> tuple[int, ...]:
    """The input's non-batch dimensions, checked against the profile.

    A graph with a fixed batch size can only be built for that size, and TensorRT needs every
    other dimension static (or a profile for it, which deploykit does not make).
    """
    if len(input.shape) < 2:
        raise UsageError(f"input {input.name!r} has shape {list(input.shape)}: expected N x C x H x W")
    batch, dims = input.shape[0], input.shape[1:]
    if any(d < 0 for d in dims):
        raise UsageError(
            f"input {input.name!r} has dynamic dimensions besides the batch: {list(input.shape)}",
            hint="export with a fixed image size (deploykit export NAME --size ...)",
        )
    if batch > 0 and not profile.min == profile.max == batch:
        raise UsageError(
            f"the ONNX input {input.name!r} has a fixed batch size of {batch}, so the engine cannot "
            f"take batches {profile.min}..{profile.max}",
            hint=f"re-export with a dynamic batch, or build with --min-batch {batch} --opt-batch {batch} --max-batch {batch}",
        )
    return dims
