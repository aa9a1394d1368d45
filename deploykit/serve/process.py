"""The server process, inside the server environment: every selected variant bound to its runner.

``python -m deploykit.serve.process`` (started by :class:`deploykit.serve.launcher.LocalServer`)
has PyTriton start a real tritonserver and binds every selected variant, read from its
``config.pbtxt`` (max batch size, preferred batch sizes, queue delay, tensor names and dims), to
the deploykit runner for the backend, with Triton's dynamic batcher in front. A variant whose
config or model file is missing or corrupt is reported unavailable with the reason; the others
serve. When everything is bound it writes the status file (:mod:`deploykit.serve.protocol`),
then serves until SIGINT or SIGTERM. Imports only numpy (<2 there), pytriton, the runtime's own
package and deploykit's torch-free modules.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from deploykit.errors import DeployKitError
from deploykit.serve.plan import plan_repository
from deploykit.serve.protocol import (
    ServedModel,
    ServerStatus,
    Unavailable,
    ensure_libpython_on_path,
    port_in_use,
    server_arguments,
    write_status,
)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, DeployKitError):
        return exc.message
    return f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"


_PRIVATE_HOST = "127.0.0.1"
MODELS_READY_TIMEOUT = 300.0  # seconds tritonserver gets to load every bound model
MAX_RESTARTS = 5


class _Failed(Exception):
    """Startup failed: the message goes into the status file and onto stderr."""


# ---- runners -------------------------------------------------------------------------------------
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
        expected = tuple(model.output_dims)
        if tuple(out.shape[1:]) != expected and -1 not in expected:
            raise DeployKitError(f"the model returns {list(out.shape[1:])} per item, config.pbtxt says {list(expected)}")
    except BaseException:
        runner.deactivate()
        raise
    return runner


def _capped(model: ServedModel, max_batch_size: int | None) -> ServedModel:
    if not max_batch_size:
        return model
    preferred = tuple(b for b in model.preferred_batch_sizes if b <= max_batch_size)
    return replace(model, max_batch_size=min(model.max_batch_size, max_batch_size), preferred_batch_sizes=preferred)


@dataclass
class _Bound:
    """The runners that loaded, and the variants that did not."""

    runners: list[tuple[ServedModel, Any]] = field(default_factory=list)
    unavailable: list[Unavailable] = field(default_factory=list)

    @property
    def served(self) -> list[ServedModel]:
        return [model for model, _ in self.runners]

    def close(self) -> None:
        for _, runner in self.runners:
            runner.deactivate()


def _load_runners(args: argparse.Namespace) -> _Bound:
    models = [m for m in (args.models or "").split(",") if m.strip()] or None
    try:
        planned, unavailable = plan_repository(args.repo, models, args.backend)
    except DeployKitError as exc:
        raise _Failed(exc.message + (f" ({exc.hint})" if exc.hint else "")) from None
    bound = _Bound(unavailable=list(unavailable))
    for model in planned:
        model = _capped(model, args.max_batch_size)
        try:
            bound.runners.append((model, _activate(model, args.threads)))
        except Exception as exc:  # any load failure makes this model unavailable, not the server
            bound.unavailable.append(Unavailable(model.name, _reason(exc)))
    bound.unavailable.sort(key=lambda u: u.name)
    if not bound.runners:
        detail = "; ".join(f"{u.name}: {u.reason}" for u in bound.unavailable)
        raise _Failed(f"no model can be served ({detail or f'nothing for the {args.backend} backend in {args.repo}'})")
    return bound


# ---- Triton --------------------------------------------------------------------------------------
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


def _bind(triton, model: ServedModel, runner) -> None:
    import numpy as np
    from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor

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


def _free_loopback_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((_PRIVATE_HOST, 0))
        return s.getsockname()[1]


def _triton_config(args: argparse.Namespace, http_port: int):
    from pytriton.triton import TritonConfig

    # tritonserver's own HTTP endpoint stays private: the front (deploykit.serve.front) owns the public one
    return TritonConfig(
        http_address=_PRIVATE_HOST,
        http_port=http_port,
        grpc_address=args.host,
        grpc_port=args.grpc_port,
        metrics_address=args.host,
        metrics_port=args.metrics_port,
        allow_gpu_metrics=False,
        exit_timeout_secs=args.exit_timeout,
        log_file=Path(args.log_file) if args.log_file else None,
        log_verbose=args.log_verbose,
    )


def _start_triton(args: argparse.Namespace, bound: _Bound, security, http_port: int):
    from pytriton.triton import Triton

    triton = Triton(config=_triton_config(args, http_port), security_config=security)
    try:
        for model, runner in bound.runners:
            _bind(triton, model, runner)
        triton.run()
    except Exception as exc:
        with contextlib.suppress(Exception):
            triton.stop()
        raise _Failed(f"tritonserver did not start: {_reason(exc)}") from None
    return triton


# ---- the process ---------------------------------------------------------------------------------
def _ready_status(args: argparse.Namespace, bound: _Bound, security, restarts: int = 0) -> ServerStatus:
    host = f"[{args.host}]" if ":" in args.host else args.host
    return ServerStatus(
        state="ready",
        pid=os.getpid(),
        http_url=f"http://{host}:{args.http_port}",
        grpc_url=f"grpc://{host}:{args.grpc_port}",
        metrics_url=f"http://{host}:{args.metrics_port}/metrics",
        models=tuple(bound.served),
        unavailable=tuple(bound.unavailable),
        access_token=security.access_token,
        log_file=args.log_file,
        restarts=restarts,
    )


def _preflight(args: argparse.Namespace) -> None:
    busy = [f"{args.host}:{port}" for port in (args.http_port, args.grpc_port, args.metrics_port) if port_in_use(args.host, port)]
    if busy:  # tritonserver would only time out on it, a minute later
        raise _Failed(f"address already in use: {', '.join(busy)} (another server running? choose other ports)")
    try:
        import pytriton.triton  # noqa: F401
    except ImportError as exc:
        raise _Failed(f"cannot import PyTriton in {sys.executable} ({exc}); create the server environment with .ci/serve_env.sh") from None


@dataclass
class _Supervised:
    """tritonserver behind the front; started again (and the event reported) when it dies."""

    args: argparse.Namespace
    bound: _Bound
    security: Any
    front: Any
    status_path: Path | None
    triton: Any = None
    restarts: int = 0

    def start(self) -> None:
        self.triton = _start_triton(self.args, self.bound, self.security, self.front.upstream[1])
        self._wait_models()

    def _wait_models(self) -> None:
        """Strict readiness: every bound model answers ready before the server says it is."""
        import time

        deadline = time.monotonic() + MODELS_READY_TIMEOUT
        while not self.front.all_ready():
            if not self.triton.is_alive() or time.monotonic() > deadline:
                raise _Failed(f"the models were not ready within {MODELS_READY_TIMEOUT:.0f} s")
            time.sleep(0.2)

    def restart(self) -> bool:
        """After tritonserver died: report it, start it again; False when that is not possible."""
        self.restarts += 1
        log = f" (log: {self.args.log_file})" if self.args.log_file else ""
        print(f"warning: tritonserver died{log}; restarting it ({self.restarts} of {MAX_RESTARTS})", file=sys.stderr, flush=True)
        with contextlib.suppress(Exception):
            self.triton.stop()
        if self.restarts > MAX_RESTARTS:
            return False
        try:
            self.start()
        except _Failed as exc:
            print(f"error: tritonserver could not be restarted: {exc}", file=sys.stderr, flush=True)
            return False
        write_status(self.status_path, _ready_status(self.args, self.bound, self.security, self.restarts))
        print("tritonserver restarted; serving again", file=sys.stderr, flush=True)
        return True

    def serve_until_stopped(self) -> int:
        stop = threading.Event()
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: stop.set())
        while not stop.is_set():
            if not self.triton.is_alive() and not stop.is_set() and not self.restart():
                return 1
            stop.wait(0.5)
        return 0

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self.front.shutdown()
            self.front.server_close()
        if self.triton is not None:
            self.triton.stop()


def _start(args: argparse.Namespace, status_path: Path | None) -> _Supervised:
    """Everything up to the moment every model is ready; raises _Failed with the reason."""
    from deploykit.serve.front import Front

    _preflight(args)
    from pytriton.triton import TritonSecurityConfig

    bound = _load_runners(args)
    try:
        front = Front((args.host, args.http_port), (_PRIVATE_HOST, _free_loopback_port()), bound.served)
    except OSError as exc:
        bound.close()
        raise _Failed(f"cannot listen on {args.host}:{args.http_port}: {exc}") from None
    front.serve_in_thread()
    security = TritonSecurityConfig()  # protects statistics, model-repository, shared-memory, ...
    server = _Supervised(args, bound, security, front, status_path)
    try:
        server.start()
    except BaseException:
        server.stop()
        bound.close()
        raise
    return server


def serve_forever(args: argparse.Namespace) -> int:
    """Start Triton with every servable model bound; block until SIGINT/SIGTERM. Returns an exit code."""
    ensure_libpython_on_path()
    status_path = Path(args.status_file) if args.status_file else None
    try:
        server = _start(args, status_path)
    except _Failed as exc:
        write_status(status_path, ServerStatus("failed", os.getpid(), error=str(exc), log_file=args.log_file))
        print(f"error: {exc}" + (f" (server log: {args.log_file})" if args.log_file else ""), file=sys.stderr, flush=True)
        return 1
    status = _ready_status(args, server.bound, server.security)
    write_status(status_path, status)
    if not args.quiet:
        print_status(status)
    try:
        code = server.serve_until_stopped()
    finally:
        if not args.quiet:
            print("stopping the server ...", flush=True)
        server.stop()
        server.bound.close()
        write_status(status_path, ServerStatus("stopped", os.getpid(), log_file=args.log_file))
    return code


def print_status(status: ServerStatus) -> None:
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


def main(argv: list[str] | None = None) -> int:
    return serve_forever(server_arguments().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
