"""Object detection end to end: every bad input the issue lists as one line, the demo trained once
(metrics beside the baseline and an untrained control, gallery, export reloaded in a fresh process in
input pixels, predict drawings), Faster R-CNN learning the demo, and YOLOv2 on BCCD beating the
mean-box baseline."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
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


def untrained_metrics(config):
    """The test metrics of the model `config` builds, on the same split, without a training step."""
    from tasks.core import runner
    from tasks.core import training

    training.setup(config)
    data = runner.load_data(detection, config)
    return detection.evaluate(detection.build_model(config, data.info), data, config)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One YOLOv2 training run on the demo scenes (in process), its run folder and its export."""
    workdir = tmp_path_factory.mktemp("demo")
    config = detection.Config(epochs=DEMO_EPOCHS, verbose=0, runs_dir=str(workdir / "runs"),
                              export_dir=str(workdir / "saved_models"))
    detection.train(config)
    (run,) = (workdir / "runs" / "detection").iterdir()
    return workdir, run, config


DEMO_EPOCHS = 6


def test_demo_learns_beside_the_baseline(demo_run):
    """Demo YOLOv2: mAP@0.5 at least 0.3 above the mean-box baseline; the same network untrained is
    below that bar. Measured at 6 epochs, seed 0: mAP@0.5 0.604 (baseline 0.000; 4 epochs: 0.481, but boxes not yet
    confident enough for the export test's enlarged-image check)."""
    _, run, config = demo_run
    record = json.loads((run / "metrics.json").read_text())
    metrics, baseline = record["metrics"], record["baseline"]
    bar = baseline["map50"] + 0.3
    assert metrics["map50"] >= bar > untrained_metrics(config)["map50"]


def test_demo_reports_per_class_coco_anchors_and_plots(demo_run):
    _, run, _ = demo_run
    metrics = json.loads((run / "metrics.json").read_text())["metrics"]
    assert set(metrics["ap50_per_class"]) == {"circle", "square", "triangle"}
    assert metrics["coco_ap"] < metrics["coco_ap50"] and "coco_ap75" in metrics
    info = json.loads((run / "info.json").read_text())
    assert len(info["anchors"]) == 5 and info["anchor_mean_iou"] > 0.6
    for name in ["model.keras", "plots/training_curves.png", "plots/detection_gallery.png"]:
        assert (run / name).is_file(), name


@pytest.mark.subprocess
def test_export_gives_boxes_in_the_input_pixels(demo_run, tmp_path):
    workdir, run, _ = demo_run
    version = workdir / "saved_models" / "detection" / "1"
    assert (version / "assets" / "labels.txt").read_text().split() == ["circle", "square", "triangle"]
    scene = readers.demo_scenes(num_train=1, num_test=4, seed=7).splits["test"]
    index = int(np.argmax([len(b) for b in scene.boxes]))
    Image.fromarray(scene.images[index]).save(tmp_path / "small.png")
    image = np.asarray(Image.open(tmp_path / "small.png").convert("RGB"))  # (128, 128, 3): decoded by PIL
    big = np.asarray(Image.fromarray(image).resize((256, 256), Image.Resampling.BILINEAR))  # twice the size
    Image.fromarray(big).save(tmp_path / "big.png")
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
    # The reloaded export gives what the Keras model gives on the PIL-decoded pixels: the image is the
    # network's size (no letterbox), the head's decoder and NMS straight on the model's output.
    model = keras.saving.load_model(run / "model.keras")
    info = json.loads((run / "info.json").read_text())
    assert info["image_size"] == image.shape[0] == image.shape[1]
    options = info["detection"]
    network = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    found = detection.family(options["model"]).detections(
        network, model(image[None].astype("float32"), training=False), options["max_detections"],
        options["nms_iou"], options["score_threshold"])
    count = int(found["num_detections"][0])
    expected = found["boxes"][0, :count].numpy()[:, [1, 0, 3, 2]] * info["image_size"]  # yxyx -> xyxy pixels
    assert int(out["small_num_detections"][0]) == count > 0
    np.testing.assert_allclose(out["small_boxes"][0, :count], expected, atol=1e-3)
    np.testing.assert_allclose(out["small_scores"][0, :count], found["scores"][0, :count].numpy(), atol=1e-5)
    names = [value.decode() for value in out["small_class_names"][0, :count]]
    assert names == [info["class_names"][k] for k in found["classes"][0, :count].numpy()]
    # The confident boxes of the enlarged image are the same boxes, in its own pixels.
    confident = out["small_scores"][0] > 0.5
    small = out["small_boxes"][0][confident]
    big_boxes = out["big_boxes"][0][out["big_scores"][0] > 0.3]
    assert len(small) and (out["big_boxes"][0].max() > 130)
    for box in small * 2:
        overlap = [readers._max_iou(box, big_boxes[None, k]) for k in range(len(big_boxes))]
        assert max(overlap, default=0) > 0.7


