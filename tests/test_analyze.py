"""Per-layer analysis: the lecture's tables, torchvision's published totals, the CLI contract."""

from __future__ import annotations

import csv
import functools
import io
import json
import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from deploykit.analyze import (
    KINDS,
    LayerStats,
    ModelStats,
    analyze_model,
    parse_input_size,
    summarize_zoo,
    write_zoo_catalog,
    zoo_catalog,
)
from deploykit.cli import cli
from deploykit.errors import UsageError
from deploykit.zoo import get_card, get_model, list_models


@functools.cache
def stats_of(name: str, size=None, all_layers: bool = False) -> ModelStats:
    return analyze_model(name, size, all_layers=all_layers)


def run_cli(*args: str):
    return CliRunner().invoke(cli, list(args))


def kib(row: LayerStats) -> float:
    return row.activation_bytes / 1024


# --------------------------------------------------------------------------- the lecture's AlexNet


def test_alexnet_reproduces_the_lecture_table():
    stats = stats_of("alexnet", 227)
    rows = stats.layers
    assert [r.kind for r in rows] == [
        "conv", "pool", "conv", "pool", "conv", "conv", "conv", "pool",
        "flatten", "linear", "linear", "linear",
    ]
    conv1, pool1, conv2, pool2, conv3, conv4, conv5, pool5, flat, fc6, fc7, fc8 = rows
    # (row, out shape, KiB, params, MACs) -- the lecture's Figure 8.1 with its slips fixed
    expected = [
        (conv1, (64, 56, 56), 784, 23_296, 72_855_552),
        (pool1, (64, 27, 27), 182.25, 0, None),
        (conv2, (192, 27, 27), 546.75, 307_392, 223_948_800),
        (pool2, (192, 13, 13), 126.75, 0, None),
        (conv3, (384, 13, 13), 253.5, 663_936, 112_140_288),
        (conv4, (256, 13, 13), 169, 884_992, 149_520_384),  # the slide says 145 M
        (conv5, (256, 13, 13), 169, 590_080, 99_680_256),
        (pool5, (256, 6, 6), 36, 0, None),
        (flat, (9216,), 36, 0, 0),
        (fc6, (4096,), 16, 37_752_832, 37_748_736),  # params include the bias
        (fc7, (4096,), 16, 16_781_312, 16_777_216),
        (fc8, (1000,), 1000 * 4 / 1024, 4_097_000, 4_096_000),
    ]
    for row, shape, mem_kib, params, macs in expected:
        assert row.out_shape == shape, row.name
        assert kib(row) == pytest.approx(mem_kib), row.name
        assert row.params == params, row.name
        if macs is not None:
            assert row.macs == macs, row.name
    assert conv1.in_shape == (3, 227, 227)
    assert (conv1.kernel, conv1.stride, conv1.padding, conv1.filters) == ((11, 11), (4, 4), (2, 2), 64)
    assert (pool1.kernel, pool1.stride) == ((3, 3), (2, 2))
    # The lecture rounds: 307 k, 224 M, 664 k, 112 M, 885 k, 150 M, 590 k, 100 M, 37.7 M ...
    assert round(conv4.macs / 1e6, 1) == 149.5
    assert round(fc7.params / 1e6, 1) == 16.8 and round(fc8.params / 1e6, 1) == 4.1
    # ReLU and Dropout were folded into the rows they follow, not dropped or double-counted.
    assert "features.1" in conv1.folded
    assert stats.totals["params"] == 61_100_840


def test_googlenet_stem_sums_to_the_lecture_totals():
    rows = stats_of("googlenet", 224).layers[:5]  # conv1, maxpool1, conv2, conv3, maxpool2
    assert [r.kind for r in rows] == ["conv", "pool", "conv", "conv", "pool"]
    assert rows[0].in_shape == (3, 224, 224) and rows[-1].out_shape == (192, 28, 28)
    assert [kib(r) for r in rows] == [3136, 784, 784, 2352, 588]
    assert round(sum(r.activation_bytes for r in rows) / 2**20, 1) == 7.5
    # 481 M: the slide's rows (the slide's total says 418), pooling windows included.
    macs = sum(r.macs for r in rows)
    assert macs == 480_836_608 and round(macs / 1e6) == 481
    # 124 k: the lecture counts conv weights; the BatchNorm params (640) fold into those rows.
    assert sum(r.params for r in rows) == 124_096 + 640
    stem_all = stats_of("googlenet", 224, all_layers=True).layers[:11]
    assert sum(r.params for r in stem_all if r.kind == "conv") == 124_096


