"""ONNX variant -> strongly typed TensorRT engine: the only caller of the TensorRT builder.

``build_engine("resnet50", "int8")`` reads ``<repo>/resnet50_onnx_int8/1/model.onnx`` (made
on the fly if missing), checks that the graph carries its precision, builds a strongly typed
engine with one optimization profile for the batch dimension, checks with the engine inspector
that the engine really runs in that precision, and writes ``<repo>/resnet50_trt_int8/``
(``1/model.plan``, ``config.pbtxt``, lineage sidecar) atomically.

No ``BuilderFlag.FP16``/``INT8`` and no calibrators: TensorRT 11 removed them, and in a
strongly typed network the precision is what the ONNX graph says (FP16 tensors for FP16,
Q/DQ nodes for INT8). The same code builds on TensorRT 10.x (JetPack 6), where strong typing
is opted into with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``.

Every call into ``tensorrt`` is in the ``_trt_*`` functions below; everything they decide
on is a plain, tested function in :mod:`deploykit.trt_support`. The ``_trt_*`` functions
were written against the TensorRT 10.x/11.x Python API documentation and have not been run
on a GPU by the authors of this file (see docs/tensorrt.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from deploykit._deps import is_available
from deploykit.artifacts import Artifact, variant_name
from deploykit.errors import DeployKitError
from deploykit.fileio import atomic_write_bytes
from deploykit.repository import ModelRepository, make_command, validate_name
from deploykit.trt_support import (
    TENSORRT_INSTALL_HINT,
    BuildSettings,
    EngineBuildRecord,
    EnginePrecisionReport,
    GpuInfo,
    GraphPrecisionReport,
    TensorInfo,
    build_settings,
    check_engine_precision,
    check_graph_precision,
    check_tensorrt_version,
    engine_sidecar,
    gpu_info,
    parse_engine_information,
    parser_failure,
    profile_input_dims,
    single_io,
    tensorrt_missing_error,
    trt_config_pbtxt,
    uses_strongly_typed_flag,
)

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BuildResult:
    """A built and verified engine in the repository."""

    artifact: Artifact
    record: EngineBuildRecord
    made_parent: bool  # the ONNX variant was created on the fly

    @property
    def variant(self) -> str:
        return self.artifact.variant

    def to_dict(self) -> dict[str, Any]:
        """The sidecar as written, plus where the engine is and whether its parent was made now."""
        return {"path": str(self.artifact.path), "made_parent": self.made_parent, **self.artifact.to_sidecar()}


# --------------------------------------------------------------------------------------
# TensorRT itself
# --------------------------------------------------------------------------------------


def load_tensorrt(purpose: str = "building TensorRT engines") -> ModuleType:
    """Import ``tensorrt`` (10.1+), or raise an error that says how to get it."""
    if not is_available("tensorrt"):
        raise tensorrt_missing_error(purpose)
    try:
        import tensorrt as trt
    except (ImportError, OSError) as exc:  # the wheel is there but libnvinfer/CUDA is not
        raise DeployKitError(
            f"tensorrt is installed but cannot be loaded: {str(exc).splitlines()[0]}",
            hint=TENSORRT_INSTALL_HINT,
        ) from exc
    check_tensorrt_version(trt.__version__)
    return trt


def require_cuda(device: int = 0) -> None:
    import torch

    if not torch.cuda.is_available():
        raise DeployKitError(
            "no CUDA GPU is visible: TensorRT builds and runs engines on an NVIDIA GPU",
            hint="run on a GPU host (docker run --gpus all ..., see docs/tensorrt.md)",
        )
    if not 0 <= device < torch.cuda.device_count():
        raise DeployKitError(f"CUDA device {device} does not exist (this machine has {torch.cuda.device_count()})")


class _Messages:
    """TensorRT log messages kept for error reports (errors always, warnings counted)."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def tail(self, n: int = 5) -> str:
        return " | ".join(self.errors[-n:])


def _trt_logger(trt: ModuleType, messages: _Messages):
    """An ILogger that collects messages instead of printing them over the progress display.

    ILogger subclasses must call ``trt.ILogger.__init__`` (Logger reference:
    https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/Logger.html).
    """

    class CollectingLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity, msg):
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                messages.errors.append(str(msg))
            elif severity == trt.ILogger.Severity.WARNING:
                messages.warnings.append(str(msg))

    return CollectingLogger()


