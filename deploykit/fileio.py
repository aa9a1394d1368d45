"""Atomic writes: a crash never leaves a half-written file or model folder behind.

Every temporary file or folder deploykit makes beside its output is hidden and carries the
writer's process id: ``.<name>.<kind>-<pid>-<random>.tmp``. Ctrl+C and SIGTERM remove it on
the way out; after a ``kill -9`` (or a power cut) :func:`stale_scratch` finds it, because its
owner is gone, and :func:`sweep_scratch` (run before every repository write) removes it.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to a temporary file beside ``path``, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_scratch_prefix(path.name, "write"), suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def _scratch_prefix(name: str, kind: str) -> str:
    return f".{name}.{kind}-{os.getpid()}-"


# .<name>.<kind>-<pid>-<random>.tmp (scratch) and .<name>.old-<pid> (a replaced folder in transit)
_SCRATCH = re.compile(r"^\.(?P<name>.+)\.(?P<kind>[a-z0-9]+)-(?P<pid>\d+)-[^.]*\.tmp$")
_OLD = re.compile(r"^\.(?P<name>.+)\.old-(?P<pid>\d+)$")


@contextlib.contextmanager
def scratch_directory(parent: str | os.PathLike, name: str, kind: str) -> Iterator[Path]:
    """A hidden folder ``.<name>.<kind>-<pid>-*.tmp`` in ``parent`` (same file system as the
    output, so the final move is a rename), removed whatever happens."""
    parent = Path(parent)
    parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_scratch_prefix(name, kind), suffix=".tmp", dir=parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` whole.

    On any exception (KeyboardInterrupt included) the temporary folder is removed and
    ``path`` is left as it was, so a model repository never holds half an artifact.
    """
    path = Path(path)
    with scratch_directory(path.parent, path.name, "write") as tmp:
        yield tmp
        old = None
        if path.exists():
            old = path.with_name(f".{path.name}.old-{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def stale_scratch(folder: str | os.PathLike) -> list[Path]:
    """deploykit's temporary files and folders in ``folder`` whose writing process is gone."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = []
    for entry in sorted(folder.iterdir()):
        match = _SCRATCH.match(entry.name) or _OLD.match(entry.name)
        if match and not _alive(int(match["pid"])):
            found.append(entry)
    return found


def sweep_scratch(folder: str | os.PathLike) -> list[Path]:
    """Remove :func:`stale_scratch` in ``folder``; a replaced folder caught in transit (its
    writer killed between the two renames) is put back where nothing took its place."""
    swept = []
    for entry in stale_scratch(folder):
        old = _OLD.match(entry.name)
        if old and not (entry.parent / old["name"]).exists():
            with contextlib.suppress(OSError):
                os.replace(entry, entry.parent / old["name"])
                continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        swept.append(entry)
    return swept


def tree_bytes(path: str | os.PathLike) -> int:
    """The size of a file, or of every file under a folder (symlinks not followed)."""
    path = Path(path)
    if not path.is_dir() or path.is_symlink():
        return path.lstat().st_size
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir() or p.is_symlink())


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    return sha256_files([path], chunk)


def sha256_files(paths: Iterable[str | os.PathLike], chunk: int = 1 << 20) -> str:
    """One sha256 over the files' bytes, one after the other (of one file: that file's sha256)."""
    import hashlib

    h = hashlib.sha256()
    buffer = bytearray(chunk)
    view = memoryview(buffer)
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while size := f.readinto(buffer):  # one buffer, no bytes object per read
                h.update(view[:size])
    return h.hexdigest()


def model_files(path: str | os.PathLike) -> list[Path]:
    """A model file and, when it is there, ``<name>.data`` beside it: the ONNX external data
    deploykit's writers name so (``deploykit.onnx_io``), the weights of a large export."""
    path = Path(path)
    data = path.with_name(f"{path.name}.data")
    return [path, *([data] if data.is_file() else [])]


def model_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a model file followed by its external data (:func:`model_files`): a
    self-contained file's plain sha256, and a change to either file changes it."""
    return sha256_files(model_files(path))


def model_bytes(path: str | os.PathLike) -> int:
    """The bytes of a model file and its external data (:func:`model_files`)."""
    return sum(p.stat().st_size for p in model_files(path))


NO_SPACE = (errno.ENOSPC, errno.EDQUOT)


@contextlib.contextmanager
def no_space_is_an_error(folder: str | os.PathLike, doing: str) -> Iterator[None]:
    """Turn "no space left on device" (or a full quota) inside the block into one DeployKitError.

    Wrap the writes of a stage whose files are atomic (``atomic_directory``, scratch folders
    removed in ``finally``), so the message can promise that nothing was left behind.
    """
    try:
        yield
    except OSError as exc:
        if exc.errno not in NO_SPACE:
            raise
        from deploykit.errors import DeployKitError

        raise DeployKitError(
            f"no space left on the device of {folder} while {doing}: nothing was written",
            hint="free some space there, or write to another folder (--repo)",
        ) from exc
