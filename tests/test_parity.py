"""deploykit parity: variants against the PyTorch FP32 reference, on real images.

The real case is the zoo resnet18 trained on scikit-learn's digits (conftest's
``digits_resnet18``), its held-out split written as PNG files in an ImageFolder layout, and
its ONNX export; the ImageNet-size case is a random-weight resnet18 at 224 px whose
BatchNorm statistics are re-estimated on the sample photos.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from deploykit.artifacts import SIDECAR
from deploykit.cli import cli
from deploykit.errors import UsageError
from deploykit.parity import (
    DEFAULT_TOLERANCES,
    PARITY_SECTION,
    DegenerateReferenceError,
    ParityMetrics,
    Tolerance,
    assert_parity,
    check,
    compare,
    judge,
    parse_tolerance_overrides,
    read_labels_file,
    recalibrate_batchnorm,
    resolve_tolerances,
    take,
)
from deploykit.repository import ModelRepository


def _run(*args: str):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _sidecar(directory: Path) -> dict:
    return json.loads((directory / SIDECAR).read_text())


# ---- the trained digits model, its images and its ONNX export ------------------------------
@pytest.fixture(scope="module")
def digits(tmp_path_factory, request):
    """resnet18 trained on digits: weights file, held-out PNGs (ImageFolder), exported fp32 variant."""
    import torch
    from PIL import Image

    from deploykit.export import export_model

    trained = request.getfixturevalue("digits_resnet18")
    root = tmp_path_factory.mktemp("parity_digits")
    weights = root / "digits_resnet18.pt"
    torch.save(trained.model.state_dict(), weights)
    data = root / "images"
    split = trained.split
    for i, (image, label) in enumerate(zip(split.images_test, split.y_test, strict=True)):
        (data / str(label)).mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(data / str(label) / f"{i:04d}.png")
    repo = root / "models"
    export_model("resnet18", repo=repo, weights=weights, input_size=32, num_classes=10)
    return SimpleNamespace(trained=trained, weights=weights, data=data, repo=repo, images=len(split.y_test))


@pytest.mark.slow
def test_fp32_onnx_agrees_exactly_and_the_verdict_lands_in_the_sidecar(digits):
    # --resize 32: the PNGs are 32 x 32, so preprocessing is exactly the training normalization.
    report = check(
        "resnet18", repo=digits.repo, data=digits.data, weights=digits.weights, resize=32, batch_size=64
    )
    assert report, report.summary()
    (result,) = report.results
    m = result.metrics
    assert (result.name, result.status) == ("resnet18_onnx_fp32@onnxruntime", "pass")
    assert m.images == m.labeled_images == digits.images
    assert m.top1_agreement == 1.0 and m.top5_agreement == 1.0 and m.flipped_count == 0
    # Same pixels as the trained model's own evaluation: the same held-out accuracy.
    assert m.reference_accuracy == pytest.approx(digits.trained.accuracy)
    assert m.accuracy_delta == 0.0
    assert 0 < m.max_abs_error < 1e-3 * max(1.0, m.logit_scale)
    assert m.min_cosine > 0.999999
    assert report.reference.distinct_top1 == 10

    sidecar = _sidecar(digits.repo / "resnet18_onnx_fp32")
    entry = sidecar[PARITY_SECTION][result.sidecar_key]
    assert entry["verdict"] == "pass"
    assert entry["data"]["sha256"] == report.data.sha256 and entry["data"]["images"] == digits.images
    assert entry["model_sha256"] == sidecar["sha256"]
    assert entry["reference"]["weights_sha256"] == sidecar["weights_sha256"]
    assert entry["tolerance"] == DEFAULT_TOLERANCES["fp32"].to_dict()
    assert "parity" in sidecar  # the export's own check is kept beside ours


@pytest.mark.slow
def test_batches_stream_metrics_do_not_depend_on_the_batch_size(digits):
    a = check("resnet18", repo=digits.repo, data=digits.data, weights=digits.weights, limit=60, batch_size=7, write_sidecar=False)
    b = check("resnet18", repo=digits.repo, data=digits.data, weights=digits.weights, limit=60, batch_size=60, write_sidecar=False)
    ma, mb = a.results[0].metrics, b.results[0].metrics
    assert ma.images == mb.images == 60
    assert a.data.sha256 == b.data.sha256
    assert ma.reference_accuracy == mb.reference_accuracy
    assert ma.mean_cosine == pytest.approx(mb.mean_cosine, abs=1e-9)
    assert ma.max_abs_error == pytest.approx(mb.max_abs_error, abs=1e-5)
    # --limit takes images round-robin over the classes, not the first class only.
    assert a.reference.distinct_top1 == 10


@pytest.mark.slow
def test_cli_table_and_json(digits):
    result = _run(
        "parity", "resnet18", "--repo", digits.repo, "--weights", digits.weights, "--data", digits.data,
        "--resize", "32", "--backend", "onnxruntime,tensorrt", "--precision", "fp32", "--limit", "120",
        "--no-write",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "resnet18_onnx_fp32" in result.stdout and "PASS" in result.stdout
    # TensorRT is not installed here: skipped with a one-line reason, no traceback.
    assert "skipped" in result.stdout and "Traceback" not in result.output

    result = _run(
        "parity", "resnet18", "--repo", digits.repo, "--weights", digits.weights, "--data", digits.data,
        "--limit", "60", "--format", "json", "--no-write",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["passed"] is True and out["data"]["images"] == 60 and out["data"]["labeled"] is True
    assert out["data"]["preprocessing"]["crop"] == 32
    assert out["results"][0]["metrics"]["top1_agreement"] == 1.0


@pytest.mark.slow
def test_openvino_runs_the_same_file(digits):
    pytest.importorskip("openvino")
    report = check(
        "resnet18", repo=digits.repo, backends=("onnxruntime", "openvino"), data=digits.data,
        weights=digits.weights, limit=100, write_sidecar=False,
    )  # fmt: skip
    assert [r.backend for r in report.results] == ["onnxruntime", "openvino"]
    assert report, report.summary()


@pytest.fixture(scope="module")
def damaged(digits, tmp_path_factory):
    """The fp32 variant with one convolution's weights zeroed, as a variant of its own repository."""
    import onnx
    from onnx import numpy_helper

    source = ModelRepository(digits.repo).get("resnet18", "onnx", "fp32")
    model = onnx.load(str(source.path))
    inits = {init.name: init for init in model.graph.initializer}
    convs = [n for n in model.graph.node if n.op_type == "Conv" and n.input[1] in inits]
    target = inits[convs[len(convs) // 2].input[1]]  # a convolution in the middle of the network
    target.CopyFrom(numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(target)), target.name))
    repo = tmp_path_factory.mktemp("damaged") / "models"
    sidecar = {k: v for k, v in source.meta.items() if k not in ("version", "created_at", "bytes", "sha256")}
    ModelRepository(repo).write_variant(
        "resnet18", "onnx", "fp32",
        write_model=lambda path: onnx.save(model, str(path)),
        config_pbtxt=(source.directory / "config.pbtxt").read_text(),
        sidecar={**sidecar, "damaged": f"{target.name} zeroed by tests/test_parity.py"},
        parent=source.parent,
    )  # fmt: skip
    return repo


