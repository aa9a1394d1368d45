"""Everything decided in the parent process before a worker starts.

Order: the backend's row (does it run this precision on this device, is it installed), the
artifact (found, or made through :func:`deploykit.pipeline.ensure_variant`), the input size,
the analytic cost, the memory check. The outcome is a job (plain data for the worker) or a
skipped / failed :class:`BenchResult`.
"""

from __future__ import annotations

from typing import Any

from deploykit.bench.config import BenchConfig
from deploykit.bench.cost import check_memory, model_cost, traffic_bytes_per_batch
from deploykit.bench.results import BenchResult
from deploykit.errors import DeployKitError

# The engine profile bench builds when it makes a TensorRT engine itself: at least 1..32.
MIN_ENGINE_MAX_BATCH = 32


def one_line(exc: BaseException) -> str:
    if isinstance(exc, DeployKitError):
        return f"{exc.message} ({exc.hint})" if exc.hint else exc.message
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


def artifact_input_size(artifact: Any) -> int | None:
    """The square spatial size an artifact was made for, if its sidecar or (ONNX) graph says."""
    meta = getattr(artifact, "meta", {}) or {}
    info = meta.get("input") if isinstance(meta.get("input"), dict) else {}
    shape = info.get("shape") or info.get("dims")
    if isinstance(shape, (list, tuple)) and len(shape) == 4 and isinstance(shape[-1], int) and shape[-1] > 0:
        return int(shape[-1])
    if isinstance(info.get("size"), int):
        return int(info["size"])
    if artifact.format == "onnx":
        from deploykit.onnx_graph import input_size

        try:
            return input_size(artifact.path)
        except Exception:  # a corrupt file is reported by the runner that loads it
            return None
    return None


def _device_index(device: str) -> int:
    return int(device.split(":")[1]) if ":" in device else 0


def stage_options(config: BenchConfig, input_size: int | None) -> dict[tuple[str, str], dict[str, Any]]:
    """Maker options for the stages bench may run: export size and classes; an engine built for
    the run's largest batch (profile up to max(32, every batch of the run)) on the run's GPU."""
    max_batch = max(MIN_ENGINE_MAX_BATCH, config.batch, config.largest_batch or 0)
    engine = {"opt_batch": min(8, max_batch), "max_batch": max_batch, "device": _device_index(config.device)}
    options: dict[tuple[str, str], dict[str, Any]] = {
        ("onnx", "fp32"): {"input_size": input_size, "num_classes": config.num_classes},
    }
    for precision in ("fp32", "fp16", "int8"):
        options[("trt", precision)] = dict(engine)
    return options


def engine_max_batch(artifact: Any) -> int | None:
    """The largest batch a TensorRT engine's recorded profile accepts, if its sidecar says."""
    batch = ((getattr(artifact, "meta", None) or {}).get("profile") or {}).get("batch") or {}
    return batch.get("max") if isinstance(batch.get("max"), int) else None


def _rebuild_engine(repo: Any, config: BenchConfig, input_size: int | None, found: Any) -> Any:
    """An engine whose profile stops below the run's batch: rebuilt for it, or an error (--no-build)."""
    import importlib

    from deploykit.pipeline import stage

    limit = engine_max_batch(found)
    if limit is None or limit >= config.batch:
        return found
    st = stage("trt", config.precision)
    if not config.build:
        raise DeployKitError(
            f"{found.variant} accepts batches up to {limit}, not {config.batch}",
            hint=f"rebuild it with `{st.command_for(config.model)} --max-batch {config.batch}`, or drop --no-build",
        )
    module, function = st.make.split(":")
    options = stage_options(config, input_size)[("trt", config.precision)]
    getattr(importlib.import_module(module), function)(repo, config.model, config.precision, **options)
    return repo.get(config.model, "trt", config.precision)


