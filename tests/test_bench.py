"""Bench: stability logic on synthetic timings, the matrix on a tiny model, renderers, CLI errors.

Timings are never asserted: only the shape and the bookkeeping of the results.
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from deploykit import bench, machine
from deploykit._deps import is_available
from deploykit.bench import BenchConfig, BenchRun
from deploykit.cli import cli
from deploykit.errors import DeployKitError, UsageError
from deploykit.runtimes import BACKENDS

ROOT = Path(__file__).resolve().parent.parent
needs_onnx_backends = pytest.mark.skipif(
    not (is_available("onnxruntime") and is_available("openvino")), reason="onnxruntime/openvino not installed"
)


# ======================================================================================
# stability logic on synthetic timings (a fake clock: every call advances it by a script)
# ======================================================================================


class ScriptedClock:
    """A clock that only moves when the timed function runs, by the scripted durations."""

    def __init__(self, durations):
        self.now = 0.0
        self.durations = iter(durations)
        self.calls = 0

    def __call__(self) -> float:
        return self.now

    def fn(self) -> None:
        self.calls += 1
        self.now += next(self.durations)


def test_windows_agree_within_tolerance():
    assert bench.windows_agree(10.0, 10.4, 0.05)
    assert not bench.windows_agree(10.0, 11.0, 0.05)
    assert bench.windows_agree(11.0, 10.0, 0.1)
    assert not bench.windows_agree(0.0, 1.0, 0.5)


def test_measuring_continues_until_two_windows_agree():
    # warm-up 1 call; windows of 2 calls: medians 20 ms, 10 ms (disagree), 10 ms (agree).
    clock = ScriptedClock([1.0, 0.010, 0.030, 0.010, 0.010, 0.0101, 0.0099])
    result = bench.time_callable(clock.fn, batch=4, warmup=1, iterations=4, tolerance=0.05, max_seconds=100, clock=clock)
    assert clock.calls == 7
    assert result.stable
    assert result.window_medians_ms == pytest.approx((20.0, 10.0, 10.0))
    assert result.samples == 4  # statistics from the last two windows only
    assert result.p50_ms == pytest.approx(10.0, rel=1e-6)
    assert result.min_ms == pytest.approx(9.9) and result.max_ms == pytest.approx(10.1)
    assert result.throughput_ips == pytest.approx(4 / (result.mean_ms / 1000))
    assert result.warmup == 1 and result.includes_host_copies


def test_time_cap_stops_unstable_measurements_and_says_so():
    # Window medians alternate 10 ms / 20 ms forever: never within 5 %.
    durations = [0.010, 0.010, 0.020, 0.020] * 1000
    clock = ScriptedClock(durations)
    result = bench.time_callable(clock.fn, warmup=0, iterations=4, tolerance=0.05, max_seconds=0.5, clock=clock)
    assert not result.stable
    assert result.timed_seconds >= 0.5
    assert clock.calls < 100  # stopped at the cap, not at the end of the script
    assert len(result.window_medians_ms) >= 3


def test_seconds_mode_uses_time_windows():
    clock = ScriptedClock([0.1] * 100)
    result = bench.time_callable(clock.fn, warmup=2, seconds=1.0, max_seconds=10, clock=clock)
    assert result.stable
    assert 8 <= result.samples <= 12  # two windows of about half a second each
    assert result.p99_ms == pytest.approx(100.0)


def test_statistics_are_percentiles_of_the_samples():
    samples = [[i / 1000 for i in range(1, 51)], [i / 1000 for i in range(51, 101)]]
    r = bench.latency_statistics(samples, batch=2, stable=True, tolerance=0.05, timed_seconds=5.05, warmup=0)
    assert r.p50_ms == pytest.approx(50.5)
    assert r.p90_ms == pytest.approx(np.percentile(np.arange(1, 101), 90))
    assert r.p99_ms == pytest.approx(np.percentile(np.arange(1, 101), 99))
    assert r.mean_ms == pytest.approx(50.5) and r.min_ms == 1.0 and r.max_ms == 100.0


def test_measure_rejects_nonsense():
    with pytest.raises(UsageError):
        bench.time_callable(lambda: None, iterations=0)
    with pytest.raises(UsageError):
        bench.time_callable(lambda: None, seconds=-1)


# ======================================================================================
# peaks, memory checks
# ======================================================================================


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM"),
        ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe"),
        ("NVIDIA H100 NVL", "NVIDIA H100 NVL"),
        ("NVIDIA H200", "NVIDIA H200 SXM"),
        ("NVIDIA H200 NVL", "NVIDIA H200 NVL"),
        ("NVIDIA A100-SXM4-80GB", "NVIDIA A100"),
        ("NVIDIA L4", "NVIDIA L4"),
        ("NVIDIA L40S", None),
        ("Orin", "NVIDIA Jetson AGX Orin 64GB (GPU only)"),
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_known_devices_match_by_name(name, expected):
    entry = machine.match_device(name)
    assert (entry["name"] if entry else None) == expected


def test_device_table_is_dense_and_cited():
    for entry in machine.load_devices():
        peaks = entry["peak_gflops"]
        assert entry["source"] and peaks["fp32"] > 0
        # Tensor-core rates: INT8 is twice FP16 on these parts (dense, no sparsity).
        assert peaks["int8"] == pytest.approx(2 * peaks["fp16"], rel=0.01), entry["name"]


def test_peak_sources_are_stated():
    gpu = {"gpus": [{"name": "NVIDIA H100 80GB HBM3"}]}
    value, source = machine.device_peak(gpu, "cuda", "fp16")
    assert value == pytest.approx(989_400) and "devices.json" in source and "H100 SXM" in source
    assert machine.device_peak(gpu, "cuda", "fp16", override=1234.0) == (1234.0, "--peak-gflops")
    cpu = {"cpu_flags": ["avx2", "fma"], "cpu_mhz": 2500.0, "physical_cores": 2, "logical_cpus": 2}
    value, source = machine.device_peak(cpu, "cpu", "fp32")
    assert value == pytest.approx(2 * 2.5 * 32) and source.startswith("estimate")
    value, source = machine.device_peak(cpu, "cpu", "fp32", threads=1)
    assert value == pytest.approx(2.5 * 32) and "1 core x" in source
    value, source = machine.device_peak(cpu, "cpu", "int8")
    assert value is None and "--peak-gflops" in source


def test_memory_check_refuses_absurd_batches_before_allocating():
    cost = {"macs": 1, "params": 11_000_000, "peak_activation_bytes": 3_211_264}
    huge = BenchConfig(model="resnet18", batch=1_000_000)
    reason = bench.check_memory(huge, 224, cost)
    assert reason and "needs about" in reason and "available host memory" in reason
    assert bench.check_memory(BenchConfig(model="resnet18", batch=1), 224, cost) is None


def test_support_table_skips_what_does_not_apply():
    assert "not int8" in BACKENDS["torch"].support_reason("cpu", "int8")
    assert "does not run on cpu" in BACKENDS["tensorrt"].support_reason("cpu", "fp16")
    assert BACKENDS["openvino"].support_reason("cpu", "int8") is None
    assert BACKENDS["torch"].support_reason("cuda", "fp16") is None


# ======================================================================================
# the matrix on a tiny model
# ======================================================================================


def _export_variant(repo: Path, name: str, precision: str = "fp32", size: int = 32, classes: int = 10):
    """resnet18-like zoo model written into a repository the way export does (legacy exporter: fast)."""
    import torch

    from deploykit.repository import ModelRepository
    from deploykit.zoo import get_model

    torch.manual_seed(0)
    model = get_model(name, num_classes=classes).eval()

    def write(path: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (torch.zeros(1, 3, size, size),), str(path), dynamo=False, opset_version=17,
                input_names=["input"], output_names=["logits"],
                dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
            )

    return ModelRepository(repo).write_variant(
        name, "onnx", precision, write_model=write, config_pbtxt="",
        sidecar={"input": {"name": "input", "shape": [-1, 3, size, size]}, "num_classes": classes},
    )


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    _export_variant(repo, "resnet18")
    # A variant whose model file is garbage: the runner must say so, the others still run.
    from deploykit.repository import ModelRepository

    ModelRepository(repo).write_variant(
        "mobilenet_v2", "onnx", "fp32", write_model=lambda p: p.write_bytes(b"\x08garbage" * 64),
        config_pbtxt="", sidecar={"input": {"name": "input", "shape": [-1, 3, 32, 32]}},
    )
    return repo


def _config(repo, **kw) -> BenchConfig:
    base = dict(model="resnet18", input_size=32, num_classes=10, warmup=1, iterations=4, max_seconds=2,
                repo=str(repo), build=False)
    base.update(kw)
    return BenchConfig(**base)


@needs_onnx_backends
@pytest.mark.slow
def test_matrix_on_a_tiny_model(tiny_repo):
    configs = [
        _config(tiny_repo, backend="torch", batch=1),
        _config(tiny_repo, backend="torch", batch=2),
        _config(tiny_repo, backend="torch", precision="int8"),
        _config(tiny_repo, backend="onnxruntime", batch=2, threads=1),
        _config(tiny_repo, backend="openvino", batch=2, threads=1),
        _config(tiny_repo, backend="onnxruntime", precision="int8"),
        _config(tiny_repo, backend="tensorrt", precision="fp16"),
        _config(tiny_repo, backend="onnxruntime", model="mobilenet_v2"),
        _config(tiny_repo, backend="onnxruntime", batch=5_000_000),
    ]
    seen = []
    run = bench.run_matrix(configs, isolate=False, progress=False, on_result=seen.append)
    assert len(run.results) == len(configs) == len(seen)
    by = [(r.config.backend, r.config.precision, r.config.batch, r.config.model) for r in run.results]
    assert by == [(c.backend, c.precision, c.batch, c.model) for c in configs]
    status = [r.status for r in run.results]
    assert status == ["ok", "ok", "skipped", "ok", "ok", "failed", "skipped", "failed", "failed"]
    ok = [r for r in run.results if r.ok]
    for r in ok:
        lat = r.latency
        assert 0 < lat.min_ms <= lat.p50_ms <= lat.p90_ms <= lat.p99_ms <= lat.max_ms
        assert lat.samples >= 1 and r.throughput_ips > 0
        assert r.input_shape == (r.config.batch, 3, 32, 32)
        assert r.peak_rss_bytes > 0
        assert r.peak_source  # estimate or unknown, never silent
        if r.macs_per_image:  # analyze is there: achieved GFLOP/s follows from MACs and time
            assert r.achieved_gflops == pytest.approx(2 * r.macs_per_image * r.throughput_ips / 1e9)
    assert ok[0].latency.includes_host_copies is False  # torch: device-resident input
    assert run.results[3].artifact == "resnet18_onnx_fp32" and run.results[3].artifact_bytes > 1_000_000
    assert run.results[3].runner["threads"] == 1
    assert "not int8" in run.results[2].reason
    assert "deploykit quantize resnet18 --precision int8" in run.results[5].reason
    assert "corrupt" in run.results[7].reason
    assert "needs about" in run.results[8].reason
    assert run.exit_code == 1 and len(run.failed) == 3
    assert run.machine["logical_cpus"] >= 1


@needs_onnx_backends
@pytest.mark.slow
def test_isolated_worker_runs_a_configuration_in_a_fresh_process(tiny_repo):
    configs = [_config(tiny_repo, backend="onnxruntime", batch=2, threads=1)]
    run = bench.run_matrix(configs, isolate=True, progress=False)
    (result,) = run.results
    assert result.ok, result.reason
    assert run.isolate
    # The worker ran ONNX Runtime only: its RSS is far below a process that imported torch.
    assert result.baseline_rss_bytes < result.peak_rss_bytes


@needs_onnx_backends
@pytest.mark.slow
def test_missing_artifacts_are_made_on_the_fly(tiny_repo, tmp_path):
    """INT8 asked for where only FP32 exists: quantized through deploykit.precision, then measured."""
    pytest.importorskip("modelopt")
    import shutil

    repo = tmp_path / "models"
    shutil.copytree(tiny_repo / "resnet18_onnx_fp32", repo / "resnet18_onnx_fp32")
    config = _config(repo, backend="onnxruntime", precision="int8", batch=2, build=True, threads=1)
    run = bench.run_matrix([config], isolate=False, progress=False)
    (result,) = run.results
    assert result.ok, result.reason
    assert result.artifact == "resnet18_onnx_int8"
    from deploykit.repository import ModelRepository

    int8 = ModelRepository(repo).find("resnet18", "onnx", "int8")
    assert int8 is not None and int8.parent == "resnet18_onnx_fp32"
    assert result.input_shape == (2, 3, 32, 32)


def test_on_the_fly_export_matches_the_export_api():
    """bench calls export_model / make_variant with these keywords (a full export takes a minute:
    the export tests cover it, benchmarks/cpu_bench.py runs it)."""
    import inspect

    from deploykit.export import export_model
    from deploykit.precision import make_variant

    assert {"repo", "input_size", "num_classes"} <= set(inspect.signature(export_model).parameters)
    assert list(inspect.signature(make_variant).parameters)[:3] == ["repo", "model", "precision"]


def test_worker_timeout_becomes_a_failure(tiny_repo):
    job = {"config": _config(tiny_repo, backend="onnxruntime", timeout_s=0.01).to_dict(), "artifact_path": "x"}
    raw = bench.run_isolated(job)
    assert raw["status"] == "failed" and "timed out" in raw["reason"]


# ======================================================================================
# renderers
# ======================================================================================


def _sample_run() -> BenchRun:
    lat = bench.latency_statistics([[0.01, 0.011], [0.0105, 0.0102]], batch=8, stable=True, tolerance=0.05,
                                   timed_seconds=0.05, warmup=2)
    ok = bench.BenchResult(
        config=BenchConfig(model="resnet18", backend="onnxruntime", batch=8), status="ok", latency=lat,
        input_shape=(8, 3, 224, 224), peak_rss_bytes=300_000_000, artifact="resnet18_onnx_fp32",
        artifact_bytes=46_000_000, macs_per_image=1_814_000_000, peak_gflops=150.0, peak_source="estimate: x",
        runner={"backend": "onnxruntime", "threads": 2},
        layers=(bench.LayerTiming("conv1", "Conv", 1.5, 0.2, 118_013_952),),
    )
    skipped = bench.BenchResult(config=BenchConfig(model="resnet18", backend="torch", precision="int8"),
                                status="skipped", reason="torch on cpu runs fp32, not int8")
    failed = bench.BenchResult(config=BenchConfig(model="vgg16", backend="openvino", batch=4),
                               status="failed", reason="vgg16_onnx_fp32 is not in the repository, comma, | pipe")
    from deploykit.machine import describe_machine

    return BenchRun((ok, skipped, failed), describe_machine().to_dict(), "2026-01-01T00:00:00+00:00")


def test_json_round_trip_keeps_everything():
    run = _sample_run()
    data = json.loads(run.to_json())
    assert data["kind"] == "deploykit.bench" and data["machine"]["cpu_model"]
    first = data["results"][0]
    assert first["throughput_ips"] == pytest.approx(8000 / first["latency"]["mean_ms"])
    assert first["achieved_gflops"] == pytest.approx(2 * 1.814 * first["throughput_ips"])
    assert first["peak_fraction"] == pytest.approx(first["achieved_gflops"] / 150.0)
    assert BenchRun.from_dict(data) == run


def test_csv_has_one_row_per_configuration():
    run = _sample_run()
    rows = list(csv.DictReader(io.StringIO(bench.to_csv(run))))
    assert [r["status"] for r in rows] == ["ok", "skipped", "failed"]
    assert list(rows[0]) == list(bench.CSV_COLUMNS)
    assert float(rows[0]["p50_ms"]) == pytest.approx(run.results[0].latency.p50_ms)
    assert rows[1]["p50_ms"] == "" and "not int8" in rows[1]["reason"]
    assert rows[2]["reason"].endswith("| pipe")  # the csv module quotes, nothing is lost


def test_markdown_and_table_put_reasons_in_footnotes():
    run = _sample_run()
    md = bench.to_markdown(run)
    assert "| resnet18 | onnxruntime/fp32 | 8 | ok |" in md
    assert "skipped [1]" in md and "failed [2]" in md
    assert "[2] vgg16_onnx_fp32 is not in the repository" in md
    assert "GPU MB" not in md  # empty everywhere on a CPU run: column left out
    from rich.console import Console

    console = Console(record=True, width=200)
    bench.render_table(run, console)
    text = console.export_text()
    assert "per layer" in text and "conv1" in text


# ======================================================================================
# CLI
# ======================================================================================


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["resnet18", "--backend", "tensorflow"], "choose from torch, onnxruntime, openvino, tensorrt"),
        (["resnet18", "--precision", "int4"], "choose from fp32, fp16, int8"),
        (["resnet18", "--batch", "0"], "out of range"),
        (["resnet18", "--batch", "two"], "not an integer"),
        (["resnet18", "--iterations", "5", "--seconds", "1"], "exclude each other"),
        (["resnet99"], "unknown model"),
        (["resnet18", "--cuda-graphs"], "needs --device cuda"),
    ],
)
def test_cli_bad_input_is_a_clear_usage_error(args, message):
    result = CliRunner().invoke(cli, ["bench", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_cli_cuda_without_gpu_is_a_clear_error():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this host has a GPU")
    result = CliRunner().invoke(cli, ["bench", "resnet18", "--device", "cuda"])
    assert result.exit_code == 2
    assert "no CUDA GPU" in result.output


@needs_onnx_backends
@pytest.mark.slow
def test_cli_runs_the_matrix_and_exit_code_says_one_failed(tiny_repo, tmp_path):
    out = tmp_path / "bench.json"
    args = ["bench", "resnet18", "mobilenet_v2", "--backend", "torch,onnxruntime", "--precision", "fp32,int8",
            "--batch", "2", "--input-size", "32", "--num-classes", "10", "--warmup", "1", "--iterations", "2",
            "--max-seconds", "1", "--repo", str(tiny_repo), "--no-build", "--no-isolate", "--format", "csv",
            "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert len(rows) == 8
    status = {(r["model"], r["backend"], r["precision"]): r["status"] for r in rows}
    assert status[("resnet18", "torch", "fp32")] == "ok"
    assert status[("resnet18", "onnxruntime", "fp32")] == "ok"
    assert status[("resnet18", "torch", "int8")] == "skipped"
    assert status[("mobilenet_v2", "onnxruntime", "fp32")] == "failed"  # corrupt file
    assert "configuration(s) failed" in result.stderr
    saved = BenchRun.load(out)
    assert len(saved.results) == 8 and saved.machine["libraries"]["numpy"]


@needs_onnx_backends
@pytest.mark.slow
def test_cli_success_exits_zero_with_json(tiny_repo):
    args = ["bench", "resnet18", "--backend", "onnxruntime,torch", "--precision", "fp32", "--batch", "1",
            "--input-size", "32", "--num-classes", "10", "--warmup", "1", "--iterations", "2", "--max-seconds", "1",
            "--repo", str(tiny_repo), "--no-build", "--format", "json", "--per-layer", "--threads", "1"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [r["status"] for r in data["results"]] == ["ok", "ok"]
    assert data["isolate"] is True
    for r in data["results"]:
        assert r["layers"], r["runner"]  # --per-layer profiled both backends
        assert sum(layer["share"] for layer in r["layers"]) <= 1.0 + 1e-9


@needs_onnx_backends
@pytest.mark.slow
def test_a_replaced_model_file_is_refused_before_timing_unless_trusted(tiny_repo, tmp_path, replace_with_other_network):
    import shutil

    repo = tmp_path / "models"
    shutil.copytree(tiny_repo / "resnet18_onnx_fp32", repo / "resnet18_onnx_fp32")
    replace_with_other_network(repo / "resnet18_onnx_fp32" / "1" / "model.onnx")
    args = ["bench", "resnet18", "--backend", "onnxruntime", "--batch", "1", "--input-size", "32", "--num-classes", "10",
            "--warmup", "1", "--iterations", "2", "--max-seconds", "1", "--repo", str(repo), "--no-build", "--no-isolate",
            "--format", "json", "--no-ceilings"]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 2, refused.output
    assert "is not the file resnet18_onnx_fp32's sidecar describes" in refused.stderr
    assert "or pass --trust" in refused.stderr and "Traceback" not in refused.output
    assert json.loads(refused.stdout)["exit_code"] == 2  # the error object, no results: nothing was measured
    with pytest.raises(UsageError, match="--trust"):
        bench.run_matrix([_config(repo, iterations=2)], isolate=False, progress=False)

    trusted = CliRunner().invoke(cli, [*args, "--trust"])
    assert trusted.exit_code == 0, trusted.output
    assert [r["status"] for r in json.loads(trusted.stdout)["results"]] == ["ok"]


# ======================================================================================
# the GPU check's python part, on CPU, with only torch + numpy importable
# ======================================================================================

_BLOCK = textwrap.dedent(
    """
    import runpy, sys, importlib.abc
    BLOCKED = {"onnx", "onnxruntime", "onnxscript", "openvino", "tensorrt", "rich", "click", "matplotlib",
               "modelopt", "tritonclient", "sklearn", "skimage"}
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked for the test: {name}")
    sys.meta_path.insert(0, Blocker())
    sys.argv = sys.argv[1:]
    runpy.run_path(sys.argv[0], run_name="__main__")
    """
)


@pytest.mark.slow
def test_gpu_check_python_part_runs_with_torch_only(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-c", _BLOCK, str(ROOT / "benchmarks" / "gpu_check.py"), str(tmp_path), "--device", "cpu",
            "--models", "resnet50", "--batches", "1,2", "--input-size", "32", "--warmup", "1",
            "--seconds", "0.05", "--max-seconds", "0.5", "--budget-seconds", "120"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = BenchRun.load(tmp_path / "gpu_check.json")
    labels = [(r.config.label, r.config.batch, r.status) for r in run.results]
    assert labels == [
        ("torch/fp32", 1, "ok"), ("torch/fp32", 2, "ok"),
        ("torch/fp16", 1, "skipped"), ("torch/fp16", 2, "skipped"),
        ("torch/fp16+cl+graphs", 1, "skipped"), ("torch/fp16+cl+graphs", 2, "skipped"),
    ]
    assert all(r.latency.includes_host_copies is False for r in run.results if r.ok)
    md = (tmp_path / "gpu_check.md").read_text()
    assert "88,714" in md and "Ratio:" in md
    assert "| resnet50 | torch/fp32 | 1 | ok |" in md


def test_gpu_check_shell_script_is_bounded():
    text = (ROOT / "benchmarks" / "gpu_check.sh").read_text()
    assert "timeout" in text and "PYTHONPATH" in text and "gpu_check.py" in text
    assert os.access(ROOT / "benchmarks" / "gpu_check.sh", os.X_OK)


# ======================================================================================
# measured CPU ceilings beside the clock estimate
# ======================================================================================


def test_fractions_of_the_measured_ceilings():
    run = _sample_run()
    ceilings = {"sgemm_gflops": 100.0, "copy_gbps": 10.0, "threads": 2, "sgemm_library": "numpy"}
    ok = _with(run.results[0], ceilings=ceilings, traffic_bytes_per_batch=400_000_000)
    assert ok.sgemm_fraction == pytest.approx(ok.achieved_gflops / 100.0)
    assert ok.achieved_gbps == pytest.approx(0.4 * ok.throughput_ips / 8)
    assert ok.copy_fraction == pytest.approx(ok.achieved_gbps / 10.0)
    assert run.results[1].sgemm_fraction is None and run.results[1].copy_fraction is None
    run = BenchRun((ok, *run.results[1:]), run.machine, run.created_at)
    assert BenchRun.from_dict(json.loads(run.to_json())) == run
    md = bench.to_markdown(run)
    assert "% SGEMM" in md and "% copy" in md and "% peak" in md
    assert "Measured ceilings, 2 threads: SGEMM 100 GFLOP/s (best: numpy), copy 10.0 GB/s" in md
    row = next(csv.DictReader(io.StringIO(bench.to_csv(run))))
    assert float(row["sgemm_fraction"]) == pytest.approx(ok.sgemm_fraction)


def _with(result, **changes):
    import dataclasses

    return dataclasses.replace(result, **changes)


def test_cpu_threads_default_to_all_physical_cores():
    machine_info = {"physical_cores": 4, "logical_cpus": 8}
    assert bench.with_default_threads(BenchConfig(model="resnet18"), machine_info).threads == 4
    assert bench.with_default_threads(BenchConfig(model="resnet18", threads=1), machine_info).threads == 1
    assert bench.with_default_threads(BenchConfig(model="resnet18", device="cuda"), machine_info).threads is None


@needs_onnx_backends
@pytest.mark.slow
def test_worker_measures_ceilings_at_the_run_thread_count(tiny_repo):
    config = _config(tiny_repo, backend="onnxruntime", batch=2, threads=1)
    (result,) = bench.run_matrix([config], isolate=False, progress=False).results
    assert result.ok, result.reason
    assert result.ceilings["threads"] == 1
    assert result.ceilings["sgemm_gflops"] > 0 and result.ceilings["copy_gbps"] > 0
    assert result.sgemm_fraction == pytest.approx(result.achieved_gflops / result.ceilings["sgemm_gflops"])
    assert result.peak_fraction is not None  # the clock estimate stays beside it
    no_ceilings = bench.run_matrix([_config(tiny_repo, backend="onnxruntime", threads=1, ceilings=False)],
                                   isolate=False, progress=False).results[0]
    assert no_ceilings.ok and no_ceilings.ceilings is None


def test_markdown_puts_the_roofline_efficiency_beside_measured_rows():
    from deploykit.estimate.check import bench_efficiency

    run = _sample_run()
    efficiency = bench_efficiency(run.results[0], run.machine)
    assert efficiency is not None and efficiency > 0
    md = bench.to_markdown(run)
    assert "% roofline" in md and f"| {efficiency * 100:.0f} |" in md
    assert bench_efficiency(run.results[1], run.machine) is None  # skipped: nothing measured


# ======================================================================================
# GPU timing path (staged I/O, phases apart), run on the CPU
# ======================================================================================


def test_a_timer_replaces_the_clock_for_durations():
    clock = ScriptedClock([0.010] * 100)
    result = bench.time_callable(clock.fn, warmup=0, iterations=4, clock=clock, timer=lambda fn: (fn(), 0.002)[1])
    assert result.p50_ms == pytest.approx(2.0) and result.stable


def test_phases_are_timed_apart_on_staged_io():
    import torch

    from deploykit.runtimes import get_runner

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(3))
    net(torch.zeros(1, 3, 8, 8))
    x = np.zeros((2, 3, 8, 8), dtype=np.float32)
    timing = {"warmup": 1, "iterations": 4, "max_seconds": 1}
    with get_runner("torch", net, input_size=8) as runner:
        latency, phases = bench.measure_phases(runner, x, staged=True, **timing)
        assert set(phases) == {"h2d", "compute", "d2h", "end_to_end"} and latency.p50_ms == phases["compute"]
        assert latency.includes_host_copies is False and latency.batch == 2
        e2e, phases = bench.measure_phases(runner, x, staged=True, end_to_end=True, **timing)
        assert e2e.includes_host_copies is True and e2e.p50_ms == phases["end_to_end"]
        plain, none = bench.measure_phases(runner, x, **timing)  # CPU: bench's usual timing
        assert none is None and plain.includes_host_copies is False


def test_gpu_fields_render_and_round_trip():
    run = _sample_run()
    config = BenchConfig(model="resnet50", backend="torch", device="cuda", tf32=True, channels_last=True,
                         cuda_graphs=True, batch=8)
    assert config.label == "torch/fp32+tf32+cl+graphs"
    gpu = _with(run.results[0], config=config, phases_ms={"h2d": 0.5, "compute": 2.0, "d2h": 0.01, "end_to_end": 2.6},
                device_memory={"weights_bytes": 102_000_000, "activations_bytes": 50_000_000, "io_bytes": 5_000_000},
                device_memory_bytes=157_000_000)
    run = BenchRun((gpu,), run.machine, run.created_at)
    assert BenchRun.from_dict(json.loads(run.to_json())) == run
    md = bench.to_markdown(run)
    assert "| 102/50/5 |" in md and "| 0.500/0.010 |" in md
    row = next(csv.DictReader(io.StringIO(bench.to_csv(run))))
    assert row["gpu_weights_bytes"] == "102000000" and float(row["end_to_end_ms"]) == 2.6


def test_an_engine_too_small_for_the_batch_is_not_reused(tmp_path):
    """A TensorRT engine built for batches up to 32 cannot run --batch 64: bench says so (with
    --no-build) instead of failing inside the runner; with build on it rebuilds for the run."""
    from deploykit.bench.prepare import ensure_artifact, stage_options
    from deploykit.repository import ModelRepository

    ModelRepository(tmp_path).write_variant(
        "resnet18", "trt", "fp16", write_model=lambda p: p.write_bytes(b"plan"), config_pbtxt="",
        sidecar={"profile": {"batch": {"min": 1, "opt": 8, "max": 32}}},
    )
    config = BenchConfig(model="resnet18", backend="tensorrt", precision="fp16", device="cuda:1", batch=64,
                         repo=str(tmp_path), build=False)
    with pytest.raises(DeployKitError, match="accepts batches up to 32, not 64") as info:
        ensure_artifact(config, None)
    assert "--max-batch 64" in info.value.hint
    small = BenchConfig(model="resnet18", backend="tensorrt", precision="fp16", device="cuda:1", batch=16,
                        repo=str(tmp_path), build=False)
    assert ensure_artifact(small, None).variant == "resnet18_trt_fp16"
    options = stage_options(config, 160)
    assert options[("trt", "fp16")] == {"opt_batch": 8, "max_batch": 64, "device": 1}
    assert options[("onnx", "fp32")] == {"input_size": 160, "num_classes": 1000}
