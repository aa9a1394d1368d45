"""Which variants of a repository the local server can serve, read from their config.pbtxt.

Torch-free and PyTriton-free: the launcher plans before it starts anything (a bad ``--repo``
or ``--models`` fails at once) and the server process plans again in its own environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from deploykit.errors import UsageError
from deploykit.serve.protocol import MAX_BATCH_LIMIT, ServedModel, Unavailable

_RUNNER_DTYPE = "float32"  # deploykit runners take and return float32


def _tensor(config: Any, section: str) -> tuple[str, tuple[int, ...], str | None]:
    from deploykit.triton.config import dtype_name

    tensors = list(getattr(config, section))
    if len(tensors) != 1:
        raise ValueError(f"config.pbtxt has {len(tensors)} {section}s; deploykit serves one-{section} classifiers")
    t = tensors[0]
    if not t.name:
        raise ValueError(f"the {section} in config.pbtxt has no name")
    dims = tuple(t.dims)
    if not dims or any(d < 1 and d != -1 for d in dims):
        raise ValueError(f"the {section} {t.name!r} has invalid dims {list(dims)}")
    return t.name, dims, dtype_name(t.data_type)


def _read(directory: Path, backend: str) -> tuple[Any, str]:
    """The parsed config and the artifact format it runs; ValueError when this backend cannot serve it."""
    from deploykit.runtimes import get_backend, platform_format
    from deploykit.triton.config import ConfigError, read_config

    config_path = directory / "config.pbtxt"
    if not config_path.is_file():
        raise ValueError("no config.pbtxt")
    try:
        config = read_config(config_path)
    except ConfigError as exc:
        raise ValueError(exc.message) from None
    platform = config.platform or config.backend
    fmt = platform_format(platform)
    if fmt is None or fmt != get_backend(backend).format:
        raise ValueError(f"platform {platform or '?'!r} cannot run on the {backend} backend")
    return config, fmt


def _model_file(directory: Path, config: Any, fmt: str) -> tuple[int, Path]:
    from deploykit.artifacts import MODEL_FILES

    versions = sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0)
    if not versions:
        raise ValueError("no version folder (e.g. 1/)")
    version = versions[-1]  # Triton's default version policy: the latest
    path = directory / str(version) / (config.default_model_filename or MODEL_FILES[fmt])
    if not path.is_file():
        raise ValueError(f"model file {path.relative_to(directory)} is missing")
    return version, path


def plan_model(directory: Path, backend: str) -> ServedModel:
    """Read one model folder into a :class:`ServedModel`; ValueError says why it cannot be served."""
    config, fmt = _read(directory, backend)
    max_batch_size = config.max_batch_size
    if not 1 <= max_batch_size <= MAX_BATCH_LIMIT:
        raise ValueError(f"max_batch_size {max_batch_size} is outside 1..{MAX_BATCH_LIMIT} (deploykit serves batched models)")
    input_name, input_dims, input_type = _tensor(config, "input")
    output_name, output_dims, output_type = _tensor(config, "output")
    if input_type != _RUNNER_DTYPE or output_type != _RUNNER_DTYPE:
        raise ValueError(f"input/output are {input_type}/{output_type}; deploykit runners take and return TYPE_FP32")
    version, path = _model_file(directory, config, fmt)
    batching = config.dynamic_batching
    preferred = tuple(b for b in batching.preferred_batch_size if 0 < b <= max_batch_size)
    instances = max(1, sum(g.count or 1 for g in config.instance_group)) if config.instance_group else 1
    return ServedModel(
        name=directory.name,
        backend=backend,
        path=str(path),
        version=version,
        max_batch_size=max_batch_size,
        preferred_batch_sizes=preferred,
        max_queue_delay_us=max(0, batching.max_queue_delay_microseconds),
        input_name=input_name,
        input_dims=input_dims,
        output_name=output_name,
        output_dims=output_dims,
        instances=min(instances, 4),
    )


def _select(root: Path, models: list[str] | None) -> list[Path]:
    folders = {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    if not models:
        return list(folders.values())
    unknown = [m for m in models if m not in folders]
    if unknown:
        raise UsageError(
            f"no model {', '.join(map(repr, unknown))} in {root}",
            hint=f"models there: {', '.join(folders) or 'none'}",
        )
    return [folders[m] for m in models]


def plan_repository(
    repo: str | os.PathLike, models: list[str] | None, backend: str
) -> tuple[list[ServedModel], list[Unavailable]]:
    """Which variants of ``repo`` this backend serves, and which cannot be served (with reasons).

    With ``models`` None, every model folder whose platform fits the backend is taken; named
    models must exist in the repository (a UsageError otherwise).
    """
    from deploykit.runtimes import servable_backends

    if backend not in servable_backends():
        raise UsageError(f"unknown backend {backend!r}", hint=f"choose from {', '.join(servable_backends())}")
    root = Path(repo)
    if not root.is_dir():
        raise UsageError(f"no model repository at {root}", hint="pass --repo, or create one with `deploykit export`")
    planned, unavailable = [], []
    for directory in _select(root, models):
        try:
            planned.append(plan_model(directory, backend))
        except ValueError as exc:
            if not models and str(exc).startswith("platform "):
                continue  # a variant for another backend: not asked for, not an error
            unavailable.append(Unavailable(directory.name, str(exc)))
    return planned, unavailable
