"""The real TensorRT Python API of several releases, inspectable on a machine without a GPU.

PyPI serves TensorRT's *binding* wheels (``tensorrt-cu12-bindings``, ``tensorrt-cu13-bindings``,
``tensorrt-bindings``) apart from the native libraries. Their one extension module,
``tensorrt_bindings/tensorrt.so``, links against ``libnvinfer.so.N``, ``libnvonnxparser.so.N`` and
``libnvinfer_plugin.so.N`` (8.x also ``libnvparsers.so.8``) and takes only a few entry points
from them. This script

1. downloads the binding wheel of each release in :data:`RELEASES` (``pip download --no-deps``)
   into a cache folder (``$DEPLOYKIT_TRT_CACHE`` or ``~/.cache/deploykit/trt-bindings``),
2. builds stand-in libraries with the right SONAMEs, each entry point returning NULL/0
   (C, built with the system compiler ``$CC`` or ``cc``),
3. imports each release in its own process with ``LD_LIBRARY_PATH`` pointing at them: every
   class, method signature (pybind docstrings), property and enum of that release is then real
   and inspectable, while nothing can be built or run (``trt.Builder(logger)`` fails with
   "factory function returned nullptr"),
4. writes each release's API surface as JSON under ``tests/data/trt_api/``.

Usage::

    python tools/trt_api_snapshot.py            # fetch, build, write every snapshot
    python tools/trt_api_snapshot.py --check    # compare the committed snapshots with the bindings

``tests/test_trt_bindings.py`` imports this file for :func:`prepare` and :func:`dump`.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SNAPSHOTS = ROOT / "tests" / "data" / "trt_api"

# Entry points the bindings take from the native libraries (``nm -D --undefined-only tensorrt.so``).
ENTRY_POINTS = (
    "createInferBuilder_INTERNAL",
    "createInferRuntime_INTERNAL",
    "createInferRefitter_INTERNAL",
    "createNvOnnxParser_INTERNAL",
    "createNvOnnxParserRefitter_INTERNAL",
    "getBuilderPluginRegistry",
    "getPluginRegistry",
    "getNvOnnxParserVersion",
    "initLibNvInferPlugins",
)
# 8.6 also links the UFF and Caffe parsers (C++ symbols, given their mangled names).
LEGACY_SYMBOLS = (
    "_ZN11nvuffparser15createUffParserEv",
    "_ZN11nvuffparser8FieldMapC1EPKcPKvNS_9FieldTypeEi",
    "_ZN14nvcaffeparser117createCaffeParserEv",
    "_ZN14nvcaffeparser123shutdownProtobufLibraryEv",
)
LIBRARIES = ("nvinfer", "nvonnxparser", "nvinfer_plugin")


@dataclass(frozen=True)
class Release:
    """One binding wheel: the PyPI distribution, its version and the native ABI it links to."""

    distribution: str
    version: str
    soname: int  # the N in libnvinfer.so.N
    libraries: tuple[str, ...] = LIBRARIES
    symbols: tuple[str, ...] = ENTRY_POINTS
    note: str = ""

    @property
    def key(self) -> str:
        return f"{self.distribution}-{self.version}"

    @property
    def snapshot(self) -> Path:
        return SNAPSHOTS / f"tensorrt-{self.version}.json"


RELEASES = (
    Release(
        "tensorrt-bindings",
        "8.6.1",
        8,
        LIBRARIES + ("nvparsers",),
        ENTRY_POINTS + LEGACY_SYMBOLS,
        note="not supported by deploykit: only tells which names 10.0 removed",
    ),
    Release("tensorrt-cu12-bindings", "10.1.0", 10, note="the oldest release deploykit supports"),
    Release("tensorrt-cu12-bindings", "10.3.0", 10, note="JetPack 6.1/6.2"),
    Release("tensorrt-cu12-bindings", "10.13.3.9", 10, note="the last 10.x line with CUDA 12"),
    Release("tensorrt-cu13-bindings", "11.4.0.106", 11, note="11.x: strongly typed only"),
)


class Unavailable(RuntimeError):
    """The bindings cannot be made importable here (no network for pip, no C compiler)."""


def cache_dir() -> Path:
    env = os.environ.get("DEPLOYKIT_TRT_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "deploykit" / "trt-bindings"


@contextlib.contextmanager
def _locked(cache: Path) -> Iterator[None]:
    """One process at a time fills the cache (tests and this script may run together)."""
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _python_tag() -> str:
    return f"cp{sys.version_info.major}{sys.version_info.minor}"


def fetch_wheel(release: Release, cache: Path) -> Path:
    """The release's wheel for this Python, downloaded once into ``cache/wheels``."""
    wheels = cache / "wheels"
    pattern = f"{release.distribution.replace('-', '_')}-{release.version}-{_python_tag()}-*.whl"
    found = sorted(wheels.glob(pattern))
    if found:
        return found[0]
    wheels.mkdir(parents=True, exist_ok=True)
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
        "--disable-pip-version-check", "-q", "-d", str(wheels), f"{release.distribution}=={release.version}",
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    found = sorted(wheels.glob(pattern))
    if done.returncode != 0 or not found:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
        raise Unavailable(f"pip could not download {release.distribution}=={release.version}: {tail[0]}")
    return found[0]


