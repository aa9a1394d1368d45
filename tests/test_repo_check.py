"""`deploykit repo check`: a good repository passes; each common mistake is named for its model.

The ONNX models here are tiny real graphs (Flatten + Gemm) written with onnx.helper, and the
variant folders are written by the same code export/build use (ModelRepository.write_variant
with TritonModelConfig.render), so the "good" case is what deploykit really produces.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from click.testing import CliRunner

from deploykit.cli import cli
from deploykit.repository import ModelRepository
from deploykit.serve.check import check_repository, engine_profile
from deploykit.triton.config import (
    ConfigError,
    TensorConfig,
    TritonModelConfig,
    default_preferred,
    parse_config,
)

onnx = pytest.importorskip("onnx")


def _write_tiny_onnx(path, size: int = 8, classes: int = 10, batch: int | str = "N", ir_version: int = 10) -> None:
    """x: [N, 3, size, size] -> Flatten -> Gemm -> logits: [N, classes] (IR 10, as torch.onnx writes)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((3 * size * size, classes)).astype(np.float32), "w")
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["x"], ["flat"], axis=1),
            helper.make_node("Gemm", ["flat", "w"], ["logits"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, size, size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [batch, classes])],
        initializer=[w],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=ir_version)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _config(name: str, platform: str = "onnxruntime_onnx", max_batch_size: int = 8, dims=(3, 8, 8), **kw) -> str:
    return TritonModelConfig(
        name=name,
        platform=platform,
        max_batch_size=max_batch_size,
        inputs=(TensorConfig("x", "float32", tuple(dims)),),
        outputs=(TensorConfig("logits", "float32", (10,)),),
        preferred_batch_sizes=default_preferred(max_batch_size),
        **kw,
    ).render()


def _add_onnx(repo: ModelRepository, model: str, precision: str = "fp32", write_model=None, **config) -> str:
    variant = f"{model}_onnx_{precision}"
    repo.write_variant(
        model, "onnx", precision,
        write_model=write_model or _write_tiny_onnx,
        config_pbtxt=_config(variant, **config),
        sidecar={"input": {"name": "x", "shape": [-1, 3, 8, 8], "dtype": "float32"}},
    )  # fmt: skip
    return variant


def _add_plan(repo: ModelRepository, model: str, profile_max: int, max_batch_size: int, **config) -> str:
    variant = f"{model}_trt_fp16"
    repo.write_variant(
        model, "trt", "fp16",
        write_model=lambda p: p.write_bytes(b"not a real engine: TensorRT is not on this machine"),
        config_pbtxt=_config(variant, "tensorrt_plan", max_batch_size, instance_kind="KIND_GPU", **config),
        sidecar={
            "input": {"name": "x", "shape": [-1, 3, 8, 8], "dtype": "float32"},
            "build": {"profile": {"min": [1, 3, 8, 8], "opt": [4, 3, 8, 8], "max": [profile_max, 3, 8, 8]}},
        },
    )  # fmt: skip
    return variant


@pytest.fixture()
def good_repo(tmp_path):
    repo = ModelRepository(tmp_path / "models")
    _add_onnx(repo, "tiny")
    _add_plan(repo, "tiny", profile_max=16, max_batch_size=16)
    return repo