@pytest.mark.slow
def test_damaged_variant_fails_with_the_flipped_images_listed(digits, damaged):
    report = check("resnet18", repo=damaged, data=digits.data, weights=digits.weights, limit=150, max_flips=5)
    assert not report
    (result,) = report.results
    m = result.metrics
    assert result.status == "fail" and m.flipped_count > 0 and len(m.flipped) == min(5, m.flipped_count)
    flip = m.flipped[0]
    assert flip.reference != flip.variant and "/" in flip.name and flip.label is not None
    assert any("top-1 agreement" in f for f in result.failures)
    assert any("max abs logit error" in f for f in result.failures)
    assert _sidecar(damaged / "resnet18_onnx_fp32")[PARITY_SECTION][result.sidecar_key]["verdict"] == "fail"

    result = _run(
        "parity", "resnet18", "--repo", damaged, "--weights", digits.weights, "--data", digits.data,
        "--limit", "150", "--no-write",
    )  # fmt: skip
    assert result.exit_code == 1
    assert "FAIL" in result.stdout and "first flipped images" in result.stdout
    assert flip.name in result.stdout

    with pytest.raises(AssertionError, match="flipped:"):
        assert_parity("resnet18", repo=damaged, data=digits.data, weights=digits.weights, limit=50, write_sidecar=False)


