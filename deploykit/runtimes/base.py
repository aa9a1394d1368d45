"""One Runner interface for every backend: activate / infer / deactivate.

Modelled on Polygraphy's ``BaseRunner``: the public methods handle the life cycle and
checks once; each backend implements ``_activate_impl``, ``_infer_impl`` and
``_deactivate_impl``. Benchmarking, parity checks and serving are written against this
class only.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import numpy as np

from deploykit.errors import DeployKitError
from deploykit.onnx_graph import TensorSpec


class Runner(abc.ABC):
    """A loaded model on one backend. Use as a context manager::

        with get_runner("onnxruntime", artifact) as runner:
            logits = runner.infer(batch)
    """

    backend: ClassVar[str] = "base"

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
