"""The machine a measurement ran on: CPU, cores, ISA flags, GPU, driver, library versions.

Every benchmark result carries one :class:`MachineInfo`, so a number never travels without
the hardware that produced it. Only the standard library is needed at import time; torch
is consulted only when it is already imported or explicitly allowed (``probe_torch``), and
``nvidia-smi`` only when it is on PATH.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

# ISA flags that decide which CPU kernels run fast (INT8 dot products, FP16/BF16 units).
INTERESTING_FLAGS = (
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_bf16",
    "amx_int8",
    "amx_tile",
)

DEVICES_JSON = Path(__file__).with_name("data") / "devices.json"

LIBRARIES = (
    "torch",
    "torchvision",
    "numpy",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "openvino",
    "tensorrt",
    "nvidia-modelopt",
)


@dataclass(frozen=True)
class GpuInfo:
    """One CUDA device as torch or nvidia-smi reports it."""

    name: str
    memory_bytes: int | None = None
    compute_capability: str | None = None
    driver: str | None = None
    cuda_runtime: str | None = None


@dataclass(frozen=True)
class MachineInfo:
    """Hardware and software facts recorded beside every measurement."""

    os: str
    python: str
    cpu_model: str
    cpu_vendor: str | None
    architecture: str
    logical_cpus: int
    physical_cores: int | None
    cpu_mhz: float | None
    cpu_flags: tuple[str, ...]
    memory_bytes: int | None
    gpus: tuple[GpuInfo, ...] = ()
    # Highest clock the kernel reports (cpufreq); None in most VMs, where cpu_mhz is all there is.
    cpu_max_mhz: float | None = None
    libraries: dict[str, str] = field(default_factory=dict)

    @property
    def has_vnni(self) -> bool:
        """True when the CPU has 8-bit dot-product instructions (AVX512-VNNI, AVX-VNNI or AMX)."""
        return any(f in self.cpu_flags for f in ("avx512_vnni", "avx_vnni", "amx_int8"))

    @property
    def gpu_name(self) -> str | None:
        return self.gpus[0].name if self.gpus else None

    def summary(self) -> str:
        """One line: 'AMD EPYC, 2 logical CPUs (avx2), no GPU'."""
        return summarize_machine(self.to_dict())

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cpu_flags"] = list(self.cpu_flags)
        data["gpus"] = [asdict(g) for g in self.gpus]
        data["has_vnni"] = self.has_vnni
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MachineInfo:
        known = {f for f in cls.__dataclass_fields__}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["cpu_flags"] = tuple(kwargs.get("cpu_flags", ()))
        kwargs["gpus"] = tuple(GpuInfo(**g) for g in kwargs.get("gpus", ()))
        return cls(**kwargs)


def summarize_machine(machine: dict[str, Any]) -> str:
    """One line from a machine dict (as stored in result files; missing fields are skipped)."""
    shown = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")
    flags = ", ".join(f for f in machine.get("cpu_flags") or () if f in shown)
    cpu = str(machine.get("cpu_model") or "unknown CPU")
    if machine.get("logical_cpus"):
        cpu += f", {machine['logical_cpus']} logical CPUs"
    if flags:
        cpu += f" ({flags})"
    gpus = machine.get("gpus") or []
    if not gpus:
        return f"{cpu}, no GPU"
    g = gpus[0]
    driver = f", driver {g['driver']}" if g.get("driver") else ""
    return f"{cpu}, {g.get('name', 'GPU')}{driver}"


def _read(path: str) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def _cpuinfo() -> dict[str, Any]:
    """Model, vendor, MHz, flags and physical cores from /proc/cpuinfo (Linux) or platform."""
    text = _read("/proc/cpuinfo")
    out: dict[str, Any] = {"model": platform.processor() or platform.machine(), "vendor": None, "mhz": None, "flags": set()}
    cores: set[tuple[str, str]] = set()
    physical_id = core_id = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key, value = key.strip(), value.strip()
        if key == "model name" and value:
            out["model"] = value
        elif key == "vendor_id":
            out["vendor"] = value
        elif key == "cpu MHz" and out["mhz"] is None:
            with contextlib.suppress(ValueError):
                out["mhz"] = float(value)
        elif key in ("flags", "Features"):
            out["flags"].update(value.split())
        elif key == "physical id":
            physical_id = value
        elif key == "core id":
            core_id = value
            cores.add((physical_id, core_id))
    out["physical_cores"] = len(cores) or None
    if sys.platform == "darwin" and not text:  # pragma: no cover - not our CI
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out["model"] = subprocess.run(
                ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=5
            ).stdout.strip() or out["model"]
    return out


def cpu_max_mhz() -> float | None:
    """The highest clock cpufreq reports for CPU 0 (boost included), or None (VMs, non-Linux)."""
    text = _read("/sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq").strip()
    try:
        return int(text) / 1000.0 if text else None
    except ValueError:
        return None


def memory_total_bytes() -> int | None:
    m = re.search(r"^MemTotal:\s+(\d+) kB", _read("/proc/meminfo"), re.M)
    return int(m.group(1)) * 1024 if m else None


def memory_available_bytes() -> int | None:
    """Host memory a new allocation can get now (MemAvailable), or None where unknown."""
    m = re.search(r"^MemAvailable:\s+(\d+) kB", _read("/proc/meminfo"), re.M)
    if m:
        return int(m.group(1)) * 1024
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _nvidia_smi() -> list[GpuInfo]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        proc = subprocess.run(
            [exe, "--query-gpu=name,memory.total,driver_version,compute_cap", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in proc.stdout.strip().splitlines() if proc.returncode == 0 else []:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) < 3:
            continue
        try:
            mem = int(float(parts[1]) * 1024 * 1024)
        except ValueError:
            mem = None
        cc = parts[3] if len(parts) > 3 and parts[3] not in ("", "[N/A]") else None
        gpus.append(GpuInfo(name=parts[0], memory_bytes=mem, driver=parts[2], compute_capability=cc))
    return gpus


def _torch_gpus() -> list[GpuInfo]:
    torch = sys.modules.get("torch")
    if torch is None:
        return []
    try:
        if not torch.cuda.is_available():
            return []
        out = []
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            out.append(
                GpuInfo(
                    name=p.name,
                    memory_bytes=int(p.total_memory),
                    compute_capability=f"{p.major}.{p.minor}",
                    cuda_runtime=torch.version.cuda,
                )
            )
        return out
    except Exception:  # a broken driver must not break a benchmark record
        return []


def gpu_info(probe_torch: bool = False) -> tuple[GpuInfo, ...]:
    """GPUs from torch (when imported, or ``probe_torch``) merged with nvidia-smi's driver version."""
    if probe_torch and "torch" not in sys.modules:
        from deploykit._deps import is_available

        if is_available("torch"):
            import torch  # noqa: F401
    from_torch = _torch_gpus()
    from_smi = _nvidia_smi()
    if not from_torch:
        return tuple(from_smi)
    merged = []
    for i, g in enumerate(from_torch):
        smi = from_smi[i] if i < len(from_smi) else None
        merged.append(
            GpuInfo(
                name=g.name,
                memory_bytes=g.memory_bytes,
                compute_capability=g.compute_capability,
                driver=smi.driver if smi else None,
                cuda_runtime=g.cuda_runtime,
            )
        )
    return tuple(merged)


