"""What the launcher (main environment) and the server process (server environment) agree on.

The launcher starts ``python -m deploykit.serve.process`` with the arguments of
:func:`server_arguments`; the process answers through a JSON status file
(:class:`ServerStatus`, owner-only: it holds the access token of Triton's protected endpoints).
Both sides put the interpreter's own libpython first on ``LD_LIBRARY_PATH``. This module
imports nothing beyond the standard library and deploykit's errors.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

SERVE_ENV = ".venv-serve"
PYTHON_ENV_VAR = "DEPLOYKIT_SERVE_PYTHON"
PROCESS_MODULE = "deploykit.serve.process"
# Triton's own bound on a config's max_batch_size is the config; this caps a hand-edited one.
MAX_BATCH_LIMIT = 1024


@dataclass(frozen=True)
class ServedModel:
    """A variant as bound to Triton (from its config.pbtxt)."""

    name: str
    backend: str
    path: str
    version: int
    max_batch_size: int
    preferred_batch_sizes: tuple[int, ...]
    max_queue_delay_us: int
    input_name: str
    input_dims: tuple[int, ...]  # without the batch dimension
    output_name: str
    output_dims: tuple[int, ...]
    instances: int = 1


@dataclass(frozen=True)
class Unavailable:
    """A variant that could not be served, and why."""

    name: str
    reason: str


@dataclass(frozen=True)
class ServerStatus:
    """What a started server reports in its status file."""

    state: str  # "ready" | "failed" | "stopped"
    pid: int
    http_url: str | None = None
    grpc_url: str | None = None
    metrics_url: str | None = None
    models: tuple[ServedModel, ...] = ()
    unavailable: tuple[Unavailable, ...] = ()
    access_token: str | None = None  # for Triton's protected endpoints (statistics, ...)
    log_file: str | None = None
    error: str | None = None
    restarts: int = 0  # times the supervisor restarted a tritonserver that died

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ServerStatus:
        def model(d: dict[str, Any]) -> ServedModel:
            d = dict(d)
            for key in ("preferred_batch_sizes", "input_dims", "output_dims"):
                d[key] = tuple(d[key])
            return ServedModel(**d)

        return cls(
            **{k: v for k, v in data.items() if k not in ("models", "unavailable")},
            models=tuple(model(m) for m in data.get("models", ())),
            unavailable=tuple(Unavailable(**u) for u in data.get("unavailable", ())),
        )

    def model(self, name: str) -> ServedModel:
        for m in self.models:
            if m.name == name:
                return m
        raise KeyError(name)


def write_status(path: Path | None, status: ServerStatus) -> None:
    """Replace the status file atomically, readable by its owner only."""
    if path is None:
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(status.to_dict(), f, indent=2)
    os.replace(tmp, path)


def read_status(path: Path) -> ServerStatus | None:
    """The status the process last wrote; None while there is none (or it is being replaced)."""
    try:
        return ServerStatus.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):
        return None


def server_arguments() -> argparse.ArgumentParser:
    """The server process's command line (the launcher builds it from the same names)."""
    p = argparse.ArgumentParser(prog=f"python -m {PROCESS_MODULE}", description="the local Triton server")
    p.add_argument("--repo", default="models")
    p.add_argument("--models", default="", help="comma-separated model folder names (default: all for the backend)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--backend", default="onnxruntime")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads per model")
    p.add_argument("--max-batch-size", type=int, default=None, help="cap every model's max_batch_size")
    p.add_argument("--status-file", default=None)
    p.add_argument("--log-file", default=None, help="tritonserver's log (default: printed to stdout)")
    p.add_argument("--log-verbose", type=int, default=0)
    p.add_argument("--exit-timeout", type=int, default=5, help="seconds in-flight requests get at shutdown")
    p.add_argument("--quiet", action="store_true")
    return p


def ensure_libpython_on_path(env: dict[str, str] | None = None, python_libdir: str | None = None) -> dict[str, str]:
    """Put the interpreter's own libpython folder first on LD_LIBRARY_PATH (in ``env``, default os.environ).

    PyTriton's Python-backend stub is linked against ``libpython3.X.so``; the loader would
    otherwise find the system's copy (Debian's 3.11.2 here) while the stub runs pyenv's 3.11.7
    standard library, and model loading fails (``'_thread.RLock' object has no attribute
    '_recursion_count'``).
    """
    import sysconfig

    env = os.environ if env is None else env
    libdir = python_libdir if python_libdir is not None else sysconfig.get_config_var("LIBDIR")
    if libdir:
        parts = [p for p in env.get("LD_LIBRARY_PATH", "").split(":") if p]
        if not parts or parts[0] != libdir:
            env["LD_LIBRARY_PATH"] = ":".join([libdir, *[p for p in parts if p != libdir]])
    return env


def port_in_use(host: str, port: int) -> bool:
    """True when something listens on host:port (SO_REUSEADDR: a closed socket in TIME_WAIT is free)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False
