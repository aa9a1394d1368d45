"""The precision recipes as a table: one row per precision a FP32 ONNX parent can be turned into.

A row says which converter makes the graph, which options it takes, how much data it loads by
default and what the variant's sidecar records about it (``precision_recipe``). Adding a
precision is adding a row; :func:`deploykit.precision.make_variant` only asks the row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from deploykit.errors import UsageError
from deploykit.precision.calibration import DEFAULT_CALIB_SIZE, CalibrationSet
from deploykit.precision.fp16 import REFERENCE_SAMPLES
from deploykit.precision.int8 import validate_high_precision, validate_method, validate_percentile

Progress = Callable[[str], None]
HIGH_PRECISION_REASONS = {
    "fp32": (
        "layers left unquantized run in FP32: exact on CPU runtimes (ONNX Runtime, OpenVINO), "
        "where FP16 arithmetic is emulated or slow"
    ),
    "fp16": (
        "layers left unquantized run in FP16: for TensorRT on GPUs, where FP16 beats FP32; "
        "CPU runtimes run it slower and a little less exactly"
    ),
}
STRONGLY_TYPED_NOTE = (
    "precision lives in the graph (FP16 tensors / Q/DQ nodes): TensorRT 11 builds it as is "
    "(every network is strongly typed); TensorRT 10 needs the STRONGLY_TYPED network flag"
)
INT8_SCHEME = (
    "symmetric per-channel INT8 weights (axis 0 of conv weights), stored as INT8 behind DequantizeLinear; "
    "symmetric per-tensor activations (QuantizeLinear/DequantizeLinear)"
)


@dataclass(frozen=True)
class RecipeOptions:
    """The validated options of one conversion (those that do not apply to a recipe are None)."""

    keep_io_types: bool
    method: str | None = None  # INT8 calibration: entropy | max | percentile
    high_precision_dtype: str | None = None  # INT8: precision of the unquantized layers
    percentile: float | None = None  # INT8 with method percentile

    def facts(self) -> dict[str, Any]:
        """What the options contribute to the conversion cache key."""
        return {
            "method": self.method,
            "percentile": self.percentile,
            "keep_io_types": self.keep_io_types,
            "high_precision_dtype": self.high_precision_dtype,
        }


@dataclass(frozen=True)
class Recipe:
    """One precision: its converter and what the variant records about it."""

    precision: str
    tool: str  # what ModelOpt is needed for (the MissingDependencyError message)
    data_step: str  # the progress line while the data loads
    default_size: int  # samples loaded when the user does not say
    purpose: str  # what the data was used for, recorded in the sidecar
    calibrates: bool  # the data sets the ranges (INT8), not only checks them (FP16)
    make_options: Callable[..., RecipeOptions]
    convert: Callable[[Path, Path, CalibrationSet, RecipeOptions, Progress], dict[str, Any]]
    details: Callable[[dict[str, Any], RecipeOptions], dict[str, Any]]  # the recipe's own record
    summary: Callable[[dict[str, Any]], dict[str, Any]] = lambda conversion: {}

    def record(self, conversion: dict[str, Any], options: RecipeOptions) -> dict[str, Any]:
        """The sidecar's ``precision_recipe``: the tool, the strongly typed note, the row's details."""
        return {"tool": conversion["tool"], "strongly_typed": STRONGLY_TYPED_NOTE, **self.details(conversion, options)}


# ---- FP16: ModelOpt AutoCast --------------------------------------------------------------------
def _fp16_options(*, keep_io_types: bool, **_ignored: Any) -> RecipeOptions:
    return RecipeOptions(keep_io_types=keep_io_types)


def _fp16_convert(src: Path, dst: Path, calib: CalibrationSet, options: RecipeOptions, say: Progress) -> dict[str, Any]:
    from deploykit.precision.fp16 import convert_onnx_fp16

    say("converting to FP16 (ModelOpt AutoCast)")
    report = convert_onnx_fp16(src, dst, options.keep_io_types, reference_data=calib.array, reference_source=calib.source)
    return report.to_dict()


def _fp16_details(conversion: dict[str, Any], options: RecipeOptions) -> dict[str, Any]:
    keys = ("rules", "kept_fp32", "nodes", "nodes_fp16", "initializers")
    return {"keep_io_types": options.keep_io_types, **{k: conversion[k] for k in keys}}


# ---- INT8: ModelOpt ONNX PTQ (Q/DQ) -------------------------------------------------------------
def _int8_options(*, calib_method: str | None, high_precision_dtype: str | None, percentile: float, **_ignored: Any) -> RecipeOptions:
    method = validate_method(calib_method)
    percentile = validate_percentile(percentile)  # checked even when unused, as quantize_onnx_int8 does
    return RecipeOptions(
        keep_io_types=True,  # INT8 graphs always keep FP32 inputs and outputs
        method=method,
        high_precision_dtype=validate_high_precision(high_precision_dtype),
        percentile=percentile if method == "percentile" else None,
    )


def _int8_convert(src: Path, dst: Path, calib: CalibrationSet, options: RecipeOptions, say: Progress) -> dict[str, Any]:
    from deploykit.precision.int8 import DEFAULT_PERCENTILE, quantize_onnx_int8

    say(f"calibrating on {calib.size} samples ({options.method}) and quantizing to INT8 (ModelOpt)")
    report = quantize_onnx_int8(
        src,
        dst,
        calib.array,
        options.method,
        high_precision_dtype=options.high_precision_dtype,
        percentile=options.percentile or DEFAULT_PERCENTILE,
    )
    return report.to_dict()


def _int8_summary(conversion: dict[str, Any]) -> dict[str, Any]:
    return {k: conversion[k] for k in ("qdq", "quantized_nodes", "weights", "activation_quantizers")}


def _int8_details(conversion: dict[str, Any], options: RecipeOptions) -> dict[str, Any]:
    details = {
        "method": options.method,
        "high_precision_dtype": options.high_precision_dtype,
        "high_precision_reason": HIGH_PRECISION_REASONS[options.high_precision_dtype],
        "keep_io_types": True,
        "scheme": INT8_SCHEME,
        **_int8_summary(conversion),
    }
    if "percentile" in conversion:
        details["percentile"] = conversion["percentile"]
    return details


RECIPES: dict[str, Recipe] = {
    r.precision: r
    for r in (
        # precision, ModelOpt needed for, progress line, default samples, data purpose, calibrates,
        # options, converter, sidecar details[, result summary]
        Recipe("fp16", "FP16 conversion (ModelOpt AutoCast)", "loading reference data", REFERENCE_SAMPLES,
               "fp16 range check (activations above data_max stay FP32)", False,
               _fp16_options, _fp16_convert, _fp16_details),
        Recipe("int8", "INT8 quantization (ModelOpt ONNX PTQ)", "loading calibration data", DEFAULT_CALIB_SIZE,
               "int8 calibration", True,
               _int8_options, _int8_convert, _int8_details, _int8_summary),
    )
}


def recipe(precision: str, model: str = "MODEL") -> Recipe:
    """The row for ``precision``; UsageError for fp32 (made by export) or an unknown name."""
    if precision == "fp32":
        raise UsageError("the FP32 variant is made by export", hint=f"deploykit export {model}")
    if precision not in RECIPES:
        raise UsageError(f"unknown precision {precision!r} for quantize", hint=f"choose {' or '.join(RECIPES)}")
    return RECIPES[precision]
