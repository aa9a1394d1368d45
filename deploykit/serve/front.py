"""The HTTP front of the local server: checks KServe v2 requests before tritonserver sees them.

tritonserver's HTTP frontend allocates what a JSON request's ``"shape"`` declares before it
compares the shape with the model or with the data: ``[1000000000, 3, 64, 64]`` with one data
element makes it try to allocate terabytes and die, taking every model down (the binary HTTP
path and gRPC answer such a request with a clean 400). So the server process puts this front on
the public HTTP port and runs tritonserver's HTTP endpoint on a private loopback port:

- an inference request whose declared shapes do not fit the model (rank, non-batch dims, batch
  within ``1..max_batch_size``) or, in JSON, do not match the number of data elements, gets a
  400 ``{"error": ...}`` here and never reaches tritonserver; a body larger than the largest
  legal request gets 413;
- ``GET /v2/health/ready`` is 200 only when tritonserver is ready and every served model is
  (Triton's strict readiness);
- everything else is passed through unchanged (statistics keep their access token).

Runs inside the server environment: standard library only.
"""

from __future__ import annotations

import http.client
import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from deploykit.serve.protocol import ServedModel

_INFER = re.compile(r"^/v2/models/([^/]+)(?:/versions/[^/]+)?/infer$")
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
_BINARY_HEADER = "inference-header-content-length"
BYTES_PER_JSON_ELEMENT = 64  # generous: "-1.2345678901234567e-05," is 24 characters


def _count(data: Any) -> int:
    """Elements in a (possibly nested) JSON data list."""
    if isinstance(data, list):
        return sum(_count(item) for item in data)
    return 1


def _shape_error(model: ServedModel, name: str, shape: Any) -> str | None:
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        return f"input {name!r}: shape must be a list of integers, got {shape!r}"
    expected = [-1, *model.input_dims]
    if len(shape) != len(expected):
        return f"input {name!r}: shape {shape} has {len(shape)} dimensions, the model takes {len(expected)} ({expected})"
    batch, dims = shape[0], shape[1:]
    if not 1 <= batch <= model.max_batch_size:
        return f"input {name!r}: batch {batch} is outside 1..{model.max_batch_size} (max_batch_size)"
    if any(d < 0 or (want > 0 and d != want) for d, want in zip(dims, model.input_dims, strict=True)):
        return f"input {name!r}: shape {shape} does not match the model's [-1, {', '.join(map(str, model.input_dims))}]"
    return None


def request_error(model: ServedModel, header: dict[str, Any], binary: bool) -> str | None:
    """Why this inference request must not reach tritonserver, or None when it may.

    ``header`` is the JSON body (or, with binary tensors, the JSON header before the binary
    data). Only what deploykit knows is checked; the rest is left to Triton.
    """
    inputs = header.get("inputs") if isinstance(header, dict) else None
    if not isinstance(inputs, list) or not inputs:
        return "the request has no \"inputs\" list"
    for tensor in inputs:
        if not isinstance(tensor, dict):
            return "each input must be a JSON object"
        name, shape = tensor.get("name"), tensor.get("shape")
        if name != model.input_name:
            return f"unknown input {name!r}: {model.name} takes {model.input_name!r}"
        problem = _shape_error(model, name, shape)
        if problem:
            return problem
        declared = math.prod(shape)
        parameters = tensor.get("parameters") if isinstance(tensor.get("parameters"), dict) else {}
        if binary and "binary_data_size" in parameters:
            continue  # Triton compares binary sizes itself before allocating
        if "data" not in tensor:
            return f"input {name!r} has no \"data\""
        given = _count(tensor["data"])
        if given != declared:
            return f"input {name!r}: shape {shape} declares {declared} elements, the data has {given}"
    return None


def body_limit(models: list[ServedModel]) -> int:
    """The largest legal request body (JSON numbers of a full batch of the largest model) plus 1 MiB."""
    elements = max((m.max_batch_size * math.prod(max(d, 1) for d in m.input_dims) for m in models), default=0)
    return elements * BYTES_PER_JSON_ELEMENT + (1 << 20)


