"""deploykit's TensorRT code against the real TensorRT Python bindings of each release.

(a) Against the committed snapshots (tests/data/trt_api/, written by tools/trt_api_snapshot.py
    from the real binding wheels): every TensorRT attribute, method (with its arguments),
    property (and property write), enum value and overridden virtual that deploykit's TensorRT
    modules touch exists in every release deploykit supports, unless a version check keeps it
    from that release (how uses are found and what counts as a version check:
    tests/trt_api.py); the ``DataType`` table covers every member of every release.
(b) Where the binding wheels can be fetched and a C compiler exists (once per machine, then
    cached): the snapshots equal what the bindings say; deploykit's ILogger and IProfiler
    subclasses live on the real pybind trampolines and receive calls; and on libraries whose
    entry points return NULL, the first native call gives deploykit's error, not a traceback
    or a crash.
"""

from __future__ import annotations

import ast
import importlib.util
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import trt_api

from deploykit.tensorrt.loading import (
    MIN_TENSORRT,
    TRT_DTYPES,
    TRT_DTYPES_UNSUPPORTED,
    parse_version,
)

ROOT = Path(__file__).resolve().parent.parent
PROBE = Path(__file__).with_name("trt_live_probe.py")
SUPPORTED = [api.version for api in trt_api.supported()]


