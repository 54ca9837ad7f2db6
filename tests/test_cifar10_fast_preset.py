"""Tests for the CIFAR-10 speed recipe: `--preset cifar10-fast` and the parts it is made of.

The airbench builder and its whitening init, presets in the spine's config, the `triangle`
schedule, lookahead, test-time augmentation (evaluate and export) and the time-to-accuracy
callback; one CI test builds the preset, trains one epoch (5 steps) on a slice of CIFAR-10 and exports.
"""

import json
import pathlib
import tarfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import applications
from applications import airbench
from tasks import classification
from tasks.core import config as config_lib
from tasks.core import training
from tasks.core.errors import UserError
from tests.helpers import assert_one_line_error
from tests.helpers import run_in_process

# === Presets ===


def test_preset_sets_defaults_and_explicit_values_override(tmp_path):
    config = config_lib.build(classification.Config, preset="cifar10-fast", epochs=3)
    assert config.model == "airbench" and config.batch_size == 512 and config.schedule == "triangle"
    assert config.tta == "flip_translate" and config.flip and config.crop_padding == 2
    assert config.epochs == 3  # the flag wins over the preset
    file = tmp_path / "run.yaml"
    file.write_text("preset: cifar10-fast\nbatch_size: 64\n")
    from_file = config_lib.build(classification.Config, file, learning_rate=0.1)
    assert (from_file.model, from_file.batch_size, from_file.learning_rate) == ("airbench", 64, 0.1)
    plain = config_lib.build(classification.Config)
    assert plain.model == "resnet20" and plain.tta == "none"  # no preset: the old defaults


def test_unknown_preset_lists_the_presets():
    with pytest.raises(UserError, match=r"--preset 'fastest' is not a preset\. Presets: cifar10-fast"):
        config_lib.build(classification.Config, preset="fastest")
    with pytest.raises(UserError, match="cifar10-fast"):
        config_lib.validate(classification.Config(preset="fastest"))


def test_cli_unknown_preset_and_bad_threshold_are_one_line_errors(tmp_path, capsys):
    result = run_in_process(classification, capsys, tmp_path, "train", "--preset", "nope")
    assert_one_line_error(result, "nope", "cifar10-fast")
    result = run_in_process(classification, capsys, tmp_path, "train", "--time-to-accuracy", "0.9,94",
                            "--epochs", "1")
    assert_one_line_error(result, "--time-to-accuracy", "0.9,94")
    assert not (tmp_path / "runs").exists()  # failed before anything was written


# === airbench and its whitening init ===


def test_patch_covariance_matches_numpy_and_its_kernel_whitens():
    rng = np.random.default_rng(0)
    images = rng.normal(size=(300, 12, 12, 3))
    images[..., 1] += 0.8 * images[..., 0]  # correlated channels
    images[:, 1:] += 0.5 * images[:, :-1]  # correlated neighbours
    covariance = airbench.patch_covariance(images)
    patches = np.lib.stride_tricks.sliding_window_view(images, (2, 2), axis=(1, 2))  # (N, 11, 11, C, 2, 2)
    reference = np.cov(np.moveaxis(patches, 3, -1).reshape(-1, 12).T)  # rows, columns, channels
    np.testing.assert_allclose(covariance, reference, atol=1e-10)

    model = applications.get("airbench")(input_shape=(12, 12, 3), patch_covariance=covariance)
    whiten = model.get_layer("whiten")
    assert not whiten.trainable
    responses = keras.Model(model.input, whiten.output).predict(images.astype("float32"), verbose=0)
    responses = responses.reshape(-1, 24)
    whitened = np.cov(responses[:, :12].T)
    np.testing.assert_allclose(whitened, np.eye(12), atol=0.05)  # decorrelated, unit variance
    np.testing.assert_allclose(responses[:, 12:], -responses[:, :12], atol=1e-5)  # and the negatives


