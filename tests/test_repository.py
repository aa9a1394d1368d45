"""deploykit.repository: one reader of the lineage sidecar, used by every command.

A variant folder whose deploykit.json is missing or corrupt is named the same way everywhere
(`<variant>: the sidecar <path> is missing|corrupt`) and is never taken for "no variant" or
silently skipped; parity never passes what it could not check.
"""

from __future__ import annotations

import json
import shutil

import pytest
from click.testing import CliRunner

from deploykit.cli import cli
from deploykit.repository import (
    BrokenVariantError,
    ModelRepository,
    parse_variant_name,
    read_variant,
)


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from deploykit.export import export_model

    repo = tmp_path_factory.mktemp("broken") / "models"
    export_model("resnet18", repo=repo, input_size=32, num_classes=10)
    return repo


def test_read_variant_names_a_missing_or_corrupt_sidecar(tmp_path):
    folder = tmp_path / "resnet18_onnx_int8"
    (folder / "1").mkdir(parents=True)
    with pytest.raises(BrokenVariantError, match="resnet18_onnx_int8: the sidecar .*deploykit.json is missing") as missing:
        read_variant(folder)
    assert "deploykit quantize resnet18 --precision int8" in missing.value.hint
    for text in ("{", "[]", '{"model": "resnet18"}'):
        (folder / "deploykit.json").write_text(text)
        with pytest.raises(BrokenVariantError, match="resnet18_onnx_int8: the sidecar .* is corrupt"):
            read_variant(folder)
    assert parse_variant_name("resnet18_onnx_int8") == ("resnet18", "onnx", "int8")
    assert parse_variant_name("my_model_trt_fp16") == ("my_model", "trt", "fp16")
    assert parse_variant_name("ensemble") is None and parse_variant_name("x_onnx_fp64") is None
    (tmp_path / "someone_elses_model").mkdir()  # not deploykit's: neither listed nor broken
    assert ModelRepository(tmp_path).scan()[0] == [] and [b.directory.name for b in ModelRepository(tmp_path).scan()[1]] == [
        "resnet18_onnx_int8"
    ]


@pytest.mark.slow
def test_every_command_names_a_missing_sidecar_and_parity_does_not_pass_it(exported, tmp_path):
    repo = tmp_path / "models"
    shutil.copytree(exported, repo)
    shutil.copytree(repo / "resnet18_onnx_fp32", repo / "resnet18_onnx_fp16")
    (repo / "resnet18_onnx_fp16" / "deploykit.json").unlink()
    said = "resnet18_onnx_fp16: the sidecar"

    listed = _run("repo", "list", "--repo", repo)
    assert listed.exit_code == 1 and said in _flat(listed.output) and "is missing" in _flat(listed.output)
    assert "resnet18_onnx_fp32" in listed.output and "no variants" not in listed.output
    rows = json.loads(_run("repo", "list", "--repo", repo, "--format", "json").output)
    assert [r["variant"] for r in rows] == ["resnet18_onnx_fp32", "resnet18_onnx_fp16"] and said in rows[1]["error"]

    parity = _run("parity", "resnet18", "--repo", repo, "--no-write", "--limit", "4")
    assert parity.exit_code == 1, parity.output
    assert said in _flat(parity.output) and "PASS 1 of 1" not in parity.output
    report = json.loads(_run("parity", "resnet18", "--repo", repo, "--no-write", "--limit", "4", "--format", "json").output)
    assert report["passed"] is False
    assert {r["name"]: r["status"] for r in report["results"]} == {
        "resnet18_onnx_fp32@onnxruntime": "pass", "resnet18_onnx_fp16@onnxruntime": "error",
    }  # fmt: skip

    check = json.loads(_run("repo", "check", "--repo", repo, "--format", "json").output)
    fp16 = next(m for m in check["models"] if m["name"] == "resnet18_onnx_fp16")
    assert any(said in p["message"] for p in fp16["problems"])


@pytest.mark.slow
def test_quantize_and_bench_name_a_corrupt_parent_sidecar(exported, tmp_path):
    repo = tmp_path / "models"
    shutil.copytree(exported, repo)
    (repo / "resnet18_onnx_fp32" / "deploykit.json").write_text('{"model": "resnet18", "format": ')
    said = "resnet18_onnx_fp32: the sidecar"
    for args in (
        ("quantize", "resnet18", "--precision", "fp16"),
        ("bench", "resnet18", "--backend", "onnxruntime", "--precision", "fp32", "--batch", "1"),
    ):
        result = _run(*args, "--repo", repo)
        assert result.exit_code == 1, (args, result.output)
        assert said in _flat(result.output) and "is corrupt" in result.output, (args, result.output)
        assert "not in the repository" not in result.output and "Traceback" not in result.output