def _tool():
    spec = importlib.util.spec_from_file_location("trt_api_snapshot", ROOT / "tools" / "trt_api_snapshot.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("trt_api_snapshot", module)
    spec.loader.exec_module(module)
    return module


TOOL = _tool()


def _api(version: str) -> trt_api.Api:
    return next(api for api in trt_api.snapshots() if api.version == version)


# --------------------------------------------------------------------------------------
# (a) the snapshots
# --------------------------------------------------------------------------------------


def test_snapshots_span_what_deploykit_claims():
    versions = [api.version for api in trt_api.snapshots()]
    assert sorted(release.version for release in TOOL.RELEASES) == sorted(versions), "run tools/trt_api_snapshot.py"
    oldest = parse_version(SUPPORTED[0])
    assert oldest[:2] == MIN_TENSORRT, f"the oldest snapshot deploykit supports is {SUPPORTED[0]}, MIN_TENSORRT {MIN_TENSORRT}"
    majors = {parse_version(v)[0] for v in SUPPORTED}
    assert {10, 11} <= majors
    for api in trt_api.snapshots():
        assert api.data["classes"]["Builder"]["members"]["build_serialized_network"]["kind"] == "method"
        assert "HALF" in api.enums["DataType"]


def test_tensorrt_modules_are_found_by_scanning():
    modules = trt_api.trt_modules()
    assert trt_api.loaders(), "no function imports tensorrt and returns it"
    reasons = {m.why for m in modules}
    assert "imports tensorrt" in reasons
    # every module that calls the loader is among them
    for path, tree in trt_api.package_trees().items():
        calls = {trt_api._called_name(n) for n in ast.walk(tree)} & trt_api.loaders()
        if calls:
            assert path in {m.path for m in modules}, path


@pytest.mark.parametrize("version", SUPPORTED)
def test_every_tensorrt_use_exists_in_each_supported_release(version):
    api = _api(version)
    problems, checked = [], 0
    for module in trt_api.trt_modules():
        uses = trt_api.check_module(module, api)
        assert uses, f"{module.relative} ({module.why}): no TensorRT use was resolved"
        lost = trt_api.unresolved(module, uses)
        assert not lost, "TensorRT names the checker could not follow to a type:\n" + "\n".join(lost)
        checked += len(uses)
        problems += [f"{u.where}: {u.what}: {u.problem}" for u in uses if u.problem]
    assert not problems, f"TensorRT {version} lacks what deploykit uses:\n" + "\n".join(problems)
    assert checked > 50


def _snippet(source: str) -> trt_api.TrtModule:
    tree = ast.parse(textwrap.dedent(source))
    return trt_api.TrtModule(trt_api.PACKAGE / "snippet.py", "deploykit.tensorrt.loading", tree, "test")


def _problems(source: str, version: str) -> list[str]:
    return [u.problem for u in trt_api.check_module(_snippet(source), _api(version)) if u.problem]


OLDEST, NEWEST = SUPPORTED[0], SUPPORTED[-1]


@pytest.mark.parametrize(
    "source, version, expected",
    [
        ("def f(trt):\n    trt.BuilderFlag.FP16", NEWEST, "BuilderFlag has no value FP16"),
        ("def f(trt):\n    b = trt.Builder(trt.Logger())\n    b.create_netwrk(0)", OLDEST, "Builder has no create_netwrk"),
        ("def f(trt):\n    b = trt.Builder(trt.Logger())\n    b.create_network(0, 1)", OLDEST, "no overload"),
        ("def f(trt):\n    b = trt.Builder(trt.Logger())\n    b.create_builder_config().nope = 1", OLDEST, "IBuilderConfig has no nope"),
        ("def f(trt, plan):\n    r = trt.Runtime(trt.Logger())\n    e = r.deserialize_cuda_engine(plan)\n    e.num_io_tensors = 2", OLDEST, "read-only"),
        ("def f(trt, plan):\n    r = trt.Runtime(trt.Logger())\n    e = r.deserialize_cuda_engine(plan)\n    e.device_memory_size", NEWEST, "ICudaEngine has no device_memory_size"),
        ("def f(trt):\n    class P(trt.IProfiler):\n        def report_layer_times(self, name, ms):\n            pass", OLDEST, "IProfiler has no report_layer_times"),
        ("def f(trt):\n    trt.Runtime(trt.Builder(trt.Logger()))", OLDEST, "no overload"),
        ("def f(trt, e):\n    c = trt.Runtime(trt.Logger()).deserialize_cuda_engine(e).create_execution_context()\n    c.profiler = trt.Logger()", OLDEST, "takes IProfiler"),
    ],
)
def test_checker_finds_what_a_release_lacks(source, version, expected):
    problems = _problems(source, version)
    assert any(expected in p for p in problems), problems


@pytest.mark.parametrize(
    "source",
    [
        # a version check evaluated per release (deploykit's own helper reads the version)
        "def f(trt):\n    if uses_strongly_typed_flag(trt.__version__):\n        trt.BuilderFlag.FP16",
        "def f(trt):\n    if parse_version(trt.__version__)[0] >= 11:\n        pass\n    else:\n        trt.BuilderFlag.INT8",
        "def f(trt):\n    x = trt.BuilderFlag.FP16 if parse_version(trt.__version__) < (11,) else None",
        # hasattr on a TensorRT value guards that name
        "def f(trt, plan):\n    e = trt.Runtime(trt.Logger()).deserialize_cuda_engine(plan)\n"
        "    if hasattr(e, 'device_memory_size'):\n        e.device_memory_size",
        # a tolerant lookup is not required
        "def f(trt, plan):\n    e = trt.Runtime(trt.Logger()).deserialize_cuda_engine(plan)\n"
        "    getattr(e, 'device_memory_size', None)",
    ],
)
@pytest.mark.parametrize("version", [OLDEST, NEWEST])
def test_version_checks_are_recognised(source, version):
    assert _problems(source, version) == []


def test_a_lost_type_is_reported():
    """A TensorRT-only member reached through something the checker cannot type is named."""
    module = _snippet("def f(trt, make):\n    context = make()\n    context.execute_async_v3(0)")
    lost = trt_api.unresolved(module, trt_api.check_module(module, _api(NEWEST)))
    assert lost == ["deploykit/snippet.py:3: .execute_async_v3"]


def test_an_unguarded_removed_name_fails_only_where_it_is_gone():
    source = "def f(trt):\n    trt.BuilderFlag.FP16"
    assert _problems(source, OLDEST) == []
    assert _problems(source, NEWEST)


@pytest.mark.parametrize("version", SUPPORTED)
def test_dtype_table_covers_every_datatype_member(version):
    members = set(_api(version).enums["DataType"])
    mapped, refused = set(TRT_DTYPES), set(TRT_DTYPES_UNSUPPORTED)
    assert not mapped & refused
    assert members <= mapped | refused, f"DataType members deploykit does not handle: {sorted(members - mapped - refused)}"


def test_dtype_table_names_only_real_members():
    everywhere = set().union(*(set(api.enums["DataType"]) for api in trt_api.supported()))
    assert set(TRT_DTYPES) | set(TRT_DTYPES_UNSUPPORTED) <= everywhere


# --------------------------------------------------------------------------------------
# (b) the real bindings, imported on stand-in libraries
# --------------------------------------------------------------------------------------

LIVE = [release for release in TOOL.RELEASES if release.version in SUPPORTED]


@pytest.fixture(scope="session", params=LIVE, ids=lambda release: release.version)
def bindings(request):
    """A release made importable here (wheel fetched and libraries built once, then cached)."""
    try:
        return TOOL.prepare(request.param)
    except TOOL.Unavailable as exc:
        pytest.skip(f"the real TensorRT bindings cannot be used here: {exc}")


@pytest.fixture(scope="session")
def probe(bindings):
    """tests/trt_live_probe.py run once per release on the real bindings (see its docstring)."""
    env = bindings.env(extra_path=(str(ROOT), str(ROOT / "tools")))
    done = subprocess.run(
        [sys.executable, str(PROBE)], capture_output=True, text=True, env=env, timeout=300, cwd=ROOT
    )
    assert done.returncode == 0, f"the probe ended with {done.returncode} (a signal if negative):\n{done.stderr}"
    assert "Traceback" not in done.stderr and "Exception caught" not in done.stderr, done.stderr
    return json.loads(done.stdout)


def test_snapshot_is_what_the_bindings_say(bindings, probe):
    assert probe["version"] == bindings.release.version
    committed = json.loads(bindings.release.snapshot.read_text())
    committed = {k: v for k, v in committed.items() if k not in ("distribution", "note", "python")}
    assert probe["surface"] == committed, f"{bindings.release.snapshot.name} is stale: run tools/trt_api_snapshot.py"


def test_logger_and_profiler_receive_calls_through_the_trampolines(probe):
    bases = {entry["base"] for entry in probe["factories"]}
    assert {"ILogger", "IProfiler"} <= bases, probe["factories"]
    for entry in probe["factories"]:
        assert entry["is_subclass"], entry
        assert entry["received"] == entry["sent"], entry


def test_cuda_major_read_from_the_installed_bindings(bindings, probe):
    # tensorrt-cu12-bindings / tensorrt-cu13-bindings: the distribution names the CUDA major
    expected = int(bindings.release.distribution.split("-cu", 1)[1].split("-")[0])
    assert probe["cuda_major"] == expected


def test_one_process_logger_on_the_real_trampoline(probe):
    assert probe["logger"] == {"same": True, "errors": ["inside"], "warnings": ["inside-warning"]}


@pytest.mark.parametrize("what", ["builder", "runtime"])
def test_first_native_call_on_null_libraries_is_a_clear_error(bindings, probe, what):
    result = probe["native"][what]
    assert result["exit_code"] == 1, result
    lines = result["stderr"].strip().splitlines()
    assert lines[0] == (
        f"error: TensorRT {bindings.release.version} could not create a {what.capitalize()} "
        "(libnvinfer returned nothing)"
    ), lines
    assert lines[1].startswith("hint: TensorRT needs an NVIDIA GPU"), lines
    assert len(lines) == 2, lines
