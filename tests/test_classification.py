"""Image classification end to end: the CLI verbs, the export, resume, bad input, and MNIST."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from PIL import Image

import tasks.core.augment  # noqa: F401  (registers NoBatchNorm for load_model)
import tasks.core.training  # noqa: F401  (registers LearningRateCurve for load_model)
from tasks import classification
from tests import helpers
from tests.conftest import REPO
from tests.helpers import assert_one_line_error

TASK = "tasks.classification"
# Small and quick: the demo digits are 8x8, so a few epochs take seconds.
QUICK = ["--epochs", "4", "--batch-size", "32", "--verbose", "2"]


def run_cli(*args, cwd, timeout=900):
    return helpers.run_cli("classification", *args, cwd=cwd, timeout=timeout)


def run_in_process(capsys, workdir, *args):
    return helpers.run_in_process(classification, capsys, workdir, *args)


def only_run(workdir):
    (run,) = (pathlib.Path(workdir) / "runs" / "classification").iterdir()
    return run


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One CLI training run on the demo data, shared by the checks below."""
    workdir = tmp_path_factory.mktemp("demo")
    result = run_cli("train", *QUICK, cwd=workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result


# === Train, evaluate, export, predict ===


@pytest.mark.subprocess
def test_demo_train_beats_the_baseline_and_writes_the_run(demo_run):
    workdir, result = demo_run
    run = only_run(workdir)
    record = json.loads((run / "metrics.json").read_text())
    assert record["task"] == "classification" and record["data"] == "demo"
    assert record["metrics"]["accuracy"] >= 0.85
    assert record["metrics"]["accuracy"] > record["baseline"]["accuracy"] + 0.5
    assert record["epochs"] == 4 and record["examples_per_second"] > 0
    assert set(record["metrics"]["per_class_accuracy"]) == {str(digit) for digit in range(10)}
    for name in ["config.yaml", "history.csv", "model.keras", "info.json", "checkpoints/best.keras",
                 "plots/training_curves.png", "plots/confusion_matrix.png"]:
        assert (run / name).is_file(), name
    assert list((run / "logs").rglob("events.out.tfevents*"))
    assert not (run / "backup").exists()  # removed once training finished
    assert "baseline" in result.stdout and "Exported" in result.stdout


@pytest.mark.subprocess
def test_export_reloaded_in_a_fresh_process_matches_keras(demo_run, tmp_path):
    workdir, _ = demo_run
    version = workdir / "saved_models" / "classification" / "1"
    assert (version / "assets" / "labels.txt").read_text().split() == [str(d) for d in range(10)]
    images = np.random.default_rng(0).integers(0, 256, size=(6, 8, 8, 1), dtype=np.uint8)
    np.save(tmp_path / "images.npy", images)
    script = (
        "import sys, numpy as np, tensorflow as tf\n"
        "m = tf.saved_model.load(sys.argv[1])\n"
        "out = m.signatures['classify_images'](images=tf.constant(np.load(sys.argv[2])))\n"
        "np.save(sys.argv[3], out['probabilities'].numpy())\n"
    )
    subprocess.run([sys.executable, "-c", script, version, tmp_path / "images.npy", tmp_path / "p.npy"],
                   check=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    model = keras.saving.load_model(only_run(workdir) / "model.keras")
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(model(images.astype(np.float32))))
    np.testing.assert_allclose(np.load(tmp_path / "p.npy"), expected, atol=1e-5)


@pytest.mark.subprocess
def test_predict_prints_labels_and_draws(demo_run, tmp_path, capsys):
    workdir, _ = demo_run
    files = []
    for index, mode in enumerate(["L", "RGB", "RGBA"]):  # any mode, any size
        path = tmp_path / f"digit{index}.png"
        Image.new(mode, (20 + index, 16), color=128 if mode == "L" else (90, 90, 90, 255)[: len(mode)]).save(path)
        files.append(path)
    model_root = workdir / "saved_models" / "classification"
    result = run_cli("predict", "--model", model_root, "--output", tmp_path / "out", *files, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3 and all(line.split("\t")[1] in "0123456789" for line in lines)
    assert (tmp_path / "out" / "classification.png").is_file()
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    result = run_in_process(capsys, tmp_path, "predict", "--model", model_root, broken)
    assert_one_line_error(result, "broken.png", "cannot decode")


@pytest.mark.subprocess
def test_evaluate_and_export_find_the_run_from_the_same_flags(demo_run, capsys):
    workdir, _ = demo_run
    result = run_in_process(capsys, workdir, "evaluate", *QUICK)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "accuracy" in result.stdout and "baseline" in result.stdout
    for extra in ["tflite", "onnx"]:
        result = run_in_process(capsys, workdir, "export", *QUICK, "--format", extra)
        assert result.returncode == 0, result.stderr[-2000:]
        version = pathlib.Path(result.stdout.strip().splitlines()[-1].split()[-1])
        assert (workdir / version / "saved_model.pb").is_file()
        assert (workdir / version / f"model.{extra}").is_file()
    # The ONNX network gives the Keras model's logits.
    import onnxruntime

    model = keras.saving.load_model(only_run(workdir) / "model.keras")
    images = np.random.default_rng(1).uniform(0, 255, size=(3, 8, 8, 1)).astype(np.float32)
    session = onnxruntime.InferenceSession(str(workdir / version / "model.onnx"))
    (logits,) = session.run(None, {session.get_inputs()[0].name: images})
    np.testing.assert_allclose(logits, keras.ops.convert_to_numpy(model(images)), atol=1e-4)


@pytest.mark.subprocess
def test_rerunning_a_complete_run_does_not_retrain(demo_run, capsys):
    workdir, _ = demo_run
    result = run_in_process(capsys, workdir, "train", *QUICK)
    assert result.returncode == 0
    assert "already complete" in result.stdout


def test_every_regularizer_switch_trains(tmp_path, capsys):
    # All of them at once still has to learn. Training is not bit-reproducible (parallel augmentation):
    # 3 epochs at batch 32 gave 0.17-0.44 against the 0.10 baseline, too close; 8 epochs gave 0.39-0.54.
    switches = ["--flip", "--crop-padding", "1", "--randaugment", "--erasing", "0.3", "--noise", "0.02",
                "--mixup", "0.2", "--cutmix", "1.0", "--label-smoothing", "0.1", "--dropout-rate", "0.2",
                "--patience", "2", "--optimizer", "sgd", "--nesterov", "--learning-rate", "0.05",
                "--weight-decay", "5e-4", "--schedule", "onecycle", "--warmup-epochs", "0.5"]
    result = run_in_process(capsys, tmp_path, "train", "--epochs", "8", "--batch-size", "32", "--verbose", "2",
                            *switches)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((only_run(tmp_path) / "metrics.json").read_text())
    assert record["config"]["cutmix"] == 1.0 and record["config"]["nesterov"] is True
    assert record["metrics"]["accuracy"] > record["baseline"]["accuracy"] + 0.1


def test_no_batch_norm_trains_the_network_without_it(tmp_path, capsys):
    # A 20-layer net without batch norm under heavy regularization stays at chance for 3 epochs
    # (measured); with the default recipe it learns, which is what this switch must keep possible.
    result = run_in_process(capsys, tmp_path, "train", *QUICK, "--no-batch-norm")
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((only_run(tmp_path) / "metrics.json").read_text())
    assert record["config"]["batch_norm"] is False
    assert record["metrics"]["accuracy"] > record["baseline"]["accuracy"] + 0.3
    saved = keras.saving.load_model(only_run(tmp_path) / "model.keras")
    assert not [layer for layer in saved._flatten_layers() if isinstance(layer, keras.layers.BatchNormalization)]


@pytest.mark.subprocess
def test_mirrored_strategy_trains_through_the_same_path(tmp_path):
    result = run_cli("train", "--strategy", "mirrored", "--epochs", "2", "--verbose", "2", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((only_run(tmp_path) / "metrics.json").read_text())
    assert record["config"]["strategy"] == "mirrored"
    assert record["metrics"]["accuracy"] > record["baseline"]["accuracy"] + 0.2


@pytest.mark.subprocess
def test_help_lists_every_field_and_tasks_lists_the_task(tmp_path):
    from tasks.core import config as config_lib

    result = run_cli("train", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for field in config_lib.fields(classification.Config):
        assert "--" + field.name.replace("_", "-") in result.stdout
    assert "(default: 'resnet20')" in result.stdout
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    listing = subprocess.run([sys.executable, "-m", "tasks"], capture_output=True, text=True, env=env, check=True)
    assert "python -m tasks.classification train" in listing.stdout


# === Resume ===


@pytest.mark.subprocess
def test_killed_run_resumes_from_its_backup(tmp_path):
    args = ["train", "--epochs", "5", "--batch-size", "8", "--verbose", "2", "--model", "resnet20"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    child = subprocess.Popen([sys.executable, "-m", TASK, *args], cwd=tmp_path, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    history = None
    deadline = time.time() + 300
    while time.time() < deadline and child.poll() is None:
        runs = list((tmp_path / "runs" / "classification").glob("*/history.csv"))
        if runs and len(runs[0].read_text().strip().splitlines()) >= 3:  # header + 2 epochs
            history = runs[0]
            break
        time.sleep(0.2)
    assert history is not None and child.poll() is None, "training ended before it could be killed"
    child.send_signal(signal.SIGKILL)
    child.wait()
    done_before = len(history.read_text().strip().splitlines()) - 1
    assert done_before < 5
    assert (history.parent / "backup").is_dir()
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Resuming" in result.stdout
    rows = [line.split(",")[0] for line in history.read_text().strip().splitlines()[1:]]
    epochs = sorted({int(row) for row in rows if row != "epoch"})
    assert epochs == list(range(5))
    assert len(rows) < 5 + 2  # at most the killed epoch is repeated, not the whole run
    assert json.loads((history.parent / "metrics.json").read_text())["epochs"] == 5


# === Bad input: one clear line, non-zero exit, nothing written ===


@pytest.mark.parametrize(
    "args, words",
    [
        (["--epochs", "two"], ["--epochs", "integer"]),
        (["--optimizer", "adamz"], ["--optimizer", "adamw"]),
        (["--model", "resnet9000"], ["resnet9000", "never registered", "resnet20"]),
        (["--data", "tfds:no_such_dataset_xyz"], ["tfds:no_such_dataset_xyz"]),
        (["--data", "missing/folder"], ["missing/folder", "no such file"]),
        (["--colour", "red"], ["--colour"]),
    ],
)
def test_bad_flags(tmp_path, capsys, args, words):
    result = run_in_process(capsys, tmp_path, "train", *args)
    assert_one_line_error(result, *words)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "saved_models").exists()


def test_unknown_config_key(tmp_path, capsys):
    (tmp_path / "run.yaml").write_text("epochs: 2\nlerning_rate: 0.1\n")
    result = run_in_process(capsys, tmp_path, "train", "--config", tmp_path / "run.yaml")
    assert_one_line_error(result, "lerning_rate", "run.yaml")


def test_corrupt_image_folder_names_the_file(tmp_path, capsys):
    for name in ["cat", "dog"]:
        (tmp_path / "pets" / name).mkdir(parents=True)
        for index in range(3):
            Image.new("RGB", (8, 8), color=(index * 40, 0, 0)).save(tmp_path / "pets" / name / f"{index}.png")
    (tmp_path / "pets" / "dog" / "bad.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    result = run_in_process(capsys, tmp_path, "train", "--data", "pets", "--epochs", "1")
    assert_one_line_error(result, "bad.jpg")
    assert not (tmp_path / "runs").exists()
    result = run_in_process(capsys, tmp_path, "train", "--data", "pets", "--epochs", "1", "--skip-bad",
                            "--verbose", "2", "--test-fraction", "0.34", "--validation-fraction", "0")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Skipped 1 bad record" in result.stdout


def test_nan_loss_stops_with_a_clear_error_and_no_export(tmp_path, capsys):
    result = run_in_process(capsys, tmp_path, "train", "--epochs", "3", "--optimizer", "sgd",
                            "--learning-rate", "1e30")
    assert_one_line_error(result, "NaN", "--learning-rate", code=3)
    assert not (tmp_path / "saved_models").exists()


# === Real data ===


@pytest.mark.slow
def test_mnist_reaches_97_percent(shared_data, tmp_path):
    config = classification.Config(
        data=str(shared_data / "mnist"), model="resnet20", epochs=2, batch_size=64,
        learning_rate=2e-3, runs_dir=str(tmp_path / "runs"), export_dir=str(tmp_path / "saved_models"),
        verbose=2,
    )
    classification.train(config)
    (run,) = (tmp_path / "runs" / "classification").iterdir()
    record = json.loads((run / "metrics.json").read_text())
    info = json.loads((run / "info.json").read_text())
    assert info["num_test"] == 2000 and info["num_train"] + info["num_validation"] == 8000
    assert record["metrics"]["accuracy"] >= 0.97
    assert record["metrics"]["accuracy"] > record["baseline"]["accuracy"] + 0.8


def test_tfds_source_reads_a_prepared_dataset(tmp_path):
    import tensorflow_datasets as tfds

    tfds.testing.DummyMnist(data_dir=str(tmp_path)).download_and_prepare()
    found = classification.read_tfds("dummy_mnist", data_dir=str(tmp_path))
    images, labels = found.splits["train"]
    assert images.shape == (20, 28, 28, 1) and images.dtype == np.uint8
    assert labels.shape == (20,) and found.class_names == [str(digit) for digit in range(10)]
    assert "test" in found.splits
