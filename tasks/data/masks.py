"""Semantic-segmentation datasets (images + per-pixel class masks) in their standard formats.

Usage:

    from tasks.data import masks

    data = masks.read_masks("../shared/data/membrane", class_map={0: "membrane", 255: "cell"})
    split = data.splits["train"]      # Split(images=[(H, W[, 3]) uint8], masks=[(H, W) uint8], names)
    data.class_names                  # ["membrane", "cell"]
    demo = masks.demo_shapes()        # generated shapes with 4 classes and void borders, offline

Layouts `read_masks` detects:

    root/{images,image,imgs,img}/NAME.* + root/{masks,mask,labels,label,annotations}/NAME.png
                                           -> split "train" (image and mask matched by file stem)
    root/{train,val,test}/<the same two folders>      -> "train", "validation", "test"; a split
                                           folder with images but no mask folder (e.g. membrane's
                                           test/) is unlabelled: noted in `unlabelled`, not read
    Pascal VOC: [root/[VOCdevkit/]VOC20xx/]{JPEGImages,SegmentationClass,ImageSets/Segmentation}
                                           -> train.txt -> "train", val.txt -> "test"

Masks are greyscale or palette PNGs (a palette mask is read as its indices, never as colours).
Mask values map to classes by `class_map` ({value: name}, class ids in its order) or, without
one: {0, 255} -> 2 classes (binary masks), values below 64 -> themselves (index masks, e.g. VOC),
else each distinct value in order. `ignore_value` (255, VOC's void) marks pixels that count
nowhere, unless the map uses it. In the arrays returned, class ids are 0..K-1 and void is
`IGNORE` (255).
"""

import dataclasses
import pathlib

import numpy as np
from PIL import Image

from tasks.core.errors import UserError
from tasks.data import images as image_readers

IGNORE = 255  # void pixels in every mask array this module returns
IMAGE_DIRS = ("images", "image", "imgs", "img", "jpegimages")
MASK_DIRS = ("masks", "mask", "labels", "label", "annotations", "segmentationclass", "gt")
SPLIT_FOLDERS = image_readers.SPLIT_FOLDERS
VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]
EXPECTED_LAYOUTS = (
    "expected <root>/images/ beside <root>/masks/ (or image/ + label/, matched by file stem), "
    "the same inside train/ and test/ folders, or a Pascal VOC folder (JPEGImages/ + "
    "SegmentationClass/)"
)
SKIP_HINT = "or pass --skip-bad to skip such pairs"


@dataclasses.dataclass
class Split:
    """One split: parallel lists of images (H, W) or (H, W, 3) uint8, masks (H, W) uint8, names."""

    images: list
    masks: list
    names: list


@dataclasses.dataclass
class MaskData:
    """A segmentation dataset.

    Args:
        splits: dict. Split name ("train", optionally "validation" and "test") -> `Split`.
        class_names: list. Class id -> name.
        skipped: list. (where, reason) for every pair skipped under `skip_bad=True`.
        unlabelled: list. Folders of images without masks, which were not read.
    """

    splits: dict
    class_names: list
    skipped: list = dataclasses.field(default_factory=list)
    unlabelled: list = dataclasses.field(default_factory=list)


