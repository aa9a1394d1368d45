"""Models nobody here wrote enter the pipeline: any nn.Module (timm, random init) and any ONNX
classifier file. Export, FP16, INT8, bench and parity run on them; parity's reference is the
rebuilt module (a factory with a seed) or, without a PyTorch source, the FP32 ONNX file."""

from __future__ import annotations

import json
import textwrap

import pytest
from click.testing import CliRunner

from deploykit.cli import cli
from deploykit.errors import UsageError
from deploykit.repository import ModelRepository

timm = pytest.importorskip("timm")

SIZE = 64


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _recalibrated(model):
    """Random BatchNorm statistics make a constant classifier; real-ish statistics make it look at its input."""
    import torch

    from deploykit.parity import recalibrate_batchnorm

    recalibrate_batchnorm(model, [torch.randn(8, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))])
    return model.eval()


@pytest.fixture(scope="module")
def regnet_repo(tmp_path_factory):
    """timm's regnetx_002 (random init, 10 classes) exported with export_module, plus FP16 and INT8."""
    from deploykit.export import export_module
    from deploykit.pipeline import ensure_variant

    repo = tmp_path_factory.mktemp("entries") / "models"
    module = _recalibrated(timm.create_model("regnetx_002", pretrained=False, num_classes=10))
    result = export_module(module, "regnetx", repo=repo, input_size=SIZE, labels=[f"c{i}" for i in range(10)])
    repository = ModelRepository(repo)
    for precision in ("fp16", "int8"):
        ensure_variant(repository, "regnetx", "onnx", precision, options={("onnx", precision): {"calib_size": 8}})
    return repo, result


def test_export_module_records_the_module_and_a_client_config(regnet_repo):
    repo, result = regnet_repo
    side = json.loads((result.artifact.directory / "deploykit.json").read_text())
    assert side["source"] == "python:timm.models.regnet.RegNet" and side["weights"]["kind"] == "module"
    assert side["weights"]["factory"] is None and side["weights_sha256"] == side["weights"]["sha256"]
    assert side["num_classes"] == 10 and side["labels"][:2] == ["c0", "c1"] and side["parity"]["passed"]
    assert side["preprocessing"]["crop"] == SIZE and any("ImageNet's" in n for n in result.notes)
    assert "deploykit_preprocessing" in (result.artifact.directory / "config.pbtxt").read_text()
    assert {p.name for p in repo.iterdir() if not p.name.startswith(".")} == {"regnetx_onnx_fp32", "regnetx_onnx_fp16", "regnetx_onnx_int8"}


def test_parity_of_a_module_without_factory_uses_the_fp32_onnx_file(regnet_repo):
    from deploykit.parity import check

    repo, _ = regnet_repo
    report = check("regnetx", repo=repo, precisions=["fp32", "fp16", "int8"], write_sidecar=False)
    assert report.reference.name == "onnxruntime-fp32"
    assert any("FP32 ONNX file under ONNX Runtime" in n for n in report.notes)
    by_precision = {r.precision: r for r in report.results}
    assert by_precision["fp32"].passed and by_precision["fp32"].metrics.max_abs_error == 0.0
    assert {r.status for r in report.results} <= {"pass", "fail"} and len(report.results) == 3