def ensure_artifact(config: BenchConfig, input_size: int | None) -> Any:
    """The repository artifact a backend runs, made with its missing parents unless ``build`` is off;
    a TensorRT engine whose batch profile is too small for the run is rebuilt.

    Raises DeployKitError (missing with --no-build, or making it failed).
    """
    from deploykit.pipeline import ensure_variant
    from deploykit.repository import ModelRepository
    from deploykit.runtimes import get_backend

    fmt = get_backend(config.backend).format
    repo = ModelRepository(config.repo)
    if not config.build:
        artifact = repo.get(config.model, fmt, config.precision)  # raises, naming the command
    else:
        artifact, _ = ensure_variant(
            repo, config.model, fmt, config.precision, options=stage_options(config, input_size)
        )
    return _rebuild_engine(repo, config, input_size, artifact) if fmt == "trt" else artifact


def check_artifact_files(configs: list[BenchConfig]) -> None:
    """Refuse, before anything runs, an existing artifact whose file is not the one its sidecar
    hashed (UsageError naming the command that re-creates it, or ``--trust``).

    Only artifacts a configuration would run are checked; one the pipeline has yet to make is
    fresh, and a broken sidecar is that configuration's failure (reported by :func:`prepare`).
    """
    from deploykit.repository import BrokenVariantError, ModelRepository, check_model_file
    from deploykit.runtimes import get_backend

    seen: set[tuple[str, str, str, str]] = set()
    for config in configs:
        fmt = get_backend(config.backend).format
        key = (config.repo, config.model, str(fmt), config.precision)
        if fmt is None or key in seen or _skipped_reason(config):
            continue
        seen.add(key)
        try:
            artifact = ModelRepository(config.repo).find(config.model, fmt, config.precision)
        except BrokenVariantError:
            continue
        if artifact is not None:
            check_model_file(artifact, trust=config.trust)


def _skipped_reason(config: BenchConfig) -> str | None:
    """Why the configuration does not apply here (the backend's row, installed, device), or None."""
    from deploykit.runtimes import get_backend
    from deploykit.zoo import list_models

    row = get_backend(config.backend)
    reason = row.support_reason(config.device, config.precision) or row.unavailable_reason()
    if reason is None and row.format is None and config.model not in list_models():
        reason = f"{config.model} is not a zoo model: torch runs zoo networks; bench its ONNX variants"
    if reason is None and config.backend == "onnxruntime" and config.device_kind == "cuda":
        from deploykit.runtimes.onnxruntime_runner import device_unavailable_reason

        reason = device_unavailable_reason(config.device)
    return reason


def _cost_or_none(config: BenchConfig, input_size: int) -> dict[str, Any] | None:
    from deploykit.zoo import list_models

    if config.model not in list_models():
        return None  # an imported or module-exported model: no analytic cost
    try:
        return model_cost(config.model, input_size, config.num_classes)
    except DeployKitError:
        raise
    except Exception:  # analyze is another module's contract: a gap there must not stop timing
        return None


def _fill_job(config: BenchConfig, job: dict[str, Any]) -> str | None:
    """Add the artifact, input size and cost to ``job``; a reason when the batch will not fit."""
    from deploykit.runtimes import get_backend

    input_size = config.input_size
    if get_backend(config.backend).format is not None:
        artifact = ensure_artifact(config, input_size)
        job.update(artifact_path=str(artifact.path), artifact=artifact.variant, artifact_bytes=artifact.bytes)
        input_size = input_size or artifact_input_size(artifact)
    if input_size is None:
        from deploykit.zoo import get_card

        input_size = get_card(config.model).input_size
    job["input_size"] = input_size
    cost = _cost_or_none(config, input_size)
    job["macs_per_image"] = cost["macs"] if cost else None
    job["traffic_bytes_per_batch"] = traffic_bytes_per_batch(config.batch, cost)
    job["layer_macs"] = cost["layers"] if cost and config.per_layer else None
    return check_memory(config, input_size, cost)


def prepare(config: BenchConfig) -> dict[str, Any] | BenchResult:
    """Everything decided before a worker starts: a job dict, or a skipped / failed result."""
    reason = _skipped_reason(config)
    if reason:
        return BenchResult(config=config, status="skipped", reason=reason)
    job: dict[str, Any] = {"config": config.to_dict(), "artifact_path": None}
    try:
        reason = _fill_job(config, job)
    except Exception as exc:  # DeployKitError, or an export / quantize crash: this configuration's failure only
        reason = one_line(exc)
    if reason:
        return BenchResult(config=config, status="failed", reason=reason, artifact=job.get("artifact"))
    return job
