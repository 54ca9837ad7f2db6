"""Tests for the series networks (`applications.series`): build, predict, one fit step, `.keras` round trip."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import applications
from applications import series as series_networks
from tests import helpers

WINDOW = 32
CASES = [
    ("conv_autoencoder", {"filters": 8, "latent_dim": 4}, WINDOW, "reconstruction"),
    ("lstm_autoencoder", {"units": 8}, WINDOW, "reconstruction"),
    ("conv_forecaster", {"filters": 8, "num_blocks": 3}, 1, "forecast"),
    ("conv_forecaster", {"filters": 8, "horizon": 4}, 4, "forecast"),
]


def windows(batch_size=4, seed=0):
    steps = np.arange(WINDOW + 4)
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 6, (batch_size, 1))
    return np.sin(steps[None] / 3.0 + phase).astype("float32")  # (B, W + 4)


@pytest.mark.parametrize("name, sizes, width, kind", CASES)
def test_build_predict_fit_and_round_trip(name, sizes, width, kind, tmp_path):
    keras.utils.set_random_seed(0)
    model = applications.get(name)(window_length=WINDOW, **sizes)
    assert model.name == name and series_networks.objective(model) == kind
    series = windows()
    x = series[:, :WINDOW]
    y = x if kind == "reconstruction" else series[:, WINDOW:WINDOW + width]
    outputs = np.asarray(model(x, training=False))
    assert outputs.shape == (4, width) and outputs.dtype == np.float32 and np.isfinite(outputs).all()
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(4)
    np.testing.assert_allclose(model.predict(dataset, verbose=0), outputs, atol=1e-5)
    # One eager step: tracing the train step tests Keras, not the builder (and costs seconds).
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", run_eagerly=True)
    before = [np.array(weight) for weight in model.trainable_weights]
    history = model.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.array_equal(before[0], np.array(model.trainable_weights[0]))  # the gradient reaches the first layer
    restored = helpers.keras_round_trip(model, x, tmp_path)
    assert series_networks.objective(restored) == kind


def test_forecaster_is_causal_inside_its_window_and_reads_the_last_step():
    model = series_networks.conv_forecaster(window_length=WINDOW, filters=8)
    x = windows()[:, :WINDOW]
    changed = x.copy()
    changed[:, -1] += 1.0  # the newest value must change the forecast
    assert np.abs(np.array(model(changed)) - np.array(model(x))).max() > 1e-5


def test_builders_check_their_arguments():
    with pytest.raises(ValueError, match="multiple of 4"):
        series_networks.conv_autoencoder(window_length=30)
    with pytest.raises(ValueError, match="not a series network"):
        series_networks.objective(keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)]))
