"""The zoo: registry behaviour, torchvision state-dict compatibility, shapes, meta-device builds.

Equivalence tests build torchvision's network on the meta device, materialize it and fill
every parameter *and* BatchNorm statistic with random values (fast, and unlike fresh
BatchNorm statistics it makes eval outputs depend on every tensor), load that state dict
into our network with ``strict=True`` and compare outputs.
"""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torchvision.models as tvm
from torch import nn

from deploykit.errors import UsageError
from deploykit.zoo import get_card, get_model, list_models, register_model

ALL_MODELS = [
    "alexnet", "zfnet",
    "vgg11", "vgg13", "vgg16", "vgg19", "vgg11_bn", "vgg13_bn", "vgg16_bn", "vgg19_bn",
    "googlenet",
    "resnet18", "resnet34", "resnet50", "resnet101", "resnet152",
    "preact_resnet18", "preact_resnet50", "resnext50_32x4d", "wide_resnet50_2",
    "mobilenet_v2", "shufflenet_v2_x1_0",
]  # fmt: skip

TORCHVISION_MODELS = [name for name in ALL_MODELS if name != "zfnet" and "preact" not in name]
SLOW = {"vgg19", "vgg19_bn", "vgg16", "vgg16_bn", "resnet152", "resnet101", "wide_resnet50_2"}
# Models ending in global pooling: any num_classes and 32x32 inputs work.
GLOBAL_POOL = [name for name in ALL_MODELS if get_card(name).global_pool]


def _maybe_slow(names: list[str]) -> list:
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


@torch.no_grad()
def _fill_random(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights with He-like scale and random BatchNorm statistics, in place."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.weight.uniform_(0.5, 1.5, generator=gen)
            module.bias.uniform_(-0.1, 0.1, generator=gen)
            module.running_mean.uniform_(-0.1, 0.1, generator=gen)
            module.running_var.uniform_(0.5, 1.5, generator=gen)
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            bound = math.sqrt(6.0 / (module.weight[0].numel()))
            module.weight.uniform_(-bound, bound, generator=gen)
            if module.bias is not None:
                module.bias.uniform_(-0.1, 0.1, generator=gen)
    return model


def _torchvision_model(name: str, **kwargs) -> nn.Module:
    """torchvision's network (weights=None) materialized on CPU with random values."""
    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore")  # googlenet's init-change FutureWarning
        model = tvm.get_model(name, weights=None, **kwargs)
    return _fill_random(model.to_empty(device="cpu"))


def _ours_from(reference: nn.Module, name: str, **cfg) -> nn.Module:
    """Our network built on the meta device, its tensors taken from ``reference``'s state dict."""
    with torch.device("meta"):
        ours = get_model(name, **cfg)
    ours.load_state_dict(reference.state_dict(), strict=True, assign=True)
    return ours


def _input_size(name: str) -> int:
    # AlexNet at its lecture size; the others end in adaptive pools and take 32x32.
    return 227 if name == "alexnet" else 32


# --- registry ---------------------------------------------------------------------------


def test_list_models_has_the_whole_zoo():
    assert list_models() == sorted(ALL_MODELS)


def test_unknown_model_suggests_close_matches():
    with pytest.raises(UsageError) as info:
        get_model("resnet5")
    assert "resnet5" in info.value.message
    assert "resnet50" in info.value.hint
    with pytest.raises(UsageError):
        get_card("not_a_model")


def test_bad_num_classes_is_a_usage_error():
    with pytest.raises(UsageError):
        get_model("resnet18", num_classes=0)


def test_duplicate_registration_is_an_error():
    list_models()  # make sure every family is registered

    def resnet18(num_classes: int = 1000):  # same name as the zoo's
        return nn.Linear(1, num_classes)

    with pytest.raises(ValueError, match="registered twice"):
        register_model(family="x", year=2000, paper="x")(resnet18)
    assert type(get_model("resnet18")).__name__ == "ResNet"


def test_the_registry_imports_no_family():
    """torchvision's way: families import the registry, the package imports the families."""
    import ast
    from pathlib import Path

    import deploykit.zoo._registry as registry

    tree = ast.parse(Path(registry.__file__).read_text())
    imported = {
        node.module if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, (ast.Import, ast.ImportFrom))
        for alias in node.names
    }
    assert {m for m in imported if m and m.startswith("deploykit")} <= {"deploykit.errors", "deploykit.preprocessing"}
    assert set(ALL_MODELS) == set(list_models())  # importing deploykit.zoo registered every family


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_card_is_complete(name):
    card = get_card(name)
    assert card.name == name
    assert card.family and card.paper
    assert 2012 <= card.year <= 2018
    assert card.input_size == (227 if name == "alexnet" else 224)
    assert card.preprocessing.crop == card.input_size
    assert card.preprocessing.resize == 256
    if name in TORCHVISION_MODELS:
        assert card.torchvision_name == name
        assert card.top1 is not None and 55 < card.top1 < 80
    else:
        assert card.torchvision_name is None and card.top1 is None


