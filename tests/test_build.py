"""The TensorRT build step, tested from both sides without TensorRT or a GPU.

What goes in: the ONNX graphs the builder receives must be strongly typed (FP16 weights for
fp16, Q/DQ pairs with per-channel weight scales for int8), checked on real ONNX graphs.
What comes out: the engine inspector's JSON (fixtures in the format TensorRT writes, taken
from NVIDIA's trt-engine-explorer samples), the sidecar, config.pbtxt, the GPU/version check.
And the command itself: without TensorRT it fails with a message naming how to get it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from deploykit.errors import CheckFailedError, DeployKitError, MissingDependencyError, UsageError
from deploykit.machine import GpuInfo
from deploykit.onnx_graph import TensorSpec, single_io
from deploykit.tensorrt.compatibility import (
    EngineTarget,
    engine_mismatches,
    ensure_engine_compatible,
    target_from_sidecar,
)
from deploykit.tensorrt.loading import (
    check_tensorrt_version,
    parse_version,
    same_tensorrt_release,
    trt_dtype_name,
    uses_strongly_typed_flag,
)
from deploykit.tensorrt.preflight import (
    check_graph_precision,
    format_parser_errors,
    inspect_graph_precision,
    parser_failure,
)
from deploykit.tensorrt.profiles import (
    BatchProfile,
    batch_profile,
    build_settings,
    profile_input_dims,
)
from deploykit.tensorrt.record import EngineBuildRecord, engine_sidecar, trt_config_pbtxt
from deploykit.tensorrt.report import (
    LayerTimes,
    check_engine_precision,
    parse_engine_information,
    type_from_description,
)

# --------------------------------------------------------------------------------------
# Profile shapes from the flags
# --------------------------------------------------------------------------------------


def test_batch_profile_shapes():
    profile = batch_profile(1, 8, 32)
    assert profile == BatchProfile(1, 8, 32)
    assert profile.shapes((3, 224, 224)) == {
        "min": (1, 3, 224, 224),
        "opt": (8, 3, 224, 224),
        "max": (32, 3, 224, 224),
    }
    assert profile.contains(1) and profile.contains(32) and not profile.contains(33)
    assert batch_profile(4, 4, 4).shapes((3, 32, 32))["max"] == (4, 3, 32, 32)


@pytest.mark.parametrize(
    "min_batch, opt_batch, max_batch, message",
    [
        (8, 4, 32, "min <= opt <= max"),
        (1, 64, 32, "min <= opt <= max"),
        (0, 8, 32, "--min-batch 0 is out of range"),
        (1, 8, 5000, "--max-batch 5000 is out of range"),
        (-1, 8, 32, "out of range"),
        (1.5, 8, 32, "must be an integer"),
    ],
)
def test_bad_batch_combinations_are_usage_errors(min_batch, opt_batch, max_batch, message):
    with pytest.raises(UsageError, match=message) as info:
        batch_profile(min_batch, opt_batch, max_batch)
    assert info.value.exit_code == 2


def test_build_settings_validation():
    settings = build_settings("int8", 1, 8, 32, workspace_mb=1024, opt_level=5, timing_cache="cache.bin")
    assert settings.workspace_mb == 1024 and settings.opt_level == 5
    assert settings.timing_cache == "cache.bin" and settings.profiling_verbosity == "detailed"
    with pytest.raises(UsageError, match="--opt-level 6"):
        build_settings("fp32", opt_level=6)
    with pytest.raises(UsageError, match="--workspace-mb 0"):
        build_settings("fp32", workspace_mb=0)
    with pytest.raises(UsageError, match="unknown precision"):
        build_settings("fp64")
    with pytest.raises(UsageError, match="unknown profiling verbosity"):
        build_settings("fp32", profiling_verbosity="verbose")
    # without detailed verbosity an FP32 fallback could not be seen: refuse before building
    with pytest.raises(UsageError, match="cannot verify"):
        build_settings("fp16", profiling_verbosity="layer_names_only")
    assert build_settings("fp32", profiling_verbosity="none").profiling_verbosity == "none"


def test_timing_cache_must_be_a_file(tmp_path):
    with pytest.raises(UsageError, match="is not a file"):
        build_settings("fp32", timing_cache=tmp_path)


def test_profile_input_dims_against_the_graph():
    dynamic = TensorSpec("input", (-1, 3, 32, 32), "float32")
    assert profile_input_dims(dynamic, batch_profile(1, 8, 32)) == (3, 32, 32)
    fixed = TensorSpec("input", (1, 3, 32, 32), "float32")
    with pytest.raises(UsageError, match="fixed batch size of 1"):
        profile_input_dims(fixed, batch_profile(1, 8, 32))
    assert profile_input_dims(fixed, batch_profile(1, 1, 1)) == (3, 32, 32)
    with pytest.raises(UsageError, match="dynamic dimensions besides the batch"):
        profile_input_dims(TensorSpec("input", (-1, 3, -1, -1), "float32"), batch_profile())


# --------------------------------------------------------------------------------------
# TensorRT versions: strong typing flag on 10.x, nothing on 11.x
# --------------------------------------------------------------------------------------


def test_versions_and_strongly_typed_flag():
    assert parse_version("10.8.0.43") == (10, 8, 0, 43)
    assert parse_version("11.0.0rc1") == (11, 0, 0)
    assert uses_strongly_typed_flag("10.3.0")  # JetPack 6.1/6.2
    assert uses_strongly_typed_flag("10.16.1.11")
    assert not uses_strongly_typed_flag("11.0.0.1")
    assert not uses_strongly_typed_flag("11.4.0.106")
    with pytest.raises(DeployKitError, match="too old"):
        check_tensorrt_version("8.6.1")
    with pytest.raises(DeployKitError, match="too old"):
        check_tensorrt_version("10.0.1")  # no device_memory_size_v2 yet
    with pytest.raises(DeployKitError, match="cannot read"):
        parse_version("unknown")


# --------------------------------------------------------------------------------------
# The strongly typed graphs the builder receives (real ONNX, built here)
# --------------------------------------------------------------------------------------


def _tiny_graph(kind: str):
    """Conv(3->4, 3x3) -> Relu -> GlobalAveragePool -> Flatten -> Gemm(4->10), N x 3 x 8 x 8.

    ``kind``: "fp32"; "fp16" (FP16 weights, Casts keep the I/O FP32, as ModelOpt AutoCast
    writes it); "int8" (Q->DQ on FP32 weights with per-channel scales on axis 0 and Q/DQ on
    activations, as ModelOpt's INT8 PTQ writes it); "int8_stored" (INT8 weights stored as
    initializers feeding DequantizeLinear); "int8_per_tensor"; "int8_weights_only".
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = rng.standard_normal((4, 3, 3, 3)).astype(np.float32) * 0.2
    b = rng.standard_normal(4).astype(np.float32) * 0.1
    fw = rng.standard_normal((10, 4)).astype(np.float32) * 0.2
    fb = rng.standard_normal(10).astype(np.float32) * 0.1
    nodes, inits = [], []

    def init(name, array):
        inits.append(numpy_helper.from_array(array, name))
        return name

    def qdq(name, source, scale, axis=None, zero=None):
        scale_name = init(f"{name}_scale", scale)
        zp = init(f"{name}_zp", zero if zero is not None else np.zeros(scale.shape, np.int8))
        kw = {"axis": axis} if axis is not None else {}
        nodes.append(helper.make_node("QuantizeLinear", [source, scale_name, zp], [f"{name}_q"], name=f"{name}_Q", **kw))
        nodes.append(helper.make_node("DequantizeLinear", [f"{name}_q", scale_name, zp], [f"{name}_dq"], name=f"{name}_DQ", **kw))
        return f"{name}_dq"

    x, conv_w, fc_w, bias, fc_bias = "input", "conv.weight", "fc.weight", "conv.bias", "fc.bias"
    if kind == "fp16":
        nodes.append(helper.make_node("Cast", ["input"], ["input_fp16"], to=TensorProto.FLOAT16, name="cast_in"))
        x = "input_fp16"
        init(conv_w, w.astype(np.float16))
        init(bias, b.astype(np.float16))
        init(fc_w, fw.astype(np.float16))
        init(fc_bias, fb.astype(np.float16))
    else:
        init(bias, b)
        init(fc_bias, fb)
        if kind in ("fp32", "int8_weights_only"):
            init(conv_w, w)
            init(fc_w, fw)
        if kind.startswith("int8"):
            channel_scale = np.abs(w).reshape(4, -1).max(axis=1) / 127
            fc_scale = np.abs(fw).max(axis=1) / 127
            if kind in ("int8", "int8_weights_only"):
                if kind == "int8":
                    init(conv_w, w)
                    init(fc_w, fw)
                    x = qdq("input", x, np.array(0.05, np.float32), zero=np.array(0, np.int8))
                conv_w = qdq("conv.weight", conv_w, channel_scale.astype(np.float32), axis=0)
                fc_w = qdq("fc.weight", fc_w, fc_scale.astype(np.float32), axis=0)
            elif kind == "int8_stored":
                x = qdq("input", x, np.array(0.05, np.float32), zero=np.array(0, np.int8))
                q = np.clip(np.round(w / channel_scale[:, None, None, None]), -127, 127).astype(np.int8)
                init("conv.weight_int8", q)
                init("conv.weight_scale", channel_scale.astype(np.float32))
                init("conv.weight_zp", np.zeros(4, np.int8))
                nodes.append(
                    helper.make_node(
                        "DequantizeLinear", ["conv.weight_int8", "conv.weight_scale", "conv.weight_zp"], ["conv.weight_dq"], axis=0
                    )
                )
                conv_w = "conv.weight_dq"
                init(fc_w, fw)
            elif kind == "int8_per_tensor":
                init(conv_w, w)
                init(fc_w, fw)
                x = qdq("input", x, np.array(0.05, np.float32), zero=np.array(0, np.int8))
                conv_w = qdq("conv.weight", conv_w, np.array(np.abs(w).max() / 127, np.float32), zero=np.array(0, np.int8))
    nodes += [
        helper.make_node("Conv", [x, conv_w, bias], ["conv"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
    ]
    fc_in = "flat"
    if kind == "int8":
        fc_in = qdq("flat", fc_in, np.array(0.02, np.float32), zero=np.array(0, np.int8))
    out = "logits_fp16" if kind == "fp16" else "logits"
    nodes.append(helper.make_node("Gemm", [fc_in, fc_w, fc_bias], [out], transB=1, name="fc"))
    if kind == "fp16":
        nodes.append(helper.make_node("Cast", [out], ["logits"], to=TensorProto.FLOAT, name="cast_out"))
    graph = helper.make_graph(
        nodes,
        f"tiny_{kind}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model, full_check=True)
    return model


@pytest.fixture(scope="module")
def tiny_graphs():
    return {k: _tiny_graph(k) for k in ("fp32", "fp16", "int8", "int8_stored", "int8_per_tensor", "int8_weights_only")}


def test_tiny_graphs_are_real_and_agree(tiny_graphs):
    """The fixtures are valid models that compute the same classifier (so the check sees real graphs)."""
    ort = pytest.importorskip("onnxruntime")
    x = np.random.default_rng(1).standard_normal((2, 3, 8, 8)).astype(np.float32)
    outs = {}
    for kind, model in tiny_graphs.items():
        session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        outs[kind] = session.run(None, {"input": x})[0]
        assert outs[kind].shape == (2, 10)
    for kind in ("fp16", "int8", "int8_stored", "int8_weights_only"):
        assert np.allclose(outs[kind], outs["fp32"], atol=0.05), kind


def test_fp32_graph_report(tiny_graphs):
    report = check_graph_precision(tiny_graphs["fp32"], "fp32")
    assert (report.weighted_nodes, report.fp32_weights, report.fp16_weights, report.quantized_weights) == (2, 2, 0, 0)
    with pytest.raises(CheckFailedError, match="no Conv/Gemm/MatMul weight is stored as FLOAT16") as info:
        check_graph_precision(tiny_graphs["fp32"], "fp16", "tiny_onnx_fp16")
    assert "tiny_onnx_fp16" in info.value.message and "deploykit quantize" in info.value.hint
    with pytest.raises(CheckFailedError, match="no QuantizeLinear/DequantizeLinear"):
        check_graph_precision(tiny_graphs["fp32"], "int8")


def test_fp16_graph_carries_fp16_weights(tiny_graphs):
    report = check_graph_precision(tiny_graphs["fp16"], "fp16")
    assert report.fp16_weights == report.weighted_nodes == 2 and report.fp32_weights == 0
    with pytest.raises(CheckFailedError, match="stores 2 weights as FLOAT16"):
        check_graph_precision(tiny_graphs["fp16"], "fp32")


@pytest.mark.parametrize("kind", ["int8", "int8_stored"])
def test_int8_graph_has_qdq_and_per_channel_weight_scales(tiny_graphs, kind):
    report = check_graph_precision(tiny_graphs[kind], "int8")
    assert report.quantized_weights >= 1
    assert report.per_channel == report.quantized_weights and report.per_tensor == 0
    assert report.quantized_activations >= 1 and report.qdq_pairs >= 1
    with pytest.raises(CheckFailedError, match="contains Q/DQ nodes"):
        check_graph_precision(tiny_graphs[kind], "fp32")


def test_int8_graph_weaknesses(tiny_graphs):
    per_tensor = check_graph_precision(tiny_graphs["int8_per_tensor"], "int8")
    assert per_tensor.per_tensor == 1 and per_tensor.per_channel == 0
    assert any("one scale per tensor" in note for note in per_tensor.notes)
    assert any("left unquantized" in note for note in per_tensor.notes)
    with pytest.raises(CheckFailedError, match="no Conv/Gemm input is behind a Q/DQ pair"):
        check_graph_precision(tiny_graphs["int8_weights_only"], "int8")


def test_graph_check_reads_files_and_io(tmp_path, tiny_graphs):
    import onnx

    path = tmp_path / "model.onnx"
    onnx.save(tiny_graphs["int8"], str(path))
    assert inspect_graph_precision(path, "int8").ok
    assert single_io(path) == (
        TensorSpec("input", (-1, 3, 8, 8), "float32"),
        TensorSpec("logits", (-1, 10), "float32"),
    )
    with pytest.raises(UsageError, match="no ONNX model"):
        inspect_graph_precision(tmp_path / "missing.onnx", "fp32")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(DeployKitError, match="not a readable ONNX model"):
        inspect_graph_precision(tmp_path / "junk.onnx", "fp32")


@pytest.mark.slow
def test_graph_check_on_deploykit_precision_output(tmp_path):
    """The real pipeline's output (export -> precision) passes the check the builder runs."""
    precision_module = pytest.importorskip("deploykit.precision")
    if not hasattr(precision_module, "make_variant"):
        pytest.skip("deploykit.precision.make_variant has not landed")
    pytest.importorskip("modelopt")
    from deploykit.export import export_model
    from deploykit.pipeline import ensure_variant
    from deploykit.repository import ModelRepository

    repo = ModelRepository(tmp_path / "models")
    export_model("resnet18", repo=repo.root, input_size=32, num_classes=10)
    for precision in ("fp16", "int8"):
        artifact, made = ensure_variant(repo, "resnet18", "onnx", precision)
        assert made and artifact.path.is_file()
        report = check_graph_precision(artifact.path, precision, artifact.variant)
        if precision == "fp16":
            assert report.fp16_weights > 0
        else:
            assert report.quantized_weights > 0 and report.per_channel == report.quantized_weights
            assert report.quantized_activations > 0


# --------------------------------------------------------------------------------------
# The engine inspector's JSON
# --------------------------------------------------------------------------------------
# Layer entries follow TensorRT 10.x's detailed JSON as in NVIDIA/TensorRT's
# tools/experimental/trt-engine-explorer samples (resnet18 on A100, fp16 and QAT int8),
# trimmed to a few layers each.


def _tensor(name, dims, fmt):
    return {"Name": name, "Location": "Device", "Dimensions": dims, "Format/Datatype": fmt}


INSPECTOR_FP16 = {
    "Layers": [
        {
            "Name": "Reformatting CopyNode for Input Tensor 0 to Conv_0 + Relu_1",
            "LayerType": "Reformat",
            "Inputs": [_tensor("input.1", [32, 3, 224, 224], "Row major linear FP32")],
            "Outputs": [
                _tensor("Reformatted Input Tensor 0 to Conv_0 + Relu_1", [32, 3, 224, 224], "Channel major FP16 format where channel % 4 == 0")
            ],
            "ParameterType": "Reformat",
            "Origin": "REFORMAT",
            "TacticValue": "0x0000000000000000",
        },
        {
            "Name": "Conv_0 + Relu_1",
            "LayerType": "CaskConvolution",
            "Inputs": [_tensor("Reformatted Input Tensor 0 to Conv_0 + Relu_1", [32, 3, 224, 224], "Channel major FP16 format where channel % 4 == 0")],
            "Outputs": [_tensor("onnx::MaxPool_125", [32, 64, 112, 112], "Channel major FP16 format where channel % 8 == 0")],
            "ParameterType": "Convolution",
            "Kernel": [7, 7],
            "OutMaps": 64,
            "Groups": 1,
            "Weights": {"Type": "Half", "Count": 9408},
            "Bias": {"Type": "Half", "Count": 64},
            "Activation": "RELU",
            "TacticName": "trt_turing_cutlass_image_network_first_layer_hmma_fprop_f16f16f32_nhwc_nhwc_k64r7s7c4_stride2x2",
            "TacticValue": "0xe2222883a6602489",
        },
        {
            "Name": "MaxPool_2",
            "LayerType": "CudaPooling",
            "Inputs": [_tensor("onnx::MaxPool_125", [32, 64, 112, 112], "Channel major FP16 format where channel % 8 == 0")],
            "Outputs": [_tensor("input.8", [32, 64, 56, 56], "Channel major FP16 format where channel % 8 == 0")],
            "ParameterType": "Pooling",
            "PoolingType": "MAX",
            "TacticValue": "0xfffffffffffffffe",
        },
        {
            "Name": "Gemm_48",
            "LayerType": "CaskConvolution",
            "Inputs": [_tensor("onnx::Flatten_189", [32, 512, 1, 1], "Channel major FP16 format where channel % 8 == 0")],
            "Outputs": [_tensor("Gemm_48_out_region", [32, 1000, 1, 1], "Channel major FP16 format where channel % 8 == 0")],
            "ParameterType": "Convolution",
            "Weights": {"Type": "Half", "Count": 512000},
            "Bias": {"Type": "Half", "Count": 1000},
            "TacticValue": "0x2aa016c86360697f",
        },
        {
            "Name": "Reformatting CopyNode for Output Tensor 0 to reshape_after_Gemm_48",
            "LayerType": "Reformat",
            "Inputs": [_tensor("Reformatted Output Tensor 0 to reshape_after_Gemm_48", [32, 1000], "Row major linear FP16 format")],
            "Outputs": [_tensor("191", [32, 1000], "Row major linear FP32")],
            "ParameterType": "Reformat",
            "Origin": "REFORMAT",
            "TacticValue": "0x00000000000003e8",
        },
    ],
    "Bindings": ["input.1", "191"],
}


def _as_fp32(info):
    """The same engine as TensorRT builds it when the graph carries no FP16: every tensor FP32."""
    text = json.dumps(info)
    for fp16, fp32 in (
        ("Channel major FP16 format where channel % 4 == 0", "Row major linear FP32"),
        ("Channel major FP16 format where channel % 8 == 0", "Row major linear FP32"),
        ("Row major linear FP16 format", "Row major linear FP32"),
        ('"Half"', '"Float"'),
    ):
        text = text.replace(fp16, fp32)
    return json.loads(text)


INSPECTOR_INT8 = {
    "Layers": [
        {
            "Name": "QuantizeLinear_2",
            "LayerType": "Reformat",
            "Inputs": [_tensor("input.1", [32, 3, 224, 224], "Row major linear FP32")],
            "Outputs": [_tensor("onnx::DequantizeLinear_125", [32, 3, 224, 224], "Row major Int8 format")],
            "ParameterType": "Reformat",
            "Origin": "QDQ",
            "TacticValue": "0x00000000000003ea",
        },
        {
            "Name": "conv1.weight + QuantizeLinear_7 + Conv_9 + MaxPool_12",
            "LayerType": "ConvActPool",
            "Inputs": [_tensor("onnx::DequantizeLinear_125", [32, 3, 224, 224], "Row major Int8 format")],
            "Outputs": [_tensor("onnx::DequantizeLinear_140", [32, 64, 56, 56], "Thirty-two wide channel vectorized row major Int8 format")],
            "ParameterType": "ConvActPool",
            "ConvWeights": {"Type": "Int8", "Count": 9408},
            "ConvBias": {"Type": "Float", "Count": 64},
            "TacticValue": "0x0000000000000461",
        },
        {
            "Name": "layer1.0.conv1.weight + QuantizeLinear_20 + Conv_22",
            "LayerType": "CaskConvolution",
            "Inputs": [_tensor("onnx::DequantizeLinear_140", [32, 64, 56, 56], "Thirty-two wide channel vectorized row major Int8 format")],
            "Outputs": [_tensor("onnx::DequantizeLinear_154", [32, 64, 56, 56], "Thirty-two wide channel vectorized row major Int8 format")],
            "ParameterType": "Convolution",
            "Weights": {"Type": "Int8", "Count": 36864},
            "Bias": {"Type": "Float", "Count": 64},
            "TacticName": "sm80_xmma_fprop_implicit_gemm_interleaved_i8i8_i8i32_f32_nchw_vect_c_32kcrs_vect_c_32_nchw_vect_c_32_tilesize192x64x64_stage3_warpsize4x1x1_g1_tensor16x8x32_t1r3s3",
            "TacticValue": "0xef01fb6e433afa50",
        },
        {
            "Name": "fc.weight + QuantizeLinear_166 + Gemm_168",
            "LayerType": "CaskGemm",
            "Inputs": [_tensor("onnx::DequantizeLinear_180", [32, 512], "Row major Int8 format")],
            "Outputs": [_tensor("logits", [32, 1000], "Row major linear FP32")],
            "Weights": {"Type": "Int8", "Count": 512000},
            "TacticValue": "0x1",
        },
    ],
    "Bindings": ["input.1", "logits"],
}

# profiling verbosity LAYER_NAMES_ONLY: layers are plain strings
INSPECTOR_NAMES_ONLY = {
    "Layers": [
        "Reformatting CopyNode for Input Tensor 0 to Conv_0 + Relu_1",
        "Conv_0 + Relu_1",
        "MaxPool_2",
        "Gemm_48",
    ],
    "Bindings": ["input.1", "191"],
}

# TensorRT 11.x: "Bindings" became "I/O Tensors" objects (migration guide, IEngineInspector
# JSON); tensor entries carry a separate "DataType" next to "Format".
INSPECTOR_V11_FP16 = {
    "Layers": [
        {
            "Name": "/conv1/Conv + /relu/Relu",
            "LayerType": "CaskConvolution",
            "Inputs": [{"Name": "input", "Dimensions": [8, 3, 32, 32], "Format": "Channel major FP16 format where channel % 8 == 0 (kHWC8)", "DataType": "Half"}],
            "Outputs": [{"Name": "relu", "Dimensions": [8, 64, 16, 16], "Format": "Channel major FP16 format where channel % 8 == 0 (kHWC8)", "DataType": "Half"}],
            "Weights": {"Type": "Half", "Count": 9408},
        },
        {
            "Name": "/fc/Gemm",
            "LayerType": "CaskGemm",
            "Inputs": [{"Name": "flat", "Dimensions": [8, 512], "Format": "Row major linear FP16 format (kLINEAR)", "DataType": "Half"}],
            "Outputs": [{"Name": "logits", "Dimensions": [8, 10], "Format": "Row major linear FP32 format (kLINEAR)", "DataType": "Float"}],
        },
    ],
    "I/O Tensors": [
        {"Name": "input", "IOMode": "Input", "DataType": "Float", "Dimensions": [-1, 3, 32, 32], "Location": "Device"},
        {"Name": "logits", "IOMode": "Output", "DataType": "Float", "Dimensions": [-1, 10], "Location": "Device"},
    ],
}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("Row major linear FP32", "FP32"),
        ("Channel major FP16 format where channel % 8 == 0", "FP16"),
        ("Thirty-two wide channel vectorized row major Int8 format", "INT8"),
        ("Channel major INT8 format where channel % 16 == 0", "INT8"),
        ("Row major linear BFloat16 format", "BF16"),
        ("Half", "FP16"),
        ("Float", "FP32"),
        ("Row major linear Int32", "INT32"),
        ("Unknown format", None),
        (None, None),
    ],
)
def test_type_from_description(text, expected):
    assert type_from_description(text) == expected


def test_fp16_engine_passes_and_reports_layers():
    report = parse_engine_information(json.dumps(INSPECTOR_FP16))
    assert report.verifiable
    assert [layer.name for layer in report.layers][:2] == [
        "Reformatting CopyNode for Input Tensor 0 to Conv_0 + Relu_1",
        "Conv_0 + Relu_1",
    ]
    assert report.counts() == {"FP16": 3}  # the two Reformat layers are data movement
    check_engine_precision(report, "fp16", "resnet18_trt_fp16")


def test_fp16_build_whose_layers_are_all_fp32_is_an_error():
    report = parse_engine_information(json.dumps(_as_fp32(INSPECTOR_FP16)))
    assert report.verifiable and report.counts() == {"FP32": 3}
    with pytest.raises(CheckFailedError, match="none of its 3 compute layers run in FP16") as info:
        check_engine_precision(report, "fp16", "resnet18_trt_fp16")
    assert "TensorRT built an FP32 engine" in info.value.message
    assert info.value.exit_code == 1
    check_engine_precision(report, "fp32")  # an FP32 engine is what fp32 asked for


def test_int8_engine_passes_and_fp16_engine_is_not_int8():
    report = parse_engine_information(INSPECTOR_INT8)
    assert report.counts() == {"INT8": 3}
    check_engine_precision(report, "int8", "resnet18_trt_int8")
    with pytest.raises(CheckFailedError, match="run in INT8"):
        check_engine_precision(parse_engine_information(INSPECTOR_FP16), "int8", "resnet18_trt_int8")


def test_layer_names_only_cannot_verify():
    report = parse_engine_information(json.dumps(INSPECTOR_NAMES_ONLY))
    assert not report.verifiable and len(report.layers) == 4
    assert "layer names only" in report.reason
    with pytest.raises(CheckFailedError, match="cannot verify") as info:
        check_engine_precision(report, "fp16", "resnet18_trt_fp16")
    assert "--profiling-verbosity detailed" in info.value.hint
    check_engine_precision(report, "fp32")  # fp32 needs no proof


@pytest.mark.parametrize("text", ["{}", '{"Layers": []}', "not json", json.dumps({"Layers": None})])
def test_empty_or_broken_inspector_output_cannot_verify(text):
    report = parse_engine_information(text)
    assert not report.verifiable and report.layers == ()
    with pytest.raises(CheckFailedError, match="cannot verify"):
        check_engine_precision(report, "int8")


def test_tensorrt_11_inspector_schema():
    report = parse_engine_information(json.dumps(INSPECTOR_V11_FP16))
    assert report.verifiable and report.counts() == {"FP16": 2}
    check_engine_precision(report, "fp16")


# Myelin regions: TensorRT fuses a subgraph into one "{ForeignNode[...]}" layer whose boundary
# tensors keep the graph's FP32 I/O when the FP16 graph's Casts are fused inside; the inspector
# states no precision for what runs inside. Layouts as 10.x ("Format/Datatype") and 11.x
# ("Format" + "DataType") write them.
def _myelin(boundary, dims_in, dims_out, layout="10"):
    def tensor(name, dims):
        if layout == "10":
            return _tensor(name, dims, f"Row major linear {boundary}")
        return {"Name": name, "Dimensions": dims, "Format": "Row major linear (kLINEAR)", "DataType": {"FP32": "Float", "FP16": "Half"}[boundary]}

    return {
        "Name": "{ForeignNode[/conv1/Conv.../layer4/layer4.1/relu_1/Relu]}",
        "LayerType": "Myelin",
        "Inputs": [tensor("input", dims_in)],
        "Outputs": [tensor("/avgpool/GlobalAveragePool_output_0", dims_out)],
        "TacticValue": "0x0000000000000000",
    }


def _gemm(fmt, weights, layout="10"):
    inputs = [_tensor("flat", [8, 512], f"Row major linear {fmt} format")]
    outputs = [_tensor("logits", [8, 10], "Row major linear FP32")]
    if layout == "11":
        dtype = {"FP16": "Half", "FP32": "Float"}[fmt]
        inputs = [{"Name": "flat", "Dimensions": [8, 512], "Format": "Row major linear (kLINEAR)", "DataType": dtype}]
        outputs = [{"Name": "logits", "Dimensions": [8, 10], "Format": "Row major linear (kLINEAR)", "DataType": "Float"}]
    return {"Name": "/fc/Gemm", "LayerType": "CaskGemm", "Inputs": inputs, "Outputs": outputs, "Weights": {"Type": weights, "Count": 5120}}


@pytest.mark.parametrize("layout", ["10", "11"])
def test_a_myelin_region_with_fp32_boundaries_is_unknown_not_fp32(layout):
    info = {"Layers": [_myelin("FP32", [8, 3, 32, 32], [8, 512, 1, 1], layout)]}
    report = parse_engine_information(json.dumps(info))
    assert report.verifiable
    assert [layer.precision for layer in report.layers] == [None]
    assert len(report.unknown_layers) == 1 and report.counts() == {}
    assert report.shares() == {"unknown": 1.0}
    check_engine_precision(report, "fp16", "resnet18_trt_fp16")  # a good FP16 build is not failed


@pytest.mark.parametrize("layout", ["10", "11"])
def test_known_fp16_beside_unknown_regions_passes_and_reports_shares(layout):
    info = {"Layers": [_myelin("FP32", [8, 3, 32, 32], [8, 512, 1, 1], layout), _gemm("FP16", "Half", layout)]}
    report = parse_engine_information(json.dumps(info))
    assert report.counts() == {"FP16": 1} and len(report.unknown_layers) == 1
    # the region's compute is not stated, so the shares fall back to layer counts
    assert report.shares() == {"FP16": 0.5, "unknown": 0.5}
    check_engine_precision(report, "fp16")
    sidecar_part = report.to_dict()
    assert sidecar_part["unknown_precision_layers"] == 1
    assert sidecar_part["compute_shares"] == {"FP16": 0.5, "unknown": 0.5}


@pytest.mark.parametrize("layout", ["10", "11"])
def test_fp16_build_fails_when_the_known_layers_are_all_fp32(layout):
    info = {"Layers": [_myelin("FP32", [8, 3, 32, 32], [8, 512, 1, 1], layout), _gemm("FP32", "Float", layout)]}
    report = parse_engine_information(json.dumps(info))
    with pytest.raises(CheckFailedError, match="none of its 1 compute layers run in FP16") as info_:
        check_engine_precision(report, "fp16", "resnet18_trt_fp16")
    assert "1 more of a precision the inspector does not state" in info_.value.message


def test_shares_are_weighted_by_macs_when_every_layer_states_its_weights():
    mixed = json.loads(json.dumps(INSPECTOR_FP16))
    gemm = next(layer for layer in mixed["Layers"] if layer["Name"] == "Gemm_48")
    gemm["Inputs"][0]["Format/Datatype"] = gemm["Outputs"][0]["Format/Datatype"] = "Row major linear FP32"
    gemm["Weights"]["Type"] = "Float"
    report = parse_engine_information(mixed)
    assert report.counts() == {"FP16": 2, "FP32": 1}
    conv = 9408 * 112 * 112  # weights x output positions of Conv_0
    assert report.shares() == {"FP16": round(conv / (conv + 512000), 4), "FP32": round(512000 / (conv + 512000), 4)}
    check_engine_precision(report, "fp16")


# --------------------------------------------------------------------------------------
# ONNX parser errors, per node
# --------------------------------------------------------------------------------------


class StandInParserError:
    """The documented surface of tensorrt.ParserError (methods, as the bindings expose them)."""

    def __init__(self, node, name, op, code, desc):
        self._v = (node, name, op, code, desc)

    def node(self):
        return self._v[0]

    def node_name(self):
        return self._v[1]

    def node_operator(self):
        return self._v[2]

    def code(self):
        return self._v[3]

    def desc(self):
        return self._v[4]


class OldParserError:
    """A TensorRT 8.x ParserError: no node_name/node_operator."""

    def node(self):
        return 7

    def code(self):
        return "ErrorCode.UNSUPPORTED_NODE"

    def desc(self):
        return "No importer registered for op: Foo"


def test_parser_errors_are_listed_per_node():
    errors = [
        StandInParserError(12, "/layer1/attn/Einsum", "Einsum", "UNSUPPORTED_NODE", "Unsupported equation: bij,bjk->bik"),
        StandInParserError(40, "/head/TopK", "TopK", "ErrorCode.INVALID_NODE", "K input must be an initializer"),
        StandInParserError(-1, "", "", "INVALID_GRAPH", "  graph has no outputs  "),
    ]
    text = format_parser_errors(errors)
    lines = text.splitlines()
    assert lines == [
        "  - node 12 /layer1/attn/Einsum (Einsum): UNSUPPORTED_NODE: Unsupported equation: bij,bjk->bik",
        "  - node 40 /head/TopK (TopK): INVALID_NODE: K input must be an initializer",
        "  - graph: INVALID_GRAPH: graph has no outputs",
    ]
    error = parser_failure("models/x_onnx_fp16/1/model.onnx", errors)
    assert "(3 errors)" in error.message and "/head/TopK (TopK)" in error.message
    assert str(error.message).count("\n") == 3


def test_parser_error_formatting_degrades_gracefully():
    assert format_parser_errors([OldParserError()]) == "  - node 7: UNSUPPORTED_NODE: No importer registered for op: Foo"
    many = [StandInParserError(i, f"n{i}", "Op", "UNSUPPORTED_NODE", "x") for i in range(25)]
    text = format_parser_errors(many, limit=20)
    assert len(text.splitlines()) == 21 and text.endswith("... and 5 more")
    assert "reported no details" in parser_failure("m.onnx", []).message


# --------------------------------------------------------------------------------------
# Engines belong to one GPU model and TensorRT release
# --------------------------------------------------------------------------------------

H100 = GpuInfo("NVIDIA H100 80GB HBM3", compute_capability="9.0")
A100 = GpuInfo("NVIDIA A100-SXM4-80GB", compute_capability="8.0")
ORIN = GpuInfo("Orin", compute_capability="8.7")


def test_same_target_is_compatible():
    built = EngineTarget("10.8.0.43", H100)
    assert engine_mismatches(built, EngineTarget("10.8.0.43", H100)) == []
    assert same_tensorrt_release("10.8.0.43", "10.8.0")
    ensure_engine_compatible("r_trt_fp16", built, EngineTarget("10.8.0", H100), "deploykit build r --precision fp16")


@pytest.mark.parametrize(
    "here, expected",
    [
        (EngineTarget("11.4.0.106", H100), ["TensorRT 10.8.0.43 != 11.4.0.106"]),
        (EngineTarget("10.8.0.43", A100), ["compute capability 9.0 != 8.0", "GPU NVIDIA H100 80GB HBM3 != NVIDIA A100-SXM4-80GB"]),
        (EngineTarget("10.8.0.43", GpuInfo("NVIDIA H100 PCIe", compute_capability="9.0")), ["GPU NVIDIA H100 80GB HBM3 != NVIDIA H100 PCIe"]),
        (EngineTarget("10.9.0.34", H100), ["TensorRT 10.8.0.43 != 10.9.0.34"]),
    ],
)
def test_mismatches(here, expected):
    assert engine_mismatches(EngineTarget("10.8.0.43", H100), here) == expected


def test_mismatch_message_says_what_was_built_where():
    built, here = EngineTarget("10.3.0", ORIN), EngineTarget("11.4.0.106", H100)
    with pytest.raises(DeployKitError) as info:
        ensure_engine_compatible("resnet18_trt_int8", built, here, "deploykit build resnet18 --precision int8")
    message = info.value.message
    assert message.startswith("resnet18_trt_int8 was built with TensorRT 10.3.0 on Orin (compute capability 8.7)")
    assert "this machine has TensorRT 11.4.0.106 on NVIDIA H100 80GB HBM3 (compute capability 9.0)" in message
    assert "`deploykit build resnet18 --precision int8`" in info.value.hint


# --------------------------------------------------------------------------------------
# What the build writes: sidecar and config.pbtxt
# --------------------------------------------------------------------------------------

INPUT = TensorSpec("input", (-1, 3, 32, 32), "float32")
OUTPUT = TensorSpec("logits", (-1, 10), "float32")


def _record(precision="fp16", **overrides):
    settings = build_settings(precision, 1, 8, 32, workspace_mb=2048, opt_level=3, timing_cache="models/.timing.cache")
    fields = dict(
        model="resnet18",
        precision=precision,
        parent=f"resnet18_onnx_{precision}",
        parent_lineage=("pytorch:resnet18", "resnet18_onnx_fp32", f"resnet18_onnx_{precision}"),
        tensorrt_version="10.8.0.43",
        gpu=H100,
        input=INPUT,
        output=OUTPUT,
        settings=settings,
        build_seconds=41.2345,
        engine_bytes=23_456_789,
        device_memory_bytes=12_582_912,
        engine=parse_engine_information(INSPECTOR_FP16),
        graph=check_graph_precision(_tiny_graph("fp16"), "fp16"),
        strongly_typed_flag=True,
        timing_cache_reused=False,
        cuda_version="12.8",
        parent_sha256="ab" * 32,
        preprocessing={"resize": 36, "crop": 32, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
    )
    fields.update(overrides)
    return EngineBuildRecord(**fields)


def test_sidecar_content():
    sidecar = engine_sidecar(_record())
    assert sidecar["parent"] == "resnet18_onnx_fp16"
    assert sidecar["lineage"] == ["pytorch:resnet18", "resnet18_onnx_fp32", "resnet18_onnx_fp16"]
    assert sidecar["tensorrt"] == {"version": "10.8.0.43", "strongly_typed": True, "strongly_typed_flag": True}
    assert sidecar["gpu"] == {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0", "cuda": "12.8"}
    assert sidecar["profile"] == {
        "input": "input",
        "batch": {"min": 1, "opt": 8, "max": 32},
        "min": [1, 3, 32, 32],
        "opt": [8, 3, 32, 32],
        "max": [32, 3, 32, 32],
    }
    assert sidecar["build"]["seconds"] == 41.234 and sidecar["build"]["workspace_mb"] == 2048
    assert sidecar["build"]["builder_optimization_level"] == 3
    assert sidecar["build"]["timing_cache"] == "models/.timing.cache"
    engine = sidecar["engine"]
    assert engine["bytes"] == 23_456_789 and engine["device_memory_bytes"] == 12_582_912
    assert engine["layer_count"] == 5 and engine["layer_precisions"] == {"FP16": 3}
    assert engine["layers"][1] == {"name": "Conv_0 + Relu_1", "type": "CaskConvolution", "precision": "FP16"}
    assert sidecar["precision_check"]["requested"] == "fp16" and sidecar["precision_check"]["verified"]
    assert sidecar["precision_check"]["graph"]["fp16_weights"] == 2
    assert sidecar["input"] == {"name": "input", "dtype": "float32", "shape": [-1, 3, 32, 32]}
    assert sidecar["preprocessing"]["crop"] == 32
    json.dumps(sidecar)  # the sidecar is plain JSON
    assert target_from_sidecar(sidecar) == EngineTarget("10.8.0.43", H100)
    assert target_from_sidecar({"model": "x"}) is None


def test_config_pbtxt_for_a_plan():
    text = trt_config_pbtxt("resnet18_trt_fp16", INPUT, OUTPUT, max_batch=32)
    assert 'name: "resnet18_trt_fp16"' in text
    assert 'platform: "tensorrt_plan"' in text
    assert "max_batch_size: 32" in text
    assert "kind: KIND_GPU" in text
    assert "dynamic_batching {" in text and "preferred_batch_size: [ 4, 8, 16, 32 ]" in text
    assert 'name: "input"' in text and "dims: [ 3, 32, 32 ]" in text  # batch dim left to Triton
    assert 'name: "logits"' in text and "dims: [ 10 ]" in text
    assert "data_type: TYPE_FP32" in text
    small = trt_config_pbtxt("r_trt_int8", INPUT, OUTPUT, max_batch=2)
    assert "max_batch_size: 2" in small and "preferred_batch_size: [ 2 ]" in small


def test_variant_written_through_the_repository_keeps_lineage(tmp_path):
    """engine_sidecar + config go through write_variant as build_engine does (plan bytes stand in)."""
    from deploykit.artifacts import Artifact
    from deploykit.repository import ModelRepository

    repo = ModelRepository(tmp_path / "models")
    record = _record()
    artifact = repo.write_variant(
        "resnet18",
        "trt",
        "fp16",
        write_model=lambda path: path.write_bytes(b"\x00plan bytes"),
        config_pbtxt=trt_config_pbtxt("resnet18_trt_fp16", INPUT, OUTPUT, 32),
        sidecar=engine_sidecar(record),
        parent=record.parent,
    )
    assert artifact.path == tmp_path / "models" / "resnet18_trt_fp16" / "1" / "model.plan"
    loaded = Artifact.from_sidecar(artifact.directory)
    assert loaded.parent == "resnet18_onnx_fp16"
    assert loaded.lineage() == ["pytorch:resnet18", "resnet18_onnx_fp32", "resnet18_onnx_fp16", "resnet18_trt_fp16"]
    assert target_from_sidecar(loaded.to_sidecar()) == EngineTarget("10.8.0.43", H100)
    assert repo.find("resnet18", "trt", "fp16") is not None
    assert 'platform: "tensorrt_plan"' in (artifact.directory / "config.pbtxt").read_text()


# --------------------------------------------------------------------------------------
# Small runtime helpers
# --------------------------------------------------------------------------------------


class _Enum:
    def __init__(self, name):
        self.name = name


def test_trt_dtype_names():
    assert trt_dtype_name(_Enum("HALF")) == "float16"
    assert trt_dtype_name("DataType.FLOAT") == "float32"
    assert trt_dtype_name(_Enum("INT8")) == "int8"
    with pytest.raises(DeployKitError, match="unsupported TensorRT tensor type"):
        trt_dtype_name(_Enum("FP4"))


def test_layer_times_accumulate_in_order():
    times = LayerTimes()
    for _ in range(3):
        times.record("conv1 + relu", 0.5)
        times.record("fc", 0.25)
    rows = times.summary()
    assert [r["layer"] for r in rows] == ["conv1 + relu", "fc"]
    assert rows[0]["calls"] == 3 and rows[0]["total_ms"] == pytest.approx(1.5)
    assert rows[0]["mean_ms"] == pytest.approx(0.5) and rows[0]["share"] == pytest.approx(2 / 3)
    times.reset()
    assert times.summary() == []


def test_runner_without_tensorrt_names_how_to_get_it(tmp_path):
    pytest.importorskip("torch")
    from deploykit._deps import is_available
    from deploykit.runtimes.tensorrt_runner import TensorRTRunner

    if is_available("tensorrt"):
        pytest.skip("tensorrt is installed here")
    plan = tmp_path / "m_trt_fp16" / "1" / "model.plan"
    plan.parent.mkdir(parents=True)
    plan.write_bytes(b"plan")
    runner = TensorRTRunner(plan, device=0, per_layer=True)  # constructing loads nothing
    with pytest.raises(MissingDependencyError) as info:
        runner.activate()
    assert "deploykit[gpu]" in info.value.hint and "JetPack" in info.value.hint
    with pytest.raises(UsageError):
        TensorRTRunner(plan, device=-1)


# --------------------------------------------------------------------------------------
# The command without TensorRT
# --------------------------------------------------------------------------------------

_BLOCK_TENSORRT = textwrap.dedent(
    """
    import sys, importlib.abc
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "tensorrt":
                raise ImportError("blocked for the test")
            return None
    sys.meta_path.insert(0, Blocker())
    from deploykit.cli import cli
    try:
        cli.main(args=sys.argv[1:], prog_name="deploykit")
    except SystemExit as e:
        sys.exit(e.code)
    """
)


def _deploykit(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-c", _BLOCK_TENSORRT, *args], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_build_without_tensorrt_says_how_to_get_it(tmp_path):
    repo = tmp_path / "models"
    proc = _deploykit("build", "resnet18", "--precision", "fp16", "--repo", str(repo))
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error: 'tensorrt' is needed for building TensorRT engines" in proc.stderr
    hint = proc.stderr.split("hint:", 1)[1]
    for way in ("pip install 'deploykit[gpu]'", "pip install tensorrt", "docker/Dockerfile.trt", "JetPack"):
        assert way in hint, way
    # it failed before exporting anything
    assert not repo.exists() or list(repo.iterdir()) == []


def test_a_replaced_onnx_parent_is_refused_before_tensorrt_is_needed(tmp_path, tiny_graphs, replace_with_other_network):
    import onnx

    from deploykit.repository import ModelRepository

    repo = tmp_path / "models"
    parent = ModelRepository(repo).write_variant(
        "resnet18", "onnx", "fp32", write_model=lambda path: onnx.save(tiny_graphs["fp32"], str(path)),
        config_pbtxt="", sidecar={"input": {"name": "input", "shape": [-1, 3, 8, 8]}}, parent="test:tiny",
    )  # fmt: skip
    replace_with_other_network(parent.path)
    refused = _deploykit("build", "resnet18", "--repo", str(repo))
    assert refused.returncode == 2, refused.stderr
    assert "is not the file resnet18_onnx_fp32's sidecar describes" in refused.stderr
    assert "re-create it with `deploykit export resnet18`, or pass --trust" in refused.stderr
    assert "Traceback" not in refused.stderr and "tensorrt" not in refused.stderr.lower()  # refused first
    trusted = _deploykit("build", "resnet18", "--repo", str(repo), "--trust")
    assert trusted.returncode == 1 and "error: 'tensorrt' is needed" in trusted.stderr, trusted.stderr  # got past the check


def test_build_help_and_bad_flags_work_without_tensorrt(tmp_path):
    help_text = _deploykit("build", "--help")
    assert help_text.returncode == 0, help_text.stderr
    for flag in ("--precision", "--min-batch", "--opt-batch", "--max-batch", "--workspace-mb",
                 "--opt-level", "--timing-cache", "--profiling-verbosity", "--format"):
        assert flag in help_text.stdout, flag
    bad = _deploykit("build", "resnet18", "--min-batch", "8", "--opt-batch", "4", "--repo", str(tmp_path / "m"))
    assert bad.returncode == 2 and "min <= opt <= max" in bad.stderr, bad.stderr
    bad_name = _deploykit("build", "../etc", "--repo", str(tmp_path / "m"))
    assert bad_name.returncode == 2 and "invalid model name" in bad_name.stderr


def test_cuda_check_without_torch_says_so():
    """In an environment without torch (the server environment), the CUDA check is an error, not a traceback."""
    code = textwrap.dedent(
        """
        import sys, importlib.abc
        class Blocker(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "torch":
                    raise ImportError("blocked for the test")
        sys.meta_path.insert(0, Blocker())
        from deploykit.errors import DeployKitError
        from deploykit.tensorrt.loading import require_cuda
        try:
            require_cuda(0)
        except DeployKitError as exc:
            print(exc.message, "|", exc.hint)
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "torch is not installed" in proc.stdout and ".venv-serve/bin/pip install torch" in proc.stdout
