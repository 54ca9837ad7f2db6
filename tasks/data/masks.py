"""Semantic-segmentation datasets (images + per-pixel class masks) in their standard formats.

Usage:

    from tasks.data import masks

    data = masks.read("../shared/data/membrane", class_map={0: "membrane", 255: "cell"})
    split = data.splits["train"]      # Split(images=[(H, W[, 3]) uint8], masks=[(H, W) uint8], names)
    data.class_names                  # ["membrane", "cell"]
    data.layout, data.class_map       # "image/mask folders (image/ + label/)", {0: "membrane", 255: "cell"}

`read(source)` takes the `--data` value: `demo` (generated shapes, offline), `tfds:NAME`
(oxford_iiit_pet) or a folder, whose layout it detects:

    image/mask folders   root/{images,image,imgs,img}/NAME.* + root/{masks,mask,labels,label,
                         annotations,gt}/NAME[_mask|_L|...].png, or the same inside train/ val/ test/
                         (a split folder without masks, e.g. membrane's test/, is unlabelled: noted)
    SegNet / CamVid      root/{train,val,test}/*.png + root/{train,val,test}annot/*.png (or
                         <split>_labels/NAME_L.png as the CamVid colour tutorials ship); in a folder
                         named CamVid, index masks 0..11 are CamVid's 11 classes with 11 void
    Cityscapes           root/leftImg8bit/<split>/<city>/X_leftImg8bit.png +
                         root/gtFine/<split>/<city>/X_gtFine_labelIds.png: the 19 evaluated classes,
                         every other id void; val is the test split (test labels are not public)
    ADE20K               root/images/{training,validation}/X.jpg + root/annotations/<same>/X.png:
                         150 classes (names from objectInfo150.*), 0 void; validation is the test split
    Pascal VOC           [root/[VOCdevkit/]VOC20xx/]{JPEGImages,SegmentationClass,ImageSets/Segmentation}
                         train.txt -> "train", val.txt -> "test"

Masks are greyscale or palette PNGs of class values (a palette mask is read as its indices,
never as colours), or RGB colour-coded PNGs with a colour table `class_dict.csv` (`name,r,g,b`
rows) in the dataset folder; a class named void/unlabelled in the table is void.
Mask values map to classes by `class_map` ({value: name}, class ids in its order) or, without one,
by inference, printed and kept in `MaskData.class_map`: {0, 255} -> 2 classes (binary masks),
values below 64 -> themselves (index masks), else each distinct value in order. A value outside
the map (a stray value, e.g. a few anti-aliased pixels in binary masks) is a `UserError`, or void
and counted with `stray="void"`; it never changes what the other values mean. `ignore_value`
(255, VOC's void) marks pixels that count nowhere, unless the map uses it. In the arrays
returned, class ids are 0..K-1 and void is `IGNORE` (255).
"""

import csv
import dataclasses
import pathlib
import sys

import numpy as np
from PIL import Image

from tasks.core import pipeline as data_lib
from tasks.core.errors import UserError
from tasks.data import images as image_readers
from tasks.data import tfds

IGNORE = 255  # void pixels in every mask array this module returns
IMAGE_DIRS = ("images", "image", "imgs", "img", "jpegimages")
MASK_DIRS = ("masks", "mask", "labels", "label", "annotations", "segmentationclass", "gt")
# A mask's file name is its image's stem plus one of these (or nothing): X.png, X_L.png, X_mask.png.
MASK_SUFFIXES = ("_gtFine_labelIds", "_labelIds", "_mask", "_masks", "_label", "_labels", "_gt", "_seg", "_L", "-mask")
# SegNet/CamVid annotation folders beside a split folder: train/ + trainannot/ (or train_labels/).
ANNOTATION_SUFFIXES = ("annot", "_annot", "_labels", "_label", "_masks", "_mask", "label", "labels")
SPLIT_FOLDERS = image_readers.SPLIT_FOLDERS
STRAY_SHARE = 0.01  # binary {0, 255} masks stay binary while other values hold less than this share
MOSTLY_VOID = 0.5  # a warning when void pixels exceed this share of all mask pixels
VOID_NAMES = ("void", "unlabelled", "unlabeled", "ignore")
VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
]
# SegNet's CamVid: index masks 0..10, 11 void.
CAMVID_CLASSES = ["sky", "building", "pole", "road", "pavement", "tree", "sign_symbol", "fence", "car",
                  "pedestrian", "bicyclist"]
