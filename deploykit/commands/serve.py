"""`deploykit serve`: the model repository behind a local Triton Inference Server (PyTriton)."""

from __future__ import annotations

import click

from deploykit.commands._common import repo_option
from deploykit.runtimes import servable_backends

RESTARTS = 5  # times a server process that died on its own is started again


@click.command(name="serve")
@repo_option()
@click.option("--models", default=None, help="Comma-separated variants to serve (default: every variant for the backend).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback unless you mean it).")
@click.option("--http-port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--grpc-port", type=click.IntRange(1, 65535), default=8001, show_default=True)
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=8002, show_default=True)
@click.option(
    "--backend",
    type=click.Choice(servable_backends()),
    default="onnxruntime",
    show_default=True,
    help="Runner behind every model: ONNX variants for onnxruntime/openvino, plans for tensorrt.",
)
@click.option("--threads", type=click.IntRange(1, 256), default=None, help="ONNX Runtime intra-op threads per model.")
@click.option("--max-batch-size", type=click.IntRange(1, 1024), default=None, help="Cap every model's max_batch_size.")
@click.option(
    "--python",
    "python",
    type=click.Path(dir_okay=False),
    default=None,
    help="Interpreter of the server environment (default: $DEPLOYKIT_SERVE_PYTHON, then .venv-serve/bin/python).",
)
@click.option("--log-file", type=click.Path(dir_okay=False), default=None, help="tritonserver's log (default: a file in the temp folder).")
def command(repo, models, host, http_port, grpc_port, metrics_port, backend, threads, max_batch_size, python, log_file) -> None:
    """Serve the model repository with a local Triton server (PyTriton), until Ctrl+C.

    \b
    Each variant is bound to deploykit's runner for --backend with Triton's dynamic batcher,
    configured from its config.pbtxt (max batch size, preferred sizes, queue delay). A variant
    whose config or model file is missing or corrupt is reported UNAVAILABLE and the others
    serve. The server runs in its own environment (PyTriton needs numpy<2): create it once
    with `bash .ci/serve_env.sh`.
    """
    import tempfile
    from pathlib import Path

    from deploykit.commands._common import split_list
    from deploykit.errors import UsageError
    from deploykit.serve.launcher import LocalServer
    from deploykit.serve.plan import plan_repository
    from deploykit.serve.protocol import port_in_use

    names = split_list(models) or None
    if len({http_port, grpc_port, metrics_port}) != 3:
        raise UsageError("--http-port, --grpc-port and --metrics-port must differ")
    planned, unavailable = plan_repository(repo, names, backend)  # fails fast on a bad --repo/--models
    if not planned:
        detail = "; ".join(f"{u.name}: {u.reason}" for u in unavailable) or f"no variant for the {backend} backend in {repo}"
        raise UsageError(f"nothing to serve ({detail})", hint="make one with `deploykit export`")
    if log_file is None:
        log_file = str(Path(tempfile.gettempdir()) / f"deploykit-serve-{http_port}.log")
    server = LocalServer(
        repo=repo,
        models=names,
        host=host,
        http_port=http_port,
        grpc_port=grpc_port,
        metrics_port=metrics_port,
        backend=backend,
        python=python,
        threads=threads,
        max_batch_size=max_batch_size,
        log_file=log_file,
        quiet=False,  # the server prints its endpoints and models
    )
    server.prepare()  # a bad --python or an environment without PyTriton fails before anything starts
    busy = [str(port) for port in (http_port, grpc_port, metrics_port) if port_in_use(host, port)]
    if busy:
        raise UsageError(f"address already in use: {host}:{', '.join(busy)}", hint="another server running? choose other ports")
    click.echo(f"starting tritonserver for {len(planned)} model(s) from {repo} ...", err=True)
    try:
        server.start()  # stops the server itself if interrupted
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    raise SystemExit(server.wait(max_restarts=RESTARTS))
