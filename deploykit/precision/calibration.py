"""Calibration data for INT8 (and the FP16 range check): images in, one checked array out.

Three sources, in the order a user meets them:

- a folder of images (ImageFolder layout or flat), preprocessed exactly like the model's
  input (:mod:`deploykit.data`), a seeded random subset when it holds more than needed, so an
  ImageFolder's first classes do not crowd out the rest;
- an ``.npy`` / ``.npz`` array, N x C x H x W float, already preprocessed;
- nothing: the bundled sample photos with standard training augmentation (random resized
  crops and flips, seeded). A handful of photos is a demo, not a deployment: the result
  carries a warning that says so.

The result's ``sha256`` hashes the final float32 array (shape included), so the same data
gives the same key whatever its source, and the conversion cache (:mod:`deploykit.precision.cache`)
can skip a calibration it has already done.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deploykit.errors import UsageError

if TYPE_CHECKING:
    from deploykit.preprocessing import Preprocessing

DEFAULT_CALIB_SIZE = 512  # ModelOpt recommends at least ~500 images for CNNs
DEFAULT_SAMPLE_CALIB_SIZE = 64  # augmented crops of the 8 sample photos
ARRAY_SUFFIXES = (".npy", ".npz")
SAMPLES_WARNING = (
    "calibrating on augmented crops of {photos} bundled sample photos: a demo, not a deployment; "
    "pass --calib-data with a few hundred images from your own data"
)


@dataclass(frozen=True)
class CalibrationSet:
    """Preprocessed calibration inputs and where they came from.

    ``array`` is N x C x H x W float32, ready for the model; ``kind`` is ``folder``, ``array``
    or ``samples``; ``available`` is how many items the source held (before sub-sampling).
    """

    array: np.ndarray
    kind: str
    source: str
    sha256: str
    available: int
    warnings: tuple[str, ...] = ()
    augmentation: str | None = None

    @property
    def size(self) -> int:
        return int(self.array.shape[0])

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "source": self.source,
            "size": self.size,
            "available": self.available,
            "sha256": self.sha256,
            "shape": list(self.array.shape),
            "augmentation": self.augmentation,
            "warnings": list(self.warnings),
        }


def array_sha256(array: np.ndarray) -> str:
    """sha256 of a float32 C-contiguous array and its shape (the identity of a calibration set)."""
    data = np.ascontiguousarray(array, dtype=np.float32)
    h = hashlib.sha256()
    h.update(repr(tuple(data.shape)).encode())
    h.update(data.tobytes())
    return h.hexdigest()


def _check_size(size: int | None, what: str = "--calib-size") -> None:
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise UsageError(f"{what} must be a positive integer, got {size!r}")


def _too_few(source: str, available: int, size: int, unit: str) -> UsageError:
    return UsageError(
        f"{source} has only {available} {unit}, fewer than --calib-size {size}",
        hint=f"add {unit}, or pass --calib-size {available} (or less)",
    )


def _subset(n: int, size: int, seed: int) -> np.ndarray:
    """Indices of ``size`` items out of ``n``: a seeded random subset, kept in file order."""
    if size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[:size])


# ---- .npy / .npz ----------------------------------------------------------------------------
def _npz_member(loaded: Any, path: Path, input_name: str | None) -> np.ndarray:
    """The one array of an ``.npz``, or the one named after the model input."""
    with loaded:
        names = list(loaded.files)
        if len(names) == 1:
            return loaded[names[0]]
        if input_name and input_name in names:
            return loaded[input_name]
        raise UsageError(
            f"{path} holds {len(names)} arrays ({', '.join(names[:5])}); which one is the input?",
            hint=f"keep one array in the .npz, or name it {input_name or 'after the model input'!r}",
        )


def load_array(
    path: str | os.PathLike,
    input_shape: Sequence[int],
    size: int | None = None,
    input_name: str | None = None,
    seed: int = 0,
    default_size: int | None = None,
) -> CalibrationSet:
    """An ``.npy``/``.npz`` file of preprocessed inputs, checked against ``input_shape`` (C, H, W).

    An ``.npz`` must hold one array, or one named after the model input. The array must be
    N x C x H x W of a floating dtype with finite values; it is used as float32.
    """
    _check_size(size)
    path = Path(path)
    expected = tuple(int(d) for d in input_shape)
    if not path.is_file():
        raise UsageError(f"calibration file {path} does not exist")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"cannot read calibration array {path}: {str(exc).splitlines()[0][:200]}",
            hint="save it with numpy.save / numpy.savez (no pickled objects)",
        ) from exc
    array = _npz_member(loaded, path, input_name) if isinstance(loaded, np.lib.npyio.NpzFile) else loaded
    if not np.issubdtype(array.dtype, np.floating):
        raise UsageError(
            f"{path} has dtype {array.dtype}; calibration data must be float (preprocessed, normalized)",
            hint="save the model's float32 input (after resize, crop and mean/std), not raw uint8 pixels",
        )
    if array.ndim != 4 or tuple(array.shape[1:]) != expected:
        want = " x ".join(["N", *map(str, expected)])
        raise UsageError(
            f"{path} has shape {tuple(array.shape)}; the model takes {want} (N x C x H x W)",
            hint="preprocess to the model's input size and channel-first layout",
        )
    if array.shape[0] == 0:
        raise UsageError(f"{path} holds no samples (N = 0)")
    available = int(array.shape[0])
    if size is not None and size > available:
        raise _too_few(str(path), available, size, "samples")
    take = min(available, size or default_size or DEFAULT_CALIB_SIZE)
    array = np.ascontiguousarray(array[_subset(available, take, seed)], dtype=np.float32)
    if not np.isfinite(array).all():
        raise UsageError(f"{path} contains NaN or infinite values")
    return CalibrationSet(array=array, kind="array", source=str(path), sha256=array_sha256(array), available=available)


# ---- image folders --------------------------------------------------------------------------
def load_folder(
    folder: str | os.PathLike,
    pre: Preprocessing,
    input_size: int,
    size: int | None = None,
    seed: int = 0,
    default_size: int | None = None,
) -> CalibrationSet:
    """Images from ``folder`` (ImageFolder or flat), preprocessed like the model's input.

    Raises UsageError when the folder is missing or empty, an image cannot be read, or it
    holds fewer images than ``size``.
    """
    from deploykit.data import list_images, load_rgb, preprocess

    _check_size(size)
    items = list_images(folder)  # UsageError: missing, not a folder, no images
    available = len(items)
    if size is not None and size > available:
        raise _too_few(f"calibration folder {folder}", available, size, "images")
    take = min(available, size or default_size or DEFAULT_CALIB_SIZE)
    chosen = [items[i] for i in _subset(available, take, seed)]
    array = np.stack([preprocess(load_rgb(item.path), pre, input_size) for item in chosen])
    classes = len({item.class_name for item in chosen if item.class_name})
    layout = f"ImageFolder, {classes} classes" if classes else "flat"
    return CalibrationSet(
        array=array,
        kind="folder",
        source=f"{Path(folder)} ({layout})",
        sha256=array_sha256(array),
        available=available,
    )


# ---- the bundled sample photos, augmented ---------------------------------------------------
def random_resized_crop(
    image: np.ndarray,
    out: int,
    rng: np.random.Generator,
    scale: tuple[float, float] = (0.08, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
    interpolation: str = "bilinear",
) -> np.ndarray:
    """torchvision's RandomResizedCrop + RandomHorizontalFlip on an H x W x 3 uint8 image."""
    from PIL import Image

    h, w = image.shape[:2]
    area = h * w
    box = None
    for _ in range(10):  # torchvision's algorithm: 10 tries, then the central crop
        target = area * rng.uniform(*scale)
        aspect = float(np.exp(rng.uniform(np.log(ratio[0]), np.log(ratio[1]))))
        cw = int(round(np.sqrt(target * aspect)))
        ch = int(round(np.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(rng.integers(0, h - ch + 1))
            left = int(rng.integers(0, w - cw + 1))
            box = (left, top, left + cw, top + ch)
            break
    if box is None:
        side = min(h, w)
        box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
    resample = getattr(Image.Resampling, interpolation.upper(), Image.Resampling.BILINEAR)
    crop = Image.fromarray(image).crop(box).resize((out, out), resample=resample)
    array = np.asarray(crop, dtype=np.uint8)
    if rng.random() < 0.5:
        array = array[:, ::-1]
    return np.ascontiguousarray(array)


def _normalize(image: np.ndarray, pre: Preprocessing) -> np.ndarray:
    """H x W x 3 uint8 -> 3 x H x W float32 with the model's mean/std (deploykit.data's last step)."""
    x = image.astype(np.float32) / 255.0
    x = (x - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1))


def load_samples(pre: Preprocessing, input_size: int, size: int | None = None, seed: int = 0) -> CalibrationSet:
    """``size`` augmented crops of the bundled sample photos, normalized like the model's input."""
    from deploykit.data import sample_images

    _check_size(size)
    size = size or DEFAULT_SAMPLE_CALIB_SIZE
    photos = sample_images()
    rng = np.random.default_rng(seed)
    arrays = []
    for i in range(size):
        _, image = photos[i % len(photos)]
        crop = random_resized_crop(image, input_size, rng, interpolation=pre.interpolation)
        arrays.append(_normalize(crop, pre))  # already the input size: no resize or center crop
    array = np.stack(arrays)
    return CalibrationSet(
        array=array,
        kind="samples",
        source=f"bundled sample photos ({len(photos)}: {', '.join(n for n, _ in photos)})",
        sha256=array_sha256(array),
        available=len(photos),
        warnings=(SAMPLES_WARNING.format(photos=len(photos)),),
        augmentation=f"RandomResizedCrop(scale=(0.08, 1), ratio=(3/4, 4/3)) + horizontal flip, seed {seed}",
    )


def load_calibration(
    data: str | os.PathLike | np.ndarray | None,
    input_shape: Sequence[int],
    pre: Preprocessing,
    size: int | None = None,
    input_name: str | None = None,
    seed: int = 0,
    default_size: int | None = None,
) -> CalibrationSet:
    """Calibration inputs for a model taking ``input_shape`` (C, H, W) preprocessed by ``pre``.

    ``data``: a folder of images, an ``.npy``/``.npz`` file, an in-memory array (N x C x H x W
    float), or None for the augmented sample photos. ``size`` None takes up to
    :data:`DEFAULT_CALIB_SIZE` items (:data:`DEFAULT_SAMPLE_CALIB_SIZE` crops of the samples);
    an explicit ``size`` larger than the source is an error. ``default_size`` replaces those
    defaults (still capped by what the source holds).
    """
    _check_size(size)
    _check_size(default_size, "default_size")
    channels, height, width = (int(d) for d in input_shape)
    if height != width:
        raise UsageError(f"calibration expects a square input, the model takes {height} x {width}")
    if data is None:
        return load_samples(pre, height, size or default_size, seed)
    if isinstance(data, np.ndarray):
        array = data
        if not np.issubdtype(array.dtype, np.floating) or array.ndim != 4 or tuple(array.shape[1:]) != (channels, height, width):
            raise UsageError(
                f"calibration array of shape {tuple(array.shape)} and dtype {array.dtype}; "
                f"the model takes float N x {channels} x {height} x {width}"
            )
        if size is not None and size > array.shape[0]:
            raise _too_few("the calibration array", int(array.shape[0]), size, "samples")
        take = min(int(array.shape[0]), size or default_size or DEFAULT_CALIB_SIZE)
        chosen = np.ascontiguousarray(array[_subset(int(array.shape[0]), take, seed)], dtype=np.float32)
        return CalibrationSet(
            array=chosen, kind="array", source="in-memory array", sha256=array_sha256(chosen), available=int(array.shape[0])
        )
    path = Path(data)
    if path.suffix.lower() in ARRAY_SUFFIXES:
        return load_array(path, (channels, height, width), size, input_name, seed, default_size)
    if path.exists() and not path.is_dir():
        raise UsageError(
            f"calibration data {path} is neither a folder of images nor an .npy/.npz array",
            hint="pass a folder (ImageFolder or flat) or a preprocessed N x C x H x W .npy/.npz file",
        )
    if not path.exists():
        raise UsageError(f"calibration data {path} does not exist", hint="pass a folder of images or an .npy/.npz file")
    return load_folder(path, pre, height, size, seed, default_size)
