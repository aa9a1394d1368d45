"""Parity verdicts written into each checked variant's sidecar, one per backend, reference and data set."""

from __future__ import annotations

import json
from typing import Any

from deploykit.artifacts import SIDECAR, Artifact

# The sidecar's "parity" section holds the export-time check (ONNX vs PyTorch on the sample
# photos); `deploykit parity` keeps its verdicts beside it, one per backend, reference and
# data set.
PARITY_SECTION = "parity_checks"


def sidecar_key(backend: str, reference: str, weights_sha: str | None, data_sha: str) -> str:
    weights = weights_sha[:12] if weights_sha else "module"
    return f"{backend} vs {reference} weights:{weights} data:{data_sha[:12]}"


def record(artifact: Artifact, key: str, entry: dict[str, Any]) -> None:
    """Add ``entry`` under ``parity_checks[key]`` in the variant's sidecar (atomic rewrite)."""
    from deploykit.fileio import atomic_write_json

    path = artifact.directory / SIDECAR
    data = json.loads(path.read_text())
    section = data.get(PARITY_SECTION)
    if not isinstance(section, dict):
        section = {}
    section[key] = entry
    data[PARITY_SECTION] = section
    atomic_write_json(path, data)


def check_recordable(artifact: Artifact) -> None:
    """Before any computation: refuse a run whose verdict could not be written to ``artifact``'s sidecar."""
    import os

    from deploykit.errors import UsageError

    path = artifact.directory / SIDECAR
    if not (os.access(artifact.directory, os.W_OK | os.X_OK) and os.access(path, os.W_OK)):
        raise UsageError(
            f"cannot record the parity verdict in {path}: the variant folder is not writable (read-only repository?)",
            hint="make it writable, or pass --no-write to check without recording the verdict",
        )


def try_record(artifact: Artifact, key: str, entry: dict[str, Any]) -> str | None:
    """:func:`record`, returning why it failed (a full disk, a repository made read-only
    meanwhile) instead of raising: the verdict is still shown, and said to be unrecorded."""
    try:
        record(artifact, key, entry)
    except OSError as exc:
        return f"not recorded in {artifact.directory / SIDECAR}: {exc.strerror or exc}"
    return None
