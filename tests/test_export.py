"""deploykit export: PyTorch -> verified ONNX in the Triton model repository.

Exports are the slow part (torch.export traces every model), so the tests share them:
small models at 32-64 px, a few tiny test networks registered in the zoo for the failure
paths, and one real GoogLeNet export (marked slow).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from deploykit.cli import cli
from deploykit.errors import UsageError
from deploykit.export import compare_logits, export_model, export_onnx
from deploykit.runtimes.onnxruntime_runner import OnnxRuntimeRunner
from deploykit.zoo import Preprocessing, register_model


def _run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _entries(folder: Path) -> list[str]:
    """Everything in a repository folder, hidden temp folders included."""
    return sorted(os.listdir(folder)) if folder.exists() else []


def _metadata(path: Path) -> dict[str, str]:
    return {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}


# ---- tiny zoo models for the failure paths (fast to export) --------------------------------------
class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 1000, cheat: bool = False):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(8, num_classes)
        self.cheat = cheat

    def forward(self, x):
        y = self.fc(torch.flatten(self.features(x), 1))
        if self.cheat and torch.onnx.is_in_onnx_export():
            y = y + 0.5  # the exported graph disagrees with eager PyTorch
        return y


@pytest.fixture
def tiny_zoo():
    """Register dktest_tiny and dktest_cheat (32 px) for one test, then remove them."""
    from deploykit.zoo import _registry, list_models

    list_models()  # load the real families first

    def dktest_tiny(num_classes: int = 1000):
        return TinyNet(num_classes)

    def dktest_cheat(num_classes: int = 1000):
        return TinyNet(num_classes, cheat=True)

    names = []
    for fn in (dktest_tiny, dktest_cheat):
        register_model(family="test", year=2024, paper="test", input_size=32, preprocessing=Preprocessing(36, 32))(fn)
        names.append(fn.__name__)
    yield names
    for name in names:
        _registry._BUILDERS.pop(name, None)
        _registry._CARDS.pop(name, None)


# ---- export_onnx on models deploykit did not write --------------------------------------------------
@pytest.mark.slow
def test_export_onnx_timm_model_dynamic_batch(tmp_path):
    timm = pytest.importorskip("timm")
    model = timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=10).eval()
    out = export_onnx(model, (1, 3, 64, 64), tmp_path / "m.onnx", metadata={"origin": "timm", "extra": {"k": 1}})

    assert out.opset == 18 and out.dynamic_batch
    assert out.input.name == "input" and out.input.shape == (-1, 3, 64, 64)
    assert out.output.name == "logits" and out.output.shape == (-1, 10)
    saved = onnx.load(str(out.path))
    assert [(o.domain, o.version) for o in saved.opset_import if o.domain in ("", "ai.onnx")] == [("", 18)]
    assert _metadata(out.path)["origin"] == "timm" and json.loads(_metadata(out.path)["extra"]) == {"k": 1}
    assert "HardSwish" in out.operators and not out.unsupported_ops
    assert out.bytes == out.path.stat().st_size and out.external_data is None
    assert model.training is False

    x = np.random.default_rng(0).standard_normal((5, 3, 64, 64)).astype(np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    with OnnxRuntimeRunner(out.path) as runner:
        for batch in (1, 5):  # batch 1 and > 1 on one dynamic graph
            np.testing.assert_allclose(runner.infer(x[:batch]), ref[:batch], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_export_onnx_torchvision_static_batch_with_external_data(tmp_path):
    import torchvision

    model = torchvision.models.resnet18(num_classes=10)
    model.train()  # export_onnx exports in eval mode and restores the flag
    out = export_onnx(model, (2, 3, 32, 32), tmp_path / "r.onnx", dynamic_batch=False, external_data_threshold=0)
    assert model.training is True

    data = tmp_path / "r.onnx.data"
    assert out.external_data == data and data.stat().st_size > 40e6  # the weights live beside the graph
    assert out.path.stat().st_size < 1e6
    assert out.bytes == out.path.stat().st_size + data.stat().st_size
    assert out.input.shape == (2, 3, 32, 32) and out.output.shape == (2, 10)
    onnx.checker.check_model(str(out.path), full_check=True)

    model.eval()
    x = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        ref = model(torch.from_numpy(x)).numpy()
    with OnnxRuntimeRunner(out.path) as runner:
        np.testing.assert_allclose(runner.infer(x), ref, rtol=1e-4, atol=1e-5)
        with pytest.raises(Exception, match="does not fit"):
            runner.infer(x[:1])  # static batch: only 2 fits


def test_export_onnx_refuses_an_opset_onnx_does_not_know(tmp_path):
    newest = onnx.defs.onnx_opset_version()
    with pytest.raises(UsageError, match=f"opset {newest + 5}"):
        export_onnx(TinyNet(4), (1, 3, 16, 16), tmp_path / "t.onnx", opset=newest + 5)
    assert _entries(tmp_path) == []


def test_export_onnx_rejects_models_with_several_outputs_or_wrong_sizes(tmp_path):
    class TwoHeads(nn.Module):
        def forward(self, x):
            return x.mean((2, 3)), x.amax((2, 3))

    with pytest.raises(UsageError, match="2 outputs"):
        export_onnx(TwoHeads(), (1, 3, 8, 8), tmp_path / "a.onnx")
    with pytest.raises(UsageError, match="cannot run on an input"):
        export_onnx(nn.Linear(5, 2), (1, 3, 8, 8), tmp_path / "b.onnx")
    assert _entries(tmp_path) == []


# ---- the verification rule ----------------------------------------------------------------------------
def test_compare_logits_tolerates_float_noise_and_near_ties_but_not_real_errors():
    rng = np.random.default_rng(0)
    ref = rng.standard_normal((6, 10)) * 5
    noise = ref + rng.standard_normal(ref.shape) * 1e-6
    ok = compare_logits(ref, {1: noise, 6: noise})
    assert ok.passed and ok.top1_agreement == 1.0 and ok.max_rel < 1e-5 and ok.batch_sizes == (1, 6)

    # Near-constant outputs (random-weight GoogLeNet): top-1 flips by noise must not fail.
    flat = np.full((4, 10), 0.01) + rng.standard_normal((4, 10)) * 1e-9
    flipped = flat[:, ::-1].copy()
    tie = compare_logits(flat, {1: flipped})
    assert tie.passed and tie.decisive == 0 and tie.top1_agreement < 1.0

    # A decisive image whose top-1 changes fails even with a small numeric error.
    ref2 = np.zeros((2, 3))
    ref2[:, 0] = 1.0
    swapped = ref2.copy()
    swapped[0] = [0.9995, 1.0, 0.0]
    bad = compare_logits(ref2, {1: swapped}, tolerance=1e-3, image_names=["a", "b"])
    assert not bad.passed and any("a: top-1 changed" in f for f in bad.failures)

    off = compare_logits(ref, {8: ref + 0.5})
    assert not off.passed and off.max_abs == pytest.approx(0.5) and not bool(off)
    nan = compare_logits(ref, {1: np.full_like(ref, np.nan)})
    assert not nan.passed and "non-finite" in nan.failures[0]


# ---- export_model: the repository side -------------------------------------------------------------
@pytest.mark.slow
def test_verification_failure_exits_1_and_writes_nothing(tmp_path, tiny_zoo):
    repo = tmp_path / "models"
    result = _run("export", "dktest_cheat", "--num-classes", "5", "--repo", str(repo))
    _assert_refused(result, 1, "ONNX Runtime disagrees with PyTorch", "relative error", "nothing was written")
    assert not repo.exists()  # not even the repository folder it had to create


@pytest.mark.slow
def test_interrupted_export_leaves_nothing_and_keeps_the_previous_variant(tmp_path, tiny_zoo):
    repo = tmp_path / "models"
    # A static batch of 2, with the weights forced into ONNX external data (the >2 GB path).
    first = export_model("dktest_tiny", repo=repo, num_classes=300, batch=2, external_data_threshold=0)
    assert first.input.shape == (2, 3, 32, 32)
    assert sorted(_entries(first.artifact.path.parent)) == ["model.onnx", "model.onnx.data"]
    assert first.to_dict()["external_data"] == "model.onnx.data"
    assert first.bytes == first.artifact.path.stat().st_size + (first.artifact.path.parent / "model.onnx.data").stat().st_size
    with OnnxRuntimeRunner(first.artifact) as runner:
        assert runner.infer(np.zeros((2, 3, 32, 32), np.float32)).shape == (2, 300)
    config = (first.artifact.directory / "config.pbtxt").read_text()
    assert "max_batch_size: 0" in config and "dims: [ 2, 3, 32, 32 ]" in config and "dynamic_batching" not in config
    assert first.parity.batch_sizes == (2,) and first.parity.passed
    before = first.artifact.path.read_bytes()

    def interrupt(step: str) -> None:
        if step.startswith("writing"):
            raise KeyboardInterrupt  # Ctrl-C while the new variant folder is being written

    with pytest.raises(KeyboardInterrupt):
        export_model("dktest_tiny", repo=repo, num_classes=300, progress=interrupt)
    assert _entries(repo) == ["dktest_tiny_onnx_fp32"]  # no temp folders, no half variant
    assert first.artifact.path.read_bytes() == before  # the old variant is untouched
    assert "max_batch_size: 0" in (first.artifact.directory / "config.pbtxt").read_text()


@pytest.mark.slow
def test_reexport_keeps_other_versions_and_files_and_needs_force_to_discard_foreign_ones(tmp_path, tiny_zoo):
    repo = tmp_path / "models"
    assert _run("export", "dktest_tiny", "--repo", str(repo)).exit_code == 0
    variant = repo / "dktest_tiny_onnx_fp32"
    (variant / "2").mkdir()
    (variant / "2" / "model.onnx").write_bytes((variant / "1" / "model.onnx").read_bytes())
    (variant / "notes.txt").write_text("mine")
    first_sha = json.loads((variant / "deploykit.json").read_text())["sha256"]

    again = _run("export", "dktest_tiny", "--repo", str(repo), "--seed", "1")
    assert again.exit_code == 0, again.output
    assert "replaced the previous dktest_tiny_onnx_fp32" in again.output and "kept 2/, notes.txt" in again.output
    side = json.loads((variant / "deploykit.json").read_text())
    assert side["replaced"]["sha256"] == first_sha and side["replaced"]["kept"] == ["2/", "notes.txt"]
    assert sorted(side["replaced"]["replaced"]) == ["1/model.onnx", "config.pbtxt", "deploykit.json"]
    assert (variant / "notes.txt").read_text() == "mine" and (variant / "2" / "model.onnx").is_file()

    (variant / "1" / "calibration.cache").write_text("a user's file")
    refused = _run("export", "dktest_tiny", "--repo", str(repo), "--seed", "2")
    _assert_refused(refused, 2, "1/calibration.cache", "--force")
    assert (variant / "1" / "calibration.cache").is_file()  # refused before any work: nothing changed
    assert json.loads((variant / "deploykit.json").read_text())["sha256"] == side["sha256"]

    forced = _run("export", "dktest_tiny", "--repo", str(repo), "--seed", "2", "--force", "--format", "json")
    assert forced.exit_code == 0, forced.output
    assert json.loads(forced.output)["replaced"]["discarded"] == ["1/calibration.cache"]
    assert sorted(os.listdir(variant)) == ["1", "2", "config.pbtxt", "deploykit.json", "notes.txt"]
    assert sorted(os.listdir(variant / "1")) == ["model.onnx"] and _entries(repo) == ["dktest_tiny_onnx_fp32"]


@pytest.mark.slow
def test_torchscript_exporter_is_verified_and_recorded(tmp_path, tiny_zoo):
    repo = tmp_path / "models"
    result = _run(
        "export", "dktest_tiny", "--num-classes", "300", "--exporter", "torchscript", "--external-data-threshold", "0",
        "--repo", str(repo), "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    # --external-data-threshold 0: every weight of 1 KiB or more beside the graph.
    assert out["external_data"] == "model.onnx.data" and (Path(out["path"]).parent / "model.onnx.data").is_file()
    # The default verification: two photos as one batch, the first at batch 1 too.
    assert out["parity"]["batch_sizes"] == [1, 2] and out["parity"]["compared"] == 3 and out["parity"]["max_rel"] < 1e-4
    assert out["parity"]["images"] == 2 and out["verification_images"] == "2 scikit-image sample photos"
    side = json.loads((repo / "dktest_tiny_onnx_fp32" / "deploykit.json").read_text())
    assert side["exporter"]["exporter"] == "torch.onnx.export(dynamo=False)" and side["parity"]["passed"] is True
    assert side["input"]["shape"] == [-1, 3, 32, 32] and side["output"]["shape"] == [-1, 300]
    with OnnxRuntimeRunner(Path(out["path"])) as runner:  # the dynamic batch survives the legacy exporter
        assert runner.infer(np.zeros((3, 3, 32, 32), np.float32)).shape == (3, 300)

    # the help says the deprecation; a model that cheats in export fails with torchscript too
    assert "deprecated upstream" in " ".join(_run("export", "--help").output.split())
    cheat = _run("export", "dktest_cheat", "--num-classes", "5", "--exporter", "torchscript", "--repo", str(repo))
    assert cheat.exit_code == 1 and "ONNX Runtime disagrees with PyTorch" in cheat.output


@pytest.mark.slow
def test_cli_all_goes_on_after_failures_and_exits_1(tmp_path, tiny_zoo, monkeypatch):
    import deploykit.zoo

    # A small zoo: one model that exports, one whose graph disagrees, one that does not exist.
    monkeypatch.setattr(deploykit.zoo, "list_models", lambda: ["dktest_cheat", "no_such_model", "dktest_tiny"])
    repo = tmp_path / "models"
    result = _run("export", "--all", "--num-classes", "4", "--repo", str(repo), "--format", "json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    assert [r["model"] for r in report["results"]] == ["dktest_tiny"]
    assert [f["model"] for f in report["failures"]] == ["dktest_cheat", "no_such_model"]
    assert "disagrees" in report["failures"][0]["error"] and "unknown model" in report["failures"][1]["error"]
    assert _entries(repo) == ["dktest_tiny_onnx_fp32"]


@pytest.mark.slow
def test_cli_opset_17_is_refused_with_a_clear_message(tmp_path, tiny_zoo):
    repo = tmp_path / "models"
    result = _run("export", "dktest_tiny", "--opset", "17", "--repo", str(repo))
    # torch's exporter silently raises 17 to 18: deploykit reads the produced opset back.
    _assert_refused(result, 2, "cannot produce opset 17: it produced opset 18", "--opset 18")
    assert not repo.exists()


@pytest.mark.slow
def test_cli_precision_option_hands_the_fp32_export_to_the_precision_stage(tmp_path, tiny_zoo, monkeypatch):
    import deploykit.precision
    from deploykit.repository import ModelRepository

    calls = []

    def make_variant(**kwargs):  # stands in for the precision stage; records what export passes on
        fp32 = kwargs["repo"].get(kwargs["model"], "onnx", "fp32")  # the FP32 export is already there
        calls.append({**kwargs, "parent": fp32.variant})
        kwargs["repo"].write_variant(  # a copy stands in for the converted file
            kwargs["model"], "onnx", kwargs["precision"], write_model=lambda p: p.write_bytes(fp32.path.read_bytes()),
            config_pbtxt="", sidecar={}, parent=fp32.variant,
        )  # fmt: skip
        return {"variant": f"{kwargs['model']}_onnx_{kwargs['precision']}"}

    monkeypatch.setattr(deploykit.precision, "make_variant", make_variant, raising=False)
    repo = tmp_path / "models"
    result = _run(
        "export", "dktest_tiny", "--num-classes", "3", "--repo", str(repo), "--precision", "fp32,fp16,int8",
        "--calib-size", "16", "--calib-method", "entropy", "--no-keep-io-types", "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert [c["precision"] for c in calls] == ["fp16", "int8"]
    assert all(isinstance(c["repo"], ModelRepository) and c["repo"].root == repo for c in calls)
    assert calls[1]["calib_size"] == 16 and calls[1]["calib_method"] == "entropy" and calls[1]["keep_io_types"] is False
    assert calls[0]["parent"] == "dktest_tiny_onnx_fp32"
    assert [v["variant"] for v in json.loads(result.stdout)["variants"]] == ["dktest_tiny_onnx_fp16", "dktest_tiny_onnx_int8"]


# ---- the main CLI path with real trained weights and a user image folder --------------------------
@pytest.fixture(scope="module")
def digits_export(tmp_path_factory, request):
    """`deploykit export resnet18 --weights <digits checkpoint> --data <ImageFolder> --format json`."""
    from PIL import Image

    trained = request.getfixturevalue("digits_resnet18")
    root = tmp_path_factory.mktemp("digits_export")
    ckpt = root / "digits.pt"
    # A training-script checkpoint: the state dict under "state_dict", with DataParallel prefixes.
    state = {f"module.{k}": v for k, v in trained.model.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": state}, ckpt)
    data = root / "images"
    split = trained.split
    for i, (image, label) in enumerate(zip(split.images_test[:40], split.y_test[:40], strict=True)):
        (data / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(data / str(label) / f"{i}.png")
    repo = root / "models"
    result = _run(
        "export", "resnet18", "--weights", str(ckpt), "--num-classes", "10", "--input-size", "32",
        "--data", str(data), "--verify-images", "16", "--repo", str(repo), "--format", "json",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), repo, trained, ckpt


@pytest.mark.slow
def test_cli_export_json_contract_and_files(digits_export):
    out, repo, _, ckpt = digits_export
    for key in ("model", "path", "opset", "bytes", "parity", "seconds"):
        assert key in out
    assert set(out["parity"]) >= {"max_abs", "max_rel", "top1_agreement"}
    assert out["model"] == "resnet18" and out["opset"] == 18
    variant = repo / "resnet18_onnx_fp32"
    assert Path(out["path"]) == variant / "1" / "model.onnx"
    assert out["bytes"] == Path(out["path"]).stat().st_size
    assert out["parity"]["top1_agreement"] == 1.0 and out["parity"]["max_rel"] < 1e-4
    assert out["parity"]["batch_sizes"] == [1, 8] and out["parity"]["decisive_images"] > 0
    # --verify-images 16: sixteen of the forty files, spread over the ten class folders.
    assert out["parity"]["images"] == 16 and out["verification_images"].startswith("16 images from")
    names = json.loads((variant / "deploykit.json").read_text())["parity"]["image_names"]
    assert len(names) == 16 and {n.split("/")[0] for n in names} == {p.name for p in (repo.parent / "images").iterdir()}
    assert _entries(repo) == ["resnet18_onnx_fp32"]  # no temp folders left
    assert sorted(_entries(variant)) == ["1", "config.pbtxt", "deploykit.json"]

    import hashlib

    side = json.loads((variant / "deploykit.json").read_text())
    assert side["source"] == "pytorch:resnet18" and side["parent"] == "pytorch:resnet18" and side["lineage"] == []
    assert side["weights_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    assert side["weights"]["container_key"] == "state_dict" and side["weights"]["stripped_prefixes"] == ["module."]
    assert side["input"] == {
        "name": "input", "shape": [-1, 3, 32, 32], "dtype": "float32",
        "layout": "NCHW", "color": "RGB", "dynamic_batch": True,
    }  # fmt: skip
    assert side["output"]["shape"] == [-1, 10]
    assert side["preprocessing"]["crop"] == 32 and side["preprocessing"]["mean"] == [0.485, 0.456, 0.406]
    assert side["labels"] == [str(d) for d in range(10)] and side["labels_source"] == "class folders of --data"
    from importlib.metadata import version

    assert side["opset"] == 18 and side["exporter"]["torch"] == version("torch")
    assert "onnxruntime" in side["libraries"] and side["parity"]["passed"] is True
    assert side["unsupported_tensorrt_ops"] == [] and side["tensorrt_preflight"]["tensorrt_version"]
    assert side["sha256"] == hashlib.sha256(Path(out["path"]).read_bytes()).hexdigest()

    meta = _metadata(Path(out["path"]))
    assert meta["model"] == "resnet18" and meta["source"] == "pytorch:resnet18" and meta["precision"] == "fp32"
    assert meta["opset"] == "18" and json.loads(meta["preprocessing"])["crop"] == 32 and meta["created_at"]
    assert json.loads(meta["labels"])[3] == "3"

    config = (variant / "config.pbtxt").read_text()
    assert 'platform: "onnxruntime_onnx"' in config and "max_batch_size: 32" in config
    assert "dims: [ 3, 32, 32 ]" in config and "dims: [ 10 ]" in config and "KIND_CPU" in config
    assert "preferred_batch_size: [ 4, 8, 16, 32 ]" in config


@pytest.mark.slow
def test_exported_digits_model_predicts_like_pytorch_at_batch_1_and_many(digits_export):
    from deploykit.repository import ModelRepository

    out, repo, trained, _ = digits_export
    artifact = ModelRepository(repo).get("resnet18", "onnx", "fp32")
    x = trained.split.x_test[:64]
    with torch.inference_mode():
        ref = trained.model(torch.from_numpy(x)).numpy()
    with OnnxRuntimeRunner(artifact) as runner:
        many = runner.infer(x)
        one = np.concatenate([runner.infer(x[i : i + 1]) for i in range(8)])
    np.testing.assert_allclose(many, ref, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(one, ref[:8], rtol=1e-4, atol=1e-4)
    accuracy = float((many.argmax(1) == trained.split.y_test[:64]).mean())
    assert accuracy > 0.85  # the trained digits classifier survives export


@pytest.mark.slow
def test_exported_repository_passes_the_triton_repository_check(digits_export):
    check = pytest.importorskip("deploykit.serve.check")
    _, repo, _, _ = digits_export
    report = check.check_repository(repo)
    assert report.ok, report.to_dict()


# ---- GoogLeNet: torchvision-style checkpoint with auxiliary heads ------------------------------------
@pytest.mark.slow
def test_export_googlenet_drops_aux_heads_from_a_torchvision_checkpoint(tmp_path):
    import torchvision

    tv = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True, num_classes=10)
    aux = [k for k in tv.state_dict() if k.startswith(("aux1.", "aux2."))]
    assert aux
    ckpt = tmp_path / "googlenet_tv.pth"
    torch.save(tv.state_dict(), ckpt)
    repo = tmp_path / "models"

    result = _run(
        "export", "googlenet", "--weights", str(ckpt), "--num-classes", "10", "--input-size", "64", "--repo", str(repo)
    )
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "exported googlenet" in text
    assert f"dropped {len(aux)} auxiliary-classifier tensors (aux1, aux2)" in text

    path = repo / "googlenet_onnx_fp32" / "1" / "model.onnx"
    model = onnx.load(str(path))
    assert len(model.graph.output) == 1 and model.graph.output[0].name == "logits"
    names = [t.name for t in model.graph.initializer] + [n.name for n in model.graph.node]
    assert not any("aux" in n for n in names)
    weights = sum(int(np.prod(t.dims)) for t in model.graph.initializer)
    aux_params = sum(tv.state_dict()[k].numel() for k in aux if not k.endswith("num_batches_tracked"))
    # The ONNX file holds the main network only: fewer weights than even the aux heads would add.
    main_params = sum(v.numel() for k, v in tv.state_dict().items() if k not in aux)
    assert weights <= main_params < weights + aux_params
    side = json.loads((repo / "googlenet_onnx_fp32" / "deploykit.json").read_text())
    assert sorted(side["dropped_keys"]) == sorted(aux)


# ---- bad input: clear message, non-zero exit, nothing in the repository -----------------------------
@pytest.fixture
def repo(tmp_path):
    return tmp_path / "models"


def _assert_refused(result, code: int, *fragments: str, repo: Path | None = None) -> None:
    assert result.exit_code == code, result.output
    assert "error:" in result.output and "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in " ".join(result.output.split()), result.output
    if repo is not None:
        assert not repo.exists() or _entries(repo) == []


def test_unknown_model(repo):
    _assert_refused(_run("export", "vgg17", "--repo", str(repo)), 2, "unknown model 'vgg17'", "vgg16", repo=repo)


@pytest.mark.parametrize("name", ["../evil", "a/b", "/etc/passwd", "..", "a\\b"])
def test_model_names_with_path_separators(repo, name):
    _assert_refused(_run("export", name, "--repo", str(repo)), 2, "invalid model name", repo=repo)


def test_weights_missing(repo, tmp_path):
    result = _run("export", "resnet18", "--weights", str(tmp_path / "nope.pt"), "--repo", str(repo))
    _assert_refused(result, 2, "does not exist", repo=repo)


def test_weights_not_a_checkpoint(repo, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_text("these are not weights")
    _assert_refused(_run("export", "resnet18", "--weights", str(junk), "--repo", str(repo)), 2, "not a PyTorch checkpoint", repo=repo)


def test_weights_pickled_module_is_refused_without_running_it(repo, tmp_path):
    pickled = tmp_path / "whole_model.pt"
    torch.save(TinyNet(3), pickled)  # a whole pickled module, not a state dict
    result = _run("export", "resnet18", "--weights", str(pickled), "--repo", str(repo))
    _assert_refused(result, 2, "not a weights-only checkpoint", "state_dict()", repo=repo)


def test_weights_with_another_class_count_suggest_num_classes(repo, tmp_path):
    from deploykit.zoo import get_model

    ckpt = tmp_path / "ten.pt"
    torch.save(get_model("resnet18", num_classes=10).state_dict(), ckpt)
    result = _run("export", "resnet18", "--weights", str(ckpt), "--repo", str(repo))
    _assert_refused(result, 2, "fc.weight (10, 512) vs model (1000, 512)", "--num-classes 10", repo=repo)


def test_weights_with_mismatched_keys_name_them(repo, tmp_path):
    from deploykit.zoo import get_model

    state = get_model("resnet18", num_classes=10).state_dict()
    state["head.extra.weight"] = torch.zeros(2)
    del state["layer4.1.conv2.weight"]
    ckpt = tmp_path / "keys.pt"
    torch.save({"model": state}, ckpt)
    result = _run("export", "resnet18", "--num-classes", "10", "--weights", str(ckpt), "--repo", str(repo))
    _assert_refused(
        result, 2, "missing keys: layer4.1.conv2.weight", "unexpected keys: head.extra.weight", repo=repo
    )


def test_opset_outside_what_onnx_knows(repo):
    _assert_refused(_run("export", "resnet18", "--opset", "99", "--repo", str(repo)), 2, "opset 99", repo=repo)


def test_opset_below_what_tensorrt_reads_is_refused_before_the_model_is_built(tmp_path):
    from deploykit.zoo import _registry, list_models

    list_models()
    built = []

    def dktest_counted(num_classes: int = 1000):
        built.append(num_classes)
        return TinyNet(num_classes)

    register_model(family="test", year=2024, paper="test", input_size=32, preprocessing=Preprocessing(36, 32))(dktest_counted)
    try:
        repo = tmp_path / "models"
        result = _run("export", "dktest_counted", "--opset", "5", "--repo", str(repo))
        _assert_refused(result, 2, "opset 5 is below 9", "use an opset from 18", repo=repo)
        assert built == [] and not repo.exists()  # refused before the network was built or exported
    finally:
        _registry._BUILDERS.pop("dktest_counted", None)


def test_repository_that_is_not_writable(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    result = _run("export", "resnet18", "--repo", str(blocker / "models"))
    _assert_refused(result, 2, "cannot create the model repository")
    result = _run("export", "resnet18", "--repo", str(blocker))
    assert result.exit_code == 2 and "is a file" in result.output  # click's own check of --repo


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_repository_without_write_permission(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        _assert_refused(_run("export", "resnet18", "--repo", str(locked)), 2, "not writable")
    finally:
        locked.chmod(0o700)


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ((), "which model?"),
        (("resnet18", "--all"), "not both"),
        (("--all", "--weights", "x.pt"), "--weights fits one model"),
        (("resnet18", "--precision", "fp8"), "unknown precision 'fp8'"),
        (("resnet18", "--num-classes", "0"), "--num-classes must be"),
        (("resnet18", "--input-size", "8"), "--input-size must be"),
        (("resnet18", "--batch", "0"), "--batch must be"),
        (("resnet18", "--max-batch-size", "0"), "--max-batch-size must be"),
        (("resnet18", "--tolerance", "-1"), "tolerance must be"),
        (("resnet18", "--verify-images", "1"), "--verify-images must be an integer 2..16"),
        (("resnet18", "--verify-images", "17"), "--verify-images must be an integer 2..16"),
    ],
)
def test_bad_options(repo, args, fragment):
    _assert_refused(_run("export", *args, "--repo", str(repo)), 2, fragment, repo=repo)


@pytest.mark.slow
def test_input_size_too_small_for_the_model(repo):
    result = _run("export", "alexnet", "--input-size", "32", "--repo", str(repo))
    _assert_refused(result, 2, "cannot run on an input of shape (2, 3, 32, 32)", "--input-size", repo=repo)


def test_missing_data_folder(repo, tmp_path):
    result = _run("export", "resnet18", "--data", str(tmp_path / "no_images"), "--repo", str(repo))
    _assert_refused(result, 2, "does not exist", repo=repo)


# ---- checkpoints ---------------------------------------------------------------------------------
def test_load_weights_layouts_prefixes_and_old_batchnorm_counters(tmp_path):
    from deploykit.checkpoints import load_weights

    src = TinyNet(3)
    with torch.no_grad():
        src.fc.weight.normal_()
    state = src.state_dict()
    layouts = {
        "plain.pt": state,
        "container.pt": {"model_state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 9},
        "compiled.pt": {"state_dict": {f"_orig_mod.{k}": v for k, v in state.items()}},
        "old_bn.pt": {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")},
    }
    for filename, obj in layouts.items():
        torch.save(obj, tmp_path / filename)
        dst = TinyNet(3)
        report = load_weights(dst, tmp_path / filename)
        assert torch.equal(dst.fc.weight, src.fc.weight), filename
        assert report.dropped_keys == () and len(report.sha256) == 64
    assert load_weights(TinyNet(3), tmp_path / "container.pt").stripped_prefixes == ("module.",)
    assert load_weights(TinyNet(3), tmp_path / "container.pt").container_key == "model_state_dict"


@pytest.mark.slow
def test_load_weights_googlenet_aux_dropped_only_when_the_model_has_none(tmp_path):
    from deploykit.checkpoints import load_weights
    from deploykit.zoo import get_model

    with_aux = get_model("googlenet", num_classes=7, aux_logits=True)
    ckpt = tmp_path / "g.pt"
    torch.save(with_aux.state_dict(), ckpt)
    plain = get_model("googlenet", num_classes=7)
    report = load_weights(plain, ckpt)
    assert report.dropped_keys and all(k.startswith(("aux1.", "aux2.")) for k in report.dropped_keys)
    assert "auxiliary" in report.notes[0]
    assert torch.equal(plain.fc.weight, with_aux.fc.weight)
    assert load_weights(with_aux, ckpt).dropped_keys == ()  # a model with aux heads keeps them


def test_load_weights_errors_are_usage_errors(tmp_path):
    from deploykit.checkpoints import load_weights

    torch.save({"epoch": 1, "optimizer": {"lr": 0.1}}, tmp_path / "no_state.pt")
    with pytest.raises(UsageError, match="holds no state dict"):
        load_weights(TinyNet(3), tmp_path / "no_state.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(UsageError, match="not a state dict"):
        load_weights(TinyNet(3), tmp_path / "list.pt")
    torch.save(TinyNet(5).state_dict(), tmp_path / "five.pt")
    with pytest.raises(UsageError, match="fc.weight") as info:
        load_weights(TinyNet(3), tmp_path / "five.pt")
    assert "--num-classes 5" in info.value.hint
    state = TinyNet(3).state_dict()
    state["features.0.weight"] = torch.zeros(8, 3, 5, 5)  # a non-classifier shape differs: no class hint
    torch.save(state, tmp_path / "conv.pt")
    with pytest.raises(UsageError, match="features.0.weight") as info:
        load_weights(TinyNet(3), tmp_path / "conv.pt")
    assert "--num-classes" not in info.value.hint
    with pytest.raises(UsageError, match="is not a file"):
        load_weights(TinyNet(3), tmp_path)


# ---- onnx_checks, onnx_graph, onnx_io ---------------------------------------------------------
def _graph_model(nodes, opset=18, functions=()):
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])
    graph = helper.make_graph(nodes, "g", [x], [y])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], functions=list(functions))


def test_tensorrt_operator_list_is_data_with_source_and_version():
    from deploykit.onnx_checks import tensorrt_operator_list

    table = tensorrt_operator_list()
    assert "onnx-tensorrt" in table.source and table.tensorrt_version.startswith("10.")
    assert {"Conv", "Relu", "MaxPool", "Gemm", "Concat", "BatchNormalization"} <= table.supported
    assert {"Unique", "ConvInteger", "NegativeLogLikelihoodLoss"} <= table.unsupported
    assert not table.supported & table.unsupported and table.opset_min <= 18 <= table.opset_max


def test_tensorrt_preflight_finds_unsupported_ops_in_subgraphs_functions_and_domains():
    from onnx import helper

    from deploykit.onnx_checks import tensorrt_preflight
    from deploykit.onnx_graph import operator_counts

    then_branch = helper.make_graph([helper.make_node("Unique", ["x"], ["u"])], "then", [], [])
    else_branch = helper.make_graph([helper.make_node("Identity", ["x"], ["e"])], "else", [], [])
    body = helper.make_function("local", "MyOp", ["a"], ["b"], [helper.make_node("ConvInteger", ["a"], ["b"])], [helper.make_opsetid("", 18)])
    nodes = [
        helper.make_node("Relu", ["x"], ["r"]),
        helper.make_node("If", ["c"], ["i"], then_branch=then_branch, else_branch=else_branch),
        helper.make_node("MyOp", ["r"], ["f"], domain="local"),
        helper.make_node("FusedConv", ["r"], ["y"], domain="com.microsoft"),
    ]
    model = _graph_model(nodes, functions=[body])
    counts = operator_counts(model)
    assert counts == {"ConvInteger": 1, "Identity": 1, "If": 1, "Relu": 1, "Unique": 1, "com.microsoft::FusedConv": 1}
    pre = tensorrt_preflight(model)
    assert set(pre.unsupported) == {"ConvInteger", "Unique", "com.microsoft::FusedConv"}
    assert pre.opset_supported and not pre.ok and "If" in pre.restricted
    assert not tensorrt_preflight(_graph_model([helper.make_node("Relu", ["x"], ["y"])], opset=25)).opset_supported


def test_tensorrt_preflight_checks_documented_restrictions():
    from onnx import helper, numpy_helper

    from deploykit.onnx_checks import tensorrt_preflight

    nodes = [
        helper.make_node("Shape", ["x"], ["dyn_axes"]),
        helper.make_node("ReduceMean", ["x", "dyn_axes"], ["m1"], name="bad_reduce"),
        helper.make_node("ReduceMean", ["x", "axes"], ["m2"], name="good_reduce"),
        helper.make_node("MaxPool", ["x"], ["p", "idx"], kernel_shape=[2, 2], name="with_indices"),
        helper.make_node("AveragePool", ["x"], ["a"], kernel_shape=[2], name="pool_1d"),
        helper.make_node("MaxPool", ["x"], ["y"], kernel_shape=[3, 3], dilations=[2, 2], name="dilated"),
    ]
    model = _graph_model(nodes)
    model.graph.initializer.append(numpy_helper.from_array(np.array([1]), "axes"))
    pre = tensorrt_preflight(model)
    text = "\n".join(pre.violations)
    assert "bad_reduce: axes is computed" in text and "good_reduce" not in text
    assert "with_indices: the Indices output" in text and "pool_1d: 1D pooling" in text
    assert "dilated: dilated pooling" in text and not pre.ok and pre.unsupported == ()


def test_save_model_external_data_and_byte_count(tmp_path):
    from onnx import TensorProto, helper, numpy_helper

    from deploykit.onnx_io import check_model, external_data_files, model_file_bytes, save_model

    w = numpy_helper.from_array(np.arange(4096, dtype=np.float32), "w")
    model = _graph_model([helper.make_node("Slice", ["w", "s", "e"], ["w2"]), helper.make_node("Add", ["x", "w2"], ["y"])])
    model.graph.initializer.extend(
        [w, numpy_helper.from_array(np.array([0]), "s"), numpy_helper.from_array(np.array([2]), "e")]
    )
    small = tmp_path / "small.onnx"
    assert save_model(model, small) is None and external_data_files(small) == []
    big = tmp_path / "big.onnx"
    data = save_model(onnx.load(str(small)), big, external_data_threshold=0)
    assert data == tmp_path / "big.onnx.data" and external_data_files(big) == [data]
    assert model_file_bytes(big) == big.stat().st_size + data.stat().st_size and data.stat().st_size >= 4096 * 4
    check_model(big)
    inline = _graph_model([helper.make_node("Relu", ["x"], ["y"])])  # nothing big enough to move out
    assert save_model(inline, tmp_path / "inline.onnx", external_data_threshold=0) is None
    assert not (tmp_path / "inline.onnx.data").exists()
    assert onnx.load(str(big)).graph.initializer[0].data_type == TensorProto.FLOAT


class WideHead(nn.Module):
    """A classifier with 72 MB of weights (over the 64 MiB an export keeps in one file)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 256, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.fc = nn.Linear(256, 70_000)

    def forward(self, x):
        return self.fc(self.features(x))