def read_masks(path, class_map=None, ignore_value=IGNORE, skip_bad=False):
    """Reads a segmentation dataset in any layout of the module docstring.

    Args:
        path: str or path. The dataset folder.
        class_map: dict or None. Mask value -> class name; class ids follow its order.
            None infers it (module docstring). Defaults to None.
        ignore_value: int or None. The mask value of void pixels (when not in the map).
            Defaults to 255.
        skip_bad: bool. Skip pairs with a corrupt file, a missing partner or different sizes
            (listed in `MaskData.skipped`) instead of raising `UserError`. Defaults to False.

    Returns:
        A `MaskData`; its splits always include "train".
    """
    path = pathlib.Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is not a folder; {EXPECTED_LAYOUTS}")
    voc = _find_voc(path)
    if voc is not None:
        pairs, unlabelled = _voc_pairs(voc), []
        if class_map is None:
            class_map = dict(enumerate(VOC_CLASSES))
    else:
        pairs, unlabelled = _folder_pairs(path)
    skipped = []
    splits = {}
    for split, split_pairs in pairs.items():
        images, masks, names = [], [], []
        for name, image_path, mask_path, dirs in split_pairs:
            problem = _missing_partner(name, image_path, mask_path, dirs)
            image = mask = None
            if problem is None:
                image, mask = _decode(image_path), _decode_mask(mask_path)
                if isinstance(image, str):
                    problem = f"{image}: {image_path}"
                elif isinstance(mask, str):
                    problem = mask
            if problem is None and image.shape[:2] != mask.shape:
                problem = (
                    f"mask {mask_path} is {mask.shape[1]}x{mask.shape[0]} but its image "
                    f"{image_path} is {image.shape[1]}x{image.shape[0]}; masks must have their "
                    "image's size"
                )
            if problem is not None:
                if not skip_bad:
                    raise UserError(f"{problem}; fix or remove the pair, {SKIP_HINT}")
                skipped.append((str(image_path or mask_path), problem))
                continue
            images.append(image)
            masks.append(mask)
            names.append(name)
        splits[split] = Split(images, masks, names)
    if not splits.get("train") or not splits["train"].images:
        raise UserError(f"no usable image/mask pairs for the train split in {path}; {EXPECTED_LAYOUTS}")
    return MaskData(splits, to_classes(splits, class_map, ignore_value), skipped, unlabelled)


def to_classes(splits, class_map=None, ignore_value=IGNORE):
    """Maps every split's mask values to class ids in place (void -> IGNORE); returns the names.

    Args:
        splits: dict. Split name -> `Split` whose masks hold raw values.
        class_map: dict or None. Mask value -> class name (None: inferred, module docstring).
        ignore_value: int or None. The value of void pixels. Defaults to 255.
    """
    lookup, class_names = _value_lookup(splits, class_map, ignore_value)
    for split in splits.values():
        split.masks = [_apply_lookup(lookup, mask, name, class_map) for mask, name in zip(split.masks, split.names)]
    return class_names


def parse_class_map(text):
    """`"0:membrane,255:cell"` -> {0: "membrane", 255: "cell"}; `""` -> None."""
    if not text.strip():
        return None
    result = {}
    for item in text.split(","):
        value, _, name = item.partition(":")
        try:
            value = int(value)
        except ValueError:
            value = -1
        if not 0 <= value <= 255 or not name.strip() or value in result:
            raise UserError(
                f"--class-map {text!r}: each item must be VALUE:NAME with a distinct VALUE in "
                f"0..255, e.g. '0:membrane,255:cell'. Received item: {item!r}"
            )
        result[value] = name.strip()
    if len(result) < 2:
        raise UserError(f"--class-map {text!r} needs at least 2 classes, e.g. '0:background,255:object'.")
    return result


# === Layouts ===


def _children(folder):
    return {
        entry.name.lower(): entry
        for entry in sorted(folder.iterdir())
        if entry.is_dir() and not image_readers._ignored(entry.name)
    }


def _files(folder):
    return sorted(
        entry for entry in folder.iterdir() if entry.is_file() and not image_readers._ignored(entry.name)
    )


def _pair_folders(folder):
    """(images folder, masks folder or None), or None when `folder` has no images folder."""
    children = _children(folder)
    image_dir = next((children[name] for name in IMAGE_DIRS if name in children), None)
    mask_dir = next((children[name] for name in MASK_DIRS if name in children), None)
    if image_dir is None:
        return None
    return image_dir, mask_dir


