"""The roofline of one model on one device: per-layer work, bytes, bound and time.

Per layer (a row of :func:`deploykit.analyze.analyze_model`, batch ``B``, element width ``w``
bytes of the precision):

- **conv / linear**: ``2 x MACs x B`` FLOP. Bytes: weights once per batch
  (``filters x MACs / output elements`` weights, exact for grouped and depthwise convolutions;
  the folded BatchNorm is merged into them at deployment, so its parameters are not counted)
  plus input and output activations for every image. A depthwise convolution (one input
  channel per group) has no reduction for tensor cores to work on: it runs at the vector rate.
- **pool**: one operation per window element (a compare or an add, not a multiply-accumulate),
  at the vector rate; bytes are its input and output.
- **concat**: free (runtimes write each branch into the concatenated buffer); a concat with
  a channel shuffle folded in (ShuffleNet) is a copy: its output read and written once.
- **flatten** and element-wise ops folded into a row (ReLU, BatchNorm, residual add): free,
  fused into the layer they follow.

The layer time is ``max(FLOP / roof, bytes / bandwidth)`` and the model time their sum: each
layer's activations go through DRAM, caches are not modelled, nor launch overheads. A layer is
memory-bound when its arithmetic intensity (FLOP / byte) is below the device's ridge point.

Because activations are assumed to go through DRAM between layers, a runtime that fuses
layers or keeps activations in a large cache can beat this per-layer roofline where the model
is memory-bound (measured: MLPerf ResNet-50 on an L4, 48 MB of L2). ``floor_seconds`` is the
hard floor under it: the compute time alone, or the traffic no schedule avoids (weights once,
the network's input and output), whichever is larger.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from deploykit.estimate.devices import BYTES_PER_ELEMENT, DeviceSpec

if TYPE_CHECKING:
    from deploykit.analyze import LayerStats, ModelStats

ENGINES = ("tensor", "vector", "copy", "free")


@dataclass(frozen=True)
class LayerBound:
    """One layer's roofline on one device, precision and batch."""

    name: str
    kind: str  # analyze's kind: conv, pool, linear, flatten, other
    engine: str  # tensor (GEMM-like), vector (depthwise, pooling), copy, free
    macs: int  # multiply-accumulates for the whole batch (pool: window operations)
    flops: float  # operations for the whole batch (2 per MAC; 1 per pooling element)
    bytes: float  # bytes moved: weights + input + output activations
    weight_bytes: float
    intensity: float  # FLOP per byte (0 for free rows)
    bound: str  # compute, memory, or none
    seconds: float

    @property
    def attainable_gflops(self) -> float:
        return self.flops / self.seconds / 1e9 if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "attainable_gflops": self.attainable_gflops}


@dataclass(frozen=True)
class ModelEstimate:
    """A model's roofline on one device at one precision and batch."""

    model: str
    device: DeviceSpec
    precision: str
    batch: int
    input_shape: tuple[int, ...]
    layers: tuple[LayerBound, ...]
    output_shape: tuple[int, ...] = ()

    @property
    def seconds(self) -> float:
        return sum(layer.seconds for layer in self.layers)

    @property
    def latency_ms(self) -> float:
        return self.seconds * 1e3

    @property
    def images_per_s(self) -> float:
        return self.batch / self.seconds if self.seconds else math.inf

    @property
    def flops(self) -> float:
        return sum(layer.flops for layer in self.layers)

    @property
    def bytes(self) -> float:
        return sum(layer.bytes for layer in self.layers)

    @property
    def floor_seconds(self) -> float:
        """A hard floor under :attr:`seconds`: every layer's compute time at its roof, or the
        bytes no schedule can avoid (weights once, the network's input and output) over the
        bandwidth, whichever is larger. Perfect fusion and caches could reach it; nothing beats it.
        """
        compute = 0.0
        for layer in self.layers:
            roof = self.device.vector_gflops if layer.engine == "vector" else self.device.peak_gflops
            compute += layer.flops / (roof * 1e9) if layer.flops else 0.0
        return max(compute, self.unavoidable_bytes / (self.device.bandwidth_gbps * 1e9))

    @property
    def unavoidable_bytes(self) -> float:
        width = BYTES_PER_ELEMENT[self.precision]
        first_in = _elements(self.input_shape) * self.batch * width
        last_out = _elements(self.output_shape) * self.batch * width
        return sum(layer.weight_bytes for layer in self.layers) + first_in + last_out

    @property
    def floor_images_per_s(self) -> float:
        floor = self.floor_seconds
        return self.batch / floor if floor else math.inf

    @property
    def memory_bound_share(self) -> float:
        """Fraction of the bound time spent in memory-bound layers."""
        total = self.seconds
        memory = sum(layer.seconds for layer in self.layers if layer.bound == "memory")
        return memory / total if total else 0.0

    def to_dict(self, layers: bool = True) -> dict[str, Any]:
        data = {
            "model": self.model,
            "device": self.device.device,
            "device_title": self.device.title,
            "precision": self.precision,
            "batch": self.batch,
            "input_shape": list(self.input_shape),
            "latency_ms": self.latency_ms,
            "images_per_s": self.images_per_s,
            "gflop": self.flops / 1e9,
            "mbytes": self.bytes / 1e6,
            "memory_bound_share": self.memory_bound_share,
            "floor_ms": self.floor_seconds * 1e3,
            "floor_images_per_s": self.floor_images_per_s,
            "peak_gflops": self.device.peak_gflops,
            "bandwidth_gbps": self.device.bandwidth_gbps,
        }
        if layers:
            data["layers"] = [layer.to_dict() for layer in self.layers]
        return data


