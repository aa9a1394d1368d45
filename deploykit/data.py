"""Images in, network input out: the one place that loads pictures and preprocesses them.

Export verification, parity checks, INT8 calibration and the Triton client all feed the
network through these functions, so every stage sees the same pixels for the same photo.
Labels for a folder of images (ImageFolder class folders or a labels file) are read here too.

The preprocessing follows torchvision's PIL pipeline for ImageNet classifiers
(``Resize(resize)`` on the short side, ``CenterCrop(crop)``, ``ToTensor``, ``Normalize``),
done with PIL and numpy only, so the data path needs no torch.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from deploykit.errors import UsageError

if TYPE_CHECKING:
    from deploykit.zoo import Preprocessing

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm")

# Public-domain photos bundled inside scikit-image (no download): varied subjects, sizes,
# aspect ratios, and two grayscale pictures that must come out as three equal channels.
SAMPLE_IMAGES = (
    "astronaut",
    "chelsea",
    "coffee",
    "rocket",
    "camera",
    "hubble_deep_field",
    "immunohistochemistry",
    "coins",
)

_INTERPOLATIONS = ("nearest", "bilinear", "bicubic", "lanczos", "box", "hamming")


@dataclass(frozen=True)
class ImageItem:
    """One image file; ``label``/``class_name`` come from an ImageFolder layout, else None."""

    path: Path
    label: int | None = None
    class_name: str | None = None

    @property
    def name(self) -> str:
        """``class/file.jpg`` in an ImageFolder layout, else the file name."""
        return f"{self.class_name}/{self.path.name}" if self.class_name else self.path.name


@dataclass(frozen=True)
class Batch:
    """A preprocessed batch: ``array`` N x 3 x H x W float32, one name per image.

    ``labels`` is an int64 array when every image of the batch has a label (ImageFolder
    layout), else None.
    """

    array: np.ndarray
    labels: np.ndarray | None
    names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.names)


# ---- loading -------------------------------------------------------------------------------
def to_rgb(image: np.ndarray) -> np.ndarray:
    """Any H x W (gray), H x W x 1, H x W x 3 or H x W x 4 image -> H x W x 3 uint8 RGB."""
    image = np.asarray(image)
    if image.dtype == bool:
        image = image.astype(np.uint8) * 255
    elif image.dtype != np.uint8:
        if np.issubdtype(image.dtype, np.floating) and image.size and image.max() <= 1.0:
            image = image * 255.0  # skimage-style float images in [0, 1]
        image = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise UsageError(f"not an image: array of shape {image.shape}", hint="expected H x W x 3 RGB")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]  # drop alpha
    return np.ascontiguousarray(image)


def sample_images(names: Sequence[str] = SAMPLE_IMAGES) -> list[tuple[str, np.ndarray]]:
    """The scikit-image sample photos as ``(name, H x W x 3 uint8 RGB)``; no network needed."""
    from deploykit._deps import require

    skdata = require("skimage.data", "the sample images used for verification")
    folder = Path(skdata.__file__).parent
    out = []
    for name in names:
        loader = getattr(skdata, name, None)
        if loader is None:
            raise UsageError(f"scikit-image has no sample image {name!r}")
        # The packaged file read with PIL, as scikit-image's loader does, without importing
        # skimage.io (0.25 s of an export's CPU); the loader where the file is not packaged.
        file = folder / _SAMPLE_FILES.get(name, "")
        out.append((name, to_rgb(_read_pil(file) if file.is_file() else loader())))
    return out


# scikit-image's file of each sample photo, inside its data folder.
_SAMPLE_FILES = {
    "astronaut": "astronaut.png", "chelsea": "chelsea.png", "coffee": "coffee.png", "rocket": "rocket.jpg",
    "camera": "camera.png", "hubble_deep_field": "hubble_deep_field.jpg", "immunohistochemistry": "ihc.png",
    "coins": "coins.png",
}  # fmt: skip


def _read_pil(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img)


def load_rgb(path: str | os.PathLike) -> np.ndarray:
    """Read an image file as H x W x 3 uint8 RGB (EXIF rotation applied, alpha dropped)."""
    from deploykit._deps import require

    pil = require("PIL.Image", "reading image files")
    from PIL import ImageOps

    path = Path(path)
    if not path.is_file():
        raise UsageError(f"image {path} does not exist")
    try:
        with pil.open(path) as img:
            img = ImageOps.exif_transpose(img)
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, ValueError, pil.DecompressionBombError) as exc:
        raise UsageError(f"cannot read image {path}: {exc}", hint="is it a JPEG/PNG image?") from exc


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _images_under(folder: Path, seen: set[str]) -> list[Path]:
    """Images under ``folder``, following symlinks but visiting each real folder and file once.

    ``seen`` holds the real paths already visited (shared across class folders), so a
    symlink loop or two links to one folder neither repeats images nor walks forever.
    """
    out = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in sorted(dirs) if not d.startswith(".") and _first_visit(Path(root) / d, seen)]
        out.extend(p for p in (Path(root) / f for f in sorted(files)) if _is_image(p) and _first_visit(p, seen))
    return out


def _first_visit(path: Path, seen: set[str]) -> bool:
    real = os.path.realpath(path)
    if real in seen:
        return False
    seen.add(real)
    return True


def list_images(folder: str | os.PathLike) -> list[ImageItem]:
    """The images in ``folder``, in a stable (sorted) order.

    Two layouts:
    - ImageFolder (torchvision's): one subfolder per class, searched recursively; class
      names are sorted and their index is the label (``n01440764/`` ... gives ImageNet order
      when all 1000 synset folders are there).
    - flat: image files directly in ``folder``; labels are None.
    A missing folder, no images, or loose images beside class folders is a UsageError.
    """
    folder = Path(folder)
    if not folder.exists():
        raise UsageError(f"image folder {folder} does not exist")
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder", hint="pass a folder of images (or of class subfolders)")
    seen = {os.path.realpath(folder)}
    loose = [p for p in sorted(folder.iterdir()) if _is_image(p) and _first_visit(p, seen)]
    classes = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    per_class = [(c, _images_under(c, seen) if _first_visit(c, seen) else []) for c in classes]
    per_class = [(c, files) for c, files in per_class if files]
    if per_class and loose:
        raise UsageError(
            f"{folder} mixes class subfolders with loose images ({loose[0].name}, ...)",
            hint="use either one subfolder per class (ImageFolder) or a flat folder of images",
        )
    if per_class:
        return [
            ImageItem(path=p, label=index, class_name=c.name)
            for index, (c, files) in enumerate(per_class)
            for p in files
        ]
    if loose:
        return [ImageItem(path=p) for p in loose]
    raise UsageError(
        f"no images in {folder}",
        hint=f"expected files ending in {', '.join(IMAGE_EXTENSIONS[:4])}, ... (or class subfolders)",
    )


def load_images(folder: str | os.PathLike | None = None, limit: int | None = None) -> list[tuple[str, np.ndarray]]:
    """``(name, RGB image)`` pairs from ``folder`` (first ``limit`` files), or the sample photos."""
    if folder is None:
        images = sample_images()
        return images[:limit] if limit else images
    items = list_images(folder)
    if limit:
        items = items[:limit]
    return [(item.name, load_rgb(item.path)) for item in items]


# ---- preprocessing ---------------------------------------------------------------------------
def _sizes(pre: Preprocessing, size: int | None) -> tuple[int, int]:
    """(resize, crop): ``size`` overrides the crop and scales the resize by the card's ratio."""
    if size is None:
        resize, crop = int(pre.resize), int(pre.crop)
    else:
        if not isinstance(size, int) or size < 1:
            raise UsageError(f"input size must be a positive integer, got {size!r}")
        crop = size
        resize = int(round(size * pre.resize / pre.crop))
    return max(resize, crop), crop


def preprocess(image: np.ndarray, pre: Preprocessing, size: int | None = None) -> np.ndarray:
    """One image (H x W x 3 uint8 RGB, or gray) -> 3 x crop x crop float32, normalized.

    Resize the short side to ``pre.resize`` (aspect kept, long side truncated as
    torchvision does), center-crop ``pre.crop`` (or ``size``, with the resize scaled by the
    same ratio), scale to [0, 1], subtract ``pre.mean`` and divide by ``pre.std``.
    """
    from deploykit._deps import require

    pil = require("PIL.Image", "resizing images")
    interpolation = pre.interpolation.lower()
    if interpolation not in _INTERPOLATIONS:
        raise UsageError(f"unknown interpolation {pre.interpolation!r}", hint=f"choose from {', '.join(_INTERPOLATIONS)}")
    resample = getattr(pil.Resampling, interpolation.upper())
    resize, crop = _sizes(pre, size)

    rgb = to_rgb(image)
    h, w = rgb.shape[:2]
    if h <= w:
        new_h, new_w = resize, int(resize * w / h)
    else:
        new_h, new_w = int(resize * h / w), resize
    img = pil.fromarray(rgb)
    if (new_h, new_w) != (h, w):
        img = img.resize((new_w, new_h), resample=resample)
    top = int(round((new_h - crop) / 2.0))
    left = int(round((new_w - crop) / 2.0))
    img = img.crop((left, top, left + crop, top + crop))

    x = np.asarray(img, dtype=np.float32) / 255.0
    x = (x - np.asarray(pre.mean, dtype=np.float32)) / np.asarray(pre.std, dtype=np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1), dtype=np.float32)


