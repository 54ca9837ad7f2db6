"""The same images in every layout the image readers claim give the same examples.

Detection: 20 BCCD images (15 train, 5 test) written as Pascal VOC, LabelImg folders, a box CSV,
COCO JSON, a Roboflow-style YOLO data.yaml, a Label Studio export and CreateML JSON must come back
with the same pixels, boxes and labels (YOLO's normalised floats within a pixel, the rest exactly). Classification: an MNIST and a CIFAR-10 slice
as class folders and as a Kaggle-style label CSV must give the same arrays. Each new bad input
is one line naming the file.
"""

import csv
import json
import shutil
import tarfile

import numpy as np
import pytest
from PIL import Image

from tasks import detection
from tasks.core.errors import UserError
from tasks.data import boxes as box_readers
from tasks.data import images as image_readers
from tests import helpers

NUM_BCCD = 20
NUM_BCCD_TEST = 5

# === Detection: one BCCD slice in every layout ===


@pytest.fixture(scope="module")
def bccd_slice(shared_data, tmp_path_factory):
    """(the JPEG files, the slice read back from Pascal VOC, which images are test)."""
    source = shared_data / "bccd" / "BCCD"
    names = sorted(xml.stem for xml in (source / "Annotations").glob("*.xml"))[:NUM_BCCD]
    root = tmp_path_factory.mktemp("bccd") / "voc"
    for folder in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / folder).mkdir(parents=True)
    for name in names:
        shutil.copy(source / "Annotations" / f"{name}.xml", root / "Annotations")
        shutil.copy(source / "JPEGImages" / f"{name}.jpg", root / "JPEGImages")
    test = set(names[-NUM_BCCD_TEST:])
    (root / "ImageSets/Main/train.txt").write_text("\n".join(n for n in names if n not in test) + "\n")
    (root / "ImageSets/Main/test.txt").write_text("\n".join(sorted(test)) + "\n")
    reference = box_readers.read_boxes(root)
    return root, reference, test


def examples(data):
    """{split: {name: (image, boxes, class names)}} of a BoxData."""
    found = {}
    for split, part in data.splits.items():
        found[split] = {
            name: (image, boxes, [data.class_names[k] for k in classes])
            for image, boxes, classes, name in zip(part.images, part.boxes, part.classes, part.names)
        }
    return found


def objects(reference):
    """(split, name, [(class, x1, y1, x2, y2)]) for every image of the reference."""
    for split, part in reference.splits.items():
        for name, boxes, classes in zip(part.names, part.boxes, part.classes):
            yield split, name, [(reference.class_names[k], *map(int, box)) for k, box in zip(classes, boxes)]


def voc_xml(filename, found, size=(640, 480)):
    parts = "".join(
        f"<object><name>{label}</name><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax>"
        f"<ymax>{y2}</ymax></bndbox></object>" for label, x1, y1, x2, y2 in found
    )
    return (f"<annotation><folder>images</folder><filename>{filename}</filename><size><width>{size[0]}</width>"
            f"<height>{size[1]}</height><depth>3</depth></size>{parts}</annotation>")


def write_labelimg(voc, reference, root):
    """<split>/annotations/*.xml beside <split>/images/*.jpg; one XML names a path, one no file."""
    for number, (split, name, found) in enumerate(objects(reference)):
        for folder in ("annotations", "images"):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(voc / "JPEGImages" / f"{name}.jpg", root / split / "images")
        filename = {0: f"C:\\Users\\me\\Pictures\\{name}.jpg", 1: ""}.get(number, f"{name}.jpg")
        (root / split / "annotations" / f"{name}.xml").write_text(voc_xml(filename, found))
    return root


