"""Running one configuration: in a fresh Python process (the default) or in this one.

Each configuration runs in a fresh process by default (``isolate=True``), so one backend's
memory, thread pools and JIT caches do not colour the next one. The worker loads the runner,
warms up, times (:mod:`deploykit.bench.timing`) and, when asked, profiles per layer apart
from the timed loop; it returns plain data that :func:`finish_result` turns into a
:class:`BenchResult` with the peak of the device it ran on.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.bench.config import BenchConfig
from deploykit.bench.prepare import one_line
from deploykit.bench.results import BenchResult, LayerTiming, json_default, jsonable
from deploykit.bench.timing import measure_phases
from deploykit.machine import current_rss_bytes, device_peak, peak_rss_bytes


def make_runner(config: BenchConfig, artifact_path: str | None, input_size: int | None) -> Any:
    """The runner for a configuration (its module imported only now).

    A backend that runs an artifact gets its path, torch gets the model name; each runner
    takes the settings its constructor knows (see :meth:`Runner.from_settings`).
    """
    from deploykit.runtimes import get_backend, runner_class

    source = artifact_path if get_backend(config.backend).format is not None else config.model
    return runner_class(config.backend).from_settings(source, input_size=input_size, **config.runner_settings())


def make_input(batch: int, input_size: int, seed: int = 0) -> np.ndarray:
    """A deterministic normalized-image-like batch (N x 3 x S x S float32)."""
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, 3, input_size, input_size), dtype=np.float32)


def layer_profile(
    runner: Any, batch: np.ndarray, layer_macs: dict[str, int], repeats: int = 5, top: int = 15
) -> tuple[LayerTiming, ...]:
    """The ``top`` slowest layers of an active runner (:meth:`Runner.profile_layers`), slowest
    first, each with its share of the total and its MACs where the analysis names the layer."""
    rows = runner.profile_layers(batch, repeats=repeats)
    total = sum(row.time_ms for row in rows) or 1.0
    return tuple(
        LayerTiming(name=row.name, op=row.op, time_ms=row.time_ms, share=row.time_ms / total,
                    macs=layer_macs.get(row.name))
        for row in rows[:top]
    )


def _measure_runner(runner: Any, config: BenchConfig, job: dict[str, Any], out: dict[str, Any]) -> None:
    """Time (and optionally profile) an active runner, filling ``out``."""
    spec_shape = runner.input_spec().shape
    size = job.get("input_size") or (spec_shape[-1] if spec_shape[-1] > 0 else 224)
    batch = make_input(config.batch, size)
    latency, phases = measure_phases(runner, batch, end_to_end=config.end_to_end, **config.timing())
    out["latency"] = latency.to_dict()
    out["phases_ms"] = phases
    out["input_shape"] = list(batch.shape)
    out["device_memory_bytes"] = runner.device_memory_bytes()
    out["device_memory"] = runner.device_memory() if hasattr(runner, "device_memory") else None
    out["runner"] = jsonable(runner.describe())
    if config.per_layer:
        try:
            layers = layer_profile(runner, batch, job.get("layer_macs") or {})
            out["layers"] = [layer.to_dict() for layer in layers]
        except Exception as exc:  # profiling is extra: keep the timing
            out["runner"]["per_layer_error"] = one_line(exc)


def _measure_ceilings(config: BenchConfig, out: dict[str, Any]) -> None:
    """CPU runs: this process's SGEMM and copy ceilings at the run's thread count, after timing."""
    if config.device_kind != "cpu" or not config.ceilings:
        return
    try:
        from deploykit.ceilings import measure_cpu_ceilings

        out["ceilings"] = measure_cpu_ceilings(config.threads).to_dict()
    except Exception as exc:  # torch missing, or no memory for the copy: the timing stands
        out["runner"]["ceilings_error"] = one_line(exc)


def execute_job(job: dict[str, Any]) -> dict[str, Any]:
    """Load, warm up, time and (optionally) profile one configuration; returns plain data.

    Never raises for a problem of the configuration: it comes back as ``status: failed``.
    """
    config = BenchConfig.from_dict(job["config"])
    start = time.perf_counter()
    out: dict[str, Any] = {"status": "failed", "baseline_rss_bytes": current_rss_bytes()}
    try:
        with make_runner(config, job.get("artifact_path"), job.get("input_size")) as runner:
            _measure_runner(runner, config, job, out)
        out["status"] = "ok"
        out["peak_rss_bytes"] = peak_rss_bytes()  # before the ceilings' own large arrays
        _measure_ceilings(config, out)
    except MemoryError:
        out["reason"] = f"out of host memory at batch {config.batch}"
    except Exception as exc:  # DeployKitError or a backend's own (ORT Fail, OpenVINO RuntimeError, CUDA OOM)
        out["reason"] = one_line(exc)
    out.setdefault("peak_rss_bytes", peak_rss_bytes())
    out["wall_seconds"] = time.perf_counter() - start
    return out


def finish_result(job: dict[str, Any], raw: dict[str, Any], machine: dict[str, Any]) -> BenchResult:
    """Combine a job, the worker's raw output and the machine into a :class:`BenchResult`."""
    config = BenchConfig.from_dict(job["config"])
    runner = raw.get("runner") or {}
    math_kind = runner.get("math") or config.precision
    peak, source = device_peak(machine, config.device, math_kind, config.peak_gflops, config.threads)
    return BenchResult.from_dict(
        {
            **raw,
            "config": job["config"],
            "status": raw.get("status", "failed"),
            "runner": runner,
            "artifact": job.get("artifact"),
            "artifact_bytes": job.get("artifact_bytes"),
            "macs_per_image": job.get("macs_per_image"),
            "traffic_bytes_per_batch": job.get("traffic_bytes_per_batch"),
            "peak_gflops": peak,
            "peak_source": source,
        }
    )


