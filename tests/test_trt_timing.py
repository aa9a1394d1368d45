"""TensorRT timing and GPU memory as bench sees them, run on a CPU.

The runner below is the real :class:`TensorRTRunner` with one method replaced: activation puts
a CPU stand-in where TensorRT's execution context would be. The stand-in reads its input from,
and writes its output to, the raw addresses ``set_tensor_address`` was given (as TensorRT does
with device pointers), so a buffer bound to the wrong address, freed, or re-bound per call shows
up as a wrong result or a count. Every line of staging, binding, enqueueing and bench's timing
and rendering is deploykit's own. What needs a GPU (CUDA events on the runner's stream, pinned
copies, graph capture, the free-memory deltas) is listed in docs/tensorrt.md.
"""

from __future__ import annotations

import csv
import ctypes
import io
import json

import numpy as np
import pytest

from deploykit import bench
from deploykit.bench import BenchConfig, BenchRun
from deploykit.errors import DeployKitError
from deploykit.machine import GpuInfo
from deploykit.runtimes.tensorrt_runner import TensorRTRunner
from deploykit.tensorrt.compatibility import EngineTarget
from deploykit.tensorrt.profiles import BatchProfile

torch = pytest.importorskip("torch")

CLASSES = 5
TIMING = {"warmup": 1, "iterations": 4, "max_seconds": 2}


class AddressContext:
    """Stands in for ``IExecutionContext``: logits = flattened input @ weights, through raw addresses."""

    def __init__(self, weights: np.ndarray):
        self.weights = weights
        self.addresses: dict[str, int] = {}
        self.shape: tuple[int, ...] | None = None
        self.bound = self.runs = 0

    def set_input_shape(self, name: str, shape: tuple[int, ...]) -> bool:
        self.shape = tuple(shape)
        return True

    def get_tensor_shape(self, name: str) -> tuple[int, ...]:
        return (self.shape[0], CLASSES)

    def set_tensor_address(self, name: str, address: int) -> bool:
        self.addresses[name] = address
        self.bound += 1
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        n = self.shape[0]
        size = int(np.prod(self.shape))
        x = np.ctypeslib.as_array((ctypes.c_float * size).from_address(self.addresses["input"])).reshape(n, -1)
        out = np.ctypeslib.as_array((ctypes.c_float * (n * CLASSES)).from_address(self.addresses["logits"]))
        out[:] = (x @ self.weights).ravel()
        self.runs += 1
        return True


class CpuEngineRunner(TensorRTRunner):
    """TensorRTRunner whose engine is :class:`AddressContext` on the CPU (no stream, no CUDA)."""

    def _activate_impl(self) -> None:
        self._context = AddressContext(np.random.default_rng(0).standard_normal((3 * 4 * 4, CLASSES)).astype(np.float32))
        self._engine = "cpu stand-in"
        self._input, self._output = "input", "logits"
        self._input_dtype = self._output_dtype = torch.float32
        self._input_shape = (-1, 3, 4, 4)
        self._profile = BatchProfile(1, 4, 8)
        self._torch_device = torch.device("cpu")
        self._here = EngineTarget("stand-in", GpuInfo("host memory"))
        self.device = "cpu"  # where the buffers live: free-memory deltas are then None, as on any CPU
        self._stream, self._stream_handle = None, 0
        self.memory = {"weights_bytes": None, "activations_bytes": None, "io_bytes": None,
                       "engine_scratch_bytes": 4096, "method": "torch.cuda.mem_get_info deltas"}


def _expected(runner: CpuEngineRunner, x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1) @ runner._context.weights


def test_bench_takes_the_staged_path_and_binds_the_buffers_once(tmp_path):
    x = np.random.default_rng(1).standard_normal((2, 3, 4, 4), dtype=np.float32)
    with CpuEngineRunner(tmp_path / "model.plan") as runner:
        assert runner.kind == "cuda"  # so measure_phases stages it by default, like torch on CUDA
        latency, phases = bench.measure_phases(runner, x, **TIMING)
        assert set(phases) == {"h2d", "compute", "d2h", "end_to_end"} and latency.p50_ms == phases["compute"]
        assert latency.includes_host_copies is False and latency.batch == 2
        # input and output addresses set once for the whole timing; many enqueues on them
        assert runner._context.bound == 2 and runner._context.runs > 2 * TIMING["iterations"]
        e2e, phases = bench.measure_phases(runner, x, end_to_end=True, **TIMING)
        assert e2e.includes_host_copies is True and e2e.p50_ms == phases["end_to_end"]