def _stub_source(symbols: tuple[str, ...]) -> str:
    lines = ["/* Stand-ins for TensorRT's native entry points: every one returns NULL/0. */"]
    for index, symbol in enumerate(symbols):
        if re.fullmatch(r"[A-Za-z_]\w*", symbol) and not symbol.startswith("_Z"):
            lines.append(f"void *{symbol}(void) {{ return 0; }}")
        else:  # a C++ symbol: a C function carrying the mangled name
            lines.append(f'void *stub_{index}(void) __asm__("{symbol}");')
            lines.append(f"void *stub_{index}(void) {{ return 0; }}")
    return "\n".join(lines) + "\n"


def build_stubs(release: Release, cache: Path) -> Path:
    """``cache/stubs/<N>/lib*.so.N``: the stand-in libraries with the SONAMEs the bindings need."""
    source_text = _stub_source(release.symbols)
    digest = hashlib.sha256(source_text.encode()).hexdigest()[:10]
    folder = cache / "stubs" / f"so{release.soname}-{digest}"
    wanted = [folder / f"lib{name}.so.{release.soname}" for name in release.libraries]
    if all(path.is_file() for path in wanted):
        return folder
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if not compiler:
        raise Unavailable("no C compiler (cc) to build the stand-in TensorRT libraries")
    folder.mkdir(parents=True, exist_ok=True)
    source = folder / "stub.c"
    source.write_text(source_text)
    for path in wanted:
        partial = path.with_name(path.name + ".tmp")
        command = [compiler, "-shared", "-fPIC", "-O1", "-o", str(partial), f"-Wl,-soname,{path.name}", str(source)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise Unavailable(f"{compiler} failed to build {path.name}: {done.stderr.strip()[:300]}")
        partial.replace(path)
    return folder


# The import package the ``tensorrt-cuXX`` metapackage installs, verbatim (its tensorrt/__init__.py).
TENSORRT_SHIM = "from tensorrt_bindings import *\nfrom tensorrt_bindings import __version__\n"


def unpack(release: Release, wheel: Path, cache: Path) -> Path:
    """``cache/site/<key>``: the wheel's files plus the ``tensorrt`` package that re-exports them."""
    site = cache / "site" / f"{release.key}-{_python_tag()}"
    if (site / "tensorrt" / "__init__.py").is_file():
        return site
    site.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=site.parent, prefix=".unpack-"))
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(staging)
    (staging / "tensorrt").mkdir()
    (staging / "tensorrt" / "__init__.py").write_text(TENSORRT_SHIM)
    if site.exists():
        shutil.rmtree(site)
    staging.replace(site)
    return site


@dataclass(frozen=True)
class Prepared:
    """An importable release: put ``site`` on PYTHONPATH and ``libs`` on LD_LIBRARY_PATH."""

    release: Release
    site: Path
    libs: Path

    def env(self, base: dict[str, str] | None = None, extra_path: tuple[str, ...] = ()) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(self.libs), env.get("LD_LIBRARY_PATH")]))
        env["PYTHONPATH"] = os.pathsep.join([*extra_path, str(self.site)])
        return env


def prepare(release: Release, cache: Path | None = None) -> Prepared:
    """Fetch, unpack and build what ``release`` needs (cached); raises :class:`Unavailable`."""
    cache = cache or cache_dir()
    with _locked(cache):
        wheel = fetch_wheel(release, cache)
        site = unpack(release, wheel, cache)
        libs = build_stubs(release, cache)
    return Prepared(release, site, libs)


# --------------------------------------------------------------------------------------
# The API surface (runs inside the process that imported the bindings)
# --------------------------------------------------------------------------------------

_QUALIFIERS = re.compile(r"\btensorrt(?:_bindings)?\.tensorrt\.")


def _clean(text: str) -> str:
    return _QUALIFIERS.sub("", text).strip()


def _signatures(name: str, obj: object) -> list[str]:
    """The signature lines of a pybind function's docstring (one per overload), module prefixes cut."""
    if inspect.isfunction(obj):  # plain Python, e.g. the context-manager helpers of __init__.py
        return [f"{name}{inspect.signature(obj)}"]
    doc = getattr(obj, "__doc__", None) or ""
    found = []
    for line in doc.splitlines():
        line = re.sub(r"^\s*\d+\.\s+", "", line)
        if re.match(rf"{re.escape(name)}\(.*\)(\s*->.*)?$", line.strip()) and "*args, **kwargs" not in line:
            found.append(_clean(line))
    return found


def _is_enum(obj: object) -> bool:
    return isinstance(obj, type) and isinstance(getattr(obj, "__members__", None), dict)


def _enum_values(obj: type) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(obj.__members__.items(), key=lambda item: (int(item[1]), item[0]))}