CAMVID_VOID = 11
# Cityscapes labelIds -> the 19 evaluated classes (cityscapesScripts `labels.py`, trainId order).
CITYSCAPES_CLASSES = {
    7: "road", 8: "sidewalk", 11: "building", 12: "wall", 13: "fence", 17: "pole", 19: "traffic light",
    20: "traffic sign", 21: "vegetation", 22: "terrain", 23: "sky", 24: "person", 25: "rider", 26: "car",
    27: "truck", 28: "bus", 31: "train", 32: "motorcycle", 33: "bicycle",
}
CITYSCAPES_VOID = tuple(sorted(set(range(34)) - set(CITYSCAPES_CLASSES))) + (IGNORE,)
ADE_NUM_CLASSES = 150
EXPECTED_LAYOUTS = (
    "expected <root>/images/ beside <root>/masks/ (or image/ + label/, matched by file stem), "
    "the same inside train/ and test/ folders, SegNet (train/ + trainannot/), Cityscapes "
    "(leftImg8bit/ + gtFine/), ADE20K (images/training/ + annotations/training/) or a Pascal VOC "
    "folder (JPEGImages/ + SegmentationClass/)"
)
SKIP_HINT = "or pass --skip-bad to skip such pairs"
STRAY_HINT = "or pass --stray-values void to count those pixels as void"


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
        unlabelled: list. Folders of images without masks (or with void-only masks), not read.
        layout: str. The layout found, e.g. "SegNet (train/ + trainannot/)".
        class_map: dict. Mask value (or "r,g,b" colour) -> class name, as applied.
        void: list. Mask values (or colours) read as void.
        inferred: bool. Whether `class_map` was inferred from the mask values.
        warnings: list of str. What the data looks wrong in, without being an error.
    """

    splits: dict
    class_names: list
    skipped: list = dataclasses.field(default_factory=list)
    unlabelled: list = dataclasses.field(default_factory=list)
    layout: str = ""
    class_map: dict = dataclasses.field(default_factory=dict)
    void: list = dataclasses.field(default_factory=list)
    inferred: bool = False
    warnings: list = dataclasses.field(default_factory=list)

    @property
    def num_images(self):
        return sum(len(split.images) for split in self.splits.values())

    def summary(self):
        """Two lines: `data: <layout>, <N> images, <K> classes` and the class map applied."""
        counts = ", ".join(f"{name} {len(split.images)}" for name, split in self.splits.items())
        items = [f"{value} {name}" for value, name in self.class_map.items()]
        shown = ", ".join(items[:12]) + (f", ... ({len(items)} in info.json)" if len(items) > 12 else "")
        void = ", ".join(map(str, _ranges(self.void))) or "none"
        source = "inferred from the mask values" if self.inferred else "given"
        return (f"data: {self.layout}, {self.num_images} images ({counts}), {len(self.class_names)} classes\n"
                f"class map ({source}): {shown}; void: {void}")


def read(source, class_map=None, ignore_value=IGNORE, stray="error", skip_bad=False, verbose=True):
    """Reads the `--data` value: `demo`, `tfds:NAME` or a folder in any layout of the docstring.

    Args:
        source: str. `demo`, `tfds:NAME[/CONFIG]` or a folder.
        class_map: dict or None. Mask value -> class name (None: the layout's, else inferred).
        ignore_value: int or None. The mask value of void pixels (when not in the map).
        stray: str. "error" (a value outside the class map is a `UserError`) or "void".
        skip_bad: bool. Skip (and list) broken pairs instead of raising `UserError`.
        verbose: bool. Print the layout, the class map and any warning. Defaults to True.

    Returns:
        A `MaskData`.
    """
    kind, value = data_lib.source(source)
    if kind == "demo":
        found = demo_shapes()
    elif kind == "tfds":
        found = _read_tfds(value)
    else:
        found = read_masks(value, class_map, ignore_value, skip_bad, stray)
    if verbose:
        print(found.summary())
        for warning in found.warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return found


def read_masks(path, class_map=None, ignore_value=IGNORE, skip_bad=False, stray="error"):
    """Reads a segmentation folder in any layout of the module docstring (see `read`).

    Returns:
        A `MaskData`; its splits always include "train".
    """
    path = pathlib.Path(path)
    if not path.is_dir():
        raise UserError(f"{path} is not a folder; {EXPECTED_LAYOUTS}")
    layout = _detect(path)
    colours = _colour_table(path)
    skipped, stray_pixels = [], {}
    splits = {}
    colour_mode = None  # decided by the first mask: colour-coded (with a table) or values
    for split, split_pairs in layout.pairs.items():
        images, masks, names = [], [], []
        for name, image_path, mask_path, dirs in split_pairs:
            problem = _missing_partner(name, image_path, mask_path, dirs)
            image = mask = None
            if problem is None:
                image, mask = _decode(image_path), _decode_mask(mask_path, colour=bool(colour_mode))
                if isinstance(image, str):
                    problem = f"{image}: {image_path}"
                elif isinstance(mask, str):
                    problem = mask
            if problem is None and colour_mode is None:
                colour_mode = colours is not None and mask.ndim == 3
                if colour_mode and class_map is not None:
                    raise UserError(f"--class-map maps mask values, but the masks of {path} are colour-coded "
                                    f"by {colours[0]}; drop --class-map or the colour table")
                if colours is not None and not colour_mode:
                    mask = _decode_mask(mask_path)
            if problem is None and mask.ndim == 3:
                if not colour_mode:
                    problem = (f"mask {mask_path} is a colour image; save masks as greyscale or palette PNGs "
                               "of class values, or put a colour table class_dict.csv (name,r,g,b rows) "
                               f"in {path}")
                else:
                    mask = _colours_to_ids(mask, mask_path, colours, stray, stray_pixels)
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
    if colour_mode:
        names = [name for name in colours[1] if name.lower() not in VOID_NAMES]
        found = MaskData(splits, names, skipped, layout.unlabelled, layout.name, inferred=False)
        found.class_map = {",".join(map(str, colour)): name for name, colour in colours[1].items()
                           if name.lower() not in VOID_NAMES}
        found.void = [",".join(map(str, colour)) for name, colour in colours[1].items() if name.lower() in VOID_NAMES]
        if stray_pixels:
            total = sum(stray_pixels.values())
            shown = ", ".join(f"({key})" for key in list(stray_pixels)[:5])
            found.warnings.append(f"{total} pixels hold colours that are not in {colours[0].name} ({shown}); "
                                  "counted as void (--stray-values void)")
    else:
        found = MaskData(splits, [], skipped, layout.unlabelled, layout.name)
        void = set() if ignore_value is None else {ignore_value}
        if class_map is None and layout.class_map is not None:
            if _values(splits) <= set(layout.class_map) | set(layout.void):  # else, e.g. SegNet
                class_map, void = dict(layout.class_map), void | set(layout.void)  # of other masks: inferred
        _apply(found, class_map, void, stray)
    found.warnings += _void_warnings(found)
    return found


def to_classes(splits, class_map=None, ignore_value=IGNORE, stray="error"):
    """Maps every split's mask values to class ids in place (void -> IGNORE); returns the names.

    Args:
        splits: dict. Split name -> `Split` whose masks hold raw values.
        class_map: dict or None. Mask value -> class name (None: inferred, module docstring).
        ignore_value: int or None. The value of void pixels. Defaults to 255.
        stray: str. "error" or "void": what a value outside the class map does.
    """
    found = MaskData(splits, [])
    _apply(found, class_map, set() if ignore_value is None else {ignore_value}, stray)
    return found.class_names


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


@dataclasses.dataclass
class _Layout:
    name: str
    pairs: dict  # split -> [(name, image path or None, mask path or None, (image dir, mask dir))]
    unlabelled: list = dataclasses.field(default_factory=list)
    class_map: dict = None  # the layout's own value -> name map, or None
    void: tuple = ()


def _detect(root):
    """The first layout that fits `root` (module docstring order, most specific first)."""
    voc = _find_voc(root)
    if voc is not None:
        return _Layout("Pascal VOC (JPEGImages/ + SegmentationClass/)", _voc_pairs(voc),
                       class_map=dict(enumerate(VOC_CLASSES)), void=(IGNORE,))
    for finder in (_cityscapes, _ade20k, _segnet):
        layout = finder(root)
        if layout is not None:
            return layout
    return _folder_layout(root)


def _children(folder):
    return {
        entry.name.lower(): entry
        for entry in sorted(folder.iterdir())
        if entry.is_dir() and not image_readers._ignored(entry.name)
    }


def _files(folder, recursive=False):
    entries = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(
        entry for entry in entries if entry.is_file() and not image_readers._ignored(entry.name)
    )


def _strip(stem, suffixes):
    for suffix in suffixes:
        if stem.endswith(suffix) and len(stem) > len(suffix):
            return stem[: -len(suffix)]
    return stem


def _match(image_files, mask_files, dirs, image_suffixes=()):
    """[(name, image or None, mask or None, dirs)] matched by stem, mask suffixes (X_L.png) aside."""
    images = {_strip(file.stem, image_suffixes): file for file in image_files}
    masks = {}
    for file in mask_files:
        masks[file.stem if file.stem in images else _strip(file.stem, MASK_SUFFIXES)] = file
    if not images and not masks:
        raise UserError(f"{dirs[0]} and {dirs[1]} are empty; add image/mask pairs")
    stems = sorted(set(images) | set(masks), key=_natural_key)
    return [(stem, images.get(stem), masks.get(stem), dirs) for stem in stems]


def _pair_folders(folder):
    """(images folder, masks folder or None), or None when `folder` has no images folder."""
    children = _children(folder)
    image_dir = next((children[name] for name in IMAGE_DIRS if name in children), None)
    mask_dir = next((children[name] for name in MASK_DIRS if name in children), None)
    if image_dir is None:
        return None
    return image_dir, mask_dir


def _folder_layout(root):
    """root/images + root/masks, or the same inside split folders."""
    roots = {}
    if _pair_folders(root) is not None:
        roots["train"] = root
    else:
        for name, folder in _children(root).items():
            if name in SPLIT_FOLDERS:
                roots[SPLIT_FOLDERS[name]] = folder
    if "train" not in roots:
        raise UserError(f"no images/ and masks/ folders in {root}; {EXPECTED_LAYOUTS}")
    pairs, unlabelled, used = {}, [], None
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
        used = used or f"{image_dir.name}/ + {mask_dir.name}/"
        pairs[split] = _match(_files(image_dir), _files(mask_dir), (image_dir, mask_dir))
    where = " in split folders" if roots.get("train") != root else ""
    return _Layout(f"image/mask folders ({used}){where}", pairs, unlabelled)


def _segnet(root):
    """SegNet/CamVid: <split>/ beside <split>annot/ (or <split>_labels/)."""
    children = _children(root)
    pairs, annotation = {}, None
    for name, folder in children.items():
        if name not in SPLIT_FOLDERS:
            continue
        masks = next((children[name + suffix] for suffix in ANNOTATION_SUFFIXES if name + suffix in children), None)
        if masks is None:
            continue
        if SPLIT_FOLDERS[name] == "train":
            annotation = f"{folder.name}/ + {masks.name}/"
        pairs[SPLIT_FOLDERS[name]] = _match(_files(folder), _files(masks), (folder, masks))
    if "train" not in pairs:
        return None
    pairs = {split: pairs[split] for split in image_readers.SPLIT_ORDER if split in pairs}
    if "camvid" not in str(root.resolve()).lower():
        return _Layout(f"SegNet ({annotation})", pairs)
    class_map = dict(enumerate(CAMVID_CLASSES))
    return _Layout(f"SegNet CamVid ({annotation})", pairs, class_map=class_map, void=(CAMVID_VOID, IGNORE))


def _cityscapes(root):
    """leftImg8bit/<split>/<city>/X_leftImg8bit.png + gtFine/<split>/<city>/X_gtFine_labelIds.png."""
    images_root, masks_root = root / "leftImg8bit", root / "gtFine"
    if not (images_root.is_dir() and masks_root.is_dir()):
        return None
    pairs, unlabelled = {}, []
    for split, target in (("train", "train"), ("val", "test"), ("test", None)):
        if not (images_root / split).is_dir():
            continue
        if target is None:
            unlabelled.append(str(images_root / split))  # Cityscapes test labels are not public
            continue
        dirs = (images_root / split, masks_root / split)
        images = [file for file in _files(dirs[0], recursive=True) if file.stem.endswith("_leftImg8bit")]
        masks = [file for file in _files(dirs[1], recursive=True) if file.name.endswith("_labelIds.png")]
        pairs[target] = _match(images, masks, dirs, image_suffixes=("_leftImg8bit",))
    if "train" not in pairs:
        raise UserError(f"{images_root} has no train/<city>/*_leftImg8bit.png; {EXPECTED_LAYOUTS}")
    return _Layout("Cityscapes (leftImg8bit/ + gtFine/ labelIds)", pairs, unlabelled,
                   dict(CITYSCAPES_CLASSES), CITYSCAPES_VOID)


def _ade20k(root):
    """ADEChallengeData2016: images/{training,validation} + annotations/{training,validation}."""
    if not (root / "images" / "training").is_dir() or not (root / "annotations" / "training").is_dir():
        return None
    pairs = {}
    for split, target in (("training", "train"), ("validation", "test")):
        dirs = (root / "images" / split, root / "annotations" / split)
        if dirs[0].is_dir() and dirs[1].is_dir():
            pairs[target] = _match(_files(dirs[0]), _files(dirs[1]), dirs)
    names = _ade_names(root)
    class_map = {value: names.get(value, str(value)) for value in range(1, ADE_NUM_CLASSES + 1)}
    return _Layout("ADE20K (images/training/ + annotations/training/)", pairs, class_map=class_map, void=(0,))


def _ade_names(root):
    """{index: first name} from objectInfo150.txt/.csv (Idx, Ratio, Train, Val, Name), if present."""
    for path in sorted(root.glob("objectInfo150.*")):
        delimiter = "\t" if path.suffix == ".txt" else ","
        try:
            rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines(), delimiter=delimiter))
        except (OSError, UnicodeDecodeError):
            continue
        names = {}
        for row in rows[1:]:
            if len(row) >= 5 and row[0].strip().isdigit():
                names[int(row[0])] = row[4].split(";")[0].strip()
        return names
    return {}


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


# === Colour tables ===


def _colour_table(root):
    """(path, {name: (r, g, b)}) from class_dict.csv (or any CSV of name,r,g,b) in `root`, or None."""
    for path in sorted(root.glob("*.csv"), key=lambda file: file.name != "class_dict.csv"):
        try:
            rows = list(csv.reader(path.read_text(encoding="utf-8-sig").splitlines()))
        except (OSError, UnicodeDecodeError):
            continue
        header = [cell.strip().lower() for cell in rows[0]] if rows else []
        if header[:4] not in (["name", "r", "g", "b"], ["class", "r", "g", "b"]):
            continue
        table = {}
        for number, row in enumerate(rows[1:], 2):
            try:
                colour = tuple(int(cell) for cell in row[1:4])
            except ValueError:
                colour = ()
            if len(colour) != 3 or not all(0 <= c <= 255 for c in colour) or not row[0].strip():
                raise UserError(f"{path} line {number}: expected name,r,g,b with r, g, b in 0..255; "
                                f"received {','.join(row)!r}")
            if colour in table.values():
                raise UserError(f"{path} line {number}: colour {colour} is given twice; each class needs its own")
            table[row[0].strip()] = colour
        if len(table) < 2:
            raise UserError(f"{path}: a colour table needs at least 2 rows of name,r,g,b")
        return path, table
    return None


def _colours_to_ids(rgb, path, colours, stray, stray_pixels):
    """(H, W, 3) colours -> (H, W) class ids (void names -> IGNORE); unknown colours -> error or void."""
    table_path, table = colours
    ids, next_id = {}, 0
    for name, colour in table.items():
        packed = (colour[0] << 16) | (colour[1] << 8) | colour[2]
        if name.lower() in VOID_NAMES:
            ids[packed] = IGNORE
        else:
            ids[packed], next_id = next_id, next_id + 1
    packed = (rgb[..., 0].astype(np.int32) << 16) | (rgb[..., 1].astype(np.int32) << 8) | rgb[..., 2]
    values, inverse = np.unique(packed, return_inverse=True)
    mapped = np.array([ids.get(int(value), -1) for value in values], np.int16)
    for value in values[mapped < 0]:
        colour = f"{value >> 16},{(value >> 8) & 255},{value & 255}"
        count = int((packed == value).sum())
        if stray != "void":
            raise UserError(f"mask {path} has colour ({colour}) in {count} pixels, which is not in the colour "
                            f"table {table_path}; add a row name,{colour} to it, fix the mask, {STRAY_HINT}")
        stray_pixels[colour] = stray_pixels.get(colour, 0) + count
    mapped[mapped < 0] = IGNORE
    return mapped[inverse.reshape(packed.shape)].astype(np.uint8)


# === Decoding ===


def _decode(path):
    """The image as uint8 (H, W) or (H, W, 3), or why it cannot be read (images.py's decoder)."""
    return image_readers.decode_file(path)


def _decode_mask(path, colour=False):
    """The mask as uint8 (H, W) values (palette indices, grey levels) or (H, W, 3) colours; or why
    it cannot be read. `colour=True` reads every mask as its colours (colour-coded masks)."""
    try:
        with Image.open(path) as opened:
            opened.load()
            image = image_readers.upright(opened)  # as its image is read
            mode = image.mode
            if colour:
                return np.asarray(image.convert("RGB"))
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
    return array


# === Values -> classes ===


def _values(splits):
    return {value for split in splits.values() for mask in split.masks for value in np.unique(mask).tolist()}


def infer_class_map(counts, void):
    """The class map (value -> name) that the value histogram `counts` (256,) implies.

    {0, 255} is binary even beside a few pixels of other values (under `STRAY_SHARE`): those
    are stray, never a reason to renumber the classes. Else values below 64 are index masks
    (0..max, absent ones included), higher values each a class in order; `void` values are none.
    """
    present = [int(value) for value in np.flatnonzero(counts)]
    other = sum(int(counts[value]) for value in present if value not in (0, 255))
    if set(present) <= {0, 255} or (counts[0] and counts[255] and other < STRAY_SHARE * counts.sum()):
        return {0: "background", 255: "foreground"}
    kept = [value for value in present if value not in void]
    if not kept:
        raise UserError(f"every mask pixel holds a void value ({', '.join(map(str, sorted(void)))}); "
                        "pass --ignore-value -1 if those values are classes")
    if max(kept) < 64:
        kept = [value for value in range(max(kept) + 1) if value not in void]
    return {value: str(value) for value in kept}


def _apply(found, class_map, void, stray):
    """Maps `found`'s raw mask values to class ids in place; fills its class map, void, warnings."""
    per_mask = [(split, name, np.bincount(mask.ravel(), minlength=256))
                for split, part in found.splits.items() for mask, name in zip(part.masks, part.names)]
    counts = sum(count for _, _, count in per_mask) if per_mask else np.zeros(256, np.int64)
    found.inferred = class_map is None
    if class_map is None:
        class_map = infer_class_map(counts, void)
    void = sorted(value for value in void if value not in class_map)
    lookup = np.full(256, -1, np.int16)
    for index, value in enumerate(class_map):
        lookup[value] = index
    lookup[void] = IGNORE
    strays = [int(value) for value in np.flatnonzero((lookup < 0) & (counts > 0))]
    if strays:
        parts = []
        for value in strays[:5]:
            masks = [f"{split}/{name}" for split, name, count in per_mask if count[value]]
            parts.append(f"value {value} in {int(counts[value])} pixels of {len(masks)} mask(s), first {masks[0]!r}")
        mapped = ", ".join(f"{value} {name}" for value, name in list(class_map.items())[:8])
        if len(class_map) > 8:
            mapped += ", ..."
        source = "inferred from the masks" if found.inferred else "given"
        if stray != "void":
            raise UserError(
                f"mask {'; '.join(parts)}: not in the class map {source} ({mapped}); name every class "
                f"with --class-map VALUE:NAME,..., fix the masks, {STRAY_HINT}"
            )
        lookup[strays] = IGNORE
        total = sum(int(counts[value]) for value in strays)
        found.warnings.append(f"{total} mask pixels hold values outside the class map "
                              f"({', '.join(map(str, strays))}); counted as void (--stray-values void)")
    for part in found.splits.values():
        part.masks = [lookup[mask].astype(np.uint8) for mask in part.masks]
    found.class_names = list(class_map.values())
    found.class_map = dict(class_map)
    found.void = void


def _void_warnings(found):
    """A warning when most mask pixels are void; a split whose masks are all void becomes unlabelled."""
    warnings, void_total, total = [], 0, 0
    for name in list(found.splits):
        part = found.splits[name]
        void = sum(int((mask == IGNORE).sum()) for mask in part.masks)
        size = sum(mask.size for mask in part.masks)
        if name != "train" and size and void == size:
            warnings.append(f"every mask pixel of the {name} split is void; it is left out as unlabelled")
            found.unlabelled.append(f"{name} split (void masks)")
            del found.splits[name]
            continue
        void_total, total = void_total + void, total + size
    if total and void_total > MOSTLY_VOID * total:
        warnings.append(f"{100 * void_total / total:.0f}% of the mask pixels are void "
                        f"({', '.join(map(str, _ranges(found.void))) or IGNORE}); check --class-map and "
                        "--ignore-value")
    return warnings


def _ranges(values):
    """[0, 1, 2, 5] -> ["0-2", "5"] for ints; other values as they are."""
    if not all(isinstance(value, int) for value in values):
        return list(values)
    result, values = [], sorted(values)
    for value in values:
        if result and isinstance(result[-1], list) and result[-1][1] == value - 1:
            result[-1][1] = value
        else:
            result.append([value, value])
    return [f"{a}-{b}" if b > a else str(a) for a, b in result]


# === TFDS ===


def _pick_image_and_mask(info):
    images = tfds.keys_of(info, "Image")
    mask_key = next((key for key in images if "mask" in key or "segmentation" in key), None)
    image_key = next((key for key in images if key != mask_key), None)
    return {"image": image_key, "mask": mask_key} if mask_key and image_key else None


def _read_tfds(name, data_dir=None):
    """A TFDS segmentation dataset (image + mask features) as a `MaskData` (oxford_iiit_pet)."""
    splits, _ = tfds.read(name, _pick_image_and_mask, "image and segmentation-mask features", data_dir)
    found = {}
    for split, examples in splits.items():
        part = Split([], [], [])
        for index, example in enumerate(examples):
            image = example["image"]
            part.images.append(image[..., 0] if image.shape[-1] == 1 else image)
            part.masks.append(example["mask"][..., 0])
            part.names.append(f"{split}{index}")
        found[split] = part
    # The pet trimaps: 1 pet, 2 background, 3 border (the Keras tutorials' mask - 1).
    class_map = {1: "pet", 2: "background", 3: "border"} if name.startswith("oxford_iiit_pet") else None
    result = MaskData(found, [], layout=f"tfds:{name}")
    _apply(result, class_map, {IGNORE}, "error")
    return result


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
    names = ["background", "circle", "square", "triangle"]
    return MaskData(splits, names, layout="demo (generated shapes)", class_map=dict(enumerate(names)), void=[IGNORE])


def _dilate(inside):
    out = inside.copy()
    out[1:] |= inside[:-1]
    out[:-1] |= inside[1:]
    out[:, 1:] |= inside[:, :-1]
    out[:, :-1] |= inside[:, 1:]
    return out


def _erode(inside):
    return ~_dilate(~inside)
