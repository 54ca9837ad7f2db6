"""Image-classification datasets in their standard formats, read into uint8 arrays.

Usage:

    from tasks.data import images

    data = images.read("../shared/data/cifar10_jpg")  # prints: data: split folders, 60000 images, 10 classes
    x_train, y_train = data.splits["train"]  # (50000, 32, 32, 3) uint8, (50000,) int32
    data.class_names                         # ["airplane", "automobile", ..., "truck"]
    images.read("demo")                      # scikit-learn's 8x8 digits, offline
    images.read("tfds:mnist")                # TFDS (needs the data or the internet)
    images.read_images("folder")             # a path only, without the printed line or the test split
    x, y = images.read_idx("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

`read` takes the `--data` value and returns "train" and "test" splits (and "validation" when the
data has one): a layout without a test split gets one held out (`test_fraction`).

Layouts `read_images` detects (a `.tar.gz`/`.tgz`/`.tar` archive is read member by member, never
extracted to disk):

    root/<class>/*.png|jpg|jpeg|bmp|gif|webp                   -> split "train"
    root/train/<class>/..., root/test/<class>/..., [root/val/]  -> "train", "test", ["validation"]
    archive.tar.gz holding either layout (optionally inside one wrapper folder)
    root/*.tar.gz, each holding some of the splits              -> their splits, merged
    root/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]      -> MNIST IDX; one pair -> "train"
    root/labels.csv (filename,label) + root/<folder>/*.png       -> label CSV (Kaggle style), "train";
        several labelled CSVs named *train*, *val*, *test* give those splits

A label CSV names the image (column filename, file, image, image_id, id, path or name; the
extension may be left out) and its class (column label, class, category, target or breed). The
image is looked for under the CSV's folder: first in the folder named like the CSV (train.csv ->
train/, trainLabels.csv -> train/), then in images/, then beside the CSV (a value may hold a
relative path). A CSV that names images but no classes, in a folder that is not class folders
either, is an error. Images are ordered by split, class, then file name, so every read gives the
same arrays, whatever the layout. A photo whose EXIF Orientation tag says it was taken sideways is
turned upright as it is read, as viewers show it (every reader in `tasks/data` decodes through here).
"""

import collections
import concurrent.futures
import dataclasses
import gzip
import io
import os
import pathlib
import re
import tarfile
import zlib

import numpy as np
import tensorflow as tf
from PIL import Image
from PIL import ImageOps

from tasks.core import pipeline
from tasks.core.errors import UserError
from tasks.data import tfds

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar")
SPLIT_ORDER = ("train", "validation", "test")
# Split folder name (lower case) -> split name.
SPLIT_FOLDERS = {
    "train": "train",
    "test": "test",
    "val": "validation",
    "valid": "validation",
    "validation": "validation",
}
# Besides hidden names (".DS_Store", "._x.jpg"): what file managers leave behind.
IGNORED_NAMES = {"__MACOSX", "Thumbs.db", "desktop.ini"}
IDX_IMAGES_MAGIC = 2051  # 0x0803: unsigned bytes, 3 dimensions (count, rows, columns)
IDX_LABELS_MAGIC = 2049  # 0x0801: unsigned bytes, 1 dimension (count)
# "t10k-images-idx3-ubyte.gz", "train-labels.idx1-ubyte", "emnist-digits-train-images-idx3-ubyte"
IDX_NAME = re.compile(
    r"^(?P<prefix>.*?)[-_.]?(?P<kind>images|labels)[-_.]idx[13][-_.]ubyte(\.gz)?$"
)
IDX_SPLIT_TOKENS = {**SPLIT_FOLDERS, "t10k": "test"}  # a word of the file name prefix -> split

EXPECTED_LAYOUTS = (
    "expected class folders (<root>/<class>/*.png|jpg|jpeg|bmp|gif|webp), split folders "
    "(<root>/train/<class>/..., <root>/test/<class>/...), a .tar.gz/.tgz/.tar archive of either, "
    "a folder of such archives, or MNIST IDX files (*-images-idx3-ubyte[.gz] beside "
    "*-labels-idx1-ubyte[.gz])"
)
SKIP_HINT = "or pass skip_bad=True (--skip-bad) to skip bad records"
# Label CSV columns, in order of preference (lower case).
FILE_COLUMNS = ("filename", "file_name", "file", "image", "image_id", "id", "path", "name")
LABEL_COLUMNS = ("label", "class", "category", "target", "breed")

# Files are decoded in chunks. A chunk goes to the thread pool only when its files are big enough
# for PIL's C decoder (which releases the GIL) to outweigh its Python header parsing (which holds
# it). Measured on 2 cores: 32x32 JPEGs (~1 KB) decode 1.5x slower on 2 threads than inline,
# 128x128 JPEGs (~8 KB) 1.8x faster.
CHUNK_FILES = 256
CHUNK_BYTES = 4 << 20
THREAD_MIN_MEAN_BYTES = 4096


@dataclasses.dataclass
class ImageData:
    """An image-classification dataset as arrays.

    Args:
        splits: dict. Split name ("train", "test", optionally "validation") -> (images, labels):
            images uint8 of shape (N, H, W, C) with C 1 or 3, labels int32 of shape (N,).
        class_names: list. Label index -> class name (sorted folder names, "0".."9" for IDX).
        skipped: list. (where, reason) for every record skipped under `skip_bad=True`.
    """

    splits: dict
    class_names: list
    skipped: list = dataclasses.field(default_factory=list)
    layout: str = ""  # the layout found, e.g. "class folders", "label CSV"


