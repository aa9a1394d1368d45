"""The launcher, in the main environment: find the server environment, start the server, stop it.

:class:`LocalServer` (used by ``deploykit serve``, the tests and the benchmark) finds the server
environment's interpreter, sets ``LD_LIBRARY_PATH`` to its own libpython folder (PyTriton's
Python-backend stub otherwise picks the system libpython, which breaks under pyenv and other
non-system builds), starts ``python -m deploykit.serve.process`` in its own session, waits for
the status file, and stops it cleanly. PyTriton pins numpy < 2 while torch, onnx and modelopt
here need numpy 2, so the server runs in a separate virtual environment (``.ci/serve_env.sh``
creates ``.venv-serve``).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploykit.errors import DeployKitError, UsageError
from deploykit.serve.protocol import (
    PROCESS_MODULE,
    PYTHON_ENV_VAR,
    SERVE_ENV,
    ServerStatus,
    ensure_libpython_on_path,
    read_status,
)


def _checkout_root() -> Path:
    """The folder holding the ``deploykit`` package (the repository root for a source checkout)."""
    return Path(__file__).resolve().parents[2]


def find_server_python(explicit: str | os.PathLike | None = None) -> str:
    """The interpreter the server runs in.

    Order: ``explicit`` (``--python``), ``$DEPLOYKIT_SERVE_PYTHON``, ``.venv-serve/bin/python``
    in the current folder or the deploykit checkout, else this interpreter if PyTriton is
    importable here.
    """
    from deploykit._deps import is_available

    for candidate, origin in ((explicit, "--python"), (os.environ.get(PYTHON_ENV_VAR), PYTHON_ENV_VAR)):
        if candidate:
            path = Path(candidate).expanduser()
            if not (path.is_file() and os.access(path, os.X_OK)):
                raise UsageError(f"{origin}: {path} is not an executable Python interpreter")
            return str(path)
    for base in (Path.cwd(), _checkout_root()):
        path = base / SERVE_ENV / "bin" / "python"
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    if is_available("pytriton"):
        return sys.executable
    raise DeployKitError(
        "no Python environment with PyTriton for the server",
        hint=(
            "run `bash .ci/serve_env.sh` in the deploykit checkout (creates .venv-serve: PyTriton needs numpy<2, "
            f"so it lives apart from torch), or pass --python / set {PYTHON_ENV_VAR}"
        ),
    )


def probe_python(python: str) -> dict[str, Any]:
    """Ask the interpreter for its LIBDIR and whether PyTriton and numpy<2 are there."""
    code = (
        "import json, sysconfig, importlib.util as u\n"
        "def has(m):\n"
        "    try: return u.find_spec(m) is not None\n"
        "    except Exception: return False\n"
        "np = None\n"
        "try:\n    import numpy; np = numpy.__version__\n"
        "except Exception: pass\n"
        "print(json.dumps({'libdir': sysconfig.get_config_var('LIBDIR') or '', 'pytriton': has('pytriton'),"
        " 'numpy': np, 'version': sysconfig.get_python_version()}))\n"
    )
    try:
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60)
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError) as exc:
        raise DeployKitError(f"cannot run {python}: {exc}", hint="check --python / " + PYTHON_ENV_VAR) from None


def server_environment(python: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for the server process: its own libpython first, this deploykit importable."""
    info = probe_python(python)
    if not info.get("pytriton"):
        raise DeployKitError(
            f"PyTriton is not installed in {python}",
            hint="run `bash .ci/serve_env.sh` (creates .venv-serve with nvidia-pytriton and numpy<2)",
        )
    env = dict(os.environ if base is None else base)
    ensure_libpython_on_path(env, info.get("libdir") or "")
    # Run the same deploykit source as the caller, whatever is installed in the server env.
    root = str(_checkout_root())
    parts = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p != root]
    env["PYTHONPATH"] = os.pathsep.join([root, *parts])
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the launching process dies (Linux), so no server is orphaned."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class LocalServer:
    """``python -m deploykit.serve.process`` in the server environment, as a context manager.

    ``start()`` returns once the server wrote its status (ready, or failed: raises), ``stop()``
    sends SIGTERM and waits, then kills what is left of the process group.
    """

    repo: str | os.PathLike = "models"
    models: list[str] | None = None
    host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    backend: str = "onnxruntime"
    python: str | None = None
    threads: int | None = None
    max_batch_size: int | None = None
    log_file: str | None = None
    quiet: bool = True
    output: Any = None  # where the process's stdout/stderr go (a file object; None: inherit)
    extra_args: list[str] = field(default_factory=list)
    process: subprocess.Popen | None = field(default=None, init=False)
    status: ServerStatus | None = field(default=None, init=False)
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, init=False, repr=False)
    _prepared: tuple[str, dict[str, str]] | None = field(default=None, init=False, repr=False)

    def prepare(self) -> LocalServer:
        """Find the server interpreter and check it has PyTriton (cheap; ``start`` does it if not done)."""
        if self._prepared is None:
            python = find_server_python(self.python)
            self._prepared = (python, server_environment(python))
        return self

    def command(self, python: str, status_file: str) -> list[str]:
        cmd = [
            python, "-m", PROCESS_MODULE,
            "--repo", str(self.repo),
            "--host", self.host,
            "--http-port", str(self.http_port),
            "--grpc-port", str(self.grpc_port),
            "--metrics-port", str(self.metrics_port),
            "--backend", self.backend,
            "--status-file", status_file,
        ]  # fmt: skip
        if self.models:
            cmd += ["--models", ",".join(self.models)]
        if self.threads:
            cmd += ["--threads", str(self.threads)]
        if self.max_batch_size:
            cmd += ["--max-batch-size", str(self.max_batch_size)]
        if self.log_file:
            cmd += ["--log-file", str(self.log_file)]
        if self.quiet:
            cmd.append("--quiet")
        return cmd + list(self.extra_args)

    def start(self, timeout: float = 180.0) -> ServerStatus:
        python, env = self.prepare()._prepared
        self._tmp = tempfile.TemporaryDirectory(prefix="deploykit-serve-")
        status_file = Path(self._tmp.name) / "status.json"
        self.process = subprocess.Popen(
            self.command(python, str(status_file)),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=self.output,
            stderr=subprocess.STDOUT if self.output is not None else None,
            start_new_session=True,  # its own process group: tritonserver and stubs are stopped with it
            preexec_fn=_die_with_parent,
        )
        try:
            status = self._wait_ready(status_file, timeout)
        except BaseException:  # Ctrl+C while starting included: never leave a server behind
            self.stop()
            raise
        self.status = status
        return status

    def _wait_ready(self, status_file: Path, timeout: float) -> ServerStatus:
        def read() -> ServerStatus | None:
            return read_status(status_file)

        deadline = time.monotonic() + timeout
        while True:
            status = read()
            if status is not None and status.state in ("ready", "failed"):
                break
            if self.process.poll() is not None:
                status = read()  # it may have written "failed" just before exiting
                break
            if time.monotonic() > deadline:
                self.stop()
                raise DeployKitError(f"the server did not report ready within {timeout:.0f} s", hint=self._log_hint())
            time.sleep(0.2)
        if status is None or status.state != "ready":
            error = status.error if status else f"the server process exited with code {self.process.returncode}"
            self.stop()
            raise DeployKitError(f"the server did not start: {error}", hint=self._log_hint())
        return status

    def current_status(self) -> ServerStatus | None:
        """The status file as the server last wrote it (it counts tritonserver restarts)."""
        return read_status(Path(self._tmp.name) / "status.json") if self._tmp is not None else None

    def _log_hint(self) -> str | None:
        return f"see the server log {self.log_file}" if self.log_file else None

    def wait(self, max_restarts: int = 0) -> int:
        """Block until the process ends; SIGINT/SIGTERM here are forwarded to it.

        With ``max_restarts``, a server process that dies on its own (not stopped through this
        launcher) is reported on stderr and started again, at most that many times.
        """
        assert self.process is not None
        stopping = False

        def forward(signum, frame):
            nonlocal stopping
            stopping = True
            if self.process and self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)

        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            for restart in range(1, max_restarts + 2):
                code = self.process.wait()
                if stopping or code == 0 or restart > max_restarts:
                    return code
                print(
                    f"warning: the server process exited with code {code}; restarting it ({restart} of {max_restarts})",
                    file=sys.stderr,
                    flush=True,
                )
                self.stop()  # what is left of its process group, and its status folder
                self.start()
            return code
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
            self._cleanup_group()

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL the whole process group. Idempotent."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self._kill_group()
                self.process.wait(timeout=10)
        self._cleanup_group()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        return self.process.returncode

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def _cleanup_group(self) -> None:
        """Stubs or a tritonserver orphaned by a crash share the server's process group: end them."""
        if self.process is not None and self.process.poll() is not None:
            self._kill_group()

    def __enter__(self) -> LocalServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