def preprocess_batch(images: Iterable[np.ndarray], pre: Preprocessing, size: int | None = None) -> np.ndarray:
    """Several images -> N x 3 x crop x crop float32."""
    arrays = [preprocess(image, pre, size) for image in images]
    if not arrays:
        raise UsageError("no images to preprocess")
    return np.stack(arrays)


def iter_batches(
    items: Iterable[ImageItem | tuple[str, np.ndarray]],
    batch_size: int,
    pre: Preprocessing,
    size: int | None = None,
) -> Iterator[Batch]:
    """Preprocessed batches of ``batch_size`` (the last one may be smaller).

    Files are read only when their batch is built, so a folder of any size streams through
    in constant memory. ``items`` are :class:`ImageItem` (from :func:`list_images`) or
    ``(name, image)`` pairs (from :func:`sample_images`).
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise UsageError(f"batch size must be a positive integer, got {batch_size!r}")

    def flush(chunk: list) -> Batch:
        arrays, labels, names = [], [], []
        for item in chunk:
            if isinstance(item, ImageItem):
                arrays.append(preprocess(load_rgb(item.path), pre, size))
                labels.append(item.label)
                names.append(item.name)
            else:
                name, image = item
                arrays.append(preprocess(image, pre, size))
                labels.append(None)
                names.append(str(name))
        known = None if any(label is None for label in labels) else np.asarray(labels, dtype=np.int64)
        return Batch(array=np.stack(arrays), labels=known, names=tuple(names))

    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == batch_size:
            yield flush(chunk)
            chunk = []
    if chunk:
        yield flush(chunk)


# ---- labels -------------------------------------------------------------------------------
def read_labels_file(path: str | os.PathLike) -> dict[str, int]:
    """A labels file: JSON ``{"file.jpg": 3, ...}``, or text lines ``file.jpg,3`` (comma, tab
    or spaces; ``#`` comments and a header line are skipped). Keys are file names or paths
    relative to the data folder."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"labels file {path} does not exist")
    text = path.read_text(encoding="utf-8", errors="replace")
    out: dict[str, int] = {}
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UsageError(f"labels file {path} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise UsageError(f"labels file {path} must hold an object {{file name: class index}}")
        items = list(data.items())
    else:
        items = []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            parts = [p for p in line.replace(",", " ").replace("\t", " ").split(" ") if p]
            if len(parts) != 2:
                raise UsageError(f"{path}:{number}: expected 'FILE,CLASS_INDEX', got {line!r}")
            if not items and not out and not _is_int(parts[1]):
                continue  # a header such as "filename,label"
            items.append((parts[0], parts[1]))
    for name, value in items:
        if isinstance(value, bool) or not _is_int(value):
            raise UsageError(f"labels file {path}: the class of {name!r} is {value!r}, not a class index")
        out[str(name)] = int(value)
    if not out:
        raise UsageError(f"labels file {path} holds no labels")
    return out


def _is_int(value: Any) -> bool:
    if isinstance(value, int):
        return True
    try:
        int(str(value))
    except ValueError:
        return False
    return True


def label_items(
    items: list[ImageItem],
    root: Path,
    num_classes: int,
    labels_file: str | os.PathLike | None = None,
) -> tuple[list[ImageItem], list[str]]:
    """Give every image its class index, or none at all; returns ``(items, notes)``.

    - ``labels_file``: every image must be listed (by file name or path relative to ``root``).
    - ImageFolder layout: folders named by integers are class indices (``0/``, ``1/``, ...,
      so a subset of classes is fine); other names follow torchvision's ImageFolder (sorted
      folder names -> 0..K-1), which matches the model's classes only when all
      ``num_classes`` folders are there; with fewer, accuracy is not measured (noted).
    Labels outside ``0..num_classes-1`` are a UsageError.
    """
    notes: list[str] = []
    if labels_file is not None:
        table = read_labels_file(labels_file)
        out = []
        for item in items:
            rel = item.path.relative_to(root).as_posix() if item.path.is_relative_to(root) else item.path.name
            for key in (rel, item.name, item.path.name):
                if key in table:
                    out.append(replace(item, label=table[key]))
                    break
            else:
                raise UsageError(
                    f"labels file {labels_file} has no entry for {rel}",
                    hint="list every image (file name or path relative to the data folder)",
                )
        _check_label_range([i.label for i in out], num_classes, f"labels file {labels_file}")
        return out, notes
    if not items or items[0].class_name is None:
        return items, notes
    classes = sorted({i.class_name for i in items})
    if all(c.isdigit() for c in classes):
        out = [replace(i, label=int(i.class_name)) for i in items]
        _check_label_range([i.label for i in out], num_classes, f"class folders of {root}")
        return out, notes
    if len(classes) > num_classes:
        raise UsageError(
            f"{root} has {len(classes)} class folders but the model has {num_classes} classes",
            hint="pass the right --num-classes, or a folder with one subfolder per model class",
        )
    if len(classes) < num_classes:
        notes.append(
            f"{root} has {len(classes)} class folders for {num_classes} model classes: folder order "
            "cannot say which class each is, so accuracy is not measured (name folders by class "
            "index, e.g. 0/ 1/ ..., or pass --labels FILE)"
        )
        return [replace(i, label=None) for i in items], notes
    return items, notes


def _check_label_range(labels: list[int | None], num_classes: int, where: str) -> None:
    bad = sorted({label for label in labels if label is not None and not 0 <= label < num_classes})
    if bad:
        shown = ", ".join(map(str, bad[:5]))
        raise UsageError(
            f"{where}: class index {shown} outside 0..{num_classes - 1} (the model has {num_classes} classes)",
            hint="labels must be the model's class indices; check --num-classes",
        )


def take(items: list[ImageItem], limit: int | None) -> list[ImageItem]:
    """The first ``limit`` images, taken round-robin across classes when there are classes
    (ImageFolder lists class by class: a plain prefix would test one class only)."""
    if not limit or limit >= len(items):
        return items
    if items[0].class_name is None:
        return items[:limit]
    groups: dict[str, list[ImageItem]] = {}
    for item in items:
        groups.setdefault(item.class_name or "", []).append(item)
    out: list[ImageItem] = []
    depth = 0
    while len(out) < limit:
        for group in groups.values():
            if depth < len(group) and len(out) < limit:
                out.append(group[depth])
        depth += 1
    return out