def test_predict_draws_boxes_and_rejects_a_corrupt_file(demo_run, tmp_path, capsys):
    workdir, _, _ = demo_run
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


# === Faster R-CNN on the demo ===


@pytest.mark.slow  # a second demo training (the two-stage head), 20-37 s on two cores
def test_faster_rcnn_learns_the_demo_beside_the_baseline(tmp_path):
    """The two-stage head learns: demo mAP@0.5 at least 0.3 above the mean-box baseline, untrained
    below it (no export: the YOLOv2 demo covers it). Measured at 6 epochs, seeds 0 / 1 / 2: mAP@0.5
    0.504 / 0.563 / 0.603 (baseline 0.000, untrained 0.010 / 0.002 / 0.004), 18-35 s each on the loaded
    2-core host (4 epochs: 0.342 on seed 0, too near the bar)."""
    from tasks.core import runner

    config = detection.Config(model="faster_rcnn", epochs=FRCNN_EPOCHS, verbose=0, runs_dir=str(tmp_path / "runs"),
                              export_dir=str(tmp_path / "saved_models"))
    runner.train(detection, config, export_model=False)
    (run,) = (tmp_path / "runs" / "detection").iterdir()
    record = json.loads((run / "metrics.json").read_text())
    bar = record["baseline"]["map50"] + 0.3
    assert record["metrics"]["map50"] >= bar > untrained_metrics(config)["map50"]


FRCNN_EPOCHS = 6


# === Real data: BCCD ===


@pytest.mark.slow  # real BCCD training, 40-60 s on two cores; the demo bars keep the fast lane's proof
def test_bccd_map_beats_the_baseline(shared_data, tmp_path):
    """BCCD (its own splits 205 / 87 / 72), YOLOv2: mAP@0.5 at least 0.3 above the mean-box
    baseline; the same network untrained is below that bar. Measured at 160 pixels and 4 epochs, seeds
    0 / 1 / 2: mAP@0.5 0.421 / 0.413 / 0.433 (baseline 0.001, untrained 0.000), training 36-48 s each on
    the loaded 2-core host (256 pixels and 7 epochs took 94 s through the CLI).

    Trained without the export (`export_model=False`): the demo tests cover the export.
    """
    from tasks.core import runner

    config = detection.Config(data=str(shared_data / "bccd"), image_size=BCCD_SIZE, epochs=BCCD_EPOCHS, flip=True,
                              vertical_flip=True, scale_jitter=0.2, verbose=0, runs_dir=str(tmp_path / "runs"),
                              export_dir=str(tmp_path / "saved_models"))
    runner.train(detection, config, export_model=False)
    (run,) = (tmp_path / "runs" / "detection").iterdir()
    record = json.loads((run / "metrics.json").read_text())
    info = json.loads((run / "info.json").read_text())
    assert (info["num_train"], info["num_validation"], info["num_test"]) == (205, 87, 72)
    assert info["boxes_dropped"] == 2  # BCCD's two degenerate boxes
    bar = record["baseline"]["map50"] + BCCD_MARGIN
    assert record["metrics"]["map50"] >= bar > untrained_metrics(config)["map50"]


BCCD_SIZE, BCCD_EPOCHS, BCCD_MARGIN = 160, 4, 0.3
