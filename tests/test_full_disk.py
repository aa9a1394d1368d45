"""A full disk and a read-only repository, for real: a 1 MiB tmpfs (filled, or remounted
read-only) in a private mount namespace, and the real CLI in a subprocess.

Export on a full disk and `parity --write` on a full disk end in one error line and a hint,
with nothing partial left; parity on a read-only repository is refused before any work (or
runs with --no-write).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from test_signals import DRIVER, _env

# $1: the mount point, $2: a repository to copy onto it; MODE: full | ro. Prints the listing after.
_SETUP = """
mount -t tmpfs -o size=1m tmpfs "$1" || exit 77
cp -r "$2" "$1/models" || exit 78
case "$MODE" in
  full) dd if=/dev/zero of="$1/filler" bs=4k 2>/dev/null ;;
  ro) mount -o remount,ro "$1" || exit 77 ;;
esac
shift 2
"$@"; rc=$?
(cd "$MNT/models" && find . | sort | sed 's/^/listing: /')
exit $rc
"""


def _in_small_mount(tmp_path: Path, mode: str, repo: Path, *args: str) -> subprocess.CompletedProcess:
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux) to mount a small tmpfs")
    mnt = tmp_path / f"small-{mode}"
    mnt.mkdir(parents=True)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    command = [sys.executable, str(driver), "0", *args, "--repo", f"{mnt}/models"]
    proc = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", _SETUP, "sh", str(mnt), str(repo), *command],
        capture_output=True, text=True, timeout=600, env={**_env(), "MNT": str(mnt), "MODE": mode},
    )  # fmt: skip
    if proc.returncode == 77 or "unshare failed" in proc.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()[:200]}")
    return proc


def _listing(proc: subprocess.CompletedProcess) -> list[str]:
    return sorted(line.removeprefix("listing: ") for line in proc.stdout.splitlines() if line.startswith("listing: "))


def _errors(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(("error:", "hint:"))]


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A repository holding dktest_slow_onnx_fp32 (exported through the same driver)."""
    root = tmp_path_factory.mktemp("exported")
    driver = root / "driver.py"
    driver.write_text(DRIVER)
    repo = root / "models"
    done = subprocess.run(
        [sys.executable, str(driver), "0", "export", "dktest_slow", "--repo", str(repo)],
        capture_output=True, text=True, timeout=600, env=_env(),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return repo


@pytest.mark.slow
def test_export_on_a_full_disk_is_one_error_line_and_leaves_nothing(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    proc = _in_small_mount(tmp_path, "full", empty, "export", "dktest_slow")
    assert proc.returncode == 1, proc.stderr
    assert "error: no space left on the device of" in proc.stderr and "nothing was written" in proc.stderr
    assert len(_errors(proc.stderr)) == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert _listing(proc) == ["."]  # no variant, no scratch folder


@pytest.mark.slow
def test_parity_write_on_a_full_disk_shows_the_results_and_says_the_verdict_was_not_recorded(tmp_path, exported):
    before = (exported / "dktest_slow_onnx_fp32" / "deploykit.json").read_text()
    proc = _in_small_mount(tmp_path, "full", exported, "parity", "dktest_slow", "--limit", "2", "--format", "json")
    assert proc.returncode == 1, proc.stderr
    report = json.loads(proc.stdout[: proc.stdout.index("listing: ")])  # the results, shown
    (result,) = report["results"]
    assert result["status"] == "pass" and result["sidecar_key"] is None
    assert "No space left on device" in result["not_recorded"]
    assert _errors(proc.stderr) == [
        f"error: the verdict of dktest_slow_onnx_fp32@onnxruntime was {result['not_recorded']}",
        "hint: free space or make the repository writable and run again, or pass --no-write",
    ]
    assert "Traceback" not in proc.stderr
    assert not any(".tmp" in line for line in _listing(proc))  # no temporary sidecar left
    assert json.loads(before).get("parity_checks") is None  # (the copy on the tmpfs was not changed)


@pytest.mark.slow
def test_parity_on_a_read_only_repository_is_refused_before_any_work_or_runs_with_no_write(tmp_path, exported):
    proc = _in_small_mount(tmp_path, "ro", exported, "parity", "dktest_slow", "--limit", "2")
    assert proc.returncode == 2, proc.stderr
    assert "cannot record the parity verdict" in proc.stderr and "--no-write" in proc.stderr
    assert len(_errors(proc.stderr)) == 2 and "Traceback" not in proc.stderr
    assert "PASS" not in proc.stdout  # refused before the reference or any variant ran
    ok = _in_small_mount(tmp_path / "again", "ro", exported, "parity", "dktest_slow", "--limit", "2", "--no-write")
    assert ok.returncode == 0, ok.stderr
    assert "PASS" in ok.stdout

