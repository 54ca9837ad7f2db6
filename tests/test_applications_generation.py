"""Tests for the generative builders (`applications.dcgan`, `applications.vae`).

Each model is built small, generates, trains one step with `fit` (its custom `train_step`),
and round-trips through a `.keras` file; the DCGAN guidelines are checked layer by layer, the
VAE's loss against a direct numpy computation, and `dcgan_classifier` under the classifier
contract of the registry.
"""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

import applications
from applications import dcgan
from applications import vae
from tests import helpers

SHAPE = (8, 8, 1)
NUM_CLASSES = 3
SMALL = {"latent_dim": 4, "width": 8}


def pixels(batch_size=4, shape=SHAPE, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(batch_size, *shape)).astype("float32"), rng.integers(0, NUM_CLASSES, batch_size)


def adam():
    return keras.optimizers.Adam(1e-3, beta_1=0.5)


@pytest.mark.parametrize("height, width, expected", [
    (28, 28, (2, (7, 7))), (8, 8, (1, (4, 4))), (32, 32, (3, (4, 4))), (64, 48, (4, (4, 3))), (128, 128, (4, (8, 8))),
])
def test_upsampling_steps(height, width, expected):
    assert dcgan.num_upsamplings(height, width) == expected


def test_odd_sides_are_refused():
    with pytest.raises(ValueError, match="even"):
        dcgan.dcgan(input_shape=(27, 27, 1), **SMALL)


