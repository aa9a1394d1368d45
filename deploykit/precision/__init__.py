"""Precision on the ONNX graph: strongly typed FP16 and explicitly quantized (Q/DQ) INT8.

TensorRT 11 builds only strongly typed networks (no FP16/INT8 builder flags, no implicit
calibrators): precision must be in the ONNX graph. So deploykit makes it once, here, and
every backend (TensorRT 11, TensorRT 10 with STRONGLY_TYPED on Jetson, ONNX Runtime,
OpenVINO) runs the same file, whose accuracy can therefore be measured on a CPU.

- :func:`make_variant`: ``<model>_onnx_fp32`` -> ``<model>_onnx_fp16|int8`` in a model
  repository (``deploykit quantize``, ``deploykit export --precision``).
- :func:`convert_onnx_fp16`, :func:`quantize_onnx_int8`: the same conversions on any ONNX file.
- :func:`load_calibration`: calibration data from an image folder, an array, or sample photos.
"""

from deploykit.precision.api import CalibrationInfo, PrecisionResult, make_variant
from deploykit.precision.calibration import CalibrationSet, load_calibration
from deploykit.precision.fp16 import Fp16Conversion, KeptNode, convert_onnx_fp16
from deploykit.precision.int8 import (
    CALIB_METHODS,
    Int8Quantization,
    quantize_onnx_int8,
    summarize_qdq,
)

__all__ = [
    "CALIB_METHODS",
    "CalibrationInfo",
    "CalibrationSet",
    "Fp16Conversion",
    "Int8Quantization",
    "KeptNode",
    "PrecisionResult",
    "convert_onnx_fp16",
    "load_calibration",
    "make_variant",
    "quantize_onnx_int8",
    "summarize_qdq",
]
