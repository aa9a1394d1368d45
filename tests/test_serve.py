"""A real Triton server (PyTriton's bundled tritonserver) on loopback, started once for the module.

The model is zoo resnet18 trained on real digits (the session fixture), exported by
``deploykit.export.export_model`` into a temporary repository, beside two broken variants (a
truncated model file and a missing one). The server runs in the separate server environment
(``.venv-serve``, made by ``.ci/serve_env.sh``: PyTriton needs numpy<2) on free loopback ports
and is always stopped, even when a test fails.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import textwrap
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from deploykit.cli import cli
from deploykit.errors import DeployKitError, UsageError
from deploykit.serve.launcher import LocalServer, find_server_python
from deploykit.serve.plan import plan_repository
from deploykit.serve.protocol import ensure_libpython_on_path

MODEL = "resnet18_onnx_fp32"
MAX_BATCH = 8
CLIENTS = 16
REQUESTS_PER_CLIENT = 12


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_server_python_or_none() -> str | None:
    try:
        return find_server_python()
    except DeployKitError:
        return None


def _server_python_or_skip() -> str:
    try:
        return find_server_python()
    except DeployKitError as exc:
        if os.environ.get("CI"):  # CI creates the environment first: its absence is a failure there
            raise
        pytest.skip(f"no server environment: {exc.message} (run `bash .ci/serve_env.sh`)")


# ---- fixtures -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits_folder(tmp_path_factory, digits_resnet18):
    """Held-out digits as PNG files in class folders named 0..9 (so the labels are the digits)."""
    from PIL import Image

    split = digits_resnet18.split
    root = tmp_path_factory.mktemp("digits")
    # Two of each digit, interleaved (0, 1, ..., 9, 0, 1, ...): every class folder exists.
    picks = [np.flatnonzero(split.y_test == d)[:2] for d in range(10)]
    paths = []
    for i in (int(p[k]) for k in range(2) for p in picks):
        folder = root / str(int(split.y_test[i]))
        folder.mkdir(exist_ok=True)
        path = folder / f"test{i:03d}.png"
        Image.fromarray(split.images_test[i]).save(path)
        paths.append(path)
    return root, paths


@pytest.fixture(scope="module")
def repo(tmp_path_factory, digits_resnet18, digits_folder):
    """A repository written by the real export, plus a corrupt and a missing variant. The
    weights are in model.onnx.data (as every export over 64 MiB writes them): Triton loads the pair."""
    import torch

    from deploykit.export import export_model

    root = tmp_path_factory.mktemp("serve") / "models"
    weights = root.parent / "digits_resnet18.pt"
    torch.save(digits_resnet18.model.state_dict(), weights)
    export_model(
        "resnet18", repo=root, weights=weights, input_size=32, num_classes=10,
        data=digits_folder[0], max_batch_size=MAX_BATCH, external_data_threshold=0,
    )  # fmt: skip
    good = root / MODEL
    assert (good / "1" / "model.onnx.data").stat().st_size > 40e6  # the weights beside the graph
    for broken in ("corrupt_onnx_fp32", "missing_onnx_fp32"):
        shutil.copytree(good, root / broken)
        config = root / broken / "config.pbtxt"
        config.write_text(config.read_text().replace(MODEL, broken))
    model = root / "corrupt_onnx_fp32" / "1" / "model.onnx"
    model.write_bytes(model.read_bytes()[:4096])  # a crash mid-copy
    (root / "missing_onnx_fp32" / "1" / "model.onnx").unlink()
    return root


@pytest.fixture(scope="module")
def server(repo, tmp_path_factory):
    _server_python_or_skip()
    logs = tmp_path_factory.mktemp("server-logs")
    with open(logs / "stdout.log", "w") as output:
        srv = LocalServer(
            repo=repo,
            http_port=_free_port(),
            grpc_port=_free_port(),
            metrics_port=_free_port(),
            log_file=str(logs / "tritonserver.log"),
            output=output,
        )
        try:
            srv.start(timeout=240)
            yield srv
        finally:
            srv.stop()


@pytest.fixture(scope="module")
def reference(repo):
    """The in-process runner on the same file: what the server must reproduce."""
    from deploykit.runtimes import get_runner

    with get_runner("onnxruntime", repo / MODEL / "1" / "model.onnx") as runner:
        yield runner


def _http(server):
    import tritonclient.http as http

    return http, http.InferenceServerClient(server.status.http_url.removeprefix("http://"), network_timeout=60)


def _infer_http(client, http, batch: np.ndarray, model: str = MODEL, datatype: str = "FP32", version: str = ""):
    tensor = http.InferInput("input", list(batch.shape), datatype)
    tensor.set_data_from_numpy(batch, binary_data=True)
    return client.infer(model, [tensor], model_version=version).as_numpy("logits")


# ---- the server ----------------------------------------------------------------------------------------
@pytest.mark.slow
def test_status_lists_served_and_unavailable_models(server):
    status = server.status
    assert status.state == "ready"
    assert [m.name for m in status.models] == [MODEL]
    served = status.model(MODEL)
    assert served.max_batch_size == MAX_BATCH and served.preferred_batch_sizes == (4, 8)
    assert (served.input_name, served.input_dims, served.output_dims) == ("input", (3, 32, 32), (10,))
    reasons = {u.name: u.reason for u in status.unavailable}
    assert set(reasons) == {"corrupt_onnx_fp32", "missing_onnx_fp32"}
    assert "cannot load" in reasons["corrupt_onnx_fp32"]
    assert "missing" in reasons["missing_onnx_fp32"]
    assert status.http_url.startswith("http://127.0.0.1:")


@pytest.mark.slow
def test_unavailable_models_are_not_ready_while_the_good_one_serves(server):
    import requests

    base = server.status.http_url
    assert requests.get(f"{base}/v2/health/ready", timeout=10).status_code == 200
    assert requests.get(f"{base}/v2/models/{MODEL}/ready", timeout=10).status_code == 200
    for name in ("corrupt_onnx_fp32", "missing_onnx_fp32"):
        assert requests.get(f"{base}/v2/models/{name}/ready", timeout=10).status_code != 200


@pytest.mark.slow
def test_load_16_clients_match_the_in_process_runner_and_batch(server, reference, digits_resnet18):
    """16 concurrent clients, bounded requests: no failure, same logits, dynamic batching at work."""
    from deploykit.serve.client import batching_summary, model_statistics

    x = digits_resnet18.split.x_test
    y = digits_resnet18.split.y_test
    before = batching_summary(model_statistics(server.status.http_url, MODEL, server.status.access_token))
    results: dict[int, np.ndarray] = {}
    failures: list[str] = []
    barrier = threading.Barrier(CLIENTS)

    def client(c: int) -> None:
        http, conn = _http(server)
        try:
            barrier.wait(timeout=60)
            for r in range(REQUESTS_PER_CLIENT):
                i = c * REQUESTS_PER_CLIENT + r
                try:
                    results[i] = _infer_http(conn, http, x[i : i + 1])
                except Exception as exc:  # counted, not raised: the test reports every failure
                    failures.append(f"request {i}: {exc}")
        finally:
            conn.close()

    threads = [threading.Thread(target=client, args=(c,)) for c in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not any(t.is_alive() for t in threads), "a client hung"
    total = CLIENTS * REQUESTS_PER_CLIENT
    assert not failures, failures[:5]
    assert len(results) == total

    served = np.concatenate([results[i] for i in range(total)])
    expected = np.concatenate([reference.infer(x[i : i + 1]) for i in range(total)])
    np.testing.assert_allclose(served, expected, rtol=1e-4, atol=1e-4)
    assert (served.argmax(1) == y[:total]).mean() > 0.9  # a real model on real data

    after = batching_summary(model_statistics(server.status.http_url, MODEL, server.status.access_token))
    inferences = after["inference_count"] - before["inference_count"]
    executions = after["execution_count"] - before["execution_count"]
    assert inferences == total
    assert executions < inferences, after  # requests were combined into batches
    assert max(after["batches"]) > 1 and max(after["batches"]) <= MAX_BATCH


@pytest.mark.slow
def test_statistics_endpoint_is_protected(server):
    import requests

    url = f"{server.status.http_url}/v2/models/{MODEL}/stats"
    assert requests.get(url, timeout=10).status_code == 403
    ok = requests.get(url, headers={"triton-access-token": server.status.access_token}, timeout=10)
    assert ok.status_code == 200 and ok.json()["model_stats"][0]["name"] == MODEL


# ---- bad requests get KServe v2 errors; the server keeps serving ---------------------------------------------
@pytest.mark.slow
def test_bad_requests_with_tritonclient(server, reference):
    from tritonclient.utils import InferenceServerException

    http, conn = _http(server)
    good = np.zeros((2, 3, 32, 32), np.float32)
    cases = {
        "wrong dtype": lambda: _infer_http(conn, http, good.astype(np.int32), datatype="INT32"),
        "wrong shape": lambda: _infer_http(conn, http, np.zeros((1, 3, 16, 16), np.float32)),
        "batch over max": lambda: _infer_http(conn, http, np.zeros((MAX_BATCH + 1, 3, 32, 32), np.float32)),
        "unknown model": lambda: _infer_http(conn, http, good, model="nope_onnx_fp32"),
        "unknown version": lambda: _infer_http(conn, http, good, version="7"),
        "unavailable model": lambda: _infer_http(conn, http, good, model="corrupt_onnx_fp32"),
    }
    try:
        for name, call in cases.items():
            with pytest.raises(InferenceServerException) as info:
                call()
            assert info.value.message(), name
        np.testing.assert_allclose(_infer_http(conn, http, good), reference.infer(good), rtol=1e-4, atol=1e-4)
    finally:
        conn.close()


@pytest.mark.slow
def test_bad_requests_with_grpc(server):
    import tritonclient.grpc as grpc
    from tritonclient.utils import InferenceServerException

    conn = grpc.InferenceServerClient(server.status.grpc_url.removeprefix("grpc://"))
    try:
        bad = grpc.InferInput("input", [1, 3, 16, 16], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 3, 16, 16), np.float32))
        with pytest.raises(InferenceServerException, match="shape"):
            conn.infer(MODEL, [bad])
        good = grpc.InferInput("input", [1, 3, 32, 32], "FP32")
        good.set_data_from_numpy(np.zeros((1, 3, 32, 32), np.float32))
        assert conn.infer(MODEL, [good]).as_numpy("logits").shape == (1, 10)
    finally:
        conn.close()


def _json_request(batch: int = 1, size: int = 32, datatype: str = "FP32", name: str = "input") -> dict:
    count = batch * 3 * size * size
    data = [0.0] * count if datatype.startswith("FP") else [0] * count
    return {"inputs": [{"name": name, "shape": [batch, 3, size, size], "datatype": datatype, "data": data}]}


@pytest.mark.slow
def test_bad_requests_with_raw_http(server):
    """Plain JSON over HTTP, no Triton client: each mistake gets {"error": ...} and a 4xx/5xx."""
    import requests

    base = server.status.http_url
    infer = f"{base}/v2/models/{MODEL}/infer"
    good = json.dumps(_json_request())
    wrong_count = _json_request()
    wrong_count["inputs"][0]["data"] = [0.0] * 100
    cases = {
        "wrong dtype": (infer, json.dumps(_json_request(datatype="INT32"))),
        "wrong shape": (infer, json.dumps(_json_request(size=16))),
        "batch over max": (infer, json.dumps(_json_request(batch=MAX_BATCH + 1))),
        "data shorter than shape": (infer, json.dumps(wrong_count)),
        "unknown input name": (infer, json.dumps(_json_request(name="x"))),
        "truncated body": (infer, good[: len(good) // 2]),
        "not JSON": (infer, "this is not json"),
        "empty body": (infer, ""),
        "unknown model": (f"{base}/v2/models/nope_onnx_fp32/infer", good),
        "unknown version": (f"{base}/v2/models/{MODEL}/versions/7/infer", good),
    }
    for name, (url, body) in cases.items():
        reply = requests.post(url, data=body, headers={"Content-Type": "application/json"}, timeout=30)
        assert 400 <= reply.status_code < 600, (name, reply.status_code)
        assert reply.json().get("error"), (name, reply.text[:200])
    reply = requests.post(infer, data=good, headers={"Content-Type": "application/json"}, timeout=30)
    assert reply.status_code == 200
    (output,) = reply.json()["outputs"]
    assert output["name"] == "logits" and output["shape"] == [1, 10]
    assert requests.get(f"{base}/v2/health/live", timeout=10).status_code == 200


HUGE_SHAPES = [
    [1000000000, 3, 64, 64],  # the requests, exactly (one data element each)
    [4, 3, 64, 1000000000],
    [1000000000, 3, 32, 32],  # the same with this model's own dims
    [4, 3, 32, 1000000000],
    [MAX_BATCH, 3, 32, 32],  # a legal shape whose data is one element
]


@pytest.mark.slow
@pytest.mark.parametrize("shape", HUGE_SHAPES, ids=lambda shape: "x".join(map(str, shape)))
def test_a_huge_declared_shape_does_not_take_the_server_down(server, reference, shape):
    """One small JSON body declaring terabytes: a 400 with the reason, then a good request is served."""
    import requests

    base = server.status.http_url
    infer = f"{base}/v2/models/{MODEL}/infer"
    bad = {"inputs": [{"name": "input", "shape": shape, "datatype": "FP32", "data": [0.0]}]}
    reply = requests.post(infer, data=json.dumps(bad), headers={"Content-Type": "application/json"}, timeout=60)
    assert reply.status_code == 400, reply.text[:300]
    assert "shape" in reply.json()["error"] or "batch" in reply.json()["error"]
    good = np.zeros((1, 3, 32, 32), np.float32)
    body = {"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": good.ravel().tolist()}]}
    reply = requests.post(infer, data=json.dumps(body), headers={"Content-Type": "application/json"}, timeout=60)
    assert reply.status_code == 200, reply.text[:300]
    (output,) = reply.json()["outputs"]
    np.testing.assert_allclose(np.array(output["data"]).reshape(1, 10), reference.infer(good), rtol=1e-4, atol=1e-4)
    assert server.process.poll() is None
    assert server.current_status().restarts == 0  # rejected in front: tritonserver never saw it


def test_front_checks_declared_shapes_against_the_model_and_the_data():
    """The front's rule, without a server: shape against dims and max batch, data length against shape."""
    from deploykit.serve.front import body_limit, request_error
    from deploykit.serve.protocol import ServedModel

    model = ServedModel("m", "onnxruntime", "m.onnx", 1, 8, (4, 8), 100, "input", (3, 32, 32), "logits", (10,))

    def request(shape, count=None, binary=False):
        tensor = {"name": "input", "shape": shape, "datatype": "FP32"}
        if binary:
            tensor["parameters"] = {"binary_data_size": 4 * int(np.prod(shape))}
        else:
            tensor["data"] = [0.0] * (int(np.prod(shape)) if count is None else count)
        return {"inputs": [tensor]}

    assert request_error(model, request([2, 3, 32, 32]), binary=False) is None
    assert request_error(model, request([2, 3, 32, 32], binary=True), binary=True) is None
    for shape in HUGE_SHAPES:
        assert request_error(model, request(shape, count=1), binary=False), shape
        assert request_error(model, request(shape, binary=True), binary=True) or shape == [MAX_BATCH, 3, 32, 32]
    assert "9 is outside 1..8" in request_error(model, request([9, 3, 32, 32]), binary=False)
    assert "declares 6144 elements, the data has 100" in request_error(model, request([2, 3, 32, 32], 100), binary=False)
    assert "unknown input" in request_error(model, {"inputs": [{"name": "x", "shape": [1], "data": [0]}]}, binary=False)
    assert request_error(model, {"inputs": [{"name": "input", "shape": "1,3", "data": [0]}]}, binary=False)
    assert body_limit([model]) > 8 * 3 * 32 * 32 * 20