def _package_root() -> str:
    return str(Path(__file__).resolve().parent.parent.parent)


_WORKER_CODE = "import sys; from deploykit.bench import worker_main; sys.exit(worker_main(sys.argv[1:]))"


def _worker_output(proc: subprocess.CompletedProcess, out_path: Path) -> dict[str, Any]:
    """The worker's result file, or a failure naming its exit code and last stderr line."""
    if out_path.is_file():
        try:
            return json.loads(out_path.read_text())
        except json.JSONDecodeError:
            pass
    tail = [line for line in (proc.stderr or "").strip().splitlines() if line.strip()]
    last = tail[-1][:300] if tail else "no output"
    return {"status": "failed", "reason": f"worker exited with code {proc.returncode}: {last}"}


def run_isolated(job: dict[str, Any]) -> dict[str, Any]:
    """Run :func:`execute_job` in a fresh Python process; a crash or timeout becomes ``failed``."""
    config = BenchConfig.from_dict(job["config"])
    env = dict(os.environ)
    # The worker imports the same deploykit as this process, installed or from a checkout.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (_package_root(), env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="deploykit-bench-") as tmp:
        job_path, out_path = Path(tmp) / "job.json", Path(tmp) / "result.json"
        job_path.write_text(json.dumps(job, default=json_default))
        try:
            proc = subprocess.run(
                [sys.executable, "-c", _WORKER_CODE, "--worker", str(job_path), str(out_path)],
                capture_output=True,
                text=True,
                timeout=config.timeout_s,
                env=env,
            )
        except subprocess.TimeoutExpired:
            return {"status": "failed", "reason": f"timed out after {config.timeout_s:.0f} s (worker killed)"}
        return _worker_output(proc, out_path)


def worker_main(argv: Sequence[str]) -> int:
    """Entry of the isolated worker: ``--worker JOB.json OUT.json``."""
    if len(argv) != 3 or argv[0] != "--worker":
        print("usage: python -m deploykit.bench --worker JOB.json OUT.json", file=sys.stderr)
        return 2
    job = json.loads(Path(argv[1]).read_text())
    raw = execute_job(job)
    Path(argv[2]).write_text(json.dumps(raw, default=json_default))
    return 0