@pytest.mark.slow
def test_fp16_and_int8_variants_meet_their_tolerances(digits, tmp_path):
    from deploykit.precision import make_variant

    repo = tmp_path / "models"
    shutil.copytree(digits.repo, repo)
    make_variant(repo, "resnet18", "fp16", calib_data=digits.trained.split.x_train[:64])
    # INT8 calibrates on the training split only; parity runs on the held-out images.
    make_variant(repo, "resnet18", "int8", calib_data=digits.trained.split.x_train[:256])
    report = check("resnet18", repo=repo, data=digits.data, weights=digits.weights, resize=32, precisions=None)
    assert [r.precision for r in report.results] == ["fp32", "fp16", "int8"]
    assert report, report.summary()
    int8 = report.results[2].metrics
    assert int8.labeled_images == digits.images and abs(int8.accuracy_delta) <= 1.5


# ---- bad input ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_bad_input_is_a_clear_message_and_exit_2(digits, tmp_path):
    base = ["parity", "resnet18", "--repo", digits.repo, "--weights", digits.weights]

    empty = tmp_path / "empty"
    empty.mkdir()
    result = _run(*base, "--data", empty)
    assert result.exit_code == 2 and "no images in" in result.output and "Traceback" not in result.output

    # A class folder that is not one of the model's 10 classes.
    wrong = tmp_path / "wrong"
    shutil.copytree(digits.data / "3", wrong / "12")
    result = _run(*base, "--data", wrong)
    assert result.exit_code == 2 and "class index 12 outside 0..9" in result.output

    labels = tmp_path / "labels.csv"
    flat = tmp_path / "flat"
    shutil.copytree(digits.data / "3", flat)
    labels.write_text("filename,label\n" + "".join(f"{p.name},3\n" for p in sorted(flat.iterdir())[1:]))
    result = _run(*base, "--data", flat, "--labels", labels)
    assert result.exit_code == 2 and "has no entry for" in result.output

    result = _run(*base, "--precision", "int8")
    assert result.exit_code == 2
    assert "resnet18_onnx_int8 is not in the repository" in result.output
    assert "deploykit quantize resnet18 --precision int8" in result.output

    result = _run("parity", "resnet18", "--repo", digits.repo)
    assert result.exit_code == 2 and "--weights" in result.output

    result = _run(*base, "--tol", "fp16.agreement=1.5")
    assert result.exit_code == 2 and "above 1" in result.output

    result = _run(*base, "--backend", "tflite")
    assert result.exit_code == 2 and "unknown backend" in result.output

    result = _run("parity", "resnet50", "--repo", digits.repo, "--weights", digits.weights)
    assert result.exit_code == 2 and "deploykit export resnet50" in result.output


@pytest.mark.slow
def test_a_replaced_model_file_is_refused_unless_trusted(digits, tmp_path, replace_with_other_network):
    repo = tmp_path / "models"
    shutil.copytree(digits.repo / "resnet18_onnx_fp32", repo / "resnet18_onnx_fp32")
    real = replace_with_other_network(repo / "resnet18_onnx_fp32" / "1" / "model.onnx")
    before = _sidecar(repo / "resnet18_onnx_fp32")
    base = ["parity", "resnet18", "--repo", repo, "--weights", digits.weights, "--data", digits.data, "--limit", "20"]
    refused = _run(*base)
    assert refused.exit_code == 2, refused.output
    assert "is not the file resnet18_onnx_fp32's sidecar describes" in refused.stderr
    assert "or pass --trust" in refused.stderr and "Traceback" not in refused.output
    assert _sidecar(repo / "resnet18_onnx_fp32") == before  # refused before any work: nothing recorded
    with pytest.raises(UsageError, match="--trust"):
        check("resnet18", repo=repo, data=digits.data, weights=digits.weights, limit=20)

    trusted = _run(*base, "--trust", "--format", "json")
    assert trusted.exit_code == 1, trusted.output  # checked, and the other network does not agree: FAIL, not refused
    verdicts = _sidecar(repo / "resnet18_onnx_fp32")[PARITY_SECTION].values()
    assert any(v["verdict"] == "fail" and v["model_sha256"] == real for v in verdicts)  # the verdict names the file really run


