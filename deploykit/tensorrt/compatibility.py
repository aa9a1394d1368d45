"""Engines belong to one GPU model and one TensorRT release: record both, refuse a mismatch."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deploykit.errors import DeployKitError
from deploykit.machine import GpuInfo
from deploykit.tensorrt.loading import same_tensorrt_release


def gpu_info(device: int = 0) -> GpuInfo:
    """The CUDA device as torch sees it (torch owns the CUDA context in deploykit)."""
    import torch

    major, minor = torch.cuda.get_device_capability(device)
    return GpuInfo(torch.cuda.get_device_name(device), compute_capability=f"{major}.{minor}")


def describe_gpu(gpu: GpuInfo) -> str:
    return f"{gpu.name} (compute capability {gpu.compute_capability})"


@dataclass(frozen=True)
class EngineTarget:
    """Where an engine was built, or where it is about to run."""

    tensorrt_version: str
    gpu: GpuInfo

    def __str__(self) -> str:
        return f"TensorRT {self.tensorrt_version} on {describe_gpu(self.gpu)}"


def target_from_sidecar(meta: Mapping[str, Any]) -> EngineTarget | None:
    """The build target recorded by :func:`engine_sidecar`; None for a sidecar without one."""
    trt_section, gpu = meta.get("tensorrt"), meta.get("gpu")
    if not isinstance(trt_section, Mapping) or not isinstance(gpu, Mapping):
        return None
    if not trt_section.get("version") or not gpu.get("name"):
        return None
    return EngineTarget(
        str(trt_section["version"]),
        GpuInfo(str(gpu["name"]), compute_capability=str(gpu.get("compute_capability", "?"))),
    )


def engine_mismatches(built: EngineTarget, here: EngineTarget) -> list[str]:
    """What differs between the build target and this machine (empty when the engine fits).

    A plan is tied to the TensorRT release that serialized it and to the GPU model it was
    tuned for; TensorRT itself warns that using a plan across device models "is not
    recommended and is likely to affect performance or even cause errors".
    """
    problems = []
    if not same_tensorrt_release(built.tensorrt_version, here.tensorrt_version):
        problems.append(f"TensorRT {built.tensorrt_version} != {here.tensorrt_version}")
    if built.gpu.compute_capability != here.gpu.compute_capability:
        problems.append(
            f"compute capability {built.gpu.compute_capability} != {here.gpu.compute_capability}"
        )
    if built.gpu.name != here.gpu.name:
        problems.append(f"GPU {built.gpu.name} != {here.gpu.name}")
    return problems


def ensure_engine_compatible(variant: str, built: EngineTarget, here: EngineTarget, rebuild: str) -> None:
    """Raise a DeployKitError that says what was built where, when the engine does not fit here."""
    problems = engine_mismatches(built, here)
    if problems:
        raise DeployKitError(
            f"{variant} was built with {built}; this machine has {here} ({'; '.join(problems)})",
            hint=f"TensorRT engines run only on the GPU model and TensorRT release that built them: "
            f"rebuild it here with `{rebuild}`",
        )