# ---- the client command --------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_infer_command_matches_the_in_process_runner(server, repo, reference, digits_folder, protocol):
    import json as json_module

    from deploykit.data import load_rgb, preprocess
    from deploykit.serve.client import resolve_preprocessing

    _, paths = digits_folder
    images = [str(p) for p in paths[:MAX_BATCH]]
    url = server.status.http_url if protocol == "http" else server.status.grpc_url
    result = CliRunner().invoke(
        cli,
        ["infer", MODEL, *images, "--url", url, "--protocol", protocol, "--top", "3", "--repo", str(repo), "--format", "json"],
    )
    assert result.exit_code == 0, result.output
    data = json_module.loads(result.output)
    assert data["batch_size"] == len(images) and data["round_trip_ms"] > 0
    assert data["preprocessing_source"] == "sidecar"

    pre, labels, _ = resolve_preprocessing(MODEL, repo)
    assert labels == [str(i) for i in range(10)]  # from the class folders export was given
    expected = reference.infer(np.stack([preprocess(load_rgb(p), pre) for p in images])).argmax(1)
    for item, want in zip(data["results"], expected, strict=True):
        assert len(item["top"]) == 3
        best = item["top"][0]
        assert best["index"] == int(want)
        assert best["label"] == str(want)
        assert item["top"][0]["score"] >= item["top"][1]["score"]


