"""Object-detection datasets in their standard formats, and box-aware augmentation.

Usage:

    from tasks.data import boxes

    data = boxes.read("../shared/data/bccd")     # prints: data: Pascal VOC, 364 images, 3 classes
    split = data.splits["train"]  # images [uint8 (H, W, 3)], boxes [(n, 4) x1 y1 x2 y2 px], classes [(n,)]
    data.class_names, data.layout, data.clipped, data.dropped  # boxes clipped to / dropped as outside the image
    boxes.read("demo")                           # generated scenes of shapes, offline
    boxes.read("tfds:voc/2007")                  # TFDS (needs the data or the internet)
    boxes.read_boxes("labelimg_folder")          # a path only, without the printed line

Layouts `read` detects in a path (in this order):

    Pascal VOC        root/Annotations/*.xml + root/JPEGImages/ [+ root/ImageSets/Main/{train,val,test}.txt]
                      (root may also hold one such folder, e.g. VOCdevkit/VOC2007 or bccd/BCCD)
    YOLO data.yaml    root/data.yaml (Ultralytics) whose train:/val:/test: name image folders or list
                      files (relative to `path:` or to the yaml); labels at .../labels/... for .../images/...
    COCO JSON         a .json file, or root/[annotations/|<split>/]*.json (split from the name or the
                      folder: *train*, *val*, *test*), images at <file_name> in images/ or any folder near
    Label Studio JSON the same places: an export's list of tasks, `data.image` (found by file name near
                      the JSON) and `annotations[0].result[]` rectanglelabels in percent of the image
    CreateML JSON     the same places: [{"image": name, "annotations": [{"label", "coordinates":
                      {x, y, width, height}}]}], x, y the box centre in pixels, images beside the JSON
    YOLO txt          root/images/[split/]*.jpg + root/labels/[split/]*.txt ("class cx cy w h",
                      normalized), class names in root/classes.txt, obj.names or data.yaml (`names:`)
    VOC XML files     root/**/*.xml (LabelImg, Roboflow VOC), each image beside its XML or in a sibling
                      folder (annotations/ beside images/), found by <filename>, else the XML's own stem;
                      train/, val/, test/ folders on the way give the splits
    box CSV           root/[annotations/|<split>/]*.csv or a .csv file with the header
                      filename,width,height,class,xmin,ymin,xmax,ymax (TF Object Detection, Roboflow;
                      width and height optional), one row per box, images beside it or anywhere under root

A layout without a test split gets one held out by the task (`--test-fraction`). Boxes partly
outside the image are clipped to it; boxes of zero area (after clipping) are dropped; both are
counted (`BoxData.clipped`, `BoxData.dropped`). An image without objects is a valid negative. Every
other problem (malformed XML/JSON/CSV/txt, a missing or corrupt image, an unknown class name)
raises `UserError` naming the file, or under `skip_bad=True` skips the image and lists it in
`BoxData.skipped`.
"""

import collections
import concurrent.futures
import dataclasses
import json
import math
import os
import pathlib
import re
import urllib.parse
import xml.etree.ElementTree as ElementTree

import numpy as np
import tensorflow as tf
from PIL import Image
from PIL import ImageDraw

from tasks.core.errors import UserError
from tasks.data import images as image_readers
from tasks.data import tfds

SPLIT_NAMES = {"train": "train", "val": "validation", "valid": "validation", "validation": "validation", "test": "test"}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")
SKIP_HINT = "fix or remove it, or pass --skip-bad to skip bad images"
EXPECTED_LAYOUTS = (
    "expected Pascal VOC (Annotations/*.xml, JPEGImages/, ImageSets/Main/*.txt), VOC XML files beside "
    "their images (LabelImg), a COCO, Label Studio or CreateML .json file (or a folder of them), YOLO "
    "txt (images/ and labels/ with classes.txt or data.yaml), or a box CSV "
    "(filename,width,height,class,xmin,ymin,xmax,ymax)"
)
CSV_COLUMNS = ("filename", "class", "xmin", "ymin", "xmax", "ymax")  # width, height: optional
CSV_HEADER = "filename,width,height,class,xmin,ymin,xmax,ymax"
FILL = 114.0  # grey of padding (letterbox) and of pixels uncovered by augmentation


@dataclasses.dataclass
class Split:
    """One split: images uint8 (H, W, 3), boxes float32 (n, 4) `[x_min, y_min, x_max, y_max]` in
    pixels, classes int32 (n,), and a name per image."""

    images: list
    boxes: list
    classes: list
    names: list

    def __len__(self):
        return len(self.images)

    def take(self, indices):
        return Split(*([values[i] for i in indices] for values in (self.images, self.boxes, self.classes, self.names)))


@dataclasses.dataclass
class BoxData:
    """A detection dataset: splits ("train" always; "validation", "test" when the data has them)."""

    splits: dict
    class_names: list
    skipped: list = dataclasses.field(default_factory=list)  # (where, reason)
    clipped: int = 0  # boxes clipped to the image
    dropped: int = 0  # boxes of zero area (after clipping) dropped
    layout: str = ""  # the layout found, e.g. "Pascal VOC", "box CSV"


@dataclasses.dataclass
class _Record:
    """One annotated image before decoding: objects as (class name or id, x1, y1, x2, y2)."""

    split: str
    name: str
    image_path: pathlib.Path
    objects: list
    where: str
    normalized: bool = False  # YOLO txt: coordinates are fractions of the image size


# === Entry point ===


