"""Users' images, not ours: several sizes and aspect ratios, greyscale among RGB and RGBA, PNG and
JPEG in one dataset train, evaluate and export for detection, segmentation and classification;
a picture that fails costs neither the metrics nor the export; a run whose evaluation or export
did not finish completes them on a re-run without training again.

EXIF rotation is applied: a JPEG whose EXIF Orientation says it was taken sideways is read upright,
in training and in predict (the SavedModel itself decodes bytes as given, EXIF ignored).
"""

import json

import numpy as np
import pytest
from PIL import Image

from tasks import classification
from tasks import detection
from tasks import segmentation
from tasks.core import export as export_lib
from tasks.core import plots
from tasks.core import training
from tasks.data import images as image_readers
from tests import helpers

# (width, height): landscape, portrait, square, wide; modes and formats cycle independently.
SIZES = [(72, 48), (44, 70), (56, 56), (90, 40), (48, 64)]
MODES = ["RGB", "L", "RGBA", "RGB", "P"]
COLOURS = [(220, 40, 40), (40, 200, 60)]


def canvas(number, rng):
    """A noisy picture of size SIZES[number % 5], as an RGB array to draw on."""
    width, height = SIZES[number % len(SIZES)]
    return rng.integers(0, 90, size=(height, width, 3)).astype(np.uint8)


def save_as(array, path_stem, number):
    """Saves in MODES[number % 5]; RGBA and palette as PNG, the rest JPEG and PNG in turn. Returns the path."""
    mode = MODES[number % len(MODES)]
    image = Image.fromarray(array)
    image = image.convert(mode) if mode != "P" else image.convert("P", palette=Image.Palette.ADAPTIVE)
    if mode == "RGBA":
        image.putalpha(200)
    extension = ".png" if mode in ("RGBA", "P") or number % 2 else ".jpg"
    path = path_stem.with_suffix(extension)
    image.save(path)
    return path


def save_sideways(upright, path):
    """A JPEG of `upright` as a phone held sideways stores it: pixels turned a quarter to the left,
    EXIF Orientation 6 (turn a quarter to the right to view). Returns the path."""
    exif = Image.Exif()
    exif[image_readers.EXIF_ORIENTATION] = 6
    Image.fromarray(np.ascontiguousarray(np.rot90(upright, k=1))).save(path, exif=exif.tobytes())
    return path


def as_stored(path):
    """The JPEG's pixels as stored, turned by hand as EXIF Orientation 6 asks (no EXIF code involved)."""
    with Image.open(path) as image:
        return np.rot90(np.asarray(image.convert("RGB")), k=-1)


def only_run(workdir, task):
    (run,) = (workdir / "runs" / task).iterdir()
    return run


def assert_evaluated_and_exported(result, workdir, task):
    assert result.returncode == 0, result.stderr[-3000:]
    assert "warning:" not in result.stderr + result.stdout
    run = only_run(workdir, task)
    assert json.loads((run / "metrics.json").read_text())["metrics"]
    assert (run / "plots" / "training_curves.png").is_file()
    assert [path.name for path in (workdir / "saved_models" / task).iterdir()] == ["1"]
    return run


# === Detection ===


