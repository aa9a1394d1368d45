"""Loading TensorRT: the import with its install hint, the version rules, CUDA, the logger.

Everything that needs ``tensorrt`` at run time starts here (the builder and the runner); the
version rules are plain functions tested without TensorRT.

References (TensorRT documentation, cited where a rule depends on them):
- Migrating 10.x -> 11.x: https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x.html
- Removed Python APIs: https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x-python-api-reference.html
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

from deploykit._deps import is_available
from deploykit.errors import DeployKitError, MissingDependencyError

# device_memory_size_v2 (the only device-memory query left in 11.x) arrived with the V2
# memory APIs in TensorRT 10.1; JetPack 6.1/6.2 ship 10.3.
MIN_TENSORRT = (10, 1)

TENSORRT_INSTALL_HINT = (
    "on an x86_64 Linux host with an NVIDIA GPU: pip install 'deploykit[gpu-cu12]' or "
    "'deploykit[gpu-cu13]', the CUDA major your torch was built for (torch.version.cuda; "
    "pip install 'deploykit[gpu]' is gpu-cu12), or pip install tensorrt-cu12 / tensorrt-cu13 "
    "(plain 'tensorrt' means CUDA 13 from 11.x on); or build and run the docker/Dockerfile.trt image "
    "(docs/tensorrt.md); on Jetson, TensorRT comes with JetPack 6.1+ "
    "(apt install nvidia-jetpack, which provides python3-libnvinfer)"
)


def tensorrt_missing_error(purpose: str = "building TensorRT engines") -> MissingDependencyError:
    """The error for a machine without the ``tensorrt`` module, naming every way to get it."""
    error = MissingDependencyError("tensorrt", "gpu", purpose)
    error.hint = TENSORRT_INSTALL_HINT
    return error


def parse_version(version: str) -> tuple[int, ...]:
    """``"10.8.0.43"`` -> ``(10, 8, 0, 43)``; non-numeric tails (``"11.0.0rc1"``) are cut."""
    parts = []
    for piece in str(version).split("."):
        digits = re.match(r"\d+", piece)
        if not digits:
            break
        parts.append(int(digits.group()))
        if digits.group() != piece:
            break
    if not parts:
        raise DeployKitError(f"cannot read the TensorRT version {version!r}")
    return tuple(parts)


def check_tensorrt_version(version: str) -> tuple[int, ...]:
    """Refuse TensorRT older than :data:`MIN_TENSORRT` (no strongly typed ONNX path, no V2 memory API)."""
    parsed = parse_version(version)
    if parsed[:2] < MIN_TENSORRT:
        need = ".".join(map(str, MIN_TENSORRT))
        raise DeployKitError(
            f"TensorRT {version} is too old: deploykit needs {need} or newer",
            hint=f"upgrade TensorRT ({TENSORRT_INSTALL_HINT})",
        )
    return parsed


def uses_strongly_typed_flag(version: str) -> bool:
    """Whether ``create_network`` must be given ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``.

    TensorRT 10.x builds weakly typed networks unless the flag is set. In 11.x every network
    is strongly typed and the flag is deprecated and ignored, so deploykit passes 0 there
    ("Strongly Typed Networks Are Now Required", migration guide above).
    """
    return check_tensorrt_version(version)[0] < 11


def same_tensorrt_release(a: str, b: str) -> bool:
    """Engines only load in the TensorRT release that built them: compare major.minor.patch."""
    return parse_version(a)[:3] == parse_version(b)[:3]




# tensorrt.DataType member names -> numpy/torch dtype names
TRT_DTYPES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT8": "int8",
    "UINT8": "uint8",
    "INT32": "int32",
    "INT64": "int64",
    "BOOL": "bool",
}


# The other tensorrt.DataType members (every member of every supported release is in one of the
# two tables; tests/test_trt_bindings.py checks that against the real bindings' snapshots).
TRT_DTYPES_UNSUPPORTED = {
    "FP8": "8-bit float engine I/O needs per-tensor scales deploykit does not pass",
    "INT4": "4-bit integers are packed two to a byte: no torch/numpy tensor holds them as I/O",
    "FP4": "4-bit floats are packed two to a byte with block scales: not a classifier's I/O",
    "E8M0": "an exponent-only scale type for block quantization, never a classifier's I/O",
}


def trt_dtype_name(dtype: Any) -> str:
    """``tensorrt.DataType.HALF`` -> ``"float16"`` (works on the enum or its name)."""
    name = str(getattr(dtype, "name", None) or str(dtype).rsplit(".", 1)[-1]).upper()
    if name in TRT_DTYPES:
        return TRT_DTYPES[name]
    why = TRT_DTYPES_UNSUPPORTED.get(name, "not a type deploykit knows")
    raise DeployKitError(f"unsupported TensorRT tensor type {name} ({why})")



def load_tensorrt(purpose: str = "building TensorRT engines") -> ModuleType:
    """Import ``tensorrt`` (10.1+), or raise an error that says how to get it."""
    if not is_available("tensorrt"):
        raise tensorrt_missing_error(purpose)
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:  # the wheel is there but libnvinfer/CUDA is not
        raise DeployKitError(
            f"tensorrt is installed but cannot be loaded: {str(exc).splitlines()[0]}",
            hint=TENSORRT_INSTALL_HINT,
        ) from exc
    check_tensorrt_version(trt.__version__)
    return trt


def require_cuda(device: int = 0) -> None:
    """A CUDA device through PyTorch, which owns the CUDA context, memory and streams in deploykit."""
    if not is_available("torch"):
        raise DeployKitError(
            "TensorRT engines run on PyTorch's CUDA context here, and torch is not installed in this environment",
            hint="install a CUDA build of torch next to tensorrt (in the server environment too: "
            ".venv-serve/bin/pip install torch)",
        )
    import torch

    check_cuda_majors(tensorrt_cuda_major(), torch.version.cuda)
    if not torch.cuda.is_available():
        raise DeployKitError(
            "no CUDA GPU is visible: TensorRT builds and runs engines on an NVIDIA GPU",
            hint="run on a GPU host (docker run --gpus all ..., see docs/tensorrt.md)",
        )
    if not 0 <= device < torch.cuda.device_count():
        raise DeployKitError(f"CUDA device {device} does not exist (this machine has {torch.cuda.device_count()})")


# The PyPI distributions of TensorRT name their CUDA major: tensorrt-cu12, tensorrt_cu13_bindings...
_CUDA_DISTRIBUTION = re.compile(r"^tensorrt[-_]cu(\d+)(?:[-_](?:bindings|libs))?$", re.IGNORECASE)


def tensorrt_cuda_major() -> int | None:
    """The CUDA major of the installed TensorRT bindings, from the distribution that owns them.

    None where that is not known: TensorRT from JetPack or a container (no ``-cuXX``
    distribution), or wheels of two CUDA majors installed over each other.
    """
    from importlib.metadata import packages_distributions

    owners = packages_distributions().get("tensorrt_bindings", [])
    majors = {int(m.group(1)) for name in owners if (m := _CUDA_DISTRIBUTION.match(name))}
    return majors.pop() if len(majors) == 1 else None


def check_cuda_majors(tensorrt_major: int | None, torch_cuda: str | None) -> None:
    """TensorRT and torch load into one process: their CUDA majors must agree (unknown passes)."""
    if tensorrt_major is None or not torch_cuda:
        return
    torch_major = int(str(torch_cuda).split(".")[0])
    if torch_major != tensorrt_major:
        raise DeployKitError(
            f"TensorRT here is built for CUDA {tensorrt_major} (tensorrt-cu{tensorrt_major}) but torch for "
            f"CUDA {torch_cuda}: both load into one process and need the same CUDA major",
            hint=f"pip uninstall the tensorrt-cu{tensorrt_major} packages and pip install "
            f"'deploykit[gpu-cu{torch_major}]', or install a torch built for CUDA {tensorrt_major}",
        )


class Messages:
    """TensorRT log messages kept for error reports (errors always, warnings counted), and
    deploykit's own warnings about the build (``notes``, shown to the user)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []
        self.notes: list[str] = []

    def tail(self, n: int = 5) -> str:
        return " | ".join(self.errors[-n:])


