"""Build rules around the TensorRT calls: the timing cache from another release, TF32, the math
an engine's "% of peak" uses, and the one process-wide logger.

The TensorRT calls themselves are checked against the real bindings in test_trt_bindings.py;
here a stand-in builder config with IBuilderConfig's documented timing-cache contract
(``create_timing_cache`` returns None for a blob it cannot read; ``set_timing_cache`` returns
False for a cache from another device) drives deploykit's handling of each case.
"""

from __future__ import annotations

import ast
import subprocess
import sys

import pytest
import trt_api

from deploykit.errors import DeployKitError
from deploykit.runtimes.tensorrt_runner import engine_math
from deploykit.tensorrt.build import _trt_timing_cache
from deploykit.tensorrt.loading import Messages, check_cuda_majors, tensorrt_cuda_major
from deploykit.tensorrt.profiles import build_settings

THIS_RELEASE = b"cache written by this TensorRT release"


class StandInConfig:
    """IBuilderConfig's timing-cache methods as TensorRT documents them."""

    def __init__(self, readable=(b"", THIS_RELEASE), same_device=True, broken=False):
        self.readable, self.same_device, self.broken = readable, same_device, broken
        self.attached: list[tuple[bytes, bool]] = []

    def create_timing_cache(self, serialized: bytes):
        if self.broken or bytes(serialized) not in self.readable:
            return None  # TensorRT logs "cannot deserialize" and returns NULL
        return bytes(serialized)

    def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
        assert cache is not None, "deploykit passed None on"
        self.attached.append((cache, ignore_mismatch))
        return self.same_device or cache == b""


SETTINGS = build_settings("fp32", timing_cache="models/.timing.cache")


def test_a_cache_of_this_release_is_reused():
    config, messages = StandInConfig(), Messages()
    assert _trt_timing_cache(config, SETTINGS, THIS_RELEASE, messages) is True
    assert config.attached == [(THIS_RELEASE, False)] and messages.notes == []


def test_a_cache_from_another_release_becomes_a_fresh_cache_with_a_warning():
    config, messages = StandInConfig(), Messages()
    assert _trt_timing_cache(config, SETTINGS, b"cache written by TensorRT 10.3", messages) is False
    assert config.attached == [(b"", False)]
    assert messages.notes == [
        "timing cache models/.timing.cache was written by another TensorRT release: started a new one"
    ]


def test_a_cache_from_another_gpu_is_replaced_with_a_warning():
    config, messages = StandInConfig(same_device=False), Messages()
    assert _trt_timing_cache(config, SETTINGS, THIS_RELEASE, messages) is False
    assert config.attached == [(THIS_RELEASE, False), (b"", False)]
    assert "does not match this GPU" in messages.notes[0]


def test_no_cache_file_yet_starts_one_quietly():
    config, messages = StandInConfig(), Messages()
    assert _trt_timing_cache(config, SETTINGS, None, messages) is False
    assert config.attached == [(b"", False)] and messages.notes == []


def test_a_timing_cache_tensorrt_cannot_create_at_all_is_an_error():
    with pytest.raises(DeployKitError, match="could not create a timing cache") as info:
        _trt_timing_cache(StandInConfig(broken=True), SETTINGS, THIS_RELEASE, Messages())
    assert "without --timing-cache" in info.value.hint


# ---- TF32 and the peak an engine is compared with ----------------------------------------


@pytest.mark.parametrize(
    "precision, tf32, math",
    [("fp32", True, "tf32"), ("fp32", False, "fp32"), ("fp16", True, "fp16"), ("int8", False, "int8")],
)
def test_the_math_of_an_engine(precision, tf32, math):
    settings = build_settings(precision, tf32=tf32)
    assert settings.tf32 is tf32 and settings.math == math


def test_sidecar_records_tf32_and_the_math(tmp_path):
    from test_build import _record

    from deploykit.tensorrt.record import engine_sidecar

    default = engine_sidecar(_record("fp32", settings=build_settings("fp32")))
    assert default["build"]["tf32"] is True and default["math"] == "tf32"
    cleared = engine_sidecar(_record("fp32", settings=build_settings("fp32", tf32=False)))
    assert cleared["build"]["tf32"] is False and cleared["math"] == "fp32"
    assert engine_math(default) == "tf32" and engine_math(cleared) == "fp32"


@pytest.mark.parametrize(
    "meta, math",
    [
        ({"precision": "fp32"}, "tf32"),  # built before the tf32 field: TensorRT's default was on
        ({"precision": "fp32", "build": {"tf32": False}}, "fp32"),
        ({"precision": "fp16"}, "fp16"),
        ({}, None),
    ],
)
def test_engine_math_of_older_sidecars(meta, math):
    assert engine_math(meta) == math


def test_no_tf32_flag_is_offered_and_parsed_without_tensorrt(tmp_path):
    def deploykit(*args):
        return subprocess.run([sys.executable, "-m", "deploykit", *args], capture_output=True, text=True, timeout=120)

    assert "--no-tf32" in deploykit("build", "--help").stdout
    run = deploykit("build", "resnet18", "--no-tf32", "--repo", str(tmp_path / "m"))
    assert run.returncode == 1 and "'tensorrt' is needed" in run.stderr, run.stderr


# ---- one logger per process ---------------------------------------------------------------