def _trt_build(
    trt: ModuleType,
    onnx_path: Path,
    settings: BuildSettings,
    input_name: str,
    shapes: dict[str, tuple[int, ...]],
    timing_cache: bytes | None,
    messages: _Messages,
) -> tuple[bytes, bytes | None, bool]:
    """Parse, configure and build. Returns (plan, serialized timing cache or None, cache reused)."""
    logger = _trt_logger(trt, messages)
    builder = trt.Builder(logger)
    # 10.x: strong typing is opt-in through this creation flag. 11.x: every network is strongly
    # typed and the flag is deprecated and ignored, so pass 0 ("Strongly Typed Networks Are Now
    # Required", https://docs.nvidia.com/deeplearning/tensorrt/latest/api/migration/tensorrt-10x-to-11x.html).
    flags = 0
    if uses_strongly_typed_flag(trt.__version__):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    # parse_from_file (not parse(bytes)) so weights stored beside the graph (model.onnx.data,
    # which the dynamo exporter writes for large models) are found relative to the file.
    if not parser.parse_from_file(str(onnx_path)):
        raise parser_failure(onnx_path, [parser.get_error(i) for i in range(parser.num_errors)])

    config = builder.create_builder_config()
    if settings.workspace_mb is not None:
        # the memory-pool API replaced max_workspace_size in 8.4 (removed in 10.0)
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mb << 20)
    if settings.opt_level is not None:
        config.builder_optimization_level = settings.opt_level
    config.profiling_verbosity = {
        "detailed": trt.ProfilingVerbosity.DETAILED,
        "layer_names_only": trt.ProfilingVerbosity.LAYER_NAMES_ONLY,
        "none": trt.ProfilingVerbosity.NONE,
    }[settings.profiling_verbosity]

    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)

    reused = False
    if settings.timing_cache is not None:
        cache = config.create_timing_cache(timing_cache or b"")
        # ignore_mismatch=False: a cache from another GPU or TensorRT release is refused
        # (returns False) rather than mixing foreign timings into this build; caches only carry
        # over within the exact same TensorRT version (ITimingCache reference:
        # https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/TimingCache.html).
        accepted = bool(config.set_timing_cache(cache, False))
        if timing_cache and not accepted:
            messages.warnings.append(f"timing cache {settings.timing_cache} does not match this GPU/TensorRT: started a new one")
            config.set_timing_cache(config.create_timing_cache(b""), False)
        reused = bool(timing_cache) and accepted

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise DeployKitError(
            f"TensorRT could not build an engine from {onnx_path}: {messages.tail() or 'no error message'}",
            hint="a larger --workspace-mb or a smaller --max-batch may help; the messages above say why",
        )
    cache_out = None
    if settings.timing_cache is not None:
        cache_out = bytes(config.get_timing_cache().serialize())
    return bytes(plan), cache_out, reused


def _trt_inspect(trt: ModuleType, plan: bytes, messages: _Messages) -> tuple[str, int | None]:
    """Deserialize the plan: (the inspector's engine JSON, device memory an execution context needs)."""
    runtime = trt.Runtime(_trt_logger(trt, messages))
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise DeployKitError(f"TensorRT cannot load the engine it just built: {messages.tail()}")
    inspector = engine.create_engine_inspector()
    info = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    # device_memory_size (without _v2) is removed in 11.x; _v2 exists from 10.1 on.
    device_memory = int(engine.device_memory_size_v2)
    return info, device_memory


# --------------------------------------------------------------------------------------
# The build
# --------------------------------------------------------------------------------------


def ensure_onnx_variant(
    repo: ModelRepository, name: str, precision: str, progress: Progress | None = None
) -> tuple[Artifact, bool]:
    """The ``<name>_onnx_<precision>`` artifact, exported/quantized on the fly when missing."""
    found = repo.find(name, "onnx", precision)
    if found is not None:
        return found, False
    say = progress or (lambda _msg: None)
    if repo.find(name, "onnx", "fp32") is None:
        say(f"exporting {name} to ONNX ({make_command(name, 'onnx', 'fp32')})")
        from deploykit.export import export_model

        export_model(name, repo=repo.root)
    if precision != "fp32":
        say(f"making the {precision} ONNX variant ({make_command(name, 'onnx', precision)})")
        from deploykit.precision import make_variant

        make_variant(repo, name, precision)
    made = repo.find(name, "onnx", precision)
    if made is None:
        raise DeployKitError(
            f"{variant_name(name, 'onnx', precision)} was not created in {repo.root}",
            hint=f"run `{make_command(name, 'onnx', precision)} --repo {repo.root}` and look at its error",
        )
    return made, True


