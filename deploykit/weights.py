"""Where a network's weights come from, recorded so that every later stage rebuilds the same network.

Four origins, one sidecar entry (``weights``) each:

- ``{"kind": "random", "seed": 0, "sha256": ...}``: zoo initialisation under ``torch.manual_seed(seed)``
  (``--seed``, default 0). Parity and bench rebuild it from the seed and check the hash.
- ``{"kind": "file", "path": ..., "sha256": ...}``: a checkpoint (``--weights PATH``); the same file
  must be passed again (``--weights PATH``) to rebuild the reference.
- ``{"kind": "torchvision", "name": "ResNet50_Weights.IMAGENET1K_V2", "sha256": ...}``: published
  weights by name (``--weights DEFAULT``), rebuilt from torchvision's download cache.
- ``{"kind": "module", "factory": "pkg.mod:fn" | null, "seed": 0, "sha256": ...}``: any ``nn.Module``
  (``export_module`` / ``--module``); rebuilt when a factory is recorded.

``sha256`` is :func:`state_sha256` of the loaded state dict, except for a file, where it is the
file's own hash (what ``--weights PATH`` has always recorded).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from deploykit.errors import UsageError

if TYPE_CHECKING:
    from torch import nn

    from deploykit.artifacts import Artifact

RANDOM_INIT = "random-init"  # what exports before --seed recorded for unsaved random weights


def state_sha256(module: nn.Module) -> str:
    """A hash of the module's state dict (names, dtypes, shapes and values, in name order)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}\n".encode())
        digest.update(t.reshape(-1).numpy() if t.numel() else b"")  # the tensor's own buffer: no copy of the weights
    return digest.hexdigest()


@contextlib.contextmanager
def seeded(seed: int) -> Iterator[None]:
    """``torch.manual_seed(seed)`` inside the block; the caller's random state is restored after."""
    import torch

    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise UsageError(f"--seed must be an integer >= 0, got {seed!r}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def random_zoo_model(name: str, num_classes: int, seed: int, **options: Any) -> tuple[nn.Module, dict[str, Any]]:
    """The zoo network initialised under ``seed``, and its sidecar entry."""
    import torch

    from deploykit.zoo import get_model

    with seeded(seed):
        module = get_model(name, num_classes=num_classes, **options)
    entry = {"kind": "random", "seed": seed, "sha256": state_sha256(module), "torch": torch.__version__}
    return module.eval(), entry


def file_weights(module: nn.Module, path: str | os.PathLike) -> tuple[dict[str, Any], Any]:
    """Load a checkpoint file into ``module``: its sidecar entry and the loader's report."""
    from deploykit.checkpoints import load_weights

    report = load_weights(module, path)
    return {"kind": "file", **report.to_dict()}, report


def pretrained_zoo_model(name: str, weight_name: str, num_classes: int | None) -> tuple[nn.Module, dict[str, Any], Any]:
    """The zoo network with torchvision's published weights ``weight_name``: module, entry, the weight."""
    from deploykit import pretrained
    from deploykit.checkpoints import load_weights
    from deploykit.zoo import get_card, get_model

    weight = pretrained.resolve(get_card(name), weight_name)
    classes = len(weight.categories) or 1000
    if num_classes not in (None, classes):
        raise UsageError(
            f"{weight.torchvision} has {classes} classes, not --num-classes {num_classes}",
            hint="drop --num-classes (published weights fix it), or fine-tune and pass your own --weights PATH",
        )
    path = pretrained.fetch(weight)
    module = get_model(name, num_classes=classes, **weight.network_options).eval()
    try:
        report = load_weights(module, path)
    except UsageError as exc:
        raise UsageError(f"{exc.message} (the cached {weight.torchvision})", hint=f"delete {path} so it downloads again") from exc
    entry = {
        "kind": "torchvision",
        **weight.to_dict(),
        "sha256": report.sha256,
        "hash_prefix_ok": pretrained.hash_matches(weight, report.sha256),
        "dropped_keys": list(report.dropped_keys),
    }
    return module, entry, weight


def _factory(spec: str) -> Any:
    """``package.module:function`` -> the function (UsageError for anything that does not resolve)."""
    import importlib

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"--module {spec!r} is not MODULE:FACTORY", hint="e.g. --module mypackage.nets:build_net")
    try:
        target = importlib.import_module(module_name)
    except ImportError as exc:
        raise UsageError(f"cannot import {module_name!r} for --module {spec}: {exc}") from exc
    for part in attr.split("."):
        if not hasattr(target, part):
            raise UsageError(f"{module_name} has no {attr!r} (--module {spec})")
        target = getattr(target, part)
    if not callable(target):
        raise UsageError(f"--module {spec} is not callable")
    return target


def module_from_factory(spec: str, seed: int) -> tuple[nn.Module, dict[str, Any]]:
    """Call the factory ``spec`` under ``seed``: the module and its sidecar entry."""
    from torch import nn

    with seeded(seed):
        module = _factory(spec)()
    if not isinstance(module, nn.Module):
        raise UsageError(f"--module {spec} returned {type(module).__name__}, not a torch.nn.Module")
    return module.eval(), {"kind": "module", "factory": spec, "seed": seed, "sha256": state_sha256(module)}


def _checked(module: nn.Module, recorded: Any, found: str, what: str) -> nn.Module:
    """``module`` when the rebuilt weights hash to what the sidecar recorded (else a UsageError)."""
    if recorded and found != recorded:
        raise UsageError(
            f"rebuilding {what} gives other weights than the exported ones "
            f"(sha256 {found[:12]}... vs {str(recorded)[:12]}...)",
            hint="another torch version initialises differently, or the file changed: pass the weights with --weights PATH",
        )
    return module


def rebuild(artifact: Artifact, num_classes: int) -> tuple[nn.Module, dict[str, Any]] | None:
    """The network ``artifact`` was exported from, rebuilt from its sidecar, with facts for the
    report; None when the sidecar does not say enough (a file, an unsaved module, an ONNX import)."""
    entry = artifact.meta.get("weights")
    if not isinstance(entry, Mapping):
        return None
    kind = entry.get("kind")
    if kind == "random":
        what = f"random init, seed {entry['seed']}"
        module, new = random_zoo_model(artifact.model, num_classes, int(entry["seed"]))
    elif kind == "torchvision":
        what = f"torchvision {entry['name']}"
        module, new, _ = pretrained_zoo_model(artifact.model, str(entry["name"]).rsplit(".", 1)[-1], num_classes)
    elif kind == "module" and entry.get("factory"):
        what = f"{entry['factory']}() with seed {entry.get('seed', 0)}"
        module, new = module_from_factory(str(entry["factory"]), int(entry.get("seed", 0)))
    else:
        return None
    _checked(module, entry.get("sha256"), new["sha256"], what)
    return module, {"weights": what, "weights_sha256": new["sha256"]}
