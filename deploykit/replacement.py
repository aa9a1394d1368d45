"""What writing a variant does to the folder already there: replace deploykit's own files,
keep everything else.

A variant folder may hold more than deploykit wrote: other version folders (``2/``) a user
or a CI job added for Triton's version policy, notes, a hand-made ``1/`` extra. A new write
replaces only deploykit's own files (``config.pbtxt``, ``deploykit.json`` and the model files
of the version it writes); other versions and other files are carried into the new folder
(hard links, so nothing is copied twice). A file deploykit did not write inside the version
folder being replaced would be lost, so the write is refused unless ``force`` is given.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploykit.artifacts import MODEL_FILES, SIDECAR
from deploykit.errors import UsageError

_OWN_TOP = ("config.pbtxt", SIDECAR)


@dataclass(frozen=True)
class Replacement:
    """The previous content of a variant folder, sorted by what a new write does to it."""

    variant: str
    replaced: tuple[str, ...]  # deploykit's own files, overwritten by the new variant
    kept: tuple[str, ...]  # other versions and files, carried into the new folder unchanged
    discarded: tuple[str, ...]  # files deploykit did not write in the replaced version folder
    created_at: str | None  # the previous variant's, from its sidecar
    sha256: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "created_at": self.created_at, "sha256": self.sha256, "replaced": list(self.replaced),
            "kept": list(self.kept), "discarded": list(self.discarded),
        }  # fmt: skip

    def summary(self) -> str:
        return replacement_summary(self.variant, self.to_dict())


def replacement_summary(variant: str, replaced: dict[str, Any]) -> str:
    """One line from a sidecar's ``replaced``: 'replaced the previous X (created ...); kept 2/'."""
    created = f" (created {replaced['created_at']})" if replaced.get("created_at") else ""
    text = f"replaced the previous {variant}{created}"
    if replaced.get("kept"):
        text += f"; kept {', '.join(replaced['kept'])}"
    if replaced.get("discarded"):
        text += f"; discarded (--force) {', '.join(replaced['discarded'])}"
    return text


def _read_sidecar(directory: Path) -> dict[str, Any]:
    try:
        data = json.loads((directory / SIDECAR).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _is_own_model_file(name: str, fmt: str, sidecar: dict[str, Any]) -> bool:
    model_file = MODEL_FILES[fmt]
    return name == model_file or name == sidecar.get("external_data") or name.startswith(f"{model_file}.")


def plan_replacement(directory: Path, fmt: str, version: int, force: bool = False) -> Replacement | None:
    """What a write of ``version`` into ``directory`` replaces, keeps and would discard (None: new folder).

    Raises UsageError when files deploykit did not write would be discarded and ``force`` is False.
    """
    if not directory.is_dir():
        return None
    sidecar = _read_sidecar(directory)
    replaced, kept, discarded = [], [], []
    for entry in sorted(directory.iterdir()):
        if entry.name in _OWN_TOP:
            replaced.append(entry.name)
        elif entry.name == str(version) and (entry.is_symlink() or not entry.is_dir()):
            discarded.append(entry.name)
        elif entry.name == str(version):
            for item in sorted(entry.iterdir()):
                own = item.is_file() and _is_own_model_file(item.name, fmt, sidecar)
                (replaced if own else discarded).append(f"{entry.name}/{item.name}")
        else:
            kept.append(entry.name + ("/" if entry.is_dir() else ""))
    plan = Replacement(directory.name, tuple(replaced), tuple(kept), tuple(discarded), sidecar.get("created_at"), sidecar.get("sha256"))
    if discarded and not force:
        raise UsageError(
            f"{directory}/{version}/ holds files deploykit did not write ({', '.join(discarded[:5])}): "
            f"writing {directory.name} would delete them",
            hint="move them out of the folder, or pass --force to discard them (other versions and files are kept)",
        )
    return plan


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


def carry_over(old: Path, new: Path, plan: Replacement | None) -> None:
    """Put ``plan.kept`` (from the folder ``old``) into the folder being written, ``new``."""
    for name in plan.kept if plan else ():
        src, dst = old / name.rstrip("/"), new / name.rstrip("/")
        if src.is_dir() and not src.is_symlink():
            shutil.copytree(src, dst, symlinks=True, copy_function=_link_or_copy)
        else:
            with contextlib.suppress(FileNotFoundError):
                _link_or_copy(str(src), str(dst))
