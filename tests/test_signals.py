"""SIGTERM and kill -9 during a repository write, with real processes and real signals.

SIGTERM ends a run like Ctrl+C (scratch removed, exit 143); kill -9 cannot be handled, so what
it leaves is found (its writer's pid is gone) by `repo check` and removed by the next write.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from deploykit.fileio import scratch_directory, stale_scratch, sweep_scratch

ROOT = Path(__file__).resolve().parents[1]

# A zoo model whose forward sleeps once a scratch folder is open: the run is caught inside its write.
DRIVER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from torch import nn
    from deploykit.zoo import Preprocessing, list_models, register_model

    SLEEP = float(sys.argv[1])
    REPO = Path(sys.argv[sys.argv.index("--repo") + 1])

    def writing() -> bool:  # a hidden scratch folder is open: the run is inside its write
        return REPO.is_dir() and any(p.name.startswith(".") for p in REPO.iterdir())

    class Slow(nn.Module):
        def __init__(self, num_classes=1000):
            super().__init__()
            self.fc = nn.Linear(3, num_classes)

        def forward(self, x):
            # Python runs here in eager calls and while the exporter traces (non-strict):
            # sleep only once the scratch folder exists, wherever the stage calls forward.
            if writing():
                time.sleep(SLEEP)
            return self.fc(x.mean((2, 3)))

    list_models()

    def dktest_slow(num_classes: int = 1000):
        return Slow(num_classes)

    register_model(family="test", year=2024, paper="test", input_size=32, preprocessing=Preprocessing(36, 32))(dktest_slow)
    from deploykit.cli import main

    sys.argv = ["deploykit", *sys.argv[2:]]
    main()
    """
)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def _start(tmp_path: Path, sleep: float, *args: str) -> subprocess.Popen:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    return subprocess.Popen(
        [sys.executable, str(driver), str(sleep), *args],
        env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _hidden(repo: Path) -> list[str]:
    return sorted(p.name for p in repo.iterdir() if p.name.startswith(".")) if repo.exists() else []


def _wait_for_scratch(proc: subprocess.Popen, repo: Path, kind: str, seconds: float = 240) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [name for name in _hidden(repo) if f".{kind}-{proc.pid}-" in name]
        if found:
            return found[0]
        if proc.poll() is not None:
            pytest.fail(f"the run ended before writing its scratch folder: {proc.communicate()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"no {kind} scratch folder appeared in {repo}")


def _export(tmp_path: Path, repo: Path, sleep: float = 0) -> subprocess.CompletedProcess:
    proc = _start(tmp_path, sleep, "export", "dktest_slow", "--repo", str(repo))
    out, err = proc.communicate(timeout=600)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.mark.slow
def test_sigterm_during_export_removes_the_scratch_and_exits_143(tmp_path):
    repo = tmp_path / "models"
    proc = _start(tmp_path, 120, "export", "dktest_slow", "--repo", str(repo))
    scratch = _wait_for_scratch(proc, repo, "export")
    assert scratch.startswith(".dktest_slow_onnx_fp32.export-")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, (out, err)
    assert "Traceback" not in err
    assert not repo.exists() or sorted(os.listdir(repo)) == []  # nothing left, not even the scratch


@pytest.mark.slow
def test_kill_9_leaves_scratch_that_repo_check_reports_and_the_next_write_sweeps(tmp_path):
    from click.testing import CliRunner

    from deploykit.cli import cli

    repo = tmp_path / "models"
    first = _export(tmp_path, repo)
    assert first.returncode == 0, first.stderr
    variant = repo / "dktest_slow_onnx_fp32"
    proc = _start(tmp_path, 120, "export", "dktest_slow", "--repo", str(repo))
    scratch = _wait_for_scratch(proc, repo, "export")
    proc.kill()
    proc.wait(timeout=60)
    assert _hidden(repo) == [scratch]  # kill -9 cannot be handled: the folder stays
    assert [p.name for p in stale_scratch(repo)] == [scratch]  # its writer is gone

    result = CliRunner().invoke(cli, ["repo", "check", "--repo", str(repo), "--format", "json"])
    report = json.loads(result.output)
    assert [s["name"] for s in report["stale_scratch"]] == [scratch] and report["warnings"] >= 1
    assert result.exit_code == 0  # a warning: Triton skips hidden folders
    strict = CliRunner().invoke(cli, ["repo", "check", "--repo", str(repo), "--strict"])
    assert strict.exit_code == 1 and "killed deploykit run" in " ".join(strict.output.split())

    again = _export(tmp_path, repo)  # the next write sweeps it
    assert again.returncode == 0, again.stderr
    assert _hidden(repo) == [] and (variant / "deploykit.json").is_file()


@pytest.mark.slow
def test_sigterm_during_quantize_removes_the_scratch_and_exits_143(tmp_path):
    pytest.importorskip("modelopt")
    repo = tmp_path / "models"
    assert _export(tmp_path, repo).returncode == 0
    proc = _start(tmp_path, 0, "quantize", "dktest_slow", "--precision", "fp16", "--repo", str(repo))
    _wait_for_scratch(proc, repo, "quantize")
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, (out, err)
    assert sorted(os.listdir(repo)) == ["dktest_slow_onnx_fp32"]


def test_sweep_removes_only_scratch_whose_writer_is_gone(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    (tmp_path / f".m_onnx_fp32.export-{pid}-abc.tmp").mkdir()
    (tmp_path / f".deploykit.json.write-{pid}-x1.tmp").write_text("{")
    (tmp_path / f".kept_onnx_fp32.old-{pid}").mkdir()  # killed between the two renames: put back
    (tmp_path / ".user_notes").mkdir()  # not deploykit's: never touched
    with scratch_directory(tmp_path, "live_onnx_fp32", "export") as live:  # this process: alive
        assert sorted(p.name for p in stale_scratch(tmp_path)) == sorted(
            [f".m_onnx_fp32.export-{pid}-abc.tmp", f".deploykit.json.write-{pid}-x1.tmp", f".kept_onnx_fp32.old-{pid}"]
        )
        sweep_scratch(tmp_path)
        assert live.is_dir()
    assert sorted(os.listdir(tmp_path)) == [".user_notes", "kept_onnx_fp32"]