def test_generator_and_discriminator_follow_the_dcgan_guidelines():
    generator = dcgan.Generator((32, 32, 3), latent_dim=10, width=16, num_classes=0)
    kinds = [type(layer).__name__ for layer in generator.layers]
    assert kinds.count("Conv2DTranspose") == 3 and "MaxPooling2D" not in kinds and "UpSampling2D" not in kinds
    assert kinds.count("BatchNormalization") == 3 and kinds.count("ReLU") == 3  # not on the output
    assert generator.layers[-1].activation.__name__ == "tanh"
    assert generator.output_shape == (None, 32, 32, 3)
    discriminator = dcgan.Discriminator((32, 32, 3), width=16)
    convolutions = [layer for layer in discriminator.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [layer.strides for layer in convolutions] == [(2, 2)] * 3
    kinds = [type(layer).__name__ for layer in discriminator.layers]
    assert kinds.count("LeakyReLU") == 3 and kinds.count("BatchNormalization") == 2  # not on the input
    assert not any("Pool" in kind for kind in kinds)
    assert discriminator.output_shape == (None, 1)


@pytest.mark.parametrize("name, extra", [
    ("dcgan", {}),
    ("conditional_dcgan", {"num_classes": NUM_CLASSES}),
    ("conditional_dcgan", {"num_classes": NUM_CLASSES, "projection": False}),
])
def test_gan_generates_trains_and_round_trips(name, extra, tmp_path):
    keras.utils.set_random_seed(0)
    model = applications.get(name)(input_shape=SHAPE, **SMALL, **extra)
    conditional = bool(extra)
    latent = np.random.default_rng(1).normal(size=(3, 4)).astype("float32")
    inputs = [latent, np.array([0, 1, 2], "int32")] if conditional else latent
    images = keras.ops.convert_to_numpy(model(inputs))
    assert images.shape == (3, *SHAPE) and images.min() >= 0 and images.max() <= 255
    model.compile(optimizer=adam(), discriminator_optimizer=adam())
    generator_before = np.array(model.generator.trainable_weights[0])
    discriminator_before = np.array(model.discriminator.trainable_weights[0])
    x, y = pixels()
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    expected = {"loss", "d_loss", "g_loss", "real_score", "fake_score"}
    if conditional:
        expected |= {"d_class_accuracy", "g_class_accuracy"}
    assert set(history.history) == expected
    assert all(np.isfinite(values[-1]) for values in history.history.values())
    assert history.history["loss"][-1] != 0.0  # our tracker, not the unused built-in one
    # Both players took a step: gradients reach the first layer of each.
    assert not np.array_equal(generator_before, np.array(model.generator.trainable_weights[0]))
    assert not np.array_equal(discriminator_before, np.array(model.discriminator.trainable_weights[0]))
    restored = helpers.keras_round_trip(model, inputs, tmp_path, atol=1e-4)
    assert isinstance(restored, dcgan.GAN) and restored.num_classes == model.num_classes
    assert restored.discriminator_optimizer is not None
    restored.fit(x, y, batch_size=4, epochs=1, verbose=0)  # training goes on after a reload


def test_conditional_gan_needs_two_classes():
    with pytest.raises(ValueError, match="at least 2 classes"):
        dcgan.conditional_dcgan(input_shape=SHAPE, num_classes=1, **SMALL)


def test_vae_encodes_decodes_trains_and_round_trips(tmp_path):
    keras.utils.set_random_seed(0)
    model = vae.vae(input_shape=SHAPE, **SMALL)
    x, y = pixels()
    mean, log_variance = model.encode(x)
    assert mean.shape == (4, 4) and log_variance.shape == (4, 4)
    decoded = keras.ops.convert_to_numpy(model.decode(mean))
    assert decoded.shape == (4, *SHAPE) and decoded.min() >= 0 and decoded.max() <= 255
    model.compile(optimizer=adam())
    before = np.array(model.encoder.trainable_weights[0])
    history = model.fit(x, y, validation_data=(x, y), batch_size=4, epochs=2, verbose=0)
    assert {"loss", "reconstruction", "kl", "val_loss"} <= set(history.history)
    assert history.history["loss"][-1] == pytest.approx(
        history.history["reconstruction"][-1] + history.history["kl"][-1], rel=1e-5
    )
    assert not np.array_equal(before, np.array(model.encoder.trainable_weights[0]))
    path = tmp_path / "vae.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(restored(x)), keras.ops.convert_to_numpy(model(x)), atol=1e-4)


def test_vae_loss_is_the_negative_elbo():
    model = vae.vae(input_shape=SHAPE, **SMALL)
    x, _ = pixels(batch_size=2)
    # With the noise fixed, the loss is the Bernoulli cross-entropy of the decoded sample plus
    # the closed-form KL, each summed over the image.
    replay = keras.random.SeedGenerator(0)
    replay.state.assign(model.seed_generator.state)  # the noise the loss is about to draw
    loss, reconstruction, kl = (keras.ops.convert_to_numpy(value) for value in model.negative_elbo(x, training=False))
    noise = keras.ops.convert_to_numpy(keras.random.normal((2, 4), seed=replay))
    mean, log_variance = (keras.ops.convert_to_numpy(value) for value in model.encode(x))
    logits = keras.ops.convert_to_numpy(model.decoder(mean + np.exp(0.5 * log_variance) * noise))
    target = x / 255.0
    probability = 1.0 / (1.0 + np.exp(-logits.astype(np.float64)))
    expected_reconstruction = -(target * np.log(probability) + (1 - target) * np.log(1 - probability)).sum(axis=(1, 2, 3))
    expected_kl = 0.5 * (mean**2 + np.exp(log_variance) - 1.0 - log_variance).sum(axis=1)
    np.testing.assert_allclose(reconstruction, expected_reconstruction, rtol=1e-4)
    np.testing.assert_allclose(kl, expected_kl, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(loss, expected_reconstruction + expected_kl, rtol=1e-4)


def test_dcgan_classifier_meets_the_classifier_contract(tmp_path):
    parameters = inspect.signature(dcgan.dcgan_classifier).parameters
    assert list(parameters)[:5] == ["input_shape", "num_classes", "classifier_activation", "dropout_rate", "name"]
    keras.utils.set_random_seed(0)
    model = dcgan.dcgan_classifier(input_shape=(28, 28, 1), num_classes=5)
    x = np.random.default_rng(0).normal(size=(2, 28, 28, 1)).astype("float32")
    helpers.run_classifier_test(model, x, np.array([0, 3]))
    helpers.keras_round_trip(model, x, tmp_path)
    small = dcgan.dcgan_classifier(input_shape=(8, 8, 1), num_classes=10, classifier_activation=None)
    assert small(tf.zeros((1, 8, 8, 1))).shape == (1, 10)
