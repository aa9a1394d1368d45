"""Example: accuracy parity in your own CI with pytest.

Copy this file into your project's tests and adapt the constants. It assumes you exported
and quantized your model into a deploykit model repository, e.g.

    deploykit export resnet50 --weights checkpoints/resnet50.pt --num-classes 10
    deploykit quantize resnet50 --precision fp16
    deploykit quantize resnet50 --precision int8 --calib-data data/train

and keep a labelled validation folder (ImageFolder layout: one subfolder per class, named by
class index or matching all of the model's classes). Run with ``pytest -q``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from deploykit.parity import Tolerance, assert_parity, check

MODEL = os.environ.get("PARITY_MODEL", "resnet50")
REPO = Path(os.environ.get("PARITY_REPO", "models"))
WEIGHTS = Path(os.environ.get("PARITY_WEIGHTS", "checkpoints/resnet50.pt"))
DATA = Path(os.environ.get("PARITY_DATA", "data/val"))

pytestmark = pytest.mark.skipif(
    not (REPO.is_dir() and WEIGHTS.is_file() and DATA.is_dir()),
    reason="set PARITY_REPO, PARITY_WEIGHTS and PARITY_DATA to a model repository, weights and images",
)


def test_every_variant_classifies_like_the_pytorch_model():
    # Raises AssertionError with one line per variant (and the first flipped images) on failure.
    assert_parity(
        model=MODEL,
        repo=REPO,
        backends=["onnxruntime", "tensorrt"],  # tensorrt is skipped where it is not installed
        precisions=["fp32", "fp16", "int8"],
        data=DATA,
        weights=WEIGHTS,
        limit=2000,  # round-robin over the classes; drop it to use the whole folder
        # Tighter than the defaults for this model: INT8 may lose at most half a point.
        tolerances={"int8": {"accuracy_drop": 0.5}, "fp16": Tolerance(agreement=0.995, min_cosine=0.999)},
    )


def test_int8_keeps_its_accuracy():
    # The report is a plain object as well: assert on any number you care about.
    report = check(MODEL, repo=REPO, precisions=["int8"], data=DATA, weights=WEIGHTS, limit=2000)
    (result,) = report.results
    assert result.metrics.variant_accuracy is not None, "the data folder has no labels"
    assert result.metrics.variant_accuracy >= 0.90, report.summary()