def test_good_repository_passes(good_repo):
    report = check_repository(good_repo.root)
    assert [m.name for m in report.models] == ["tiny_onnx_fp32", "tiny_trt_fp16"]
    assert report.ok, [(m.name, m.problems) for m in report.models]
    assert report.error_count == 0 and report.warning_count == 0
    assert report.dims_checked and report.schema_checked
    assert report.model("tiny_onnx_fp32").versions == (1,)
    assert report.model("tiny_trt_fp16").max_batch_size == 16

    result = CliRunner().invoke(cli, ["repo", "check", "--repo", str(good_repo.root), "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["ok"] is True and len(data["models"]) == 2


def _only_bad(report, bad: str, code: str) -> None:
    """``bad`` has an error with ``code``; every other model has no error."""
    assert not report.ok
    model = report.model(bad)
    assert code in {p.code for p in model.errors}, model.problems
    for other in report.models:
        if other.name != bad:
            assert other.ok, (other.name, other.problems)


def test_batch_dim_in_dims(good_repo):
    _add_onnx(good_repo, "bad", dims=(1, 3, 8, 8))
    report = check_repository(good_repo.root)
    _only_bad(report, "bad_onnx_fp32", "batch-dim-in-dims")
    problem = next(p for p in report.model("bad_onnx_fp32").errors if p.code == "batch-dim-in-dims")
    assert "[3, 8, 8]" in problem.hint


def test_dims_disagree_with_the_onnx_file(good_repo):
    _add_onnx(good_repo, "bad", dims=(3, 16, 16))
    _only_bad(check_repository(good_repo.root), "bad_onnx_fp32", "dims-mismatch")


def test_wrong_file_name(good_repo):
    variant = _add_onnx(good_repo, "bad")
    folder = good_repo.root / variant / "1"
    (folder / "model.onnx").rename(folder / "resnet18.onnx")
    report = check_repository(good_repo.root)
    _only_bad(report, variant, "wrong-file-name")
    assert "resnet18.onnx" in report.model(variant).errors[0].message


def test_missing_version_folder(good_repo):
    variant = _add_onnx(good_repo, "bad")
    folder = good_repo.root / variant
    shutil.move(str(folder / "1" / "model.onnx"), str(folder / "model.onnx"))
    (folder / "1").rmdir()
    _only_bad(check_repository(good_repo.root), variant, "no-version")


def test_non_numeric_version_folder_is_reported(good_repo):
    variant = _add_onnx(good_repo, "bad")
    folder = good_repo.root / variant
    (folder / "1").rename(folder / "v1")
    report = check_repository(good_repo.root)
    _only_bad(report, variant, "no-version")
    assert "not-a-version" in report.model(variant).codes()


def test_max_batch_size_over_engine_profile(good_repo):
    _add_plan(good_repo, "big", profile_max=8, max_batch_size=32)
    report = check_repository(good_repo.root)
    _only_bad(report, "big_trt_fp16", "batch-over-profile")
    assert "max_batch_size: 8" in report.model("big_trt_fp16").errors[0].hint


def test_plan_on_cpu_instances(good_repo):
    variant = _add_plan(good_repo, "cpu", profile_max=8, max_batch_size=8)
    config = good_repo.root / variant / "config.pbtxt"
    config.write_text(config.read_text().replace("KIND_GPU", "KIND_CPU"))
    _only_bad(check_repository(good_repo.root), variant, "instance-kind")


def test_preferred_batch_size_over_max(good_repo):
    variant = _add_onnx(good_repo, "bad")
    config = good_repo.root / variant / "config.pbtxt"
    config.write_text(config.read_text().replace("preferred_batch_size: [ 4, 8 ]", "preferred_batch_size: [ 4, 64 ]"))
    _only_bad(check_repository(good_repo.root), variant, "preferred-over-max")


def test_bad_pbtxt_syntax_names_line_and_column(good_repo):
    variant = _add_onnx(good_repo, "bad")
    config = good_repo.root / variant / "config.pbtxt"
    config.write_text(config.read_text().replace("max_batch_size: 8", "max_batch_size 8"))
    report = check_repository(good_repo.root)
    _only_bad(report, variant, "pbtxt-syntax")
    assert "config.pbtxt:3:" in report.model(variant).errors[0].message


def test_unknown_field_is_caught_by_tritons_schema(good_repo):
    variant = _add_onnx(good_repo, "bad")
    config = good_repo.root / variant / "config.pbtxt"
    config.write_text(config.read_text().replace("max_batch_size: 8", "max_batch_size: 8\nmax_batch: 8"))
    report = check_repository(good_repo.root)
    _only_bad(report, variant, "pbtxt-schema")
    assert "max_batch" in report.model(variant).errors[0].message


def test_onnx_newer_than_the_production_container_is_a_warning(good_repo):
    # written by deploykit (the sidecar hashes it): a file changed afterwards is another error
    variant = _add_onnx(good_repo, "new", write_model=lambda path: _write_tiny_onnx(path, ir_version=13))
    report = check_repository(good_repo.root)
    assert report.ok  # it loads locally; the pinned container's ONNX Runtime would refuse it
    assert [p.code for p in report.model(variant).warnings] == ["onnx-too-new"]


def test_fixed_batch_dimension_in_the_model(good_repo):
    variant = _add_onnx(good_repo, "fixed")
    _write_tiny_onnx(good_repo.root / variant / "1" / "model.onnx", batch=1)
    _only_bad(check_repository(good_repo.root), variant, "fixed-batch-dim")


def test_name_mismatch_and_corrupt_model(good_repo):
    variant = _add_onnx(good_repo, "bad")
    (good_repo.root / variant / "1" / "model.onnx").write_bytes(b"\x08\x07garbage" * 10)
    renamed = good_repo.root / "renamed_onnx_fp32"
    (good_repo.root / variant).rename(renamed)
    codes = check_repository(good_repo.root).model("renamed_onnx_fp32").codes()
    assert {"name-mismatch", "corrupt-model"} <= codes


def test_cli_table_names_the_bad_model_and_exits_1(good_repo):
    _add_onnx(good_repo, "bad", dims=(1, 3, 8, 8))
    result = CliRunner().invoke(cli, ["repo", "check", "--repo", str(good_repo.root)])
    assert result.exit_code == 1
    assert "bad_onnx_fp32" in result.output and "batch-dim-in-dims" in result.output


def test_cli_missing_repository_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(cli, ["repo", "check", "--repo", str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "no model repository" in result.output


def test_repo_list_shows_variants(good_repo):
    result = CliRunner().invoke(cli, ["repo", "list", "--repo", str(good_repo.root), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert [r["variant"] for r in json.loads(result.output)] == ["tiny_onnx_fp32", "tiny_trt_fp16"]


# ---- the parser: Triton's own ModelConfig schema through protobuf's text_format ---------------------------
def test_parser_reads_what_triton_config_renders():
    text = _config("m", max_batch_size=32)
    msg = parse_config(text)
    assert msg.name == "m" and msg.max_batch_size == 32
    (inp,) = msg.input
    assert list(inp.dims) == [3, 8, 8] and type(msg).DESCRIPTOR.fields_by_name["input"] is not None
    assert list(msg.dynamic_batching.preferred_batch_size) == [4, 8, 16, 32]
    assert parse_config(text) == TritonModelConfig(
        name="m", platform="onnxruntime_onnx", max_batch_size=32,
        inputs=(TensorConfig("x", "float32", (3, 8, 8)),), outputs=(TensorConfig("logits", "float32", (10,)),),
        preferred_batch_sizes=default_preferred(32),
    ).to_proto()  # fmt: skip


def test_parser_text_format_details():
    msg = parse_config(
        textwrap.dedent(
            """
            # comment
            name: "a" 'b'  # adjacent strings concatenate
            max_batch_size: 0x10;
            input [ { name: "x" dims: [ -1 ] dims: 4 } ]
            dynamic_batching < preserve_ordering: true >
            parameters { key: "x" value: { string_value: "\\x41\\n" } }
            """
        )
    )
    assert msg.name == "ab" and msg.max_batch_size == 16
    assert list(msg.input[0].dims) == [-1, 4]
    assert msg.dynamic_batching.preserve_ordering is True
    assert msg.parameters["x"].string_value == "A\n"


@pytest.mark.parametrize(
    "text, where, kind",
    [
        ('name: "unterminated', "1:7", "syntax"),
        ("max_batch_size 8", "1:16", "syntax"),
        ('input [ { name: "x" }', "1:22", "syntax"),
        ("input { dims: [ 1 2 ] }", "1:19", "syntax"),
        ("max_batch_size: 1x", "1:17", "schema"),
        ("dynamic_batching { max_queue_delay_microseconds: 1", "1:50", "syntax"),
        ("name: @", "1:7", "syntax"),
        ("max_batch: 8", "1:1", "schema"),
        ("input { data_type: TYPE_FOO }", "1:20", "schema"),
    ],
)
def test_parser_errors_have_positions(text, where, kind):
    with pytest.raises(ConfigError) as info:
        parse_config(text)
    assert str(info.value).startswith(f"config.pbtxt:{where}:"), str(info.value)
    assert info.value.kind == kind


def test_repo_check_reads_configs_without_grpc_or_torch(good_repo):
    """Triton's schema is loaded by path: repo check imports neither grpc nor torch nor pytriton."""
    code = textwrap.dedent(
        f"""
        import sys, importlib.abc
        class Blocker(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("grpc", "pytriton", "torch"):
                    raise ImportError(name)
        sys.meta_path.insert(0, Blocker())
        from deploykit.serve.check import check_repository
        report = check_repository({str(good_repo.root)!r})
        assert report.ok and report.schema_checked, report
        assert "grpc" not in sys.modules and "torch" not in sys.modules
        print("ok")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_repo_check_without_tritonclient_names_the_extra(good_repo):
    code = textwrap.dedent(
        """
        import sys, importlib.abc
        class Blocker(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "tritonclient":
                    raise ImportError(name)
        sys.meta_path.insert(0, Blocker())
        from deploykit.cli import cli
        cli(args=["repo", "check", "--repo", sys.argv[1]], prog_name="deploykit")
        """
    )
    proc = subprocess.run([sys.executable, "-c", code, str(good_repo.root)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "'tritonclient' is needed" in proc.stderr and "deploykit[onnx]" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_engine_profile_forms():
    assert engine_profile({"build": {"profile": {"min": [1, 3], "max": [32, 3]}}})["max_batch"] == 32
    assert engine_profile({"profile": {"min": 1, "opt": 8, "max": 16}})["max_batch"] == 16
    assert engine_profile({"tensorrt": {"profile": {"input": {"max": [4, 3, 8, 8]}}}})["max_batch"] == 4
    assert engine_profile({"build": {"precision": "fp16"}}) is None
    # what deploykit.tensorrt.record.engine_sidecar writes
    written = {"profile": {"input": "input", "batch": {"min": 1, "opt": 8, "max": 32}, "min": [1, 3, 8, 8], "opt": [8, 3, 8, 8], "max": [32, 3, 8, 8]}}
    assert engine_profile(written) == {"max_batch": 32, "max_shape": [32, 3, 8, 8]}


def test_a_model_file_that_is_not_the_one_the_sidecar_hashed_is_an_error(good_repo):
    plan = good_repo.root / "tiny_trt_fp16" / "1" / "model.plan"
    plan.write_bytes(bytes(b ^ 1 for b in plan.read_bytes()))  # same size, other content
    report = check_repository(good_repo.root)
    _only_bad(report, "tiny_trt_fp16", "file-changed")
    problem = next(p for p in report.model("tiny_trt_fp16").errors if p.code == "file-changed")
    assert "sha256" in problem.message and "deploykit build tiny" in problem.hint
    onnx_file = good_repo.root / "tiny_onnx_fp32" / "1" / "model.onnx"
    onnx_file.write_bytes(onnx_file.read_bytes() + b"\0")  # the size differs: no hash needed
    assert "file-changed" in {p.code for p in check_repository(good_repo.root).model("tiny_onnx_fp32").errors}
    result = CliRunner().invoke(cli, ["repo", "check", "--repo", str(good_repo.root)])
    assert result.exit_code == 1 and "file-changed" in result.output
