"""``deploykit import FILE.onnx``: an ONNX image classifier from elsewhere into the model repository.

The file is checked (``onnx.checker``, strict shape inference, opset, one N x C x H x W image
input and one (N, classes) output, a dynamic or fixed batch), run once with ONNX Runtime on the
sample photos (finite logits of the right shape at each batch size it takes), and written as
``<repo>/<name>_onnx_fp32/`` atomically, with a Triton config and a sidecar recording the source
file's hash, its I/O and the preprocessing (given, or ImageNet's with a note). Everything
downstream (quantize, build, bench, serve, repo check, parity) works on it; parity's reference
for an imported model is this FP32 file under ONNX Runtime.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deploykit.errors import CheckFailedError, UsageError
from deploykit.export.exporter import OnnxExport
from deploykit.export.job import (
    DEFAULT_MAX_BATCH_SIZE,
    ExportOptions,
    Progress,
    _sized,
    _step,
    run_export,
    scratch_space,
    write_into_repository,
)
from deploykit.export.record import Origin, sidecar, tensorrt_notes, triton_config

if TYPE_CHECKING:
    from deploykit.artifacts import Artifact

MIN_OPSET = 9  # the oldest opset TensorRT's ONNX parser takes; ONNX Runtime goes lower


@dataclass(frozen=True)
class ImportResult:
    """What ``deploykit import`` wrote; ``to_dict()`` is the JSON of ``--format json``."""

    model: str
    artifact: Artifact
    onnx: OnnxExport
    sha256: str  # of the source file followed by its external-data files
    notes: tuple[str, ...]
    check: dict[str, Any]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "variant": self.artifact.variant,
            "path": str(self.artifact.path),
            "source_sha256": self.sha256,
            "input": self.onnx.input.to_dict(),
            "output": self.onnx.output.to_dict(),
            "opset": self.onnx.opset,
            "unsupported_tensorrt_ops": list(self.onnx.unsupported_ops),
            "check": self.check,
            "notes": list(self.notes),
            "seconds": round(self.seconds, 3),
        }


def _image_io(path: Path, input_size: int | None, graph: Any) -> tuple[Any, Any, int, int]:
    """(input spec, output spec, input size, classes) of ``graph`` (the file at ``path``), refusing
    what is not one image in, one logits out."""
    from deploykit import onnx_graph

    inputs, outputs = onnx_graph.graph_io(graph)
    if len(inputs) != 1 or len(outputs) != 1:
        raise UsageError(
            f"{path.name} has {len(inputs)} inputs and {len(outputs)} outputs",
            hint="deploykit imports image classifiers: one N x C x H x W input, one (N, classes) output",
        )
    spec, out = inputs[0], outputs[0]
    if len(spec.shape) != 4 or spec.shape[1] != 3 or spec.dtype != "float32":
        raise UsageError(
            f"the input {spec.name!r} is {spec.dtype} {list(spec.shape)}, not a float32 N x 3 x H x W image batch",
            hint="deploykit imports image classifiers with NCHW RGB float input",
        )
    if len(out.shape) != 2 or out.shape[1] < 1:
        raise UsageError(f"the output {out.name!r} has shape {list(out.shape)}, not (N, classes) with a fixed class count")
    h, w = spec.shape[2], spec.shape[3]
    size = input_size or (h if h > 0 and h == w else None)
    if size is None:
        raise UsageError(f"the input {spec.name!r} has no fixed square size ({list(spec.shape)})", hint="pass --input-size N")
    if (h > 0 and h != size) or (w > 0 and w != size):
        raise UsageError(f"--input-size {size} does not fit the input {spec.name!r} {list(spec.shape)}")
    return spec, out, size, out.shape[1]


def _check_opset(path: Path, graph: Any) -> None:
    from deploykit.onnx_graph import main_opset

    opset = main_opset(graph)
    if opset is None or opset < MIN_OPSET:
        raise UsageError(
            f"{path.name} imports ONNX opset {opset}: deploykit's runtimes need opset {MIN_OPSET} or newer",
            hint="convert it with onnx.version_converter.convert_version(model, 18)",
        )


def _read_labels(path: str | os.PathLike | None, classes: int) -> list[str] | None:
    if path is None:
        return None
    lines = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    if len(lines) != classes:
        raise UsageError(f"{path} has {len(lines)} labels for a model with {classes} outputs", hint="one class name per line")
    return lines


def _smoke(path: Path, spec: Any, pre: Any, size: int) -> dict[str, Any]:
    """Run the file once on the sample photos with ONNX Runtime: finite logits at each batch it takes."""
    from deploykit.data import preprocess_batch, sample_images
    from deploykit.parity import infer_padded
    from deploykit.runtimes.onnxruntime_runner import OnnxRuntimeRunner

    images = sample_images()
    inputs = preprocess_batch([img for _, img in images], pre, size)
    batches = (1, len(inputs)) if spec.shape[0] < 0 else (spec.shape[0],)
    top1: list[int] = []
    with OnnxRuntimeRunner(path, name="onnxruntime:import") as runner:
        for b in batches:
            logits = np.concatenate([infer_padded(runner, inputs[i : i + b]) for i in range(0, len(inputs), b)])
            if not np.isfinite(logits).all():
                raise CheckFailedError(f"{path.name} gives non-finite outputs at batch {b} on the sample photos")
            top1 = [int(c) for c in logits.argmax(axis=1)]
    return {"runtime": "onnxruntime (CPUExecutionProvider)", "images_from": "scikit-image sample photos",
            "batch_sizes": list(batches), "top1": dict(zip([n for n, _ in images], top1, strict=True))}  # fmt: skip


def import_onnx(
    file: str | os.PathLike,
    *,
    name: str | None = None,
    repo: str | os.PathLike = "models",
    input_size: int | None = None,
    labels: str | os.PathLike | None = None,
    preprocessing: Any = None,
    max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
    progress: Progress | None = None,
) -> Any:
    """Check ``file`` and write it as ``<repo>/<name>_onnx_fp32/`` (``name`` defaults to the file's stem)."""
    from deploykit import onnx_io
    from deploykit.fileio import sha256_files
    from deploykit.onnx_graph import load_graph
    from deploykit.preprocessing import Preprocessing
    from deploykit.repository import validate_name

    path = Path(file)
    if path.suffix != ".onnx" or not path.is_file():
        raise UsageError(f"{path} is not an .onnx file")
    graph = load_graph(path)  # parsed once for the checks below (weights stay on disk when external)
    _check_opset(path, graph)
    name = name or re.sub(r"[^a-z0-9_]+", "_", path.stem.lower()).strip("_")
    validate_name(name)
    spec, out, size, classes = _image_io(path, input_size, graph)
    pre = _sized(preprocessing or Preprocessing(), size)
    # The file and its external-data files (if any), hashed as one: the weights are part of what was imported.
    sources = [path, *onnx_io.external_data_files(path, graph)]
    del graph  # the job loads the whole model itself
    entry = {"kind": "onnx", "file": path.name, "sha256": sha256_files(sources)}
    origin = Origin(None, f"onnx:{path.name}", entry["sha256"], entry, pre, classes, size)  # type: ignore[arg-type]
    origin.labels = _read_labels(labels, classes)
    origin.labels_source = str(labels) if labels else None
    if preprocessing is None:
        origin.notes.append("preprocessing defaulted to ImageNet's (resize 256/224, mean/std): record the right one")
    options = ExportOptions(batch=None if spec.shape[0] < 0 else spec.shape[0], max_batch_size=max_batch_size)

    def into(repository, name, origin, options, progress, start):
        return _import_into(repository, name, path, origin, options, progress, start)

    return run_export(name, lambda: origin, repo, options, progress, into=into)


def _import_into(repository: Any, name: str, path: Path, origin: Origin, options: ExportOptions, progress, start: float) -> ImportResult:
    """Check a copy of the file in scratch space, run it once, write it with config and sidecar."""
    import onnx

    from deploykit import onnx_io
    from deploykit.artifacts import now_iso, variant_name
    from deploykit.export.exporter import _describe

    with scratch_space(repository, name, "import") as scratch:
        _step(progress, f"checking {path.name}")
        model = onnx.load(str(path))  # external data next to the file comes along
        target = scratch / "model.onnx"
        # Checker and strict shape inference; weights over 64 MiB beside the graph, as an export writes them.
        external = onnx_io.write_checked(model, target, external_data_threshold=onnx_io.EXPORT_EXTERNAL_DATA_THRESHOLD)
        exported = _describe(target, external, options.batch is None, len(model.graph.node), (), start)
        del model
        _step(progress, "running it on the sample photos with ONNX Runtime")
        origin.notes.extend(tensorrt_notes(exported))
        check = _smoke(target, exported.input, origin.preprocessing, origin.input_size)
        config = triton_config(variant_name(name, "onnx", "fp32"), exported, options, origin)
        record = sidecar(origin, exported, None, "", config.max_batch_size, now_iso())
        record.update(parity=None, import_check=check, source_file=str(path.resolve()))
        artifact = write_into_repository(repository, name, exported, config, record, origin.source, progress)
    return ImportResult(name, artifact, exported, origin.weights_id, tuple(origin.notes), check, time.perf_counter() - start)
