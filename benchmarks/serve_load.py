"""Load on the local Triton server vs the same model in process: throughput, p50/p99, batching.

    bash .ci/serve_env.sh                              # once: the server environment
    python benchmarks/serve_load.py                    # resnet18, 32x32, 10 classes, max batch 8
    python benchmarks/serve_load.py --size 224 --num-classes 1000 --requests 8

One run exports the model (random weights: throughput does not depend on them) into a
temporary repository, then measures, on this machine:

- ``in-process, batch 1``: OnnxRuntimeRunner.infer on one image at a time (no server);
- ``in-process, batch N``: the same runner on full batches (what batching can at best give);
- ``served, 1 client``: one tritonclient HTTP client, one image per request (protocol cost);
- ``served, C clients``: C concurrent HTTP clients, one image per request, the dynamic
  batcher combining them (the load test).

Latencies are per request (client-side round trip for served rows), throughput is images per
second of wall time. Every served answer is compared with the in-process runner's. Writes
``benchmarks/results/serve_load.json`` and ``serve_load.md`` with the machine, its load
average and the batch sizes Triton executed (from its statistics).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _row(name: str, latencies_s: list[float], images: int, wall_s: float, **extra) -> dict:
    ms = np.asarray(latencies_s) * 1e3
    return {
        "mode": name,
        "requests": len(latencies_s),
        "images": images,
        "p50_ms": float(np.percentile(ms, 50)),
        "p90_ms": float(np.percentile(ms, 90)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
        "throughput_ips": images / wall_s,
        "wall_s": wall_s,
        **extra,
    }


def _in_process(runner, x: np.ndarray, batch: int, warmup: int = 5) -> dict:
    for _ in range(warmup):
        runner.infer(x[:batch])
    latencies, start = [], time.perf_counter()
    for i in range(0, len(x) - batch + 1, batch):
        t = time.perf_counter()
        runner.infer(x[i : i + batch])
        latencies.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    return _row(f"in-process, batch {batch}", latencies, len(latencies) * batch, wall, clients=1)


def _served(url: str, model: str, x: np.ndarray, clients: int, per_client: int, expected: np.ndarray, on_start=None) -> dict:
    """``clients`` threads, each with its own connection, ``per_client`` one-image requests.

    ``on_start()`` runs once every client is connected and warmed up, just before the timed
    requests (the statistics snapshot goes there, so warm-ups are not counted).
    """
    import tritonclient.http as http

    latencies: list[float] = []
    failures: list[str] = []
    max_abs = [0.0]
    lock = threading.Lock()
    warmed = threading.Barrier(clients + 1)
    go = threading.Barrier(clients + 1)

    def client(c: int) -> None:
        conn = http.InferenceServerClient(url, network_timeout=120)
        try:
            tensor = http.InferInput("input", [1, *x.shape[1:]], "FP32")
            tensor.set_data_from_numpy(x[:1], binary_data=True)
            conn.infer(model, [tensor])  # warm the connection
            warmed.wait(timeout=120)
            go.wait(timeout=120)
            for r in range(per_client):
                i = (c * per_client + r) % len(x)
                tensor.set_data_from_numpy(x[i : i + 1], binary_data=True)
                t = time.perf_counter()
                try:
                    out = conn.infer(model, [tensor]).as_numpy("logits")
                except Exception as exc:  # counted: a failed request is a result
                    with lock:
                        failures.append(str(exc)[:200])
                    continue
                elapsed = time.perf_counter() - t
                diff = float(np.abs(out - expected[i : i + 1]).max())
                with lock:
                    latencies.append(elapsed)
                    max_abs[0] = max(max_abs[0], diff)
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    warmed.wait(timeout=120)
    if on_start is not None:
        on_start()
    go.wait(timeout=120)
    start = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    return _row(
        f"served, {clients} client{'s' if clients > 1 else ''}",
        latencies,
        len(latencies),
        wall,
        clients=clients,
        failures=len(failures),
        max_abs_diff_vs_in_process=max_abs[0],
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--num-classes", type=int, default=10)
    parser.add_argument("--max-batch-size", type=int, default=8)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=24, help="requests per client")
    parser.add_argument("--threads", type=int, default=None, help="ONNX Runtime threads (server and in-process)")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--render", action="store_true", help="only re-write serve_load.md from serve_load.json")
    args = parser.parse_args(argv)
    if args.render:
        from deploykit.fileio import atomic_write_text
        from deploykit.machine import MachineInfo

        record = json.loads((Path(args.out) / "serve_load.json").read_text())
        atomic_write_text(Path(args.out) / "serve_load.md", _markdown(record, MachineInfo.from_dict(record["machine"]).summary()))
        return 0

    from deploykit.artifacts import now_iso
    from deploykit.export import export_model
    from deploykit.fileio import atomic_write_text
    from deploykit.machine import describe_machine
    from deploykit.runtimes import get_runner
    from deploykit.serve.client import batching_summary, model_statistics
    from deploykit.serve.launcher import LocalServer

    load_before = os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="deploykit-serve-bench-"))
    repo = work / "models"
    print(f"exporting {args.model} ({args.size}x{args.size}, {args.num_classes} classes) ...", file=sys.stderr)
    result = export_model(
        args.model, repo=repo, input_size=args.size, num_classes=args.num_classes, max_batch_size=args.max_batch_size
    )
    variant = result.artifact.variant
    total = args.clients * args.requests
    x = np.random.default_rng(0).standard_normal((total, 3, args.size, args.size)).astype(np.float32)

    options = {"threads": args.threads} if args.threads else {}
    # Every row runs while the server is up (idle during the in-process rows), and the
    # in-process batch-1 row is measured before and after the served ones: the machine may be
    # shared, so each comparison is between neighbours in time under the same conditions.
    with open(work / "server.out", "w") as output, get_runner("onnxruntime", result.artifact.path, **options) as runner:
        expected = np.concatenate([runner.infer(x[i : i + 1]) for i in range(total)])
        server = LocalServer(
            repo=repo,
            http_port=_free_port(),
            grpc_port=_free_port(),
            metrics_port=_free_port(),
            threads=args.threads,
            log_file=str(work / "tritonserver.log"),
            output=output,
        )
        snapshot: dict = {}
        try:
            status = server.start(timeout=300)
            url = status.http_url.removeprefix("http://")
            print(f"server ready at {status.http_url}", file=sys.stderr)
            rows = [_in_process(runner, x, 1), _in_process(runner, x, args.max_batch_size)]
            rows.append(_served(url, variant, x, 1, min(total, 64), expected))

            def take_snapshot() -> None:
                snapshot.update(batching_summary(model_statistics(status.http_url, variant, status.access_token)))

            rows.append(_served(url, variant, x, args.clients, args.requests, expected, on_start=take_snapshot))
            after = batching_summary(model_statistics(status.http_url, variant, status.access_token))
            again = _in_process(runner, x, 1)
            again["mode"] += " (again, after the served rows)"
            rows.append(again)
        finally:
            server.stop()
    before = snapshot
    batches = {b: n - before["batches"].get(b, 0) for b, n in after["batches"].items() if n - before["batches"].get(b, 0)}
    batching = {
        "inference_count": after["inference_count"] - before["inference_count"],
        "execution_count": after["execution_count"] - before["execution_count"],
        "executions_per_batch_size": batches,
    }

    machine = describe_machine()
    record = {
        "benchmark": "serve_load",
        "created_at": now_iso(),
        "model": args.model,
        "variant": variant,
        "input": [1, 3, args.size, args.size],
        "num_classes": args.num_classes,
        "max_batch_size": args.max_batch_size,
        "preferred_batch_sizes": list(status.model(variant).preferred_batch_sizes),
        "max_queue_delay_us": status.model(variant).max_queue_delay_us,
        "clients": args.clients,
        "requests_per_client": args.requests,
        "protocol": "http (tritonclient, binary tensor data)",
        "server": "tritonserver bundled with nvidia-pytriton, deploykit OnnxRuntimeRunner behind it",
        "onnxruntime_threads": args.threads or "default",
        "load_average_before": list(load_before),
        "load_average_after": list(os.getloadavg()),
        "rows": rows,
        "batching": batching,
        "machine": machine.to_dict(),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "serve_load.json", json.dumps(record, indent=2) + "\n")
    atomic_write_text(out / "serve_load.md", _markdown(record, machine.summary()))
    print((out / "serve_load.md").read_text())
    failed = sum(r.get("failures", 0) for r in rows)
    return 1 if failed else 0


def _markdown(record: dict, machine: str) -> str:
    lines = [
        f"# Serving under load: {record['variant']} ({record['input'][2]}x{record['input'][3]})",
        "",
        f"Machine: {machine}; load average before/after: "
        f"{record['load_average_before'][0]:.1f} / {record['load_average_after'][0]:.1f} "
        "(other work on the machine slows every row alike; compare rows, not runs).",
        f"Recorded {record['created_at']} by `benchmarks/serve_load.py`. Server: {record['server']}; "
        f"max_batch_size {record['max_batch_size']}, preferred {record['preferred_batch_sizes']}, "
        f"queue delay {record['max_queue_delay_us']} us; client: {record['protocol']}.",
        "",
        "| mode | requests | images/s | p50 ms | p90 ms | p99 ms | failures | max abs diff |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in record["rows"]:
        diff = r.get("max_abs_diff_vs_in_process")
        lines.append(
            f"| {r['mode']} | {r['requests']} | {r['throughput_ips']:.1f} | {r['p50_ms']:.2f} | "
            f"{r['p90_ms']:.2f} | {r['p99_ms']:.2f} | {r.get('failures', '-')} | "
            f"{'-' if diff is None else f'{diff:.2e}'} |"
        )
    b = record["batching"]
    sizes = ", ".join(f"{k}: {v}" for k, v in sorted(b["executions_per_batch_size"].items(), key=lambda kv: int(kv[0])))
    lines += [
        "",
        f"Dynamic batching during the {record['clients']}-client run (Triton statistics): "
        f"{b['inference_count']} inferences in {b['execution_count']} executions; "
        f"executions per batch size: {sizes}.",
        "",
        "Latency of served rows is the client's round trip (HTTP, JSON header + binary tensor, "
        "queueing in the dynamic batcher, the PyTriton proxy hop and the runner); in-process rows "
        "are the runner alone. Served answers are compared with the in-process runner's on the "
        "same inputs (max abs diff).",
        "",
    ]
    if record["load_average_before"][0] > record["machine"]["logical_cpus"]:
        lines += [
            f"Caution: the machine was shared with other jobs (load average "
            f"{record['load_average_before'][0]:.1f} on {record['machine']['logical_cpus']} CPUs), so ONNX "
            "Runtime's threads were preempted: rows measured a minute apart can differ by tens of percent "
            "(compare the two in-process batch-1 rows). What holds regardless of load: the failure count, "
            "the max abs diff and the batch sizes Triton executed.",
            "",
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
