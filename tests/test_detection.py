"""Object detection end to end: every bad input the issue lists as one line, the demo through the
CLI (metrics beside the baseline, gallery, export reloaded in a fresh process in input pixels,
predict drawings), and BCCD with each head beating the mean-box baseline."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from tasks import detection
from tasks.data import boxes as readers
from tests import helpers
from tests.helpers import assert_one_line_error
from tests.test_detection_data import SCENE
from tests.test_detection_data import write_coco
from tests.test_detection_data import write_voc

# === Bad input: one line, exit 2, nothing written ===


def run_in_process(capsys, workdir, *args):
    return helpers.run_in_process(detection, capsys, workdir, *args)


def missing_image(root):
    (root / "JPEGImages" / "b.jpg").unlink()


def malformed_xml(root):
    (root / "Annotations" / "a.xml").write_text("<annotation><object>")


def malformed_json(root):
    write_coco(root / "coco").write_text('{"images": [}')
    return root / "coco"


BAD_INPUTS = [
    ("unknown-class", None, ["--classes", "cat"], ["a.xml", "unknown class name 'dog'"]),
    ("missing-image", missing_image, [], ["b.xml", "b.jpg is missing"]),
    ("malformed-xml", malformed_xml, [], ["a.xml", "malformed XML"]),
    ("malformed-json", malformed_json, [], ["instances_train.json", "malformed JSON", "line 1"]),
    ("classifier-model", None, ["--model", "resnet18"], ["resnet18", "not a detection network"]),
    ("unknown-model", None, ["--model", "yolo9"], ["--model", "yolo9", "never registered"]),
]


@pytest.mark.parametrize("case,breaks,flags,words", BAD_INPUTS, ids=[case[0] for case in BAD_INPUTS])
def test_bad_input_is_one_line(case, breaks, flags, words, tmp_path, capsys):
    root = write_voc(tmp_path / "data", SCENE)
    data = (breaks(root) if breaks else None) or root
    result = run_in_process(capsys, tmp_path, "train", "--data", data, "--epochs", "1", *flags)
    assert_one_line_error(result, *words)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "saved_models").exists()


def test_degenerate_boxes_and_negatives_are_counted_not_fatal(tmp_path):
    write_voc(tmp_path, SCENE, splits={"train": ["a", "b"], "val": ["c"], "test": ["a"]})
    config = detection.Config(data=str(tmp_path), image_size=64, verbose=0)
    data = detection.load_data(config)
    assert (data.info["boxes_clipped"], data.info["boxes_dropped"]) == (1, 1)
    assert (data.info["num_train"], data.info["num_validation"], data.info["num_test"]) == (2, 1, 1)
    image, target = next(iter(data.validation.unbatch()))  # the negative: every row padding
    assert image.shape == (64, 64, 3) and (target.numpy()[:, 4] == -1).all()


# === The demo end to end ===

QUICK = ["--epochs", "6", "--verbose", "2"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    result = helpers.run_cli("detection", "train", *QUICK, cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (workdir / "runs" / "detection").iterdir()
    return workdir, run


@pytest.mark.subprocess
def test_demo_learns_and_reports_beside_the_baseline(demo_run):
    _, run = demo_run
    record = json.loads((run / "metrics.json").read_text())
    metrics, baseline = record["metrics"], record["baseline"]
    assert metrics["map50"] > baseline["map50"] + 0.3
    assert set(metrics["ap50_per_class"]) == {"circle", "square", "triangle"}
    assert metrics["coco_ap"] < metrics["coco_ap50"] and "coco_ap75" in metrics
    info = json.loads((run / "info.json").read_text())
    assert len(info["anchors"]) == 5 and info["anchor_mean_iou"] > 0.6
    for name in ["model.keras", "plots/training_curves.png", "plots/detection_gallery.png"]:
        assert (run / name).is_file(), name


@pytest.mark.subprocess
def test_export_gives_boxes_in_the_input_pixels(demo_run, tmp_path):
    workdir, run = demo_run
    version = workdir / "saved_models" / "detection" / "1"
    assert (version / "assets" / "labels.txt").read_text().split() == ["circle", "square", "triangle"]
    scene = readers.demo_scenes(num_train=1, num_test=4, seed=7).splits["test"]
    index = int(np.argmax([len(b) for b in scene.boxes]))
    image = scene.images[index]
    big = np.asarray(Image.fromarray(image).resize((256, 256), Image.Resampling.BILINEAR))  # twice the size
    (tmp_path / "small.png").write_bytes(tf.io.encode_png(image).numpy())
    (tmp_path / "big.png").write_bytes(tf.io.encode_png(big).numpy())
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "f = m.signatures['serving_default']\n"
        "out = {}\n"
        "for name in ('small', 'big'):\n"
        "    r = f(image_bytes=tf.constant([open(f'{sys.argv[2]}/{name}.png', 'rb').read()]))\n"
        "    out.update({f'{name}_{k}': v.numpy() for k, v in r.items()})\n"
        "np.savez(sys.argv[3], **out)\n"
    )
    subprocess.run([sys.executable, "-c", script, version, tmp_path, tmp_path / "out.npz"], check=True,
                   env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    out = np.load(tmp_path / "out.npz", allow_pickle=True)
    # The reloaded export gives what the in-process model gives.
    model = keras.saving.load_model(run / "model.keras")
    info = json.loads((run / "info.json").read_text())
    config = detection.Config(**{key: value for key, value in info["detection"].items()})
    expected = detection.detector(model, info, config)(tf.constant(image[None]))
    count = int(expected["num_detections"][0])
    assert int(out["small_num_detections"][0]) == count > 0
    np.testing.assert_allclose(out["small_boxes"][0, :count], expected["boxes"][0, :count].numpy(), atol=1e-3)
    names = [value.decode() for value in out["small_class_names"][0, :count]]
    assert names == [info["class_names"][k] for k in expected["classes"][0, :count].numpy()]
    # The confident boxes of the enlarged image are the same boxes, in its own pixels.
    confident = out["small_scores"][0] > 0.5
    small = out["small_boxes"][0][confident]
    big_boxes = out["big_boxes"][0][out["big_scores"][0] > 0.3]
    assert len(small) and (out["big_boxes"][0].max() > 130)
    for box in small * 2:
        overlap = [readers._max_iou(box, big_boxes[None, k]) for k in range(len(big_boxes))]
        assert max(overlap, default=0) > 0.7


@pytest.mark.subprocess
def test_predict_draws_boxes_and_rejects_a_corrupt_file(demo_run, tmp_path, capsys):
    workdir, _ = demo_run
    picture = tmp_path / "shapes.png"
    Image.fromarray(readers.demo_scenes(num_train=1, num_test=1, seed=3).splits["test"].images[0]).save(picture)
    model_root = workdir / "saved_models" / "detection"
    result = run_in_process(
        capsys, tmp_path, "predict", "--model", model_root, "--output", "out", "--min-score", "0.2", picture
    )
    assert result.returncode == 0, result.stderr
    assert "shapes.png\t128x128" in result.stdout
    drawn = np.asarray(Image.open(tmp_path / "out" / "shapes_boxes.png"))
    assert drawn.shape == (128, 128, 3)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xffnot really")
    result = run_in_process(capsys, tmp_path, "predict", "--model", model_root, broken)
    assert_one_line_error(result, "broken.jpg", "cannot decode")


@pytest.mark.subprocess
def test_bad_input_through_the_real_cli(tmp_path):
    root = write_voc(tmp_path / "data", SCENE)
    malformed_xml(root)
    assert_one_line_error(helpers.run_cli("detection", "train", "--data", root, cwd=tmp_path), "a.xml", "malformed XML")


# === Real data: BCCD, each head ===

# The CI recipes (measured: see README); BCCD's own splits 205 / 87 / 72.
BCCD = ["--image-size", "256", "--flip", "--vertical-flip", "--scale-jitter", "0.2", "--verbose", "2"]
HEADS = [
    ("yolo_v2", ["--epochs", "7"], 0.4),
    ("faster_rcnn", ["--epochs", "7"], 0.4),
]


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("model,flags,margin", HEADS, ids=[head[0] for head in HEADS])
def test_bccd_map_beats_the_baseline(model, flags, margin, shared_data, tmp_path):
    result = helpers.run_cli(
        "detection", "train", "--data", shared_data / "bccd", "--model", model, *BCCD, *flags, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    (run,) = (tmp_path / "runs" / "detection").iterdir()
    record = json.loads((run / "metrics.json").read_text())
    info = json.loads((run / "info.json").read_text())
    assert (info["num_train"], info["num_validation"], info["num_test"]) == (205, 87, 72)
    assert info["boxes_dropped"] == 2  # BCCD's two degenerate boxes
    # The margin: mAP@0.5 at least `margin` above the mean-box baseline's.
    assert record["metrics"]["map50"] > record["baseline"]["map50"] + margin
    assert (tmp_path / "saved_models" / "detection" / "1" / "saved_model.pb").is_file()  # reload-checked export