def test_airbench_builds_trains_and_round_trips(tmp_path):
    model = applications.get("airbench")(input_shape=(32, 32, 3), num_classes=10)
    assert model.count_params() == 1_973_944  # shifts only, as the reference's BN; 24 whitening biases
    assert [model.get_layer(f"group{i}_conv2").output.shape[1] for i in (1, 2, 3)] == [15, 7, 3]
    small = applications.get("airbench")(input_shape=(8, 8, 1), num_classes=5, widths=(8, 16, 16),
                                         classifier_activation=None, dropout_rate=0.1)
    x = np.random.default_rng(0).normal(size=(4, 8, 8, 1)).astype("float32")
    small.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    small.fit(x, np.arange(4) % 5, epochs=1, verbose=0)
    path = tmp_path / "airbench.keras"
    small.save(path)
    reloaded = keras.saving.load_model(path)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), small.predict(x, verbose=0), atol=1e-5)
    with pytest.raises(ValueError, match="widths"):
        applications.get("airbench")(widths=(8, 16))


def test_partial_identity_passes_the_first_channels_through():
    """A 3x3 conv with the airbench init returns its inputs on the first min(in, out) filters."""
    x = np.random.default_rng(1).normal(size=(2, 6, 6, 4)).astype("float32")
    for filters in (8, 4, 2):
        conv = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False,
                                   kernel_initializer=airbench.PartialIdentity(seed=3))
        y = keras.ops.convert_to_numpy(conv(x))
        count = min(4, filters)
        np.testing.assert_allclose(y[..., :count], x[..., :count], atol=1e-6)
        if filters > 4:  # the rest keep a random init
            assert np.abs(keras.ops.convert_to_numpy(conv.kernel)[..., count:]).max() > 0.01
    config = keras.saving.serialize_keras_object(airbench.PartialIdentity(seed=3))
    assert keras.saving.deserialize_keras_object(config).seed == 3


def test_scaled_shift_steps_64x_as_far_as_a_plain_shift():
    """One SGD step moves the airbench shift `multiplier ** 2` times as far as a plain bias."""
    x = np.ones((4, 3), "float32")
    target = np.full((4, 3), 2.0, "float32")
    moved = {}
    for name, layer in (("scaled", airbench.ScaledShift()), ("plain", airbench.ScaledShift(multiplier=1.0))):
        model = keras.Sequential([keras.Input((3,)), layer])
        model.compile(keras.optimizers.SGD(1e-4), "mse")
        model.train_on_batch(x, target)
        moved[name] = model.predict(x, verbose=0)[0, 0] - 1.0
    assert moved["plain"] > 0
    np.testing.assert_allclose(moved["scaled"] / moved["plain"], airbench.SHIFT_LR_SCALE, rtol=1e-3)


def test_airbench_outputs_float32_under_mixed_bfloat16():
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = applications.get("airbench")(input_shape=(8, 8, 3), widths=(8, 8, 8))
        outputs = model(np.zeros((2, 8, 8, 3), "float32"))
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert outputs.dtype == "float32" and model.get_layer("group1_conv1").compute_dtype == "bfloat16"


# === Schedule, lookahead, TTA, time to accuracy ===


def test_triangle_schedule():
    curve = training.LearningRateCurve(1.0, total_steps=100, shape="triangle")
    values = [float(curve(step)) for step in (0, 23, 100)]
    np.testing.assert_allclose(values, [0.2, 1.0, 0.07], atol=1e-6)
    assert 0.2 < float(curve(10)) < 1.0 and 0.07 < float(curve(60)) < 1.0
    assert training.LearningRateCurve.from_config(curve.get_config()).warmup_steps == 23


LOOKAHEAD_STEPS, LOOKAHEAD_EVERY, LOOKAHEAD_DECAY, LOOKAHEAD_RATE = 20, 2, 0.9, 0.01


def lookahead_reference(kernel, bias):
    """Lookahead in numpy on the model of `assert_lookahead_averages`: y = sum(x) w + b, x = 1, target
    0, plain SGD on the squared error; returns (kernel, bias) after the run and without the averaging."""
    fast, plain = np.concatenate([kernel.ravel(), bias]).astype(np.float64), None
    slow, plain = fast.copy(), fast.copy()
    for step in range(1, LOOKAHEAD_STEPS + 1):
        fast = fast - LOOKAHEAD_RATE * 2.0 * (fast[:3].sum() + fast[3])  # d(pred^2)/dw = 2 pred x
        plain = plain - LOOKAHEAD_RATE * 2.0 * (plain[:3].sum() + plain[3])
        if step % LOOKAHEAD_EVERY == 0:
            decay = LOOKAHEAD_DECAY * min(step / LOOKAHEAD_STEPS, 1.0) ** 3
            slow = decay * slow + (1.0 - decay) * fast
            fast = slow.copy()
    return slow, plain


