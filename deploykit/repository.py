"""The model repository: Triton's layout, one model folder per variant.

```
<repo>/<model>_<format>_<precision>/config.pbtxt
<repo>/<model>_<format>_<precision>/deploykit.json      (lineage sidecar)
<repo>/<model>_<format>_<precision>/1/model.onnx | model.plan
```
"""

from __future__ import annotations

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
from deploykit.fileio import (
    atomic_directory,
    atomic_write_json,
    model_bytes,
    model_sha256,
    sweep_scratch,
)
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

    def warnings(self) -> tuple[str, ...]:
        """The line a stage prints when it used a mismatched file because of ``--trust``."""
        if self.matches:
            return ()
        return (
            f"{self.variant}'s model file is not the one its sidecar describes (sha256 {self.sha256[:12]}, "
            f"recorded {str(self.recorded)[:12]}); used as it is (--trust), with its real hash recorded",
        )


def check_model_file(artifact: Artifact, *, trust: bool = False) -> FileCheck:
    """Hash ``artifact``'s model file (and its external data) and compare it with the sha256 its sidecar recorded.

    Every stage reads its input through this, so the lineage it writes is true: a file that was
    changed, replaced or truncated after deploykit wrote it is refused (UsageError naming the
    command that re-creates it, or ``--trust``). With ``trust`` the mismatch is returned (the
    caller records the real hash and says so) instead of raised.
    """
    check = FileCheck(artifact.variant, model_sha256(artifact.path), artifact.meta.get("sha256"))
    if not check.matches and not trust:
        how = make_command(artifact.model, artifact.format, artifact.precision)
        raise UsageError(
            f"{artifact.path} is not the file {artifact.variant}'s sidecar describes (sha256 {check.sha256[:12]}, "
            f"recorded {check.recorded[:12]}): it was changed, replaced or truncated after deploykit wrote it",
            hint=f"re-create it with `{how}`, or pass --trust to use the file as it is (its real hash is recorded)",
        )
    return check


class BrokenVariantError(DeployKitError):
    """A variant folder whose lineage sidecar is missing or cannot be read."""

    def __init__(self, directory: Path, problem: str, hint: str):
        super().__init__(f"{directory.name}: {problem}", hint=hint)
        self.directory = directory
        self.problem = problem


def parse_variant_name(name: str) -> tuple[str, str, str] | None:
    """``resnet18_onnx_int8`` -> ``("resnet18", "onnx", "int8")``; None for other names."""
    parts = name.rsplit("_", 2)
    if len(parts) == 3 and parts[0] and parts[1] in FORMATS and parts[2] in PRECISIONS:
        return parts[0], parts[1], parts[2]
    return None


def read_variant(directory: str | os.PathLike) -> Artifact:
    """The artifact of one variant folder, read from its sidecar.

    The one reader of ``deploykit.json``: a missing or corrupt sidecar is a
    :class:`BrokenVariantError` that names the file and how to re-create the variant, worded
    the same in every command (list, check, quantize, build, bench, parity).
    """
    directory = Path(directory)
    path = directory / SIDECAR
    parsed = parse_variant_name(directory.name)
    how = f"`{make_command(*parsed)} --repo {directory.parent}`" if parsed else "deploykit export/quantize/build"
    hint = f"re-create the variant with {how} (it rewrites the folder)"
    if not path.is_file():
        raise BrokenVariantError(directory, f"the sidecar {path} is missing: the variant's lineage is unknown", hint)
    try:
        artifact = Artifact.from_sidecar(directory)
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, KeyError) else f"no {exc} field"
        raise BrokenVariantError(directory, f"the sidecar {path} is corrupt ({reason})", hint) from exc
    return artifact


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
        """The artifact if its folder, model file and sidecar all exist; None without a folder.

        A folder whose sidecar is missing or corrupt is a :class:`BrokenVariantError`, never
        "not in the repository": every reader goes through :func:`read_variant`.
        """
        directory = self.variant_dir(model, fmt, precision)
        if not directory.exists():
            return None
        artifact = read_variant(directory)
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
        """Every variant with a readable sidecar, sorted by name (see :meth:`scan` for the broken)."""
        return self.scan()[0]

    def scan(self) -> tuple[list[Artifact], list[BrokenVariantError]]:
        """Every variant folder, sorted by name: the readable ones and the broken ones (a folder
        named like a variant, or with a sidecar, whose sidecar is missing or corrupt)."""
        if not self.root.is_dir():
            return [], []
        good: list[Artifact] = []
        broken: list[BrokenVariantError] = []
        for directory in sorted(p for p in self.root.iterdir() if p.is_dir() and not p.name.startswith(".")):
            if (directory / SIDECAR).exists() or parse_variant_name(directory.name):
                try:
                    good.append(read_variant(directory))
                except BrokenVariantError as exc:
                    broken.append(exc)
        return good, broken

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
                    "bytes": model_bytes(model_file),
                    "sha256": model_sha256(model_file),
                    **sidecar,
                    **replaced,
                },
            )
            atomic_write_json(tmp / SIDECAR, artifact.to_sidecar())
        return artifact