def test_one_logger_class_and_no_other_logger_is_made():
    """TensorRT keeps the first logger it is given: deploykit defines one and makes no trt.Logger."""
    subclasses, made = [], []
    for module in trt_api.trt_modules():
        for node in ast.walk(module.tree):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(b, ast.Attribute) and b.attr in ("ILogger", "Logger") for b in node.bases
            ):
                subclasses.append(f"{module.relative}:{node.name}")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "Logger":
                made.append(f"{module.relative}:{node.lineno}")
    assert len(subclasses) == 1, subclasses
    assert made == [], made


# ---- one CUDA major for TensorRT and torch ---------------------------------------------------


@pytest.mark.parametrize("trt_major, torch_cuda", [(12, "12.8"), (13, "13.0"), (None, "12.4"), (12, None)])
def test_matching_or_unknown_cuda_majors_pass(trt_major, torch_cuda):
    check_cuda_majors(trt_major, torch_cuda)


def test_mismatched_cuda_majors_say_which_extra_to_install():
    with pytest.raises(DeployKitError, match="built for CUDA 12 .* but torch for CUDA 13.0") as info:
        check_cuda_majors(12, "13.0")
    assert "'deploykit[gpu-cu13]'" in info.value.hint and "tensorrt-cu12" in info.value.hint


def test_no_tensorrt_installed_here_means_no_cuda_major():
    assert tensorrt_cuda_major() is None


def test_extras_per_cuda_major():
    import re
    from pathlib import Path

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    extras = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]
    for major, ort in ((12, "onnxruntime-gpu>=1.19,<1.27"), (13, "onnxruntime-gpu>=1.27")):
        names = extras[f"gpu-cu{major}"]
        assert any(re.match(rf"tensorrt-cu{major}>=10", n) for n in names), names
        assert ort in names, names
    assert extras["gpu"] == ["deploykit[gpu-cu12]"]
    # nowhere a bare `tensorrt` requirement, which resolves to the CUDA 13 metapackage
    every = [n for names in extras.values() for n in names]
    assert not [n for n in every if re.match(r"tensorrt\b(?!-cu)", n)], every


# ---- bench: an engine for the run's largest batch, on the run's GPU ------------------------


def _repo_with_engine(tmp_path, max_batch):
    """A repository holding resnet18's ONNX fp32/fp16 and a TensorRT fp16 engine for 1..max_batch."""
    from test_build import INPUT, OUTPUT, _record

    from deploykit.repository import ModelRepository
    from deploykit.tensorrt.record import engine_sidecar, trt_config_pbtxt

    repo = ModelRepository(tmp_path / "models")
    for precision, parent in (("fp32", None), ("fp16", "resnet18_onnx_fp32")):
        repo.write_variant(
            "resnet18", "onnx", precision, write_model=lambda path: path.write_bytes(b"onnx bytes"),
            config_pbtxt="", sidecar={"parent": parent}, parent=parent,
        )
    record = _record("fp16", settings=build_settings("fp16", 1, 8, max_batch))
    repo.write_variant(
        "resnet18", "trt", "fp16", write_model=lambda path: path.write_bytes(b"plan bytes"),
        config_pbtxt=trt_config_pbtxt("resnet18_trt_fp16", INPUT, OUTPUT, max_batch),
        sidecar=engine_sidecar(record), parent=record.parent,
    )
    return repo


def _trt_config(tmp_path, batch, **extra):
    from deploykit.bench import BenchConfig

    return BenchConfig(model="resnet18", backend="tensorrt", precision="fp16", batch=batch, device="cuda",
                       repo=str(tmp_path / "models"), **extra)


def test_bench_reuses_an_engine_whose_profile_covers_the_batch(tmp_path):
    from deploykit.bench.prepare import engine_max_batch, ensure_artifact

    _repo_with_engine(tmp_path, 32)
    artifact = ensure_artifact(_trt_config(tmp_path, 32), None)
    assert artifact.variant == "resnet18_trt_fp16" and engine_max_batch(artifact) == 32


def test_bench_builds_again_when_the_recorded_profile_is_too_small(tmp_path):
    """batch 64 on an engine for 1..32: bench starts a build (here it stops where TensorRT is needed)."""
    from deploykit.bench.prepare import ensure_artifact
    from deploykit.errors import MissingDependencyError

    _repo_with_engine(tmp_path, 32)
    with pytest.raises(MissingDependencyError, match="'tensorrt' is needed for building TensorRT engines"):
        ensure_artifact(_trt_config(tmp_path, 64), None)


def test_bench_engine_options_take_the_largest_batch_size_classes_and_device(tmp_path):
    from deploykit.bench.config import expand_matrix
    from deploykit.bench.prepare import stage_options

    configs = expand_matrix(["resnet18"], ["tensorrt"], ["fp16"], [1, 64], device="cuda:1", num_classes=10)
    assert {c.largest_batch for c in configs} == {64}
    options = stage_options(configs[0], 32)  # the batch-1 cell builds for the run's 64
    assert options[("trt", "fp16")] == {"opt_batch": 8, "max_batch": 64, "device": 1}
    assert options[("onnx", "fp32")] == {"input_size": 32, "num_classes": 10}
    assert stage_options(_trt_config(tmp_path, 4), None)[("trt", "fp16")]["max_batch"] == 32
