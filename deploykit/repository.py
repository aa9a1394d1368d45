"""The model repository: Triton's layout, one model folder per variant.

```
<repo>/<model>_<format>_<precision>/config.pbtxt
<repo>/<model>_<format>_<precision>/deploykit.json      (lineage sidecar)
<repo>/<model>_<format>_<precision>/1/model.onnx | model.plan
```
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploykit.artifacts import (
    FORMATS,
    MODEL_FILES,
    PRECISIONS,
    SIDECAR,
    Artifact,
    now_iso,
    variant_name,
)
from deploykit.errors import DeployKitError, UsageError
from deploykit.fileio import atomic_directory, atomic_write_json, sha256_file, sweep_scratch
from deploykit.pipeline import make_command
from deploykit.replacement import carry_over, plan_replacement

DEFAULT_REPO = "models"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def validate_name(name: str, what: str = "model name") -> str:
    """Refuse names that could escape the repository (``..``, ``/``, absolute paths)."""
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise UsageError(
            f"invalid {what} {name!r}",
            hint="use letters, digits, '_', '-' and '.', with no path separators or '..'",
        )
    return name


def validate_precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}", hint=f"choose from {', '.join(PRECISIONS)}")
    return precision


@dataclass(frozen=True)
class FileCheck:
    """A variant's model file against its sidecar: the hash it has now and the one recorded."""

    variant: str
    sha256: str  # of the file as it is now
    recorded: str | None  # what the sidecar says (None in sidecars that predate the field)

    @property
    def matches(self) -> bool:
        return self.recorded is None or self.recorded == self.sha256

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.variant, "sha256": self.sha256, "recorded_sha256": self.recorded, "matches": self.matches}


def check_model_file(artifact: Artifact, *, trust: bool = False) -> FileCheck:
    """Hash ``artifact``'s model file and compare it with the sha256 its sidecar recorded.

    Every stage reads its input through this, so the lineage it writes is true: a file that was
    changed, replaced or truncated after deploykit wrote it is refused (UsageError naming the
    command that re-creates it, or ``--trust``). With ``trust`` the mismatch is returned (the
    caller records the real hash and says so) instead of raised.
    """
    check = FileCheck(artifact.variant, sha256_file(artifact.path), artifact.meta.get("sha256"))
    if not check.matches and not trust:
        how = make_command(artifact.model, artifact.format, artifact.precision)
        raise UsageError(
            f"{artifact.path} is not the file {artifact.variant}'s sidecar describes (sha256 {check.sha256[:12]}, "
            f"recorded {check.recorded[:12]}): it was changed, replaced or truncated after deploykit wrote it",
            hint=f"re-create it with `{how}`, or pass --trust to use the file as it is (its real hash is recorded)",
        )
    return check


class ModelRepository:
    """A folder of Triton model directories with deploykit sidecars."""

    def __init__(self, root: str | os.PathLike = DEFAULT_REPO):
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"ModelRepository({str(self.root)!r})"

    def variant_dir(self, model: str, fmt: str, precision: str) -> Path:
        validate_name(model)
        if fmt not in FORMATS:
            raise UsageError(f"unknown format {fmt!r}", hint=f"choose from {', '.join(FORMATS)}")
        validate_precision(precision)
        return self.root / variant_name(model, fmt, precision)

    def model_path(self, model: str, fmt: str, precision: str, version: int = 1) -> Path:
        return self.variant_dir(model, fmt, precision) / str(version) / MODEL_FILES[fmt]

    def find(self, model: str, fmt: str, precision: str) -> Artifact | None:
        """The artifact if its folder, model file and sidecar all exist, else None."""
        directory = self.variant_dir(model, fmt, precision)
        if not (directory / SIDECAR).is_file():
            return None
        try:
            artifact = Artifact.from_sidecar(directory)
        except (json.JSONDecodeError, KeyError) as exc:
            raise DeployKitError(
                f"the sidecar {directory / SIDECAR} is corrupt ({exc})",
                hint="re-create the variant (deploykit export/quantize/build)",
            ) from exc
        return artifact if artifact.path.is_file() else None

    def get(self, model: str, fmt: str, precision: str, how: str | None = None) -> Artifact:
        """Like :meth:`find`, but a missing variant is an error that says which command makes it."""
        artifact = self.find(model, fmt, precision)
        if artifact is None:
            variant = variant_name(model, fmt, precision)
            if how is None:
                how = make_command(model, fmt, precision)
            raise UsageError(
                f"{variant} is not in the repository {self.root}",
                hint=f"make it with `{how} --repo {self.root}`",
            )
        return artifact

    def list(self) -> list[Artifact]:
        """Every variant with a readable sidecar, sorted by name."""
        if not self.root.is_dir():
            return []
        out = []
        for directory in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if (directory / SIDECAR).is_file():
                try:
                    out.append(Artifact.from_sidecar(directory))
                except (json.JSONDecodeError, KeyError):
                    continue
        return out

    def check_writable(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UsageError(f"cannot create the model repository {self.root}: {exc.strerror}") from exc
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise UsageError(
                f"the model repository {self.root} is not writable",
                hint="choose another folder with --repo",
            )
        sweep_scratch(self.root)  # what a killed writer left behind (its process is gone)

    def check_replaceable(self, model: str, fmt: str, precision: str, version: int = 1, force: bool = False) -> None:
        """Before the work: refuse now what :meth:`write_variant` would refuse after it."""
        plan_replacement(self.variant_dir(model, fmt, precision), fmt, version, force=force)

    def write_variant(
        self,
        model: str,
        fmt: str,
        precision: str,
        write_model: Callable[[Path], Any],
        config_pbtxt: str,
        sidecar: dict[str, Any],
        parent: str | None = None,
        version: int = 1,
        force: bool = False,
    ) -> Artifact:
        """Write a whole variant folder atomically.

        ``write_model(path)`` writes the model file at ``path`` (inside a temporary folder);
        the folder replaces any previous variant only when everything is written. Of the
        previous folder, other versions and files deploykit did not write are kept; files
        deploykit did not write in the version replaced are a UsageError unless ``force``
        (see :mod:`deploykit.replacement`); the sidecar's ``replaced`` says what was replaced.
        """
        self.check_writable()
        final = self.variant_dir(model, fmt, precision)
        plan = plan_replacement(final, fmt, version, force=force)
        filename = MODEL_FILES[fmt]
        with atomic_directory(final) as tmp:
            model_file = tmp / str(version) / filename
            model_file.parent.mkdir(parents=True)
            write_model(model_file)
            (tmp / "config.pbtxt").write_text(config_pbtxt)
            carry_over(final, tmp, plan)
            replaced = {"replaced": plan.to_dict()} if plan else {}
            artifact = Artifact(
                model=model,
                format=fmt,
                precision=precision,
                path=final / str(version) / filename,
                parent=parent,
                meta={
                    "version": version,
                    "created_at": now_iso(),
                    "bytes": model_file.stat().st_size,
                    "sha256": sha256_file(model_file),
                    **sidecar,
                    **replaced,
                },
            )
            atomic_write_json(tmp / SIDECAR, artifact.to_sidecar())
        return artifact