def test_same_shape_pool_on_a_branch_input_is_its_own_row():
    # GoogLeNet's branch4 max pool keeps 28x28 but reads the module input, not the last row.
    rows = {r.name: r for r in stats_of("googlenet", 224).layers}
    pool = rows["inception3a.branch4.0"]
    assert pool.kind == "pool" and pool.in_shape == pool.out_shape == (192, 28, 28)
    assert rows["inception3a.cat"].out_shape == (256, 28, 28)


# --------------------------------------------------------------------------- totals vs torchvision


@pytest.mark.parametrize("name", list_models())
def test_totals_count_every_param_once_and_match_torchvision(name):
    stats = stats_of(name, 224)
    with torch.device("meta"):
        model = get_model(name)
    assert stats.totals["params"] == sum(p.numel() for p in model.parameters())
    assert sum(r.params for r in stats.layers) == stats.totals["params"]
    assert stats.totals["macs"] == sum(r.macs for r in stats.layers)
    card = get_card(name)
    if card.torchvision_name:
        from torchvision.models import get_model_weights

        meta = get_model_weights(card.torchvision_name).DEFAULT.meta
        assert stats.totals["params"] == meta["num_params"]
        # torchvision's "GFLOPS" are multiply-accumulates at 224x224.
        assert stats.totals["macs"] / 1e9 == pytest.approx(meta["_ops"], rel=0.01)


def test_all_layers_shows_elementwise_rows_with_the_same_params_and_macs():
    folded = stats_of("resnet18", 64)
    every = stats_of("resnet18", 64, all_layers=True)
    assert len(every.layers) > len(folded.layers)
    assert "other" in {r.kind for r in every.layers} - {r.kind for r in folded.layers}
    assert every.totals["params"] == folded.totals["params"]
    assert every.totals["macs"] == folded.totals["macs"]
    names = [r.name for r in every.layers]
    assert "bn1" in names and "layer1.0.add" in names  # module and residual `+=`
    conv1 = folded.layers[0]
    assert conv1.name == "conv1" and conv1.params == 64 * 3 * 7 * 7 + 2 * 64  # BN folded in
    assert conv1.folded == ("bn1", "relu")


def test_shares_say_where_params_and_compute_are():
    vgg = stats_of("vgg16", 224).totals
    resnet = stats_of("resnet50", 224).totals
    assert vgg["fc_params_share"] > 0.85 > 0.1 > resnet["fc_params_share"]
    assert vgg["conv_macs_share"] > 0.98 and resnet["conv_macs_share"] > 0.98
    assert vgg["peak_activation_bytes"] == 64 * 224 * 224 * 4
    assert vgg["activation_bytes"] == sum(r.activation_bytes for r in stats_of("vgg16", 224).layers)


# --------------------------------------------------------------------------- any nn.Module