@pytest.mark.slow
def test_infer_command_table_and_errors(server, repo, digits_folder):
    _, paths = digits_folder
    url = server.status.http_url
    ok = CliRunner().invoke(cli, ["infer", MODEL, str(paths[0]), "--url", url, "--repo", str(repo)])
    assert ok.exit_code == 0, ok.output
    assert "round trip" in ok.output and "preprocessing from the sidecar" in ok.output
    assert "test" in ok.output and ".png" in ok.output  # the image column (folded at 80 columns)

    unknown = CliRunner().invoke(cli, ["infer", "nope_onnx_fp32", str(paths[0]), "--url", url, "--repo", str(repo)])
    assert unknown.exit_code == 1 and "no model 'nope_onnx_fp32'" in unknown.output

    too_many = [str(p) for p in paths[: MAX_BATCH + 1]]
    over = CliRunner().invoke(cli, ["infer", MODEL, *too_many, "--url", url, "--repo", str(repo)])
    assert over.exit_code == 2 and "max_batch_size" in over.output


def test_infer_command_without_a_server(tmp_path):
    from PIL import Image

    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    result = CliRunner().invoke(cli, ["infer", "m_onnx_fp32", str(image), "--url", f"http://127.0.0.1:{_free_port()}"])
    assert result.exit_code == 1
    assert "cannot reach a Triton server" in result.output and "deploykit serve" in result.output
    missing = CliRunner().invoke(cli, ["infer", "m_onnx_fp32", str(tmp_path / "nope.png")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


# ---- launcher and planning (no server needed) -------------------------------------------------------------
def test_exported_repository_passes_repo_check(repo):
    """What export writes is valid for Triton; the two broken variants are named."""
    from deploykit.serve.check import check_repository

    report = check_repository(repo)
    assert report.model(MODEL).ok and not report.model(MODEL).problems, report.model(MODEL).problems
    assert "corrupt-model" in {p.code for p in report.model("corrupt_onnx_fp32").errors}
    assert "missing-model-file" in {p.code for p in report.model("missing_onnx_fp32").errors}


def test_plan_repository_reports_unservable_variants(repo):
    planned, unavailable = plan_repository(repo, None, "onnxruntime")
    # Planning reads configs and checks files; a corrupt file is found only when loading.
    assert sorted(m.name for m in planned) == ["corrupt_onnx_fp32", MODEL]
    assert [u.name for u in unavailable] == ["missing_onnx_fp32"]
    assert plan_repository(repo, None, "tensorrt") == ([], [])  # no plans: nothing for that backend
    _, wrong = plan_repository(repo, [MODEL], "tensorrt")
    assert "cannot run on the tensorrt backend" in wrong[0].reason
    with pytest.raises(UsageError, match="no model 'nope'"):
        plan_repository(repo, ["nope"], "onnxruntime")


def test_serve_command_usage_errors(tmp_path, repo):
    runner = CliRunner()
    missing = runner.invoke(cli, ["serve", "--repo", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "no model repository" in missing.output
    unknown = runner.invoke(cli, ["serve", "--repo", str(repo), "--models", "nope"])
    assert unknown.exit_code == 2 and "no model 'nope'" in unknown.output
    bad_python = runner.invoke(cli, ["serve", "--repo", str(repo), "--python", str(tmp_path / "python")])
    assert bad_python.exit_code == 2 and "not an executable Python" in bad_python.output
    for result in (missing, unknown, bad_python):
        assert "starting tritonserver" not in result.output  # arguments are checked before anything starts
    same_ports = runner.invoke(cli, ["serve", "--repo", str(repo), "--http-port", "9000", "--grpc-port", "9000"])
    assert same_ports.exit_code == 2
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = str(busy.getsockname()[1])
        taken = runner.invoke(cli, ["serve", "--repo", str(repo), "--http-port", port])
    if find_server_python_or_none():
        assert taken.exit_code == 2 and f"address already in use: 127.0.0.1:{port}" in taken.output, taken.output
        assert "starting tritonserver" not in taken.output


def test_serve_command_names_the_fix_when_pytriton_is_missing(tmp_path, repo, monkeypatch):
    import sys

    monkeypatch.setenv("DEPLOYKIT_SERVE_PYTHON", sys.executable)  # the main env: no PyTriton here
    result = CliRunner().invoke(cli, ["serve", "--repo", str(repo), "--http-port", str(_free_port())])
    assert result.exit_code == 1
    assert "PyTriton is not installed" in result.output and "serve_env.sh" in result.output
    assert "starting tritonserver" not in result.output


def test_tensorrt_backend_loads_in_the_server_environment(tmp_path):
    """`serve --backend tensorrt` in .venv-serve (no torch there): the runner imports without torch,
    plans are planned, and activating says what is missing instead of a traceback."""
    import subprocess

    python = _server_python_or_skip()
    plan = tmp_path / "models" / "m_trt_fp16" / "1" / "model.plan"
    plan.parent.mkdir(parents=True)
    plan.write_bytes(b"not an engine")
    from deploykit.onnx_graph import TensorSpec
    from deploykit.tensorrt.record import trt_config_pbtxt

    config = trt_config_pbtxt("m_trt_fp16", TensorSpec("input", (-1, 3, 32, 32)), TensorSpec("logits", (-1, 10)), 8)
    (plan.parent.parent / "config.pbtxt").write_text(config)
    code = textwrap.dedent(
        """
        import sys
        from deploykit.errors import DeployKitError
        from deploykit.runtimes import runner_class
        from deploykit.serve.plan import plan_repository
        import deploykit.runtimes.tensorrt_runner as module
        assert "torch" not in sys.modules
        planned, unavailable = plan_repository(sys.argv[1], None, "tensorrt")
        assert [m.name for m in planned] == ["m_trt_fp16"] and not unavailable, (planned, unavailable)
        try:
            module.TensorRTRunner(planned[0].path).activate()
        except DeployKitError as exc:
            print("refused:", exc.message, "|", exc.hint)
        assert "torch" not in sys.modules
        print("ok")
        """
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    proc = subprocess.run([python, "-c", code, str(tmp_path / "models")], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok") and "refused:" in proc.stdout, proc.stdout
    assert "Traceback" not in proc.stderr


def test_libpython_goes_first_on_ld_library_path():
    import sysconfig

    libdir = sysconfig.get_config_var("LIBDIR")
    env = ensure_libpython_on_path({"LD_LIBRARY_PATH": "/opt/a:" + libdir})
    assert env["LD_LIBRARY_PATH"] == f"{libdir}:/opt/a"
    assert ensure_libpython_on_path({})["LD_LIBRARY_PATH"] == libdir


def test_server_python_lookup_prefers_the_flag(tmp_path, monkeypatch):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("DEPLOYKIT_SERVE_PYTHON", "/nonexistent/python")
    assert find_server_python(fake) == str(fake)
    with pytest.raises(UsageError, match="DEPLOYKIT_SERVE_PYTHON"):
        find_server_python()


@pytest.mark.slow
def test_serve_command_prints_endpoints_and_stops_on_sigint(repo, tmp_path):
    """The CLI itself, as a user runs it: endpoints and models printed, Ctrl+C stops it (exit 0)."""
    import signal
    import subprocess
    import sys
    import time

    _server_python_or_skip()
    http_port = _free_port()
    cmd = [
        sys.executable, "-m", "deploykit", "serve", "--repo", str(repo), "--models", f"{MODEL},missing_onnx_fp32",
        "--http-port", str(http_port), "--grpc-port", str(_free_port()), "--metrics-port", str(_free_port()),
        "--log-file", str(tmp_path / "triton.log"),
    ]  # fmt: skip
    log = tmp_path / "serve.out"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 180
        while "Press Ctrl+C" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        text = log.read_text()
        assert "Press Ctrl+C" in text, text[-2000:]
        import requests

        assert requests.get(f"http://127.0.0.1:{http_port}/v2/models/{MODEL}/ready", timeout=10).status_code == 200
        assert f"http://127.0.0.1:{http_port}" in text
        assert MODEL in text and "missing_onnx_fp32" in text and "UNAVAILABLE" in text
        time.sleep(1.0)  # the launcher polls its status file every 0.2 s before it waits
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 0, log.read_text()[-2000:]
        assert "stopping the server" in log.read_text()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


@pytest.mark.slow
def test_ready_means_every_model_is_ready(repo):
    """Strict readiness: /v2/health/ready is 200 only once every served model answers, from the first 200 on."""
    import time

    import requests

    _server_python_or_skip()
    http_port = _free_port()
    base = f"http://127.0.0.1:{http_port}"
    seen: list[tuple[int, int]] = []  # (health/ready, model ready) as a client polling from the start sees them
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            try:
                health = requests.get(f"{base}/v2/health/ready", timeout=5).status_code
                if health == 200:
                    seen.append((health, requests.get(f"{base}/v2/models/{MODEL}/ready", timeout=5).status_code))
            except requests.RequestException:
                pass
            time.sleep(0.05)

    watcher = threading.Thread(target=poll, daemon=True)
    watcher.start()
    server = LocalServer(repo=repo, models=[MODEL, "missing_onnx_fp32"], http_port=http_port, grpc_port=_free_port(), metrics_port=_free_port())
    try:
        status = server.start(timeout=240)
        assert requests.get(f"{base}/v2/models/{MODEL}/ready", timeout=10).status_code == 200  # ready when start() returns
        assert [u.name for u in status.unavailable] == ["missing_onnx_fp32"]  # not served: not waited for
        time.sleep(1.0)
    finally:
        done.set()
        watcher.join(timeout=30)
        server.stop()
    assert seen, "/v2/health/ready never answered 200"
    assert all(model == 200 for _, model in seen), seen


@pytest.mark.slow
def test_serve_command_restarts_a_server_process_that_dies(repo, tmp_path):
    """kill -9 of the server process itself: `deploykit serve` reports it, starts it again, serves."""
    import signal
    import subprocess
    import sys
    import time

    import requests

    _server_python_or_skip()
    http_port = _free_port()
    cmd = [
        sys.executable, "-m", "deploykit", "serve", "--repo", str(repo), "--models", MODEL,
        "--http-port", str(http_port), "--grpc-port", str(_free_port()), "--metrics-port", str(_free_port()),
        "--log-file", str(tmp_path / "triton.log"),
    ]  # fmt: skip
    log = tmp_path / "serve.out"

    def wait_for(text: str, count: int) -> None:
        deadline = time.monotonic() + 180
        while log.read_text().count(text) < count and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert log.read_text().count(text) >= count, log.read_text()[-2000:]

    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        wait_for("Press Ctrl+C", 1)
        children = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit() and _parent(p) == proc.pid]
        assert children, "no server process under deploykit serve"
        for pid in children:
            os.kill(pid, signal.SIGKILL)
        wait_for("Press Ctrl+C", 2)
        assert "the server process exited with code -9; restarting it (1 of 5)" in log.read_text()
        body = {"inputs": [{"name": "input", "shape": [1, 3, 32, 32], "datatype": "FP32", "data": [0.0] * 3072}]}
        reply = requests.post(f"http://127.0.0.1:{http_port}/v2/models/{MODEL}/infer", json=body, timeout=60)
        assert reply.status_code == 200, reply.text[:300]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=90) == 0, log.read_text()[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)


def _parent(proc_dir: Path) -> int | None:
    try:
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


@pytest.mark.slow
def test_a_busy_port_is_reported_at_once(repo):
    _server_python_or_skip()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        server = LocalServer(repo=repo, models=[MODEL], http_port=port, grpc_port=_free_port(), metrics_port=_free_port())
        with pytest.raises(DeployKitError, match=f"address already in use: 127.0.0.1:{port}"):
            server.start(timeout=120)
        assert server.process.poll() is not None  # nothing left running


@pytest.mark.slow
def test_a_dead_tritonserver_is_restarted_and_reported(server, reference):
    """kill -9 of tritonserver itself: the server process starts it again, says so, and serves."""
    import signal
    import time

    import requests

    group = server.process.pid  # the server's process group holds tritonserver
    victims = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                exe = (proc / "cmdline").read_bytes().split(b"\0")[0]
                if exe.endswith(b"/tritonserver") and os.getpgid(int(proc.name)) == group:
                    victims.append(int(proc.name))
            except (OSError, ProcessLookupError):
                continue
    assert victims, "no tritonserver in the server's process group"
    for pid in victims:
        os.kill(pid, signal.SIGKILL)
    http, conn = _http(server)
    good = np.zeros((1, 3, 32, 32), np.float32)
    deadline, served = time.monotonic() + 180, None
    try:
        while served is None and time.monotonic() < deadline:
            time.sleep(1.0)
            try:
                if requests.get(f"{server.status.http_url}/v2/health/ready", timeout=10).status_code == 200:
                    served = _infer_http(conn, http, good)
            except Exception:  # still restarting: connection refused, 503, ...
                conn.close()
                http, conn = _http(server)
    finally:
        conn.close()
    assert served is not None, "the server did not come back"
    np.testing.assert_allclose(served, reference.infer(good), rtol=1e-4, atol=1e-4)
    assert server.process.poll() is None
    assert server.current_status().restarts == 1
    output = Path(server.output.name).read_text()
    assert "tritonserver died" in output and "restarted" in output


# ---- last: shutdown ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_server_stops_cleanly_on_sigterm(server):
    """Runs last in this module: SIGTERM ends the server with code 0 and frees its port."""
    port = int(server.status.http_url.rsplit(":", 1)[1])
    assert server.stop() == 0
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0  # nothing listens any more
    status_dir = Path(server.log_file).parent
    assert (status_dir / "tritonserver.log").is_file()
