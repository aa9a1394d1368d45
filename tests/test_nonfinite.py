"""NaN/inf outputs are bad input (exit 2, naming the side that produced them), never a failed
comparison: a module whose weights are all finite but whose float32 activations overflow."""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from deploykit.cli import cli
from deploykit.errors import UsageError
from deploykit.parity import NonFiniteOutputError

SIZE = 32
FACTORY_MODULE = "deploykit_nonfinite_nets"
FACTORY_SOURCE = '''
import torch
from torch import nn


def tiny(scale=None):
    """Conv -> global average pool -> two Linear layers; ``scale`` sets both Linear weights to
    that constant (1e20 is finite in float32, but two such layers overflow it to inf)."""
    net = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 16), nn.Linear(16, 10)
    )
    if scale is not None:
        with torch.no_grad():
            for layer in (net[3], net[4]):
                layer.weight.fill_(scale)
    return net.eval()


def overflowing():
    return tiny(1e20)
'''


@pytest.fixture
def nets(tmp_path, monkeypatch):
    """The factories' module, importable as ``deploykit_nonfinite_nets`` (for ``--module``)."""
    import importlib

    (tmp_path / f"{FACTORY_MODULE}.py").write_text(FACTORY_SOURCE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, FACTORY_MODULE, raising=False)
    return importlib.import_module(FACTORY_MODULE)


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_export_of_a_module_whose_outputs_overflow_is_bad_input(nets, tmp_path):
    import torch

    from deploykit.export import export_module

    module = nets.overflowing()
    assert all(bool(torch.isfinite(p).all()) for p in module.parameters())  # the weights are fine
    repo = tmp_path / "models"
    with pytest.raises(NonFiniteOutputError, match="the PyTorch model produced non-finite outputs") as info:
        export_module(module, "overflow", repo=repo, input_size=SIZE, num_classes=10)
    assert info.value.exit_code == 2 and isinstance(info.value, UsageError)
    assert "overflow float32" in info.value.hint
    assert not repo.exists() or not [p for p in repo.iterdir() if not p.name.startswith(".")]  # nothing written

    result = _run("export", "overflow", "--module", f"{FACTORY_MODULE}:overflowing", "--input-size", SIZE,
                  "--repo", repo)  # fmt: skip
    assert result.exit_code == 2, result.output
    assert "error: the PyTorch model produced non-finite outputs (NaN or inf)" in result.stderr
    assert "hint:" in result.stderr and "Traceback" not in result.output


@pytest.mark.slow
def test_parity_names_the_side_whose_outputs_are_not_finite(nets, tmp_path):
    import onnx
    from onnx import numpy_helper

    from deploykit.export import export_factory
    from deploykit.parity import check
    from deploykit.repository import ModelRepository

    repo = tmp_path / "models"
    export_factory(f"{FACTORY_MODULE}:tiny", "tinynet", repo=repo, input_size=SIZE)
    with pytest.raises(NonFiniteOutputError, match="the reference torch-fp32 produced non-finite outputs"):
        check("tinynet", repo=repo, reference=nets.overflowing(), write_sidecar=False)

    # The variant's file made to overflow (Gemm weights x 1e20), used with --trust: the variant's side.
    path = ModelRepository(repo).get("tinynet", "onnx", "fp32").path
    model = onnx.load(str(path))
    gemms = {n.input[1] for n in model.graph.node if n.op_type in ("Gemm", "MatMul")}
    for init in model.graph.initializer:
        if init.name in gemms:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1e20, init.name))
    onnx.save(model, str(path))
    result = _run("parity", "tinynet", "--repo", repo, "--trust", "--no-write")
    assert result.exit_code == 2, result.output
    assert "error: the variant tinynet_onnx_fp32@onnxruntime produced non-finite outputs" in result.stderr
    assert "the reference's outputs are finite" in result.stderr and "FAIL" not in result.stdout