def write_mixed_detection(root, count=12):
    """LabelImg-style images/ + annotations/: one coloured square (class red or green) per image."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    (root / "annotations").mkdir()
    for number in range(count):
        array = canvas(number, rng)
        height, width = array.shape[:2]
        side = min(width, height) // 2
        x, y = int(rng.integers(0, width - side)), int(rng.integers(0, height - side))
        label = number % 2
        array[y : y + side, x : x + side] = COLOURS[label]
        path = save_as(array, root / "images" / f"scene{number}", number)
        (root / "annotations" / f"scene{number}.xml").write_text(
            f"<annotation><filename>{path.name}</filename><object><name>{['red', 'green'][label]}</name>"
            f"<bndbox><xmin>{x}</xmin><ymin>{y}</ymin><xmax>{x + side}</xmax><ymax>{y + side}</ymax></bndbox>"
            "</object></annotation>"
        )
    return root


@pytest.mark.slow  # a second detection training and export (14 s on two cores); the classification case keeps the fast lane's proof
def test_detection_trains_evaluates_and_exports_mixed_images(tmp_path, capsys):
    data = write_mixed_detection(tmp_path / "mixed")
    result = helpers.run_in_process(detection, capsys, tmp_path, "train", "--data", data, "--epochs", "1",
                                    "--image-size", "64", "--batch-size", "4", "--test-fraction", "0.34",
                                    "--verbose", "0")
    run = assert_evaluated_and_exported(result, tmp_path, "detection")
    assert (run / "plots" / "detection_gallery.png").is_file()  # test images of several sizes in one grid


# === Segmentation ===


def write_mixed_segmentation(root, count=10):
    """images/ + masks/ (the image/mask folder layout): a bright disc (class 1) on background (0)."""
    rng = np.random.default_rng(1)
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    for number in range(count):
        array = canvas(number, rng)
        height, width = array.shape[:2]
        rows, columns = np.mgrid[:height, :width]
        disc = (rows - height / 2) ** 2 + (columns - width / 2) ** 2 < (min(height, width) / 3) ** 2
        array[disc] = COLOURS[number % 2]
        save_as(array, root / "images" / f"slice{number}", number)
        Image.fromarray(np.where(disc, 255, 0).astype(np.uint8)).save(root / "masks" / f"slice{number}.png")
    return root


@pytest.mark.slow  # a second segmentation training and export (14 s on two cores); the classification case keeps the fast lane's proof
def test_segmentation_trains_evaluates_and_exports_mixed_images(tmp_path, capsys):
    data = write_mixed_segmentation(tmp_path / "mixed")
    result = helpers.run_in_process(segmentation, capsys, tmp_path, "train", "--data", data, "--epochs", "1",
                                    "--crop-size", "32", "--depth", "2", "--width", "4", "--batch-size", "4",
                                    "--verbose", "0")
    run = assert_evaluated_and_exported(result, tmp_path, "segmentation")
    assert (run / "plots" / "segmentation_examples.png").is_file()


# === Classification ===


def write_mixed_classes(root, per_class=8):
    """Class folders red/ and green/: a coloured block on noise, every image its own size and mode, one
    JPEG with EXIF Orientation 6."""
    rng = np.random.default_rng(2)
    for label, name in enumerate(["red", "green"]):
        (root / name).mkdir(parents=True)
        for number in range(per_class):
            array = canvas(number + label, rng)
            array[4:-4, 4:-4] = COLOURS[label]
            if (label, number) == (0, per_class - 1):  # the last red one: a photo taken sideways
                save_sideways(array, root / name / f"{name}{number}.jpg")
            else:
                save_as(array, root / name / f"{name}{number}", number + label)
    return root


def classification_flags(data):
    return ["--data", data, "--epochs", "1", "--image-size", "16", "--model", "resnet20", "--batch-size", "8",
            "--verbose", "0"]


def test_classification_trains_evaluates_and_exports_mixed_images(tmp_path, capsys):
    data = write_mixed_classes(tmp_path / "mixed")
    result = helpers.run_in_process(classification, capsys, tmp_path, "train", *classification_flags(data))
    run = assert_evaluated_and_exported(result, tmp_path, "classification")
    assert json.loads((run / "info.json").read_text())["image_shape"] == [16, 16, 3]


# === EXIF orientation ===


def test_a_photo_taken_sideways_is_read_upright(tmp_path):
    upright = np.zeros((24, 40, 3), np.uint8)  # landscape: a red top band, a blue left band
    upright[:6] = (230, 30, 30)
    upright[:, :6] = (30, 30, 230)
    for name in ("red", "blue"):
        (tmp_path / name).mkdir()
    path = save_sideways(upright, tmp_path / "red" / "photo.jpg")
    Image.fromarray(upright).save(tmp_path / "blue" / "plain.png")
    found = image_readers.read_images(tmp_path)
    train_images, train_labels = found.splits["train"]
    read = train_images[list(train_labels).index(found.class_names.index("red"))]
    np.testing.assert_array_equal(read, as_stored(path))  # turned, not resized: 24 x 40 like the PNG
    assert np.abs(read.astype(int) - upright).mean() < 8  # and the right way round (JPEG loss only)


def test_predict_turns_a_sideways_photo_before_the_savedmodel(tmp_path):
    import tensorflow as tf

    upright = np.zeros((24, 40, 3), np.uint8)
    upright[:6] = 230
    path = save_sideways(upright, tmp_path / "photo.jpg")
    turned = export_lib.upright_bytes(path.read_bytes())
    np.testing.assert_array_equal(tf.io.decode_image(turned, channels=3).numpy(), as_stored(path))
    plain = tmp_path / "plain.png"
    Image.fromarray(upright).save(plain)
    assert export_lib.upright_bytes(plain.read_bytes()) == plain.read_bytes()  # no EXIF: the bytes as given


# === Pictures are best-effort; an unfinished run completes ===


def test_image_grid_takes_any_size_mode_and_channels(tmp_path):
    pictures = [np.zeros((30, 50, 3), np.uint8), np.zeros((60, 20), np.uint8), np.zeros((10, 10, 4), np.uint8),
                np.ones((5, 8, 1), np.float32), np.zeros((7, 7, 2), np.uint8), Image.new("P", (9, 4))]
    path = plots.image_grid(pictures, [str(index) for index in range(len(pictures))], tmp_path / "grid.png")
    assert Image.open(path).size[0] > 0


@pytest.mark.slow  # a training and export (13 s on two cores)
def test_a_failing_picture_costs_neither_metrics_nor_export(tmp_path, capsys, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("the plotting library broke")

    monkeypatch.setattr(plots, "confusion_matrix", broken)
    data = write_mixed_classes(tmp_path / "mixed")
    result = helpers.run_in_process(classification, capsys, tmp_path, "train", *classification_flags(data))
    assert result.returncode == 0, result.stderr[-3000:]
    warnings = [line for line in (result.stderr + result.stdout).splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "confusion_matrix.png" in warnings[0] and "the plotting library broke" in warnings[0]
    run = only_run(tmp_path, "classification")
    assert (run / "metrics.json").is_file() and not (run / "plots" / "confusion_matrix.png").exists()
    assert (tmp_path / "saved_models" / "classification" / "1" / "saved_model.pb").is_file()


@pytest.mark.slow  # two trainings and exports (13-15 s each on two cores)
@pytest.mark.parametrize("step", ["evaluate", "export"])
def test_a_rerun_completes_an_unfinished_run_without_training(step, tmp_path, monkeypatch):
    data = write_mixed_classes(tmp_path / "mixed")
    config = classification.Config(data=str(data), epochs=1, image_size=16, model="resnet20", batch_size=8,
                                   verbose=0, runs_dir=str(tmp_path / "runs"),
                                   export_dir=str(tmp_path / "saved_models"))
    with monkeypatch.context() as patch:
        def crash(*args, **kwargs):
            raise RuntimeError("killed")

        patch.setattr(*((classification, "evaluate") if step == "evaluate" else (export_lib, "write")), crash)
        with pytest.raises(RuntimeError, match="killed"):
            classification.train(config)
    run = only_run(tmp_path, "classification")
    assert (run / "model.keras").is_file() and (run / "metrics.json").is_file() == (step == "export")

    def no_training(*args, **kwargs):
        raise AssertionError("a trained run was trained again")

    monkeypatch.setattr(training, "fit", no_training)
    classification.train(config)
    record = json.loads((run / "metrics.json").read_text())
    assert record["metrics"]["accuracy"] >= 0 and record["epochs"] == 1
    assert [path.name for path in (tmp_path / "saved_models" / "classification").iterdir()] == ["1"]
    assert (run / "plots" / "training_curves.png").is_file()