def _folder_pairs(root):
    """{split: [(stem, image path or None, mask path or None)]} and the unlabelled folders."""
    roots = {}
    if _pair_folders(root) is not None:
        roots["train"] = root
    else:
        for name, folder in _children(root).items():
            if name in SPLIT_FOLDERS:
                roots[SPLIT_FOLDERS[name]] = folder
    if "train" not in roots:
        raise UserError(f"no images/ and masks/ folders in {root}; {EXPECTED_LAYOUTS}")
    pairs, unlabelled = {}, []
    for split in image_readers.SPLIT_ORDER:
        if split not in roots:
            continue
        found = _pair_folders(roots[split])
        if found is None or found[1] is None:
            if split == "train":
                raise UserError(f"no masks folder beside the images in {roots[split]}; {EXPECTED_LAYOUTS}")
            unlabelled.append(str(roots[split]))  # e.g. membrane's test/: images, no masks
            continue
        image_dir, mask_dir = found
        image_files = {file.stem: file for file in _files(image_dir)}
        mask_files = {file.stem: file for file in _files(mask_dir)}
        if not image_files and not mask_files:
            raise UserError(f"{image_dir} and {mask_dir} are empty; add image/mask pairs")
        stems = sorted(set(image_files) | set(mask_files), key=_natural_key)
        dirs = (image_dir, mask_dir)
        pairs[split] = [(stem, image_files.get(stem), mask_files.get(stem), dirs) for stem in stems]
    return pairs, unlabelled


def _missing_partner(name, image_path, mask_path, dirs):
    """Why a pair is incomplete (naming the folder the partner was expected in), or None."""
    if image_path is None:
        return f"mask {mask_path} has no image named {name}.* in {dirs[0]}"
    if mask_path is None:
        return f"image {image_path} has no mask named {name}.png in {dirs[1]}"
    return None


def _find_voc(root):
    """The VOC20xx folder under `root` (itself, VOC20xx/ or VOCdevkit/VOC20xx/), or None."""
    candidates = [root] + sorted(root.glob("VOC*")) + sorted(root.glob("VOCdevkit/VOC*"))
    for folder in candidates:
        if (folder / "SegmentationClass").is_dir() and (folder / "JPEGImages").is_dir():
            return folder
    return None


def _voc_pairs(folder):
    """VOC: the ImageSets/Segmentation lists (val is the test split), else every mask -> train."""
    lists = folder / "ImageSets" / "Segmentation"
    names = {}
    for file_name, split in (("train.txt", "train"), ("val.txt", "test")):
        if (lists / file_name).is_file():
            names[split] = [line.strip() for line in (lists / file_name).read_text().splitlines() if line.strip()]
    if not names:
        names["train"] = sorted((file.stem for file in _files(folder / "SegmentationClass")), key=_natural_key)
    pairs = {}
    dirs = (folder / "JPEGImages", folder / "SegmentationClass")
    for split, stems in names.items():
        pairs[split] = []
        for stem in stems:
            image, mask = dirs[0] / f"{stem}.jpg", dirs[1] / f"{stem}.png"
            pairs[split].append((stem, image if image.is_file() else None, mask if mask.is_file() else None, dirs))
    return pairs


