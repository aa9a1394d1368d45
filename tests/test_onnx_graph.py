"""deploykit.onnx_graph: the one operator count and the one precision decision, on graphs built here."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from deploykit.onnx_graph import operator_counts, precision_report  # noqa: E402


def _conv_model(weight_dtype=np.float32, io_type=TensorProto.FLOAT, nodes=None, inits=()):
    x = helper.make_tensor_value_info("x", io_type, [1, 3, 8, 8])
    y = helper.make_tensor_value_info("y", io_type, [1, 4, 8, 8])
    w = numpy_helper.from_array(np.ones((4, 3, 1, 1), dtype=weight_dtype), "w")
    nodes = nodes or [helper.make_node("Conv", ["x", "w"], ["y"], name="conv")]
    graph = helper.make_graph(nodes, "g", [x], [y], initializer=[w, *inits])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def _qdq_model(scale: np.ndarray, axis: int = 0):
    """Conv whose weight and input both sit behind QuantizeLinear -> DequantizeLinear."""
    zero = np.zeros(scale.shape, dtype=np.int8)
    inits = [
        numpy_helper.from_array(scale.astype(np.float32), "w_scale"),
        numpy_helper.from_array(zero, "w_zero"),
        numpy_helper.from_array(np.array(0.1, np.float32), "x_scale"),
        numpy_helper.from_array(np.array(0, np.int8), "x_zero"),
    ]
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "x_scale", "x_zero"], ["xq"]),
        helper.make_node("DequantizeLinear", ["xq", "x_scale", "x_zero"], ["xd"]),
        helper.make_node("QuantizeLinear", ["w", "w_scale", "w_zero"], ["wq"], axis=axis),
        helper.make_node("DequantizeLinear", ["wq", "w_scale", "w_zero"], ["wd"], axis=axis),
        helper.make_node("Conv", ["xd", "wd"], ["y"], name="qconv"),
    ]
    return _conv_model(nodes=nodes, inits=inits)


def test_operator_counts_reads_files_and_protos_alike(tmp_path):
    model = _qdq_model(np.full(4, 0.1))
    path = tmp_path / "m.onnx"
    onnx.save_model(model, str(path))
    expected = {"Conv": 1, "DequantizeLinear": 2, "QuantizeLinear": 2}
    assert operator_counts(model) == expected and operator_counts(path) == expected
    assert list(operator_counts(model)) == sorted(expected)


def test_fp32_graph():
    report = precision_report(_conv_model())
    assert (report.precision, report.why) == ("fp32", "FP32 graph")
    assert report.weighted_nodes == 1 and report.fp32_weights == 1 and report.fp16_weights == 0
    assert report.qdq_nodes == 0 and report.quantized_weights == 0


def test_fp16_weights_behind_a_cast_and_fp16_io():
    nodes = [
        helper.make_node("Cast", ["w"], ["w32"], to=TensorProto.FLOAT),
        helper.make_node("Conv", ["x", "w32"], ["y"]),
    ]
    report = precision_report(_conv_model(np.float16, nodes=nodes))
    assert report.precision == "fp16" and "1 FP16 initializers" in report.why
    assert report.fp16_weights == 1 and report.fp32_weights == 0 and report.fp16_initializers == 1
    io = precision_report(_conv_model(io_type=TensorProto.FLOAT16))
    assert io.precision == "fp16" and io.fp16_io == ("x", "y") and "FP16 inputs/outputs (x, y)" in io.why


def test_int8_per_channel_per_tensor_and_odd_scales():
    per_channel = precision_report(_qdq_model(np.full(4, 0.1), axis=0))
    assert per_channel.precision == "int8" and "4 QuantizeLinear/DequantizeLinear nodes" in per_channel.why
    assert per_channel.quantized_weights == 1 and per_channel.per_channel == 1 and per_channel.per_tensor == 0
    assert per_channel.quantized_activations == 1 and per_channel.qdq_pairs == 2 and per_channel.weighted_nodes == 1
    per_tensor = precision_report(_qdq_model(np.array([0.1])))
    assert per_tensor.per_tensor == 1 and per_tensor.per_channel == 0
    wrong_axis = precision_report(_qdq_model(np.full(3, 0.1), axis=1))  # scales along the input channels
    assert wrong_axis.odd_scales == ("qconv",) and wrong_axis.per_channel == wrong_axis.per_tensor == 0
    assert per_channel.to_dict()["odd_scales"] == [] and wrong_axis.to_dict()["precision"] == "int8"
