"""ONNX variant -> strongly typed TensorRT engine: the only module that creates a ``trt.Builder``.

``build_engine("resnet50", "int8")`` reads ``<repo>/resnet50_onnx_int8/1/model.onnx`` (made
on the fly through the pipeline if missing), checks that the graph carries its precision,
builds a strongly typed engine with one optimization profile for the batch dimension, checks
with the engine inspector that the engine really runs in that precision, and writes
``<repo>/resnet50_trt_int8/`` (``1/model.plan``, ``config.pbtxt``, lineage sidecar) atomically.

No ``BuilderFlag.FP16``/``INT8`` and no calibrators: TensorRT 11 removed them, and in a
strongly typed network the precision is what the ONNX graph says (FP16 tensors for FP16,
Q/DQ nodes for INT8). The same code builds on TensorRT 10.x (JetPack 6), where strong typing
is opted into with ``NetworkDefinitionCreationFlag.STRONGLY_TYPED``.

Every call into ``tensorrt`` is in the ``_trt_*`` functions below; everything they decide on
is a plain, tested function in the sibling modules (profiles, preflight, report, record). The
``_trt_*`` functions were written against the TensorRT 10.x/11.x Python API documentation and
have not been run on a GPU by the authors of this file (see docs/tensorrt.md).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from deploykit.artifacts import Artifact, variant_name
from deploykit.errors import DeployKitError
from deploykit.fileio import atomic_write_bytes
from deploykit.onnx_graph import single_io
from deploykit.pipeline import ensure_variant
from deploykit.repository import FileCheck, ModelRepository, check_model_file, validate_name
from deploykit.tensorrt.compatibility import gpu_info
from deploykit.tensorrt.loading import (
    Messages,
    collecting,
    create_runtime,
    load_tensorrt,
    null_factory,
    require_created,
    require_cuda,
    tensorrt_logger,
    uses_strongly_typed_flag,
)
from deploykit.tensorrt.preflight import check_graph_precision, parser_failure
from deploykit.tensorrt.profiles import BuildSettings, build_settings, profile_input_dims
from deploykit.tensorrt.record import EngineBuildRecord, engine_sidecar, trt_config_pbtxt
from deploykit.tensorrt.report import check_engine_precision, parse_engine_information

Progress = Callable[[str], None]


@dataclass(frozen=True)
class BuildResult:
    """A built and verified engine in the repository."""

    artifact: Artifact
    record: EngineBuildRecord
    made_parent: bool  # the ONNX variant was created on the fly
    warnings: tuple[str, ...] = ()  # deploykit's own, e.g. a timing cache that was replaced

    @property
    def variant(self) -> str:
        return self.artifact.variant

    def to_dict(self) -> dict[str, Any]:
        """The sidecar as written, plus where the engine is and whether its parent was made now."""
        return {"path": str(self.artifact.path), "made_parent": self.made_parent, **self.artifact.to_sidecar()}


# ---- TensorRT itself --------------------------------------------------------------------------


def create_builder(trt: ModuleType, logger: Any, messages: Messages | None = None):
    """``trt.Builder(logger)`` (the first native call of a build), or deploykit's error on NULL."""
    try:
        builder = trt.Builder(logger)
    except TypeError as exc:
        builder = null_factory(exc)
    require_created(trt, "Builder", builder, messages)
    return builder


def _trt_network(trt: ModuleType, builder, onnx_path: Path, logger):
    """Parse the ONNX file into a strongly typed network (the parser is kept alive with it)."""
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
    return network, parser


