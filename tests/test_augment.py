"""The shared image regularizers: each switch does what it says, and off means untouched."""

import dataclasses

import numpy as np
import pytest
import tensorflow as tf

from tasks.core import augment


@dataclasses.dataclass
class Switches(augment.AugmentConfig):
    pass


def image_and_label(size=16, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    image = tf.constant(rng.integers(0, 256, size=(size, size, channels)).astype(np.float32))
    return image, tf.one_hot(3, 10)


def test_everything_off_is_no_map():
    assert augment.example_map(Switches()) is None
    assert augment.batch_map(Switches()) is None


def test_flip_mirrors_or_keeps():
    image, label = image_and_label()
    outputs = {augment.example_map(Switches(flip=True))(image, label)[0].numpy().tobytes() for _ in range(20)}
    assert outputs == {image.numpy().tobytes(), image.numpy()[:, ::-1].tobytes()}


def test_crop_padding_shifts_within_the_padding():
    image, label = image_and_label()
    out, same_label = augment.example_map(Switches(crop_padding=2))(image, label)
    assert out.shape == image.shape and np.array_equal(same_label, label)
    padded = np.pad(image.numpy(), [(2, 2), (2, 2), (0, 0)], mode="reflect")
    offsets = [
        (dy, dx) for dy in range(5) for dx in range(5) if np.array_equal(padded[dy:dy + 16, dx:dx + 16], out)
    ]
    assert offsets


def test_erasing_fills_a_square_with_grey():
    image, label = image_and_label()
    out = augment.example_map(Switches(erasing=1.0))(image, label)[0].numpy()
    changed = np.any(out != image.numpy(), axis=-1)
    assert 0 < changed.sum() <= 8 * 8
    assert np.all(out[changed] == 127.5)


def test_noise_stays_in_the_pixel_range():
    image, label = image_and_label()
    out = augment.example_map(Switches(noise=0.1))(image, label)[0].numpy()
    assert out.min() >= 0 and out.max() <= 255 and not np.array_equal(out, image.numpy())


def test_randaugment_keeps_shape_and_range():
    image, label = image_and_label(size=32)
    out = augment.example_map(Switches(randaugment=True))(image, label)[0].numpy()
    assert out.shape == (32, 32, 3) and out.min() >= 0 and out.max() <= 255


@pytest.mark.parametrize("switches", [Switches(mixup=0.4), Switches(cutmix=1.0), Switches(mixup=0.4, cutmix=1.0)])
def test_mixing_keeps_labels_a_distribution(switches):
    rng = np.random.default_rng(0)
    images = tf.constant(rng.integers(0, 256, size=(8, 16, 16, 3)).astype(np.float32))
    labels = tf.one_hot(np.arange(8) % 4, 4)
    mixed_images, mixed_labels = augment.batch_map(switches)(images, labels)
    assert mixed_images.shape == images.shape and mixed_labels.shape == labels.shape
    np.testing.assert_allclose(mixed_labels.numpy().sum(axis=-1), 1.0, atol=1e-5)
    assert not np.array_equal(mixed_labels.numpy(), labels.numpy())  # some label was mixed


def test_maps_run_inside_tf_data():
    image, label = image_and_label(size=32)
    dataset = tf.data.Dataset.from_tensors((image, label)).repeat(4)
    switches = Switches(flip=True, crop_padding=4, randaugment=True, erasing=0.5, noise=0.02, mixup=0.2)
    dataset = dataset.map(augment.example_map(switches)).batch(4).map(augment.batch_map(switches))
    images, labels = next(iter(dataset))
    assert images.shape == (4, 32, 32, 3) and labels.shape == (4, 10)


def test_without_batch_norm_removes_every_batch_norm_layer():
    import keras

    import applications

    network = applications.get("resnet20")(input_shape=(8, 8, 1), num_classes=3)
    stripped = augment.without_batch_norm(network)
    kinds = {type(layer).__name__ for layer in stripped.layers}
    assert "BatchNormalization" not in kinds and "NoBatchNorm" in kinds
    assert any(isinstance(layer, keras.layers.BatchNormalization) for layer in network.layers)
    assert stripped.output_shape == network.output_shape
    assert stripped.predict(np.zeros((2, 8, 8, 1), np.float32), verbose=0).shape == (2, 3)