def read(source, image_size=None, channels=None, test_fraction=0.2, seed=0, skip_bad=False, verbose=True):
    """Reads the `--data` value: `demo`, `tfds:NAME[/CONFIG]` or a path in any layout above.

    Args:
        source: str or path. `demo`, `tfds:...`, a folder, an archive or a folder of IDX files.
        image_size: None, int or (height, width). See `read_images`. Defaults to None.
        channels: None, 1 or 3. See `read_images`. Defaults to None.
        test_fraction: float. Share held out as the test split when the data has none: per class
            at random for class folders, the last share for data in its own order (IDX, TFDS).
            Defaults to 0.2.
        seed: int. Seed of the held-out choice. Defaults to 0.
        skip_bad: bool. Skip (and list) bad records instead of raising. Defaults to False.
        verbose: bool. Print the one line `data: <layout>, <N> images, <K> classes`. Defaults to True.

    Returns:
        An `ImageData` whose splits hold "train" and "test", and "validation" when the data has one.
    """
    kind, value = pipeline.source(str(source))
    size = image_size or None
    channels = channels or None
    if kind == "path":
        found = read_images(value, image_size=size, channels=channels, skip_bad=skip_bad)
    else:
        found = demo_digits() if kind == "demo" else _read_tfds(value)
        splits = {name: (conform(x, size, channels), y) for name, (x, y) in found.splits.items()}
        found = dataclasses.replace(found, splits=splits, layout="demo digits" if kind == "demo" else f"tfds:{value}")
    if verbose:
        count = sum(len(labels) for _, labels in found.splits.values())
        print(f"data: {found.layout}, {count} images, {len(found.class_names)} classes")
    if "test" not in found.splits:
        train, test = hold_out_test(*found.splits["train"], test_fraction, seed)
        found.splits = {**found.splits, "train": train, "test": test}
    return found


def hold_out_test(x, y, fraction, seed):
    """`((x, y) train, (x, y) test)`: `fraction` of the examples held out as the test split.

    Files in their own order (IDX, TFDS) keep it: the last `fraction` is the test split (MNIST
    here: first 8,000 / last 2,000). Class-folder trees list examples class by class, so they are
    held out at random, per class.
    """
    if np.all(np.diff(y) >= 0):
        keep, held = pipeline.split_indices(y, fraction, seed)
    else:
        cut = len(y) - int(round(fraction * len(y)))
        keep, held = np.arange(cut), np.arange(cut, len(y))
    return (x[keep], y[keep]), (x[held], y[held])


def conform(images, size, channels):
    """Resizes (N, H, W, C) uint8 images to `size` and converts them to `channels`."""
    if size is not None:
        size = (size, size) if isinstance(size, int) else tuple(size)
        if images.shape[1:3] != size:
            images = tf.image.resize(images, size, antialias=True)
            images = tf.cast(tf.clip_by_value(tf.round(images), 0, 255), tf.uint8).numpy()
    if channels == 3 and images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    elif channels == 1 and images.shape[-1] == 3:
        images = tf.cast(tf.round(tf.image.rgb_to_grayscale(tf.cast(images, tf.float32))), tf.uint8).numpy()
    return images


def read_images(path, image_size=None, channels=None, skip_bad=False):
    """Reads an image-classification dataset in any layout of the module docstring.

    Args:
        path: str or path. A folder or a `.tar.gz`/`.tgz`/`.tar` archive.
        image_size: None, int or (height, width). None keeps the most common size among the
            images and resizes the others to it (bilinear, antialiased). Defaults to None.
        channels: None, 1 or 3. None gives 3 when any image is in colour, else 1.
            Alpha is dropped. Defaults to None.
        skip_bad: bool. Skip corrupt images, non-image files and empty class folders (listed in
            `ImageData.skipped`) instead of raising `UserError`. Defaults to False.

    Returns:
        An `ImageData`; its splits always include "train".
    """
    size = _check_image_size(image_size)
    if channels not in (None, 1, 3):
        raise UserError(f"channels must be None, 1 or 3. Received: channels={channels!r}")
    path = pathlib.Path(path)
    if not path.exists():
        raise UserError(
            f"no such file or directory: {path}; check the path (a folder or .tar.gz of class "
            "folders, or a folder of MNIST IDX files)"
        )
    if path.is_dir():
        idx_pairs = _find_idx_pairs(path)
        if idx_pairs:
            return dataclasses.replace(_read_idx_splits(idx_pairs, size, channels), layout="MNIST IDX")
    label_csvs, unlabelled = _find_label_csvs(path)
    with concurrent.futures.ThreadPoolExecutor(_num_workers()) as executor:
        decoder = _Decoder(executor)
        if label_csvs:
            classes = _csv_classes(label_csvs)
            found = _read_classes(classes, decoder, size, channels, skip_bad, partial_splits=True)
            return dataclasses.replace(found, layout="label CSV")
        try:
            tree = _scan(path, decoder)
            classes = _find_classes(tree, path)
        except UserError:
            if unlabelled:  # not class folders, and a CSV that names images but no classes
                raise _missing_column_error(*unlabelled[0]) from None
            raise
        found = _read_classes(classes, decoder, size, channels, skip_bad)
        layout = "split folders" if set(classes) != {"train"} else "class folders"
        return dataclasses.replace(found, layout=layout + (" (archive)" if path.is_file() else ""))