def test_published_top1_matches_torchvision_metadata():
    for name in TORCHVISION_MODELS:
        meta = tvm.get_model_weights(name)["IMAGENET1K_V1"].meta
        assert get_card(name).top1 == pytest.approx(meta["_metrics"]["ImageNet-1K"]["acc@1"])


# --- building ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_MODELS)
def test_builds_and_runs_on_meta_device(name):
    """Analysis builds on ``meta``: nothing is allocated, and every op site is its own module."""
    card = get_card(name)
    with torch.device("meta"):
        model = get_model(name).eval()
    tensors = [*model.parameters(), *model.buffers()]
    assert tensors and all(t.is_meta for t in tensors)

    calls: dict[int, int] = {}
    leaves = [m for m in model.modules() if not list(m.children())]
    hooks = [
        m.register_forward_hook(
            lambda mod, i, o: calls.__setitem__(id(mod), calls.get(id(mod), 0) + 1)
        )
        for m in leaves
    ]
    out = model(torch.empty(1, 3, card.input_size, card.input_size, device="meta"))
    for hook in hooks:
        hook.remove()
    assert isinstance(out, torch.Tensor) and out.shape == (1, 1000)
    # No module (a ReLU in particular) runs at two op sites in one forward pass.
    assert max(calls.values()) == 1
    relus = [m for m in leaves if isinstance(m, (nn.ReLU, nn.ReLU6))]
    assert relus and all(calls.get(id(m)) == 1 for m in relus)


@pytest.mark.parametrize("name", TORCHVISION_MODELS)
def test_parameter_count_equals_torchvision(name):
    with torch.device("meta"):
        ours = get_model(name)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reference = (
                tvm.get_model(name, weights=None, aux_logits=False)
                if name == "googlenet"
                else tvm.get_model(name, weights=None)
            )
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in reference.parameters())
    # ... and the number torchvision publishes with its ImageNet weights.
    assert count == tvm.get_model_weights(name)["IMAGENET1K_V1"].meta["num_params"]


# --- torchvision compatibility -----------------------------------------------------------


@pytest.mark.parametrize("name", _maybe_slow(TORCHVISION_MODELS))
def test_torchvision_state_dict_loads_with_identical_outputs(name):
    kwargs = {"aux_logits": True} if name == "googlenet" else {}
    reference = _torchvision_model(name, **kwargs).eval()
    ours = _ours_from(reference, name, **kwargs).eval()
    size = _input_size(name)
    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = reference(x), ours(x)
    assert isinstance(got, torch.Tensor) and got.shape == (2, 1000)
    # Random BatchNorm statistics make the output depend on every tensor; not a constant.
    assert expected.std(dim=1).min() > 1e-3
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_googlenet_has_no_aux_heads_unless_asked():
    with torch.device("meta"):
        plain = get_model("googlenet")
        with_aux = get_model("googlenet", aux_logits=True)
    assert plain.aux1 is None and plain.aux2 is None
    assert not any(key.startswith("aux") for key in plain.state_dict())
    assert any(key.startswith("aux1.") for key in with_aux.state_dict())
    # The deployable model is torchvision's aux-free one, whose weights load into it.
    reference = _torchvision_model("googlenet", aux_logits=False)
    _ours_from(reference, "googlenet")


