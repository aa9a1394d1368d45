"""The conversion cache: a rebuild with the same parent, data and options does not calibrate again.

Entries live under ``<repo>/.cache/precision/<key>/`` (``model.onnx`` + ``conversion.json``),
keyed by the sha256 of the facts that decide the result: the parent model's sha256, the
calibration set's sha256 and size, the recipe's options and the ModelOpt version. An entry
counts only when it is complete and its model file still has the hash it was stored with.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CACHE_DIR = ".cache/precision"
CACHE_SCHEMA = 2  # 2: INT8 weights stored as INT8 (DequantizeLinear-only weights)
CACHE_KEEP = 3  # entries kept per model and precision (a VGG-16 entry is ~0.5 GB)


def cache_key(facts: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    """One cached conversion: the folder, and its report when it is complete and intact."""

    path: Path
    key: str
    info: dict[str, Any] | None

    @property
    def hit(self) -> bool:
        return self.info is not None

    @property
    def model(self) -> Path:
        return self.path / "model.onnx"


@dataclass(frozen=True)
class ConversionCache:
    """The conversion cache of one model repository (``<repo>/.cache/precision``)."""

    root: Path

    @classmethod
    def of(cls, repo_root: str | Path) -> ConversionCache:
        return cls(Path(repo_root) / CACHE_DIR)

    def entry(self, facts: dict[str, Any], use: bool = True) -> CacheEntry:
        """The entry for ``facts``; its ``info`` is None on a miss (or when ``use`` is False)."""
        key = cache_key({"schema": CACHE_SCHEMA, **facts})
        path = self.root / key[:32]
        return CacheEntry(path, key, _lookup(path) if use else None)

    def store(self, entry: CacheEntry, produced: Path, record: dict[str, Any]) -> None:
        """Copy ``produced`` into the entry with its report, atomically; keep the newest few."""
        from deploykit.fileio import atomic_directory, atomic_write_json, sha256_file

        with atomic_directory(entry.path) as tmp:
            shutil.copyfile(produced, tmp / "model.onnx")
            info = {"schema": CACHE_SCHEMA, **record, "model_sha256": sha256_file(produced)}
            atomic_write_json(tmp / "conversion.json", info)
        self.prune(record.get("model"), record.get("precision"), keep=entry.path.name)

    def prune(self, model: str | None, precision: str | None, keep: str) -> None:
        """Keep the newest CACHE_KEEP entries of this model and precision (and ``keep``)."""
        entries = []
        for entry in self.root.iterdir() if self.root.is_dir() else ():
            info = entry / "conversion.json"
            with contextlib.suppress(OSError, json.JSONDecodeError):
                data = json.loads(info.read_text())
                if data.get("model") == model and data.get("precision") == precision:
                    entries.append((info.stat().st_mtime, entry))
        for _, entry in sorted(entries, reverse=True)[CACHE_KEEP:]:
            if entry.name != keep:
                shutil.rmtree(entry, ignore_errors=True)


def _lookup(entry: Path) -> dict[str, Any] | None:
    """The cached conversion report if the entry is complete and its model file is intact."""
    from deploykit.fileio import sha256_file

    info_path, model_path = entry / "conversion.json", entry / "model.onnx"
    if not (info_path.is_file() and model_path.is_file()):
        return None
    try:
        info = json.loads(info_path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if info.get("schema") != CACHE_SCHEMA or sha256_file(model_path) != info.get("model_sha256"):
        return None
    return info
