"""deploykit.ceilings: this CPU's SGEMM and copy ceilings, measured in-process."""

from __future__ import annotations

import math

import pytest

from deploykit.ceilings import CpuCeilings, default_threads, measure_cpu_ceilings

SMALL = {"sgemm_n": 256, "copy_elements": 1 << 20, "repeats": 2}


def _finite_positive(value: float) -> bool:
    return math.isfinite(value) and value > 0


@pytest.mark.parametrize("threads", [1, None])
def test_ceilings_are_positive_and_finite(threads):
    ceilings = measure_cpu_ceilings(threads, **SMALL)
    assert _finite_positive(ceilings.sgemm_gflops)
    assert _finite_positive(ceilings.copy_gbps)
    assert ceilings.seconds > 0
    assert ceilings.sizes == {"sgemm_n": 256, "copy_bytes": 4 << 20}
    assert ceilings.sgemm_gflops == max(ceilings.sgemm_by_library.values())
    assert "torch" in ceilings.sgemm_by_library


def test_thread_count_is_honoured_and_restored():
    import torch

    before = torch.get_num_threads()
    assert measure_cpu_ceilings(1, **SMALL).threads == 1
    assert measure_cpu_ceilings(None, **SMALL).threads == default_threads()
    assert torch.get_num_threads() == before


def test_numpy_blas_pool_is_restored():
    threadpoolctl = pytest.importorskip("threadpoolctl")
    before = [p["num_threads"] for p in threadpoolctl.threadpool_info()]
    ceilings = measure_cpu_ceilings(1, **SMALL)
    assert "numpy" in ceilings.sgemm_by_library
    assert [p["num_threads"] for p in threadpoolctl.threadpool_info()] == before


def test_bad_thread_count_is_refused():
    with pytest.raises(ValueError):
        measure_cpu_ceilings(-1, **SMALL)


def test_round_trip_through_dict():
    ceilings = measure_cpu_ceilings(1, **SMALL)
    data = ceilings.to_dict()
    assert data["sgemm_library"] in ceilings.sgemm_by_library
    assert CpuCeilings.from_dict(data) == ceilings


@pytest.mark.parametrize("kind", ["int8", "bf16"])
def test_low_precision_gemm_is_positive_or_absent(kind):
    import torch

    from deploykit.ceilings import measure_cpu_gemm

    before = torch.get_num_threads()
    rate = measure_cpu_gemm(kind, 1, n=256, repeats=2)
    assert rate is None or _finite_positive(rate)
    assert torch.get_num_threads() == before
    with pytest.raises(ValueError):
        measure_cpu_gemm("fp8", 1, n=64, repeats=1)
