"""KerasHub presets as backbones (`--backbone hub:<preset or directory>`): a tiny randomly initialised
preset saved with `save_to_preset` to a temporary folder is loaded back by path (the code path of a
named preset), trained through the task, evaluated, exported and reloaded; offline, a named preset
and a bad directory are one error line each."""

import contextlib
import io
import json
import pathlib
import shutil
import time
import types

import keras
import numpy as np
import pytest
import tensorflow as tf

from applications import backbones
from tasks import classification
from tasks.core import config as config_lib
from tasks.core import finetune
from tasks.core import training
from tests import helpers

# One epoch with the backbone frozen (the head alone), two with everything training. The backbone's
# weights are random, so it trains at the full rate. Measured: test accuracy 0.96-0.99, 6-11 s.
TRAIN = ["--epochs", 3, "--freeze-backbone-epochs", 1, "--backbone-learning-rate-factor", 1.0,
         "--learning-rate", 0.01, "--batch-size", 32, "--verbose", 0]


@pytest.fixture(scope="module")
def preset(tmp_path_factory):
    """A tiny ResNet backbone (two basic-block stacks, ~90k weights) and its image converter
    (resize to 32 px, pixels to [0, 1]), randomly initialised and saved as a KerasHub preset."""
    import keras_hub

    keras.utils.set_random_seed(0)
    path = tmp_path_factory.mktemp("hub") / "tiny_resnet"
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16],
        stackwise_num_blocks=[1, 1], stackwise_num_strides=[1, 2], block_type="basic_block",
        image_shape=(None, None, 3),
    )
    backbone.save_to_preset(path)
    keras_hub.layers.ResNetImageConverter(image_size=(32, 32), scale=1.0 / 255.0).save_to_preset(path)
    return path


@pytest.fixture(scope="module")
def hub_run(preset, tmp_path_factory):
    """`train --backbone hub:DIR` on the demo digits, in this process; (workdir, stdout)."""
    workdir = tmp_path_factory.mktemp("hub_run")
    result = run_quietly(workdir, "train", "--backbone", f"hub:{preset}", *TRAIN)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir, result.stdout


def run_quietly(workdir, *args):
    """`helpers.run_in_process` for a module fixture, which has no capsys: output kept in buffers."""
    stdout, stderr = io.StringIO(), io.StringIO()
    captured = types.SimpleNamespace(readouterr=lambda: types.SimpleNamespace(out=stdout.getvalue(),
                                                                              err=stderr.getvalue()))
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        return helpers.run_in_process(classification, captured, workdir, *args)


def only_run(workdir):
    (run,) = (pathlib.Path(workdir) / "runs" / "classification").iterdir()
    return run


# === Train, evaluate, export ===


@pytest.mark.slow  # trains, evaluates and exports a KerasHub network: ~27 s with the keras_hub import
def test_hub_backbone_trains_past_its_untrained_control(hub_run):
    workdir, _ = hub_run
    run = only_run(workdir)
    record = json.loads((run / "metrics.json").read_text())
    config = config_lib.build(classification.Config, run / "config.yaml", verbose=0)
    training.setup(config)
    data = classification.load_data(config)
    untrained = classification.evaluate(classification.build_model(config, data.info), data, config)["accuracy"]
    assert record["metrics"]["accuracy"] >= 0.6 > untrained


def test_hub_backbone_is_the_staged_one(preset):
    config = classification.Config(backbone=f"hub:{preset}")
    model = finetune.image_classifier(config, (8, 8, 1), 10)
    (callback,) = finetune.callbacks(model, config)
    assert callback.backbone is model.get_layer(backbones.BACKBONE)
    assert type(callback.backbone).__name__ == "ResNetBackbone"
    # The guard: --weights none is no fine-tuning (random weights), so no staging.
    assert finetune.callbacks(model, classification.Config(backbone=f"hub:{preset}", weights="none")) == []


def test_hub_preset_weights_load_into_the_backbone(preset):
    import keras_hub

    saved = keras_hub.models.Backbone.from_preset(str(preset)).get_weights()
    loaded = finetune.image_classifier(classification.Config(backbone=f"hub:{preset}"), (8, 8, 1), 10)
    for mine, theirs in zip(loaded.get_layer(backbones.BACKBONE).get_weights(), saved):
        np.testing.assert_array_equal(mine, theirs)
    # The control: --weights none builds the preset's architecture with other (random) weights.
    scratch = finetune.image_classifier(classification.Config(backbone=f"hub:{preset}", weights="none"), (8, 8, 1), 10)
    assert not np.allclose(scratch.get_layer(backbones.BACKBONE).get_weights()[0], saved[0])