def test_labels_file_formats(tmp_path):
    csv = tmp_path / "labels.csv"
    csv.write_text("# comment\nfile,label\na.png,3\nsub/b.png\t7\n\nc.jpg 0\n")
    assert read_labels_file(csv) == {"a.png": 3, "sub/b.png": 7, "c.jpg": 0}
    js = tmp_path / "labels.json"
    js.write_text(json.dumps({"a.png": 1}))
    assert read_labels_file(js) == {"a.png": 1}
    js.write_text(json.dumps({"a.png": "cat"}))
    with pytest.raises(UsageError, match="not a class index"):
        read_labels_file(js)
    bad = tmp_path / "bad.csv"
    bad.write_text("a.png,1,2\n")
    with pytest.raises(UsageError, match="bad.csv:1"):
        read_labels_file(bad)


def test_limit_takes_images_round_robin_over_classes(tmp_path):
    from deploykit.data import ImageItem

    items = [ImageItem(tmp_path / f"{c}{i}.png", label=c, class_name=str(c)) for c in range(3) for i in range(4)]
    assert [i.label for i in take(items, 5)] == [0, 1, 2, 0, 1]
    assert take(items, None) is items


# ---- tolerances and judging --------------------------------------------------------------------
def test_tolerance_overrides():
    parsed = parse_tolerance_overrides(["fp16.agreement=98%", "int8.accuracy_drop=1", "fp32.max_abs=none", "min_cosine=0.99"])
    assert parsed["fp16"] == {"agreement": 0.98, "min_cosine": 0.99}
    tols = resolve_tolerances(parsed)
    assert tols["fp16"].agreement == 0.98 and tols["int8"].accuracy_drop == 1.0
    assert tols["int8"].agreement == DEFAULT_TOLERANCES["int8"].agreement
    assert tols["fp32"].max_abs is None and tols["fp32"].min_cosine == 0.99
    assert resolve_tolerances({"fp16": Tolerance(agreement=0.5)})["fp16"] == Tolerance(agreement=0.5)
    for spec, fragment in [
        ("fp16.agreement", "no '='"),
        ("fp64.agreement=1", "unknown precision"),
        ("fp16.speed=1", "unknown tolerance"),
        ("fp16.agreement=high", "not a number"),
        ("fp32.max_abs=5%", "not a fraction"),
        ("fp16.min_cosine=-1", ">= 0"),
    ]:
        with pytest.raises(UsageError, match=fragment):
            parse_tolerance_overrides([spec])


def _metrics(**changes) -> ParityMetrics:
    base = dict(
        images=1000, top1_agreement=1.0, top5_agreement=1.0, topk=5, labeled_images=1000,
        reference_accuracy=0.9, variant_accuracy=0.9, accuracy_delta=0.0, max_abs_error=1e-4,
        mean_abs_error=1e-5, logit_scale=20.0, min_cosine=1.0, mean_cosine=1.0, flipped_count=0, flipped=(),
    )  # fmt: skip
    return ParityMetrics(**{**base, **changes})


def test_judge_applies_each_tolerance():
    fp32, int8 = DEFAULT_TOLERANCES["fp32"], DEFAULT_TOLERANCES["int8"]
    assert judge(_metrics(), fp32) == ()
    # max_abs scales with the logits: 1e-2 on logits up to 20 passes a 1e-3 x 20 bound...
    assert judge(_metrics(max_abs_error=1.9e-2), fp32) == ()
    # ...but not 3e-2, nor a NaN.
    assert "max abs logit error" in judge(_metrics(max_abs_error=3e-2), fp32)[0]
    assert judge(_metrics(max_abs_error=float("nan")), fp32)
    assert "top-1 agreement" in judge(_metrics(top1_agreement=0.999, flipped_count=1), fp32)[0]
    assert judge(_metrics(top1_agreement=0.975, max_abs_error=1.0, accuracy_delta=-1.4), int8) == ()
    failures = judge(_metrics(top1_agreement=0.96, accuracy_delta=-2.0, variant_accuracy=0.88), int8)
    assert len(failures) == 2 and "accuracy dropped 2.00 points" in failures[1]
    # No labels: accuracy is not judged.
    assert judge(_metrics(accuracy_delta=None, reference_accuracy=None, variant_accuracy=None), int8) == ()


