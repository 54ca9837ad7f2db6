"""Detection readers on tiny generated files (VOC, COCO, YOLO, TFDS, demo), every bad input the
issue lists, and the box-aware augmentation (boxes follow the pixels)."""

import json

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tasks.core.errors import UserError
from tasks.data import boxes as readers


def write_voc(root, objects_by_image, splits=None, mode="RGB", size=(64, 48)):
    """root/Annotations/<id>.xml + JPEGImages/<id>.jpg (+ ImageSets/Main/<split>.txt)."""
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "JPEGImages").mkdir(exist_ok=True)
    for name, objects in objects_by_image.items():
        image = Image.new(mode, size, (40, 90, 200) if mode == "RGB" else None)
        image.save(root / "JPEGImages" / f"{name}.jpg")
        parts = "".join(
            f"<object><name>{label}</name><difficult>0</difficult><bndbox><xmin>{x1}</xmin><ymin>{y1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
            for label, x1, y1, x2, y2 in objects
        )
        (root / "Annotations" / f"{name}.xml").write_text(
            f"<annotation><filename>{name}.jpg</filename><size><width>{size[0]}</width><height>{size[1]}</height>"
            f"<depth>3</depth></size>{parts}</annotation>"
        )
    if splits:
        (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
        for split, names in splits.items():
            (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


SCENE = {
    "a": [("cat", 2, 3, 20, 30), ("dog", 30, 10, 60, 40)],
    "b": [("dog", 10, 10, 90, 40), ("cat", 5, 5, 5, 20)],  # one box past the right edge, one of zero width
    "c": [],  # no objects: a valid negative
}


def test_voc_splits_clipping_dropping_and_negatives(tmp_path):
    root = write_voc(tmp_path / "VOC", SCENE, splits={"train": ["a", "b"], "test": ["c"]})
    data = readers.read_boxes(tmp_path)  # finds the single VOC folder inside
    assert data.class_names == ["cat", "dog"] and set(data.splits) == {"train", "test"}
    train = data.splits["train"]
    assert train.names == ["a", "b"] and train.images[0].shape == (48, 64, 3)
    np.testing.assert_allclose(train.boxes[1], [[10, 10, 64, 40]])  # clipped to the width
    assert train.classes[1].tolist() == [1]  # the zero-area cat is gone
    assert (data.clipped, data.dropped) == (1, 1)
    assert len(data.splits["test"].boxes[0]) == 0  # negative kept
    assert readers.read_boxes(root).splits["train"].names == ["a", "b"]


@pytest.mark.parametrize("mode", ["L", "CMYK"])
def test_greyscale_and_cmyk_jpegs_become_rgb(tmp_path, mode):
    write_voc(tmp_path, {"a": [("cat", 1, 1, 9, 9)]}, mode=mode)
    image = readers.read_boxes(tmp_path).splits["train"].images[0]
    assert image.shape == (48, 64, 3) and image.dtype == np.uint8


def test_unknown_class_is_an_error_or_skipped(tmp_path):
    write_voc(tmp_path, SCENE)
    with pytest.raises(UserError, match=r"a\.xml.*unknown class name 'dog' \(known: cat\)"):
        readers.read_boxes(tmp_path, class_names=["cat"])
    data = readers.read_boxes(tmp_path, class_names=["cat"], skip_bad=True)
    assert data.splits["train"].names == ["c"] and len(data.skipped) == 2


def test_xml_whose_image_is_missing(tmp_path):
    write_voc(tmp_path, SCENE)
    (tmp_path / "JPEGImages" / "b.jpg").unlink()
    with pytest.raises(UserError, match=r"b\.xml: its image .*b\.jpg is missing"):
        readers.read_boxes(tmp_path)
    assert readers.read_boxes(tmp_path, skip_bad=True).splits["train"].names == ["a", "c"]


def test_malformed_xml(tmp_path):
    write_voc(tmp_path, SCENE)
    (tmp_path / "Annotations" / "a.xml").write_text("<annotation><object><name>cat</name>")
    with pytest.raises(UserError, match=r"a\.xml: malformed XML \(.*line 1"):
        readers.read_boxes(tmp_path)
    (tmp_path / "Annotations" / "a.xml").write_text(
        "<annotation><filename>a.jpg</filename><object><name>cat</name><bndbox><xmin>x</xmin></bndbox></object></annotation>"
    )
    with pytest.raises(UserError, match="no numeric bndbox"):
        readers.read_boxes(tmp_path)


def write_coco(root, name="instances_train.json", images=("a", "b"), annotations=None, categories=None):
    (root / "images").mkdir(parents=True, exist_ok=True)
    for stem in images:
        Image.new("RGB", (40, 30), (10, 200, 10)).save(root / "images" / f"{stem}.jpg")
    content = {
        "images": [{"id": i + 1, "file_name": f"{stem}.jpg", "width": 40, "height": 30} for i, stem in enumerate(images)],
        "annotations": annotations if annotations is not None else [
            {"id": 1, "image_id": 1, "category_id": 3, "bbox": [2, 2, 10, 12]},
            {"id": 2, "image_id": 1, "category_id": 7, "bbox": [30, 20, 20, 20]},  # past the corner: clipped
        ],
        "categories": categories or [{"id": 3, "name": "car"}, {"id": 7, "name": "bus"}],
    }
    (root / name).write_text(json.dumps(content))
    return root / name


def test_coco_json(tmp_path):
    file = write_coco(tmp_path)
    data = readers.read_boxes(file)
    assert data.class_names == ["car", "bus"]  # by category id
    train = data.splits["train"]
    np.testing.assert_allclose(train.boxes[0], [[2, 2, 12, 14], [30, 20, 40, 30]])
    assert train.classes[0].tolist() == [0, 1] and len(train.boxes[1]) == 0 and data.clipped == 1


def test_coco_bad_json_and_unknown_category(tmp_path):
    file = write_coco(tmp_path)
    file.write_text('{"images": [], "annotations": [,]}')
    with pytest.raises(UserError, match=r"malformed JSON in .*instances_train\.json at line 1, column"):
        readers.read_boxes(file)
    file = write_coco(tmp_path, annotations=[{"id": 9, "image_id": 1, "category_id": 5, "bbox": [1, 1, 5, 5]}])
    with pytest.raises(UserError, match="annotation 9: unknown category_id 5"):
        readers.read_boxes(file)
    file.write_text(json.dumps({"images": []}))
    with pytest.raises(UserError, match="not COCO detection JSON"):
        readers.read_boxes(file)


def label_studio_task(image, value, width=100, height=50):
    return {"data": {"image": image}, "annotations": [{"result": [
        {"type": "rectanglelabels", "original_width": width, "original_height": height,
         "value": {"rectanglelabels": ["cell"], **value}}]}]}


def test_label_studio_rotated_box_becomes_its_enclosing_box(tmp_path):
    Image.new("RGB", (100, 50)).save(tmp_path / "a.png")
    # 20 x 10 px from (10, 10), turned 90 degrees clockwise about that corner: x 0..10, y 10..30.
    value = {"x": 10, "y": 20, "width": 20, "height": 20, "rotation": 90}
    (tmp_path / "export.json").write_text(json.dumps([label_studio_task("/data/local-files/?d=a.png", value)]))
    data = readers.read_boxes(tmp_path / "export.json")
    assert data.layout == "Label Studio JSON" and data.class_names == ["cell"]
    np.testing.assert_allclose(data.splits["train"].boxes[0], [[0, 10, 10, 30]], atol=1e-4)


def test_label_studio_task_whose_image_is_missing(tmp_path):
    value = {"x": 10, "y": 20, "width": 20, "height": 20}
    (tmp_path / "export.json").write_text(json.dumps([label_studio_task("/data/upload/1/0a1b2c3d-gone.jpg", value)]))
    with pytest.raises(UserError, match=r"export\.json: task 1: its image 0a1b2c3d-gone\.jpg is missing"):
        readers.read_boxes(tmp_path)


def test_createml_annotation_without_coordinates(tmp_path):
    Image.new("RGB", (100, 50)).save(tmp_path / "a.jpg")
    (tmp_path / "a.json").write_text(json.dumps([{"image": "a.jpg", "annotations": [{"label": "cell"}]}]))
    with pytest.raises(UserError, match=r"a\.json: image 1 \(a\.jpg\): an annotation needs a label and coordinates"):
        readers.read_boxes(tmp_path)


def test_json_files_of_two_formats(tmp_path):
    Image.new("RGB", (100, 50)).save(tmp_path / "a.jpg")
    (tmp_path / "test.json").write_text(json.dumps([{"image": "a.jpg", "annotations": []}]))
    (tmp_path / "train.json").write_text(json.dumps({"images": [], "annotations": [], "categories": []}))
    with pytest.raises(UserError, match=r"train\.json: coco, unlike the other annotation files \(createml\)"):
        readers.read_boxes(tmp_path)


def test_yolo_txt(tmp_path):
    for split in ("train", "val"):
        (tmp_path / "images" / split).mkdir(parents=True)
        (tmp_path / "labels" / split).mkdir(parents=True)
        Image.new("RGB", (100, 50)).save(tmp_path / "images" / split / "x.png")
        Image.new("RGB", (100, 50)).save(tmp_path / "images" / split / "empty.png")  # no label file: negative
    (tmp_path / "labels" / "train" / "x.txt").write_text("1 0.5 0.5 0.2 0.4\n0 0.1 0.1 0.1 0.1\n")
    (tmp_path / "labels" / "val" / "x.txt").write_text("0 0.5 0.5 1.0 1.0\n")
    (tmp_path / "data.yaml").write_text("names: [ant, bee]\n")
    data = readers.read_boxes(tmp_path)
    assert data.class_names == ["ant", "bee"] and set(data.splits) == {"train", "validation"}
    train = data.splits["train"]
    index = train.names.index("x")
    np.testing.assert_allclose(train.boxes[index], [[40, 15, 60, 35], [5, 2.5, 15, 7.5]])
    assert len(train.boxes[train.names.index("empty")]) == 0
    (tmp_path / "labels" / "val" / "x.txt").write_text("0 0.5 0.5\n")
    with pytest.raises(UserError, match=r"x\.txt: line 1: expected 'class cx cy w h'"):
        readers.read_boxes(tmp_path)
    (tmp_path / "labels" / "val" / "x.txt").write_text("4 0.5 0.5 0.1 0.1\n")
    with pytest.raises(UserError, match="unknown class 4"):
        readers.read_boxes(tmp_path)


def test_not_a_detection_dataset(tmp_path):
    (tmp_path / "stuff").mkdir()
    with pytest.raises(UserError, match="no detection dataset"):
        readers.read_boxes(tmp_path)


def test_demo_scenes():
    data = readers.demo_scenes(num_train=60, num_test=10)
    train = data.splits["train"]
    counts = [len(boxes) for boxes in train.boxes]
    assert data.class_names == ["circle", "square", "triangle"] and 0 in counts and max(counts) >= 3
    assert set(np.concatenate(train.classes).tolist()) == {0, 1, 2}


# === Augmentation ===


def white_square_scene(size=64):
    image = np.zeros((size, size, 3), np.uint8)
    image[8:24, 36:60] = 255  # rows 8-24, cols 36-60
    target = readers.dense_targets(np.array([[36, 8, 60, 24]]), np.array([2]), size, 4)
    return image, target


def box_mean(image, box, size):
    y1, x1, y2, x2 = np.round(np.asarray(box) * size).astype(int)
    return image[y1:y2, x1:x2].mean()


def test_flips_move_boxes_with_pixels():
    image, target = white_square_scene()
    tf.random.set_seed(0)
    augment = readers.augment_fn(64, flip=True, vertical_flip=True)
    seen = set()
    for _ in range(12):
        out_image, out_target = (value.numpy() for value in augment(image, target))
        assert box_mean(out_image, out_target[0, :4], 64) == 255  # the box still covers the square
        assert out_target[0, 4] == 2 and (out_target[1:, 4] == -1).all()
        seen.add(tuple(np.round(out_target[0, :4], 3)))
    assert len(seen) == 4  # all four flip combinations happened


def test_scale_jitter_pads_crops_and_drops_boxes():
    image, target = white_square_scene()
    tf.random.set_seed(1)
    augment = readers.augment_fn(64, scale_jitter=0.5)
    kept = dropped = 0
    for _ in range(30):
        out_image, out_target = (value.numpy() for value in augment(image, target))
        assert out_image.shape == (64, 64, 3)
        if out_target[0, 4] == 2:
            kept += 1
            assert box_mean(out_image, out_target[0, :4], 64) > 200  # box and pixels moved together
        else:
            dropped += 1  # cropped out of the frame
            assert (out_target[0, :4] == 0).all()
    assert kept > 10


def test_clean_boxes_counts():
    boxes, keep, clipped = readers.clean_boxes([[-5, 0, 10, 10], [0, 0, 0, 10], [3, 3, 5, 5], [50, 50, 60, 60]], 20, 20)
    assert keep.tolist() == [True, False, True, False] and clipped == 1
    np.testing.assert_allclose(boxes[0], [0, 0, 10, 10])