def read(source, class_names=None, skip_bad=False, verbose=True):
    """Reads the `--data` value: `demo`, `tfds:NAME[/CONFIG]` or a path in any layout above.

    Args:
        source: str or path. `demo`, `tfds:...`, a folder or an annotation file.
        class_names: list of str or None. The classes, in order (paths only); an object of another
            class is an error. None: every class the annotations name (sorted, or the file's order).
        skip_bad: bool. Skip (and list) bad images instead of raising. Defaults to False.
        verbose: bool. Print the one line `data: <layout>, <N> images, <K> classes`. Defaults to True.

    Returns:
        A `BoxData`.
    """
    from tasks.core import pipeline

    kind, value = pipeline.source(str(source))
    if kind == "demo":
        found = demo_scenes()
    elif kind == "tfds":
        found = _read_tfds(value)
    else:
        found = read_boxes(value, class_names=class_names, skip_bad=skip_bad)
    if verbose:
        count = sum(len(split) for split in found.splits.values())
        print(f"data: {found.layout}, {count} images, {len(found.class_names)} "
              f"class{'es' if len(found.class_names) != 1 else ''}")
    return found


def read_boxes(path, class_names=None, skip_bad=False):
    """Reads a detection dataset at a path, in any layout of the module docstring.

    Args:
        path: str or path. A folder, a COCO / Label Studio / CreateML .json, a box .csv or an Ultralytics
            data.yaml file.
        class_names: list of str or None. The classes, in order; an object of another class is
            an error (VOC, COCO by name). None: every class the annotations name, sorted.
        skip_bad: bool. Skip (and list) bad images instead of raising. Defaults to False.

    Returns:
        A `BoxData`.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise UserError(f"no such file or directory: {path}; {EXPECTED_LAYOUTS}")
    if path.is_file():
        suffix = path.suffix.lower()
        if suffix == ".json":
            return read_json([path], class_names, skip_bad)
        if suffix == ".csv":
            return read_box_csv([path], class_names, skip_bad, root=path.parent)
        if suffix in (".yaml", ".yml"):
            return read_yolo_yaml(path, class_names, skip_bad)
        raise UserError(
            f"{path} is a single file but not a detection .json, a box .csv or a YOLO data.yaml; {EXPECTED_LAYOUTS}"
        )
    voc = _find_voc_root(path)
    if voc is not None:
        return read_voc(voc, class_names, skip_bad)
    yaml_file = _find_yolo_yaml(path)
    if yaml_file is not None:
        return read_yolo_yaml(yaml_file, class_names, skip_bad)
    jsons = _annotation_files(path, "json")
    if jsons:
        return read_json(jsons, class_names, skip_bad)
    if (path / "labels").is_dir() and (path / "images").is_dir():
        return read_yolo(path, class_names, skip_bad)
    xmls = sorted(xml for xml in path.rglob("*.xml") if not _hidden(xml, path))
    if xmls:
        return read_voc_xml(path, xmls, class_names, skip_bad)
    csvs = _annotation_files(path, "csv")
    if csvs:
        return read_box_csv(csvs, class_names, skip_bad, root=path)
    raise UserError(f"no detection dataset in {path}; {EXPECTED_LAYOUTS}")


def _find_voc_root(path):
    if (path / "Annotations").is_dir():
        return path
    inner = [child for child in sorted(path.iterdir()) if child.is_dir() and (child / "Annotations").is_dir()]
    return inner[0] if len(inner) == 1 else None


def _annotation_files(root, extension):
    """`*.<extension>` in root, else in root/annotations/, else in root/<split>/ folders."""
    found = sorted(root.glob(f"*.{extension}")) or sorted((root / "annotations").glob(f"*.{extension}"))
    if not found:
        for child in sorted(root.iterdir()):
            if child.is_dir() and child.name.lower() in SPLIT_NAMES:
                found += sorted(child.glob(f"*.{extension}"))
    return [file for file in found if not file.name.startswith(".")]


def _hidden(path, root):
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _split_word(text):
    """The split a name says (`train_labels` -> train, `valid` -> validation), or None."""
    for word in re.split(r"[^a-z]+", text.lower()):
        for token, split in SPLIT_NAMES.items():
            if word.startswith(token):
                return split
    return None


def _split_of_path(path, root):
    """The split of the first folder between root and `path` named train, val(id), validation or test."""
    for part in path.relative_to(root).parts[:-1]:
        if part.lower() in SPLIT_NAMES:
            return SPLIT_NAMES[part.lower()]
    return "train"


class _ImageFinder:
    """Finds an image by file name: near a given folder first, then anywhere under the root."""

    def __init__(self, root):
        self.root = pathlib.Path(root)
        self._index = None

    def near(self, folder):
        """`folder`, its images/ folder, and its sibling folders (annotations/ beside images/)."""
        folders = [folder, folder / "images"]
        parent = folder.parent
        if parent != folder:
            folders += [parent, parent / "images"]
            folders += [child for child in sorted(parent.iterdir()) if child.is_dir() and child != folder]
        return folders

    def find(self, names, folder):
        """The first existing `<near folder>/<name>` for `names` in order, else a unique match by
        file name under the root (a name's own folders tried first); None when there is none."""
        for name in names:
            for place in self.near(folder):
                if (place / name).is_file():
                    return place / name
        for name in names:
            matches = self.index().get(pathlib.Path(name).name.lower(), [])
            if matches:
                return matches[0]
        return None

    def index(self):
        if self._index is None:
            self._index = collections.defaultdict(list)
            for file in sorted(self.root.rglob("*")):
                if file.suffix.lower() in IMAGE_EXTENSIONS and not _hidden(file, self.root) and file.is_file():
                    self._index[file.name.lower()].append(file)
        return self._index


# === Pascal VOC ===


def read_voc(root, class_names=None, skip_bad=False):
    """Pascal VOC: `Annotations/<id>.xml`, `JPEGImages/`, splits from `ImageSets/Main/<split>.txt`."""
    root = pathlib.Path(root)
    sets = root / "ImageSets" / "Main"
    ids = {}
    for stem, split in (("train", "train"), ("val", "validation"), ("test", "test")):
        if (sets / f"{stem}.txt").is_file():
            ids[split] = [line.split()[0] for line in (sets / f"{stem}.txt").read_text().splitlines() if line.strip()]
    if "train" not in ids and (sets / "trainval.txt").is_file():
        ids["train"] = [line.split()[0] for line in (sets / "trainval.txt").read_text().splitlines() if line.strip()]
    if "train" not in ids:  # no split files: every annotation is training data
        ids = {"train": sorted(xml.stem for xml in (root / "Annotations").glob("*.xml"))}
    records, bad = [], []
    for split, names in ids.items():
        for name in names:
            xml = root / "Annotations" / f"{name}.xml"
            try:
                if not xml.is_file():
                    listed = "val" if split == "validation" else split
                    raise _BadRecord(f"annotation file is missing (listed in ImageSets/Main/{listed}.txt)")
                tree = _parse_xml(xml)
                records.append(_Record(split, name, _voc_image(tree, root, name), _voc_objects(tree), str(xml)))
            except _BadRecord as error:
                bad.append((str(xml), str(error)))
    return _assemble(records, bad, class_names, skip_bad, layout="Pascal VOC")


class _BadRecord(Exception):
    """A bad annotation or image: raised as `UserError`, or skipped under skip_bad."""


def _parse_xml(xml):
    try:
        tree = ElementTree.parse(xml).getroot()
    except ElementTree.ParseError as error:
        raise _BadRecord(f"malformed XML ({error})")
    if tree.tag != "annotation":
        raise _BadRecord(f"not a VOC annotation: its root element is <{tree.tag}>, not <annotation>")
    return tree


def _voc_image(tree, root, name):
    """The image of a Pascal VOC annotation: JPEGImages/<filename>, else JPEGImages/<id>.<ext>."""
    filename = (tree.findtext("filename") or "").strip()
    image_path = root / "JPEGImages" / filename if filename else None
    if image_path is None or not image_path.is_file():
        candidates = [root / "JPEGImages" / f"{name}{ext}" for ext in IMAGE_EXTENSIONS]
        found = next((candidate for candidate in candidates if candidate.is_file()), None)
        if found is None:
            raise _BadRecord(f"its image {image_path or candidates[0]} is missing")
        image_path = found
    return image_path


def _voc_objects(tree):
    """[(name, x1, y1, x2, y2)] of a VOC annotation's <object>s."""
    objects = []
    for index, element in enumerate(tree.findall("object"), start=1):
        label = (element.findtext("name") or "").strip()
        box = element.find("bndbox")
        try:
            coords = [float(box.findtext(key)) for key in ("xmin", "ymin", "xmax", "ymax")]
        except (AttributeError, TypeError, ValueError):
            raise _BadRecord(f"object {index} ({label or 'no name'}) has no numeric bndbox xmin/ymin/xmax/ymax")
        if not label:
            raise _BadRecord(f"object {index} has no <name>")
        objects.append((label, *coords))
    return objects


# === VOC XML files beside their images (LabelImg, Roboflow VOC) ===


def read_voc_xml(root, xmls, class_names=None, skip_bad=False):
    """VOC XML files anywhere under `root`, each image beside it or in a sibling folder.

    The image is the XML's `<filename>` (its base name: LabelImg may write a path), else the XML's
    own stem with an image extension; looked for beside the XML, in images/, in the sibling folders,
    then anywhere under root. Splits come from train/, val/ or test/ folders on the XML's path.
    """
    root = pathlib.Path(root)
    finder = _ImageFinder(root)
    records, bad = [], []
    for xml in xmls:
        try:
            tree = _parse_xml(xml)
            filename = pathlib.PureWindowsPath((tree.findtext("filename") or "").strip()).name
            names = ([filename] if filename else []) + [f"{xml.stem}{ext}" for ext in IMAGE_EXTENSIONS]
            if filename and not pathlib.Path(filename).suffix:
                names = [f"{filename}{ext}" for ext in IMAGE_EXTENSIONS] + names
            image_path = finder.find(names, xml.parent)
            if image_path is None:
                shown = filename or f"{xml.stem}.jpg"
                raise _BadRecord(
                    f"its image {shown} is in no folder near it (looked beside it, in {xml.parent.parent}/*/ "
                    f"and under {root}, also for {xml.stem}.*); put the image beside the XML or in a sibling folder"
                )
            split = _split_of_path(xml, root)
            records.append(_Record(split, image_path.stem, image_path, _voc_objects(tree), str(xml)))
        except _BadRecord as error:
            bad.append((str(xml), str(error)))
    records.sort(key=lambda record: (record.split, record.name))
    return _assemble(records, bad, class_names, skip_bad, layout="LabelImg VOC XML")


# === Box CSV (TF Object Detection, Roboflow) ===


def read_box_csv(files, class_names=None, skip_bad=False, root=None):
    """Box CSVs `filename,width,height,class,xmin,ymin,xmax,ymax`: one row per box, pixel corners.

    A row with an empty class and empty coordinates is an image without objects. Several CSVs give
    the splits from their names or folders (*train*, *val*, *test*); one CSV is the train split.
    """
    import csv

    files = [pathlib.Path(file) for file in files]
    root = pathlib.Path(root or files[0].parent)
    finder = _ImageFinder(root)
    by_image = {}  # (split, filename) -> [objects], in order of appearance
    wheres = {}
    bad = []
    for file in files:
        split = "train"
        if len(files) > 1:
            split = _split_word(file.stem) or _split_word(file.parent.name)
            if split is None:
                raise UserError(f"cannot tell the split of {file}: with several box CSVs, name them (or their "
                                "folders) *train*, *val* and *test*")
        try:
            lines = file.read_text(encoding="utf-8-sig").splitlines()
        except UnicodeDecodeError:
            raise UserError(f"{file} is not UTF-8 text; expected a box CSV with the header {CSV_HEADER}")
        reader = csv.reader(lines)
        header = [column.strip().lower() for column in next(reader, [])]
        missing = [column for column in CSV_COLUMNS if column not in header]
        if missing:
            raise UserError(
                f"{file}: the box CSV has no {', '.join(missing)} column{'s' if len(missing) > 1 else ''} "
                f"(its header: {','.join(header) or 'empty'}); give it the header {CSV_HEADER}"
            )
        column = {name: header.index(name) for name in CSV_COLUMNS}
        for number, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue
            where = f"{file}: line {number}"
            if len(row) < len(header):
                bad.append((where, f"{len(row)} fields, the header has {len(header)}"))
                continue
            value = {name: row[index].strip() for name, index in column.items()}
            key = (split, value["filename"])
            objects = by_image.setdefault(key, [])
            wheres.setdefault(key, (file, where))
            if not value["class"] and not any(value[name] for name in ("xmin", "ymin", "xmax", "ymax")):
                continue  # an image without objects
            try:
                coords = [float(value[name]) for name in ("xmin", "ymin", "xmax", "ymax")]
            except ValueError:
                bad.append((where, "xmin, ymin, xmax and ymax must be numbers (pixels)"))
                continue
            if not value["class"]:
                bad.append((where, "the class is empty"))
                continue
            objects.append((value["class"], *coords))
    records = []
    for (split, filename), objects in by_image.items():
        file, where = wheres[(split, filename)]
        image_path = finder.find([filename], file.parent) if filename else None
        if image_path is None:
            shown = filename or "(empty filename)"
            bad.append((where, f"its image {shown} is in no folder near the CSV nor under {root}"))
            continue
        records.append(_Record(split, pathlib.Path(filename).stem, image_path, objects, where))
    records.sort(key=lambda record: (record.split, record.name))
    return _assemble(records, bad, class_names, skip_bad, layout="box CSV")


# === COCO JSON ===


def read_coco(files, class_names=None, skip_bad=False):
    """COCO detection JSON files (`images`, `annotations` with `bbox` [x, y, w, h], `categories`)."""
    records, bad, categories, finders = [], [], None, {}
    for file in files:
        file = pathlib.Path(file)
        split = _split_from_name(file) if len(files) > 1 else "train"
        content = _load_json(file)
        if not isinstance(content, dict) or not all(key in content for key in ("images", "annotations", "categories")):
            raise UserError(f"{file} is not COCO detection JSON: it needs the keys images, annotations and categories")
        try:
            names = {int(item["id"]): str(item["name"]) for item in content["categories"]}
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{file}: every category needs an integer id and a name")
        if categories is None:
            categories = names
        elif names != categories:
            raise UserError(f"{file}: its categories differ from those of {files[0]}; use one category list")
        by_image = collections.defaultdict(list)
        image_ids = set()
        for item in content["images"]:
            image_ids.add(item.get("id"))
        for index, annotation in enumerate(content["annotations"]):
            image_id = annotation.get("image_id")
            where = f"{file}: annotation {annotation.get('id', index)}"
            try:
                x, y, width, height = (float(value) for value in annotation["bbox"])
            except (KeyError, TypeError, ValueError):
                bad.append((where, "its bbox is not [x, y, width, height]"))
                continue
            category = annotation.get("category_id")
            if category not in names:
                bad.append((where, f"unknown category_id {category!r} (categories: {sorted(names)})"))
                continue
            if image_id not in image_ids:
                bad.append((where, f"image_id {image_id!r} is not in images"))
                continue
            by_image[image_id].append((names[category], x, y, x + width, y + height))
        for item in content["images"]:
            try:
                file_name = str(item["file_name"])
            except (KeyError, TypeError):
                raise UserError(f"{file}: every image needs an id and a file_name")
            candidates = [file.parent / file_name, file.parent / "images" / file_name,
                          file.parent.parent / file_name, file.parent.parent / "images" / file_name]
            candidates += [file.parent / stem / file_name for stem in (file.stem, split)]
            found = next((candidate for candidate in candidates if candidate.is_file()), None)
            if found is None:
                finder = finders.setdefault(file.parent.parent, _ImageFinder(file.parent.parent))
                found = finder.find([file_name], file.parent)
            where = f"{file}: image {item.get('id')!r}"
            if found is None:
                bad.append((where, f"its image {file_name} is missing (looked in {file.parent}, "
                                   f"{file.parent / 'images'} and under {file.parent.parent})"))
                continue
            records.append(_Record(split, pathlib.Path(file_name).stem, found, by_image[item.get("id")], where))
    ordered = [categories[key] for key in sorted(categories)] if categories else []
    return _assemble(records, bad, class_names or ordered, skip_bad, layout="COCO JSON")


def _split_from_name(file):
    split = _split_word(file.stem) or _split_word(file.parent.name)
    if split is None:
        raise UserError(
            f"cannot tell the split of {file}: with several JSON files, name them (or their folders) "
            "*train*, *val* and *test*"
        )
    return split


# === Detection JSON: COCO, Label Studio, CreateML ===


def _load_json(file):
    try:
        return json.loads(pathlib.Path(file).read_text())
    except json.JSONDecodeError as error:
        raise UserError(f"malformed JSON in {file} at line {error.lineno}, column {error.colno}: {error.msg}")
    except UnicodeDecodeError:
        raise UserError(f"{file} is not UTF-8 text; expected detection JSON (COCO, Label Studio or CreateML)")


def _json_layout(content):
    """"coco", "label studio", "createml" or None for the parsed content of a JSON file."""
    if isinstance(content, dict) and "images" in content and "annotations" in content:
        return "coco"
    if isinstance(content, list) and content and all(isinstance(item, dict) for item in content):
        if all("data" in item for item in content):  # tasks: {"data": {"image": ...}, "annotations": [...]}
            return "label studio"
        if all("image" in item for item in content):  # [{"image": name, "annotations": [...]}]
            return "createml"
    return None


def read_json(files, class_names=None, skip_bad=False):
    """Detection JSON files, the format told by their content: COCO (an object with images,
    annotations and categories), a Label Studio export (a list of tasks with `data`) or CreateML
    (a list of `{"image", "annotations"}`). Several files give the splits their names say."""
    layout = _json_layout(_load_json(files[0]))
    if layout == "label studio":
        return read_label_studio(files, class_names, skip_bad)
    if layout == "createml":
        return read_createml(files, class_names, skip_bad)
    return read_coco(files, class_names, skip_bad)  # its errors say what COCO needs


def _json_list(file, layout):
    content = _load_json(file)
    if _json_layout(content) != layout:
        found = _json_layout(content) or "not detection JSON"
        raise UserError(f"{file}: {found}, unlike the other annotation files ({layout}); use one format")
    return content


def read_label_studio(files, class_names=None, skip_bad=False):
    """Label Studio JSON exports: a list of tasks, each `data.image` (an upload path, a
    `/data/local-files/?d=` path or a URL: the file name is looked for near the JSON) and
    `annotations[].result[]` of `rectanglelabels` with x, y, width, height in percent of
    `original_width`/`original_height` (rotated boxes become their enclosing box). The first
    annotation that was not cancelled counts; other result types are ignored."""
    records, bad = [], []
    for file in map(pathlib.Path, files):
        split = _split_from_name(file) if len(files) > 1 else "train"
        finder = _ImageFinder(file.parent)
        for number, task in enumerate(_json_list(file, "label studio"), 1):
            where = f"{file}: task {task.get('id', number)}"
            source = task["data"].get("image") if isinstance(task["data"], dict) else None
            if not isinstance(source, str):
                bad.append((where, "its data has no image"))
                continue
            name = urllib.parse.unquote(source.split("?d=")[-1].split("?")[0]).replace("\\", "/").rsplit("/", 1)[-1]
            upload = re.match(r"^[0-9a-f]{8}-(.+)$", name)  # Label Studio prefixes uploaded files with 8 hex digits
            image_path = finder.find([name] + ([upload.group(1)] if upload else []), file.parent)
            if image_path is None:
                bad.append((where, f"its image {name} is missing (looked near {file.parent} and under it)"))
                continue
            annotations = [one for one in task.get("annotations") or [] if not one.get("was_cancelled")]
            try:
                objects = [_label_studio_box(result) for result in (annotations[0].get("result") or [])
                           if result.get("type") == "rectanglelabels"] if annotations else []
            except _BadRecord as error:
                bad.append((where, str(error)))
                continue
            records.append(_Record(split, image_path.stem, image_path, objects, where))
    records.sort(key=lambda record: (record.split, record.name))
    return _assemble(records, bad, class_names, skip_bad, layout="Label Studio JSON")


def _label_studio_box(result):
    """One `rectanglelabels` result -> (label, x1, y1, x2, y2) in pixels of the original image."""
    try:
        value = result["value"]
        label = str(value["rectanglelabels"][0])
        width, height = float(result["original_width"]), float(result["original_height"])
        x, y = float(value["x"]) / 100 * width, float(value["y"]) / 100 * height
        w, h = float(value["width"]) / 100 * width, float(value["height"]) / 100 * height
        angle = math.radians(float(value.get("rotation") or 0.0))
    except (KeyError, IndexError, TypeError, ValueError):
        raise _BadRecord("a rectanglelabels result needs value.x, y, width, height, rectanglelabels and "
                         "original_width, original_height")
    if not angle:
        return (label, x, y, x + w, y + h)
    # Label Studio rotates clockwise (y points down) about the top-left corner: the enclosing box.
    cos, sin = math.cos(angle), math.sin(angle)
    xs = [x, x + w * cos, x + w * cos - h * sin, x - h * sin]
    ys = [y, y + w * sin, y + w * sin + h * cos, y + h * cos]
    return (label, min(xs), min(ys), max(xs), max(ys))


def read_createml(files, class_names=None, skip_bad=False):
    """CreateML JSON: a list of `{"image": name, "annotations": [{"label", "coordinates": {"x", "y",
    "width", "height"}}]}` with x, y the box centre in pixels; images beside the JSON (or near it)."""
    records, bad = [], []
    for file in map(pathlib.Path, files):
        split = _split_from_name(file) if len(files) > 1 else "train"
        finder = _ImageFinder(file.parent)
        for number, item in enumerate(_json_list(file, "createml"), 1):
            name = str(item["image"])
            where = f"{file}: image {number} ({name})"
            image_path = finder.find([name], file.parent)
            if image_path is None:
                bad.append((where, f"its image is missing (looked near {file.parent} and under it)"))
                continue
            try:
                objects = []
                for annotation in item.get("annotations") or []:
                    box = annotation["coordinates"]
                    cx, cy, w, h = (float(box[key]) for key in ("x", "y", "width", "height"))
                    objects.append((str(annotation["label"]), cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2))
            except (KeyError, TypeError, ValueError):
                bad.append((where, "an annotation needs a label and coordinates {x, y, width, height}"))
                continue
            records.append(_Record(split, pathlib.Path(name).stem, image_path, objects, where))
    records.sort(key=lambda record: (record.split, record.name))
    return _assemble(records, bad, class_names, skip_bad, layout="CreateML JSON")


# === YOLO txt ===


def read_yolo(root, class_names=None, skip_bad=False):
    """YOLO txt: `images/[split/]x.jpg` and `labels/[split/]x.txt`, lines `class cx cy w h` (normalized)."""
    root = pathlib.Path(root)
    names = class_names or _yolo_names(root)
    records, bad = [], []
    subsets = [child.name for child in sorted((root / "images").iterdir()) if child.is_dir()]
    folders = [(SPLIT_NAMES.get(sub.lower(), None), sub) for sub in subsets] if subsets else [("train", "")]
    for split, sub in folders:
        if split is None:
            raise UserError(f"{root / 'images' / sub}: a split folder must be train, val or test")
        for image_path in sorted((root / "images" / sub).iterdir()):
            if image_path.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            _add_yolo_record(records, bad, split, image_path, root / "labels" / sub / f"{image_path.stem}.txt", names)
    return _assemble(records, bad, names, skip_bad, layout="YOLO txt")


def _add_yolo_record(records, bad, split, image_path, label_path, names):
    """Appends the image's record (its label file missing: a negative) or, when bad, its reason."""
    objects = []
    try:
        lines = label_path.read_text().splitlines() if label_path.is_file() else []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            parts = line.split()
            try:
                index, cx, cy, width, height = int(parts[0]), *map(float, parts[1:5])
                if len(parts) != 5:
                    raise ValueError
            except (ValueError, IndexError):
                raise _BadRecord(f"line {number}: expected 'class cx cy w h', found {line.strip()!r}")
            if not 0 <= index < len(names):
                raise _BadRecord(f"line {number}: unknown class {index} (there are {len(names)} names)")
            objects.append((names[index], cx - width / 2, cy - height / 2, cx + width / 2, cy + height / 2))
    except _BadRecord as error:
        bad.append((str(label_path), str(error)))
        return
    records.append(_Record(split, image_path.stem, image_path, objects, str(label_path), normalized=True))


def _find_yolo_yaml(root):
    """root/data.yaml (or the one *.yaml there) when it names a `train:` set, else None."""
    files = [root / "data.yaml", root / "data.yml"]
    files = [file for file in files if file.is_file()] or sorted(root.glob("*.yaml")) + sorted(root.glob("*.yml"))
    if len(files) != 1:
        return None
    try:
        import yaml

        content = yaml.safe_load(files[0].read_text())
    except Exception:  # noqa: BLE001 — not this layout's file; read_yolo_yaml reports a bad one
        return files[0] if files[0].name.startswith("data.") else None
    return files[0] if isinstance(content, dict) and content.get("train") else None


def read_yolo_yaml(file, class_names=None, skip_bad=False):
    """Ultralytics `data.yaml`: `train:`, `val:`, `test:` name image folders, list files or lists
    of them, relative to `path:` (itself relative to the yaml) or to the yaml's folder; an image
    `.../images/.../x.jpg` has its labels in `.../labels/.../x.txt` (else `x.txt` beside it)."""
    import yaml

    file = pathlib.Path(file)
    try:
        content = yaml.safe_load(file.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UserError(f"malformed YAML in {file}: {' '.join(str(error).split())}")
    if not isinstance(content, dict) or not content.get("train"):
        raise UserError(f"{file} names no train: image folder; an Ultralytics data.yaml needs train: and names:")
    names = class_names or _yaml_names(content, file)
    base = pathlib.Path(str(content.get("path") or ""))
    base = base if base.is_absolute() else file.parent / base
    records, bad = [], []
    for key, split in (("train", "train"), ("val", "validation"), ("test", "test")):
        entries = content.get(key) or []
        for entry in entries if isinstance(entries, list) else [entries]:
            for image_path in _yolo_images(str(entry), base, file, key):
                label = pathlib.Path(_label_path(str(image_path)))
                _add_yolo_record(records, bad, split, image_path, label, names)
    return _assemble(records, bad, names, skip_bad, layout="YOLO data.yaml")


def _yaml_names(content, file):
    names = content.get("names")
    if isinstance(names, dict):
        return [str(names[key]) for key in sorted(names)]
    if isinstance(names, list):
        return [str(name) for name in names]
    if isinstance(content.get("nc"), int):
        return [str(index) for index in range(content["nc"])]
    raise UserError(f"{file} has no names: list of class names; add one (names: [cat, dog])")


def _yolo_images(entry, base, file, key):
    """The images an Ultralytics set entry names: a folder (searched recursively) or a list file."""
    path = pathlib.Path(entry)
    if not path.is_absolute():
        path = base / entry
        if not path.exists() and entry.startswith("../"):  # Roboflow's exports: as Ultralytics reads them
            path = base / entry[3:]
    if path.is_dir():
        return sorted(image for image in path.rglob("*") if image.suffix.lower() in IMAGE_EXTENSIONS)
    if path.is_file():
        listed = []
        for line in path.read_text().splitlines():
            if line.strip():
                image = pathlib.Path(line.strip())
                listed.append(image if image.is_absolute() else path.parent / image)
        return listed
    raise UserError(f"{file}: {key}: {entry} is neither an image folder nor a list file (looked for {path}); "
                    "fix the path in the yaml")


def _label_path(image_path):
    """Ultralytics' rule: the last /images/ of the path becomes /labels/, the extension .txt."""
    images, labels = f"{os.sep}images{os.sep}", f"{os.sep}labels{os.sep}"
    return labels.join(image_path.rsplit(images, 1)).rsplit(".", 1)[0] + ".txt"


def _yolo_names(root):
    for name in ("classes.txt", "obj.names"):
        if (root / name).is_file():
            return [line.strip() for line in (root / name).read_text().splitlines() if line.strip()]
    if (root / "data.yaml").is_file():
        import yaml

        try:
            names = (yaml.safe_load((root / "data.yaml").read_text()) or {}).get("names")
        except yaml.YAMLError as error:
            raise UserError(f"malformed YAML in {root / 'data.yaml'}: {error}")
        if isinstance(names, dict):
            return [str(names[key]) for key in sorted(names)]
        if isinstance(names, list):
            return [str(name) for name in names]
    raise UserError(f"no class names for the YOLO labels in {root}: add classes.txt (one name a line) or data.yaml")


# === Assembly: decode images, check classes, clip and drop boxes ===


def _assemble(records, bad, class_names, skip_bad, layout=""):
    known = list(class_names) if class_names else sorted({obj[0] for record in records for obj in record.objects})
    index = {name: i for i, name in enumerate(known)}
    kept = []
    for record in records:
        unknown = [obj[0] for obj in record.objects if obj[0] not in index]
        if unknown:
            bad.append((record.where, f"unknown class name {unknown[0]!r} (known: {', '.join(known)})"))
        else:
            kept.append(record)
    with concurrent.futures.ThreadPoolExecutor(2) as executor:
        decoded = list(executor.map(lambda record: image_readers.decode_file(record.image_path), kept))
    splits, clipped, dropped = {}, 0, 0
    for record, image in zip(kept, decoded):
        if isinstance(image, str):
            bad.append((str(record.image_path), image))
            continue
        image = np.repeat(image[..., None], 3, axis=-1) if image.ndim == 2 else image
        height, width = image.shape[:2]
        raw = np.array([obj[1:] for obj in record.objects], np.float32).reshape(-1, 4)
        if record.normalized:
            raw *= np.array([width, height, width, height], np.float32)
        boxes, keep, num_clipped = clean_boxes(raw, width, height)
        clipped += num_clipped
        dropped += int((~keep).sum())
        classes = np.array([index[obj[0]] for obj in record.objects], np.int32)[keep]
        split = splits.setdefault(record.split, Split([], [], [], []))
        split.images.append(image)
        split.boxes.append(boxes[keep])
        split.classes.append(classes)
        split.names.append(record.name)
    if bad and not skip_bad:
        where, reason = bad[0]
        more = f" ({len(bad) - 1} more bad record{'s' if len(bad) > 2 else ''})" if len(bad) > 1 else ""
        raise UserError(f"{where}: {reason}{more}; {SKIP_HINT}")
    if "train" not in splits or not splits["train"].images:
        first = f" ({len(bad)} skipped, first: {bad[0][0]}: {bad[0][1]})" if bad else ""
        raise UserError(f"no usable training images{first}")
    if not known:
        raise UserError("the annotations name no object class; a detector needs at least one")
    return BoxData(splits, known, bad, clipped, dropped, layout)


def clean_boxes(boxes, width, height):
    """Clips `[x1, y1, x2, y2]` pixel boxes to the image; marks zero-area ones to drop.

    Returns:
        (clipped boxes (n, 4) float32, keep (n,) bool, number of boxes the clipping changed).
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    limits = np.array([width, height, width, height], np.float32)
    inside = np.clip(boxes, 0, limits)
    changed = int(np.any(np.abs(inside - boxes) > 1e-6, axis=1).sum())
    keep = (inside[:, 2] > inside[:, 0]) & (inside[:, 3] > inside[:, 1])
    return inside, keep, changed - int((~keep & np.any(np.abs(inside - boxes) > 1e-6, axis=1)).sum())


# === TFDS ===


def _pick_image_and_objects(info):
    objects = info.features["objects"] if "objects" in info.features else {}
    if "image" not in info.features or "bbox" not in objects or "label" not in objects:
        return None
    return {"image": "image", "objects": "objects", "filename": "image/filename"}


def _read_tfds(name, data_dir=None):
    """A TFDS detection dataset with `objects/bbox` and `objects/label` (voc, coco, ...) as `BoxData`."""
    splits, info = tfds.read(name, _pick_image_and_objects, "image, objects/bbox and objects/label features",
                             data_dir)
    class_names = list(info.features["objects"]["label"].names)
    found, clipped, dropped = {}, 0, 0
    for split, examples in splits.items():
        part = Split([], [], [], [])
        for number, example in enumerate(examples):
            image = example["image"]
            image = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
            height, width = image.shape[:2]
            ymin, xmin, ymax, xmax = np.asarray(example["objects"]["bbox"], np.float32).reshape(-1, 4).T
            raw = np.stack([xmin * width, ymin * height, xmax * width, ymax * height], axis=-1)
            boxes, keep, num_clipped = clean_boxes(raw, width, height)
            clipped, dropped = clipped + num_clipped, dropped + int((~keep).sum())
            part.images.append(image)
            part.boxes.append(boxes[keep])
            part.classes.append(np.asarray(example["objects"]["label"], np.int32)[keep])
            name_value = example.get("filename", f"{split}{number}")
            part.names.append(name_value.decode() if isinstance(name_value, bytes) else str(name_value))
        found[split] = part
    return BoxData(found, class_names, [], clipped, dropped, f"tfds:{name}")


# === Demo ===

DEMO_CLASSES = ["circle", "square", "triangle"]


def demo_scenes(num_train=480, num_test=60, size=128, seed=0):
    """Generated scenes: 0-4 coloured circles, squares and triangles (12-40 px) on a noisy background.

    About one scene in twelve is empty (a valid negative). Returns a `BoxData` with splits
    "train" and "test" and classes circle, square, triangle.
    """
    rng = np.random.default_rng(seed)
    splits = {}
    for split, count in (("train", num_train), ("test", num_test)):
        part = Split([], [], [], [])
        for number in range(count):
            background = rng.integers(40, 200, size=3)
            noise = rng.normal(0, 12, size=(size, size, 3))
            canvas = Image.fromarray(np.clip(background + noise, 0, 255).astype(np.uint8))
            draw = ImageDraw.Draw(canvas)
            boxes, classes = [], []
            for _ in range(rng.integers(0, 5) if rng.random() > 1 / 12 else 0):
                side = int(rng.integers(12, 41))
                x, y = int(rng.integers(0, size - side)), int(rng.integers(0, size - side))
                box = np.array([x, y, x + side, y + side], np.float32)
                if boxes and _max_iou(box, np.array(boxes)) > 0.1:
                    continue
                kind = int(rng.integers(0, 3))
                shift = rng.choice([-1, 1], 3) * rng.integers(60, 120, 3)  # far from the background
                colour = tuple(int(value) for value in (background + shift) % 256)
                if kind == 0:
                    draw.ellipse([x, y, x + side - 1, y + side - 1], fill=colour)
                elif kind == 1:
                    draw.rectangle([x, y, x + side - 1, y + side - 1], fill=colour)
                else:
                    draw.polygon([(x + side / 2, y), (x, y + side - 1), (x + side - 1, y + side - 1)], fill=colour)
                boxes.append(box)
                classes.append(kind)
            part.images.append(np.asarray(canvas))
            part.boxes.append(np.array(boxes, np.float32).reshape(-1, 4))
            part.classes.append(np.array(classes, np.int32))
            part.names.append(f"{split}{number}")
        splits[split] = part
    return BoxData(splits, list(DEMO_CLASSES), layout="demo scenes")


def _max_iou(box, others):
    top_left = np.maximum(box[:2], others[:, :2])
    bottom_right = np.minimum(box[2:], others[:, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return float(np.max(intersection / (area(box) + area(others) - intersection)))


# === Letterbox and dense targets ===


def letterbox(image, boxes, size):
    """Resizes so the longer side is `size` and pads bottom/right with grey to size x size.

    Args:
        image: uint8 (H, W, 3). boxes: (n, 4) x1 y1 x2 y2 pixels.

    Returns:
        (uint8 (size, size, 3), boxes (n, 4) in the new pixels, the scale applied).
    """
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new = (max(1, round(width * scale)), max(1, round(height * scale)))
    canvas = np.full((size, size, 3), FILL, np.uint8)
    canvas[: new[1], : new[0]] = np.asarray(Image.fromarray(image).resize(new, Image.Resampling.BILINEAR))
    return canvas, np.asarray(boxes, np.float32) * scale, scale


def dense_targets(boxes, classes, size, max_boxes):
    """Pixel x1 y1 x2 y2 boxes + classes -> (max_boxes, 5) normalized [y1, x1, y2, x2, class], class -1 padding."""
    target = np.zeros((max_boxes, 5), np.float32)
    target[:, 4] = -1
    count = min(len(boxes), max_boxes)
    if count:
        b = np.asarray(boxes, np.float32)[:count] / size
        target[:count, :4] = b[:, [1, 0, 3, 2]]
        target[:count, 4] = np.asarray(classes)[:count]
    return target


def augment_fn(size, flip=False, vertical_flip=False, scale_jitter=0.0, min_visible=0.3):
    """A per-example map on letterboxed (size, size, 3) images and (M, 5) normalized targets.

    Horizontal / vertical flips; scale jitter: a rescale by a factor in [1 - j, 1 + j] placed at a
    random offset (padding with grey when smaller, a random crop when larger). Boxes follow the
    pixels; a box left with less than `min_visible` of its area inside the frame is dropped
    (class -1). Returns float32 images in [0, 255].
    """

    def augment(image, target):
        image = tf.cast(image, tf.float32)
        boxes, classes = target[:, :4], target[:, 4]
        valid = classes >= 0
        if flip:
            do = tf.random.uniform([]) < 0.5
            image = tf.where(do, image[:, ::-1], image)
            flipped = tf.stack([boxes[:, 0], 1 - boxes[:, 3], boxes[:, 2], 1 - boxes[:, 1]], axis=-1)
            boxes = tf.where(do, flipped, boxes)
        if vertical_flip:
            do = tf.random.uniform([]) < 0.5
            image = tf.where(do, image[::-1], image)
            flipped = tf.stack([1 - boxes[:, 2], boxes[:, 1], 1 - boxes[:, 0], boxes[:, 3]], axis=-1)
            boxes = tf.where(do, flipped, boxes)
        if scale_jitter:
            factor = tf.random.uniform([], 1.0 - scale_jitter, 1.0 + scale_jitter)
            new = tf.maximum(tf.cast(tf.round(size * factor), tf.int32), 1)
            resized = tf.image.resize(image, tf.stack([new, new]))
            room = size - new  # > 0: padding, < 0: cropping
            low, high = tf.minimum(room, 0), tf.maximum(room, 0)
            offset_y = tf.random.uniform([], low, high + 1, dtype=tf.int32)
            offset_x = tf.random.uniform([], low, high + 1, dtype=tf.int32)
            padded = tf.pad(resized - FILL, [[size, size], [size, size], [0, 0]]) + FILL
            image = tf.slice(padded, tf.stack([size - offset_y, size - offset_x, 0]), [size, size, 3])
            scale = tf.cast(new, tf.float32) / size
            shift = tf.cast(tf.stack([offset_y, offset_x, offset_y, offset_x]), tf.float32) / size
            moved = boxes * scale + shift
            inside = tf.clip_by_value(moved, 0.0, 1.0)
            area = lambda b: tf.maximum(b[:, 2] - b[:, 0], 0.0) * tf.maximum(b[:, 3] - b[:, 1], 0.0)  # noqa: E731
            visible = area(inside) >= min_visible * tf.maximum(area(moved), 1e-9)
            valid = valid & visible & (area(inside) > 0)
            boxes = inside
        boxes = tf.where(valid[:, None], boxes, 0.0)
        classes = tf.where(valid, classes, -1.0)
        return image, tf.concat([boxes, classes[:, None]], axis=-1)

    return augment
