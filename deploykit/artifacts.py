"""Artifacts and their lineage: every file on disk says how it was made.

A pipeline stage takes an artifact and returns a new one that names its parent:
``pytorch:resnet50`` -> ``resnet50_onnx_fp32`` -> ``resnet50_onnx_int8`` -> ``resnet50_trt_int8``.
The same facts are stored in each variant's sidecar (``deploykit.json``).
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

SIDECAR = "deploykit.json"
SIDECAR_SCHEMA = 1
FORMATS = ("onnx", "trt")
PRECISIONS = ("fp32", "fp16", "int8")
MODEL_FILES = {"onnx": "model.onnx", "trt": "model.plan"}


def variant_name(model: str, fmt: str, precision: str) -> str:
    """``resnet50``, ``onnx``, ``fp32`` -> ``resnet50_onnx_fp32`` (one Triton model per variant)."""
    return f"{model}_{fmt}_{precision}"


@dataclass(frozen=True)
class Artifact:
    """One deployable file in the model repository, and how it was made."""

    model: str
    format: str
    precision: str
    path: Path
    parent: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def variant(self) -> str:
        return variant_name(self.model, self.format, self.precision)

    @property
    def directory(self) -> Path:
        """The Triton model folder (``<repo>/<variant>``)."""
        return self.path.parent.parent

    @property
    def bytes(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def lineage(self) -> list[str]:
        """Ancestry, oldest first, ending with this variant (``meta["lineage"]`` holds the ancestors)."""
        ancestors = self.meta.get("lineage") or ([self.parent] if self.parent else [])
        return [*ancestors, self.variant]

    def to_sidecar(self) -> dict[str, Any]:
        data = {
            "schema": SIDECAR_SCHEMA,
            "variant": self.variant,
            "model": self.model,
            "format": self.format,
            "precision": self.precision,
            "file": self.path.name,
            "parent": self.parent,
        }
        data.update({k: v for k, v in self.meta.items() if k not in data})
        return data

    @classmethod
    def from_sidecar(cls, directory: str | Path) -> Artifact:
        directory = Path(directory)
        data = json.loads((directory / SIDECAR).read_text())
        fixed = {"schema", "variant", "model", "format", "precision", "file", "parent"}
        version = str(data.get("version", 1))
        return cls(
            model=data["model"],
            format=data["format"],
            precision=data["precision"],
            path=directory / version / data.get("file", MODEL_FILES[data["format"]]),
            parent=data.get("parent"),
            meta={k: v for k, v in data.items() if k not in fixed},
        )


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def library_versions(*modules: str) -> dict[str, str]:
    """Installed versions of the named distributions/modules (missing ones are left out)."""
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in modules:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out