def _trt_config(trt: ModuleType, builder, settings: BuildSettings, input_name: str, shapes: dict[str, tuple[int, ...]]):
    """The builder config: workspace, optimization level, profiling verbosity, the batch profile."""
    config = builder.create_builder_config()
    if settings.workspace_mb is not None:
        # the memory-pool API replaced max_workspace_size in 8.4 (removed in 10.0)
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, settings.workspace_mb << 20)
    if settings.opt_level is not None:
        config.builder_optimization_level = settings.opt_level
    if not settings.tf32:
        # the builder lets FP32 layers use TF32 tensor cores unless told not to (--no-tf32)
        config.clear_flag(trt.BuilderFlag.TF32)
    config.profiling_verbosity = {
        "detailed": trt.ProfilingVerbosity.DETAILED,
        "layer_names_only": trt.ProfilingVerbosity.LAYER_NAMES_ONLY,
        "none": trt.ProfilingVerbosity.NONE,
    }[settings.profiling_verbosity]
    profile = builder.create_optimization_profile()
    profile.set_shape(input_name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    return config


def _trt_timing_cache(config, settings: BuildSettings, timing_cache: bytes | None, messages: Messages) -> bool:
    """Attach the timing cache (a new one when the file's does not fit); True when it was reused."""
    cache = config.create_timing_cache(timing_cache or b"")
    if cache is None and timing_cache:
        # a cache serialized by another TensorRT release cannot even be read: TensorRT logs an
        # error and create_timing_cache returns None, which set_timing_cache would not take
        messages.notes.append(
            f"timing cache {settings.timing_cache} was written by another TensorRT release: started a new one"
        )
        timing_cache, cache = None, config.create_timing_cache(b"")
    if cache is None:
        raise DeployKitError(
            f"TensorRT could not create a timing cache: {messages.tail() or 'no error message'}",
            hint="build without --timing-cache",
        )
    # ignore_mismatch=False: a cache from another GPU is refused (returns False) rather than
    # mixing foreign timings into this build (ITimingCache reference:
    # https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/python-api/infer/Core/TimingCache.html).
    accepted = bool(config.set_timing_cache(cache, False))
    if timing_cache and not accepted:
        messages.notes.append(f"timing cache {settings.timing_cache} does not match this GPU: started a new one")
        config.set_timing_cache(config.create_timing_cache(b""), False)
    return bool(timing_cache) and accepted


def _trt_build(
    trt: ModuleType,
    onnx_path: Path,
    settings: BuildSettings,
    input_name: str,
    shapes: dict[str, tuple[int, ...]],
    timing_cache: bytes | None,
    messages: Messages,
) -> tuple[bytes, bytes | None, bool]:
    """Parse, configure and build. Returns (plan, serialized timing cache or None, cache reused)."""
    logger = tensorrt_logger(trt)
    builder = create_builder(trt, logger, messages)
    network, _parser = _trt_network(trt, builder, onnx_path, logger)
    config = _trt_config(trt, builder, settings, input_name, shapes)
    reused = False
    if settings.timing_cache is not None:
        reused = _trt_timing_cache(config, settings, timing_cache, messages)
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


def _trt_inspect(trt: ModuleType, plan: bytes, messages: Messages) -> tuple[str, int | None]:
    """Deserialize the plan: (the inspector's engine JSON, device memory an execution context needs)."""
    runtime = create_runtime(trt, tensorrt_logger(trt), messages)
    engine = runtime.deserialize_cuda_engine(plan)
    if engine is None:
        raise DeployKitError(f"TensorRT cannot load the engine it just built: {messages.tail()}")
    inspector = engine.create_engine_inspector()
    info = inspector.get_engine_information(trt.LayerInformationFormat.JSON)
    # device_memory_size (without _v2) is removed in 11.x; _v2 exists from 10.1 on.
    device_memory = int(engine.device_memory_size_v2)
    return info, device_memory


# ---- the build -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Compiled:
    """What the TensorRT calls of one build return."""

    plan: bytes
    seconds: float
    engine_json: str
    device_memory: int | None
    reused_cache: bool
    messages: Messages


def _compile(trt: ModuleType, onnx_path: Path, settings: BuildSettings, input_name: str, shapes, device: int, say: Progress) -> _Compiled:
    """Build and inspect the engine on ``device``; the timing cache file is updated either way."""
    import torch

    cache_path = Path(settings.timing_cache) if settings.timing_cache else None
    cache_in = cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else None
    with torch.cuda.device(device), collecting(trt) as messages:
        started = time.perf_counter()
        plan, cache_out, reused = _trt_build(trt, onnx_path, settings, input_name, shapes, cache_in, messages)
        seconds = time.perf_counter() - started
        say("reading the engine's layers with the engine inspector")
        info_json, device_memory = _trt_inspect(trt, plan, messages)
    if cache_path is not None and cache_out:
        # the timing cache is valid whatever the precision check says, so keep it for the next build
        atomic_write_bytes(cache_path, cache_out)
    return _Compiled(plan, seconds, info_json, device_memory, reused, messages)


def build_engine(
    name: str,
    precision: str = "fp32",
    repo: str | os.PathLike | ModelRepository = "models",
    *,
    device: int = 0,
    progress: Progress | None = None,
    force: bool = False,
    trust: bool = False,
    **builder_options: Any,
) -> BuildResult:
    """Build, verify and store ``<name>_trt_<precision>``.

    ``builder_options`` are :func:`~deploykit.tensorrt.profiles.build_settings`'s keywords, with
    its defaults: ``min_batch``, ``opt_batch``, ``max_batch``, ``workspace_mb``, ``opt_level``,
    ``timing_cache``, ``profiling_verbosity`` and ``tf32``.

    Raises UsageError for bad options (before any slow work), MissingDependencyError when
    TensorRT is not installed, CheckFailedError when the graph or the built engine does not
    carry ``precision``; nothing is written unless every check passed. An ONNX parent that is
    not the file its sidecar hashed is refused before TensorRT is needed, unless ``trust``; over
    an existing engine, files deploykit did not write in ``1/`` need ``force``.
    """
    say = progress or (lambda _msg: None)
    validate_name(name)
    settings = build_settings(precision, **builder_options)
    repository = repo if isinstance(repo, ModelRepository) else ModelRepository(repo)
    checked = _check_repository(repository, name, precision, force, trust)  # on any host, TensorRT or not
    trt = load_tensorrt()  # before exporting anything: no point making ONNX that cannot be built
    require_cuda(device)

    parent, made_parent = ensure_variant(repository, name, "onnx", precision, progress=say)
    say(f"checking that {parent.variant} is a strongly typed {precision} graph")
    graph_report = check_graph_precision(parent.path, precision, parent.variant)
    input_spec, output_spec = single_io(parent.path)
    shapes = settings.profile.shapes(profile_input_dims(input_spec, settings.profile))

    variant = variant_name(name, "trt", precision)
    say(f"building {variant} with TensorRT {trt.__version__} (batch {settings.profile.min}..{settings.profile.max})")
    compiled = _compile(trt, parent.path, settings, input_spec.name, shapes, device, say)
    engine_report = parse_engine_information(compiled.engine_json)
    check_engine_precision(engine_report, precision, variant)

    record = _record(trt, parent, settings, compiled, (input_spec, output_spec), (engine_report, graph_report), device, checked)
    artifact = repository.write_variant(
        name,
        "trt",
        precision,
        write_model=lambda path: path.write_bytes(compiled.plan),
        config_pbtxt=trt_config_pbtxt(variant, input_spec, output_spec, settings.profile.max),
        sidecar=engine_sidecar(record),
        parent=parent.variant,
        force=force,
    )
    notes = (*(checked.warnings() if checked else ()), *compiled.messages.notes)
    return BuildResult(artifact=artifact, record=record, made_parent=made_parent, warnings=notes)


def _check_repository(repository: ModelRepository, name: str, precision: str, force: bool, trust: bool) -> FileCheck | None:
    """The engine can be written, and the existing ONNX parent's file is the one its sidecar
    hashed (its check; None when the pipeline will make the parent)."""
    repository.check_writable()
    repository.check_replaceable(name, "trt", precision, force=force)
    parent = repository.find(name, "onnx", precision)
    return check_model_file(parent, trust=trust) if parent is not None else None


def _record(
    trt: ModuleType,
    parent: Artifact,
    settings: BuildSettings,
    compiled: _Compiled,
    io,
    reports,
    device: int,
    checked: FileCheck | None,
) -> EngineBuildRecord:
    """The facts of this build: ``io`` is (input, output), ``reports`` (engine report, graph report);
    ``checked`` the parent's file as hashed before the build (None when the pipeline made it now)."""
    import torch

    return EngineBuildRecord(
        model=parent.model,
        precision=settings.precision,
        parent=parent.variant,
        parent_lineage=tuple(parent.lineage()),
        tensorrt_version=str(trt.__version__),
        gpu=gpu_info(device),
        input=io[0],
        output=io[1],
        settings=settings,
        build_seconds=compiled.seconds,
        engine_bytes=len(compiled.plan),
        device_memory_bytes=compiled.device_memory,
        engine=reports[0],
        graph=reports[1],
        strongly_typed_flag=uses_strongly_typed_flag(trt.__version__),
        timing_cache_reused=compiled.reused_cache,
        cuda_version=torch.version.cuda,
        parent_sha256=checked.sha256 if checked else parent.meta.get("sha256"),
        preprocessing=parent.meta.get("preprocessing"),
        extra={"tensorrt_warnings": len(compiled.messages.warnings), "warnings": list(compiled.messages.notes)},
    )


def build_variant(repo: ModelRepository, model: str, precision: str, **options: Any) -> BuildResult:
    """The pipeline's maker of ``<model>_trt_<precision>`` (see ``deploykit.pipeline.STAGES``)."""
    return build_engine(model, precision, repo=repo, **options)