def assert_lookahead_averages():
    """Trains a Dense(1) with `training.Lookahead` and checks it ends on the numpy reference."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, bias_initializer="ones")])
    model.compile(keras.optimizers.SGD(LOOKAHEAD_RATE), "mse")
    kernel, bias = (variable.numpy() for variable in model.trainable_variables)
    lookahead = training.Lookahead(LOOKAHEAD_DECAY, total_steps=LOOKAHEAD_STEPS, every=LOOKAHEAD_EVERY)
    x, y = np.ones((LOOKAHEAD_STEPS, 3), "float32"), np.zeros((LOOKAHEAD_STEPS, 1), "float32")
    model.fit(x, y, batch_size=1, epochs=1, verbose=0, callbacks=[lookahead])
    expected, plain = lookahead_reference(kernel, bias)
    # The averaging moves the end point well beyond float round-off, so a run without it differs.
    assert np.abs(expected - plain).max() > 1e-3
    final = np.concatenate([variable.numpy().ravel() for variable in model.trainable_variables])
    np.testing.assert_allclose(final, expected, atol=1e-5)
    for slow, fast in zip(lookahead.slow, model.trainable_variables):
        np.testing.assert_array_equal(slow.numpy(), fast.numpy())


def test_lookahead_ends_on_the_slow_weights():
    assert_lookahead_averages()
    with pytest.raises(UserError, match="lookahead"):
        training.Lookahead(1.0, total_steps=10)


def _never_averages(self, decay):
    for slow, fast in zip(self.slow, self.fast):
        fast.assign(tf.cast(slow, fast.dtype))  # back to the slow weights, which never move


@pytest.mark.parametrize("broken", [lambda self, decay: None, _never_averages], ids=["no_op", "never_averages"])
def test_lookahead_guard_catches_a_lookahead_that_does_not_average(monkeypatch, broken):
    """The reference check fails when the update is a no-op (plain SGD) or when the model is pulled
    back to slow weights that are never averaged (training ends on the initial weights)."""
    monkeypatch.setattr(training.Lookahead, "_update", broken)
    with pytest.raises(AssertionError):
        assert_lookahead_averages()


def test_tta_views():
    inputs = keras.Input((4, 4, 1))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Flatten()(inputs)))
    images = tf.constant(np.random.default_rng(0).normal(size=(2, 4, 4, 1)), tf.float32)
    flipped = tf.reverse(images, axis=[2])
    # Flip TTA cannot tell an image from its mirror.
    np.testing.assert_allclose(classification.tta_logits(model, images, "flip"),
                               classification.tta_logits(model, flipped, "flip"), atol=1e-5)
    padded = np.pad(images.numpy(), [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
    def mirrored(x):
        return 0.5 * (model(x) + model(x[:, :, ::-1]))
    expected = 0.5 * mirrored(images.numpy()) + 0.25 * (mirrored(padded[:, :4, :4]) + mirrored(padded[:, 2:, 2:]))
    np.testing.assert_allclose(classification.tta_logits(model, images, "flip_translate"), expected, atol=1e-5)
    np.testing.assert_allclose(classification.tta_logits(model, images, "none"), model(images), atol=1e-6)


def test_time_to_accuracy_records_first_crossings_and_resumes(tmp_path):
    path = tmp_path / "time.json"
    accuracies = iter([0.5, 0.92, 0.95, 0.93])
    callback = training.TimeToAccuracy([0.94, 0.91], lambda model: next(accuracies), path)
    callback.on_train_begin()
    for epoch in range(2):
        callback.on_epoch_end(epoch)
    record = json.loads(path.read_text())
    assert list(record["reached"]) == ["0.91"] and record["reached"]["0.91"]["epoch"] == 2
    resumed = training.TimeToAccuracy([0.91, 0.94], lambda model: next(accuracies), path)
    resumed.on_train_begin()
    resumed.on_epoch_end(2)
    resumed.on_epoch_end(3)
    record = json.loads(path.read_text())
    assert record["reached"]["0.94"]["epoch"] == 3 and record["reached"]["0.91"]["epoch"] == 2
    seconds = [row["train_seconds"] for row in record["epochs"]]
    assert [row["epoch"] for row in record["epochs"]] == [1, 2, 3, 4] and seconds == sorted(seconds)
    with pytest.raises(UserError, match="time-to-accuracy"):
        classification.parse_thresholds("0.9,94")


# === The CI test: the preset on a slice of CIFAR-10 ===

SLICE_TRAIN, SLICE_TEST = 24, 6  # images per class


def cifar_slice(root, destination):
    """The first images of each class of both archives, copied as JPEG files (no re-encoding)."""
    wanted = {"train": SLICE_TRAIN, "test": SLICE_TEST}
    for split, per_class in wanted.items():
        counts = {}
        with tarfile.open(root / f"cifar10_{split}_jpg.tar.gz") as archive:
            for member in archive:
                parts = pathlib.PurePosixPath(member.name).parts
                if not member.isfile() or len(parts) != 3 or parts[0] != split:
                    continue
                if counts.get(parts[1], 0) >= per_class:
                    if len(counts) == 10 and min(counts.values()) >= per_class:
                        break
                    continue
                counts[parts[1]] = counts.get(parts[1], 0) + 1
                target = destination / parts[0] / parts[1] / parts[2]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(archive.extractfile(member).read())
    return destination


@pytest.mark.slow  # real CIFAR-10 steps and an export, 20 s on two cores
def test_preset_builds_trains_a_few_steps_and_exports(shared_data, tmp_path):
    tree = cifar_slice(shared_data / "cifar10_jpg", tmp_path / "cifar_slice")
    config = config_lib.build(
        classification.Config, preset="cifar10-fast", data=str(tree), epochs=1, batch_size=48, time_to_accuracy="0.91,0.94",
        runs_dir=str(tmp_path / "runs"), export_dir=str(tmp_path / "saved_models"), verbose=0,
    )
    training.setup(config)
    untrained = classification.build_model(config, classification.load_data(config).info)
    initial = [keras.ops.convert_to_numpy(variable) for variable in untrained.trainable_variables]
    model = classification.train(config)
    run = next((tmp_path / "runs" / "classification").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["config"]["model"] == "airbench" and metrics["epochs"] == 1
    assert np.isfinite(metrics["metrics"]["loss"])
    # Lookahead ends on its average of the trained weights, not on the initial ones.
    trained = [keras.ops.convert_to_numpy(variable) for variable in model.trainable_variables]
    moved = [np.abs(after - before).max() for after, before in zip(trained, initial)]
    assert max(moved) > 1e-3
    timings = json.loads((run / "time_to_accuracy.json").read_text())
    assert [row["epoch"] for row in timings["epochs"]] == [1]
    assert timings["thresholds"] == [0.91, 0.94]
    # The whitening layer kept its data-dependent init (frozen) through training.
    info = json.loads((run / "info.json").read_text())
    kernel = airbench.whitening_kernel(np.asarray(info["patch_covariance"]), 3)
    np.testing.assert_allclose(model.get_layer("airbench").get_layer("whiten").get_weights()[0], kernel, atol=1e-5)
    # The export averages over the same test-time views as evaluate.
    assert info["tta"] == "flip_translate"
    loaded = tf.saved_model.load(str(tmp_path / "saved_models" / "classification" / "1"))
    images = np.stack([np.asarray(tf.io.decode_jpeg(path.read_bytes())) for path in sorted(tree.glob("test/*/*.jpg"))[:8]])
    exported = loaded.signatures["classify_images"](images=tf.constant(images))["probabilities"].numpy()
    expected = tf.nn.softmax(classification.tta_logits(model, tf.cast(images, tf.float32), "flip_translate")).numpy()
    np.testing.assert_allclose(exported, expected, atol=1e-4)
    plain = tf.nn.softmax(classification.tta_logits(model, tf.cast(images, tf.float32), "none")).numpy()
    assert np.abs(plain - expected).max() > 1e-4  # TTA does change the answer