def read_idx(images_path, labels_path):
    """Reads one MNIST-style IDX pair, gzip-compressed or raw.

    Args:
        images_path: str or path. An IDX images file (magic 2051), e.g. `t10k-images-idx3-ubyte.gz`.
        labels_path: str or path. The matching IDX labels file (magic 2049).

    Returns:
        (images, labels): uint8 of shape (N, H, W, 1) and int32 of shape (N,).
    """
    images = _read_idx_file(images_path, IDX_IMAGES_MAGIC)
    labels = _read_idx_file(labels_path, IDX_LABELS_MAGIC)
    if len(images) != len(labels):
        raise UserError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} "
            "labels; use the labels file that belongs to these images"
        )
    return images[..., None], labels.astype(np.int32)


def demo_digits():
    """scikit-learn's bundled digits: 1,797 grey 8x8 images of 0-9, split 80/20 by class.

    Returns:
        An `ImageData` with splits "train" (1,437) and "test" (360), images uint8 (N, 8, 8, 1)
        rescaled from 0-16 to 0-255, class names "0".."9".
    """
    from sklearn import datasets
    from sklearn import model_selection

    digits = datasets.load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # (N, 8, 8, 1)
    labels = digits.target.astype(np.int32)
    # A fixed-seed permutation, stratified so both splits hold every digit in proportion.
    train_index, test_index = model_selection.train_test_split(
        np.arange(len(labels)), test_size=0.2, stratify=labels, random_state=0
    )
    splits = {
        "train": (images[train_index], labels[train_index]),
        "test": (images[test_index], labels[test_index]),
    }
    return ImageData(splits=splits, class_names=[str(i) for i in range(10)], skipped=[])


# === Scanning: a folder or archives -> a tree of files ===


@dataclasses.dataclass
class _File:
    where: str  # for messages: a path, or "archive.tar.gz:member/path"
    source: object  # pathlib.Path (read by a worker) or bytes (already read from an archive)
    size: int


class _Tree:
    """Files and folders by their path parts, from a folder or from archives."""

    def __init__(self):
        self.files = {}  # parts -> _File
        self.dirs = {}  # parts -> where

    def add_dir(self, parts, where):
        self.dirs.setdefault(parts, where)

    def add_file(self, parts, file):
        self.files[parts] = file
        for end in range(len(parts) - 1, 0, -1):  # parent folders, innermost first
            if parts[:end] in self.dirs:
                break
            self.dirs[parts[:end]] = _parent_where(file.where, len(parts) - end)

    def top_dirs(self):
        return sorted(parts[0] for parts in self.dirs if len(parts) == 1)


def _parent_where(where, levels):
    for _ in range(levels):
        where = re.sub(r"[/\\][^/\\]*$", "", where)
    return where


def _ignored(name):
    return name.startswith(".") or name in IGNORED_NAMES


