"""The client side: send preprocessed images to a Triton server and read back the top classes.

Speaks KServe v2 through ``tritonclient`` over HTTP or gRPC, so it works against the local
``deploykit serve`` and against NVIDIA's tritonserver container alike. Images are preprocessed
exactly as the variant's sidecar says (the same :func:`deploykit.data.preprocess` that export
verification and calibration use); the tensor names, dims and max batch size come from the
server's own model metadata, so nothing about the model is guessed.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from deploykit._deps import require
from deploykit.errors import DeployKitError, UsageError

PROTOCOLS = ("http", "grpc")
DEFAULT_URLS = {"http": "http://127.0.0.1:8000", "grpc": "grpc://127.0.0.1:8001"}
MAX_IMAGES = 256  # one request; the server's max_batch_size is the real bound


@dataclass(frozen=True)
class Prediction:
    index: int
    label: str | None
    score: float  # softmax probability


@dataclass(frozen=True)
class ImagePrediction:
    image: str
    top: tuple[Prediction, ...]


@dataclass(frozen=True)
class InferResult:
    """One batched request: top-k per image and the round-trip time of the request."""

    model: str
    url: str
    protocol: str
    batch_size: int
    round_trip_ms: float
    preprocessing_source: str  # "sidecar", "model card" or "imagenet default"
    results: tuple[ImagePrediction, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class _Pre:
    """Duck-typed :class:`deploykit.zoo.Preprocessing` (kept here so no zoo/torch import is needed)."""

    resize: int
    crop: int
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    interpolation: str = "bilinear"


@dataclass(frozen=True)
class ModelIO:
    """What the server says about a model: tensor names, input dims (batch first) and batching."""

    input_name: str
    input_datatype: str
    input_shape: tuple[int, ...]  # as the server reports it: -1 for the batch dimension
    output_name: str
    max_batch_size: int


# ---- connections ----------------------------------------------------------------------------------
def split_url(url: str | None, protocol: str) -> tuple[str, bool]:
    """``http://host:port`` / ``grpc://host:port`` / ``host:port`` -> (``host:port``, ssl)."""
    if protocol not in PROTOCOLS:
        raise UsageError(f"unknown protocol {protocol!r}", hint=f"choose from {', '.join(PROTOCOLS)}")
    url = url or DEFAULT_URLS[protocol]
    parts = urlsplit(url if "://" in url else f"{protocol}://{url}")
    if parts.scheme not in ("http", "https", "grpc", "grpcs"):
        raise UsageError(f"unsupported URL scheme in {url!r}", hint="use http://host:port or grpc://host:port")
    if not parts.hostname or parts.path not in ("", "/"):
        raise UsageError(f"bad server URL {url!r}", hint="use http://host:port (no path)")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    try:
        port = parts.port or (8001 if protocol == "grpc" else 8000)
    except ValueError:
        raise UsageError(f"bad port in {url!r}") from None
    return f"{host}:{port}", parts.scheme in ("https", "grpcs")


def connect(url: str | None = None, protocol: str = "http", timeout: float = 30.0):
    """A tritonclient InferenceServerClient for the protocol."""
    address, ssl = split_url(url, protocol)
    if protocol == "http":
        http = require("tritonclient.http", "talking to a Triton server over HTTP", extra="serve")
        return http.InferenceServerClient(address, ssl=ssl, connection_timeout=timeout, network_timeout=timeout)
    grpc = require("tritonclient.grpc", "talking to a Triton server over gRPC", extra="serve")
    return grpc.InferenceServerClient(address, ssl=ssl)


def _friendly(exc: Exception, url: str, model: str | None = None) -> DeployKitError:
    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, (ConnectionError, OSError)) or "UNAVAILABLE" in text or "failed to connect" in text.lower():
        return DeployKitError(f"cannot reach a Triton server at {url} ({text.splitlines()[0][:200]})", hint="start one with `deploykit serve`, or pass --url")
    if model and ("unknown model" in text or "not found" in text):
        return DeployKitError(f"the server at {url} has no model {model!r} ({text[:200]})", hint="see the models `deploykit serve` printed")
    return DeployKitError(f"the server at {url} refused the request: {text[:300]}")


