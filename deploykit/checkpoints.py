"""Loading user weights (``--weights PATH``) into a zoo model, safely and with clear errors.

Contract of :func:`load_weights`:
- ``torch.load(..., weights_only=True)`` only: a checkpoint can never run code.
- Accepts a plain state dict, or a dict holding it under ``state_dict``, ``model`` or
  ``model_state_dict`` (the usual training-script layouts).
- Strips ``module.`` (DataParallel/DDP) and ``_orig_mod.`` (torch.compile) key prefixes.
- Drops GoogLeNet's auxiliary-classifier weights (``aux1.*``, ``aux2.*``) when the model
  was built without them: they exist only for training, and torchvision's checkpoint has them.
- Anything else that does not fit (missing or unexpected keys, other shapes) is a
  :class:`UsageError` naming a few keys, and suggesting ``--num-classes`` when only the
  classifier's output size differs.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deploykit.errors import UsageError
from deploykit.fileio import sha256_file

if TYPE_CHECKING:
    import torch
    from torch import nn

CONTAINER_KEYS = ("state_dict", "model", "model_state_dict")
STRIPPED_PREFIXES = ("module.", "_orig_mod.")
AUX_PREFIXES = ("aux1.", "aux2.")
_SHOW = 5


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_weights` did: the file's hash, how many tensors, what it dropped."""

    path: Path
    sha256: str
    tensors: int
    dropped_keys: tuple[str, ...] = ()
    container_key: str | None = None
    stripped_prefixes: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "tensors": self.tensors,
            "dropped_keys": list(self.dropped_keys),
            "container_key": self.container_key,
            "stripped_prefixes": list(self.stripped_prefixes),
            "notes": list(self.notes),
        }


def _few(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOW])
    return shown + (f", ... ({len(keys)} in all)" if len(keys) > _SHOW else "")


def read_checkpoint(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], str | None]:
    """The state dict inside a checkpoint file, and the container key it was under (or None)."""
    import torch

    path = Path(path)
    if not path.exists():
        raise UsageError(f"weights file {path} does not exist")
    if not path.is_file():
        raise UsageError(f"weights path {path} is not a file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses pickled classes (a whole nn.Module, custom objects).
        raise UsageError(
            f"{path} is not a weights-only checkpoint: {str(exc).splitlines()[0][:200]}",
            hint="save the weights with torch.save(model.state_dict(), path); deploykit never unpickles code",
        ) from exc
    except Exception as exc:  # torch.load fails in many ways on a file that is not a checkpoint
        raise UsageError(
            f"{path} is not a PyTorch checkpoint ({str(exc).splitlines()[0][:160] if str(exc) else type(exc).__name__})",
            hint="pass a file written by torch.save(model.state_dict(), path)",
        ) from exc

    container = None
    if isinstance(obj, Mapping) and not _is_state_dict(obj):
        for key in CONTAINER_KEYS:
            if isinstance(obj.get(key), Mapping) and _is_state_dict(obj[key]):
                obj, container = obj[key], key
                break
        else:
            keys = ", ".join(map(str, list(obj)[:8]))
            raise UsageError(
                f"{path} holds no state dict (top-level keys: {keys or 'none'})",
                hint=f"expected a state dict, or one under {', '.join(map(repr, CONTAINER_KEYS))}",
            )
    if not isinstance(obj, Mapping) or not _is_state_dict(obj):
        raise UsageError(
            f"{path} holds a {type(obj).__name__}, not a state dict",
            hint="save the weights with torch.save(model.state_dict(), path)",
        )
    state = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    # NaN/inf weights are bad input, not a failed check: every output would be garbage.
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(torch.isfinite(v).all())]
    if bad:
        raise UsageError(
            f"{path}: the weights contain NaN/inf ({_few(bad)})",
            hint="the training diverged or the file is damaged: save weights from a healthy run",
        )
    return state, container


def _is_state_dict(obj: Mapping) -> bool:
    import torch

    values = list(obj.values())
    return bool(values) and all(isinstance(k, str) for k in obj) and sum(
        isinstance(v, torch.Tensor) for v in values
    ) >= max(1, len(values) // 2)


def _strip_prefixes(state: dict[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    stripped = []
    for prefix in STRIPPED_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
            stripped.append(prefix)
    return state, tuple(stripped)


def load_weights(model: nn.Module, path: str | os.PathLike) -> LoadReport:
    """Load a checkpoint into ``model`` (in place) following the module contract above."""
    path = Path(path)
    state, container = read_checkpoint(path)
    state, stripped = _strip_prefixes(state)
    expected = model.state_dict()
    notes: list[str] = []

    dropped: list[str] = []
    has_aux = any(k.startswith(AUX_PREFIXES) for k in expected)
    if not has_aux:
        dropped = sorted(k for k in state if k.startswith(AUX_PREFIXES))
        if dropped:
            state = {k: v for k, v in state.items() if k not in set(dropped)}
            notes.append(
                f"dropped {len(dropped)} auxiliary-classifier tensors (aux1, aux2): "
                "they exist only for training and are not in the deployed graph"
            )

    missing = [k for k in expected if k not in state]
    # BatchNorm's step counter is absent from old checkpoints and irrelevant in eval mode.
    counters = [k for k in missing if k.endswith("num_batches_tracked")]
    missing = [k for k in missing if k not in counters]
    unexpected = [k for k in state if k not in expected]
    mismatched = [k for k in state if k in expected and tuple(state[k].shape) != tuple(expected[k].shape)]

    if mismatched:
        details = [f"{k} {tuple(state[k].shape)} vs model {tuple(expected[k].shape)}" for k in mismatched]
        classes = _checkpoint_classes(state, expected, mismatched)
        hint = (
            f"the checkpoint's classifier has {classes} outputs: pass --num-classes {classes}"
            if classes
            else "is the checkpoint from another architecture or configuration?"
        )
        raise UsageError(f"{path}: {len(mismatched)} tensor shapes differ from the model: {_few(details)}", hint=hint)
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing keys: {_few(missing)}")
        if unexpected:
            parts.append(f"unexpected keys: {_few(unexpected)}")
        raise UsageError(
            f"{path} does not match the model ({'; '.join(parts)})",
            hint="is the checkpoint from another architecture? deploykit keeps torchvision's parameter names",
        )

    for key in counters:
        state[key] = expected[key]
    model.load_state_dict(state, strict=True)
    return LoadReport(
        path=path,
        sha256=sha256_file(path),
        tensors=len(state),
        dropped_keys=tuple(dropped),
        container_key=container,
        stripped_prefixes=stripped,
        notes=tuple(notes),
    )


def _checkpoint_classes(state: Mapping[str, Any], expected: Mapping[str, Any], mismatched: list[str]) -> int | None:
    """The checkpoint's class count when the only difference is the output size of the last layer."""
    last_weight = next((k for k in reversed(list(expected)) if k.endswith(".weight")), None)
    if last_weight is None or last_weight not in mismatched:
        return None
    bias = last_weight[: -len("weight")] + "bias"
    allowed = {last_weight, bias}
    if any(k not in allowed for k in mismatched):
        return None
    ours, theirs = tuple(expected[last_weight].shape), tuple(state[last_weight].shape)
    if len(ours) != len(theirs) or ours[1:] != theirs[1:]:
        return None
    return int(theirs[0])