def _is_image_name(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _is_archive_name(name):
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def _scan(path, decoder):
    """Returns the tree at `path`; archive members are read now and queued on `decoder`."""
    if path.is_file():
        if _is_archive_name(path.name) or _is_tarfile(path):
            return _unwrap(_scan_archive(path, decoder))
        raise UserError(f"{path} is a single file, not a dataset; {EXPECTED_LAYOUTS}")
    entries = [entry for entry in _list_dir(path) if not _ignored(entry.name)]
    if any(entry.is_dir() for entry in entries):
        return _scan_folder(path)
    archives = sorted(entry.name for entry in entries if _is_archive_name(entry.name))
    if not archives:
        raise UserError(f"no class folders, archives or IDX files in {path}; {EXPECTED_LAYOUTS}")
    tree = _Tree()
    for name in archives:
        part = _unwrap(_scan_archive(path / name, decoder))
        for parts, file in part.files.items():
            if parts in tree.files:
                raise UserError(
                    f"{file.where} is also in {tree.files[parts].where}; keep one copy of each "
                    "split/class/file across the archives"
                )
            tree.files[parts] = file
        for parts, where in part.dirs.items():
            tree.add_dir(parts, where)
    return tree


def _list_dir(path):
    try:
        with os.scandir(path) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except OSError as error:
        raise UserError(f"cannot list {path} ({error.strerror}); check its permissions") from None


def _scan_folder(root):
    tree = _Tree()
    pending = [(root, ())]
    seen = {os.path.realpath(root)}
    while pending:
        folder, prefix = pending.pop()
        for entry in _list_dir(folder):
            if _ignored(entry.name):
                continue
            parts = prefix + (entry.name,)
            if entry.is_dir():  # follows symlinks (linked class folders are common), once each
                real = os.path.realpath(entry.path)
                if real in seen:
                    continue
                seen.add(real)
                tree.add_dir(parts, entry.path)
                pending.append((pathlib.Path(entry.path), parts))
            elif entry.is_file():
                try:
                    size = entry.stat().st_size
                except OSError:
                    size = 0  # a dangling link: reading it later reports the record
                tree.add_file(parts, _File(entry.path, pathlib.Path(entry.path), size))
    return tree


def _is_tarfile(path):
    try:
        return tarfile.is_tarfile(path)
    except (OSError, EOFError, zlib.error):
        return False


def _scan_archive(path, decoder):
    """Reads every member once, in archive order; image members start decoding at once."""
    tree = _Tree()
    try:
        with tarfile.open(path, mode="r|*") as archive:
            for member in archive:
                parts = tuple(part for part in member.name.split("/") if part not in ("", "."))
                if not parts or any(_ignored(part) for part in parts):
                    continue
                where = f"{path}:{member.name}"
                if member.isdir():
                    tree.add_dir(parts, where)
                elif member.isfile():
                    data = archive.extractfile(member).read()
                    file = _File(where, data, len(data))
                    tree.add_file(parts, file)
                    if len(parts) >= 2 and _is_image_name(parts[-1]):
                        decoder.add(file)
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise UserError(
            f"cannot read archive {path} ({_one_line(error)}): it is corrupt or truncated; "
            "download or pack it again"
        ) from None
    return tree


def _unwrap(tree):
    """Strips wrapper folders (`cifar10/train/...`): a lone top folder that holds only folders."""
    while True:
        tops = tree.top_dirs()
        if len(tops) != 1 or tops[0].lower() in SPLIT_FOLDERS:
            return tree
        top = tops[0]
        if any(len(parts) == 2 and parts[0] == top for parts in tree.files):
            return tree  # files right inside: it is a class folder, not a wrapper
        unwrapped = _Tree()
        for parts, file in tree.files.items():
            if len(parts) > 1 and parts[0] == top:
                unwrapped.files[parts[1:]] = file
        for parts, where in tree.dirs.items():
            if len(parts) > 1 and parts[0] == top:
                unwrapped.dirs[parts[1:]] = where
        tree = unwrapped


# === Layout: the tree -> splits of classes of files ===


@dataclasses.dataclass
class _Class:
    name: str
    where: str
    files: list  # [(relative name, _File)], sorted


def _find_classes(tree, path):
    """Returns {split: {class name: _Class}} for layout 1 (one "train" split) or layout 2."""
    tops = tree.top_dirs()
    if not tops:
        raise UserError(f"no class folders in {path}; {EXPECTED_LAYOUTS}")
    split_tops = [top for top in tops if top.lower() in SPLIT_FOLDERS and _has_subdirs(tree, top)]
    roots = _split_roots(split_tops, tops, path) if split_tops else {"train": ()}
    classes = {}  # split -> {class name: _Class}
    for split, root in roots.items():
        classes[split] = {
            parts[-1]: _Class(parts[-1], tree.dirs[parts], [])
            for parts in sorted(tree.dirs)
            if len(parts) == len(root) + 1 and parts[: len(root)] == root
        }
    split_of_root = {root: split for split, root in roots.items()}
    depth = len(next(iter(roots.values()))) + 1  # parts up to and including the class folder
    for parts, file in tree.files.items():
        if len(parts) > depth and parts[: depth - 1] in split_of_root:
            cls = classes[split_of_root[parts[: depth - 1]]][parts[depth - 1]]
            cls.files.append(("/".join(parts[depth:]), file))
    for split_classes in classes.values():
        for cls in split_classes.values():
            cls.files.sort(key=lambda pair: pair[0])
    wheres = {split: tree.dirs[root] if root else str(path) for split, root in roots.items()}
    _check_same_classes(classes, wheres)
    return classes


def _has_subdirs(tree, top):
    return any(len(parts) == 2 and parts[0] == top for parts in tree.dirs)


def _split_roots(split_tops, tops, path):
    """Split folders (train/, test/, val/) -> {split: (folder,)}, refusing anything beside them."""
    others = [top for top in tops if top not in split_tops]
    if others:
        raise UserError(
            f"{path} has split folders ({', '.join(split_tops)}) and also {', '.join(others)}; "
            "keep only train/, test/ and val/ (or validation/) at the top"
        )
    roots = {}
    for top in split_tops:
        split = SPLIT_FOLDERS[top.lower()]
        if split in roots:
            raise UserError(
                f"{path} has two folders for split {split!r} ({roots[split][0]} and {top}); "
                "keep one"
            )
        roots[split] = (top,)
    roots = {split: roots[split] for split in SPLIT_ORDER if split in roots}
    if "train" not in roots:
        raise UserError(
            f"{path} has split folders ({', '.join(split_tops)}) but no train/; add "
            "train/<class>/... (a folder of archives merges the splits of all of them)"
        )
    return roots


def _check_same_classes(classes, wheres):
    train = sorted(classes["train"])
    if len(train) < 2:
        raise UserError(
            f"classification needs at least 2 classes, but {wheres['train']} has "
            f"{len(train)} class folder ({', '.join(train) or 'none'}); add a folder of images for "
            "every class"
        )
    for split, split_classes in classes.items():
        if set(split_classes) != set(train):
            missing = ", ".join(sorted(set(train) - set(split_classes))) or "none"
            extra = ", ".join(sorted(set(split_classes) - set(train))) or "none"
            raise UserError(
                f"the class folders of {wheres[split]} differ from train's: missing {missing}; "
                f"extra {extra}. Give every split the same class folders"
            )


# === Label CSV (Kaggle style): filename,label beside a folder of images ===


def _find_label_csvs(path):
    """({csv path: (file column, label column, header)} of the labelled CSVs, [(csv path, columns)]
    of those with a file column but no label column), for a .csv file or a folder.

    A .csv file without both columns is an error; in a folder, a submission CSV is ignored and a
    CSV with neither column is not this layout's.
    """
    if path.is_file():
        if path.suffix.lower() != ".csv":
            return {}, []
        columns = _csv_columns(path)
        if columns[0] is None or columns[1] is None:
            raise _missing_column_error(path, columns)
        return {path: columns}, []
    found, unlabelled = {}, []
    for file in sorted(path.glob("*.csv")):
        if _ignored(file.name) or "submission" in file.name.lower():
            continue
        columns = _csv_columns(file)
        if columns[0] is not None and columns[1] is not None:
            found[file] = columns
        elif columns[0] is not None:
            unlabelled.append((file, columns))
    return found, unlabelled


def _csv_columns(file):
    """(file column index, label column index, header) of a CSV; None where there is none."""
    import csv

    try:
        with open(file, newline="", encoding="utf-8-sig") as handle:
            header = [cell.strip() for cell in next(csv.reader(handle), [])]
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"cannot read {file} ({_one_line(error)}); expected a UTF-8 CSV of filename,label") from None
    lower = [cell.lower() for cell in header]
    file_column = next((lower.index(name) for name in FILE_COLUMNS if name in lower), None)
    label_column = next((lower.index(name) for name in LABEL_COLUMNS if name in lower), None)
    return file_column, label_column, header


