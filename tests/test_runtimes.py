"""Runners: torch, ONNX Runtime and OpenVINO agree on a trained model; life cycle; bad input."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from deploykit._deps import is_available
from deploykit.errors import DeployKitError, UsageError
from deploykit.runtimes import get_runner

needs_openvino = pytest.mark.skipif(not is_available("openvino"), reason="openvino not installed")
needs_ort = pytest.mark.skipif(not is_available("onnxruntime"), reason="onnxruntime not installed")


def export_legacy(module: torch.nn.Module, path: Path, size: int = 32) -> Path:
    """A quick ONNX file (TorchScript exporter: seconds, not the tens of seconds dynamo takes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module.eval(),
            (torch.zeros(1, 3, size, size),),
            str(path),
            dynamo=False,
            opset_version=17,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        )
    return path


class TinyNet(torch.nn.Module):
    """conv-bn-relu-pool-fc: enough to tell the runners apart if one got the layout wrong."""

    def __init__(self, classes: int = 5):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc = torch.nn.Linear(8, classes)

    def forward(self, x):
        x = torch.relu(self.bn(self.conv(x)))
        return self.fc(torch.flatten(torch.nn.functional.adaptive_avg_pool2d(x, 1), 1))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch.manual_seed(0)
    model = TinyNet().eval()
    path = export_legacy(model, tmp_path_factory.mktemp("tiny") / "tiny.onnx", size=16)
    return model, path


@pytest.fixture(scope="module")
def digits_onnx(digits_resnet18, tmp_path_factory):
    path = tmp_path_factory.mktemp("digits") / "resnet18.onnx"
    return export_legacy(digits_resnet18.model, path, size=32)


# ---- agreement -------------------------------------------------------------------------------


@needs_ort
@needs_openvino
@pytest.mark.slow
def test_runners_agree_on_a_trained_model(digits_resnet18, digits_onnx):
    """Same weights, same real images: logits within float tolerance, same predictions."""
    x = digits_resnet18.split.x_test[:16]
    y = digits_resnet18.split.y_test[:16]
    outputs = {}
    with get_runner("torch", digits_resnet18.model, input_size=32) as runner:
        outputs["torch"] = runner.infer(x)
    with get_runner("onnxruntime", digits_onnx) as runner:
        outputs["onnxruntime"] = runner.infer(x)
    with get_runner("openvino", digits_onnx, threads=1) as runner:
        outputs["openvino"] = runner.infer(x)
    reference = outputs["torch"]
    assert reference.shape == (16, 10) and reference.dtype == np.float32
    # The model is trained: its predictions are right, so agreeing on them means something.
    assert (reference.argmax(1) == y).mean() >= 0.8
    for name in ("onnxruntime", "openvino"):
        np.testing.assert_allclose(outputs[name], reference, rtol=1e-3, atol=1e-3, err_msg=name)
        assert (outputs[name].argmax(1) == reference.argmax(1)).all(), name


@needs_ort
@needs_openvino
def test_dynamic_batch_and_input_spec(tiny):
    model, path = tiny
    for backend in ("onnxruntime", "openvino"):
        with get_runner(backend, path) as runner:
            spec = runner.input_spec()
            assert spec.shape[1:] == (3, 16, 16) and spec.shape[0] == -1, backend
            assert spec.name == "input"
            for n in (1, 3):
                out = runner.infer(np.random.default_rng(n).standard_normal((n, 3, 16, 16), dtype=np.float32))
                assert out.shape == (n, 5)
            with pytest.raises(DeployKitError, match="does not fit"):
                runner.infer(np.zeros((1, 3, 20, 20), np.float32))


# ---- life cycle ------------------------------------------------------------------------------------


def test_context_manager_life_cycle(tiny):
    model, _ = tiny
    runner = get_runner("torch", model, input_size=16)
    assert not runner.is_active
    with pytest.raises(DeployKitError, match="not active"):
        runner.infer(np.zeros((1, 3, 16, 16), np.float32))
    with runner as active:
        assert active is runner and runner.is_active
        assert runner.activate() is runner  # idempotent
        first = runner.infer(np.ones((2, 3, 16, 16), np.float32))
    assert not runner.is_active and runner.model is None
    with runner:  # re-activation builds again and gives the same answer
        again = runner.infer(np.ones((2, 3, 16, 16), np.float32))
    np.testing.assert_array_equal(first, again)


@needs_ort
def test_onnxruntime_life_cycle_and_describe(tiny):
    _, path = tiny
    runner = get_runner("onnxruntime", path, threads=1)
    with runner:
        assert runner.session is not None
        info = runner.describe()
        assert info["providers"] == ["CPUExecutionProvider"] and info["threads"] == 1
    assert runner.session is None


@needs_openvino
def test_openvino_describe_reports_what_it_compiled(tiny):
    _, path = tiny
    with get_runner("openvino", path, threads=1) as runner:
        info = runner.describe()
    assert info["backend"] == "openvino" and info["device"] == "CPU"
    assert info["threads"] == 1
    assert info["inference_precision"] == "f32"


def test_torch_benchmark_fn_runs_the_same_computation(tiny):
    model, _ = tiny
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16), dtype=np.float32)
    with get_runner("torch", model, input_size=16, channels_last=True) as runner:
        fn = runner.benchmark_fn(x)
        out = fn()
        np.testing.assert_allclose(out.numpy(), runner.infer(x), rtol=1e-5, atol=1e-6)
        assert runner.device_memory_bytes() is None  # CPU: nothing to report
        assert runner.describe()["channels_last"] is True


