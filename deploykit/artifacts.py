"""Artifacts and their lineage: every file on disk says how it was made.

A pipeline stage takes an artifact and returns a new one that names its parent:
``pytorch:resnet50`` -> ``resnet50_onnx_fp32`` -> ``resnet50_onnx_int8`` -> ``resnet50_trt_int8``.
The same facts are stored in each variant's sidecar (``deploykit.json``).
"""

from __future__ import annotations

import contextlib
import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from deploykit.preprocessing import Preprocessing

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
        """The model file's bytes, its external data (``model.onnx.data``) included."""
        from deploykit.fileio import model_bytes

        return model_bytes(self.path) if self.path.exists() else 0

    # ---- what the sidecar says about the model the variant came from ---------------------
    @property
    def weights_sha256(self) -> str | None:
        """The sha256 of the weights the variant was exported from ("random-init" for unsaved
        random weights), as its sidecar records it."""
        for key in ("weights", "source"):
            section = self.meta.get(key)
            if isinstance(section, Mapping):
                for sha_key in ("sha256", "weights_sha256"):
                    if isinstance(section.get(sha_key), str):
                        return section[sha_key]
        value = self.meta.get("weights_sha256")
        return value if isinstance(value, str) else None

    @property
    def num_classes(self) -> int | None:
        """The classifier's output count: the sidecar's ``num_classes``, else the output's last dim."""
        meta = self.meta
        for section in (meta, meta.get("source"), meta.get("output"), meta.get("model_config")):
            if isinstance(section, Mapping) and isinstance(section.get("num_classes"), int):
                return section["num_classes"]
        output = meta.get("output")
        if isinstance(output, Mapping) and isinstance(output.get("shape"), list) and output["shape"]:
            last = output["shape"][-1]
            return last if isinstance(last, int) and last > 0 else None
        return None

    @property
    def input_size(self) -> int | None:
        """The square image side the sidecar records for the input, if any."""
        section = self.meta.get("input")
        if not isinstance(section, Mapping):
            return None
        shape = section.get("shape")
        if isinstance(shape, list) and len(shape) == 4 and isinstance(shape[-1], int) and shape[-1] > 0:
            return shape[-1]
        size = section.get("size")
        return size if isinstance(size, int) else None

    @property
    def preprocessing(self) -> Preprocessing | None:
        """The preprocessing the sidecar records (None when it records none, or an unreadable one)."""
        from deploykit.preprocessing import Preprocessing

        pre = self.meta.get("preprocessing")
        if isinstance(pre, Mapping):
            known = {f.name for f in fields(Preprocessing)}
            values = {k: tuple(v) if isinstance(v, list) else v for k, v in pre.items() if k in known}
            with contextlib.suppress(TypeError):
                return Preprocessing(**values)
        return None

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
