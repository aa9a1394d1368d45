"""What a benchmark run produced: per-configuration results and the run, with JSON round trips.

Every output format (rich table, JSON, CSV, Markdown, the report's charts) renders one
:class:`BenchRun`.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.bench.config import BenchConfig
from deploykit.errors import UsageError

SCHEMA = 1
STATUSES = ("ok", "skipped", "failed")


@dataclass(frozen=True)
class LatencyResult:
    """Timing of one configuration: milliseconds per batch, from the last two windows."""

    batch: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    samples: int
    stable: bool
    tolerance: float
    window_medians_ms: tuple[float, ...]
    timed_seconds: float
    warmup: int
    includes_host_copies: bool = True

    @property
    def throughput_ips(self) -> float:
        """Images per second: batch / mean latency."""
        return self.batch * 1000.0 / self.mean_ms if self.mean_ms > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["window_medians_ms"] = list(self.window_medians_ms)
        data["throughput_ips"] = self.throughput_ips
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LatencyResult:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["window_medians_ms"] = tuple(kwargs.get("window_medians_ms", ()))
        return cls(**kwargs)


@dataclass(frozen=True)
class LayerTiming:
    """One row of a per-layer profile: time per batch in ms and the share of the total."""

    name: str
    op: str
    time_ms: float
    share: float
    macs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class BenchResult:
    """The outcome of one configuration: ``ok`` with measurements, or ``skipped`` / ``failed``
    with a one-line ``reason``."""

    config: BenchConfig
    status: str
    reason: str | None = None
    latency: LatencyResult | None = None
    input_shape: tuple[int, ...] | None = None
    peak_rss_bytes: int | None = None
    baseline_rss_bytes: int | None = None
    device_memory_bytes: int | None = None
    artifact: str | None = None
    artifact_bytes: int | None = None
    macs_per_image: int | None = None
    peak_gflops: float | None = None
    peak_source: str | None = None
    runner: dict[str, Any] = field(default_factory=dict)
    layers: tuple[LayerTiming, ...] = ()
    wall_seconds: float | None = None
    # CPU runs: SGEMM and copy ceilings measured in the worker at the run's thread count
    # (deploykit.ceilings.CpuCeilings.to_dict()), and the memory traffic model of one batch.
    ceilings: dict[str, Any] | None = None
    traffic_bytes_per_batch: int | None = None
    # GPU runs that stage their I/O: p50 ms of h2d, compute, d2h and end_to_end, and device
    # memory as separate fields (weights_bytes, activations_bytes, io_bytes; free-memory drops).
    phases_ms: dict[str, float] | None = None
    device_memory: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {self.status!r}")

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def throughput_ips(self) -> float | None:
        return self.latency.throughput_ips if self.latency else None

    @property
    def achieved_gflops(self) -> float | None:
        """2 FLOP per MAC x MACs per image x images per second / 1e9."""
        if self.latency is None or not self.macs_per_image:
            return None
        return 2.0 * self.macs_per_image * self.latency.throughput_ips / 1e9

    @property
    def peak_fraction(self) -> float | None:
        achieved = self.achieved_gflops
        if achieved is None or not self.peak_gflops:
            return None
        return achieved / self.peak_gflops

    @property
    def sgemm_fraction(self) -> float | None:
        """Achieved GFLOP/s over the SGEMM rate measured in the same process and thread count."""
        achieved = self.achieved_gflops
        sgemm = (self.ceilings or {}).get("sgemm_gflops")
        return achieved / sgemm if achieved is not None and sgemm else None

    @property
    def achieved_gbps(self) -> float | None:
        """The traffic model's bytes per batch x batches per second / 1e9 (a lower bound: FP32
        weights read once, every activation written and read once; caches can hide some)."""
        if self.latency is None or not self.traffic_bytes_per_batch:
            return None
        return self.traffic_bytes_per_batch * self.latency.throughput_ips / self.latency.batch / 1e9

    @property
    def copy_fraction(self) -> float | None:
        """:attr:`achieved_gbps` over the copy bandwidth measured in the same process and thread count."""
        achieved = self.achieved_gbps
        copy = (self.ceilings or {}).get("copy_gbps")
        return achieved / copy if achieved is not None and copy else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "config": self.config.to_dict(),
            "label": self.config.label,
            "status": self.status,
            "reason": self.reason,
            "latency": self.latency.to_dict() if self.latency else None,
            "input_shape": list(self.input_shape) if self.input_shape else None,
            "throughput_ips": self.throughput_ips,
            "peak_rss_bytes": self.peak_rss_bytes,
            "baseline_rss_bytes": self.baseline_rss_bytes,
            "device_memory_bytes": self.device_memory_bytes,
            "artifact": self.artifact,
            "artifact_bytes": self.artifact_bytes,
            "macs_per_image": self.macs_per_image,
            "achieved_gflops": self.achieved_gflops,
            "peak_gflops": self.peak_gflops,
            "peak_source": self.peak_source,
            "peak_fraction": self.peak_fraction,
            "runner": self.runner,
            "layers": [layer.to_dict() for layer in self.layers],
            "wall_seconds": self.wall_seconds,
            "ceilings": self.ceilings,
            "traffic_bytes_per_batch": self.traffic_bytes_per_batch,
            "phases_ms": self.phases_ms,
            "device_memory": self.device_memory,
            "sgemm_fraction": self.sgemm_fraction,
            "achieved_gbps": self.achieved_gbps,
            "copy_fraction": self.copy_fraction,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchResult:
        return cls(
            config=BenchConfig.from_dict(data["config"]),
            status=data["status"],
            reason=data.get("reason"),
            latency=LatencyResult.from_dict(data["latency"]) if data.get("latency") else None,
            input_shape=tuple(data["input_shape"]) if data.get("input_shape") else None,
            peak_rss_bytes=data.get("peak_rss_bytes"),
            baseline_rss_bytes=data.get("baseline_rss_bytes"),
            device_memory_bytes=data.get("device_memory_bytes"),
            artifact=data.get("artifact"),
            artifact_bytes=data.get("artifact_bytes"),
            macs_per_image=data.get("macs_per_image"),
            peak_gflops=data.get("peak_gflops"),
            peak_source=data.get("peak_source"),
            runner=data.get("runner") or {},
            layers=tuple(LayerTiming(**row) for row in data.get("layers") or ()),
            wall_seconds=data.get("wall_seconds"),
            ceilings=data.get("ceilings"),
            traffic_bytes_per_batch=data.get("traffic_bytes_per_batch"),
            phases_ms=data.get("phases_ms"),
            device_memory=data.get("device_memory"),
        )


@dataclass(frozen=True)
class BenchRun:
    """A whole matrix: the machine it ran on, when, and one result per configuration."""

    results: tuple[BenchResult, ...]
    machine: dict[str, Any]
    created_at: str
    isolate: bool = True
    notes: tuple[str, ...] = ()

    @property
    def failed(self) -> tuple[BenchResult, ...]:
        return tuple(r for r in self.results if r.status == "failed")

    @property
    def exit_code(self) -> int:
        """0 when nothing failed (skipped configurations do not count), else 1."""
        return 1 if self.failed else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "kind": "deploykit.bench",
            "created_at": self.created_at,
            "isolate": self.isolate,
            "notes": list(self.notes),
            "machine": self.machine,
            "results": [r.to_dict() for r in self.results],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, default=json_default) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchRun:
        if data.get("kind") != "deploykit.bench" or "results" not in data:
            raise UsageError("not a deploykit bench result (no 'kind': 'deploykit.bench')")
        return cls(
            results=tuple(BenchResult.from_dict(r) for r in data["results"]),
            machine=data.get("machine") or {},
            created_at=data.get("created_at", ""),
            isolate=bool(data.get("isolate", True)),
            notes=tuple(data.get("notes") or ()),
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> BenchRun:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise UsageError(f"no such file: {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UsageError(f"{path} is not valid JSON ({exc})") from None
        try:
            return cls.from_dict(data)
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f"{path} is not a deploykit bench result ({exc})") from None


def json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


def jsonable(obj: Any) -> Any:
    """``obj`` as plain JSON data (numpy scalars and paths converted)."""
    return json.loads(json.dumps(obj, default=json_default))
