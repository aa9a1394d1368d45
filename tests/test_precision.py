"""Precision: FP16 (AutoCast) and INT8 (ModelOpt Q/DQ) ONNX, measured on real data.

The accuracy tests train zoo models on scikit-learn's digits (conftest fixtures, cached on
disk), export them, convert them, and compare held-out accuracy with ONNX Runtime on CPU.
The bad-input tests use a tiny hand-built ONNX model in a repository, so they are fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from deploykit.cli import cli
from deploykit.errors import UsageError
from deploykit.precision.calibration import (
    SAMPLES_WARNING,
    array_sha256,
    load_array,
    load_calibration,
    load_folder,
    load_samples,
)
from deploykit.zoo import Preprocessing

needs_modelopt = pytest.mark.skipif(
    not all(__import__("importlib").util.find_spec(m) for m in ("modelopt", "onnx_graphsurgeon", "onnxruntime")),
    reason="needs the [int8] extra (nvidia-modelopt, onnx-graphsurgeon)",
)
TINY = "tiny"
TINY_PRE = Preprocessing(resize=8, crop=8)


# ---- helpers ------------------------------------------------------------------------------------
def _tiny_onnx(path: Path, quantized: bool = False, huge_fc: bool = False) -> None:
    """Conv(3->8) -> Relu -> GlobalAveragePool -> Flatten -> Gemm(8->10) on 3 x 8 x 8, dynamic batch.

    With ``quantized`` the conv input goes through a QuantizeLinear/DequantizeLinear pair, as
    in an INT8 export: such a file must be refused as a source. ``huge_fc`` puts a weight
    beyond FP16's range into the classifier, which FP16 conversion must keep in FP32.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "conv.weight"),
        numpy_helper.from_array(rng.normal(0, 0.1, (8,)).astype(np.float32), "conv.bias"),
        numpy_helper.from_array(rng.normal(0, 0.3, (10, 8)).astype(np.float32), "fc.weight"),
        numpy_helper.from_array(rng.normal(0, 0.1, (10,)).astype(np.float32), "fc.bias"),
    ]
    if huge_fc:
        inits[2].CopyFrom(numpy_helper.from_array(np.full((10, 8), 1e6, np.float32), "fc.weight"))
    nodes = []
    conv_in = "input"
    if quantized:
        inits += [numpy_helper.from_array(np.float32(0.02), "s"), numpy_helper.from_array(np.int8(0), "z")]
        nodes += [
            helper.make_node("QuantizeLinear", ["input", "s", "z"], ["q"], name="q"),
            helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"], name="dq"),
        ]
        conv_in = "dq"
    nodes += [
        helper.make_node("Conv", [conv_in, "conv.weight", "conv.bias"], ["c"], name="conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("GlobalAveragePool", ["r"], ["p"], name="pool"),
        helper.make_node("Flatten", ["p"], ["f"], name="flatten"),
        helper.make_node("Gemm", ["f", "fc.weight", "fc.bias"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 9
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _tiny_repo(root: Path, quantized: bool = False, huge_fc: bool = False):
    """A model repository holding ``tiny_onnx_fp32`` (written through ModelRepository)."""
    from dataclasses import asdict

    from deploykit.repository import ModelRepository

    repo = ModelRepository(root)
    repo.write_variant(
        TINY,
        "onnx",
        "fp32",
        write_model=lambda p: _tiny_onnx(p, quantized, huge_fc),
        config_pbtxt='name: "tiny_onnx_fp32"\n',
        sidecar={
            "source": "test:tiny",
            "lineage": [],
            "input": {"name": "input", "shape": [-1, 3, 8, 8], "dtype": "float32"},
            "output": {"name": "logits", "shape": [-1, 10], "dtype": "float32"},
            "preprocessing": asdict(TINY_PRE),
            "max_batch_size": 8,
        },
        parent="test:tiny",
    )
    return repo


def _entries(root: Path) -> set[str]:
    """Everything in the repository root except the conversion cache."""
    return {p.name for p in root.iterdir() if p.name != ".cache"}


def _invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def _predict(path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return np.concatenate([session.run(None, {name: x[i : i + 256]})[0] for i in range(0, len(x), 256)])


@pytest.fixture
def tiny_repo(tmp_path):
    return _tiny_repo(tmp_path / "models")


# ---- calibration data (fast) ------------------------------------------------------------------------
def test_npy_is_validated(tmp_path):
    good = np.random.default_rng(0).normal(size=(20, 3, 8, 8)).astype(np.float32)
    np.save(tmp_path / "good.npy", good)
    calib = load_array(tmp_path / "good.npy", (3, 8, 8), size=10)
    assert calib.size == 10 and calib.available == 20 and calib.array.dtype == np.float32
    assert calib.sha256 == array_sha256(calib.array)
    # the same data from an .npz under the input's name gives the same identity
    np.savez(tmp_path / "two.npz", input=good, other=good[:3])
    assert load_array(tmp_path / "two.npz", (3, 8, 8), size=10, input_name="input").sha256 == calib.sha256

    np.save(tmp_path / "shape.npy", good[:, :, :4])
    with pytest.raises(UsageError, match=r"shape \(20, 3, 4, 8\).*N x 3 x 8 x 8"):
        load_array(tmp_path / "shape.npy", (3, 8, 8))
    np.save(tmp_path / "ints.npy", (good * 50).astype(np.uint8))
    with pytest.raises(UsageError, match="dtype uint8"):
        load_array(tmp_path / "ints.npy", (3, 8, 8))
    with pytest.raises(UsageError, match="only 20 samples, fewer than --calib-size 30"):
        load_array(tmp_path / "good.npy", (3, 8, 8), size=30)
    with pytest.raises(UsageError, match="which one is the input"):
        load_array(tmp_path / "two.npz", (3, 8, 8))
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(UsageError, match="cannot read calibration array"):
        load_array(tmp_path / "junk.npy", (3, 8, 8))


def test_image_folder_calibration(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(tmp_path / "imgs" / cls / f"{i}.png")
    calib = load_folder(tmp_path / "imgs", TINY_PRE, 8, size=4)
    assert calib.array.shape == (4, 3, 8, 8) and calib.kind == "folder"
    assert "ImageFolder, 2 classes" in calib.source  # the seeded subset mixes classes
    assert load_folder(tmp_path / "imgs", TINY_PRE, 8, size=4).sha256 == calib.sha256  # reproducible

    with pytest.raises(UsageError, match="only 6 images, fewer than --calib-size 7"):
        load_folder(tmp_path / "imgs", TINY_PRE, 8, size=7)
    with pytest.raises(UsageError, match="does not exist"):
        load_calibration(tmp_path / "missing", (3, 8, 8), TINY_PRE)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no images"):
        load_calibration(tmp_path / "empty", (3, 8, 8), TINY_PRE)
    (tmp_path / "imgs" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8 not a jpeg")
    with pytest.raises(UsageError, match="cannot read image .*broken.jpg"):
        load_folder(tmp_path / "imgs", TINY_PRE, 8, size=7)


def test_calibration_folder_with_symlink_loops_counts_each_image_once(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    (tmp_path / "imgs" / "cat").mkdir(parents=True)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (12, 16, 3), dtype=np.uint8)).save(tmp_path / "imgs" / "cat" / f"{i}.png")
    (tmp_path / "imgs" / "cat" / "loop").symlink_to(tmp_path / "imgs")  # 2 images became 902
    (tmp_path / "imgs" / "cat" / "again").symlink_to(tmp_path / "imgs" / "cat")  # two loops hung
    with pytest.raises(UsageError, match="only 2 images, fewer than --calib-size 3"):
        load_folder(tmp_path / "imgs", TINY_PRE, 8, size=3)
    assert load_folder(tmp_path / "imgs", TINY_PRE, 8, size=2).array.shape == (2, 3, 8, 8)


def test_sample_photos_are_augmented_and_flagged_as_demo():
    a = load_samples(TINY_PRE, 8, size=16, seed=0)
    b = load_samples(TINY_PRE, 8, size=16, seed=0)
    c = load_samples(TINY_PRE, 8, size=16, seed=1)
    assert a.array.shape == (16, 3, 8, 8) and a.kind == "samples"
    assert a.sha256 == b.sha256 and a.sha256 != c.sha256  # seeded
    # augmentation: crops of the same photo (items 0 and 8 both come from the first photo) differ
    assert not np.allclose(a.array[0], a.array[8])
    assert a.warnings == (SAMPLES_WARNING.format(photos=8),) and "demo, not a deployment" in a.warnings[0]


# ---- bad input through the CLI (tiny model) ---------------------------------------------------------
@needs_modelopt
def test_quantize_bad_input_writes_nothing(tiny_repo, tmp_path):
    root = str(tiny_repo.root)
    before = _entries(tiny_repo.root)
    (tmp_path / "empty").mkdir()
    (tmp_path / "few").mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "few" / "a.png")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"garbage")
    np.save(tmp_path / "shape.npy", np.zeros((4, 3, 9, 9), np.float32))
    np.save(tmp_path / "dtype.npy", np.zeros((4, 3, 8, 8), np.int64))
    cases = [
        (["--calib-data", str(tmp_path / "nope")], "does not exist"),
        (["--calib-data", str(tmp_path / "empty")], "no images in"),
        (["--calib-data", str(tmp_path / "bad")], "cannot read image"),
        (["--calib-data", str(tmp_path / "few"), "--calib-size", "4"], "only 1 images, fewer than --calib-size 4"),
        (["--calib-data", str(tmp_path / "shape.npy")], "shape (4, 3, 9, 9)"),
        (["--calib-data", str(tmp_path / "dtype.npy")], "dtype int64"),
        (["--calib-size", "0"], "--calib-size must be a positive integer"),
    ]
    for extra, message in cases:
        result = _invoke("quantize", TINY, "--precision", "int8", "--repo", root, *extra)
        assert result.exit_code == 2, (extra, result.output)
        assert message in result.output, (extra, result.output)
        assert "Traceback" not in result.output
        assert _entries(tiny_repo.root) == before, extra  # nothing half-written

    result = _invoke("quantize", "other", "--precision", "fp16", "--repo", root)
    assert result.exit_code == 2 and "other_onnx_fp32 is not in the repository" in result.output
    assert "deploykit export other" in result.output


@needs_modelopt
def test_already_quantized_source_is_refused(tmp_path):
    repo = _tiny_repo(tmp_path / "models", quantized=True)
    for precision in ("int8", "fp16"):
        result = _invoke("quantize", TINY, "--precision", precision, "--repo", str(repo.root))
        assert result.exit_code == 2, result.output
        assert "already an INT8 graph (it has 2 QuantizeLinear/DequantizeLinear nodes)" in result.output
    assert _entries(repo.root) == {"tiny_onnx_fp32"}


_BLOCK_MODELOPT = textwrap.dedent(
    """
    import sys, importlib.abc
    class Blocker(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] == "modelopt":
                raise ImportError("blocked for the test: " + name)
            return None
    sys.meta_path.insert(0, Blocker())
    from deploykit.cli import cli
    sys.exit(cli.main(args=sys.argv[1:], prog_name="deploykit"))
    """
)


def test_int8_without_the_extra_names_it(tiny_repo):
    proc = subprocess.run(
        [sys.executable, "-c", _BLOCK_MODELOPT, "quantize", TINY, "--precision", "int8", "--repo", str(tiny_repo.root)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    assert "'modelopt' is needed for INT8 quantization" in proc.stderr
    assert "pip install 'deploykit[int8]'" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert _entries(tiny_repo.root) == {"tiny_onnx_fp32"}


# ---- faults a user can cause: one error line and a hint, nothing written (issue 15) ------------------
def _error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(("error:", "hint:"))]


def test_precision_must_be_named(tiny_repo):
    from deploykit.precision import make_variant

    result = _invoke("quantize", TINY, "--precision", "", "--repo", str(tiny_repo.root))
    assert result.exit_code == 2 and "'--precision'" in result.output  # refused, never taken as fp32
    with pytest.raises(UsageError, match="unknown precision '' for quantize"):
        make_variant(tiny_repo, TINY, "")
    assert _entries(tiny_repo.root) == {"tiny_onnx_fp32"}


@needs_modelopt
def test_quantize_over_a_variant_keeps_other_versions_and_needs_force_for_foreign_files(tiny_repo):
    root = str(tiny_repo.root)
    assert _invoke("quantize", TINY, "--precision", "fp16", "--repo", root).exit_code == 0
    variant = tiny_repo.root / f"{TINY}_onnx_fp16"
    (variant / "3").mkdir()
    (variant / "3" / "model.onnx").write_bytes((variant / "1" / "model.onnx").read_bytes())
    (variant / "1" / "notes.txt").write_text("a user's file")
    refused = _invoke("quantize", TINY, "--precision", "fp16", "--repo", root)
    assert refused.exit_code == 2 and "1/notes.txt" in refused.output and "--force" in refused.output
    assert (variant / "1" / "notes.txt").is_file()
    forced = _invoke("quantize", TINY, "--precision", "fp16", "--repo", root, "--force")
    assert forced.exit_code == 0, forced.output
    assert "replaced the previous" in forced.output and "kept 3/" in " ".join(forced.output.split())
    assert sorted(p.name for p in variant.iterdir()) == ["1", "3", "config.pbtxt", "deploykit.json"]
    assert [p.name for p in (variant / "1").iterdir()] == ["model.onnx"]


@needs_modelopt
@pytest.mark.slow
def test_quantize_checks_the_parent_file_against_its_sidecar(tiny_repo):
    from deploykit.fileio import sha256_file

    root = str(tiny_repo.root)
    path = tiny_repo.get(TINY, "onnx", "fp32").path
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # truncated after export
    refused = _invoke("quantize", TINY, "--precision", "int8", "--repo", root)
    assert refused.exit_code == 2, refused.output
    assert "is not the file tiny_onnx_fp32's sidecar describes" in refused.stderr
    assert "re-create it with `deploykit export tiny`, or pass --trust" in refused.stderr
    assert len(_error_lines(refused.stderr)) == 2 and "Traceback" not in refused.output
    corrupt = _invoke("quantize", TINY, "--precision", "int8", "--repo", root, "--trust")
    assert corrupt.exit_code == 1, corrupt.output
    assert "is not a readable ONNX model" in corrupt.stderr and "re-export it" in corrupt.stderr
    assert len(_error_lines(corrupt.stderr)) == 2 and "Traceback" not in corrupt.output
    assert _entries(tiny_repo.root) == {"tiny_onnx_fp32"}

    _tiny_onnx(path, huge_fc=True)  # another network in its place: a valid file the sidecar does not describe
    assert _invoke("quantize", TINY, "--precision", "fp16", "--repo", root).exit_code == 2
    trusted = _invoke("quantize", TINY, "--precision", "fp16", "--repo", root, "--trust", "--format", "json")
    assert trusted.exit_code == 0, trusted.output
    assert "used as it is (--trust)" in trusted.stderr
    side = json.loads((tiny_repo.root / "tiny_onnx_fp16" / "deploykit.json").read_text())
    assert side["parent_sha256"] == sha256_file(path)  # the lineage names the file really used
    assert side["parent_trusted"]["matches"] is False and side["parent_trusted"]["recorded_sha256"] != side["parent_sha256"]


_FULL_DISK = """
mount -t tmpfs -o size=1m tmpfs "$1" || exit 77
cp -r "$2" "$1/models" && dd if=/dev/zero of="$1/filler" bs=4k 2>/dev/null
shift 2
"$@"; rc=$?
(cd "$MNT/models" && find . | sort | sed 's/^/listing: /')
exit $rc
"""


@needs_modelopt
@pytest.mark.slow
def test_quantize_on_a_full_disk_is_an_error_line_and_leaves_nothing(tiny_repo, tmp_path):
    import os
    import shutil

    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to mount a small tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    before = sorted(f"listing: {p}" for p in subprocess.run(
        ["find", "."], cwd=tiny_repo.root, capture_output=True, text=True, check=True
    ).stdout.split())  # fmt: skip
    args = [sys.executable, "-m", "deploykit", "quantize", TINY, "--precision", "int8", "--repo", f"{mnt}/models",
            "--calib-size", "8", "--calib-method", "max"]  # fmt: skip
    proc = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", _FULL_DISK, "sh", str(mnt), str(tiny_repo.root), *args],
        capture_output=True, text=True, timeout=300, env={**os.environ, "MNT": str(mnt)},
    )  # fmt: skip
    if proc.returncode == 77 or "unshare failed" in proc.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()[:200]}")
    assert proc.returncode == 1, proc.stderr
    assert "error: no space left on the device of" in proc.stderr and "nothing was written" in proc.stderr
    assert len(_error_lines(proc.stderr)) == 2 and "Traceback" not in proc.stderr
    listing = sorted(line for line in proc.stdout.splitlines() if line.startswith("listing: "))
    assert listing == sorted(before), "a scratch folder or cache entry was left behind"


# ---- the tiny model end to end through the CLI ---------------------------------------------------------
@needs_modelopt
@pytest.mark.slow
def test_cli_int8_on_sample_photos_warns_and_records_lineage(tiny_repo):
    import onnx

    root = str(tiny_repo.root)
    args = ["quantize", TINY, "--precision", "int8", "--repo", root, "--calib-size", "32", "--calib-method", "max"]
    result = CliRunner().invoke(cli, [*args, "--format", "json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "demo, not a deployment" in result.stderr
    out = json.loads(result.stdout)  # stdout is pure JSON: ModelOpt's log went elsewhere
    assert out["variant"] == "tiny_onnx_int8" and out["parent"] == "tiny_onnx_fp32"
    assert out["lineage"] == ["test:tiny", "tiny_onnx_fp32", "tiny_onnx_int8"]
    assert out["calibration"]["kind"] == "samples" and out["calibration"]["size"] == 32
    assert out["calibration"]["method"] == "max" and out["cached"] is False

    side = json.loads((tiny_repo.root / "tiny_onnx_int8" / "deploykit.json").read_text())
    assert side["parent"] == "tiny_onnx_fp32" and side["lineage"] == ["test:tiny", "tiny_onnx_fp32"]
    assert side["calibration"]["sha256"] == out["calibration"]["sha256"]
    assert side["precision_recipe"]["tool"]["version"] and side["precision_recipe"]["high_precision_dtype"] == "fp32"
    assert "CPU" in side["precision_recipe"]["high_precision_reason"]
    config = (tiny_repo.root / "tiny_onnx_int8" / "config.pbtxt").read_text()
    assert 'name: "tiny_onnx_int8"' in config and "TYPE_FP32" in config and "dims: [ 3, 8, 8 ]" in config
    model = onnx.load(str(tiny_repo.root / "tiny_onnx_int8" / "1" / "model.onnx"))
    assert any(n.op_type == "QuantizeLinear" for n in model.graph.node)

    again = CliRunner().invoke(cli, args, catch_exceptions=False)  # table output, from the cache
    assert again.exit_code == 0, again.output
    assert "tiny_onnx_int8" in again.stdout and "reused, not recalibrated" in again.stdout


@needs_modelopt
@pytest.mark.slow
def test_cli_fp16_reports_kept_nodes_and_io_types(tmp_path):
    import onnx

    repo = _tiny_repo(tmp_path / "models", huge_fc=True)
    args = ["quantize", TINY, "--precision", "fp16", "--repo", str(repo.root), "--format", "json"]
    result = CliRunner().invoke(cli, [*args, "--no-keep-io-types"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["keep_io_types"] is False and out["calibration"]["kind"] == "samples"
    kept = {k["name"]: k for k in out["kept_fp32"]}
    assert list(kept) == ["fc"] and "weights beyond FP16's range" in kept["fc"]["reason"]
    model = onnx.load(str(repo.root / "tiny_onnx_fp16" / "1" / "model.onnx"))
    f16 = onnx.TensorProto.FLOAT16
    assert model.graph.input[0].type.tensor_type.elem_type == f16  # FP16 at the edges, as asked
    weights = {t.name: t.data_type for t in model.graph.initializer}
    assert weights["conv.weight"] == f16 and weights["fc.weight"] == onnx.TensorProto.FLOAT
    config = (repo.root / "tiny_onnx_fp16" / "config.pbtxt").read_text()
    assert "TYPE_FP16" in config and "TYPE_FP32" not in config
    side = json.loads((repo.root / "tiny_onnx_fp16" / "deploykit.json").read_text())
    assert side["precision_recipe"]["kept_fp32"] == out["kept_fp32"] and side["input"]["dtype"] == "float16"

    table = _invoke("quantize", TINY, "--precision", "fp16", "--repo", str(repo.root))
    assert table.exit_code == 0 and "kept FP32" in table.stdout and "fc (weights beyond" in table.stdout


# ---- accuracy on real data -------------------------------------------------------------------------------
def _exported(tmp_path_factory, trained):
    """Export a digits-trained zoo model into a fresh repository; returns (repo, fp32 logits)."""
    import torch

    from deploykit.export import export_model
    from deploykit.repository import ModelRepository

    folder = tmp_path_factory.mktemp(f"precision-{trained.name}")
    weights = folder / f"{trained.name}.pt"
    torch.save(trained.model.state_dict(), weights)
    export_model(trained.name, repo=folder / "models", weights=weights, input_size=32, num_classes=10)
    repo = ModelRepository(folder / "models")
    logits = _predict(repo.get(trained.name, "onnx", "fp32").path, trained.split.x_test)
    return repo, logits


@pytest.fixture(scope="module")
def resnet18_repo(tmp_path_factory, digits_resnet18):
    return _exported(tmp_path_factory, digits_resnet18)


@pytest.fixture(scope="module")
def preact_repo(tmp_path_factory, digits_preact_resnet18):
    return _exported(tmp_path_factory, digits_preact_resnet18)


def _accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(1) == y).mean())


def _check_fp16(repo, name, fp32_logits, split):
    import onnx

    from deploykit.precision import make_variant

    result = make_variant(repo, name, "fp16", calib_data=split.x_train)
    model = onnx.load(str(result.artifact.path))
    f16 = onnx.TensorProto.FLOAT16
    # strongly typed: FP16 weights, FP32 I/O through Cast nodes at the edges
    assert sum(t.data_type == f16 for t in model.graph.initializer) >= 10
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    consumers = [n for n in model.graph.node if "input" in n.input]
    assert [n.op_type for n in consumers] == ["Cast"]
    assert next(a.i for a in consumers[0].attribute if a.name == "to") == f16
    assert any(n.op_type == "Cast" and "logits" in n.output for n in model.graph.node)
    assert result.bytes < 0.6 * result.parent_bytes
    from deploykit.tensorrt.preflight import (
        check_graph_precision,  # the TensorRT stage's pre-build check
    )

    report = check_graph_precision(str(result.artifact.path), "fp16")
    assert report.fp16_weights == report.weighted_nodes and not report.problems

    logits = _predict(result.artifact.path, split.x_test)
    fp32, fp16 = _accuracy(fp32_logits, split.y_test), _accuracy(logits, split.y_test)
    agreement = float((logits.argmax(1) == fp32_logits.argmax(1)).mean())
    assert abs(fp16 - fp32) <= 0.005, (fp32, fp16)
    assert agreement >= 0.99, agreement
    side = json.loads((result.artifact.directory / "deploykit.json").read_text())
    assert side["parent"] == f"{name}_onnx_fp32" and side["lineage"][-1] == f"{name}_onnx_fp32"
    assert side["precision_recipe"]["keep_io_types"] is True
    assert side["calibration"]["purpose"].startswith("fp16 range check")
    return result


def _check_int8(repo, name, fp32_logits, split, tmp_path, method="entropy"):
    import onnx

    from deploykit.precision import make_variant

    np.save(tmp_path / "train.npy", split.x_train)  # calibrate on the training split only
    result = make_variant(repo, name, "int8", calib_data=tmp_path / "train.npy", calib_size=256, calib_method=method)
    model = onnx.load(str(result.artifact.path))
    inits = {t.name: t for t in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    quantized_convs = 0
    for conv in convs:
        dq = producers.get(conv.input[1])
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        quantized_convs += 1
        weight = inits[dq.input[0]]  # the weight stored as INT8, behind a DequantizeLinear only
        assert weight.data_type == onnx.TensorProto.INT8
        assert next(a.i for a in dq.attribute if a.name == "axis") == 0
        assert list(inits[dq.input[1]].dims) == [weight.dims[0]]  # one scale per output channel
    assert quantized_convs >= len(convs) - 1, (quantized_convs, len(convs))
    assert result.quantized["weights"]["per_channel_axes"] == [0]
    assert result.quantized["weights"]["storage"] == "int8"
    assert result.bytes < 0.3 * result.parent_bytes  # INT8 weights: about a quarter of the FP32 file
    from deploykit.tensorrt.preflight import (
        check_graph_precision,  # the TensorRT stage's pre-build check
    )

    report = check_graph_precision(str(result.artifact.path), "int8")
    assert report.per_channel == quantized_convs and report.per_tensor == 0 and not report.problems

    logits = _predict(result.artifact.path, split.x_test)
    fp32, int8 = _accuracy(fp32_logits, split.y_test), _accuracy(logits, split.y_test)
    agreement = float((logits.argmax(1) == fp32_logits.argmax(1)).mean())
    assert fp32 - int8 <= 0.015, (fp32, int8)
    assert agreement >= 0.97, agreement
    assert result.calibration.size == 256 and result.calibration.kind == "array"
    assert result.calibration.method == method and not result.cached
    return result, logits


@needs_modelopt
@pytest.mark.slow
def test_resnet18_fp16_accuracy(resnet18_repo, digits_resnet18):
    repo, fp32_logits = resnet18_repo
    result = _check_fp16(repo, "resnet18", fp32_logits, digits_resnet18.split)
    assert result.conversion["nodes_fp16"] > 40


@needs_modelopt
@pytest.mark.slow
def test_resnet18_int8_accuracy_and_cache(resnet18_repo, digits_resnet18, tmp_path):
    from deploykit.fileio import sha256_file
    from deploykit.precision import make_variant

    repo, fp32_logits = resnet18_repo
    split = digits_resnet18.split
    first, _ = _check_int8(repo, "resnet18", fp32_logits, split, tmp_path)
    side = json.loads((first.artifact.directory / "deploykit.json").read_text())
    assert side["calibration"]["sha256"] == first.calibration.sha256 and side["calibration"]["size"] == 256
    assert side["parent"] == "resnet18_onnx_fp32"
    cache = repo.root / ".cache" / "precision"
    entries = sorted(p.name for p in cache.iterdir())
    digest = sha256_file(first.artifact.path)

    # same data, same method: reused from the cache, not recalibrated
    again = make_variant(repo, "resnet18", "int8", calib_data=tmp_path / "train.npy", calib_size=256)
    assert again.cached and again.calibration.sha256 == first.calibration.sha256
    assert sha256_file(again.artifact.path) == digest
    assert sorted(p.name for p in cache.iterdir()) == entries
    assert json.loads((again.artifact.directory / "deploykit.json").read_text())["calibration"]["cached"] is True

    # the INT8 file cannot be quantized again
    from deploykit.precision import quantize_onnx_int8

    with pytest.raises(UsageError, match="already an INT8 graph"):
        quantize_onnx_int8(again.artifact.path, tmp_path / "twice.onnx", split.x_train[:32])
    assert not (tmp_path / "twice.onnx").exists()


@needs_modelopt
@pytest.mark.slow
def test_int8_percentile_and_bad_calibration(resnet18_repo, digits_resnet18, tmp_path):
    """Percentile clips ranges below max; calibrating on one constant image ruins accuracy."""
    import onnx
    from onnx import numpy_helper

    from deploykit.precision import quantize_onnx_int8

    repo, fp32_logits = resnet18_repo
    split = digits_resnet18.split
    src = repo.get("resnet18", "onnx", "fp32").path
    calib = split.x_train[np.random.default_rng(0).permutation(len(split.x_train))[:128]]
    fp32 = _accuracy(fp32_logits, split.y_test)

    good = quantize_onnx_int8(src, tmp_path / "max.onnx", calib, method="max")
    # FP32 weights behind Q/DQ pairs (ModelOpt's default form) compute the same numbers as the
    # INT8 weights deploykit stores, in a file four times larger
    pairs = quantize_onnx_int8(src, tmp_path / "max_fp32w.onnx", calib, method="max", int8_weights=False)
    assert pairs.to_dict()["weights"]["storage"] == "fp32" and good.to_dict()["weights"]["storage"] == "int8"
    assert pairs.weight_quantizers == good.weight_quantizers and pairs.activation_quantizers == good.activation_quantizers
    assert (tmp_path / "max.onnx").stat().st_size < 0.3 * (tmp_path / "max_fp32w.onnx").stat().st_size
    x = split.x_test[:64]
    np.testing.assert_allclose(_predict(good.path, x), _predict(pairs.path, x), rtol=1e-4, atol=1e-4)
    pct = quantize_onnx_int8(src, tmp_path / "pct.onnx", calib, method="percentile", percentile=99.9)
    assert pct.percentile == 99.9 and pct.percentile_tensors >= 10

    def act_scales(path):
        model = onnx.load(str(path))
        inits = {t.name: t for t in model.graph.initializer}
        return {
            n.input[0]: float(numpy_helper.to_array(inits[n.input[1]]))
            for n in model.graph.node
            if n.op_type == "QuantizeLinear" and n.input[0] not in inits
        }

    s_max, s_pct = act_scales(good.path), act_scales(pct.path)
    assert s_max.keys() == s_pct.keys()
    assert all(s_pct[t] <= s_max[t] * (1 + 1e-6) for t in s_max)
    assert sum(s_pct[t] < 0.9 * s_max[t] for t in s_max) >= len(s_max) // 2  # outliers clipped

    acc_max = _accuracy(_predict(good.path, split.x_test), split.y_test)
    acc_pct = _accuracy(_predict(pct.path, split.x_test), split.y_test)
    assert fp32 - acc_max <= 0.015 and fp32 - acc_pct <= 0.015, (fp32, acc_max, acc_pct)

    constant = np.zeros((1, 3, 32, 32), np.float32)  # one flat image (the mean color)
    bad = quantize_onnx_int8(src, tmp_path / "bad.onnx", constant, method="max")
    acc_bad = _accuracy(_predict(bad.path, split.x_test), split.y_test)
    assert acc_bad < acc_max - 0.10, (acc_max, acc_bad)


@needs_modelopt
@pytest.mark.slow
def test_preact_resnet18_fp16_and_int8_accuracy(preact_repo, digits_preact_resnet18, tmp_path):
    """The second family (pre-activation blocks) meets the same bars."""
    repo, fp32_logits = preact_repo
    split = digits_preact_resnet18.split
    _check_fp16(repo, "preact_resnet18", fp32_logits, split)
    _check_int8(repo, "preact_resnet18", fp32_logits, split, tmp_path)
