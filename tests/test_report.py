"""Report: Markdown + PNG charts from a small bench JSON, and clear errors for bad files."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from deploykit import bench
from deploykit.bench import BenchConfig, BenchResult, BenchRun
from deploykit.cli import cli

pytest.importorskip("matplotlib")

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _result(model, backend, precision, batch, ms, **kw) -> BenchResult:
    lat = bench.latency_statistics(
        [[ms / 1000] * 3, [ms * 1.01 / 1000] * 3], batch=batch, stable=True, tolerance=0.05, timed_seconds=1.0, warmup=1
    )
    return BenchResult(config=BenchConfig(model=model, backend=backend, precision=precision, batch=batch, **kw),
                       status="ok", latency=lat, macs_per_image=1_000_000_000)


def _run(gpu: str | None = None) -> BenchRun:
    results = []
    device = "cuda" if gpu else "cpu"
    for model, base in (("resnet18", 10.0), ("mobilenet_v2", 6.0)):
        for backend, precision, speed in (("torch", "fp32", 1.0), ("onnxruntime", "fp32", 0.5), ("openvino", "int8", 0.3)):
            for batch in (1, 8):
                if gpu and backend != "torch":
                    continue
                results.append(_result(model, backend, precision, batch, base * speed * batch ** 0.8, device=device))
    results.append(BenchResult(config=BenchConfig(model="resnet18", backend="torch", precision="int8"),
                               status="skipped", reason="torch on cpu runs fp32, not int8"))
    machine = {"cpu_model": "Test CPU", "logical_cpus": 2, "cpu_flags": ["avx2"], "gpus": [{"name": gpu}] if gpu else [],
               "libraries": {"python": "3.11", "numpy": "2.0"}}
    return BenchRun(tuple(results), machine, "2026-01-01T00:00:00+00:00", notes=("other processes were running",))


@pytest.fixture
def results_files(tmp_path):
    cpu = tmp_path / "cpu.json"
    cpu.write_text(_run().to_json())
    gpu = tmp_path / "gpu.json"
    gpu.write_text(_run(gpu="NVIDIA H100 80GB HBM3").to_json())
    return cpu, gpu


@pytest.mark.slow
def test_report_renders_markdown_and_real_pngs(results_files, tmp_path):
    from deploykit.report import make_report

    out = tmp_path / "report"
    report = make_report(results_files, out, zoo_models=["resnet18", "mobilenet_v2", "vgg16", "alexnet"])
    names = sorted(p.name for p in report.charts)
    assert names == ["accuracy_vs_gmacs.png", "accuracy_vs_latency.png", "latency_bound.png",
                     "latency_vs_batch.png", "roofline.png", "throughput_vs_batch.png"]
    for chart in report.charts:
        data = chart.read_bytes()
        assert data.startswith(PNG_MAGIC) and len(data) > 10_000  # a drawn chart, not an empty canvas
    md = report.markdown.read_text()
    for name in names:
        assert f"]({name})" in md
    assert report.zoo_rows == 4
    # The trade-off table has the lecture's columns and VGG-16's well-known facts.
    assert "FC share of params" in md and "conv share of MACs" in md
    vgg = next(line for line in md.splitlines() if line.startswith("| vgg16 |"))
    assert "| 138.4 |" in vgg and "| 15.4" in vgg  # 138.4 M params, 15.5 GMACs (15.48)
    assert "| resnet18 | torch/fp32 | 1 | ok |" in md
    assert "other processes were running" in md
    assert "H100 80GB HBM3" in md and "Test CPU" in md


@pytest.mark.slow
def test_report_keeps_other_files_in_the_folder(results_files, tmp_path):
    from deploykit.report import make_report

    out = tmp_path / "existing"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    make_report([results_files[0]], out, zoo_models=["resnet18"])
    assert (out / "keep.txt").read_text() == "mine"
    assert (out / "report.md").is_file()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temporary files left


@pytest.mark.slow
def test_report_cli(results_files, tmp_path):
    out = tmp_path / "cli-report"
    result = CliRunner().invoke(cli, ["report", str(results_files[0]), "--out", str(out), "--models", "resnet18",
                                      "--format", "json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["results"] == len(_run().results) and data["zoo_rows"] == 1
    assert (out / "latency_vs_batch.png").is_file()


def test_report_rejects_bad_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"hello": 1}))
    for path, message in ((bad, "not valid JSON"), (other, "not a deploykit bench result"),
                          (tmp_path / "missing.json", "no such file")):
        result = CliRunner().invoke(cli, ["report", str(path), "--out", str(tmp_path / "r")])
        assert result.exit_code == 2, result.output
        assert message in result.output and "Traceback" not in result.output