def test_bench_runs_on_a_module_export(regnet_repo):
    repo, _ = regnet_repo
    result = _run("bench", "regnetx", "--repo", repo, "--backend", "torch,onnxruntime", "--precision", "fp32,int8",
                  "--iterations", "2", "--warmup", "1", "--no-isolate", "--no-ceilings", "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["results"]
    measured = {(r["config"]["backend"], r["config"]["precision"]) for r in rows if r["status"] == "ok"}
    assert measured == {("onnxruntime", "fp32"), ("onnxruntime", "int8")}
    assert any("not a zoo model" in (r.get("reason") or "") for r in rows if r["config"]["backend"] == "torch")


def test_export_module_cli_rebuilds_the_factory_for_parity(tmp_path, monkeypatch):
    (tmp_path / "dk_factories.py").write_text(textwrap.dedent("""
        import timm, torch
        from deploykit.parity import recalibrate_batchnorm

        def efficientnet():
            model = timm.create_model("efficientnet_b0", pretrained=False, num_classes=7)
            recalibrate_batchnorm(model, [torch.randn(8, 3, 64, 64, generator=torch.Generator().manual_seed(1))])
            return model.eval()
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    repo = tmp_path / "models"
    result = _run("export", "effnet", "--module", "dk_factories:efficientnet", "--input-size", SIZE, "--seed", 5,
                  "--repo", repo, "--format", "json")  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["weights_origin"]["factory"] == "dk_factories:efficientnet" and out["weights_origin"]["seed"] == 5
    assert out["num_classes"] == 7
    parity = _run("parity", "effnet", "--repo", repo, "--format", "json")
    report = json.loads(parity.stdout)
    assert parity.exit_code == 0, parity.output
    assert report["reference"]["name"] == "torch-fp32"
    assert report["reference"]["details"]["weights"] == "dk_factories:efficientnet() with seed 5"
    refused = _run("export", "effnet", "--module", "dk_factories:nothing_here", "--repo", repo)
    assert refused.exit_code == 2 and "has no 'nothing_here'" in refused.output


# ---- deploykit import ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def classifier_onnx(tmp_path_factory):
    """An ONNX classifier made elsewhere (torchvision's ResNet-18 through plain export_onnx)."""
    import torchvision

    from deploykit.export import export_onnx

    path = tmp_path_factory.mktemp("onnx") / "Their Classifier.onnx"
    net = _recalibrated(torchvision.models.resnet18(weights=None, num_classes=5))
    export_onnx(net, (1, 3, SIZE, SIZE), path)
    return path


def test_import_checks_records_and_feeds_parity(tmp_path, classifier_onnx):
    from deploykit.fileio import sha256_file

    repo = tmp_path / "models"
    labels = tmp_path / "classes.txt"
    labels.write_text("\n".join(f"class {i}" for i in range(5)))
    result = _run("import", classifier_onnx, "--labels", labels, "--repo", repo, "--format", "json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["model"] == "their_classifier" and out["variant"] == "their_classifier_onnx_fp32"
    assert out["source_sha256"] == sha256_file(classifier_onnx) and out["input"]["shape"] == [-1, 3, SIZE, SIZE]
    side = json.loads((repo / "their_classifier_onnx_fp32" / "deploykit.json").read_text())
    assert side["source"] == "onnx:Their Classifier.onnx" and side["weights"]["kind"] == "onnx"
    assert side["labels"][4] == "class 4" and side["import_check"]["batch_sizes"] == [1, 8]
    assert side["preprocessing"]["crop"] == SIZE and any("defaulted to ImageNet" in n for n in out["notes"])
    report = _run("parity", "their_classifier", "--repo", repo, "--format", "json")
    assert report.exit_code == 0, report.output
    parsed = json.loads(report.stdout)
    assert parsed["reference"]["name"] == "onnxruntime-fp32" and parsed["results"][0]["status"] == "pass"
    check = _run("repo", "check", "--repo", repo)
    assert check.exit_code == 0, check.output


def test_import_refusals(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from deploykit.export import import_onnx

    def save(inputs, name):
        nodes = [helper.make_node("Identity", [inputs[0].name], ["y"])]
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 5])
        path = tmp_path / name
        onnx.save(helper.make_model(helper.make_graph(nodes, "g", inputs, [y]), opset_imports=[helper.make_opsetid("", 18)]), path)
        return path

    image = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 3, None, None])
    extra = helper.make_tensor_value_info("z", TensorProto.FLOAT, [1])
    table = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 5])
    repo = tmp_path / "models"
    with pytest.raises(UsageError, match="2 inputs and 1 outputs"):
        import_onnx(save([image, extra], "two.onnx"), repo=repo)
    with pytest.raises(UsageError, match="not a float32 N x 3 x H x W"):
        import_onnx(save([table], "table.onnx"), repo=repo)
    with pytest.raises(UsageError, match="--input-size"):
        import_onnx(save([image], "free.onnx"), repo=repo)
    assert not repo.exists()
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"junk")
    result = _run("import", bad, "--repo", repo)
    assert result.exit_code in (1, 2) and "Traceback" not in result.output and not repo.exists()