def test_staged_phases_move_the_data_through_the_bound_addresses(tmp_path):
    x = np.random.default_rng(2).standard_normal((3, 3, 4, 4), dtype=np.float32)
    with CpuEngineRunner(tmp_path / "model.plan") as runner:
        staged = runner.staged_io(x)
        assert staged.timer() is None and staged.stream is None  # host clock without CUDA
        staged.d2h()  # staging ran the engine once (the first call); its output is on the device side
        np.testing.assert_allclose(staged.output(), _expected(runner, x), rtol=1e-5, atol=1e-5)
        # a new input written to the host buffer reaches the engine only through h2d
        y = np.random.default_rng(3).standard_normal(x.shape, dtype=np.float32)
        staged.host_in.copy_(torch.from_numpy(y))
        staged.compute()
        staged.d2h()
        np.testing.assert_allclose(staged.output(), _expected(runner, x), rtol=1e-5, atol=1e-5)
        staged.end_to_end()
        np.testing.assert_allclose(staged.output(), _expected(runner, y), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(runner.infer(y), _expected(runner, y), rtol=1e-5, atol=1e-5)


def test_a_batch_outside_the_profile_is_refused_before_binding(tmp_path):
    with CpuEngineRunner(tmp_path / "model.plan") as runner:
        with pytest.raises(DeployKitError, match="outside the engine's profile 1..8") as info:
            runner.staged_io(np.zeros((9, 3, 4, 4), dtype=np.float32))
        assert "--max-batch 9" in info.value.hint and runner._context.bound == 0


def test_memory_fields_are_separate_and_total_only_when_all_measured(tmp_path):
    with CpuEngineRunner(tmp_path / "model.plan") as runner:
        runner.staged_io(np.zeros((1, 3, 4, 4), dtype=np.float32))
        memory = runner.device_memory()
        assert memory["engine_scratch_bytes"] == 4096 and memory["io_bytes"] is None  # no device here
        assert runner.device_memory_bytes() is None  # never the engine's figure in its place
        runner.memory.update(weights_bytes=40_000_000, activations_bytes=9_000_000, io_bytes=2_000_000)
        assert runner.device_memory_bytes() == 51_000_000


def test_bench_settings_reach_the_tensorrt_runner(tmp_path):
    settings = BenchConfig(model="resnet18", backend="tensorrt", device="cuda:1", cuda_graphs=True).runner_settings()
    runner = TensorRTRunner.from_settings(tmp_path / "model.plan", **settings)
    assert runner.cuda_graphs is True and runner.device == 1
    assert runner.describe()["cuda_graphs"] is True


def test_the_worker_records_phases_and_memory_fields_for_tensorrt(tmp_path):
    from deploykit.bench.worker import _measure_runner

    config = BenchConfig(model="resnet18", backend="tensorrt", device="cuda", batch=2, warmup=1, iterations=4)
    out: dict = {}
    with CpuEngineRunner(tmp_path / "model.plan") as runner:
        _measure_runner(runner, config, {"input_size": 4}, out)
    assert set(out["phases_ms"]) == {"h2d", "compute", "d2h", "end_to_end"}
    assert out["device_memory"]["engine_scratch_bytes"] == 4096 and out["device_memory_bytes"] is None
    assert out["latency"]["includes_host_copies"] is False and out["runner"]["profile"]["max"] == 8


def _result(backend: str, memory: dict | None, total: int | None) -> bench.BenchResult:
    latency = bench.latency_statistics([[0.002, 0.002], [0.002, 0.002]], batch=8, stable=True, tolerance=0.05,
                                       timed_seconds=0.01, warmup=1, includes_host_copies=False)
    return bench.BenchResult(
        config=BenchConfig(model="resnet50", backend=backend, precision="fp16", device="cuda", batch=8),
        status="ok", latency=latency, input_shape=(8, 3, 224, 224), device_memory_bytes=total, device_memory=memory,
        phases_ms={"h2d": 0.4, "compute": 2.0, "d2h": 0.01, "end_to_end": 2.5},
    )


def test_gpu_mb_is_one_measure_for_both_backends():
    torch_row = _result("torch", {"weights_bytes": 51_000_000, "activations_bytes": 30_000_000, "io_bytes": 5_000_000},
                        86_000_000)
    trt_row = _result("tensorrt", {"weights_bytes": 52_000_000, "activations_bytes": 12_000_000, "io_bytes": 4_000_000,
                                   "engine_scratch_bytes": 11_534_336}, 68_000_000)
    # an older result whose only figure is the engine's scratch (what "GPU MB" used to show)
    old_trt = _result("tensorrt", None, 11_534_336)
    run = BenchRun((torch_row, trt_row, old_trt), {"cpu": "x"}, "2026-12-01T00:00:00Z")
    header, rows, _ = bench.table_rows(run)
    gpu_mb, parts = header.index("GPU MB"), header.index("weights/act/IO MB")
    assert [row[gpu_mb] for row in rows] == ["86", "68", "-"]
    assert [row[parts] for row in rows] == ["51/30/5", "52/12/4", "-"]
    csv_rows = list(csv.DictReader(io.StringIO(bench.to_csv(run))))
    assert [r["device_memory_bytes"] for r in csv_rows] == ["86000000", "68000000", ""]
    assert [r["gpu_engine_scratch_bytes"] for r in csv_rows] == ["", "11534336", ""]
    assert BenchRun.from_dict(json.loads(run.to_json())) == run


def test_the_runner_imports_and_refuses_cleanly_without_torch(tmp_path):
    """The serve environment has no torch: importing the runner (and its timing code paths) must
    not import it, and activating says what is missing (tests/test_serve.py runs the same in
    .venv-serve where it exists; here torch is blocked)."""
    import subprocess
    import sys
    import textwrap

    plan = tmp_path / "model.plan"
    plan.write_bytes(b"not an engine")
    code = textwrap.dedent(
        """
        import sys, importlib.abc
        class Blocker(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "tensorrt", "tensorrt_bindings"):
                    raise ImportError("blocked for the test")
        sys.meta_path.insert(0, Blocker())
        from deploykit.errors import DeployKitError
        from deploykit.runtimes.tensorrt_runner import TensorRTRunner
        runner = TensorRTRunner(sys.argv[1], cuda_graphs=True)
        print(runner.describe()["cuda_graphs"], runner.device_memory_bytes(), runner.device_memory())
        try:
            runner.activate()
        except DeployKitError as exc:
            print("refused:", exc.message)
        assert "torch" not in sys.modules
        """
    )
    proc = subprocess.run([sys.executable, "-c", code, str(plan)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("True None None") and "refused:" in proc.stdout, proc.stdout