def test_googlenet_training_outputs_match_torchvision():
    reference = _torchvision_model("googlenet", aux_logits=True).train()
    ours = _ours_from(reference, "googlenet", aux_logits=True)
    # assign=True shares tensors; give ours its own copies (training updates BN statistics).
    ours.load_state_dict({k: v.clone() for k, v in reference.state_dict().items()}, assign=True)
    ours.train()
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    torch.manual_seed(0)
    expected = reference(x)
    torch.manual_seed(0)  # same dropout masks: both draw them in the same order
    got = ours(x)
    assert type(got).__name__ == "GoogLeNetOutputs" and len(got) == 3
    for g, e in zip(got, expected, strict=True):
        torch.testing.assert_close(g, e, rtol=1e-5, atol=1e-5)
    # Eval: one tensor, although the aux heads exist.
    ours.eval()
    with torch.no_grad():
        assert isinstance(ours(x), torch.Tensor)


def test_googlenet_transform_input_matches_torchvision():
    reference = _torchvision_model("googlenet", aux_logits=False, transform_input=True).eval()
    ours = _ours_from(reference, "googlenet", transform_input=True).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)


# --- family specifics --------------------------------------------------------------------


def _meta_shapes(model: nn.Module, size: int) -> dict[str, tuple[int, ...]]:
    """Output shape of every leaf module for one image, computed on the meta device."""
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [
        m.register_forward_hook(lambda mod, i, o, n=name: shapes.__setitem__(n, tuple(o.shape[1:])))
        for name, m in model.named_modules()
        if not list(m.children())
    ]
    model(torch.empty(1, 3, size, size, device="meta"))
    for hook in hooks:
        hook.remove()
    return shapes


def test_alexnet_matches_the_lecture_table_at_227():
    with torch.device("meta"):
        model = get_model("alexnet").eval()
    shapes = _meta_shapes(model, 227)
    assert shapes["features.0"] == (64, 56, 56)  # conv1
    assert shapes["features.2"] == (64, 27, 27)  # pool1
    assert shapes["features.3"] == (192, 27, 27)  # conv2
    assert shapes["features.5"] == (192, 13, 13)  # pool2
    assert [shapes[f"features.{i}"][0] for i in (6, 8, 10)] == [384, 256, 256]
    assert shapes["features.12"] == (256, 6, 6)  # pool5
    assert shapes["flatten"] == (9216,)
    conv1 = model.features[0]
    assert sum(p.numel() for p in conv1.parameters()) == 23_296
    fc6 = model.classifier[1]
    assert sum(p.numel() for p in fc6.parameters()) == 37_752_832


def test_zfnet_follows_the_paper():
    with torch.device("meta"):
        model = get_model("zfnet").eval()
    conv1 = model.features[0]
    assert conv1.kernel_size == (7, 7) and conv1.stride == (2, 2)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    shapes = _meta_shapes(model, 224)
    assert shapes["features.0"] == (96, 110, 110)
    assert shapes["features.2"] == (96, 55, 55)
    assert shapes["features.3"] == (256, 26, 26)
    assert shapes["features.5"] == (256, 13, 13)
    assert shapes["features.12"] == (256, 6, 6)
    assert shapes["flatten"] == (9216,)
    # Real weights: it runs and its classifier takes any num_classes.
    out = get_model("zfnet", num_classes=10).eval()(torch.randn(1, 3, 224, 224))
    assert out.shape == (1, 10) and torch.isfinite(out).all()


def test_vgg_variants_are_rows_of_one_table():
    from deploykit.zoo.vgg import VGG_STAGES

    for variant, depth in (("vgg11", 11), ("vgg13", 13), ("vgg16", 16), ("vgg19", 19)):
        for suffix in ("", "_bn"):
            with torch.device("meta"):
                model = get_model(variant + suffix)
            convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
            linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
            assert len(convs) == sum(VGG_STAGES[variant]) == depth - 3
            assert len(linears) == 3
            has_bn = any(isinstance(m, nn.BatchNorm2d) for m in model.features)
            assert has_bn == (suffix == "_bn")


