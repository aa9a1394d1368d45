"""The reference a variant is compared with: the PyTorch FP32 network with the variant's weights."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from deploykit.errors import UsageError

if TYPE_CHECKING:
    from torch import nn

    from deploykit.artifacts import Artifact
    from deploykit.runtimes.base import Runner

RANDOM_INIT = "random-init"  # what export records when no weights file was given


@contextlib.contextmanager
def exact_fp32() -> Iterator[None]:
    """Turn TF32 off for CUDA matmuls and cuDNN convolutions inside the block (restored after).

    PyTorch lets cuDNN convolutions use TF32 by default on Ampere and later: a "FP32"
    reference would then carry 10-bit-mantissa rounding that gets blamed on the engine.
    """
    import torch

    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def reference_runner(module: nn.Module, device: str = "cpu", input_size: int | None = None) -> Runner:
    """The FP32 PyTorch reference as a runner (eval mode; use it inside :func:`exact_fp32`)."""
    from deploykit.runtimes import get_runner

    return get_runner("torch", module, device=device, precision="fp32", input_size=input_size, name="torch-fp32")


def recalibrate_batchnorm(model: nn.Module, batches: Iterable[Any], device: str = "cpu") -> int:
    """Re-estimate every BatchNorm layer's running mean and variance on ``batches``.

    Random-weight networks with untouched statistics (mean 0, variance 1) can collapse to a
    constant output; statistics measured on real images make each layer normalize what it
    really sees, so the logits depend on the input again. Only BatchNorm layers run in
    training mode (dropout stays off); the statistics are the plain average over all
    batches (``momentum=None``). Weights are not changed. ``batches`` are arrays, torch
    tensors or :class:`deploykit.data.Batch`; each needs more than one image. Returns the
    number of images seen; the model is left in eval mode.
    """
    import torch

    from deploykit.parity.compare import as_batch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        raise UsageError(f"{type(model).__name__} has no BatchNorm layers to recalibrate")
    saved = [m.momentum for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over every batch seen
        m.train()
    seen = 0
    try:
        with torch.no_grad():
            for index, item in enumerate(batches):
                x = item if isinstance(item, torch.Tensor) else torch.from_numpy(as_batch(item, index).array)
                if len(x) < 2:
                    raise UsageError("BatchNorm recalibration needs batches of at least 2 images")
                model(x.to(device))
                seen += len(x)
    finally:
        for m, momentum in zip(norms, saved, strict=True):
            m.momentum = momentum
        model.eval()
    if seen == 0:
        raise UsageError("no batches to recalibrate BatchNorm on")
    return seen


def reference_module(
    artifact: Artifact,
    module: nn.Module | None,
    weights: str | os.PathLike | None,
    num_classes: int,
    notes: list[str],
) -> tuple[nn.Module | None, dict[str, Any]]:
    """The reference network for ``artifact`` and facts about its weights (warnings go to
    ``notes``); the network is None when the reference is the FP32 ONNX file itself
    (see :func:`onnx_reference`)."""
    exported_sha = artifact.weights_sha256
    if module is not None:
        return module, {"weights": "module passed by the caller"}
    from deploykit.checkpoints import load_weights
    from deploykit.weights import rebuild
    from deploykit.zoo import get_model

    model = artifact.model
    if weights is None and (rebuilt := rebuild(artifact, num_classes)) is not None:
        return rebuilt[0], rebuilt[1]  # random init from its seed, published weights, a factory
    entry = artifact.meta.get("weights")
    if weights is None and isinstance(entry, dict) and entry.get("kind") in ("onnx", "module"):
        what = "an imported ONNX file" if entry["kind"] == "onnx" else "a module exported without a factory"
        notes.append(f"the reference is the FP32 ONNX file under ONNX Runtime: {model} is {what}, with no PyTorch source to run")
        return None, {"weights": f"{model}_onnx_fp32 under onnxruntime", "weights_sha256": entry.get("sha256")}
    net = get_model(model, num_classes=num_classes)
    if weights is None:
        # Fresh random weights are not the ones the variant was exported from: every
        # comparison would fail for reasons that have nothing to do with the conversion.
        if exported_sha == RANDOM_INIT:
            raise UsageError(
                f"{model} was exported with random weights that were not saved, so no reference can match it",
                hint="save the weights (torch.save(model.state_dict(), PATH)), export with --weights PATH "
                "and pass the same file here",
            )
        raise UsageError(
            f"no weights given for the reference of {model}"
            + (f" (the variant was exported from sha256 {exported_sha[:12]}...)" if exported_sha else ""),
            hint="pass the file the variant was exported from with --weights PATH",
        )
    report = load_weights(net, weights)
    if exported_sha and exported_sha != report.sha256:
        notes.append(
            f"--weights {weights} (sha256 {report.sha256[:12]}...) is not the file the variant was "
            f"exported from ({exported_sha[:12]}...): differences may be the weights, not the conversion"
        )
    return net, {"weights": str(weights), "weights_sha256": report.sha256}


def onnx_reference(repo: Any, model: str) -> Runner:
    """The FP32 ONNX variant under ONNX Runtime: the reference of a model with no PyTorch source."""
    from deploykit.runtimes import get_runner

    return get_runner("onnxruntime", repo.get(model, "onnx", "fp32"), name="onnxruntime-fp32")
