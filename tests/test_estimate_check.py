"""The roofline against reality: measurements on this CPU, GPU name mapping, the check type."""

from __future__ import annotations

import time

import pytest

from deploykit.estimate.check import BoundCheck, check_throughput, device_for_gpu
from deploykit.estimate.devices import get_device


@pytest.mark.parametrize(
    ("name", "memory", "device"),
    [
        ("NVIDIA H100 80GB HBM3", None, "h100"),
        ("NVIDIA H100 PCIe", None, "h100"),  # bounded by the faster SXM row: looser, never wrong
        ("NVIDIA H200", None, "h200"),
        ("NVIDIA A100-SXM4-40GB", None, "a100"),
        ("NVIDIA L4", None, "l4"),
        ("Tesla T4", None, "t4"),
        ("Orin", 64e9, "agx-orin"),
        ("Orin", 8e9, "orin-nano"),
        ("NVIDIA GeForce RTX 4090", None, None),
        (None, None, None),
    ],
)
def test_gpu_names_map_to_table_rows(name, memory, device):
    assert device_for_gpu(name, memory) == device


def test_check_semantics():
    check = BoundCheck("x", "m", "d", "fp32", 1, measured_ips=50, bound_ips=40, floor_ips=80, source="s")
    assert check.efficiency == pytest.approx(1.25)
    assert check.holds and not check.within_roofline
    assert check.to_dict()["holds"] is True


def test_published_mlperf_figures_stay_under_the_floor():
    # MLPerf Inference v3.1 closed, ResNet-50 Offline, INT8 TensorRT (sources in
    # benchmarks/roofline_check.py): the floor holds, the per-layer roofline holds on H100.
    h100 = check_throughput("mlperf", "resnet50", get_device("h100", "int8"), 1024, 88526.0, "mlperf")
    l4 = check_throughput("mlperf", "resnet50", get_device("l4", "int8"), 1024, 12881.7, "mlperf")
    orin = check_throughput("mlperf", "resnet50", get_device("agx-orin", "int8"), 1024, 6423.63, "mlperf")
    assert h100.holds and l4.holds and orin.holds
    assert h100.within_roofline and orin.within_roofline
    assert 0.3 < h100.efficiency < 1


def _best_ips(model, x, seconds=1.5):
    import torch

    best, deadline = float("inf"), time.perf_counter() + seconds
    with torch.inference_mode():
        model(x)
        while time.perf_counter() < deadline or best == float("inf"):
            start = time.perf_counter()
            model(x)
            best = min(best, time.perf_counter() - start)
    return x.shape[0] / best


@pytest.mark.slow
def test_torch_on_this_cpu_stays_under_the_floor_measured_beside_it():
    """Ceilings and the model measured in one process at one thread: the floor must hold.
    The ceilings are measured before and after the model and the higher kept, so a quiet
    moment during the model run does not meet a busy moment during the ceilings."""
    import torch

    from deploykit.ceilings import measure_cpu_ceilings
    from deploykit.estimate.devices import cpu_from_ceilings
    from deploykit.zoo import get_model

    before = measure_cpu_ceilings(1)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        ips = _best_ips(get_model("resnet18").eval(), torch.randn(1, 3, 224, 224))
    finally:
        torch.set_num_threads(previous)
    after = measure_cpu_ceilings(1)
    best = max(before, after, key=lambda c: c.sgemm_gflops)
    spec = cpu_from_ceilings("fp32", best.sgemm_gflops, max(before.copy_gbps, after.copy_gbps), 1)
    check = check_throughput("torch", "resnet18", spec, 1, ips, "measured now")
    assert check.holds, check.to_dict()
    assert check.efficiency > 0


def test_bench_efficiency_on_a_gpu_row_uses_the_table():
    from deploykit import bench
    from deploykit.bench.config import BenchConfig
    from deploykit.estimate.check import bench_efficiency, ceiling_ips

    lat = bench.latency_statistics([[0.001, 0.001]], batch=8, stable=True, tolerance=0.05,
                                   timed_seconds=0.01, warmup=1)
    config = BenchConfig(model="resnet50", backend="tensorrt", precision="int8", batch=8, device="cuda:0")
    result = bench.BenchResult(config=config, status="ok", latency=lat)
    machine = {"gpus": [{"name": "NVIDIA H100 80GB HBM3"}]}
    roofline, _ = ceiling_ips("resnet50", get_device("h100", "int8"), 8)
    assert bench_efficiency(result, machine) == pytest.approx(result.throughput_ips / roofline)
    assert bench_efficiency(result, {"gpus": [{"name": "NVIDIA GeForce RTX 4090"}]}) is None


def test_no_cpu_efficiency_for_a_run_on_other_hardware():
    from deploykit import bench
    from deploykit.bench.config import BenchConfig
    from deploykit.estimate.check import bench_efficiency, is_this_cpu
    from deploykit.machine import describe_machine

    lat = bench.latency_statistics([[0.05, 0.05]], batch=1, stable=True, tolerance=0.05,
                                   timed_seconds=0.1, warmup=1)
    result = bench.BenchResult(config=BenchConfig(model="resnet18", batch=1, threads=1), status="ok",
                               latency=lat)
    here = describe_machine().to_dict()
    other = {**here, "cpu_flags": ["sse2"]}
    assert is_this_cpu(here) and not is_this_cpu(other)
    assert bench_efficiency(result, other) is None
    assert bench_efficiency(result, here) > 0
