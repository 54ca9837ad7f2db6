"""`--precision mixed_bfloat16`: a classification run computes in bfloat16 with float32 variables
and outputs, learns, and exports a SavedModel that answers like it; the tasks whose export cannot
take a bfloat16 network refuse the flag in one line before anything is written.

Learning bar and untrained control (the same network, seed and test split, not trained):

| test | bar | trained, seeds 0 / 1 / 2 | untrained, seeds 0 / 1 / 2 |
|---|---|---|---|
| demo digits, dcgan_classifier, 2 epochs, mixed_bfloat16 | accuracy >= 0.5 | 0.758 / 0.789 / 0.814 | 0.083 / 0.069 / 0.092 |
"""

import importlib
import json
from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf

import tasks
from tasks import classification
from tasks.core import config as config_lib
from tasks.core import export
from tasks.core import runner
from tasks.core import training
from tests.helpers import assert_one_line_error
from tests.helpers import run_in_process
from tests.test_export_formats import reload_in_this_process

BAR = 0.5
# Tasks whose Config offers float32 only: bfloat16 moved their exports' answers past the export
# check (detections across NMS, class-map pixels, anomaly scores by 0.04, graph predictions by 1e-3).
FLOAT32_ONLY = ["detection", "segmentation", "anomaly_detection", "graph_property"]


def precisions(task):
    module = importlib.import_module(f"tasks.{task}")
    return next(field for field in config_lib.fields(module.Config) if field.name == "precision").metadata["choices"]


def computes_in_bfloat16(model):
    """Every weighted layer, nested models' included, computes in bfloat16 on float32 variables, but
    the classifier (`predictions`), which computes in float32."""
    layers = [layer for layer in model._flatten_layers(include_self=False)
              if layer.weights and not isinstance(layer, keras.Model)]
    body = [layer for layer in layers if layer.name != "predictions"]
    head = [layer for layer in layers if layer.name == "predictions"]
    return (bool(body) and [layer.compute_dtype for layer in head] == ["float32"]
            and all(layer.compute_dtype == "bfloat16" and layer.variable_dtype == "float32" for layer in body))


@pytest.fixture
def float32_afterwards():
    """`training.setup` sets the global dtype policy: put float32 back for the tests that follow."""
    yield
    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(scope="module")
def bfloat16_run(tmp_path_factory):
    """A two-epoch mixed_bfloat16 run of the tiny classifier on the demo digits, exported."""
    workdir = tmp_path_factory.mktemp("bfloat16")
    config = classification.Config(model="dcgan_classifier", epochs=2, precision="mixed_bfloat16", verbose=0,
                                   runs_dir=str(workdir / "runs"), export_dir=str(workdir / "saved_models"))
    try:
        with mock.patch.object(export, "_fresh_process", reload_in_this_process):
            model = classification.train(config)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    (run,) = (workdir / "runs" / "classification").iterdir()
    return config, model, run, workdir / "saved_models" / "classification" / "1"


def test_the_network_computes_in_bfloat16_and_answers_in_float32(bfloat16_run):
    config, model, run, _ = bfloat16_run
    assert computes_in_bfloat16(model)
    assert computes_in_bfloat16(keras.saving.load_model(run / "model.keras"))  # the policy travels in the file
    images = np.random.default_rng(0).uniform(0, 255, (4, 8, 8, 1)).astype("float32")
    outputs = model(images, training=False)
    assert outputs.dtype == "float32" and np.isfinite(keras.ops.convert_to_numpy(outputs)).all()


def test_a_float32_network_is_not_taken_for_a_bfloat16_one():
    """The guard of the check above: the same builder under the float32 policy fails it."""
    model = classification.build_model(classification.Config(model="dcgan_classifier"),
                                       classification.load_data(classification.Config(verbose=0)).info)
    assert not computes_in_bfloat16(model)


def test_bfloat16_run_learns_beside_its_untrained_control(bfloat16_run, float32_afterwards):
    config, _, run, _ = bfloat16_run
    record = json.loads((run / "metrics.json").read_text())
    training.setup(config)  # the same seed and policy, not trained
    data = runner.load_data(classification, config)
    untrained = classification.evaluate(classification.build_model(config, data.info), data, config)["accuracy"]
    assert record["metrics"]["accuracy"] >= BAR > untrained


def test_the_export_answers_like_the_bfloat16_model(bfloat16_run):
    _, model, _, version = bfloat16_run
    record = json.loads((version / "assets" / "check.json").read_text())["saved_model"]
    assert record["max_abs_difference"] <= record["atol"]
    images = np.random.default_rng(1).integers(0, 256, (6, 8, 8, 1), dtype=np.uint8)
    served = tf.saved_model.load(str(version)).signatures["classify_images"](images=tf.constant(images))
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(model(images.astype("float32"), training=False)))
    # The graph and the eager call round bfloat16 alike to within its 8-bit mantissa.
    np.testing.assert_allclose(served["probabilities"].numpy(), expected, atol=1e-2)


def test_the_float32_only_tasks_are_the_ones_listed():
    assert [task for task in tasks.TASKS if "mixed_bfloat16" not in precisions(task)] == FLOAT32_ONLY


@pytest.mark.parametrize("task", FLOAT32_ONLY)
def test_a_float32_only_task_refuses_bfloat16_in_one_line(task, tmp_path, capsys):
    module = importlib.import_module(f"tasks.{task}")
    result = run_in_process(module, capsys, tmp_path, "train", "--precision", "mixed_bfloat16")
    assert_one_line_error(result, "--precision", "float32")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "saved_models").exists()