# TensorRT keeps one logger per process: the first ILogger handed to a Builder or Runtime is the
# one it calls from then on, whatever later calls pass (Polygraphy keeps a single G_LOGGER for
# the same reason). So deploykit makes one, and each build listens to it for a while.
_PROCESS_LOGGER: Any = None
_LISTENERS: list[Messages] = []
_LOCK = threading.Lock()
RECENT = 200  # messages the process logger keeps for errors reported outside a build


def tensorrt_logger(trt: ModuleType):
    """The process's one ILogger: errors and warnings go to every :func:`collecting` block.

    ILogger subclasses must call ``trt.ILogger.__init__`` (Logger reference:
    https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/Logger.html).
    Checked on the real 10.x/11.x pybind trampolines (tests/test_trt_bindings.py).
    """
    global _PROCESS_LOGGER
    with _LOCK:
        if _PROCESS_LOGGER is not None:
            return _PROCESS_LOGGER

        class ProcessLogger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.recent = Messages()  # also outside any collecting block

            def log(self, severity, msg):
                if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                    kind = "errors"
                elif severity == trt.ILogger.Severity.WARNING:
                    kind = "warnings"
                else:
                    return
                with _LOCK:
                    for sink in (self.recent, *_LISTENERS):
                        getattr(sink, kind).append(str(msg))
                        del getattr(sink, kind)[:-RECENT]

        _PROCESS_LOGGER = ProcessLogger()
        return _PROCESS_LOGGER


