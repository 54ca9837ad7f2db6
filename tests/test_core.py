"""The spine: config parsing, sources, splits, finalize, schedules, runs, export."""

import dataclasses
import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf

from tasks.core import config as config_lib
from tasks.core import pipeline
from tasks.core import export
from tasks.core import training
from tasks.core.config import TrainConfig
from tasks.core.config import option
from tasks.core.errors import ExportCheckFailed
from tasks.core.errors import UserError
from tasks.core.runs import Run


@dataclasses.dataclass
class ToyConfig(TrainConfig):
    model: str = option("toy", "A model.")
    size: int = option(8, "A size.", minimum=1)


# === Config ===


def test_build_types_values_from_strings():
    config = config_lib.build(ToyConfig, epochs="3", learning_rate="0.5", nesterov="true", size=4)
    assert (config.epochs, config.learning_rate, config.nesterov, config.size) == (3, 0.5, True, 4)


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"epochs": "three"}, ["--epochs", "integer", "three"]),
        ({"optimizer": "adamz"}, ["--optimizer", "one of", "adamw", "adamz"]),
        ({"size": 0}, ["--size", ">= 1"]),
        ({"nesterov": "maybe"}, ["--nesterov", "true or false"]),
        ({"colour": "red"}, ["unknown", "colour"]),
    ],
)
def test_build_rejects_bad_values_in_one_line(overrides, words):
    with pytest.raises(UserError) as caught:
        config_lib.build(ToyConfig, **overrides)
    message = str(caught.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_yaml_file_then_flags(tmp_path):
    file = tmp_path / "run.yaml"
    file.write_text("epochs: 7\nbatch-size: 16\nlearning_rate: 1\n")
    config = config_lib.build(ToyConfig, file, epochs="2")
    assert (config.epochs, config.batch_size, config.learning_rate) == (2, 16, 1.0)


@pytest.mark.parametrize(
    "text, words",
    [
        ("epochs: 3\nwarp: 9\n", ["unknown key 'warp'", "epochs"]),
        ("epochs: [1, 2]\n", ["epochs", "integer"]),
        ("epochs: : :\n", ["not valid YAML"]),
        ("- 1\n- 2\n", ["mapping"]),
    ],
)
def test_yaml_file_errors_name_the_field(tmp_path, text, words):
    file = tmp_path / "bad.yaml"
    file.write_text(text)
    with pytest.raises(UserError) as caught:
        config_lib.build(ToyConfig, file)
    for word in words:
        assert word in str(caught.value)


def test_fingerprint_ignores_output_fields():
    base = ToyConfig()
    assert config_lib.fingerprint(base) == config_lib.fingerprint(
        dataclasses.replace(base, runs_dir="elsewhere", verbose=0, export_format="onnx")
    )
    assert config_lib.fingerprint(base) != config_lib.fingerprint(dataclasses.replace(base, epochs=11))


# === Sources and splits ===


def test_source_kinds(tmp_path):
    assert pipeline.source("demo") == ("demo", None)
    assert pipeline.source("tfds:glue/sst2") == ("tfds", "glue/sst2")
    assert pipeline.source(str(tmp_path)) == ("path", tmp_path)
    with pytest.raises(UserError, match="no such file or folder"):
        pipeline.source(str(tmp_path / "missing"))


def test_split_indices_is_stratified_disjoint_and_seeded():
    labels = np.repeat(np.arange(4), 25)
    keep, held = pipeline.split_indices(labels, 0.2, seed=1)
    assert len(held) == 20 and len(keep) == 80
    assert not set(keep) & set(held)
    assert np.bincount(labels[held]).tolist() == [5, 5, 5, 5]
    assert np.array_equal(held, pipeline.split_indices(labels, 0.2, seed=1)[1])


def test_finalize_caches_before_shuffle_and_reshuffles():
    dataset = pipeline.finalize(tf.data.Dataset.range(32), batch_size=32, shuffle=True, seed=3)
    first, second = [next(iter(dataset)).numpy().tolist() for _ in range(2)]
    assert sorted(first) == list(range(32))
    assert first != second  # a new order each epoch: the cache holds data, not an order


# === Schedules and optimizer ===


@pytest.mark.parametrize("shape", ["constant", "cosine", "onecycle", "step"])
def test_learning_rate_curve_shapes(shape):
    curve = training.LearningRateCurve(1.0, total_steps=100, warmup_steps=10, shape=shape)
    rates = np.array([float(curve(step)) for step in range(101)])
    assert rates[0] == pytest.approx(1 / 25)
    assert rates[10] == pytest.approx(1.0)
    assert np.all(rates[:11][1:] >= rates[:10])
    end = {"constant": 1.0, "cosine": 0.0, "onecycle": 1e-4, "step": 0.01}[shape]
    assert rates[100] == pytest.approx(end, abs=1e-6)
    restored = training.LearningRateCurve.from_config(curve.get_config())
    assert float(restored(55)) == pytest.approx(rates[55])


def test_optimizer_by_name_with_momentum_and_decay():
    config = ToyConfig(optimizer="sgd", momentum=0.8, nesterov=True, weight_decay=5e-4)
    optimizer = training.optimizer(config, steps_per_epoch=10)
    assert isinstance(optimizer, keras.optimizers.SGD)
    assert optimizer.nesterov and optimizer.momentum == pytest.approx(0.8)
    assert optimizer.weight_decay == pytest.approx(5e-4)


# === Runs ===


def test_run_name_is_derived_and_stable(tmp_path):
    config = ToyConfig(runs_dir=str(tmp_path))
    run = Run.for_config("toy", config)
    assert run.path.parent == tmp_path / "toy"
    assert run.path.name.startswith("toy-demo-")
    assert Run.for_config("toy", ToyConfig(runs_dir=str(tmp_path))).path == run.path
    run.start(config)
    assert config_lib.load_file(ToyConfig, run.config_file)["epochs"] == 10
    (run.path / "marker").write_text("x")
    run.start(config, fresh=True)
    assert not (run.path / "marker").exists()


def test_history_rows_dedupe_resumed_epochs(tmp_path):
    run = Run("toy", tmp_path)
    run.history_file.write_text("epoch,loss\n0,2.0\n1,1.5\nepoch,loss\n1,1.4\n2,1.0\n")
    assert [row["loss"] for row in training.history_rows(run)] == [2.0, 1.4, 1.0]


# === Export ===


def _tiny_model():
    inputs = keras.Input((3,), name="x")
    return keras.Model(inputs, keras.layers.Dense(2, name="dense")(inputs))


def _endpoints(model):
    def fn(x):
        return {"y": model(x), "label": tf.where(model(x)[:, 0] > 0, "pos", "neg")}

    return [export.Endpoint("serving_default", fn, [tf.TensorSpec([None, 3], tf.float32, name="x")],
                            [np.ones((2, 3), np.float32)])]


@pytest.mark.subprocess  # each export is reloaded in a fresh process
def test_export_writes_next_version_with_assets(tmp_path):
    model = _tiny_model()
    first = export.write("toy", model, _endpoints(model), {"labels.txt": "a\nb\n"}, export_dir=tmp_path)
    second = export.write("toy", model, _endpoints(model), {}, export_dir=tmp_path)
    assert (first.name, second.name) == ("1", "2")
    assert (first / "assets" / "labels.txt").read_text() == "a\nb\n"
    assert export.resolve(tmp_path / "toy") == second
    loaded = tf.saved_model.load(str(second))
    x = np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded.signatures["serving_default"](x=x)["y"], model(x), atol=1e-5)
    assert not [path for path in (tmp_path / "toy").iterdir() if path.name.startswith(".")]