def write_box_csv(voc, reference, root):
    """images/<split>/*.jpg + annotations/<split>_labels.csv (the TF Object Detection tutorial)."""
    (root / "annotations").mkdir(parents=True)
    rows = {}
    for split, name, found in objects(reference):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        shutil.copy(voc / "JPEGImages" / f"{name}.jpg", root / "images" / split)
        rows.setdefault(split, []).extend([f"{name}.jpg", 640, 480, label, x1, y1, x2, y2]
                                          for label, x1, y1, x2, y2 in found)
    for split, lines in rows.items():
        with open(root / "annotations" / f"{split}_labels.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(box_readers.CSV_HEADER.split(","))
            writer.writerows(lines)
    return root


def write_coco(voc, reference, root):
    """annotations/instances_<split>.json + images/*.jpg, categories in the reference's order."""
    (root / "annotations").mkdir(parents=True)
    (root / "images").mkdir()
    categories = [{"id": index + 1, "name": name} for index, name in enumerate(reference.class_names)]
    ids = {name: index + 1 for index, name in enumerate(reference.class_names)}
    content = {}
    for split, name, found in objects(reference):
        shutil.copy(voc / "JPEGImages" / f"{name}.jpg", root / "images")
        part = content.setdefault(split, {"images": [], "annotations": [], "categories": categories})
        image_id = len(part["images"]) + 1
        part["images"].append({"id": image_id, "file_name": f"{name}.jpg", "width": 640, "height": 480})
        for label, x1, y1, x2, y2 in found:
            part["annotations"].append({"id": len(part["annotations"]) + 1, "image_id": image_id,
                                        "category_id": ids[label], "bbox": [x1, y1, x2 - x1, y2 - y1]})
    for split, part in content.items():
        (root / "annotations" / f"instances_{split}.json").write_text(json.dumps(part))
    return root


def write_yolo(voc, reference, root):
    """Roboflow's YOLO export: <split>/images, <split>/labels, data.yaml with `train: ../train/images`."""
    for split, name, found in objects(reference):
        for folder in ("images", "labels"):
            (root / split / folder).mkdir(parents=True, exist_ok=True)
        shutil.copy(voc / "JPEGImages" / f"{name}.jpg", root / split / "images")
        lines = [f"{reference.class_names.index(label)} {(x1 + x2) / 1280:.6f} {(y1 + y2) / 960:.6f} "
                 f"{(x2 - x1) / 640:.6f} {(y2 - y1) / 480:.6f}" for label, x1, y1, x2, y2 in found]
        (root / split / "labels" / f"{name}.txt").write_text("\n".join(lines) + "\n")
    names = ", ".join(reference.class_names)
    (root / "data.yaml").write_text(f"train: ../train/images\ntest: ../test/images\nnc: {len(reference.class_names)}\n"
                                    f"names: [{names}]\n")
    return root


def write_label_studio(voc, reference, root):
    """A Label Studio export per split (<split>.json) + images/: local-file and upload paths, a
    cancelled annotation before the real one, a `choices` result beside the boxes."""
    (root / "images").mkdir(parents=True)
    tasks = {}
    for number, (split, name, found) in enumerate(objects(reference)):
        shutil.copy(voc / "JPEGImages" / f"{name}.jpg", root / "images")
        source = f"/data/upload/3/1a2b3c4d-{name}.jpg" if number % 2 else f"/data/local-files/?d=images/{name}.jpg"
        results = [{"type": "choices", "value": {"choices": ["blood"]}, "from_name": "kind", "to_name": "image"}]
        results += [{"type": "rectanglelabels", "from_name": "label", "to_name": "image", "original_width": 640,
                     "original_height": 480, "image_rotation": 0,
                     "value": {"x": x1 / 640 * 100, "y": y1 / 480 * 100, "width": (x2 - x1) / 640 * 100,
                               "height": (y2 - y1) / 480 * 100, "rotation": 0, "rectanglelabels": [label]}}
                    for label, x1, y1, x2, y2 in found]
        annotations = [{"id": 1, "was_cancelled": True, "result": []}, {"id": 2, "result": results}]
        tasks.setdefault(split, []).append({"id": number + 1, "data": {"image": source}, "annotations": annotations,
                                            "predictions": []})
    for split, content in tasks.items():
        (root / f"{split}.json").write_text(json.dumps(content))
    return root


def write_createml(voc, reference, root):
    """Roboflow's CreateML export: <split>/_annotations.createml.json beside the split's images."""
    content = {}
    for split, name, found in objects(reference):
        (root / split).mkdir(parents=True, exist_ok=True)
        shutil.copy(voc / "JPEGImages" / f"{name}.jpg", root / split)
        content.setdefault(split, []).append({"image": f"{name}.jpg", "annotations": [
            {"label": label, "coordinates": {"x": (x1 + x2) / 2, "y": (y1 + y2) / 2, "width": x2 - x1,
                                             "height": y2 - y1}} for label, x1, y1, x2, y2 in found]})
    for split, items in content.items():
        (root / split / "_annotations.createml.json").write_text(json.dumps(items))
    return root


LAYOUTS = {
    "labelimg": (write_labelimg, "LabelImg VOC XML", 0.0),
    "box_csv": (write_box_csv, "box CSV", 0.0),
    "coco": (write_coco, "COCO JSON", 0.0),
    "yolo": (write_yolo, "YOLO data.yaml", 1.0),  # normalised to 6 decimals: within a pixel
    "label_studio": (write_label_studio, "Label Studio JSON", 0.0),  # percent as JSON floats: exact
    "createml": (write_createml, "CreateML JSON", 0.0),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_detection_layout_gives_the_voc_examples(layout, bccd_slice, tmp_path):
    voc, reference, _ = bccd_slice
    write, name, tolerance = LAYOUTS[layout]
    found = box_readers.read_boxes(write(voc, reference, tmp_path / layout))
    assert found.layout == name and reference.layout == "Pascal VOC"
    assert found.class_names == reference.class_names
    expected, actual = examples(reference), examples(found)
    assert {split: sorted(part) for split, part in actual.items()} == {
        split: sorted(part) for split, part in expected.items()}
    for split, part in expected.items():
        for image_name, (image, boxes, labels) in part.items():
            image_found, boxes_found, labels_found = actual[split][image_name]
            np.testing.assert_array_equal(image_found, image)
            assert labels_found == labels, image_name
            np.testing.assert_allclose(boxes_found, boxes, atol=tolerance, rtol=0)


def test_labelimg_output_with_its_box_csv_is_read_from_the_xml(bccd_slice, tmp_path):
    voc, reference, _ = bccd_slice
    root = write_labelimg(voc, reference, tmp_path / "labelimg")
    (root / "train" / "cells_labels.csv").write_text(box_readers.CSV_HEADER + "\n")  # the CSV LabelImg users export
    found = box_readers.read_boxes(root)
    assert found.layout == "LabelImg VOC XML" and sorted(found.splits["train"].names) == sorted(
        reference.splits["train"].names)


def test_yolo_yaml_with_list_files_and_a_names_mapping(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    for name in ("a", "b", "c"):
        Image.new("RGB", (100, 50)).save(tmp_path / "images" / f"{name}.jpg")
        (tmp_path / "labels" / f"{name}.txt").write_text("1 0.5 0.5 0.2 0.4\n")
    (tmp_path / "train.txt").write_text("./images/a.jpg\n./images/b.jpg\n")
    (tmp_path / "val.txt").write_text(f"{tmp_path / 'images' / 'c.jpg'}\n")
    (tmp_path / "data.yaml").write_text(f"path: {tmp_path}\ntrain: train.txt\nval: val.txt\n"
                                        "names:\n  0: ant\n  1: bee\n")
    found = box_readers.read_boxes(tmp_path / "data.yaml")
    assert found.layout == "YOLO data.yaml" and found.class_names == ["ant", "bee"]
    assert (found.splits["train"].names, found.splits["validation"].names) == (["a", "b"], ["c"])
    np.testing.assert_allclose(found.splits["validation"].boxes[0], [[40, 15, 60, 35]], atol=1e-4)


def test_the_reference_slice_is_real_bccd(bccd_slice):
    _, reference, test = bccd_slice
    assert reference.class_names == ["Platelets", "RBC", "WBC"]
    assert len(reference.splits["train"]) == NUM_BCCD - NUM_BCCD_TEST and set(reference.splits["test"].names) == test
    assert sum(len(boxes) for boxes in reference.splits["train"].boxes) > 100


def test_read_says_the_layout_in_one_line(bccd_slice, tmp_path, capsys):
    voc, reference, _ = bccd_slice
    root = write_labelimg(voc, reference, tmp_path / "labelimg")
    box_readers.read(str(root))
    assert capsys.readouterr().out.splitlines() == [f"data: LabelImg VOC XML, {NUM_BCCD} images, 3 classes"]


def test_a_layout_without_a_test_split_gets_one_held_out(bccd_slice, tmp_path):
    voc, reference, _ = bccd_slice
    root = write_coco(voc, reference, tmp_path / "coco")
    (root / "annotations" / "instances_test.json").unlink()
    (root / "annotations" / "instances_train.json").rename(root / "annotations" / "instances.json")
    config = detection.Config(data=str(root), image_size=64, test_fraction=0.25, validation_fraction=0.0, verbose=0)
    info = detection.load_data(config).info
    assert (info["num_train"], info["num_test"]) == (11, 4)  # 15 images, a quarter held out


# === Detection: the new bad inputs, one line each ===


def test_an_xml_whose_filename_matches_no_image(bccd_slice, tmp_path):
    voc, reference, _ = bccd_slice
    root = write_labelimg(voc, reference, tmp_path / "labelimg")
    xml = root / "train" / "annotations" / f"{reference.splits['train'].names[3]}.xml"
    xml.write_text(voc_xml("holiday.jpg", []))
    xml.rename(xml.with_name("holiday_notes.xml"))
    with pytest.raises(UserError, match=r"holiday_notes\.xml: its image holiday\.jpg is in no folder near it"):
        box_readers.read_boxes(root)
    assert len(box_readers.read_boxes(root, skip_bad=True).skipped) == 1


def test_a_box_csv_without_a_column(bccd_slice, tmp_path):
    voc, reference, _ = bccd_slice
    root = write_box_csv(voc, reference, tmp_path / "csv")
    file = root / "annotations" / "train_labels.csv"
    rows = [row.split(",") for row in file.read_text().splitlines()]
    file.write_text("\n".join(",".join(row[:7]) for row in rows) + "\n")  # no ymax
    with pytest.raises(UserError, match=r"train_labels\.csv: the box CSV has no ymax column.*header filename,width"):
        box_readers.read_boxes(root)


def test_a_box_csv_naming_a_missing_image(bccd_slice, tmp_path):
    voc, reference, _ = bccd_slice
    root = write_box_csv(voc, reference, tmp_path / "csv")
    file = root / "annotations" / "test_labels.csv"
    file.write_text(file.read_text() + "nowhere.jpg,640,480,RBC,1,2,30,40\n")
    with pytest.raises(UserError, match=r"test_labels\.csv: line \d+: its image nowhere\.jpg is in no folder"):
        box_readers.read_boxes(root)


def test_a_yaml_naming_a_missing_folder(bccd_slice, tmp_path):
    voc, reference, _ = bccd_slice
    root = write_yolo(voc, reference, tmp_path / "yolo")
    (root / "data.yaml").write_text("train: ../train/images\nval: ../valid/images\nnames: [Platelets, RBC, WBC]\n")
    with pytest.raises(UserError, match=r"data\.yaml: val: \.\./valid/images is neither an image folder nor a list"):
        box_readers.read_boxes(root)


def test_bad_box_csv_through_the_cli_is_one_line_and_writes_nothing(bccd_slice, tmp_path, capsys):
    voc, reference, _ = bccd_slice
    root = write_box_csv(voc, reference, tmp_path / "csv")
    file = root / "annotations" / "train_labels.csv"
    file.write_text(file.read_text().replace("filename,", "file,", 1))
    result = helpers.run_in_process(detection, capsys, tmp_path, "train", "--data", root, "--epochs", "1")
    helpers.assert_one_line_error(result, "train_labels.csv", "no filename column")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "saved_models").exists()


# === Classification: class folders and a label CSV ===


def mnist_slice(shared_data, per_class=4):
    images, labels = image_readers.read_idx(shared_data / "mnist" / "t10k-images-idx3-ubyte.gz",
                                            shared_data / "mnist" / "t10k-labels-idx1-ubyte.gz")
    for label in range(10):
        for number, index in enumerate(np.flatnonzero(labels == label)[:per_class]):
            buffer = Image.fromarray(images[index, ..., 0])
            yield str(label), f"{label}_{number}.png", buffer


def cifar_slice(shared_data, per_class=3):
    counts = {}
    with tarfile.open(shared_data / "cifar10_jpg" / "cifar10_test_jpg.tar.gz", "r|gz") as archive:
        for member in archive:
            parts = member.name.split("/")
            if not member.isfile() or len(parts) != 3 or counts.get(parts[1], 0) >= per_class:
                continue
            counts[parts[1]] = counts.get(parts[1], 0) + 1
            yield parts[1], parts[2].replace(".jpg", f"_{parts[1]}.jpg"), archive.extractfile(member).read()


def save(content, path):
    if isinstance(content, bytes):  # the JPEG as shipped, not re-encoded
        path.write_bytes(content)
    else:
        content.save(path)


@pytest.mark.parametrize("dataset", ["mnist", "cifar10"])
def test_label_csv_gives_the_class_folder_arrays(dataset, shared_data, tmp_path):
    slice_of = {"mnist": mnist_slice, "cifar10": cifar_slice}[dataset]
    rows = [("id", "label")]
    (tmp_path / "kaggle" / "train").mkdir(parents=True)
    for label, name, content in slice_of(shared_data):
        (tmp_path / "folders" / label).mkdir(parents=True, exist_ok=True)
        save(content, tmp_path / "folders" / label / name)
        save(content, tmp_path / "kaggle" / "train" / name)
        rows.append((name.rsplit(".", 1)[0], label))  # Kaggle's ids: no extension
    with open(tmp_path / "kaggle" / "trainLabels.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    folders = image_readers.read_images(tmp_path / "folders")
    table = image_readers.read_images(tmp_path / "kaggle")
    assert (folders.layout, table.layout) == ("class folders", "label CSV")
    assert table.class_names == folders.class_names and len(folders.class_names) == 10
    np.testing.assert_array_equal(table.splits["train"][0], folders.splits["train"][0])
    np.testing.assert_array_equal(table.splits["train"][1], folders.splits["train"][1])


def test_label_csvs_named_by_split_give_the_splits(tmp_path):
    for split, count in (("train", 6), ("test", 2)):
        (tmp_path / split).mkdir()
        rows = ["filename,label"]
        for number in range(count):
            Image.new("L", (8, 8), 40 * number).save(tmp_path / split / f"{number}.png")
            rows.append(f"{number}.png,{'even' if number % 2 == 0 else 'odd'}")
        (tmp_path / f"{split}.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "sample_submission.csv").write_text("filename,label\n")
    found = image_readers.read_images(tmp_path)
    assert set(found.splits) == {"train", "test"} and found.class_names == ["even", "odd"]
    assert found.splits["test"][1].tolist() == [0, 1]


def test_a_label_csv_without_a_label_column(tmp_path):
    (tmp_path / "train").mkdir()
    Image.new("L", (8, 8)).save(tmp_path / "train" / "a.png")
    (tmp_path / "train.csv").write_text("filename,width\na.png,8\n")
    with pytest.raises(UserError, match=r"train\.csv: no label column \(its header: filename,width\)"):
        image_readers.read_images(tmp_path)


def test_a_label_csv_naming_a_missing_image(tmp_path):
    (tmp_path / "images").mkdir()
    for name in ("a", "b"):
        Image.new("L", (8, 8)).save(tmp_path / "images" / f"{name}.png")
    (tmp_path / "labels.csv").write_text("filename,label\na.png,x\nb.png,y\nc.png,y\n")
    with pytest.raises(UserError, match=r"labels\.csv: line 4: no image c\.png under"):
        image_readers.read_images(tmp_path)