def _property(prop: property) -> dict[str, object]:
    entry: dict[str, object] = {"kind": "property", "readonly": prop.fset is None}
    signature = _clean((getattr(prop.fget, "__doc__", None) or "").splitlines()[0] if prop.fget else "")
    if "->" in signature:
        entry["type"] = signature.rsplit("->", 1)[1].strip()
    if prop.fset is not None:
        setter = _clean((prop.fset.__doc__ or "").splitlines()[0] if prop.fset.__doc__ else "")
        args = re.match(r"\((.*)\)", setter)
        if args and "arg1:" in args.group(1):
            entry["accepts"] = args.group(1).split("arg1:", 1)[1].strip()
    return entry


def _member(cls: type, name: str, value: object, enums: dict, classes: dict, prefix: str) -> dict[str, object]:
    if isinstance(value, property):
        return _property(value)
    if isinstance(value, staticmethod):
        return {"kind": "staticmethod", "signatures": _signatures(name, value.__func__)}
    if _is_enum(value) and value.__qualname__.startswith(cls.__qualname__ + "."):
        enums[f"{prefix}.{name}"] = _enum_values(value)
        return {"kind": "enum"}
    if _is_enum(value):  # an alias, e.g. Logger.Severity = ILogger.Severity
        return {"kind": "enum", "alias": _clean(value.__qualname__)}
    if isinstance(value, type) and value.__qualname__.startswith(cls.__qualname__ + "."):
        classes[f"{prefix}.{name}"] = _class(value, enums, classes, f"{prefix}.{name}")
        return {"kind": "class"}
    if callable(value) and not isinstance(value, type) and type(value).__name__ != type(cls).__name__:
        kind = "method" if type(value).__name__ in ("instancemethod", "function", "method_descriptor") else "callable"
        if name == "__init__":
            kind = "constructor"
        return {"kind": kind, "signatures": _signatures(name, value)}
    return {"kind": "value", "type": _clean(type(value).__qualname__)}


def _class(cls: type, enums: dict, classes: dict, prefix: str) -> dict[str, object]:
    members = {}
    for name, value in cls.__dict__.items():
        if name.startswith("_") and name != "__init__":
            continue
        members[name] = _member(cls, name, value, enums, classes, prefix)
    bases = [_clean(b.__qualname__) for b in cls.__bases__ if b.__module__.startswith("tensorrt")]
    return {"bases": bases, "members": dict(sorted(members.items()))}


def surface(module) -> dict[str, object]:
    """classes -> members (kind, signatures / property type), enums -> values, functions, values."""
    classes: dict[str, object] = {}
    enums: dict[str, object] = {}
    functions: dict[str, object] = {}
    values: dict[str, str] = {}
    for name in dir(module):
        if name.startswith("_"):
            continue
        value = getattr(module, name)
        if type(value).__name__ == "module":
            continue
        if _is_enum(value):
            enums[name] = _enum_values(value)
        elif isinstance(value, type):
            if value.__module__.startswith("tensorrt"):
                classes[name] = _class(value, enums, classes, name)
        elif callable(value):
            functions[name] = _signatures(name, value)
        else:
            values[name] = _clean(type(value).__qualname__)
    return {
        "version": str(module.__version__),
        "classes": dict(sorted(classes.items())),
        "enums": dict(sorted(enums.items())),
        "functions": dict(sorted(functions.items())),
        "values": dict(sorted(values.items())),
    }


def _dump_here() -> None:
    import tensorrt_bindings

    print(json.dumps(surface(tensorrt_bindings), sort_keys=True))


def dump(prepared: Prepared) -> dict[str, object]:
    """Import the release in a fresh process (LD_LIBRARY_PATH is read at start) and read its surface."""
    command = [sys.executable, str(Path(__file__).resolve()), "--dump-here"]
    done = subprocess.run(command, capture_output=True, text=True, env=prepared.env(), timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"importing {prepared.release.key} failed ({done.returncode}): {done.stderr[-2000:]}")
    data = json.loads(done.stdout)
    release = prepared.release
    return {"distribution": release.distribution, "note": release.note, "python": _python_tag(), **data}


def render(data: dict[str, object]) -> str:
    """The committed form: sorted keys, one member per line (stable diffs between releases)."""
    return json.dumps(data, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    parser.add_argument("--dump-here", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dump_here:
        _dump_here()
        return 0
    stale = []
    for release in RELEASES:
        data = dump(prepare(release))
        text = render(data)
        if args.check:
            current = release.snapshot.read_text() if release.snapshot.is_file() else ""
            if json.loads(current or "{}") != json.loads(text):
                stale.append(str(release.snapshot.relative_to(ROOT)))
            continue
        release.snapshot.parent.mkdir(parents=True, exist_ok=True)
        release.snapshot.write_text(text)
        print(f"{release.key}: {len(data['classes'])} classes, {len(data['enums'])} enums -> "
              f"{release.snapshot.relative_to(ROOT)} ({len(text) // 1024} KiB)")
    if stale:
        print("out of date: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