def test_export_failing_its_check_leaves_nothing(tmp_path, monkeypatch):
    model = _tiny_model()

    def broken(path, endpoints, expected):
        raise RuntimeError("reload check failed")

    monkeypatch.setattr(export, "check", broken)
    with pytest.raises(RuntimeError):
        export.write("toy", model, _endpoints(model), {}, export_dir=tmp_path)
    assert list((tmp_path / "toy").iterdir()) == []


@pytest.mark.subprocess  # the fresh-process reload is what is tested
def test_export_check_catches_a_saved_model_that_answers_differently(tmp_path, monkeypatch):
    """The fresh-process reload comparison is live: a written variable that no longer matches the
    model (one kernel moved by 0.01 after the SavedModel is written, 0.03 on the example's
    outputs, against a tolerance of 1e-4) fails the export, and nothing is published."""
    model = _tiny_model()
    archive_class = type(keras.export.ExportArchive())  # the backend's subclass, made in __new__
    write_out = archive_class.write_out

    def write_then_perturb(self, *args, **kwargs):
        write_out(self, *args, **kwargs)
        kernel = model.get_layer("dense").kernel
        kernel.assign(kernel + 0.01)

    monkeypatch.setattr(archive_class, "write_out", write_then_perturb)
    with pytest.raises(ExportCheckFailed, match="serving_default/y differs"):
        export.write("toy", model, _endpoints(model), {}, export_dir=tmp_path)
    assert list((tmp_path / "toy").iterdir()) == []


def test_latest_without_exports_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no exported model"):
        export.resolve(tmp_path)


@dataclasses.dataclass
class SizedConfig(TrainConfig):
    model: str = option("fake", "A builder.")
    units: int = option(0, "0: the builder's default.", minimum=0)
    depth: int = option(3, "Layers.", minimum=0)


def fake_builder(width, units=8, dropout_rate=0.1):
    if units > 100:
        raise ValueError(f"units must be at most 100, received {units}")
    return {"width": width, "units": units, "dropout_rate": dropout_rate}


def test_flag_arguments_pass_what_the_builder_takes_and_refuse_a_set_flag_it_does_not():
    assert training.flag_arguments(SizedConfig(), fake_builder, ("units", "depth")) == {}  # 0 and defaults
    wanted = training.flag_arguments(SizedConfig(units=16), fake_builder, ("units", "depth"),
                                     passed={"dropout_rate": 0.3, "positions": "learned"})
    assert wanted == {"units": 16, "dropout_rate": 0.3}  # `positions`: not taken, dropped
    with pytest.raises(UserError, match=r"^--depth does not apply to --model fake\.$"):
        training.flag_arguments(SizedConfig(depth=5), fake_builder, ("units", "depth"))
    assert training.build_network(fake_builder, SizedConfig(), 4, **wanted)["units"] == 16
    with pytest.raises(UserError, match=r"^--model fake: units must be at most 100, received 101$"):
        training.build_network(fake_builder, SizedConfig(), 4, units=101)


def test_average_models_averages_single_input_members_without_a_structure_warning(tmp_path):
    members = []
    for seed in (1, 2):
        inputs = keras.Input((3,), name="x")
        dense = keras.layers.Dense(2, kernel_initializer=keras.initializers.GlorotUniform(seed))
        members.append(keras.Model(inputs, dense(inputs)))
    x = np.arange(6, dtype="float32").reshape(2, 3)
    expected = (members[0].predict(x, verbose=0) + members[1].predict(x, verbose=0)) / 2
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Keras warns when a list of one is passed for one input
        ensemble = training.average_models(members)
        np.testing.assert_allclose(ensemble.predict(x, verbose=0), expected, rtol=1e-5)
    ensemble.save(tmp_path / "ensemble.keras")
    reloaded = keras.saving.load_model(tmp_path / "ensemble.keras")
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), expected, rtol=1e-5)