def _missing_column_error(file, columns):
    missing = "file name" if columns[0] is None else "label"
    names = FILE_COLUMNS if columns[0] is None else LABEL_COLUMNS
    return UserError(
        f"{file}: no {missing} column (its header: {','.join(columns[2]) or 'empty'}); a label CSV needs "
        f"the header filename,label (the {missing} column may also be named {', '.join(names[1:])})"
    )


def _csv_classes(label_csvs):
    """{split: {class name: _Class}} from label CSVs; several CSVs take their splits from their names."""
    import csv

    if len(label_csvs) == 1:
        splits = {next(iter(label_csvs)): "train"}
    else:
        splits = {}
        for file in label_csvs:
            names = {SPLIT_FOLDERS[word] for word in _words(file.stem) if word in SPLIT_FOLDERS}
            if len(names) != 1 or names & set(splits.values()):
                raise UserError(f"cannot tell which split {file} is: with several label CSVs, name them train.csv, "
                                "val.csv and test.csv (or *_train.csv ...)")
            splits[file] = names.pop()
        if "train" not in splits.values():
            raise UserError(f"no train CSV among {', '.join(str(file) for file in label_csvs)}; name one train.csv")
    rows = {}  # split -> {label: [(relative name, _File)]}
    for file, (file_column, label_column, header) in label_csvs.items():
        split = splits[file]
        with open(file, newline="", encoding="utf-8-sig") as handle:
            lines = list(csv.reader(handle))[1:]
        resolve = _ImageResolver(file, split)
        for number, row in enumerate(lines, start=2):
            if not any(cell.strip() for cell in row):
                continue
            where = f"{file}: line {number}"
            if len(row) <= max(file_column, label_column):
                raise UserError(f"{where}: {len(row)} fields, the header has {len(header)}; fix the row")
            name, label = row[file_column].strip(), row[label_column].strip()
            if not name or not label:
                raise UserError(f"{where}: the file name or the label is empty; fill it in or remove the row")
            image = resolve(name)
            if image is None:
                raise UserError(
                    f"{where}: no image {name} under {file.parent} (looked in {resolve.folder_names()}); "
                    "fix the name or put the image there"
                )
            size = image.stat().st_size
            rows.setdefault(split, {}).setdefault(label, []).append(
                (str(image.relative_to(file.parent)), _File(f"{image} ({where})", image, size))
            )
    if "train" not in rows:
        raise UserError(f"{next(iter(label_csvs))} lists no images; add rows of filename,label")
    names = sorted(rows["train"], key=_label_order(rows["train"]))
    for split, by_label in rows.items():
        unknown = sorted(set(by_label) - set(names))
        if unknown:
            raise UserError(f"the {split} CSV has label {unknown[0]!r}, which the train CSV never names; "
                            "use the train CSV's labels")
    first = next(iter(label_csvs))
    classes = {}
    for split in SPLIT_ORDER:
        if split in rows:
            classes[split] = {
                name: _Class(name, f"{first} (label {name!r})", sorted(rows[split].get(name, []), key=_first))
                for name in names
            }
    if len(names) < 2:
        raise UserError(f"classification needs at least 2 classes, but {first} names {len(names)} "
                        f"({', '.join(names)}); add images of every class")
    return classes


def _first(pair):
    return pair[0]


