"""Shared fixtures: a real model trained on real data (scikit-learn digits), cached on disk."""

from __future__ import annotations

import pytest


def _trained(request, name: str):
    import torch

    from deploykit.digits import load_digits_split, train_digits_model

    split = load_digits_split(size=32, seed=0)
    cache = request.config.cache.mkdir("deploykit-digits")
    path = cache / f"{name}-32-seed0-torch{torch.__version__}.pt"
    state = torch.load(path, weights_only=True) if path.exists() else None
    trained = train_digits_model(name, size=32, seed=0, split=split, state_dict=state)
    assert trained.accuracy > 0.9, f"{name} reached only {trained.accuracy:.3f} on digits"
    if state is None:  # cache only a model that passed
        torch.save(trained.model.state_dict(), path)
    return trained


@pytest.fixture(scope="session")
def digits_resnet18(request):
    """Zoo resnet18 (10 classes) trained on digits 32x32: TrainedModel(name, model, accuracy, split)."""
    return _trained(request, "resnet18")


@pytest.fixture(scope="session")
def digits_preact_resnet18(request):
    """Zoo preact_resnet18 (a second family: BN-ReLU-conv blocks) trained on digits 32x32."""
    return _trained(request, "preact_resnet18")


@pytest.fixture(scope="session")
def replace_with_other_network():
    """``replace(path)``: put another valid network in ``path`` (every weight of its first
    convolution negated), as a user who swaps a variant's model file would; returns its sha256."""

    def replace(path):
        import onnx
        from onnx import numpy_helper

        from deploykit.fileio import sha256_file

        model = onnx.load(str(path))
        inits = {init.name: init for init in model.graph.initializer}
        conv = next(n for n in model.graph.node if n.op_type == "Conv" and n.input[1] in inits)
        weight = inits[conv.input[1]]
        weight.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(weight), weight.name))
        onnx.save(model, str(path))
        return sha256_file(path)

    return replace