@contextmanager
def collecting(trt: ModuleType) -> Iterator[Messages]:
    """The errors and warnings TensorRT logs while the block runs (through the process logger)."""
    tensorrt_logger(trt)
    messages = Messages()
    with _LOCK:
        _LISTENERS.append(messages)
    try:
        yield messages
    finally:
        with _LOCK:
            _LISTENERS.remove(messages)


def null_factory(exc: TypeError) -> None:
    """pybind's "factory function returned nullptr" (a NULL from libnvinfer) -> None; else re-raise."""
    if "nullptr" not in str(exc):
        raise exc
    return None


def require_created(trt: ModuleType, what: str, made: Any, messages: Messages | None = None) -> None:
    """Raise deploykit's error when the first native call (Builder/Runtime creation) got NULL.

    libnvinfer returns NULL when it cannot create the object (no usable GPU or driver, a CUDA
    mismatch, a libnvinfer of another release); pybind turns that into ``TypeError: ...
    factory function returned nullptr`` (older bindings may hand back None). Checked against
    the real 10.x/11.x bindings on stand-in libraries (tests/test_trt_bindings.py).
    """
    if made is not None:
        return
    said = f": {messages.tail()}" if messages is not None and messages.errors else ""
    raise DeployKitError(
        f"TensorRT {trt.__version__} could not create a {what} (libnvinfer returned nothing){said}",
        hint="TensorRT needs an NVIDIA GPU, its driver and the libnvinfer of the same release as "
        "the Python bindings: check nvidia-smi and `pip list | grep -i tensorrt` (docs/tensorrt.md)",
    )


def create_runtime(trt: ModuleType, logger: Any, messages: Messages | None = None):
    """``trt.Runtime(logger)``, or deploykit's error when libnvinfer cannot make one."""
    try:
        runtime = trt.Runtime(logger)
    except TypeError as exc:
        runtime = null_factory(exc)
    require_created(trt, "Runtime", runtime, messages)
    return runtime