def _words(stem):
    """`trainLabels` -> ["train", "labels"], `val_2024` -> ["val"]."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", stem).lower()
    return [word for word in re.split(r"[^a-z]+", spaced) if word]


def _label_order(labels):
    """Integers by value (0, 1, ..., 10), anything else by name."""
    if all(re.fullmatch(r"-?\d+", label) for label in labels):
        return int
    return str


class _ImageResolver:
    """A label CSV's file name -> the image under its folder (the extension may be left out)."""

    def __init__(self, file, split):
        root = file.parent
        stems = [file.stem, file.stem.lower(), *_words(file.stem)]
        stems += [folder for folder, name in SPLIT_FOLDERS.items() if name == split]
        folders = [root / stem for stem in stems] + [root / "images", root]
        seen = set()
        self.folders = [folder for folder in folders if folder.is_dir() and not (folder in seen or seen.add(folder))]
        self.root = root
        self.last = None  # the folder that held the previous image: tried first

    def folder_names(self):
        return ", ".join(str(folder.relative_to(self.root)) + "/" for folder in self.folders)

    def __call__(self, name):
        folders = ([self.last] if self.last else []) + [folder for folder in self.folders if folder != self.last]
        suffixes = [""]
        if not _is_image_name(name):
            suffixes += [*IMAGE_EXTENSIONS, *(extension.upper() for extension in IMAGE_EXTENSIONS)]
        for folder in folders:
            for suffix in suffixes:
                candidate = folder / f"{name}{suffix}"
                if candidate.is_file():
                    self.last = folder
                    return candidate
        return None


# === Decoding: files -> arrays, on a thread pool ===


def _num_workers():
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count() or 1
    return max(1, min(8, cores))


class _Decoder:
    """Decodes files to arrays in chunks; `results()` maps each file's `where` to its outcome."""

    def __init__(self, executor):
        self.executor = executor
        self._chunk = []
        self._chunk_bytes = 0
        self._futures = []
        self._done = {}

    def add(self, file):
        self._chunk.append(file)
        self._chunk_bytes += file.size
        if len(self._chunk) >= CHUNK_FILES or self._chunk_bytes >= CHUNK_BYTES:
            self.flush()

    def flush(self):
        chunk, mean_bytes = self._chunk, self._chunk_bytes / max(1, len(self._chunk))
        self._chunk, self._chunk_bytes = [], 0
        if not chunk:
            return
        if mean_bytes < THREAD_MIN_MEAN_BYTES:
            self._done.update(_decode_chunk(chunk))
        else:
            self._futures.append(self.executor.submit(_decode_chunk, chunk))

    def results(self):
        """Returns {where: array (H, W) or (H, W, 3) uint8, or a reason string}."""
        self.flush()
        for future in self._futures:
            self._done.update(future.result())
        self._futures = []
        return self._done


def _decode_chunk(files):
    return [(file.where, _decode(file)) for file in files]


def decode_file(path):
    """One image file as uint8 (H, W) or (H, W, 3), or a string saying why it cannot be read."""
    path = pathlib.Path(path)
    return _decode(_File(str(path), path, 0))


def _decode(file):
    """Returns the image as uint8 (H, W) or (H, W, 3), or why it cannot be read."""
    if isinstance(file.source, bytes):
        data = file.source
    else:
        try:
            data = file.source.read_bytes()
        except OSError as error:
            return f"cannot read file ({error.strerror or _one_line(error)})"
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()  # decodes every byte, so a truncated file fails here
            return _to_array(upright(image))
    except Image.UnidentifiedImageError:
        return "corrupt image (PIL recognises no image format in it)"
    # PIL reports bad bytes as OSError, SyntaxError, ValueError, struct.error, zlib.error,
    # DecompressionBombError...: any failure here is a bad file.
    except Exception as error:  # noqa: BLE001
        return f"corrupt or truncated image ({_one_line(error)})"


EXIF_ORIENTATION = 0x0112  # the EXIF tag of how the camera was held: 1 upright, 2-8 mirrored and/or turned


def upright(image):
    """A PIL image turned as its EXIF Orientation tag says (a phone photo taken sideways), else itself.

    Pixels are stored as the sensor saw them; viewers, and this package's readers, show them turned
    upright. `tf.io.decode_image` does not (predict turns files first: `tasks.core.export.upright_bytes`).
    """
    if image.getexif().get(EXIF_ORIENTATION, 1) in (None, 1):
        return image
    return ImageOps.exif_transpose(image)


def _to_array(image):
    """Grey modes -> (H, W), colour modes -> (H, W, 3); alpha dropped, 16-bit scaled to 8."""
    mode = image.mode
    if mode in ("1", "L", "LA", "La"):
        return np.asarray(image.convert("L"))
    if mode.startswith("I"):  # 16-bit grey ("I;16") or 32-bit ("I"): keep the top 8 of 16 bits
        return (np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8).astype(np.uint8)
    if mode == "F":
        return np.clip(np.asarray(image), 0, 255).astype(np.uint8)
    if mode in ("P", "PA"):  # a palette is colour only if some entry in use is not grey
        rgb = np.asarray(image.convert("RGBA"))[..., :3]
        grey = (rgb[..., 0] == rgb[..., 1]).all() and (rgb[..., 1] == rgb[..., 2]).all()
        return np.ascontiguousarray(rgb[..., 0]) if grey else rgb
    return np.asarray(image.convert("RGB"))


# === Assembly: decoded classes -> ImageData ===