def test_preset_without_converter_scales_pixels_to_unit_range(preset, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(preset, bare, ignore=shutil.ignore_patterns("image_converter.json"))
    model = finetune.image_classifier(classification.Config(backbone=f"hub:{bare}"), (8, 8, 1), 10)
    assert model.get_layer("preprocess_rescale").scale == pytest.approx(1 / 255)
    # The control: the full preset brings its converter in place of that layer.
    full = finetune.image_classifier(classification.Config(backbone=f"hub:{preset}"), (8, 8, 1), 10)
    assert "preprocess_rescale" not in [layer.name for layer in full.layers]


@pytest.mark.slow  # trains, evaluates and exports a KerasHub network: ~27 s with the keras_hub import
def test_evaluate_verb_reloads_the_hub_run(hub_run):
    workdir, _ = hub_run
    run = only_run(workdir)
    record = json.loads((run / "metrics.json").read_text())
    config = config_lib.build(classification.Config, run / "config.yaml")
    result = run_quietly(workdir, "evaluate", "--backbone", config.backbone, *TRAIN)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((run / "metrics.json").read_text())["metrics"]["accuracy"] == pytest.approx(
        record["metrics"]["accuracy"])


@pytest.mark.slow  # trains, evaluates and exports a KerasHub network: ~27 s with the keras_hub import
def test_hub_export_was_checked_in_a_fresh_process(hub_run):
    workdir, _ = hub_run
    check = json.loads((workdir / "saved_models" / "classification" / "1" / "assets" / "check.json").read_text())
    assert "fresh process" in json.dumps(check)


@pytest.mark.subprocess
def test_predict_in_a_fresh_process_matches_keras(hub_run, tmp_path):
    """`predict` runs the SavedModel in a new interpreter on PNG files; its labels and scores are
    the Keras model's."""
    workdir, _ = hub_run
    images = np.random.default_rng(0).integers(0, 256, size=(4, 8, 8, 1), dtype=np.uint8)
    files = []
    for index, image in enumerate(images):
        files.append(tmp_path / f"image{index}.png")
        files[-1].write_bytes(tf.io.encode_png(image).numpy())
    result = helpers.run_cli("classification", "predict", "--model", workdir / "saved_models" / "classification",
                             "--output", tmp_path / "out", *files, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    printed = [line.split("\t") for line in result.stdout.splitlines() if line.startswith(str(tmp_path))]
    # training=False as the export calls it: with training unset, the classifier runs the nested
    # KerasHub backbone's batch norm on the batch's statistics.
    model = keras.saving.load_model(only_run(workdir) / "model.keras")
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(model(images.astype(np.float32), training=False)))
    assert [label for _, label, _ in printed] == [str(index) for index in probabilities.argmax(axis=-1)]
    np.testing.assert_allclose([float(score) for _, _, score in printed], probabilities.max(axis=-1), atol=1e-4)


# === Errors ===


def test_named_preset_offline_is_one_line_in_seconds(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(finetune.HUB_HOSTS, "kaggle", ("presets.invalid", 443))  # never resolves
    started = time.perf_counter()
    result = helpers.run_in_process(classification, capsys, tmp_path, "train", "--backbone",
                                    "hub:resnet_18_imagenet", "--epochs", 1)
    seconds = time.perf_counter() - started
    helpers.assert_one_line_error(result, "--backbone hub:resnet_18_imagenet", "local preset directory")
    assert seconds < 10  # the demo digits and one failed probe; never a retrying download
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("make, words", [
    (lambda root: root / "missing", "no such preset directory"),
    (lambda root: (root / "empty").mkdir() or root / "empty", "holds no config.json"),
])
def test_bad_hub_directory_is_one_line(make, words, tmp_path, capsys):
    path = make(tmp_path)
    result = helpers.run_in_process(classification, capsys, tmp_path, "train", "--backbone", f"hub:{path}",
                                    "--epochs", 1)
    helpers.assert_one_line_error(result, f"--backbone hub:{path}", words)
    assert not (tmp_path / "runs").exists()


def test_unknown_backbone_is_one_line(tmp_path, capsys):
    result = helpers.run_in_process(classification, capsys, tmp_path, "train", "--backbone", "mobilenet_v9",
                                    "--epochs", 1)
    helpers.assert_one_line_error(result, "--backbone mobilenet_v9", "hub:")