@pytest.mark.slow
def test_weights_over_64_mib_go_to_external_data_which_every_check_covers(tmp_path):
    from deploykit.export import export_module
    from deploykit.fileio import sha256_file, sha256_files
    from deploykit.pipeline import ensure_variant
    from deploykit.repository import ModelRepository, check_model_file, read_variant
    from deploykit.serve.check import check_repository

    torch.manual_seed(0)
    repo = tmp_path / "models"
    result = export_module(WideHead().eval(), "wide", repo=repo, input_size=32)
    model, data = result.artifact.path, result.artifact.path.parent / "model.onnx.data"
    assert sorted(os.listdir(model.parent)) == ["model.onnx", "model.onnx.data"]
    assert data.stat().st_size > 64 * 2**20 > 100 * model.stat().st_size  # the graph file holds no weights
    side = json.loads((result.artifact.directory / "deploykit.json").read_text())
    assert side["external_data"] == "model.onnx.data" and result.parity.passed
    assert side["bytes"] == result.bytes == result.artifact.bytes == model.stat().st_size + data.stat().st_size
    assert side["sha256"] == sha256_files([model, data]) != sha256_file(model)  # the weights are hashed too
    assert any("external data in model.onnx.data (more than 64 MiB" in note for note in result.notes)

    # `deploykit import` of the pair writes it the same way (its own weights file, hashed with it).
    from deploykit.export import import_onnx

    imported = import_onnx(model, name="wide_imported", repo=repo)
    assert sorted(os.listdir(imported.artifact.path.parent)) == ["model.onnx", "model.onnx.data"]
    assert check_model_file(read_variant(imported.artifact.directory)).matches
    assert imported.sha256 == sha256_files([model, data])  # the source's weights are in its hash

    # The next stages read the pair: FP16 (ModelOpt AutoCast) and INT8 (ModelOpt, calibrated).
    for precision in ("fp16", "int8"):
        variant, made = ensure_variant(ModelRepository(repo), "wide", "onnx", precision)
        assert made
        with OnnxRuntimeRunner(variant) as runner:
            assert np.isfinite(runner.infer(np.zeros((2, 3, 32, 32), np.float32))).all(), precision

    # One weight byte changed, same size: every stage refuses the file, repo check reports it.
    with open(data, "r+b") as f:
        f.seek(data.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 1]))
    with pytest.raises(UsageError, match="is not the file wide_onnx_fp32's sidecar describes"):
        check_model_file(read_variant(result.artifact.directory))
    errors = check_repository(repo).model("wide_onnx_fp32").errors
    assert "file-changed" in {p.code for p in errors}


def test_torchscript_export_below_the_threshold_is_one_file_with_its_metadata(tmp_path):
    """The TorchScript exporter's graph is written through onnx_ir (onnx_io.save_proto_streamed):
    below the threshold one self-contained file, its metadata and shapes kept, the same numbers."""
    torch.manual_seed(0)
    net = TinyNet(num_classes=300).eval()
    out = export_onnx(net, (1, 3, 32, 32), tmp_path / "ts.onnx", exporter="torchscript", metadata={"origin": "test"})
    assert out.external_data is None and os.listdir(tmp_path) == ["ts.onnx"] and out.bytes == out.path.stat().st_size
    assert _metadata(out.path)["origin"] == "test" and out.output.shape == (-1, 300)
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with OnnxRuntimeRunner(out.path) as runner, torch.inference_mode():
        np.testing.assert_allclose(runner.infer(x), net(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)
