"""FP32 ONNX -> explicitly quantized INT8 ONNX (Q/DQ) with NVIDIA ModelOpt's ONNX PTQ.

TensorRT 11 has no INT8 builder flag and no implicit calibrator: INT8 comes from
QuantizeLinear/DequantizeLinear pairs in the graph. ModelOpt places them where TensorRT fuses
them (conv and GEMM inputs, residual adds, pooling), with symmetric per-channel weight scales
(``axis=0`` on conv weights) and per-tensor activation scales from calibration on ONNX
Runtime's CPU provider here.

Calibration methods:

- ``entropy`` (default) and ``max``: ModelOpt's own (histogram KL-divergence / absolute max).
- ``percentile``: ModelOpt 0.47 offers only entropy and max for ONNX INT8 (any other name
  silently becomes max), so deploykit does it in two honest steps: ModelOpt places Q/DQ and
  calibrates with ``max``, then each activation scale is replaced by the ``percentile``
  (default 99.999) of that tensor's absolute values over the same calibration set, from a
  2048-bin histogram over [0, max] collected with ONNX Runtime (the recipe of ORT's
  PercentileCalibrater and TensorRT's legacy percentile calibrator). Inputs of one Concat
  then get a common scale (their largest), as ModelOpt's concat elimination expects.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from deploykit.errors import DeployKitError, UsageError
from deploykit.onnx_graph import operator_counts
from deploykit.precision._modelopt import (
    modelopt_failed,
    modelopt_version,
    refuse_converted,
    require_modelopt,
    running_modelopt,
    save_checked,
)

CALIB_METHODS = ("entropy", "max", "percentile")
HIGH_PRECISION_DTYPES = ("fp32", "fp16")
DEFAULT_PERCENTILE = 99.999
CALIB_BATCH = 32  # samples per calibration step on ONNX Runtime
HISTOGRAM_BINS = 2048
INT8_MAX = 127  # symmetric signed INT8: scale = amax / 127


@dataclass(frozen=True)
class Int8Quantization:
    """What :func:`quantize_onnx_int8` wrote, read back from the graph."""

    path: Path
    method: str
    samples: int
    high_precision_dtype: str
    quantize_linear: int
    dequantize_linear: int
    quantized_nodes: dict[str, int]  # op type -> nodes with at least one Q/DQ input
    weight_quantizers: int
    weight_axes: tuple[int, ...]
    weight_storage: str | None  # int8 (DequantizeLinear-only weights) | fp32 (Q/DQ pairs) | mixed
    activation_quantizers: int
    operators: dict[str, int]
    tool: dict[str, str]
    seconds: float
    percentile: float | None = None
    percentile_tensors: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = {
            "path": str(self.path),
            "method": self.method,
            "calibration_samples": self.samples,
            "high_precision_dtype": self.high_precision_dtype,
            "qdq": {"QuantizeLinear": self.quantize_linear, "DequantizeLinear": self.dequantize_linear},
            "quantized_nodes": dict(self.quantized_nodes),
            "weights": {
                "quantizers": self.weight_quantizers,
                "per_channel_axes": list(self.weight_axes),
                "symmetric": True,
                "storage": self.weight_storage,
            },
            "activation_quantizers": self.activation_quantizers,
            "operators": dict(self.operators),
            "tool": dict(self.tool),
            "seconds": round(self.seconds, 3),
        }
        if self.percentile is not None:
            out["percentile"] = {"value": self.percentile, "tensors": self.percentile_tensors, "bins": HISTOGRAM_BINS}
        return out


def validate_method(method: str | None) -> str:
    method = method or "entropy"
    if method not in CALIB_METHODS:
        raise UsageError(f"unknown calibration method {method!r}", hint=f"choose from {', '.join(CALIB_METHODS)}")
    return method


def validate_high_precision(dtype: str | None) -> str:
    dtype = dtype or "fp32"
    if dtype not in HIGH_PRECISION_DTYPES:
        raise UsageError(f"unknown high-precision dtype {dtype!r}", hint=f"choose from {', '.join(HIGH_PRECISION_DTYPES)}")
    return dtype


def validate_percentile(percentile: float) -> float:
    if not 50.0 < float(percentile) <= 100.0:
        raise UsageError(f"percentile {percentile} is out of range", hint="use a value in (50, 100], e.g. 99.999")
    return float(percentile)


def _initializers(model) -> dict[str, Any]:
    return {t.name: t for t in model.graph.initializer}


def _weight_quantizers(model) -> tuple[list[Any], str | None]:
    """The nodes that quantize stored weights, and how the weights are stored.

    ``int8``: INT8 initializers behind a DequantizeLinear only (what deploykit writes); ``fp32``:
    FP32 initializers behind a QuantizeLinear/DequantizeLinear pair (ModelOpt's default form);
    ``mixed`` when both occur; None without quantized weights.
    """
    stored = set(_initializers(model)) | {n.output[0] for n in model.graph.node if n.op_type == "Constant"}
    on_weights = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear") and n.input[0] in stored]
    kinds = {"int8" if n.op_type == "DequantizeLinear" else "fp32" for n in on_weights}
    return on_weights, (kinds.pop() if len(kinds) == 1 else "mixed" if kinds else None)


def summarize_qdq(model) -> dict[str, Any]:
    """Counts that say how a Q/DQ graph is quantized (also used by tests and the TensorRT stage)."""
    inits = _initializers(model)
    dq_outputs = {node.output[0] for node in model.graph.node if node.op_type == "DequantizeLinear"}
    quantized: dict[str, int] = {}
    for node in model.graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear") and any(i in dq_outputs for i in node.input):
            quantized[node.op_type] = quantized.get(node.op_type, 0) + 1
    weights, storage = _weight_quantizers(model)
    axes = set()
    for node in weights:
        scale = inits.get(node.input[1])
        if scale is not None and len(scale.dims) == 1 and scale.dims[0] > 1:
            axes.add(int(next((a.i for a in node.attribute if a.name == "axis"), 1)))
    counts = operator_counts(model)
    return {
        "quantize_linear": counts.get("QuantizeLinear", 0),
        "dequantize_linear": counts.get("DequantizeLinear", 0),
        "quantized_nodes": dict(sorted(quantized.items())),
        "weight_quantizers": len(weights),
        "weight_axes": tuple(sorted(axes)),
        "weight_storage": storage,
        "activation_quantizers": counts.get("QuantizeLinear", 0) - sum(n.op_type == "QuantizeLinear" for n in weights),
        "operators": counts,
    }


def _batch_size(model, samples: int) -> tuple[int, str | None]:
    """The calibration batch: the graph's fixed batch, else up to CALIB_BATCH."""
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    if dim.HasField("dim_value") and dim.dim_value > 0:
        fixed = int(dim.dim_value)
        if samples < fixed:
            raise UsageError(f"the model's batch is fixed at {fixed}; calibration needs at least {fixed} samples")
        return fixed, f"the model's fixed batch {fixed}"
    return min(CALIB_BATCH, samples), None


def _copy_model(src: Path, folder: Path) -> Path:
    """Copy the model and its external data into ``folder`` (ModelOpt writes beside its input)."""
    from deploykit import onnx_io

    target = folder / "source.onnx"
    shutil.copyfile(src, target)
    for extra in onnx_io.external_data_files(src):
        if extra.is_file():
            shutil.copyfile(extra, folder / extra.name)
    return target


def _activation_quantizers(model) -> dict[str, list[Any]]:
    """Activation tensor -> the QuantizeLinear nodes reading it (weights, from initializers, left out)."""
    inits = _initializers(model)
    activation: dict[str, list[Any]] = {}
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear" and node.input[0] not in inits:
            activation.setdefault(node.input[0], []).append(node)
    return activation


def _histograms(source_path: Path, amax: dict[str, float], calibration: np.ndarray, batch: int) -> dict[str, np.ndarray]:
    """Histograms of |x| over [0, amax] of each tensor, run through the FP32 source on ONNX Runtime."""
    import onnx
    import onnxruntime as ort

    source = onnx.load(str(source_path))
    tensors = list(amax)
    existing = {o.name for o in source.graph.output}
    for t in tensors:
        if t not in existing:
            source.graph.output.append(onnx.helper.make_tensor_value_info(t, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(source.SerializeToString(), options, providers=["CPUExecutionProvider"])
    del source
    input_name = session.get_inputs()[0].name
    hist = {t: np.zeros(HISTOGRAM_BINS, np.int64) for t in tensors}
    for i in range(0, len(calibration), batch):
        outputs = session.run(tensors, {input_name: calibration[i : i + batch]})
        for t, value in zip(tensors, outputs, strict=True):
            if amax[t] > 0:
                counts, _ = np.histogram(np.abs(value), bins=HISTOGRAM_BINS, range=(0.0, amax[t]))
                hist[t] += counts
    return hist


def _thresholds(hist: dict[str, np.ndarray], amax: dict[str, float], percentile: float) -> dict[str, float]:
    """Tensor -> the scale that clips it at ``percentile`` of its histogram."""
    new_scale = {}
    for t, counts in hist.items():
        total = int(counts.sum())
        if total == 0 or amax[t] <= 0:
            continue
        index = int(np.searchsorted(np.cumsum(counts), percentile / 100.0 * total))
        new_scale[t] = min((index + 1) * amax[t] / HISTOGRAM_BINS, amax[t]) / INT8_MAX
    return new_scale


def _share_concat_scales(model, q_output_to_tensor: dict[str, str], new_scale: dict[str, float]) -> None:
    """Concat inputs share one scale (ModelOpt's concat elimination expects it): the largest."""
    dq_to_q = {node.output[0]: node.input[0] for node in model.graph.node if node.op_type == "DequantizeLinear"}
    for node in model.graph.node:
        if node.op_type != "Concat":
            continue
        group = [q_output_to_tensor.get(dq_to_q.get(i, "")) for i in node.input]
        group = [t for t in group if t in new_scale]
        if len(group) > 1:
            common = max(new_scale[t] for t in group)
            for t in group:
                new_scale[t] = common


def _set_scales(model, activation: dict[str, list[Any]], q_output_to_tensor: dict[str, str], new_scale: dict[str, float]) -> None:
    """Write the new scales into the Q and DQ scale initializers of each tensor.

    Q and DQ of one tensor usually read the same scale initializer (ORT's QDQ format); a DQ
    with its own copy gets the same value, so the pair stays consistent.
    """
    from onnx import numpy_helper

    inits = _initializers(model)
    scale_of: dict[str, float] = {}
    for t, scale in new_scale.items():
        for q in activation[t]:
            scale_of[q.input[1]] = scale
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in q_output_to_tensor:
            t = q_output_to_tensor[node.input[0]]
            if t in new_scale:
                scale_of[node.input[1]] = new_scale[t]
    for name, scale in scale_of.items():
        old = numpy_helper.to_array(inits[name])
        inits[name].CopyFrom(numpy_helper.from_array(np.full(old.shape, scale, dtype=old.dtype), name))


def _percentile_scales(source_path: Path, model, calibration: np.ndarray, batch: int, percentile: float) -> int:
    """Replace the activation scales of ``model`` (calibrated with max) by percentile scales.

    Returns the number of tensors whose scale was set. The max calibration gives each
    tensor's range [0, amax]; one more pass over the data fills a histogram of |x| on it.
    """
    import onnx
    from onnx import numpy_helper

    inits = _initializers(model)
    activation = _activation_quantizers(model)
    source = onnx.load(str(source_path), load_external_data=False)
    known = {i.name for i in source.graph.input} | {o for n in source.graph.node for o in n.output}
    del source
    amax = {
        t: float(np.max(numpy_helper.to_array(inits[qs[0].input[1]]).astype(np.float64))) * INT8_MAX
        for t, qs in activation.items()
        if t in known
    }
    new_scale = _thresholds(_histograms(source_path, amax, calibration, batch), amax, percentile)
    q_output_to_tensor = {q.output[0]: t for t, qs in activation.items() for q in qs}
    _share_concat_scales(model, q_output_to_tensor, new_scale)
    _set_scales(model, activation, q_output_to_tensor, new_scale)
    return len(new_scale)


def _check_calibration(calibration: Any) -> np.ndarray:
    calibration = np.asarray(calibration)
    if calibration.ndim != 4 or not np.issubdtype(calibration.dtype, np.floating) or len(calibration) == 0:
        raise UsageError(f"calibration data must be a non-empty float N x C x H x W array, got {calibration.shape} {calibration.dtype}")
    return np.ascontiguousarray(calibration, dtype=np.float32)


def _modelopt_quantize(local: Path, out: Path, calibration: np.ndarray, method: str, input_name: str, batch: int, **options: Any) -> None:
    """ModelOpt's ONNX PTQ on ``local`` (calibrating on the CPU in batches of ``batch``), writing ``out``."""
    from deploykit import onnx_io

    shape = "x".join(str(d) for d in (batch, *calibration.shape[1:]))
    external = bool(onnx_io.external_data_files(local))  # the copy carries the source's data files
    with running_modelopt("INT8 quantization") as captured:
        from modelopt.onnx.quantization import quantize

        quantize(
            onnx_path=str(local),
            quantize_mode="int8",
            calibration_data=calibration,
            calibration_method="max" if method == "percentile" else method,
            calibration_shapes=f"{input_name}:{shape}",
            calibration_eps=["cpu"],
            output_path=str(out),
            use_external_data_format=external,
            log_level="WARNING",
            **options,
        )
    if not out.is_file():
        raise modelopt_failed("INT8 quantization", RuntimeError("no output model was written"), captured)


def _source_facts(src_path: Path, samples: int) -> tuple[str, int, int]:
    """(input name, calibration batch, samples usable) of the FP32 source and ``samples`` inputs.

    ModelOpt splits the set into len // batch steps (np.array_split): with a dynamic batch a
    step may hold a few more samples; a fixed batch needs whole steps.
    """
    from deploykit.onnx_graph import load_graph

    source = load_graph(src_path)  # DeployKitError for a missing, corrupt or truncated file
    refuse_converted(source, src_path)
    if len(source.graph.input) != 1:
        raise UsageError(f"{src_path} has {len(source.graph.input)} inputs; deploykit calibrates one image input")
    batch, fixed = _batch_size(source, samples)
    return source.graph.input[0].name, batch, samples - samples % batch if fixed else samples


def _summary_of(model, src_path: Path) -> dict[str, Any]:
    """:func:`summarize_qdq` of ModelOpt's output; DeployKitError when it quantized nothing."""
    summary = summarize_qdq(model)
    if not summary["quantize_linear"] + summary["dequantize_linear"]:
        raise DeployKitError(
            f"ModelOpt found nothing to quantize in {src_path} (no Conv, Gemm or MatMul it would place Q/DQ on)",
            hint="keep this model in FP32 or FP16",
        )
    return summary


def _tool(batch: int) -> dict[str, str]:
    return {
        "name": "NVIDIA ModelOpt ONNX PTQ (modelopt.onnx.quantization.quantize, quantize_mode=int8)",
        "version": modelopt_version(),
        "calibration_provider": "onnxruntime CPUExecutionProvider",
        "calibration_batch": str(batch),
    }


def quantize_onnx_int8(
    src_path: str | os.PathLike,
    dst_path: str | os.PathLike,
    calibration: np.ndarray,
    method: str = "entropy",
    *,
    high_precision_dtype: str = "fp32",
    percentile: float = DEFAULT_PERCENTILE,
    int8_weights: bool = True,
) -> Int8Quantization:
    """Quantize the FP32 ONNX model at ``src_path`` to INT8 Q/DQ, calibrated on ``calibration``.

    ``calibration`` is N x C x H x W float32, preprocessed like the model's input. The parts
    left unquantized stay ``high_precision_dtype`` (fp32 for CPU runtimes; fp16 for a
    TensorRT-bound model where FP16 is faster). Raises UsageError for a bad method or data,
    or a source that is already FP16/quantized; MissingDependencyError (``[int8]`` extra)
    without ModelOpt; DeployKitError when ModelOpt fails or finds nothing to quantize.
    ``dst_path`` is written only on success.

    ``int8_weights`` (default) stores the weights as INT8 initializers behind a
    DequantizeLinear only (ModelOpt's ``dq_only``): about a quarter of the FP32 file, the
    same numbers as the Q/DQ pair it replaces (the pair is what a runtime folds anyway), and
    the form TensorRT, ONNX Runtime and OpenVINO read. False keeps FP32 weights behind
    QuantizeLinear/DequantizeLinear pairs (ModelOpt's default).
    """
    method = validate_method(method)
    high_precision_dtype = validate_high_precision(high_precision_dtype)
    percentile = validate_percentile(percentile)
    calibration = _check_calibration(calibration)
    require_modelopt("INT8 quantization (ModelOpt ONNX PTQ)")
    import onnx

    start = time.perf_counter()
    src_path, dst_path = Path(src_path), Path(dst_path)
    input_name, batch, usable = _source_facts(src_path, len(calibration))
    calibration = calibration[:usable]
    work = Path(tempfile.mkdtemp(prefix=".deploykit-int8-", dir=dst_path.parent if dst_path.parent.is_dir() else None))
    try:
        local, out = _copy_model(src_path, work), work / "quantized.onnx"
        options = {"high_precision_dtype": high_precision_dtype, "dq_only": bool(int8_weights)}
        _modelopt_quantize(local, out, calibration, method, input_name, batch, **options)
        model = onnx.load(str(out))
        replaced = _percentile_scales(local, model, calibration, batch, percentile) if method == "percentile" else 0
        summary = _summary_of(model, src_path)
        save_checked(model, dst_path)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Int8Quantization(
        path=dst_path,
        method=method,
        samples=usable,
        high_precision_dtype=high_precision_dtype,
        tool=_tool(batch),
        seconds=time.perf_counter() - start,
        percentile=percentile if method == "percentile" else None,
        percentile_tensors=replaced,
        **summary,
    )
