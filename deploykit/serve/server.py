"""The local Triton server: each variant of the repository bound to its deploykit runner.

Two halves live here, because they must agree on one protocol (arguments and a status file):

- **In the server environment** (``python -m deploykit.serve.server``): PyTriton starts a real
  tritonserver and binds every selected variant, read from its ``config.pbtxt`` (max batch
  size, preferred batch sizes, queue delay, tensor names and dims), to the deploykit runner
  for the backend, with Triton's dynamic batcher in front. A variant whose config or model
  file is missing or corrupt is reported unavailable with the reason; the others serve.
  When everything is bound it writes a JSON status file (endpoints, models, unavailable
  models, the access token of Triton's protected endpoints), then serves until SIGINT or
  SIGTERM. This half imports only numpy (<2 there), pytriton, onnxruntime and deploykit's
  torch-free modules (runtimes, repository, artifacts, serve.pbtxt, fileio).
- **In the main environment** (:class:`LocalServer`, used by ``deploykit serve``, the tests and
  the benchmark): find the server environment's interpreter, set ``LD_LIBRARY_PATH`` to its
  own libpython folder (PyTriton's Python-backend stub otherwise picks the system libpython,
  which breaks under pyenv and other non-system builds), start the process in its own
  session, wait for the status file, stop it cleanly.

PyTriton pins numpy < 2 while torch, onnx and modelopt here need numpy 2, so the server runs
in a separate virtual environment (``.ci/serve_env.sh`` creates ``.venv-serve``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from deploykit.errors import DeployKitError, UsageError

SERVE_ENV = ".venv-serve"
PYTHON_ENV_VAR = "DEPLOYKIT_SERVE_PYTHON"
SERVE_BACKENDS = {"onnxruntime": "onnx", "openvino": "onnx", "tensorrt": "trt"}
# Triton's own bound on a config's max_batch_size is the config; this caps a hand-edited one.
MAX_BATCH_LIMIT = 1024
_RUNNER_DTYPE = "TYPE_FP32"  # deploykit runners take and return float32


# ---- what is served ------------------------------------------------------------------------------
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


# ---- reading the repository (torch-free, no pytriton: testable anywhere) -------------------------------
def _tensor(config, section: str) -> tuple[str, tuple[int, ...], str]:
    tensors = config.messages(section)
    if len(tensors) != 1:
        raise ValueError(f"config.pbtxt has {len(tensors)} {section}s; deploykit serves one-{section} classifiers")
    t = tensors[0]
    name = t.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"the {section} in config.pbtxt has no name")
    dims = tuple(t.all("dims"))
    if not dims or any(not isinstance(d, int) or isinstance(d, bool) or (d < 1 and d != -1) for d in dims):
        raise ValueError(f"the {section} {name!r} has invalid dims {list(dims)}")
    return name, dims, str(t.get("data_type", ""))


def plan_model(directory: Path, backend: str) -> ServedModel:
    """Read one model folder into a :class:`ServedModel`; ValueError says why it cannot be served."""
    from deploykit.artifacts import MODEL_FILES
    from deploykit.serve.pbtxt import PbtxtError, parse

    config_path = directory / "config.pbtxt"
    if not config_path.is_file():
        raise ValueError("no config.pbtxt")
    try:
        config = parse(config_path.read_text(encoding="utf-8", errors="replace"))
    except PbtxtError as exc:
        raise ValueError(f"config.pbtxt:{exc.line}:{exc.column}: {exc.reason}") from None
    platform = str(config.get("platform") or config.get("backend") or "")
    fmt = {"onnxruntime_onnx": "onnx", "onnxruntime": "onnx", "tensorrt_plan": "trt", "tensorrt": "trt"}.get(platform)
    if fmt != SERVE_BACKENDS[backend]:
        raise ValueError(f"platform {platform or '?'!r} cannot run on the {backend} backend")
    max_batch_size = config.get_int("max_batch_size", 0)
    if not 1 <= max_batch_size <= MAX_BATCH_LIMIT:
        raise ValueError(f"max_batch_size {max_batch_size} is outside 1..{MAX_BATCH_LIMIT} (deploykit serves batched models)")
    input_name, input_dims, input_type = _tensor(config, "input")
    output_name, output_dims, output_type = _tensor(config, "output")
    if input_type != _RUNNER_DTYPE or output_type != _RUNNER_DTYPE:
        raise ValueError(f"input/output are {input_type}/{output_type}; deploykit runners take and return TYPE_FP32")
    versions = sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdigit() and int(p.name) > 0)
    if not versions:
        raise ValueError("no version folder (e.g. 1/)")
    version = versions[-1]  # Triton's default version policy: the latest
    path = directory / str(version) / str(config.get("default_model_filename") or MODEL_FILES[fmt])
    if not path.is_file():
        raise ValueError(f"model file {path.relative_to(directory)} is missing")
    batching = (config.messages("dynamic_batching") or [None])[0]
    preferred = tuple(b for b in (batching.all("preferred_batch_size") if batching else ()) if isinstance(b, int) and 0 < b <= max_batch_size)
    delay = batching.get_int("max_queue_delay_microseconds", 0) if batching else 0
    groups = config.messages("instance_group")
    instances = max(1, sum(g.get_int("count", 1) for g in groups)) if groups else 1
    return ServedModel(
        name=directory.name,
        backend=backend,
        path=str(path),
        version=version,
        max_batch_size=max_batch_size,
        preferred_batch_sizes=preferred,
        max_queue_delay_us=max(0, delay),
        input_name=input_name,
        input_dims=input_dims,
        output_name=output_name,
        output_dims=output_dims,
        instances=min(instances, 4),
    )


def plan_repository(
    repo: str | os.PathLike, models: list[str] | None, backend: str
) -> tuple[list[ServedModel], list[Unavailable]]:
    """Which variants of ``repo`` this backend serves, and which cannot be served (with reasons).

    With ``models`` None, every model folder whose platform fits the backend is taken; named
    models must exist in the repository (a UsageError otherwise).
    """
    if backend not in SERVE_BACKENDS:
        raise UsageError(f"unknown backend {backend!r}", hint=f"choose from {', '.join(SERVE_BACKENDS)}")
    root = Path(repo)
    if not root.is_dir():
        raise UsageError(f"no model repository at {root}", hint="pass --repo, or create one with `deploykit export`")
    folders = {p.name: p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    if models:
        unknown = [m for m in models if m not in folders]
        if unknown:
            raise UsageError(
                f"no model {', '.join(map(repr, unknown))} in {root}",
                hint=f"models there: {', '.join(folders) or 'none'}",
            )
        selected = [folders[m] for m in models]
    else:
        selected = list(folders.values())
    planned, unavailable = [], []
    for directory in selected:
        try:
            planned.append(plan_model(directory, backend))
        except ValueError as exc:
            if not models and str(exc).startswith("platform "):
                continue  # a variant for another backend: not asked for, not an error
            unavailable.append(Unavailable(directory.name, str(exc)))
    return planned, unavailable


# ---- the server process (server environment) -----------------------------------------------------------
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


def _port_in_use(host: str, port: int) -> bool:
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


def _write_status(path: Path | None, status: ServerStatus) -> None:
    if path is None:
        return
    # The status holds the access token of Triton's protected endpoints: owner-only.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(status.to_dict(), f, indent=2)
    os.replace(tmp, path)


def _make_infer_func(runner, model: ServedModel, lock):
    import numpy as np
    from pytriton.decorators import batch

    @batch
    def infer(**inputs):
        x = inputs[model.input_name]
        with lock:  # one runner per model; ORT sessions are thread-safe, other backends may not be
            y = runner.infer(x)
        return {model.output_name: np.ascontiguousarray(y, dtype=np.float32)}

    return infer


def _activate(model: ServedModel, threads: int | None):
    """Load and warm up the runner (a zero batch of 1); raises with the reason on failure."""
    import numpy as np

    from deploykit.runtimes import get_runner

    options: dict[str, Any] = {}
    if threads and model.backend == "onnxruntime":
        options["threads"] = threads
    runner = get_runner(model.backend, model.path, **options)
    runner.activate()
    try:
        spec = runner.input_spec()
        probe = np.zeros((1, *[d if d > 0 else 1 for d in model.input_dims]), dtype=np.float32)
        if not spec.matches(probe):
            raise DeployKitError(f"config.pbtxt dims {list(model.input_dims)} do not fit the model's input {list(spec.shape)}")
        out = runner.infer(probe)
        expected = tuple(d for d in model.output_dims)
        if tuple(out.shape[1:]) != expected and -1 not in expected:
            raise DeployKitError(f"the model returns {list(out.shape[1:])} per item, config.pbtxt says {list(expected)}")
    except BaseException:
        runner.deactivate()
        raise
    return runner


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DeployKitError):
        return exc.message
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"


def serve_forever(args: argparse.Namespace) -> int:
    """Start Triton with every servable model bound; block until SIGINT/SIGTERM. Returns an exit code."""
    ensure_libpython_on_path()
    status_path = Path(args.status_file) if args.status_file else None
    models = [m for m in (args.models or "").split(",") if m.strip()] or None

    def fail(message: str) -> int:
        _write_status(status_path, ServerStatus("failed", os.getpid(), error=message, log_file=args.log_file))
        print(f"error: {message}" + (f" (server log: {args.log_file})" if args.log_file else ""), file=sys.stderr, flush=True)
        return 1

    busy = [f"{args.host}:{port}" for port in (args.http_port, args.grpc_port, args.metrics_port) if _port_in_use(args.host, port)]
    if busy:  # tritonserver would only time out on it, a minute later
        return fail(f"address already in use: {', '.join(busy)} (another server running? choose other ports)")

    try:
        planned, unavailable = plan_repository(args.repo, models, args.backend)
    except DeployKitError as exc:
        return fail(exc.message + (f" ({exc.hint})" if exc.hint else ""))
    try:
        import numpy as np
        from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
        from pytriton.triton import Triton, TritonConfig, TritonSecurityConfig
    except ImportError as exc:
        return fail(f"cannot import PyTriton in {sys.executable} ({exc}); create the server environment with .ci/serve_env.sh")

    import threading

    runners, served = [], []
    for model in planned:
        if args.max_batch_size:
            model = ServedModel(**{**asdict(model), "max_batch_size": min(model.max_batch_size, args.max_batch_size),
                                   "preferred_batch_sizes": tuple(b for b in model.preferred_batch_sizes if b <= args.max_batch_size)})  # fmt: skip
        try:
            runners.append((model, _activate(model, args.threads)))
            served.append(model)
        except Exception as exc:  # any load failure makes this model unavailable, not the server
            unavailable.append(Unavailable(model.name, _reason(exc)))
    unavailable.sort(key=lambda u: u.name)
    if not served:
        detail = "; ".join(f"{u.name}: {u.reason}" for u in unavailable) or f"nothing for the {args.backend} backend in {args.repo}"
        return fail(f"no model can be served ({detail})")

    security = TritonSecurityConfig()  # protects statistics, model-repository, shared-memory, ...
    config = TritonConfig(
        http_address=args.host,
        http_port=args.http_port,
        grpc_address=args.host,
        grpc_port=args.grpc_port,
        metrics_address=args.host,
        metrics_port=args.metrics_port,
        allow_gpu_metrics=False,
        exit_timeout_secs=args.exit_timeout,
        log_file=Path(args.log_file) if args.log_file else None,
        log_verbose=args.log_verbose,
    )
    stop = threading.Event()

    def on_signal(signum, frame):
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    triton = Triton(config=config, security_config=security)
    try:
        for model, runner in runners:
            # ONNX Runtime sessions are thread-safe (instances run in parallel); other backends'
            # execution contexts are not promised to be, so their instances take turns.
            lock = contextlib.nullcontext() if model.backend == "onnxruntime" else threading.Lock()
            triton.bind(
                model_name=model.name,
                model_version=model.version,
                infer_func=[_make_infer_func(runner, model, lock) for _ in range(model.instances)],
                inputs=[Tensor(name=model.input_name, dtype=np.float32, shape=model.input_dims)],
                outputs=[Tensor(name=model.output_name, dtype=np.float32, shape=model.output_dims)],
                config=ModelConfig(
                    max_batch_size=model.max_batch_size,
                    batcher=DynamicBatcher(
                        max_queue_delay_microseconds=model.max_queue_delay_us,
                        preferred_batch_size=list(model.preferred_batch_sizes) or None,
                    ),
                ),
                strict=True,
            )
        triton.run()
    except Exception as exc:
        with contextlib.suppress(Exception):
            triton.stop()
        return fail(f"tritonserver did not start: {_reason(exc)}")

    host = f"[{args.host}]" if ":" in args.host else args.host
    status = ServerStatus(
        state="ready",
        pid=os.getpid(),
        http_url=f"http://{host}:{args.http_port}",
        grpc_url=f"grpc://{host}:{args.grpc_port}",
        metrics_url=f"http://{host}:{args.metrics_port}/metrics",
        models=tuple(served),
        unavailable=tuple(unavailable),
        access_token=security.access_token,
        log_file=args.log_file,
    )
    _write_status(status_path, status)
    if not args.quiet:
        _print_status(status)
    try:
        while not stop.is_set() and triton.is_alive():
            stop.wait(0.5)
        code = 0 if stop.is_set() else 1
        if code:
            print("error: tritonserver stopped unexpectedly" + (f" (log: {args.log_file})" if args.log_file else ""), file=sys.stderr, flush=True)
    finally:
        if not args.quiet:
            print("stopping the server ...", flush=True)
        triton.stop()
        for _, runner in runners:
            runner.deactivate()
        _write_status(status_path, ServerStatus("stopped", os.getpid(), log_file=args.log_file))
    return code


def _print_status(status: ServerStatus) -> None:
    lines = [
        "Triton Inference Server (PyTriton) is serving:",
        f"  HTTP     {status.http_url}",
        f"  gRPC     {status.grpc_url.removeprefix('grpc://')}",
        f"  metrics  {status.metrics_url}",
        "models:",
    ]
    for m in status.models:
        preferred = ",".join(map(str, m.preferred_batch_sizes)) or "-"
        lines.append(
            f"  {m.name:<28} {m.backend}  max batch {m.max_batch_size}, preferred {preferred}, "
            f"queue delay {m.max_queue_delay_us} us  -> POST {status.http_url}/v2/models/{m.name}/infer"
        )
    for u in status.unavailable:
        lines.append(f"  {u.name:<28} UNAVAILABLE: {u.reason}")
    if status.log_file:
        lines.append(f"server log: {status.log_file}")
    lines.append("Press Ctrl+C (or send SIGTERM) to stop.")
    print("\n".join(lines), flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deploykit.serve.server", description=__doc__.splitlines()[0])
    p.add_argument("--repo", default="models")
    p.add_argument("--models", default="", help="comma-separated model folder names (default: all for the backend)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)
    p.add_argument("--backend", choices=sorted(SERVE_BACKENDS), default="onnxruntime")
    p.add_argument("--threads", type=int, default=None, help="ONNX Runtime intra-op threads per model")
    p.add_argument("--max-batch-size", type=int, default=None, help="cap every model's max_batch_size")
    p.add_argument("--status-file", default=None)
    p.add_argument("--log-file", default=None, help="tritonserver's log (default: printed to stdout)")
    p.add_argument("--log-verbose", type=int, default=0)
    p.add_argument("--exit-timeout", type=int, default=5, help="seconds in-flight requests get at shutdown")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    return serve_forever(args)


# ---- the launcher (main environment) ------------------------------------------------------------------
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
    """``python -m deploykit.serve.server`` in the server environment, as a context manager.

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

    def command(self, python: str, status_file: str) -> list[str]:
        cmd = [
            python, "-m", "deploykit.serve.server",
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
        python = find_server_python(self.python)
        env = server_environment(python)
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
            try:
                return ServerStatus.from_dict(json.loads(status_file.read_text()))
            except (OSError, ValueError, TypeError):
                return None

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

    def _log_hint(self) -> str | None:
        return f"see the server log {self.log_file}" if self.log_file else None

    def wait(self) -> int:
        """Block until the process ends; SIGINT/SIGTERM here are forwarded to it."""
        assert self.process is not None

        def forward(signum, frame):
            if self.process and self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)

        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            return self.process.wait()
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


if __name__ == "__main__":
    sys.exit(main())