@pytest.mark.parametrize("name", ["resnet50", "resnext50_32x4d"])
def test_resnet_v1_puts_the_stride_in_the_first_1x1(name):
    with torch.device("meta"):
        v15 = get_model(name)
        v1 = get_model(name, stride_in_1x1=True)
    first = v15.layer2[0]
    assert first.conv1.stride == (1, 1) and first.conv2.stride == (2, 2)
    first = v1.layer2[0]
    assert first.conv1.stride == (2, 2) and first.conv2.stride == (1, 1)
    # Same parameters and keys: v1.5 weights load into v1 (they just compute something else).
    assert {k: v.shape for k, v in v1.state_dict().items()} == {
        k: v.shape for k, v in v15.state_dict().items()
    }
    shapes_v1, shapes_v15 = _meta_shapes(v1, 224), _meta_shapes(v15, 224)
    width = {"resnet50": 128, "resnext50_32x4d": 256}[name]
    # v1 runs the first 1x1 at the reduced resolution, v1.5 at the full one.
    assert shapes_v1["layer2.0.conv1"] == (width, 28, 28)
    assert shapes_v15["layer2.0.conv1"] == (width, 56, 56)
    assert shapes_v1["fc"] == shapes_v15["fc"] == (1000,)


def test_resnet_blocks_carry_shape_facts():
    from deploykit.zoo.resnet import BasicBlock, Bottleneck

    assert BasicBlock.expansion == 1 and Bottleneck.expansion == 4
    with torch.device("meta"):
        r18 = get_model("resnet18")
        r50 = get_model("resnet50", norm_layer=lambda c: nn.GroupNorm(32, c))
        wide = get_model("wide_resnet50_2")
        resnext = get_model("resnext50_32x4d")
    # resnet18: no projection in layer1 (shapes unchanged), one at each later stage's start.
    with_downsample = [n for n, m in r18.named_modules() if n.endswith("downsample")]
    assert with_downsample == ["layer2.0.downsample", "layer3.0.downsample", "layer4.0.downsample"]
    # resnet50's layer1 expands 64 -> 256, so its first block needs a projection too.
    assert r50.layer1[0].downsample is not None and r50.layer1[1].downsample is None
    assert isinstance(r50.layer1[0].bn1, nn.GroupNorm)
    assert resnext.layer1[0].conv2.groups == 32 and resnext.layer1[0].conv2.out_channels == 128
    assert wide.layer1[0].conv2.out_channels == 128 and wide.layer1[0].conv3.out_channels == 256


@pytest.mark.parametrize("name", ["preact_resnet18", "preact_resnet50"])
def test_preact_blocks_are_bn_relu_conv(name):
    with torch.device("meta"):
        model = get_model(name)
    for block in [*model.layer1, *model.layer4]:
        children = [m for n, m in block.named_children() if n != "downsample"]
        # Every conv is preceded by a BN and a ReLU; the block ends on a conv (no post-add ReLU).
        for i, child in enumerate(children):
            if isinstance(child, nn.Conv2d):
                assert isinstance(children[i - 2], nn.BatchNorm2d)
                assert isinstance(children[i - 1], nn.ReLU)
        assert isinstance(children[-1], nn.Conv2d)
    # The stem has no norm; a final BN-ReLU precedes pooling.
    assert [name for name, _ in model.named_children()][:3] == ["conv1", "maxpool", "layer1"]
    assert model.bn_final.num_features == model.fc.in_features


@pytest.mark.parametrize("name", _maybe_slow(GLOBAL_POOL))
def test_ten_classes_at_32x32(name):
    assert name not in {"alexnet", "zfnet"} and not name.startswith("vgg")
    torch.manual_seed(0)
    model = get_model(name, num_classes=10).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, 32, 32))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)
    assert torch.isfinite(out).all()