def test_torch_runner_builds_zoo_models_and_loads_weights(tmp_path):
    from deploykit.zoo import get_model

    torch.manual_seed(1)
    reference = get_model("resnet18", num_classes=10).eval()
    weights = tmp_path / "w.pt"
    torch.save(reference.state_dict(), weights)
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32), dtype=np.float32)
    with get_runner("torch", "resnet18", num_classes=10, input_size=32, weights=weights) as runner:
        assert runner.input_spec().shape == (-1, 3, 32, 32)
        out = runner.infer(x)
    with torch.inference_mode():
        expected = reference(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


# ---- bad input -----------------------------------------------------------------------------------


def test_torch_runner_refuses_what_it_cannot_run(tmp_path):
    with pytest.raises(UsageError, match="not int8"):
        get_runner("torch", "resnet18", precision="int8")
    with pytest.raises(UsageError, match="not fp16"):
        get_runner("torch", "resnet18", precision="fp16", device="cpu")
    with pytest.raises(UsageError, match="CUDA graphs"):
        get_runner("torch", "resnet18", cuda_graphs=True)
    with pytest.raises(UsageError, match="unknown device"):
        get_runner("torch", "resnet18", device="tpu")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(DeployKitError, match="cannot read weights"), get_runner(
        "torch", "resnet18", num_classes=10, weights=bad
    ):
        pass


@pytest.mark.skipif(torch.cuda.is_available(), reason="this host has a GPU")
def test_torch_cuda_without_gpu_is_a_clear_error():
    with pytest.raises(DeployKitError, match="no CUDA GPU"), get_runner("torch", "resnet18", device="cuda"):
        pass


@needs_ort
@needs_openvino
@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_corrupt_onnx_file_is_a_clear_error(tmp_path, backend):
    path = tmp_path / "model.onnx"
    path.write_bytes(b"\x08\x07garbage that is not a protobuf model" * 10)
    with pytest.raises(DeployKitError, match="corrupt"), get_runner(backend, path):
        pass
    with pytest.raises(UsageError, match="no ONNX model"), get_runner(backend, tmp_path / "missing.onnx"):
        pass


@needs_ort
def test_onnxruntime_devices_map_to_providers():
    from deploykit.runtimes.onnxruntime_runner import device_unavailable_reason, providers_for

    assert providers_for("cpu") == ["CPUExecutionProvider"]
    assert providers_for("cuda")[0] == "CUDAExecutionProvider"
    assert providers_for("tensorrt")[:2] == ["TensorrtExecutionProvider", "CUDAExecutionProvider"]
    with pytest.raises(UsageError):
        providers_for("tpu")
    assert device_unavailable_reason("cpu") is None
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert "onnxruntime-gpu" in device_unavailable_reason("cuda")


def test_machine_description_is_complete():
    from deploykit.machine import MachineInfo, describe_machine

    machine = describe_machine()
    data = machine.to_dict()
    assert data["logical_cpus"] >= 1 and data["cpu_model"]
    assert "python" in data["libraries"] and "numpy" in data["libraries"]
    assert isinstance(data["has_vnni"], bool)
    again = MachineInfo.from_dict(data)
    assert again == machine
    assert machine.summary().startswith(machine.cpu_model)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime", "openvino"])
def test_profile_layers_is_a_runner_method(tiny, backend):
    """Each backend profiles itself (hooks, ORT's profiler, OpenVINO's counters): slowest first."""
    pytest.importorskip(backend)
    model, path = tiny
    source = model if backend == "torch" else path
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16), dtype=np.float32)
    with get_runner(backend, source) as runner:
        rows = runner.profile_layers(x, repeats=2)
        assert rows and all(row.time_ms >= 0 for row in rows)
        assert [row.time_ms for row in rows] == sorted((row.time_ms for row in rows), reverse=True)
        if backend == "torch":
            assert {row.name for row in rows} >= {"conv", "bn", "fc"} and rows[0].op
    with pytest.raises(DeployKitError, match="not active"):
        runner.profile_layers(x)


def test_from_settings_keeps_what_each_runner_takes(tiny):
    from deploykit.runtimes import runner_class

    _, path = tiny
    settings = {"device": "cpu", "threads": 1, "precision": "fp32", "channels_last": True, "cuda_graphs": False}
    runner = runner_class("onnxruntime").from_settings(path, **settings)
    assert runner.threads == 1 and runner.device == "cpu"
    if is_available("openvino"):
        assert runner_class("openvino").from_settings(path, **settings).device == "CPU"
    torch_runner = runner_class("torch").from_settings("resnet18", **settings)
    assert torch_runner.channels_last and torch_runner.threads == 1


def test_staged_io_phases_run_on_cpu_and_match_infer(tiny):
    """The GPU timing path (buffers allocated once; h2d, compute, d2h apart) runs without a GPU."""
    model, _ = tiny
    x = np.random.default_rng(1).standard_normal((2, 3, 16, 16), dtype=np.float32)
    with get_runner("torch", model, tf32=True) as runner:
        staged = runner.staged_io(x)
        assert staged.timer() is None  # host clock on a CPU; CUDA events on a GPU
        staged.end_to_end()
        np.testing.assert_allclose(staged.output(), runner.infer(x), rtol=1e-5, atol=1e-6)
        staged.h2d()
        staged.compute()
        staged.d2h()
        assert staged.output().shape == (2, 5)
        assert runner.device_memory() is None and runner.describe()["tf32"] is True
        fn, buffer = runner.compute_fn(runner.to_device(x))
        assert tuple(buffer.shape) == (2, 3, 16, 16) and tuple(fn().shape) == (2, 5)