def model_io(client, protocol: str, model: str, version: str = "") -> ModelIO:
    """Tensor names, input shape and max batch size from the server's metadata and config."""
    if protocol == "http":
        meta = client.get_model_metadata(model, version)
        config = client.get_model_config(model, version)
    else:
        meta = client.get_model_metadata(model, version, as_json=True)
        config = client.get_model_config(model, version, as_json=True).get("config", {})
    inputs, outputs = meta.get("inputs", []), meta.get("outputs", [])
    if len(inputs) != 1 or not outputs:
        raise DeployKitError(f"{model} has {len(inputs)} inputs: `deploykit infer` sends one image batch")
    return ModelIO(
        input_name=inputs[0]["name"],
        input_datatype=inputs[0]["datatype"],
        input_shape=tuple(int(d) for d in inputs[0]["shape"]),
        output_name=outputs[0]["name"],
        max_batch_size=int(config.get("max_batch_size", 0)),
    )


def infer_array(client, protocol: str, model: str, io: ModelIO, batch: np.ndarray, version: str = "", timeout: float | None = None) -> np.ndarray:
    """One request with ``batch`` (N x C x H x W float32); returns the first output."""
    module = require(f"tritonclient.{protocol}", "talking to a Triton server", extra="serve")
    batch = np.ascontiguousarray(batch, dtype=np.float32)
    tensor = module.InferInput(io.input_name, list(batch.shape), "FP32")
    if protocol == "http":
        tensor.set_data_from_numpy(batch, binary_data=True)
        output = module.InferRequestedOutput(io.output_name, binary_data=True)
        # (HTTP's `timeout` argument is a server-side queue timeout in microseconds; the network
        # timeout was set on the client.)
        result = client.infer(model, [tensor], model_version=version, outputs=[output])
    else:
        tensor.set_data_from_numpy(batch)
        output = module.InferRequestedOutput(io.output_name)
        result = client.infer(model, [tensor], model_version=version, outputs=[output], client_timeout=timeout)
    return result.as_numpy(io.output_name)


def model_statistics(url: str | None, model: str, access_token: str | None = None, protocol: str = "http") -> dict[str, Any]:
    """Triton's statistics for ``model`` (``/v2/models/<m>/stats``) as plain JSON.

    The local server protects the statistics endpoint with a token (PyTriton's default); it is
    in the server's status (``LocalServer.status.access_token``).
    """
    client = connect(url, protocol)
    try:
        if protocol == "http":
            headers = {"triton-access-token": access_token} if access_token else None
            stats = client.get_inference_statistics(model, headers=headers)
        else:
            headers = {"triton-grpc-protocol-triton-access-token": access_token} if access_token else None
            stats = client.get_inference_statistics(model, headers=headers, as_json=True)
    finally:
        client.close()
    (entry,) = [s for s in stats.get("model_stats", []) if s.get("name") == model] or [{}]
    return entry


def batching_summary(stats: dict[str, Any]) -> dict[str, Any]:
    """inference_count, execution_count and {batch size: executions} from a model's statistics."""
    batches = {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats.get("batch_stats", [])}
    return {
        "inference_count": int(stats.get("inference_count", 0)),
        "execution_count": int(stats.get("execution_count", 0)),
        "batches": dict(sorted(batches.items())),
    }