class Front(ThreadingHTTPServer):
    """Listens on the public HTTP address and forwards what passes to tritonserver's private port."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], upstream: tuple[str, int], models: list[ServedModel]):
        self.upstream = upstream
        self.models = {m.name: m for m in models}
        self.limit = body_limit(models)
        self.rejected = 0
        self._local = threading.local()
        super().__init__(address, _Handler)

    def connection(self, fresh: bool = False) -> http.client.HTTPConnection:
        """This thread's keep-alive connection to tritonserver."""
        if fresh or getattr(self._local, "conn", None) is None:
            self._local.conn = http.client.HTTPConnection(*self.upstream, timeout=300)
        return self._local.conn

    def upstream_get(self, path: str) -> int:
        """Status of a GET to tritonserver (0 when it does not answer)."""
        try:
            conn = http.client.HTTPConnection(*self.upstream, timeout=10)
            conn.request("GET", path)
            status = conn.getresponse().status
            conn.close()
            return status
        except OSError:
            return 0

    def all_ready(self) -> bool:
        if self.upstream_get("/v2/health/ready") != 200:
            return False
        return all(self.upstream_get(f"/v2/models/{name}/ready") == 200 for name in self.models)

    def serve_in_thread(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, name="deploykit-http-front", daemon=True)
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Front

    def log_message(self, format: str, *args: Any) -> None:  # tritonserver keeps the access log
        pass

    def _reply(self, status: int, payload: dict[str, Any] | None = None, headers=(), body: bytes | None = None) -> None:
        data = body if body is not None else json.dumps(payload or {}).encode()
        self.send_response(status)
        sent = set()
        for key, value in headers:
            if key.lower() not in _HOP_BY_HOP and key.lower() != "content-length":
                self.send_header(key, value)
                sent.add(key.lower())
        if "content-type" not in sent:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes | None:
        """The request body, or None after an error reply (no length, or over the limit)."""
        length = self.headers.get("Content-Length")
        if length is None:
            if self.headers.get("Transfer-Encoding"):
                self.close_connection = True
                self._reply(411, {"error": "a Content-Length is required"})
                return None
            return b""
        if not length.isdigit() or int(length) > self.server.limit:
            self.close_connection = True  # the body is not read: the connection cannot be reused
            self._reply(413, {"error": f"request body of {length} bytes exceeds the limit of {self.server.limit}"})
            return None
        return self.rfile.read(int(length))

    def _check(self, body: bytes) -> str | None:
        match = _INFER.match(self.path.split("?", 1)[0])
        model = self.server.models.get(match.group(1)) if match else None
        if model is None:
            return None  # unknown models and other endpoints: Triton answers
        header_length = self.headers.get(_BINARY_HEADER)
        binary = header_length is not None
        raw = body[: int(header_length)] if binary and header_length.isdigit() else body
        try:
            header = json.loads(raw) if raw else None
        except ValueError:
            return None  # not JSON: Triton's own parser answers with its error
        return request_error(model, header, binary)

    def _forward(self, method: str, body: bytes) -> None:
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP and k.lower() != "host"}
        for attempt in (0, 1):
            conn = self.server.connection(fresh=attempt > 0)
            try:
                conn.request(method, self.path, body=body or None, headers=headers)
                response = conn.getresponse()
                data = response.read()
                break
            except (OSError, http.client.HTTPException):
                conn.close()
                if attempt:
                    self._reply(503, {"error": "tritonserver is not answering (restarting?)"})
                    return
        self._reply(response.status, headers=response.getheaders(), body=data)

    def do_GET(self) -> None:
        if self.path.split("?", 1)[0] == "/v2/health/ready":
            ready = self.server.all_ready()
            self._reply(200 if ready else 503, body=b"" if ready else None, payload={"error": "not every model is ready"})
            return
        self._forward("GET", b"")

    def do_POST(self) -> None:
        body = self._body()
        if body is None:
            return
        problem = self._check(body)
        if problem:
            self.server.rejected += 1
            self._reply(400, {"error": problem})
            return
        self._forward("POST", body)
