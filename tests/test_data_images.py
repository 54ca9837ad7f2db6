"""Tests for tasks.data.images: every layout, mode and bad input on tiny generated fixtures."""

import gzip
import io
import pathlib
import struct
import tarfile

import numpy as np
import pytest
from PIL import Image

from tasks.core.errors import UserError
from tasks.data import images

# === Helpers ===


def save_image(path, value=0, size=(8, 8), mode="RGB", image_format=None):
    """Writes a uniform image whose first channel is `value`, so tests can check the order."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    height, width = size
    if mode in ("L", "P"):
        image = Image.new("L", (width, height), value)
        image = image.convert("P") if mode == "P" else image
    elif mode == "I;16":
        image = Image.fromarray(np.full((height, width), value * 256, dtype=np.uint16))
    else:
        color = (value, 10, 20, 128)[: len(mode)]
        image = Image.new(mode, (width, height), color)
    image.save(path, format=image_format)
    return path


def make_classes(root, counts, size=(8, 8), mode="RGB"):
    """root/<class>/<i>.png for {class: count}; values count up so the order is checkable."""
    value = 0
    for name, count in counts.items():
        (pathlib.Path(root) / name).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            save_image(pathlib.Path(root) / name / f"{index:03d}.png", value, size, mode)
            value += 1
    return pathlib.Path(root)


def make_tar(tar_path, source, arcname, mode="w:gz"):
    with tarfile.open(tar_path, mode) as archive:
        archive.add(source, arcname=arcname)
    return tar_path


def write_idx(path, array, magic=None, compress=True):
    array = np.asarray(array, dtype=np.uint8)
    magic = magic if magic is not None else (2051 if array.ndim == 3 else 2049)
    data = struct.pack(f">i{array.ndim}i", magic, *array.shape) + array.tobytes()
    path.write_bytes(gzip.compress(data) if compress else data)
    return path


def assert_user_error(match, function, *args, **kwargs):
    with pytest.raises(UserError, match=match) as info:
        function(*args, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


# === Layouts ===


def test_class_folders_ignore_stray_files(tmp_path):
    make_classes(tmp_path, {"dog": 2, "cat": 3})
    (tmp_path / "README.md").write_text("not data")
    (tmp_path / ".DS_Store").write_bytes(b"\0\1")
    (tmp_path / "cat" / ".hidden.png").write_bytes(b"junk")
    save_image(tmp_path / "__MACOSX" / "cat" / "._000.png")
    data = images.read_images(tmp_path)
    x, y = data.splits["train"]
    assert list(data.splits) == ["train"]
    assert data.class_names == ["cat", "dog"]
    assert x.shape == (5, 8, 8, 3) and x.dtype == np.uint8
    assert y.dtype == np.int32 and y.tolist() == [0, 0, 0, 1, 1]
    # Sorted by class, then file name: dog's values were written first (0, 1).
    assert x[:, 0, 0, 0].tolist() == [2, 3, 4, 0, 1]
    assert data.skipped == []


def test_split_folders(tmp_path):
    make_classes(tmp_path / "train", {"a": 2, "b": 2})
    make_classes(tmp_path / "test", {"a": 1, "b": 1})
    make_classes(tmp_path / "val", {"a": 1, "b": 1})
    data = images.read_images(str(tmp_path))
    assert list(data.splits) == ["train", "validation", "test"]
    assert [len(data.splits[split][1]) for split in data.splits] == [4, 2, 2]
    assert data.splits["test"][1].tolist() == [0, 1]


@pytest.mark.parametrize("suffix,mode", [(".tar.gz", "w:gz"), (".tgz", "w:gz"), (".tar", "w")])
def test_archive_with_wrapper_folder(tmp_path, suffix, mode):
    make_classes(tmp_path / "src" / "train", {"a": 2, "b": 1})
    make_classes(tmp_path / "src" / "test", {"a": 1, "b": 1})
    archive = make_tar(tmp_path / f"data{suffix}", tmp_path / "src", "mydata", mode)
    data = images.read_images(archive)
    assert data.class_names == ["a", "b"]
    assert data.splits["train"][1].tolist() == [0, 0, 1]
    assert data.splits["test"][0].shape == (2, 8, 8, 3)


def test_thread_pool_gives_the_same_arrays(tmp_path, monkeypatch):
    make_classes(tmp_path / "train", {"a": 5, "b": 4})
    make_classes(tmp_path / "test", {"a": 2, "b": 3})
    save_image(tmp_path / "test" / "a" / "odd.png", 9, size=(5, 7))
    archive = make_tar(tmp_path / "data.tar.gz", tmp_path, "wrapper")
    inline = images.read_images(tmp_path)
    monkeypatch.setattr(images, "THREAD_MIN_MEAN_BYTES", 0)  # every chunk goes to the pool
    monkeypatch.setattr(images, "CHUNK_FILES", 2)
    for threaded in (images.read_images(tmp_path), images.read_images(archive)):
        for split, (x, y) in inline.splits.items():
            np.testing.assert_array_equal(threaded.splits[split][0], x)
            np.testing.assert_array_equal(threaded.splits[split][1], y)


def test_folder_of_archives_merges_splits(tmp_path):
    make_classes(tmp_path / "src" / "train", {"a": 2, "b": 2})
    make_classes(tmp_path / "src" / "test", {"a": 1, "b": 1})
    (tmp_path / "src" / "README.md").write_text("top-level file, ignored")
    folder = tmp_path / "archives"
    folder.mkdir()
    make_tar(folder / "x_train.tar.gz", tmp_path / "src" / "train", "train")
    with tarfile.open(folder / "x_test.tar.gz", "w:gz") as archive:
        archive.add(tmp_path / "src" / "test", arcname="test")
        archive.add(tmp_path / "src" / "README.md", arcname="README.md")
    (folder / "README.md").write_text("ignored")
    data = images.read_images(folder)
    assert list(data.splits) == ["train", "test"]
    assert len(data.splits["train"][1]) == 4 and len(data.splits["test"][1]) == 2


@pytest.mark.parametrize("compress", [True, False])
def test_idx_folder(tmp_path, compress):
    suffix = ".gz" if compress else ""
    rng = np.random.default_rng(0)
    train_x = rng.integers(0, 256, (6, 5, 4))
    test_x = rng.integers(0, 256, (3, 5, 4))
    write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", train_x, compress=compress)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", [0, 1, 2, 0, 1, 2], compress=compress)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", test_x, compress=compress)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", [2, 1, 0], compress=compress)
    data = images.read_images(tmp_path)
    assert list(data.splits) == ["train", "test"]
    assert data.class_names == ["0", "1", "2"]
    np.testing.assert_array_equal(data.splits["train"][0][..., 0], train_x)
    assert data.splits["test"][0].shape == (3, 5, 4, 1)
    assert data.splits["test"][1].dtype == np.int32
    x, y = images.read_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}",
                           tmp_path / f"t10k-labels-idx1-ubyte{suffix}")
    assert x.shape == (3, 5, 4, 1) and y.tolist() == [2, 1, 0]


def test_idx_single_pair_is_train_and_resizes(tmp_path):
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((4, 6, 6)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", [0, 1, 0, 1])
    data = images.read_images(tmp_path, image_size=3, channels=3)
    assert list(data.splits) == ["train"]
    assert data.splits["train"][0].shape == (4, 3, 3, 3)


# === Modes and sizes ===


def test_mixed_modes_give_colour(tmp_path):
    save_image(tmp_path / "a" / "grey.png", 50, mode="L")
    save_image(tmp_path / "a" / "rgba.png", 60, mode="RGBA")
    save_image(tmp_path / "b" / "rgb.jpg", 70, mode="RGB")
    save_image(tmp_path / "b" / "la.png", 80, mode="LA")
    data = images.read_images(tmp_path)
    x, _ = data.splits["train"]
    assert x.shape == (4, 8, 8, 3)
    assert x[0, 0, 0].tolist() == [50, 50, 50]  # grey copied to 3 channels
    assert x[1, 0, 0].tolist() == [60, 10, 20]  # alpha dropped
    grey = images.read_images(tmp_path, channels=1).splits["train"][0]
    assert grey.shape == (4, 8, 8, 1)


def test_grey_modes_give_one_channel(tmp_path):
    save_image(tmp_path / "a" / "l.png", 50, mode="L")
    save_image(tmp_path / "a" / "palette.gif", 60, mode="P")
    save_image(tmp_path / "b" / "deep.png", 70, mode="I;16")
    save_image(tmp_path / "b" / "l.bmp", 80, mode="L")
    x, _ = images.read_images(tmp_path).splits["train"]
    assert x.shape == (4, 8, 8, 1)
    assert x[:, 0, 0, 0].tolist() == [50, 60, 70, 80]
    assert images.read_images(tmp_path, channels=3).splits["train"][0].shape == (4, 8, 8, 3)


def test_resizes_to_most_common_or_given_size(tmp_path):
    make_classes(tmp_path, {"a": 2, "b": 1}, size=(8, 8))
    save_image(tmp_path / "b" / "big.png", 200, size=(16, 12))
    save_image(tmp_path / "b" / "pic.webp", 100, size=(8, 8))
    x, _ = images.read_images(tmp_path).splits["train"]
    assert x.shape == (5, 8, 8, 3)
    assert x[3, 4, 4, 0] == 200  # a uniform image stays uniform when resized
    assert images.read_images(tmp_path, image_size=4).splits["train"][0].shape == (5, 4, 4, 3)
    assert images.read_images(tmp_path, image_size=(6, 5)).splits["train"][0].shape == (5, 6, 5, 3)


def test_demo_digits():
    data = images.demo_digits()
    (x_train, y_train), (x_test, y_test) = data.splits["train"], data.splits["test"]
    assert x_train.shape == (1437, 8, 8, 1) and x_test.shape == (360, 8, 8, 1)
    assert x_train.dtype == np.uint8 and x_train.max() == 255 and y_train.dtype == np.int32
    assert data.class_names == [str(digit) for digit in range(10)]
    assert np.bincount(y_test).min() >= 35  # stratified: every digit in the test split
    np.testing.assert_array_equal(images.demo_digits().splits["test"][1], y_test)


# === Bad input ===


def test_corrupt_and_truncated_images(tmp_path):
    make_classes(tmp_path, {"a": 2, "b": 2})
    (tmp_path / "a" / "corrupt.png").write_bytes(b"this is not a png")
    buffer = io.BytesIO()
    noise = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise).save(buffer, "JPEG")
    (tmp_path / "b" / "truncated.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    message = assert_user_error("corrupt", images.read_images, tmp_path)
    assert str(tmp_path / "a" / "corrupt.png") in message and "1 more bad record)" in message
    data = images.read_images(tmp_path, skip_bad=True)
    assert len(data.splits["train"][1]) == 4
    assert [where for where, _ in data.skipped] == [
        str(tmp_path / "a" / "corrupt.png"),
        str(tmp_path / "b" / "truncated.jpg"),
    ]


def test_non_image_file_in_class_folder(tmp_path):
    make_classes(tmp_path, {"a": 1, "b": 1})
    (tmp_path / "b" / "notes.txt").write_text("hello")
    message = assert_user_error("not an image file", images.read_images, tmp_path)
    assert str(tmp_path / "b" / "notes.txt") in message
    assert len(images.read_images(tmp_path, skip_bad=True).skipped) == 1


def test_empty_class_folder(tmp_path):
    make_classes(tmp_path, {"a": 1, "b": 1})
    (tmp_path / "c").mkdir()
    message = assert_user_error("empty class folder", images.read_images, tmp_path)
    assert str(tmp_path / "c") in message
    data = images.read_images(tmp_path, skip_bad=True)
    assert data.class_names == ["a", "b"]
    assert data.skipped == [(str(tmp_path / "c"), "empty class folder: class 'c' dropped")]


def test_one_class_is_an_error_even_when_skipping(tmp_path):
    make_classes(tmp_path, {"a": 2})
    assert_user_error("at least 2 classes", images.read_images, tmp_path)
    make_classes(tmp_path, {"b": 0})
    assert_user_error("at least 2 classes", images.read_images, tmp_path, skip_bad=True)


def test_split_classes_must_match_train(tmp_path):
    make_classes(tmp_path / "train", {"a": 1, "b": 1})
    make_classes(tmp_path / "test", {"a": 1, "c": 1})
    message = assert_user_error("differ from train", images.read_images, tmp_path)
    assert "missing b" in message and "extra c" in message and str(tmp_path / "test") in message


def test_split_folders_need_train(tmp_path):
    make_classes(tmp_path / "test", {"a": 1, "b": 1})
    assert_user_error("no train/", images.read_images, tmp_path)


def test_bad_archive_member_and_truncated_archive(tmp_path):
    make_classes(tmp_path / "src", {"a": 1, "b": 1})
    (tmp_path / "src" / "b" / "bad.png").write_bytes(b"junk")
    archive = make_tar(tmp_path / "data.tar.gz", tmp_path / "src", "train")
    assert_user_error(f"{archive}:train/b/bad.png", images.read_images, archive)
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(archive.read_bytes()[:300])
    assert_user_error(f"cannot read archive {truncated}", images.read_images, truncated)


def test_idx_bad_files(tmp_path):
    image_file = write_idx(tmp_path / "x-images-idx3-ubyte.gz", np.zeros((3, 4, 4)))
    label_file = write_idx(tmp_path / "x-labels-idx1-ubyte.gz", [0, 1])
    assert_user_error("3 images but .* 2 labels", images.read_idx, image_file, label_file)
    message = assert_user_error("wrong magic", images.read_idx, label_file, image_file)
    assert "found 2049, expected 2051" in message and str(label_file) in message
    wrong = write_idx(tmp_path / "w-images-idx3-ubyte", np.zeros((1, 2, 2)), 1234, compress=False)
    assert_user_error("found 1234, expected 2051", images.read_idx, wrong, label_file)
    truncated = tmp_path / "t-images-idx3-ubyte"
    truncated.write_bytes(gzip.decompress(image_file.read_bytes())[:-5])
    assert_user_error(f"{truncated} is truncated", images.read_idx, truncated, label_file)
    broken_gzip = tmp_path / "b-images-idx3-ubyte.gz"
    broken_gzip.write_bytes(image_file.read_bytes()[:20])
    assert_user_error(f"cannot decompress {broken_gzip}", images.read_idx, broken_gzip, label_file)


def test_idx_folder_missing_labels(tmp_path):
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((2, 4, 4)))
    assert_user_error("train-labels-idx1-ubyte.gz", images.read_images, tmp_path)


def test_bad_paths_and_arguments(tmp_path):
    assert_user_error("no such file or directory", images.read_images, tmp_path / "missing")
    (tmp_path / "only.txt").write_text("x")
    assert_user_error("expected class folders", images.read_images, tmp_path)
    assert_user_error("single file", images.read_images, tmp_path / "only.txt")
    assert_user_error("channels", images.read_images, tmp_path, channels=2)
    assert_user_error("image_size", images.read_images, tmp_path, image_size=(0, 3))


# === Real data ===


def test_real_mnist(shared_data):
    data = images.read_images(shared_data / "mnist")
    x, y = data.splits["train"]
    assert x.shape == (10000, 28, 28, 1) and x.dtype == np.uint8
    assert y.dtype == np.int32 and sorted(set(y.tolist())) == list(range(10))
    assert data.class_names == [str(digit) for digit in range(10)]


@pytest.mark.slow
def test_real_cifar10(shared_data):
    data = images.read_images(shared_data / "cifar10_jpg")
    assert data.class_names == [
        "airplane", "automobile", "bird", "cat", "deer",
        "dog", "frog", "horse", "ship", "truck",
    ]
    (x_train, y_train), (x_test, y_test) = data.splits["train"], data.splits["test"]
    assert x_train.shape == (50000, 32, 32, 3) and x_test.shape == (10000, 32, 32, 3)
    assert np.bincount(y_train).tolist() == [5000] * 10
    assert np.bincount(y_test).tolist() == [1000] * 10
    assert data.skipped == []
