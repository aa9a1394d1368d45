"""Where weights come from: random init under a recorded seed, torchvision weights by name.

Nothing here downloads: published weights are pre-seeded into a temporary
``TORCH_HOME/hub/checkpoints/`` as a state dict the test makes, under the file name the
weight's URL ends in, and the real loading code (torchvision's weights API, deploykit's loader)
runs on it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from deploykit.cli import cli
from deploykit.errors import UsageError
from deploykit.export import export_model
from deploykit.repository import ModelRepository


def _run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _sidecar(artifact) -> dict:
    return json.loads((artifact.directory / "deploykit.json").read_text())


# ---- random weights that can be checked ----------------------------------------------------------
def test_seeded_random_weights_are_recorded_and_rebuilt(tmp_path):
    from deploykit.weights import random_zoo_model, rebuild, state_sha256

    repo = tmp_path / "models"
    torch.manual_seed(123)
    before = torch.rand(1)
    result = export_model("resnet18", repo=repo, num_classes=10, input_size=64, seed=7)
    torch.manual_seed(123)
    assert torch.equal(torch.rand(1), before)  # the caller's random state is not touched
    side = _sidecar(result.artifact)
    assert side["weights"]["kind"] == "random" and side["weights"]["seed"] == 7
    assert side["weights_sha256"] == side["weights"]["sha256"] == result.weights
    config = (result.artifact.directory / "config.pbtxt").read_text()
    assert "deploykit_weights" in config and '\\"seed\\":7' in config

    artifact = ModelRepository(repo).get("resnet18", "onnx", "fp32")
    module, facts = rebuild(artifact, 10)
    assert state_sha256(module) == side["weights"]["sha256"] and facts["weights"] == "random init, seed 7"
    assert random_zoo_model("resnet18", 10, 8)[1]["sha256"] != side["weights"]["sha256"]  # the seed matters

    # A sidecar whose hash the seed does not reproduce (another torch, a changed file) is refused.
    side["weights"]["sha256"] = "0" * 64
    (artifact.directory / "deploykit.json").write_text(json.dumps(side))
    with pytest.raises(UsageError, match="gives other weights than the exported ones"):
        rebuild(ModelRepository(repo).get("resnet18", "onnx", "fp32"), 10)


def test_parity_after_a_plain_export_rebuilds_the_reference_from_the_seed(tmp_path):
    """`deploykit export NAME` then `deploykit parity NAME`: no "weights were not saved" any more."""
    repo = tmp_path / "models"
    _run("export", "resnet18", "--num-classes", "10", "--input-size", "64", "--seed", "3", "--repo", repo)
    result = _run("parity", "resnet18", "--repo", repo, "--format", "json")
    # Random weights may be degenerate (exit 1, the reference guard); what must not happen is the
    # old usage error about unsaved weights, and a report, when there is one, names the seed.
    assert "were not saved" not in result.output and result.exit_code in (0, 1), result.output
    if result.exit_code == 0 or result.output.lstrip().startswith("{"):
        report = json.loads(result.stdout)
        assert report["reference"]["details"]["weights"] == "random init, seed 3"
    else:
        assert "ignores its input" in result.output


# ---- torchvision weights by name -----------------------------------------------------------------
@pytest.fixture
def torch_home(tmp_path, monkeypatch):
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")  # no download can reach the network
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    return home


def _seed_cache(home: Path, model: str, weight: str, net: torch.nn.Module) -> Path:
    import torchvision

    url = torchvision.models.get_model_weights(model)[weight].url
    path = home / "hub" / "checkpoints" / url.rsplit("/", 1)[-1]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


def test_pretrained_weights_by_name_bring_preprocessing_labels_and_accuracy(tmp_path, torch_home):
    import torchvision

    net = torchvision.models.resnet50(weights=None)
    cached = _seed_cache(torch_home, "resnet50", "IMAGENET1K_V2", net)
    repo = tmp_path / "models"
    result = _run("export", "resnet50", "--weights", "DEFAULT", "--input-size", "64", "--repo", repo, "--format", "json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["weights_origin"]["kind"] == "torchvision" and out["weights_origin"]["name"] == "ResNet50_Weights.IMAGENET1K_V2"
    side = json.loads((repo / "resnet50_onnx_fp32" / "deploykit.json").read_text())
    # IMAGENET1K_V2 is evaluated with resize 232 / crop 224: scaled to the 64 px input.
    assert side["preprocessing"]["crop"] == 64 and side["preprocessing"]["resize"] == round(64 * 232 / 224)
    assert side["labels"][:2] == ["tench", "goldfish"] and len(side["labels"]) == 1000
    assert side["labels_source"] == "torchvision ResNet50_Weights.IMAGENET1K_V2"
    assert side["accuracy"]["ImageNet-1K"]["acc@1"] == pytest.approx(80.858)
    assert side["weights"]["file"] == cached.name and side["weights"]["hash_prefix_ok"] is False
    config = (repo / "resnet50_onnx_fp32" / "config.pbtxt").read_text()
    assert "deploykit_preprocessing" in config and "deploykit_accuracy" in config and "tench" in config


def test_googlenet_weights_set_transform_input_like_torchvision(tmp_path, torch_home):
    import torchvision

    from deploykit.runtimes.onnxruntime_runner import OnnxRuntimeRunner

    net = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=True)
    _seed_cache(torch_home, "googlenet", "IMAGENET1K_V1", net)  # aux heads included, as published
    result = export_model("googlenet", repo=tmp_path / "models", weights="IMAGENET1K_V1", input_size=96)
    assert result.weights_origin["network_options"] == {"transform_input": True}
    reference = torchvision.models.googlenet(weights=None, aux_logits=False, transform_input=True, init_weights=False)
    reference.load_state_dict({k: v for k, v in net.state_dict().items() if not k.startswith("aux")})
    x = np.random.default_rng(0).standard_normal((2, 3, 96, 96)).astype(np.float32)
    with torch.no_grad():
        expected = reference.eval()(torch.from_numpy(x)).numpy()
    with OnnxRuntimeRunner(result.artifact) as runner:
        assert np.allclose(runner.infer(x), expected, atol=1e-3 * np.abs(expected).max())


def test_pretrained_offline_names_the_file_and_folder_and_writes_nothing(tmp_path, torch_home):
    repo = tmp_path / "models"
    result = _run("export", "resnet18", "--weights", "IMAGENET1K_V1", "--repo", repo)
    assert result.exit_code == 2 and "Traceback" not in result.output
    text = " ".join(result.output.split())
    assert "resnet18-f37072fd.pth" in text and str(torch_home / "hub" / "checkpoints") in text and "--weights PATH" in text
    assert not repo.exists()
    assert not any((torch_home / "hub" / "checkpoints").glob("*.pth"))


def test_pretrained_name_errors(tmp_path, torch_home):
    repo = tmp_path / "models"
    result = _run("export", "resnet18", "--weights", "IMAGENET1K_V9", "--repo", repo)
    assert result.exit_code == 2 and "no torchvision weights named 'IMAGENET1K_V9'" in result.output
    assert "DEFAULT, IMAGENET1K_V1" in " ".join(result.output.split())
    result = _run("export", "zfnet", "--weights", "DEFAULT", "--repo", repo)
    assert result.exit_code == 2 and "no published torchvision weights" in result.output
    # A corrupt cached file: a clear error that says to delete it, nothing written.
    cached = torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"not a checkpoint")
    result = _run("export", "resnet18", "--weights", "DEFAULT", "--repo", repo)
    assert result.exit_code == 2 and f"delete {cached}" in " ".join(result.output.split())
    assert not repo.exists()


def test_models_lists_the_published_weights():
    result = _run("models", "--weights", "--format", "json")
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout)
    assert table["resnet50"] == ["DEFAULT", "IMAGENET1K_V1", "IMAGENET1K_V2"] and table["googlenet"][0] == "DEFAULT"
    assert "zfnet" not in table and "preact_resnet18" not in table


def test_packaged_imagenet_classes_are_torchvisions_for_every_zoo_network():
    """export labels a 1000-class zoo model from a packaged list (no torchvision import): it must
    be the list each published ImageNet-1k weight of the zoo's networks carries."""
    import torchvision

    from deploykit.export import imagenet_labels
    from deploykit.zoo import get_card, list_models

    packaged = imagenet_labels()
    assert len(packaged) == 1000 and packaged[0] == "tench" and packaged[-1] == "toilet tissue"
    named = [get_card(n).torchvision_name for n in list_models() if get_card(n).torchvision_name]
    assert len(named) >= 10
    for name in named:
        for weight in torchvision.models.get_model_weights(name):
            categories = weight.meta.get("categories") or []
            if len(categories) == 1000:
                assert list(categories) == packaged, weight