def library_versions(names: tuple[str, ...] = LIBRARIES) -> dict[str, str]:
    """Python, the installed ``names`` and deploykit itself (marked when run from a checkout)."""
    from importlib import metadata

    from deploykit.artifacts import library_versions as installed

    out = installed(*names)
    try:
        out["deploykit"] = metadata.version("deploykit")
    except metadata.PackageNotFoundError:
        from deploykit import __version__

        out["deploykit"] = f"{__version__} (source)"
    return out


@lru_cache(maxsize=2)
def describe_machine(probe_torch: bool = False) -> MachineInfo:
    """The machine this process runs on (cached: the hardware does not change mid-run)."""
    cpu = _cpuinfo()
    flags = tuple(f for f in INTERESTING_FLAGS if f in cpu["flags"])
    return MachineInfo(
        os=f"{platform.system()} {platform.release()}",
        python=platform.python_version(),
        cpu_model=cpu["model"],
        cpu_vendor=cpu["vendor"],
        architecture=platform.machine(),
        logical_cpus=os.cpu_count() or 1,
        physical_cores=cpu["physical_cores"],
        cpu_mhz=cpu["mhz"],
        cpu_max_mhz=cpu_max_mhz(),
        cpu_flags=flags,
        memory_bytes=memory_total_bytes(),
        gpus=gpu_info(probe_torch),
        libraries=library_versions(),
    )


def cuda_available() -> bool:
    """True when torch is installed and sees a CUDA device (imports torch)."""
    from deploykit._deps import is_available

    if not is_available("torch"):
        return False
    import torch

    return bool(torch.cuda.is_available())


def available_memory_bytes(device: str) -> tuple[int | None, str]:
    """Memory a new allocation can use on ``device`` now, and what it is (host RAM or GPU)."""
    if device.split(":")[0] == "cuda":
        try:
            import torch

            free, _ = torch.cuda.mem_get_info(torch.device(device))
            return int(free), "free GPU memory"
        except Exception:  # no torch or no GPU: the runner will say so
            return None, "GPU memory"
    return memory_available_bytes(), "available host memory"


