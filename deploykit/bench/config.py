"""What one benchmark configuration is: :class:`BenchConfig`, its checks and the matrix of them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from deploykit.errors import DeployKitError, UsageError

DEFAULT_ITERATIONS = 20
DEFAULT_TOLERANCE = 0.05
TIMING_FIELDS = ("warmup", "iterations", "seconds", "tolerance", "max_seconds")
RUNNER_FIELDS = (
    "device", "precision", "channels_last", "cuda_graphs", "compile", "weights", "num_classes", "threads", "tf32",
)


@dataclass(frozen=True)
class BenchConfig:
    """One cell of the benchmark matrix.

    ``iterations`` / ``seconds``: the least timed work (default 20 iterations), split in two
    windows; more windows follow until two agree within ``tolerance`` or ``max_seconds`` of
    timing is spent. ``timeout_s`` bounds the whole worker process (load + warm-up + timing).
    ``input_size`` None: the artifact's static size, else the model card's.
    """

    model: str
    backend: str = "onnxruntime"
    precision: str = "fp32"
    batch: int = 1
    device: str = "cpu"
    threads: int | None = None
    warmup: int = 10
    iterations: int | None = None
    seconds: float | None = None
    tolerance: float = DEFAULT_TOLERANCE
    max_seconds: float = 60.0
    timeout_s: float = 900.0
    input_size: int | None = None
    num_classes: int = 1000
    repo: str = "models"
    build: bool = True
    channels_last: bool = False
    cuda_graphs: bool = False
    compile: bool = False
    weights: str | None = None
    peak_gflops: float | None = None
    per_layer: bool = False
    ceilings: bool = True  # CPU: measure SGEMM and copy ceilings in the worker after timing
    tf32: bool | None = None  # torch on CUDA, FP32: allow (True) or forbid (False) TF32; None: PyTorch's default
    end_to_end: bool = False  # GPU: the latency includes the pinned host<->device copies
    largest_batch: int | None = None  # the run's largest batch: an engine bench builds takes it
    trust: bool = False  # run an artifact even if its file is not the one its sidecar hashed

    @property
    def device_kind(self) -> str:
        return self.device.split(":")[0]

    @property
    def label(self) -> str:
        """``torch/fp16+cl+graphs``: backend, precision and the options that change speed."""
        extras = [
            flag
            for flag, on in (
                ("tf32", self.tf32 is True),
                ("cl", self.channels_last),
                ("graphs", self.cuda_graphs),
                ("compile", self.compile),
                ("e2e", self.end_to_end),
            )
            if on
        ]
        return f"{self.backend}/{'+'.join([self.precision, *extras])}"

    def timing(self) -> dict[str, Any]:
        """The keywords of :func:`deploykit.bench.timing.time_callable` this configuration sets."""
        return {name: getattr(self, name) for name in TIMING_FIELDS}

    def runner_settings(self) -> dict[str, Any]:
        """What a runner may take from this configuration (see ``Runner.from_settings``)."""
        return {name: getattr(self, name) for name in RUNNER_FIELDS}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def describe_config(config: BenchConfig) -> str:
    return f"{config.model} {config.label} b{config.batch} ({config.device})"


def default_threads(machine: dict[str, Any]) -> int:
    """The benchmark's default thread count on a CPU: all physical cores (logical CPUs if unknown)."""
    return int(machine.get("physical_cores") or machine.get("logical_cpus") or 1)


def with_default_threads(config: BenchConfig, machine: dict[str, Any]) -> BenchConfig:
    """``config`` with its thread count set: a CPU run without one uses all physical cores."""
    if config.device_kind != "cpu" or config.threads is not None:
        return config
    return replace(config, threads=default_threads(machine))


def validate_config(config: BenchConfig) -> None:
    """Raise UsageError for input that no configuration could run (unknown names, bad sizes)."""
    from deploykit.artifacts import PRECISIONS
    from deploykit.repository import validate_name
    from deploykit.runtimes import get_backend

    get_backend(config.backend)  # an unknown backend raises, naming the choices
    if config.precision not in PRECISIONS:
        raise UsageError(f"unknown precision {config.precision!r}", hint=f"choose from {', '.join(PRECISIONS)}")
    if config.device_kind not in ("cpu", "cuda"):
        raise UsageError(f"unknown device {config.device!r}", hint="use cpu or cuda")
    validate_name(config.model)
    if not isinstance(config.batch, int) or config.batch < 1:
        raise UsageError(f"batch size must be a positive integer, got {config.batch!r}")
    if config.input_size is not None and config.input_size < 8:
        raise UsageError(f"input size {config.input_size} is too small", hint="use 32 or more")
    if config.threads is not None and config.threads < 1:
        raise UsageError(f"threads must be at least 1, got {config.threads}")


def expand_matrix(
    models: Sequence[str],
    backends: Sequence[str],
    precisions: Sequence[str],
    batches: Sequence[int],
    **common: Any,
) -> list[BenchConfig]:
    """The cross product, in the order model, backend, precision, batch."""
    common.setdefault("largest_batch", max(batches, default=None))
    return [
        BenchConfig(model=m, backend=b, precision=p, batch=n, **common)
        for m in models
        for b in backends
        for p in precisions
        for n in batches
    ]


def _exported(name: str, repo: Any) -> bool:
    """True when ``repo`` holds ``name``'s FP32 ONNX variant (a model from export_module or an import)."""
    from deploykit.repository import ModelRepository

    try:
        return ModelRepository(repo).find(name, "onnx", "fp32") is not None
    except DeployKitError:  # an invalid name or a broken variant: the zoo check says it better
        return False


def plan_matrix(
    models: Sequence[str],
    backends: Sequence[str],
    precisions: Sequence[str],
    batches: Sequence[int],
    **common: Any,
) -> list[BenchConfig]:
    """The checked matrix a user asked for (the ``deploykit bench`` command's library half).

    UsageError before anything runs: an empty axis, ``iterations`` with ``seconds``, an
    unknown model, CUDA graphs off CUDA, or ``device="cuda"`` where no GPU is visible.
    """
    from deploykit.zoo import get_card

    if common.get("iterations") is not None and common.get("seconds") is not None:
        raise UsageError("--iterations and --seconds exclude each other", hint="give one of them")
    if not backends or not precisions or not batches:
        raise UsageError("--backend, --precision and --batch need at least one value each")
    for name in models:
        if not _exported(name, common.get("repo", "models")):
            get_card(name)  # an unknown model raises UsageError naming close matches
    device = common.get("device", "cpu")
    if common.get("cuda_graphs") and device.split(":")[0] != "cuda":
        raise UsageError("--cuda-graphs needs --device cuda")
    if device.split(":")[0] == "cuda":
        from deploykit.machine import cuda_available

        if not cuda_available():
            raise UsageError(
                "--device cuda, but no CUDA GPU is visible (torch.cuda.is_available() is False)",
                hint="run on a GPU host, or use --device cpu",
            )
    return expand_matrix(models, backends, precisions, batches, **common)
