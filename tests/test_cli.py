"""CLI-wide contracts: exit codes, machine-readable errors, nothing left behind by a failure."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from deploykit.cli import cli


def run_cli(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_ctrl_c_exits_130_with_one_line():
    from deploykit.analyze import zoo_catalog

    names = [e.name for e in zoo_catalog()]  # the whole zoo: seconds of work to interrupt
    proc = subprocess.Popen(
        [sys.executable, "-m", "deploykit", "analyze", *names, *names, "--format", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # A background job inherits SIGINT ignored, and Python then keeps ignoring it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    time.sleep(1.5)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "error: interrupted" in err
    assert "Traceback" not in err


def test_json_format_errors_are_also_a_json_object_on_stdout():
    result = run_cli("analyze", "nosuch_model", "--format", "json")
    assert result.exit_code == 2
    assert json.loads(result.stdout) == {
        "error": "unknown model 'nosuch_model'", "hint": "see `deploykit models`", "exit_code": 2,
    }  # fmt: skip
    assert "error: unknown model 'nosuch_model'" in result.stderr
    # click's own usage errors too, and --format=json spelled with '='
    result = run_cli("models", "--format=json", "--bogus")
    assert result.exit_code == 2
    doc = json.loads(result.stdout)
    assert doc["exit_code"] == 2 and "--bogus" in doc["error"]
    # without --format json stdout stays empty
    result = run_cli("analyze", "nosuch_model")
    assert result.exit_code == 2 and result.stdout == ""


def test_failed_report_leaves_no_empty_out_folder(tmp_path):
    from deploykit.bench import BenchConfig, BenchResult, BenchRun

    run = BenchRun(
        (BenchResult(config=BenchConfig(model="resnet18", backend="torch", precision="int8"),
                     status="skipped", reason="torch on cpu runs fp32, not int8"),),
        {"cpu_model": "Test CPU"}, "2026-01-01T00:00:00+00:00",
    )  # fmt: skip
    results = tmp_path / "cpu.json"
    results.write_text(run.to_json())
    out = tmp_path / "report"
    result = run_cli("report", str(results), "--out", str(out), "--models", "nosuch_model")
    assert result.exit_code == 2, result.output
    assert not out.exists()
    # a folder that was there before stays
    out.mkdir()
    assert run_cli("report", str(results), "--out", str(out), "--models", "nosuch_model").exit_code == 2
    assert out.is_dir()


@pytest.mark.slow
def test_bench_that_measured_nothing_exits_nonzero(tmp_path):
    from deploykit.runtimes import get_backend

    backend = get_backend("tensorrt")
    if backend.unavailable_reason() is None and "cuda" in backend.devices:
        pytest.skip("TensorRT runs here")
    result = run_cli("bench", "resnet18", "--backend", "tensorrt", "--batch", "1", "--no-isolate",
                     "--repo", str(tmp_path / "models"), "--format", "json")
    assert result.exit_code == 1, result.output
    assert [r["status"] for r in json.loads(result.stdout)["results"]] == ["skipped"]
    assert "were skipped: nothing was measured" in result.stderr


def test_non_finite_weights_are_bad_input(tmp_path):
    import torch

    from deploykit.checkpoints import read_checkpoint
    from deploykit.errors import UsageError
    from deploykit.zoo import get_model

    state = get_model("resnet18", num_classes=10).state_dict()
    state["fc.weight"][0, 0] = float("nan")
    state["layer1.0.conv1.weight"][0, 0, 0, 0] = float("inf")
    path = tmp_path / "diverged.pt"
    torch.save(state, path)
    with pytest.raises(UsageError, match=r"the weights contain NaN/inf \(layer1.0.conv1.weight, fc.weight\)"):
        read_checkpoint(path)
    result = run_cli("bench", "resnet18", "--backend", "torch", "--num-classes", "10",
                     "--weights", str(path), "--repo", str(tmp_path / "models"))
    assert result.exit_code == 2, result.output
    assert "the weights contain NaN/inf" in result.stderr and "Traceback" not in result.output


def test_the_command_skips_the_interpreter_teardown_but_keeps_exit_codes_and_output():
    """main() ends with os._exit after flushing (deploykit.cli._leave): the JSON on a pipe is
    whole, a user mistake still exits 2 with its message, and atexit handlers still run."""
    code = (
        "import atexit, sys; from deploykit.cli import main; "
        "atexit.register(lambda: print('atexit ran', file=sys.stderr)); import torch; main()"
    )
    ok = subprocess.run([sys.executable, "-c", code, "models", "--format", "json"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    rows = json.loads(ok.stdout)  # a 20 kB document through a pipe: flushed before the process ended
    assert len(rows) >= 20 and "atexit ran" in ok.stderr
    bad = subprocess.run([sys.executable, "-c", code, "export", "nosuch"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "unknown model 'nosuch'" in bad.stderr and "atexit ran" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_an_interrupt_while_the_cli_loads_exits_130_without_a_traceback():
    """The console script (deploykit._entry) imports the CLI inside a handler; here the import
    itself is interrupted, as Ctrl+C in the first tenth of a second does."""
    code = (
        "import sys, importlib.abc\n"
        "class Stop(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'deploykit.cli': raise KeyboardInterrupt\n"
        "sys.meta_path.insert(0, Stop())\n"
        "from deploykit._entry import main\n"
        "main()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, "models"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 130 and "interrupted" in proc.stderr
    assert "Traceback" not in proc.stderr
