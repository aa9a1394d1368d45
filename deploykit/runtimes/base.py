"""One Runner interface for every backend: activate / infer / deactivate.

Modelled on Polygraphy's ``BaseRunner``: the public methods handle the life cycle and
checks once; each backend implements ``_activate_impl``, ``_infer_impl`` and
``_deactivate_impl``. Benchmarking, parity checks and serving are written against this
class only.
"""

from __future__ import annotations

import abc
import inspect
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from deploykit.errors import DeployKitError
from deploykit.onnx_graph import TensorSpec


@dataclass(frozen=True)
class LayerTime:
    """One layer of a per-layer profile: mean milliseconds per call and the op that ran."""

    name: str
    op: str
    time_ms: float


# Device memory of a GPU runner, each part a drop in the device's free memory (runner.memory)
MEMORY_FIELDS = ("weights_bytes", "activations_bytes", "io_bytes")


def memory_total(memory: dict[str, Any] | None) -> int | None:
    """Weights + activations + I/O bytes when all three were measured, else None: one measure
    for every GPU backend ("GPU MB"), never a mix of allocator peaks and engine figures."""
    parts = [(memory or {}).get(k) for k in MEMORY_FIELDS]
    return int(sum(parts)) if all(p is not None for p in parts) else None


class Runner(abc.ABC):
    """A loaded model on one backend. Use as a context manager::

        with get_runner("onnxruntime", artifact) as runner:
            logits = runner.infer(batch)
    """

    backend: ClassVar[str] = "base"

    @classmethod
    def from_settings(cls, source: Any, **settings: Any) -> Runner:
        """A runner from a superset of settings: those the constructor does not name are left out.

        Lets one caller (bench) describe a configuration once for every backend. A ``device``
        string such as ``cuda:1`` becomes the index 1 for a runner whose device is an index.
        """
        params = inspect.signature(cls.__init__).parameters
        kept = {k: v for k, v in settings.items() if k in params and params[k].kind is not params[k].VAR_KEYWORD}
        device = kept.get("device")
        if isinstance(device, str) and "device" in params and isinstance(params["device"].default, int):
            kept["device"] = int(device.split(":")[1]) if ":" in device else 0
        return cls(source, **kept)

    def __init__(self, name: str | None = None):
        self.name = name or self.backend
        self.is_active = False

    # ---- life cycle -----------------------------------------------------------------
    def activate(self) -> Runner:
        if not self.is_active:
            self._activate_impl()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        if self.is_active:
            self._deactivate_impl()
            self.is_active = False

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(self, *exc: Any) -> None:
        self.deactivate()

    # ---- inference --------------------------------------------------------------------
    def infer(self, batch: np.ndarray) -> np.ndarray:
        """Run one batch (N x C x H x W, float32) and return the logits (N x classes, float32)."""
        if not self.is_active:
            raise DeployKitError(f"runner {self.name} is not active", hint="use it in a `with` block")
        spec = self.input_spec()
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if not spec.matches(batch):
            raise DeployKitError(
                f"input of shape {tuple(batch.shape)} does not fit {self.name}'s input {spec.shape}"
            )
        return np.asarray(self._infer_impl(batch), dtype=np.float32)

    def synchronize(self) -> None:
        """Wait for queued device work (a no-op on CPU backends); timers call it before reading a clock."""
        return None

    def profile_layers(self, batch: np.ndarray, repeats: int = 5) -> tuple[LayerTime, ...]:
        """Mean time per layer over ``repeats`` calls on ``batch``, slowest first.

        Profiling runs apart from any timed loop: hooks and counters slow a model down. A
        backend offers it by implementing ``_profile_impl``; others raise DeployKitError.
        """
        if not self.is_active:
            raise DeployKitError(f"runner {self.name} is not active", hint="use it in a `with` block")
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        times, ops = self._profile_impl(batch, repeats)
        rows = (LayerTime(name, ops.get(name, ""), float(ms)) for name, ms in times.items())
        return tuple(sorted(rows, key=lambda row: -row.time_ms))

    # ---- description --------------------------------------------------------------------
    @abc.abstractmethod
    def input_spec(self) -> TensorSpec: ...

    def device_memory_bytes(self) -> int | None:
        """Device memory the backend holds for this model, where it can say (GPU backends)."""
        return None

    def describe(self) -> dict[str, Any]:
        """Backend-specific settings worth recording beside a measurement."""
        return {"backend": self.backend}

    # ---- per backend --------------------------------------------------------------------------
    @abc.abstractmethod
    def _activate_impl(self) -> None: ...

    @abc.abstractmethod
    def _infer_impl(self, batch: np.ndarray) -> np.ndarray: ...

    def _deactivate_impl(self) -> None:
        return None

    def _profile_impl(self, batch: np.ndarray, repeats: int) -> tuple[dict[str, float], dict[str, str]]:
        """Per-layer mean ms by layer name, and each layer's op (may be empty)."""
        raise DeployKitError(f"per-layer profiles are not available for {self.backend}")