def _elements(shape: tuple[int, ...]) -> int:
    return math.prod(shape) if shape else 1


def _is_depthwise(layer: LayerStats) -> bool:
    # MACs = out_elems x (in_c / groups) x kernel: one input channel per group is depthwise.
    kernel = math.prod(layer.kernel) if layer.kernel else 1
    return layer.kind == "conv" and layer.macs == _elements(layer.out_shape) * kernel


def layer_work(layer: LayerStats, batch: int, width: int) -> tuple[str, float, float, float]:
    """``(engine, flops, bytes, weight_bytes)`` of one analyze row for a batch."""
    act_in = _elements(layer.in_shape) * batch * width
    act_out = _elements(layer.out_shape) * batch * width
    if layer.kind in ("conv", "linear") or (layer.kind == "other" and layer.macs):
        weights = layer.macs * (layer.filters or 0) / _elements(layer.out_shape) * width
        engine = "vector" if _is_depthwise(layer) else "tensor"
        return engine, 2.0 * layer.macs * batch, weights + act_in + act_out, weights
    if layer.kind == "pool":
        return "vector", float(layer.macs * batch), act_in + act_out, 0.0
    if layer.kind == "other" and any(name.endswith("shuffle") for name in layer.folded):
        return "copy", 0.0, 2.0 * act_out, 0.0
    return "free", 0.0, 0.0, 0.0


def bound_layer(layer: LayerStats, device: DeviceSpec, batch: int) -> LayerBound:
    """The roofline of one layer on ``device`` (its precision) for ``batch`` images."""
    width = BYTES_PER_ELEMENT[device.precision]
    engine, flops, moved, weights = layer_work(layer, batch, width)
    roof = device.vector_gflops if engine == "vector" else device.peak_gflops
    compute_s = flops / (roof * 1e9) if flops else 0.0
    memory_s = moved / (device.bandwidth_gbps * 1e9) if moved else 0.0
    bound = "none" if engine == "free" else "compute" if compute_s >= memory_s else "memory"
    return LayerBound(
        name=layer.name,
        kind=layer.kind,
        engine=engine,
        macs=int(layer.macs * batch),
        flops=flops,
        bytes=moved,
        weight_bytes=weights,
        intensity=flops / moved if moved else 0.0,
        bound=bound,
        seconds=max(compute_s, memory_s),
    )


def estimate_stats(stats: ModelStats, device: DeviceSpec, batch: int) -> ModelEstimate:
    """The roofline of an analyzed model (``deploykit.analyze.analyze_model``)."""
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    layers = tuple(bound_layer(layer, device, batch) for layer in stats.layers)
    return ModelEstimate(
        model=stats.model,
        device=device,
        precision=device.precision,
        batch=batch,
        input_shape=tuple(stats.input_shape),
        layers=layers,
        output_shape=tuple(stats.layers[-1].out_shape) if stats.layers else (),
    )
