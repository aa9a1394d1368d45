"""deploykit.data: image loading, folder layouts and preprocessing (checked against torchvision)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from deploykit.data import (
    ImageItem,
    iter_batches,
    list_images,
    load_images,
    load_rgb,
    preprocess,
    preprocess_batch,
    sample_images,
    to_rgb,
)
from deploykit.errors import UsageError
from deploykit.zoo import Preprocessing

PRE = Preprocessing()


def _save(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _rng_image(h, w, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    shape = (h, w) if channels == 1 else (h, w, channels)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def test_sample_images_are_rgb_uint8_and_gray_becomes_three_equal_channels():
    images = dict(sample_images())
    assert {"astronaut", "chelsea", "coffee", "camera"} <= set(images)
    for name, image in images.items():
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, name
    camera = images["camera"]
    assert np.array_equal(camera[..., 0], camera[..., 1]) and np.array_equal(camera[..., 1], camera[..., 2])
    # Read from scikit-image's packaged files with PIL: the pixels its own loaders give.
    import skimage.data

    from deploykit.data import to_rgb

    for name, image in images.items():
        assert np.array_equal(image, to_rgb(getattr(skimage.data, name)())), name


def test_preprocess_matches_torchvision_transforms():
    from torchvision import transforms as T

    for size, (resize, crop) in ((None, (256, 224)), (64, (73, 64))):
        tf = T.Compose([T.Resize(resize), T.CenterCrop(crop), T.ToTensor(), T.Normalize(PRE.mean, PRE.std)])
        for name, image in sample_images(("chelsea", "rocket", "camera")):
            ours = preprocess(image, PRE, size)
            ref = tf(Image.fromarray(image)).numpy()
            assert ours.shape == (3, crop, crop) and ours.dtype == np.float32
            np.testing.assert_allclose(ours, ref, atol=1e-6, err_msg=name)


def test_preprocess_portrait_and_tiny_images_and_bicubic():
    pre = Preprocessing(resize=36, crop=32, interpolation="bicubic")
    for shape in ((80, 40), (40, 80), (5, 7)):
        out = preprocess(_rng_image(*shape), pre)
        assert out.shape == (3, 32, 32)
        assert np.isfinite(out).all()
    with pytest.raises(UsageError, match="interpolation"):
        preprocess(_rng_image(8, 8), Preprocessing(interpolation="magic"))
    with pytest.raises(UsageError, match="input size"):
        preprocess(_rng_image(8, 8), PRE, size=0)


def test_to_rgb_handles_gray_alpha_float_and_rejects_non_images():
    assert to_rgb(_rng_image(4, 5, 1)).shape == (4, 5, 3)
    rgba = _rng_image(4, 5, 4)
    assert np.array_equal(to_rgb(rgba), rgba[..., :3])
    assert to_rgb(np.ones((2, 2), dtype=np.float64)).max() == 255
    with pytest.raises(UsageError, match="not an image"):
        to_rgb(np.zeros((2, 2, 2, 2)))


def test_load_rgb_reads_png_gray_and_rgba_and_refuses_junk(tmp_path):
    rgb = _rng_image(10, 12)
    assert np.array_equal(load_rgb(_save(tmp_path / "a.png", rgb)), rgb)
    gray = load_rgb(_save(tmp_path / "g.png", _rng_image(10, 12, 1)))
    assert gray.shape == (10, 12, 3)
    rgba = load_rgb(_save(tmp_path / "t.png", _rng_image(10, 12, 4)))
    assert rgba.shape == (10, 12, 3)
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(UsageError, match="cannot read image"):
        load_rgb(junk)
    with pytest.raises(UsageError, match="does not exist"):
        load_rgb(tmp_path / "missing.png")


def test_list_images_imagefolder_layout_labels_sorted_classes(tmp_path):
    _save(tmp_path / "dog" / "1.png", _rng_image(8, 8))
    _save(tmp_path / "cat" / "b.jpg", _rng_image(8, 8))
    _save(tmp_path / "cat" / "nested" / "a.png", _rng_image(8, 8))
    (tmp_path / "cat" / "notes.txt").write_text("skip me")
    (tmp_path / "empty").mkdir()
    items = list_images(tmp_path)
    assert [(i.class_name, i.label, i.path.name) for i in items] == [
        ("cat", 0, "b.jpg"),
        ("cat", 0, "a.png"),
        ("dog", 1, "1.png"),
    ]
    assert items[0].name == "cat/b.jpg"


def test_list_images_flat_layout(tmp_path):
    for name in ("b.png", "a.png"):
        _save(tmp_path / name, _rng_image(8, 8))
    (tmp_path / ".hidden.png").write_bytes(b"")
    items = list_images(tmp_path)
    assert [i.path.name for i in items] == ["a.png", "b.png"]
    assert all(i.label is None and i.class_name is None for i in items)


def test_list_images_bad_folders(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        list_images(tmp_path / "nope")
    with pytest.raises(UsageError, match="no images"):
        list_images(tmp_path)
    (tmp_path / "x.txt").write_text("")
    with pytest.raises(UsageError, match="not a folder"):
        list_images(tmp_path / "x.txt")
    _save(tmp_path / "cls" / "a.png", _rng_image(8, 8))
    _save(tmp_path / "loose.png", _rng_image(8, 8))
    with pytest.raises(UsageError, match="mixes class subfolders"):
        list_images(tmp_path)


def _list_within(folder, seconds=30):
    """list_images in a thread, so a walk that never ends fails the test instead of hanging it."""
    import threading

    found = {}
    worker = threading.Thread(target=lambda: found.setdefault("items", list_images(folder)), daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"list_images({folder}) did not finish in {seconds} s"
    return found["items"]


def test_list_images_visits_each_real_path_once_through_symlink_loops(tmp_path):
    data = tmp_path / "data"
    _save(data / "cat" / "a.png", _rng_image(8, 8))
    _save(data / "cat" / "sub" / "b.png", _rng_image(8, 8))
    (data / "cat" / "sub" / "loop").symlink_to(data / "cat")  # one loop: 2 images became 902
    assert [i.name for i in _list_within(data)] == ["cat/a.png", "cat/b.png"]
    (data / "cat" / "back").symlink_to(data / "cat" / "sub")  # two loops: hung
    (data / "cat" / "twin.png").symlink_to(data / "cat" / "a.png")  # a second name for one file
    assert [i.name for i in _list_within(data)] == ["cat/a.png", "cat/b.png"]
    (data / "dog").symlink_to(data / "cat")  # a class folder that is another class
    assert [i.class_name for i in _list_within(data)] == ["cat", "cat"]
    flat = tmp_path / "flat"
    _save(flat / "x.png", _rng_image(8, 8))
    (flat / "y.png").symlink_to(flat / "x.png")
    (flat / "self").symlink_to(flat)
    assert [i.name for i in _list_within(flat)] == ["x.png"]


def test_iter_batches_streams_files_lazily_with_labels(tmp_path):
    for k in range(5):
        _save(tmp_path / f"c{k % 2}" / f"{k}.png", _rng_image(20, 30, seed=k))
    items = list_images(tmp_path)
    pre = Preprocessing(resize=18, crop=16)
    batches = iter_batches(items, 2, pre)
    first = next(batches)
    # Lazy: deleting a file the first batch did not need must not break that batch.
    assert first.array.shape == (2, 3, 16, 16)
    assert first.labels.tolist() == [0, 0]
    rest = list(batches)
    assert [len(b) for b in rest] == [2, 1]
    assert rest[-1].labels.tolist() == [1]
    assert sum(len(b) for b in [first, *rest]) == len(items)

    # A file that disappears after listing is only noticed when its batch is built.
    items = list_images(tmp_path)
    items[-1].path.unlink()
    lazy = iter_batches(items, 2, pre)
    assert len(next(lazy)) == 2
    with pytest.raises(UsageError, match="does not exist"):
        list(lazy)


def test_iter_batches_sample_pairs_have_no_labels_and_match_preprocess_batch():
    pairs = sample_images(("astronaut", "coffee", "camera"))
    pre = Preprocessing(resize=40, crop=32)
    batches = list(iter_batches(pairs, 8, pre))
    assert len(batches) == 1 and batches[0].labels is None
    assert batches[0].names == ("astronaut", "coffee", "camera")
    np.testing.assert_array_equal(batches[0].array, preprocess_batch([img for _, img in pairs], pre))
    with pytest.raises(UsageError):
        list(iter_batches(pairs, 0, pre))
    with pytest.raises(UsageError, match="no images"):
        preprocess_batch([], pre)


def test_load_images_folder_limit_and_default_samples(tmp_path):
    for k in range(3):
        _save(tmp_path / f"{k}.png", _rng_image(8, 8, seed=k))
    loaded = load_images(tmp_path, limit=2)
    assert [n for n, _ in loaded] == ["0.png", "1.png"]
    assert len(load_images(None, limit=3)) == 3
    assert isinstance(ImageItem(tmp_path / "0.png").name, str)