def _natural_key(text):
    """'2' < '10': slices named 0.png..29.png keep their numeric order."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in _split_digits(text)]


def _split_digits(text):
    parts, current = [], ""
    for char in text:
        if current and char.isdigit() != current[-1].isdigit():
            parts.append(current)
            current = ""
        current += char
    return parts + [current] if current else parts


# === Decoding ===


def _decode(path):
    """The image as uint8 (H, W) or (H, W, 3), or why it cannot be read (images.py's decoder)."""
    return image_readers.decode_file(path)


def _decode_mask(path):
    """The mask's values as uint8 (H, W): palette indices, grey levels; or why it cannot be read."""
    try:
        with Image.open(path) as image:
            image.load()
            mode = image.mode
            if mode in ("P", "L"):
                return np.asarray(image)  # a palette image gives its indices, not colours
            if mode in ("1", "LA", "PA"):
                return np.asarray(image.convert("L") if mode == "1" else image.getchannel(0))
            if mode.startswith("I") and np.asarray(image).max() <= 255:
                return np.asarray(image).astype(np.uint8)
            array = np.asarray(image.convert("RGB"))
    except Image.UnidentifiedImageError:
        return f"corrupt mask {path} (PIL recognises no image format in it)"
    except Exception as error:  # noqa: BLE001 (any PIL failure is a bad file)
        return f"corrupt or truncated mask {path} ({image_readers._one_line(error)})"
    if (array[..., 0] == array[..., 1]).all() and (array[..., 1] == array[..., 2]).all():
        return np.ascontiguousarray(array[..., 0])
    return f"mask {path} is a colour ({mode}) image; save masks as greyscale or palette PNGs of class values"


# === Values -> classes ===


def _value_lookup(splits, class_map, ignore_value):
    """A 256-entry table mask value -> class id (IGNORE for void, -1 for unmapped) and the names."""
    lookup = np.full(256, -1, np.int16)
    if class_map is None:
        values = set()
        for split in splits.values():
            for mask in split.masks:
                values.update(np.unique(mask).tolist())
        if values <= {0, 255}:  # binary masks
            class_map = {0: "background", 255: "foreground"}
        else:
            values.discard(ignore_value)
            kept = range(max(values) + 1) if max(values) < 64 else sorted(values)
            class_map = {value: str(value) for value in kept}
    for index, value in enumerate(class_map):
        lookup[value] = index
    if ignore_value is not None and ignore_value not in class_map:
        lookup[ignore_value] = IGNORE
    return lookup, list(class_map.values())


def _apply_lookup(lookup, mask, name, class_map):
    classes = lookup[mask]
    if (classes < 0).any():
        bad = int(mask[classes < 0][0])
        accepted = ", ".join(map(str, np.flatnonzero(lookup >= 0)))
        raise UserError(
            f"mask of {name!r} has value {bad}, which is not in the class map ({accepted}); "
            "add it to --class-map (VALUE:NAME) or fix the mask"
        )
    return classes.astype(np.uint8)


# === Demo ===


# Mean colour per demo class: shape and colour both tell the classes apart.
CLASS_COLOURS = {1: np.array([220.0, 90.0, 90.0]), 2: np.array([90.0, 210.0, 90.0]), 3: np.array([100.0, 120.0, 230.0])}


def demo_shapes(num_train=320, num_test=64, size=64, seed=0):
    """Generated RGB images of circles, squares and triangles on noisy backgrounds.

    Classes: background, circle, square, triangle. A 2-pixel band along every shape's edge is
    void (`IGNORE`), as in VOC, so the ignore label is exercised end to end.

    Returns:
        A `MaskData` with splits "train" and "test", images uint8 (size, size, 3).
    """
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[:size, :size]
    splits = {}
    for split, count in (("train", num_train), ("test", num_test)):
        images, masks = [], []
        for _ in range(count):
            image = rng.normal(90, 25, size=(size, size, 3))
            mask = np.zeros((size, size), np.uint8)
            edge = np.zeros((size, size), bool)
            for _ in range(rng.integers(1, 4)):
                shape = int(rng.integers(1, 4))
                radius = rng.uniform(size / 10, size / 5)
                cy, cx = rng.uniform(radius, size - radius, size=2)
                if shape == 1:
                    inside = (rows - cy) ** 2 + (cols - cx) ** 2 <= radius**2
                elif shape == 2:
                    inside = (np.abs(rows - cy) <= radius * 0.85) & (np.abs(cols - cx) <= radius * 0.85)
                else:  # an upward triangle: below the apex, inside the two slanted sides
                    height = (rows - (cy - radius)) / (2 * radius)
                    inside = (height >= 0) & (height <= 1) & (np.abs(cols - cx) <= height * radius)
                color = CLASS_COLOURS[shape] + rng.uniform(-40, 40, size=3)  # a hue per class, jittered
                image[inside] = color + rng.normal(0, 12, size=(int(inside.sum()), 3))
                mask[inside] = shape
                edge |= inside ^ _erode(inside)
                edge |= _dilate(inside) ^ inside
            mask[edge] = IGNORE
            images.append(np.clip(image, 0, 255).astype(np.uint8))
            masks.append(mask)
        splits[split] = Split(images, masks, [f"{split}{index}" for index in range(count)])
    return MaskData(splits, ["background", "circle", "square", "triangle"])


def _dilate(inside):
    out = inside.copy()
    out[1:] |= inside[:-1]
    out[:-1] |= inside[1:]
    out[:, 1:] |= inside[:, :-1]
    out[:, :-1] |= inside[:, 1:]
    return out


def _erode(inside):
    return ~_dilate(~inside)