# ---- host memory of this process, and peak compute tables ------------------------------


def _proc_status_bytes(key: str) -> int | None:
    """A ``kB`` field of /proc/self/status (Linux) in bytes, or None."""
    try:
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(f"{key}:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def current_rss_bytes() -> int | None:
    """Resident memory of this process now (Linux /proc), or None."""
    return _proc_status_bytes("VmRSS")


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far.

    Linux: ``VmHWM`` of /proc/self/status, the high-water mark of this program's own memory.
    Not ``getrusage``: its ``ru_maxrss`` survives fork and exec, so a worker started from a
    700 MB parent would report at least 700 MB whatever it did. Elsewhere ``ru_maxrss``.
    """
    high_water = _proc_status_bytes("VmHWM")
    if high_water is not None:
        return high_water
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


@lru_cache(maxsize=1)
def load_devices() -> list[dict[str, Any]]:
    """The known-device peak table (``deploykit/data/devices.json``)."""
    return json.loads(DEVICES_JSON.read_text())["devices"]


def match_device(name: str | None) -> dict[str, Any] | None:
    """The first devices.json entry whose pattern matches a GPU name, else None."""
    if not name:
        return None
    for entry in load_devices():
        if any(re.search(p, name, re.IGNORECASE) for p in entry["match"]):
            return entry
    return None


def cpu_peak_estimate(
    machine: dict[str, Any], math_kind: str = "fp32", threads: int | None = None
) -> tuple[float | None, str]:
    """FP32 peak of the cores a run may use: cores x clock x FLOP/cycle of the widest FMA ISA
    (2 FMA units assumed). ``threads`` limits the cores counted (a 1-thread run is compared
    with one core's peak).

    Only FP32 is estimated: INT8 and FP16 rates depend on VNNI/AMX details a flag list does
    not settle, so those return None (pass --peak-gflops).
    """
    if math_kind != "fp32":
        return None, f"unknown: no {math_kind} peak estimate for CPUs (pass --peak-gflops)"
    flags = set(machine.get("cpu_flags") or ())
    # cpufreq's maximum (boost) when the kernel has it; else /proc/cpuinfo's clock, which in a
    # VM is usually the base clock: boost runs higher, so the fraction may then exceed 100 %.
    mhz = machine.get("cpu_max_mhz") or machine.get("cpu_mhz")
    clock = "max clock" if machine.get("cpu_max_mhz") else "clock from /proc/cpuinfo, boost may run higher"
    cores = machine.get("physical_cores") or machine.get("logical_cpus")
    if not mhz or not cores:
        return None, "unknown: CPU clock or core count not reported (pass --peak-gflops)"
    if threads:
        cores = min(cores, threads)
    if "avx512f" in flags:
        per_cycle, isa = 64, "AVX-512 FMA"
    elif "avx2" in flags and "fma" in flags:
        per_cycle, isa = 32, "AVX2 FMA"
    else:
        per_cycle, isa = 8, "SSE"
    ghz = mhz / 1000.0
    return (
        cores * ghz * per_cycle,
        f"estimate: {cores} core{'s' if cores > 1 else ''} x {ghz:.2f} GHz ({clock}) x {per_cycle} FP32 "
        f"FLOP/cycle ({isa}, 2 units assumed)",
    )


def device_peak(
    machine: dict[str, Any],
    device: str,
    math_kind: str,
    override: float | None = None,
    threads: int | None = None,
) -> tuple[float | None, str]:
    """Peak GFLOP/s (GOP/s for int8) for a device and the math a runner uses, and where it came from."""
    if override:
        return float(override), "--peak-gflops"
    if device.split(":")[0] == "cuda":
        gpus = machine.get("gpus") or []
        name = gpus[0]["name"] if gpus else None
        entry = match_device(name)
        if entry is None:
            return None, f"unknown: {name or 'this GPU'} is not in devices.json (pass --peak-gflops)"
        value = entry["peak_gflops"].get(math_kind)
        if not value:
            return None, f"unknown: devices.json has no {math_kind} peak for {entry['name']}"
        return float(value), f"devices.json: {entry['name']}, {math_kind} dense"
    return cpu_peak_estimate(machine, math_kind, threads)


__all__ = [
    "GpuInfo",
    "MachineInfo",
    "available_memory_bytes",
    "cpu_peak_estimate",
    "cuda_available",
    "current_rss_bytes",
    "device_peak",
    "describe_machine",
    "gpu_info",
    "library_versions",
    "load_devices",
    "match_device",
    "memory_available_bytes",
    "peak_rss_bytes",
    "summarize_machine",
]
