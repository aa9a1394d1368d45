"""The pipeline table: one place knows which stage makes each variant."""

from __future__ import annotations

import pytest

from deploykit import pipeline
from deploykit.artifacts import FORMATS, PRECISIONS
from deploykit.errors import UsageError


def test_every_format_and_precision_has_a_stage_with_a_resolvable_parent():
    for fmt in FORMATS:
        for precision in PRECISIONS:
            stages = pipeline.chain(fmt, precision)
            assert stages[0].parent is None, "every chain starts from PyTorch"
            assert (stages[-1].format, stages[-1].precision) == (fmt, precision)
            for parent, child in zip(stages, stages[1:], strict=False):
                assert child.parent == (parent.format, parent.precision)


def test_make_command_is_derived_from_the_table():
    assert pipeline.make_command("resnet50", "onnx", "fp32") == "deploykit export resnet50"
    assert pipeline.make_command("vgg16", "onnx", "int8") == "deploykit quantize vgg16 --precision int8"
    assert pipeline.make_command("vgg16", "trt", "fp16") == "deploykit build vgg16 --precision fp16"
    assert [s.command_for("m") for s in pipeline.chain("trt", "int8")] == [
        "deploykit export m",
        "deploykit quantize m --precision int8",
        "deploykit build m --precision int8",
    ]


def test_unknown_stage_is_a_usage_error():
    with pytest.raises(UsageError, match="no stage makes"):
        pipeline.stage("tflite", "fp32")


def test_makers_resolve_to_callables():
    # importing the maker modules is what ensure_variant does before a real make
    for st in pipeline.STAGES.values():
        if st.format == "trt":
            continue  # the TensorRT maker module is importable without TensorRT too, checked below
        assert callable(pipeline._maker(st))
    assert callable(pipeline._maker(pipeline.stage("trt", "fp32")))


class _FakeRepo:
    """A repository whose `find` answers from a set; records nothing else."""

    root = "models"

    def __init__(self, present):
        self.present = set(present)

    def find(self, model, fmt, precision):
        return (model, fmt, precision) if (model, fmt, precision) in self.present else None


def test_ensure_variant_returns_an_existing_variant_without_making_anything():
    repo = _FakeRepo({("m", "onnx", "int8")})
    said = []
    assert pipeline.ensure_variant(repo, "m", "onnx", "int8", progress=said.append) == (("m", "onnx", "int8"), False)
    assert said == []