def _read_classes(classes, decoder, size, channels, skip_bad, partial_splits=False):
    skipped = []
    bad = []  # (where, reason), in split/class/file order
    # Fail fast on empty class folders, before decoding anything. With `partial_splits` (label
    # CSVs) a validation or test split may lack a class.
    for split, split_classes in classes.items():
        for cls in split_classes.values():
            if not cls.files and not skip_bad and not (partial_splits and split != "train"):
                raise UserError(
                    f"empty class folder {cls.where}: add images for class {cls.name!r} or "
                    f"remove the folder, {SKIP_HINT} (the class is then dropped)"
                )
    # Directory files are queued now; archive members were queued while reading.
    for split_classes in classes.values():
        for cls in split_classes.values():
            for name, file in cls.files:
                if _is_image_name(name) and isinstance(file.source, pathlib.Path):
                    decoder.add(file)
    outcomes = decoder.results()

    arrays = {}  # split -> {class name: [array]}
    for split, split_classes in classes.items():
        arrays[split] = {}
        for cls in split_classes.values():
            arrays[split][cls.name] = []
            for name, file in cls.files:
                if not _is_image_name(name):
                    extensions = ", ".join(IMAGE_EXTENSIONS)
                    bad.append((file.where, f"not an image file (expected {extensions})"))
                    continue
                outcome = outcomes[file.where]
                if isinstance(outcome, str):
                    bad.append((file.where, outcome))
                else:
                    arrays[split][cls.name].append(outcome)
    if bad and not skip_bad:
        where, reason = bad[0]
        more = ""
        if len(bad) > 1:
            more = f" ({len(bad) - 1} more bad record{'s' if len(bad) > 2 else ''})"
        raise UserError(f"{reason}: {where}{more}; fix or remove it, {SKIP_HINT}")
    skipped.extend(bad)

    # Under skip_bad a class with no images left in train is dropped from every split.
    class_names = []
    for name, cls in classes["train"].items():
        if arrays["train"][name]:
            class_names.append(name)
        else:
            skipped.append((cls.where, f"empty class folder: class {name!r} dropped"))
    for split, split_classes in classes.items():
        for name, cls in split_classes.items():
            if split == "train":
                continue
            if name not in class_names:
                count = len(arrays[split][name])
                if count:
                    skipped.append((cls.where, f"class {name!r} dropped: {count} images not used"))
            elif not arrays[split][name] and not (partial_splits and not cls.files):
                skipped.append((cls.where, f"empty class folder: split {split!r} has no {name!r}"))
    if len(class_names) < 2:
        raise UserError(
            f"classification needs at least 2 classes, but after skipping bad records only "
            f"{len(class_names)} of {len(classes['train'])} train classes have images "
            f"({len(skipped)} skipped, first: {skipped[0][0]}); add images for every class"
        )

    per_split = {}
    for split in classes:
        images, labels = [], []
        for label, name in enumerate(class_names):
            images.extend(arrays[split][name])
            labels.extend([label] * len(arrays[split][name]))
        per_split[split] = (images, np.asarray(labels, dtype=np.int32))
    splits = _stack(per_split, size, channels, decoder.executor)
    return ImageData(splits=splits, class_names=class_names, skipped=skipped)


def _stack(per_split, size, channels, executor):
    """{split: ([array (H, W[, 3])], labels)} -> {split: (uint8 (N, H, W, C), labels)}."""
    every = [array for images, _ in per_split.values() for array in images]
    if size is None:
        size = collections.Counter(array.shape[:2] for array in every).most_common(1)[0][0]
    if channels is None:
        channels = 3 if any(array.ndim == 3 for array in every) else 1
    splits = {}
    for split, (images, labels) in per_split.items():
        out = np.empty((len(images), size[0], size[1], channels), dtype=np.uint8)
        misfits = []
        for index, array in enumerate(images):
            if array.shape[:2] != size or (channels == 1 and array.ndim == 3):
                misfits.append(index)
            else:
                out[index] = array if array.ndim == 3 else array[..., None]  # grey -> C copies
        fitted = executor.map(lambda index: _fit(images[index], size, channels), misfits)
        for index, array in zip(misfits, fitted):
            out[index] = array
        splits[split] = (out, labels)
    return splits


def _fit(array, size, channels):
    """One image -> (H, W, C) at `size`: bilinear resize (antialiased when shrinking)."""
    image = Image.fromarray(array)
    if channels == 1 and image.mode == "RGB":
        image = image.convert("L")
    if image.size != (size[1], size[0]):
        image = image.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    result = np.asarray(image)
    return result if result.ndim == 3 else result[..., None]


def _check_image_size(image_size):
    if image_size is None:
        return None
    if isinstance(image_size, (int, np.integer)) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    if (
        isinstance(image_size, (tuple, list))
        and len(image_size) == 2
        and all(isinstance(side, (int, np.integer)) and side > 0 for side in image_size)
    ):
        return (int(image_size[0]), int(image_size[1]))
    raise UserError(
        f"image_size must be None, a positive int or (height, width). Received: "
        f"image_size={image_size!r}"
    )


def _one_line(error):
    text = " ".join(str(error).split()) or type(error).__name__
    return text[:200]


# === IDX (MNIST) ===



