"""Image regularizers as config switches, shared by every image task.

Per-example maps run in the tf.data pipeline after the cache (so each epoch sees new draws), on
float32 pixels in [0, 255]; MixUp / CutMix run per batch on one-hot labels. Label smoothing is a
loss switch, dropout and batch norm are model switches; all live in the same config.
"""

import dataclasses

import keras
import tensorflow as tf

from tasks.core.config import option


@dataclasses.dataclass
class AugmentConfig:
    """Augmentation fields, mixed into a task's flat Config."""

    flip: bool = option(False, "Random horizontal flips.")
    crop_padding: int = option(0, "Random crops after padding by this many pixels (0: off).", minimum=0)
    randaugment: bool = option(False, "RandAugment (2 ops, magnitude 0.5).")
    erasing: float = option(0.0, "Probability of Cutout / random erasing of a half-size square.", minimum=0.0)
    noise: float = option(0.0, "Std of Gaussian input noise, as a share of the pixel range.", minimum=0.0)
    mixup: float = option(0.0, "MixUp Beta(alpha, alpha) parameter (0: off).", minimum=0.0)
    cutmix: float = option(0.0, "CutMix Beta(alpha, alpha) parameter (0: off).", minimum=0.0)
    label_smoothing: float = option(0.0, "Label smoothing of the cross-entropy targets.", minimum=0.0)
    dropout_rate: float = option(0.0, "Dropout before the classifier.", minimum=0.0)
    batch_norm: bool = option(True, "Keep the network's batch norm (--no-batch-norm removes it).")


def example_map(config, seed=0):
    """A per-example `(image, label) -> (image, label)` map, or None when nothing is switched on."""
    randaugment = (
        keras.layers.RandAugment(value_range=(0, 255), num_ops=2, factor=0.5, seed=seed)
        if config.randaugment
        else None
    )
    if not (config.flip or config.crop_padding or randaugment or config.erasing or config.noise):
        return None

    def augment(image, label):
        image = tf.cast(image, tf.float32)
        if config.flip:
            image = tf.image.random_flip_left_right(image)
        if config.crop_padding:
            image = random_crop(image, config.crop_padding)
        if randaugment is not None:
            image = randaugment(image)
        if config.erasing:
            image = random_erasing(image, config.erasing)
        if config.noise:
            image = image + tf.random.normal(tf.shape(image), stddev=config.noise * 255.0)
            image = tf.clip_by_value(image, 0.0, 255.0)
        return image, label

    return augment


def batch_map(config, seed=0):
    """A per-batch map for MixUp / CutMix on one-hot labels, or None when both are off."""
    mixers = []
    if config.mixup:
        mixers.append(keras.layers.MixUp(alpha=config.mixup, seed=seed))
    if config.cutmix:
        mixers.append(keras.layers.CutMix(factor=config.cutmix, seed=seed))
    if not mixers:
        return None

    def mix(images, labels):
        # With both on, each batch gets one of them (as in timm's mixup_switch_prob=0.5).
        batch = {"images": tf.cast(images, tf.float32), "labels": tf.cast(labels, tf.float32)}
        if len(mixers) == 1:
            out = mixers[0](batch)
        else:
            out = tf.cond(
                tf.random.uniform([]) < 0.5, lambda: mixers[0](dict(batch)), lambda: mixers[1](dict(batch))
            )
        return out["images"], out["labels"]

    return mix


def random_crop(image, padding):
    """Pads by `padding` pixels (reflect) and crops back to the original size at a random offset."""
    shape = tf.shape(image)
    padded = tf.pad(image, [[padding, padding], [padding, padding], [0, 0]], mode="REFLECT")
    return tf.image.random_crop(padded, shape)


def random_erasing(image, probability):
    """With `probability`, fills a random half-size square (clipped at the border) with grey."""
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    size_y, size_x = height // 2, width // 2
    center_y = tf.random.uniform([], 0, height, dtype=tf.int32)
    center_x = tf.random.uniform([], 0, width, dtype=tf.int32)
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    inside = (tf.abs(rows - center_y) * 2 < size_y) & (tf.abs(cols - center_x) * 2 < size_x)
    apply = tf.random.uniform([]) < probability
    mask = tf.cast(inside & apply, image.dtype)[:, :, None]
    return image * (1.0 - mask) + 127.5 * mask


@keras.saving.register_keras_serializable(package="tasks")
class NoBatchNorm(keras.layers.Layer):
    """Identity in a batch-norm layer's place: takes (and ignores) its `training` and `mask`."""

    def call(self, inputs, training=None, mask=None):
        return inputs


def without_batch_norm(model):
    """A copy of a functional model with every BatchNormalization layer replaced by identity."""

    def replace(layer):
        if isinstance(layer, keras.layers.BatchNormalization):
            return NoBatchNorm(name=layer.name)
        return layer.__class__.from_config(layer.get_config())

    return keras.models.clone_model(model, clone_function=replace)