# ---- preprocessing --------------------------------------------------------------------------------------
def _read_sidecar(repo: str | os.PathLike | None, model: str) -> dict[str, Any]:
    from deploykit.artifacts import SIDECAR
    from deploykit.repository import validate_name

    if repo is None:
        return {}
    path = Path(repo) / validate_name(model, "model") / SIDECAR
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def resolve_preprocessing(model: str, repo: str | os.PathLike | None) -> tuple[_Pre, list[str] | None, str]:
    """Preprocessing and labels for ``model``: the sidecar's, else the zoo card's, else ImageNet's."""
    sidecar = _read_sidecar(repo, model)
    labels = sidecar.get("labels")
    labels = [str(x) for x in labels] if isinstance(labels, list) else None
    pre = sidecar.get("preprocessing")
    if isinstance(pre, dict) and "crop" in pre:
        try:
            return (
                _Pre(
                    resize=int(pre.get("resize", pre["crop"])),
                    crop=int(pre["crop"]),
                    mean=tuple(float(v) for v in pre.get("mean", _Pre.mean)),
                    std=tuple(float(v) for v in pre.get("std", _Pre.std)),
                    interpolation=str(pre.get("interpolation", "bilinear")),
                ),
                labels,
                "sidecar",
            )
        except (TypeError, ValueError):
            pass
    base = sidecar.get("model") or model.rsplit("_", 2)[0]
    try:
        from deploykit.zoo import get_card

        card = get_card(base)
        p = card.preprocessing
        return _Pre(p.resize, p.crop, tuple(p.mean), tuple(p.std), p.interpolation), labels, "model card"
    except Exception:  # not a zoo model (or the zoo is not installed): ImageNet defaults
        return _Pre(256, 224), labels, "imagenet default"


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _request(client, url: str, protocol: str, model: str, version: str, timeout: float, pre: _Pre, rgb: list) -> tuple[np.ndarray, float]:
    """Check the model takes a batch of these images, send them, return (logits, round-trip ms)."""
    from deploykit.data import preprocess

    try:
        io = model_io(client, protocol, model, version)
    except DeployKitError:
        raise
    except Exception as exc:  # tritonclient / gevent / grpc errors
        raise _friendly(exc, url, model) from None
    if io.input_datatype != "FP32" or len(io.input_shape) != 4 or io.max_batch_size < 1:
        raise DeployKitError(f"{model} takes {io.input_datatype} {list(io.input_shape)}: not a batched image classifier")
    if len(rgb) > io.max_batch_size:
        raise UsageError(f"{len(rgb)} images exceed {model}'s max_batch_size {io.max_batch_size}", hint="send fewer images")
    height, width = io.input_shape[2], io.input_shape[3]
    size = height if height > 0 and height == width and height != pre.crop else None
    batch = np.stack([preprocess(image, pre, size) for image in rgb])
    start = time.perf_counter()
    try:
        logits = infer_array(client, protocol, model, io, batch, version, timeout)
    except Exception as exc:
        raise _friendly(exc, url, model) from None
    return logits, (time.perf_counter() - start) * 1e3


def _top(images, probs: np.ndarray, labels: list[str] | None, top: int) -> tuple[ImagePrediction, ...]:
    k = min(top, probs.shape[1])
    results = []
    for path, p in zip(images, probs, strict=True):
        order = np.argsort(-p, kind="stable")[:k]
        predictions = tuple(Prediction(int(i), labels[i] if labels and i < len(labels) else None, float(p[i])) for i in order)
        results.append(ImagePrediction(image=str(path), top=predictions))
    return tuple(results)


def infer(
    model: str,
    images: Sequence[str | os.PathLike],
    url: str | None = None,
    protocol: str = "http",
    top: int = 5,
    repo: str | os.PathLike | None = "models",
    version: str = "",
    timeout: float = 60.0,
) -> InferResult:
    """Preprocess ``images``, send them as one batch, return the top-``top`` classes per image."""
    from deploykit.data import load_rgb

    if not images:
        raise UsageError("no images given")
    if len(images) > MAX_IMAGES:
        raise UsageError(f"{len(images)} images in one request; at most {MAX_IMAGES}")
    if top < 1:
        raise UsageError(f"--top must be >= 1, got {top}")
    url = url or DEFAULT_URLS[protocol if protocol in PROTOCOLS else "http"]
    pre, labels, source = resolve_preprocessing(model, repo)
    rgb = [load_rgb(p) for p in images]  # before connecting: a bad file is the user's first error

    client = connect(url, protocol, timeout)
    try:
        logits, round_trip_ms = _request(client, url, protocol, model, version, timeout, pre, rgb)
    finally:
        client.close()

    probs = _softmax(np.asarray(logits, dtype=np.float64).reshape(len(images), -1))
    results = _top(images, probs, labels, top)
    return InferResult(
        model=model,
        url=url,
        protocol=protocol,
        batch_size=len(images),
        round_trip_ms=round_trip_ms,
        preprocessing_source=source,
        results=results,
    )