def _find_idx_pairs(folder):
    """Returns {split: (images path, labels path)} for the IDX files in `folder`, or {}."""
    found = {}  # (prefix, kind) -> path
    for entry in _list_dir(folder):
        match = IDX_NAME.match(entry.name)
        if match and entry.is_file() and not _ignored(entry.name):
            found[(match["prefix"], match["kind"])] = pathlib.Path(entry.path)
    if not found:
        return {}
    pairs = {}
    for (prefix, kind), path in sorted(found.items()):
        other = "labels" if kind == "images" else "images"
        if (prefix, other) not in found:
            dims = {"images": "idx3", "labels": "idx1"}
            expected = path.name.replace(kind, other).replace(dims[kind], dims[other])
            raise UserError(f"{path} has no matching {other} file; expected {folder / expected}")
        if kind == "images":
            pairs[prefix] = (path, found[(prefix, "labels")])
    if len(pairs) == 1:
        return {"train": next(iter(pairs.values()))}
    splits = {}
    for prefix, pair in pairs.items():
        tokens = set(re.split(r"[-_.]", prefix.lower()))
        names = [split for token, split in IDX_SPLIT_TOKENS.items() if token in tokens]
        if len(names) != 1 or names[0] in splits:
            raise UserError(
                f"cannot tell which split {pair[0]} is: with several IDX pairs in {folder}, name "
                "them train-*, t10k-*/test-* and val-*"
            )
        splits[names[0]] = pair
    if "train" not in splits:
        raise UserError(f"no train-* IDX pair among the IDX files in {folder}; add one")
    return splits


def _read_idx_splits(pairs, size, channels):
    splits = {split: read_idx(*pairs[split]) for split in SPLIT_ORDER if split in pairs}
    labels = np.concatenate([split_labels for _, split_labels in splits.values()])
    if len(np.unique(labels)) < 2:
        raise UserError(
            f"classification needs at least 2 classes, but the labels in {pairs['train'][1]} "
            f"hold {len(np.unique(labels))} distinct values; use a labels file with every class"
        )
    if size is not None or channels == 3:
        per_split = {
            split: (list(images[..., 0]), labels)  # (N, H, W, 1) -> N views of (H, W)
            for split, (images, labels) in splits.items()
        }
        with concurrent.futures.ThreadPoolExecutor(_num_workers()) as executor:
            splits = _stack(per_split, size, channels, executor)
    class_names = [str(label) for label in range(int(labels.max()) + 1)]
    return ImageData(splits=splits, class_names=class_names, skipped=[])


def _read_idx_file(path, magic):
    """One IDX file of unsigned bytes -> (N, rows, columns) for images, (N,) for labels."""
    path = pathlib.Path(path)
    kind = "images" if magic == IDX_IMAGES_MAGIC else "labels"
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"no such IDX {kind} file: {path}; check the path") from None
    except OSError as error:
        raise UserError(f"cannot read {path} ({error.strerror}); check its permissions") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise UserError(
                f"cannot decompress {path} ({_one_line(error)}): the gzip file is corrupt or "
                "truncated; download it again"
            ) from None
    if len(raw) < 4:
        raise UserError(f"{path} is truncated: {len(raw)} bytes, not even an IDX header")
    found = int.from_bytes(raw[:4], "big")
    if found != magic:
        swapped = {IDX_IMAGES_MAGIC: "an IDX images file", IDX_LABELS_MAGIC: "an IDX labels file"}
        advice = f"pass an MNIST-format {kind} file"
        if found in swapped:
            advice = f"that is {swapped[found]}: are images and labels swapped?"
        raise UserError(
            f"wrong magic number in {path}: found {found}, expected {magic} for IDX {kind}; "
            f"{advice}"
        )
    num_dims = 3 if kind == "images" else 1
    header = 4 + 4 * num_dims
    if len(raw) < header:
        raise UserError(
            f"{path} is truncated: its IDX header needs {header} bytes, found {len(raw)}; "
            "download it again"
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(num_dims))
    expected = int(np.prod(shape))
    data = len(raw) - header
    if data != expected:
        problem = "is truncated" if data < expected else "has extra bytes"
        raise UserError(
            f"{path} {problem}: its header describes {kind} of shape {shape} ({expected} bytes) "
            f"but {data} bytes follow; download it again"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape).copy()  # writable


# === TFDS ===


def _pick_image_and_label(info):
    images, labels = tfds.keys_of(info, "Image"), tfds.keys_of(info, "ClassLabel")
    return {"image": images[0], "label": labels[0]} if images and labels else None


def _read_tfds(name, data_dir=None):
    """A TFDS image-classification dataset, materialized as uint8 arrays (small datasets)."""
    splits, info = tfds.read(name, _pick_image_and_label, "image and class-label features", data_dir)
    arrays = {}
    for split, examples in splits.items():
        images, labels = [], []
        for example in examples:
            images.append(example["image"])
            labels.append(int(example["label"]))
        shapes = [image.shape for image in images]
        if len(set(shapes)) > 1:  # resize to the most common shape
            height, width, channels = max(set(shapes), key=shapes.count)
            images = [conform(image[None], (height, width), channels)[0] for image in images]
        arrays[split] = (np.stack(images).astype(np.uint8), np.asarray(labels, np.int32))
    label_key = _pick_image_and_label(info)["label"]
    return ImageData(splits=arrays, class_names=list(info.features[label_key].names), skipped=[])