# ---- compare() with any runners, and the degenerate-reference guard ------------------------------
def test_compare_any_runners_and_the_constant_reference_guard():
    import torch

    from deploykit.runtimes import get_runner

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(4, 6))
    perturbed = copy.deepcopy(net)
    with torch.no_grad():
        perturbed[4].bias += 1e-5
    x = np.random.default_rng(0).normal(size=(20, 3, 8, 8)).astype(np.float32)
    batches = [(x[:8], np.arange(8) % 6), (x[8:], np.arange(12) % 6)]
    report = compare(get_runner("torch", net), {"same": get_runner("torch", perturbed)}, batches)
    assert report and report.results[0].metrics.max_abs_error == pytest.approx(1e-5, rel=0.1)
    assert report.data.labeled and report.results[0].metrics.labeled_images == 20

    # A reference that ignores its input (zero weights before the classifier): an error, not a pass.
    constant = copy.deepcopy(net)
    with torch.no_grad():
        constant[4].weight.zero_()
    with pytest.raises(DegenerateReferenceError, match="ignores its input"):
        compare(get_runner("torch", constant), [get_runner("torch", constant)], [x])


@pytest.mark.slow
def test_random_googlenet_collapses_and_recalibrated_batchnorm_fixes_it():
    """DESIGN.md's quirk: random-weight GoogLeNet outputs a constant until BatchNorm sees real images."""
    import torch

    from deploykit.data import preprocess_batch, sample_images
    from deploykit.runtimes import get_runner
    from deploykit.zoo import get_card, get_model

    torch.manual_seed(0)
    net = get_model("googlenet").eval()
    x = preprocess_batch([img for _, img in sample_images()], get_card("googlenet").preprocessing, size=64)
    with pytest.raises(DegenerateReferenceError):
        compare(get_runner("torch", net), [get_runner("torch", net, name="copy")], [x])
    assert recalibrate_batchnorm(net, [x, x[..., ::-1].copy()]) == 16
    report = compare(get_runner("torch", net), [get_runner("torch", net, name="copy")], [x])
    assert report and report.reference.distinct_top1 > 1


@pytest.mark.slow
def test_imagenet_size_random_weights_end_to_end_after_batchnorm_recalibration(tmp_path):
    """resnet18 at 224 px, random weights, sample photos: recalibrate, export, parity passes;
    the same weights with the classifier zeroed are a constant reference: exit 1, an error."""
    import torch

    from deploykit.data import preprocess_batch, sample_images
    from deploykit.export import export_model
    from deploykit.zoo import get_card, get_model

    torch.manual_seed(0)
    net = get_model("resnet18").eval()
    x = preprocess_batch([img for _, img in sample_images()], get_card("resnet18").preprocessing)
    recalibrate_batchnorm(net, [x, x[..., ::-1].copy()])
    weights = tmp_path / "recalibrated.pt"
    torch.save(net.state_dict(), weights)
    repo = tmp_path / "models"
    export_model("resnet18", repo=repo, weights=weights)

    report = check("resnet18", repo=repo, weights=weights, batch_size=4)
    assert report, report.summary()
    assert report.data.images == 8 and not report.data.labeled
    assert report.reference.relative_spread > 0.05
    assert any("smoke test" in note for note in report.notes)

    with torch.no_grad():
        net.fc.weight.zero_()
    constant = tmp_path / "constant.pt"
    torch.save(net.state_dict(), constant)
    result = _run("parity", "resnet18", "--repo", repo, "--weights", constant)
    assert result.exit_code == 1
    assert "ignores its input" in result.output and "recalibrate_batchnorm" in result.output
    assert "Traceback" not in result.output