class _Branchy(nn.Module):
    """A user model with container-level functional ops and a parameter of its own."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 8, 1)
        self.scale = nn.Parameter(torch.ones(16, 1, 1))
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        y = torch.cat([torch.relu(self.a(x)), self.b(x)], dim=1) * self.scale
        y = nn.functional.max_pool2d(y, 2)
        return self.fc(torch.flatten(y, 1))


def test_user_module_on_cpu_is_analyzed_without_touching_it():
    model = _Branchy().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    stats = analyze_model(model, 8)
    assert stats.model == "_Branchy" and stats.input_shape == (3, 8, 8)
    assert stats.totals["params"] == sum(p.numel() for p in model.parameters())
    assert model.training and all(p.device.type == "cpu" for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    kinds = {r.name: r.kind for r in stats.layers}
    assert kinds["cat"] == "other" and kinds["max_pool2d"] == "pool" and kinds["flatten"] == "flatten"
    assert kinds["a"] == "conv" and kinds["fc"] == "linear"
    rows = {r.name: r for r in stats.layers}
    assert rows["max_pool2d"].out_shape == (16, 4, 4) and rows["max_pool2d"].macs == 16 * 4 * 4 * 4
    assert rows["fc"].macs == 256 * 10
    assert rows["max_pool2d"].kernel == (2, 2) and rows["max_pool2d"].stride == (2, 2)
    # The container's own parameter is credited to the op that uses it (`* self.scale`), which
    # is element-wise and folds into the concat row.
    assert rows["cat"].params == 16 and rows["cat"].folded == ("mul",)
    assert sum(r.params for r in stats.layers) == stats.totals["params"]


def test_modules_the_forward_never_runs_are_still_counted():
    with torch.device("meta"):
        model = get_model("googlenet", aux_logits=True)
    stats = analyze_model(model, 224)
    aux = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("aux1", "aux2")))
    assert stats.totals["params"] == sum(p.numel() for p in model.parameters())
    assert stats.totals["params_not_run"] == aux > 0


def test_user_module_on_meta_and_non_square_input():
    with torch.device("meta"):
        model = get_model("resnet18", num_classes=10)
    stats = analyze_model(model, (3, 64, 48))
    assert stats.layers[0].out_shape == (64, 32, 24)
    assert stats.layers[-1].out_shape == (10,)


# --------------------------------------------------------------------------- bad input


def test_input_too_small_names_the_layer():
    with pytest.raises(UsageError) as exc:
        analyze_model("vgg16", 16)
    assert exc.value.message == (
        "input 16x16 is too small for vgg16: features.30 (MaxPool2d) would output 0x0"
    )
    with pytest.raises(UsageError, match=r"features\.5 \(MaxPool2d\) would output 0x0"):
        analyze_model("alexnet", 16)


def test_a_shape_error_in_a_user_module_is_a_usage_error_naming_the_layer():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 30 * 30, 10))
    assert analyze_model(model, 32).layers[-1].out_shape == (10,)
    with pytest.raises(UsageError, match=r"does not fit Sequential: 2 \(Linear\) failed"):
        analyze_model(model, 64)


@pytest.mark.parametrize("size", [-3, 0, 2.5, True, "224", (3, 224), (3, 0, 224)])
def test_bad_sizes_are_usage_errors(size):
    with pytest.raises(UsageError):
        analyze_model("resnet18", size)


def test_parse_input_size():
    assert parse_input_size(None) is None
    assert parse_input_size("227") == 227
    assert parse_input_size("224x192") == (3, 224, 192)
    assert parse_input_size("1x32x32") == (1, 32, 32)
    for bad in ["-3", "2.5", "abc", "0", "", "1x2x3x4"]:
        with pytest.raises(UsageError):
            parse_input_size(bad)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["vgg16", "--input-size", "16"], "features.30 (MaxPool2d) would output 0x0"),
        (["vgg16", "--input-size", "-3"], "must be a positive integer"),
        (["vgg16", "--input-size", "2.5"], "must be a positive integer"),
        (["vgg61"], "did you mean"),
        (["alexnet", "vgg16", "--plot", "x.png"], "--plot draws one model"),
        (["alexnet", "--plot", "x.jpg"], "chart format"),
    ],
)
def test_cli_bad_input_exits_2_without_traceback(args, needle):
    result = run_cli("analyze", *args)
    assert result.exit_code == 2, result.output
    assert needle in result.output
    assert result.output.startswith("error: ")
    assert "Traceback" not in result.output


# --------------------------------------------------------------------------- output formats


def test_json_is_the_contract():
    result = run_cli("analyze", "alexnet", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert set(doc) == {"model", "input_shape", "layers", "totals"}
    assert doc["model"] == "alexnet" and doc["input_shape"] == [3, 227, 227]
    keys = {"name", "kind", "in_shape", "out_shape", "kernel", "stride", "padding", "params",
            "macs", "activation_bytes"}
    for layer in doc["layers"]:
        assert set(layer) == keys
        assert layer["kind"] in KINDS
        for k in ("params", "macs", "activation_bytes"):
            assert type(layer[k]) is int
    assert {"params", "macs", "activation_bytes"} <= set(doc["totals"])
    assert all(type(doc["totals"][k]) is int for k in ("params", "macs", "activation_bytes"))
    assert doc["layers"][0]["out_shape"] == [64, 56, 56] and doc["layers"][0]["kernel"] == [11, 11]
    assert doc == stats_of("alexnet").to_dict()


def test_csv_and_markdown_render_the_same_rows():
    stats = stats_of("alexnet")
    result = run_cli("analyze", "alexnet", "--format", "csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.output)))
    assert len(rows) == len(stats.layers)
    assert rows[0]["out_shape"] == "64x56x56" and int(rows[0]["macs"]) == 72_855_552
    assert sum(int(r["params"]) for r in rows) == 61_100_840
    md = run_cli("analyze", "alexnet", "--format", "markdown").output
    assert "| features.8 | conv | 384x13x13 | 256 | 3 | 1 | 1 | 256x13x13 | 169.0 | 884,992 | 149.5 |" in md
    assert "**61,100,840**" in md


def test_table_shows_rows_and_totals():
    result = run_cli("analyze", "alexnet", "--input-size", "227")
    assert result.exit_code == 0, result.output
    assert "72.9" in result.output and "37,752,832" in result.output and "61,100,840" in result.output
    assert "flatten" in result.output and "…" not in result.output  # not cropped in a pipe


def test_compare_prints_side_by_side_totals():
    result = run_cli("analyze", "vgg16", "resnet18", "--compare")
    assert result.exit_code == 0, result.output
    for text in ("vgg16", "resnet18", "Params in FC layers", "MACs in conv layers",
                 "Peak activation", "Total activations", "138.4", "15.48"):
        assert text in result.output
    doc = json.loads(run_cli("analyze", "vgg16", "resnet18", "--compare", "--format", "json").output)
    assert [d["model"] for d in doc] == ["vgg16", "resnet18"]
    assert doc[0]["totals"] == stats_of("vgg16").totals


@pytest.mark.slow
def test_plot_writes_a_png_atomically(tmp_path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "alexnet.png"
    result = run_cli("analyze", "alexnet", "--plot", str(out), "--format", "csv")
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in tmp_path.iterdir()] == ["alexnet.png"]  # no temp file left


def test_summarize_zoo_matches_analyze():
    entries = summarize_zoo(["alexnet", "resnet18"])
    assert [e.name for e in entries] == ["alexnet", "resnet18"]
    assert entries[0].input_size == 227
    assert entries[0].macs == stats_of("alexnet").totals["macs"]
    assert entries[1].params == 11_689_512 and entries[1].family == "resnet"


@pytest.mark.slow
def test_packaged_catalog_equals_a_live_analysis_of_every_model(tmp_path):
    live = summarize_zoo()
    assert zoo_catalog() == live, (
        "deploykit/data/zoo_catalog.json is stale: regenerate it with "
        'python3 -c "from deploykit.analyze import write_zoo_catalog; write_zoo_catalog()"'
    )
    # The writer round-trips what summarize_zoo computes.
    written = write_zoo_catalog(tmp_path / "catalog.json", entries=live)
    assert [d["name"] for d in json.loads(written.read_text())] == [e.name for e in live]


def test_models_command_answers_without_importing_torch():
    code = (
        "import sys\n"
        "from deploykit.cli import cli\n"
        "try:\n"
        "    cli.main(args=['models', '--format', 'json'], prog_name='deploykit')\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "heavy = [m for m in ('torch', 'torchvision', 'onnx') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert [d["name"] for d in json.loads(proc.stdout)] == [e.name for e in zoo_catalog()]


def test_models_command_lists_the_zoo():
    result = run_cli("models", "--format", "json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert [d["name"] for d in doc] == list_models()
    by_name = {d["name"]: d for d in doc}
    assert by_name["vgg16"]["params"] == 138_357_544
    assert by_name["alexnet"]["year"] == 2012