def build_engine(
    name: str,
    precision: str = "fp32",
    repo: str | os.PathLike | ModelRepository = "models",
    min_batch: int = 1,
    opt_batch: int = 8,
    max_batch: int = 32,
    workspace_mb: int | None = None,
    opt_level: int | None = None,
    timing_cache: str | os.PathLike | None = None,
    profiling_verbosity: str = "detailed",
    device: int = 0,
    progress: Progress | None = None,
) -> BuildResult:
    """Build, verify and store ``<name>_trt_<precision>``.

    Raises UsageError for bad options (before any slow work), MissingDependencyError when
    TensorRT is not installed, CheckFailedError when the graph or the built engine does not
    carry ``precision``; nothing is written to the repository unless every check passed.
    """
    say = progress or (lambda _msg: None)
    validate_name(name)
    settings = build_settings(
        precision, min_batch, opt_batch, max_batch, workspace_mb, opt_level, timing_cache, profiling_verbosity
    )
    repository = repo if isinstance(repo, ModelRepository) else ModelRepository(repo)
    repository.check_writable()
    trt = load_tensorrt()  # before exporting anything: no point making ONNX that cannot be built
    require_cuda(device)

    parent, made_parent = ensure_onnx_variant(repository, name, precision, say)
    onnx_path = parent.path
    say(f"checking that {parent.variant} is a strongly typed {precision} graph")
    graph_report = check_graph_precision(onnx_path, precision, parent.variant)
    input_info, output_info = single_io(onnx_path)
    dims = profile_input_dims(input_info, settings.profile)
    shapes = settings.profile.shapes(dims)

    cache_path = Path(settings.timing_cache) if settings.timing_cache else None
    cache_in = cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else None

    import torch

    messages = _Messages()
    variant = variant_name(name, "trt", precision)
    say(f"building {variant} with TensorRT {trt.__version__} (batch {settings.profile.min}..{settings.profile.max})")
    with torch.cuda.device(device):
        gpu: GpuInfo = gpu_info(device)
        started = time.perf_counter()
        plan, cache_out, reused = _trt_build(trt, onnx_path, settings, input_info.name, shapes, cache_in, messages)
        seconds = time.perf_counter() - started
        say("reading the engine's layers with the engine inspector")
        info_json, device_memory = _trt_inspect(trt, plan, messages)

    if cache_path is not None and cache_out:
        # the timing cache is valid whatever the precision check says, so keep it for the next build
        atomic_write_bytes(cache_path, cache_out)

    engine_report: EnginePrecisionReport = parse_engine_information(info_json)
    check_engine_precision(engine_report, precision, variant)

    record = EngineBuildRecord(
        model=name,
        precision=precision,
        parent=parent.variant,
        parent_lineage=tuple(parent.lineage()),
        tensorrt_version=str(trt.__version__),
        gpu=gpu,
        input=input_info,
        output=output_info,
        settings=settings,
        build_seconds=seconds,
        engine_bytes=len(plan),
        device_memory_bytes=device_memory,
        engine=engine_report,
        graph=graph_report,
        strongly_typed_flag=uses_strongly_typed_flag(trt.__version__),
        timing_cache_reused=reused,
        cuda_version=torch.version.cuda,
        parent_sha256=parent.meta.get("sha256"),
        preprocessing=parent.meta.get("preprocessing"),
        extra={"tensorrt_warnings": len(messages.warnings)},
    )
    artifact = repository.write_variant(
        name,
        "trt",
        precision,
        write_model=lambda path: path.write_bytes(plan),
        config_pbtxt=trt_config_pbtxt(variant, input_info, output_info, settings.profile.max),
        sidecar=engine_sidecar(record),
        parent=parent.variant,
    )
    return BuildResult(artifact=artifact, record=record, made_parent=made_parent)


__all__ = [
    "BuildResult",
    "GraphPrecisionReport",
    "TensorInfo",
    "build_engine",
    "ensure_onnx_variant",
    "load_tensorrt",
]


def build_variant(repo: ModelRepository, model: str, precision: str, **options: Any) -> BuildResult:
    """The pipeline's maker of ``<model>_trt_<precision>`` (see ``deploykit.pipeline.STAGES``)."""
    return build_engine(model, precision, repo=repo, **options)
