"""deploykit estimate: per-layer roofline bounds, the device table, the CLI and the charts."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner

from deploykit.analyze import analyze_model
from deploykit.cli import cli
from deploykit.errors import UsageError
from deploykit.estimate import DeviceSpec, estimate, estimate_stats, get_device
from deploykit.estimate.devices import TABLE_JSON, device_names
from deploykit.estimate.roofline import layer_work

GPUS = ("orin-nano", "agx-orin", "t4", "l4", "a100", "h100", "h200")


def _spec(peak=100.0, vector=10.0, bandwidth=10.0, precision="fp32") -> DeviceSpec:
    """A made-up device with round numbers, so hand arithmetic checks the model."""
    return DeviceSpec("toy", precision, "toy", peak, vector, bandwidth, 1.0, None, {})


def test_device_table_has_every_device_and_precision_with_sources():
    rows = json.loads(TABLE_JSON.read_text())["rows"]
    assert set(device_names()) == {*GPUS, "cpu"}
    for device in (*GPUS, "cpu"):
        for precision in ("fp32", "fp16", "int8"):
            (row,) = [r for r in rows if r["device"] == device and r["precision"] == precision]
            for field in ("peak", "vector", "bandwidth", "memory"):
                assert row[f"{field}_source"].strip(), (device, precision, field)
            assert row["confirmed"].strip()
            if device != "cpu":
                assert row["peak_tflops"] > 0 and row["bandwidth_gbps"] > 0 and row["memory_gb"] > 0
                assert "http" in row["peak_source"]
    jetsons = [r for r in rows if r["device"] in ("orin-nano", "agx-orin")]
    assert all(r["power_mode"] for r in jetsons), "a Jetson figure means nothing without its power mode"


def test_precisions_order_the_peaks():
    for device in GPUS:
        fp32, fp16, int8 = (get_device(device, p) for p in ("fp32", "fp16", "int8"))
        assert fp32.peak_gflops <= fp16.peak_gflops <= int8.peak_gflops
        assert fp32.bandwidth_gbps == int8.bandwidth_gbps


def test_conv_layer_by_hand():
    stats = analyze_model("alexnet")
    conv1 = stats.layers[0]
    assert conv1.kind == "conv"
    engine, flops, moved, weights = layer_work(conv1, batch=2, width=4)
    assert engine == "tensor"
    assert flops == 2 * conv1.macs * 2
    c, h, w = conv1.in_shape
    k = math.prod(conv1.kernel)
    assert weights == conv1.filters * c * k * 4  # BatchNorm-free: the conv weights exactly
    assert moved == weights + 2 * 4 * (c * h * w + math.prod(conv1.out_shape))


def test_bound_is_the_max_of_compute_and_memory_time():
    stats = analyze_model("alexnet")
    spec = _spec()
    result = estimate_stats(stats, spec, batch=1)
    for layer, row in zip(result.layers, stats.layers, strict=True):
        engine, flops, moved, _ = layer_work(row, 1, 4)
        roof = spec.vector_gflops if engine == "vector" else spec.peak_gflops
        assert layer.seconds == pytest.approx(max(flops / roof / 1e9, moved / spec.bandwidth_gbps / 1e9))
        if layer.bound != "none":
            compute_bound = layer.intensity >= roof / spec.bandwidth_gbps
            assert (layer.bound == "compute") == compute_bound
    assert result.seconds == pytest.approx(sum(layer.seconds for layer in result.layers))
    assert result.images_per_s == pytest.approx(1 / result.seconds)
    assert 0 <= result.memory_bound_share <= 1


def test_classifier_is_memory_bound_at_batch_one_and_amortized_at_large_batch():
    stats = analyze_model("vgg16")
    spec = get_device("h100", "fp16")
    one, big = estimate_stats(stats, spec, 1), estimate_stats(stats, spec, 64)
    fc_one = [layer for layer in one.layers if layer.kind == "linear"]
    assert fc_one and all(layer.bound == "memory" for layer in fc_one)
    assert big.seconds / 64 < one.seconds  # weights read once per batch
    assert big.memory_bound_share < one.memory_bound_share


def test_depthwise_pooling_concat_and_shuffle_are_what_they_are():
    mobilenet = estimate_stats(analyze_model("mobilenet_v2"), _spec(), 1)
    depthwise = [layer for layer in mobilenet.layers if layer.kind == "conv" and layer.engine == "vector"]
    assert len(depthwise) == 17  # one 3x3 depthwise conv per inverted residual block
    pools = [layer for layer in mobilenet.layers if layer.kind == "pool"]
    assert pools and all(layer.engine == "vector" and layer.flops == layer.macs for layer in pools)
    googlenet = estimate_stats(analyze_model("googlenet"), _spec(), 1)
    concats = [layer for layer in googlenet.layers if layer.name.endswith(".cat")]
    assert concats and all(layer.engine == "free" and layer.seconds == 0 for layer in concats)
    shufflenet = estimate_stats(analyze_model("shufflenet_v2_x1_0"), _spec(), 1)
    shuffles = [layer for layer in shufflenet.layers if layer.name.endswith(".cat")]
    assert shuffles and all(layer.engine == "copy" and layer.bytes > 0 for layer in shuffles)


def test_int8_moves_a_quarter_of_fp32_bytes():
    stats = analyze_model("resnet18")
    fp32 = estimate_stats(stats, _spec(precision="fp32"), 8)
    int8 = estimate_stats(stats, _spec(precision="int8"), 8)
    assert int8.bytes == pytest.approx(fp32.bytes / 4)
    assert int8.flops == fp32.flops


def test_estimate_api_nests_model_device_precision_batch():
    result = estimate("alexnet,resnet18", "t4,h100", ["fp16", "int8"], "1,8")
    assert len(result.estimates) == 2 * 2 * 2 * 2
    item = result.find("resnet18", "h100", "int8", 8)
    assert item.batch == 8 and item.device.device == "h100"
    data = json.loads(json.dumps(result.to_dict()))
    assert data["estimates"][0]["layers"] and data["devices"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"devices": "h100,tpu"},
        {"precisions": "fp8"},
        {"batches": "0"},
        {"batches": "one"},
    ],
)
def test_bad_names_are_usage_errors(kwargs):
    with pytest.raises(UsageError):
        estimate("alexnet", **kwargs)


def test_unknown_model_is_a_usage_error():
    with pytest.raises(UsageError):
        estimate("alexnet,notanet", "h100")


def test_cpu_is_measured_at_the_thread_count():
    spec = get_device("cpu", "fp32", threads=1)
    assert spec.measured and spec.peak_gflops > 0 and spec.bandwidth_gbps > 0
    assert math.isfinite(spec.peak_gflops) and "1 thread" in spec.title


def test_cli_table_json_and_errors():
    runner = CliRunner()
    out = runner.invoke(cli, ["estimate", "alexnet,resnet18", "--device", "h100,agx-orin",
                              "--precision", "int8", "--batch", "1,64"])
    assert out.exit_code == 0, out.output
    assert "img/s ceiling" in out.output and "agx-orin" in out.output and "MAXN" in out.output
    out = runner.invoke(cli, ["estimate", "alexnet", "--device", "t4", "--format", "json", "--layers"])
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert {e["precision"] for e in data["estimates"]} == {"fp32", "fp16", "int8"}
    assert data["estimates"][0]["layers"][0]["name"]
    out = runner.invoke(cli, ["estimate", "alexnet", "--device", "tpu"])
    assert out.exit_code == 2 and "error: unknown device 'tpu'" in out.output
    assert "Traceback" not in out.output


def test_cli_plot_writes_both_charts(tmp_path):
    pytest.importorskip("matplotlib")
    path = tmp_path / "roof.png"
    out = CliRunner().invoke(cli, ["estimate", "mobilenet_v2", "--device", "h100,orin-nano",
                                   "--precision", "fp16,int8", "--batch", "1", "--plot", str(path)])
    assert out.exit_code == 0, out.output
    for chart in (path, tmp_path / "roof_latency.png"):
        assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_floor_is_under_the_per_layer_roofline():
    for model in ("alexnet", "mobilenet_v2", "googlenet"):
        for batch in (1, 64):
            item = estimate_stats(analyze_model(model), get_device("l4", "int8"), batch)
            assert 0 < item.floor_seconds <= item.seconds
            weights = sum(layer.weight_bytes for layer in item.layers)
            assert item.unavoidable_bytes > weights  # plus the input and output


def test_input_size_changes_the_work():
    small = estimate("resnet18", "h100", "fp16", "1", input_size=112).estimates[0]
    full = estimate("resnet18", "h100", "fp16", "1").estimates[0]
    assert small.input_shape == (3, 112, 112) and full.input_shape == (3, 224, 224)
    assert small.flops < full.flops
    out = CliRunner().invoke(cli, ["estimate", "alexnet", "--device", "t4", "--precision", "int8",
                                   "--batch", "1", "--input-size", "227", "--format", "json"])
    assert out.exit_code == 0, out.output
    assert json.loads(out.output)["estimates"][0]["input_shape"] == [3, 227, 227]
