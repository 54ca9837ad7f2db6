"""airbench: the small VGG-like CIFAR-10 speedrun network, with a whitening first layer.

    whiten (2x2 conv, frozen, initialized from training-patch statistics) + bias -> GELU
    3 x [3x3 conv -> 2x2 max-pool -> BN -> GELU -> 3x3 conv -> BN -> GELU]   widths 64, 256, 256
    global max-pool -> Dense (no bias) -> x 1/9

At 32x32x3 the spatial sizes are 31 -> 15 -> 7 -> 3 (pools round down, as in the reference).
The first layer is data-dependent: `patch_covariance(images)` measures the covariance of the
2x2 patches of (normalized) training images, and `whitening_kernel(covariance)` turns its
eigenvectors into 2 x 12 filters (each eigenvector, scaled by 1/sqrt(eigenvalue), and its
negative) that map patches to unit-variance, decorrelated responses. Pass the covariance to the
builder (`patch_covariance=...`) to get that initialization; the layer is then frozen.
Without it the layer keeps Keras' default init and trains like any other. The whitening
layer's bias is a separate layer (`whiten_bias`) so that it trains while the kernel is frozen
(the reference trains it for 3 epochs and then freezes it; here it trains throughout).

Every 3x3 conv starts as an identity on its first `min(in, out)` filters (`PartialIdentity`,
the reference's `dirac_` init): each block begins close to passing its input through, an
implicit residual that lets the deep, skip-free stack train at a high learning rate at once.

Batch norm keeps its scale fixed at 1 (only the shift trains) and uses fast moving statistics
(momentum 0.4, torch's 0.6), as in the reference. The reference also trains the shifts at 64x
the learning rate (its `bias_scaler`); a Keras optimizer has one learning rate, so the shift is
reparameterized instead: `ScaledShift` adds `8 * b`, and a gradient step on `b` moves the shift
8^2 = 64x as far as a step on the shift itself would. Weight decay stays relative to the
parameter, as in the reference (which divides the shifts' decay by the same 64).

Reference:
- [94% on CIFAR-10 in 3.29 Seconds on a Single GPU](https://arxiv.org/abs/2404.00498)
  (Keller Jordan, 2024; the `airbench94` recipe)
"""

import keras
import numpy as np
from keras import layers

from applications import cnn_common
from applications.registry import register

PATCH_SIZE = 2
WHITENING_EPSILON = 5e-4
BN_MOMENTUM = 0.4  # torch momentum 0.6: moving = 0.4 * moving + 0.6 * batch
BN_EPSILON = 1e-5
LOGIT_SCALE = 1.0 / 9.0
SHIFT_LR_SCALE = 64.0  # the reference's bias_scaler: the batch-norm shifts' learning-rate multiple


# === Data-dependent initialization (pure numpy: no file I/O) ===


def patch_covariance(images, patch_size=PATCH_SIZE):
    """Covariance of every `patch_size` x `patch_size` patch of `images` (stride 1, no padding).

    Args:
        images: array (N, H, W, C). Normalized pixels (the network's input).
        patch_size: int. The patch side. Defaults to 2.

    Returns:
        float64 array (k, k) with k = patch_size^2 * C, patches flattened as (row, column, channel)
        -- the order of a Conv2D kernel's first three axes.
    """
    images = np.asarray(images)
    if images.ndim != 4:
        raise ValueError(f"`images` must be (N, H, W, C). Received shape: {images.shape}")
    size = patch_size * patch_size * images.shape[-1]
    count, total, outer = 0, np.zeros(size), np.zeros((size, size))
    for start in range(0, len(images), 256):  # bounded memory: 256 images of patches at a time
        chunk = np.asarray(images[start : start + 256], np.float64)
        # (n, rows, cols, C, p, p) as a view -> (n * rows * cols, p * p * C) in kernel order.
        patches = np.lib.stride_tricks.sliding_window_view(chunk, (patch_size, patch_size), axis=(1, 2))
        patches = np.moveaxis(patches, 3, -1).reshape(-1, size)
        count += len(patches)
        total += patches.sum(axis=0)
        outer += patches.T @ patches
    mean = total / max(count, 1)
    return (outer - count * np.outer(mean, mean)) / max(count - 1, 1)


def whitening_kernel(covariance, channels, epsilon=WHITENING_EPSILON):
    """A Conv2D kernel (p, p, C, 2k) whose filters whiten patches of the given covariance.

    Filter i is eigenvector i / sqrt(eigenvalue i + epsilon); filters k..2k-1 are their negatives,
    so a following GELU sees both signs of each whitened direction.
    """
    covariance = np.asarray(covariance, np.float64)
    k = covariance.shape[0]
    patch_size = int(round(np.sqrt(k / channels)))
    if covariance.shape != (k, k) or patch_size * patch_size * channels != k:
        raise ValueError(
            f"`covariance` must be square with side patch_size^2 * channels ({channels}). "
            f"Received shape: {covariance.shape}"
        )
    values, vectors = np.linalg.eigh(covariance)  # ascending eigenvalues, columns are vectors
    filters = vectors / np.sqrt(np.maximum(values, 0.0) + epsilon)  # (k, k), one filter per column
    kernel = np.concatenate([filters, -filters], axis=1)  # (k, 2k)
    return kernel.reshape(patch_size, patch_size, channels, 2 * k).astype(np.float32)


# === Network ===


@keras.saving.register_keras_serializable(package="applications")
class PartialIdentity(keras.initializers.Initializer):
    """A conv kernel initializer: filter i < min(in, out) is the identity on input channel i
    (1 at the kernel's centre, 0 elsewhere); the other filters keep Glorot-uniform values.

    Args:
        seed: int or None. The seed of the Glorot-uniform part. Defaults to None.
    """

    def __init__(self, seed=None):
        self.seed = seed

    def __call__(self, shape, dtype=None):
        *window, inputs, outputs = shape
        kernel = keras.ops.convert_to_numpy(keras.initializers.GlorotUniform(self.seed)(shape, "float32"))
        count = min(inputs, outputs)
        kernel[..., :count] = 0.0
        centre = tuple(side // 2 for side in window)
        kernel[centre + (np.arange(count), np.arange(count))] = 1.0
        return keras.ops.cast(kernel, dtype or "float32")

    def get_config(self):
        return {"seed": self.seed}


@keras.saving.register_keras_serializable(package="applications")
class ScaledShift(layers.Layer):
    """`x + multiplier * b` with a per-channel `b` (zeros at first): a shift whose effective
    learning rate under SGD is `multiplier ** 2` times the optimizer's.

    Args:
        multiplier: float. The factor on the trained parameter. Defaults to 8.0 (64x).
    """

    def __init__(self, multiplier=SHIFT_LR_SCALE**0.5, **kwargs):
        super().__init__(**kwargs)
        self.multiplier = float(multiplier)

    def build(self, input_shape):
        self.shift = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="shift")

    def call(self, inputs):
        return inputs + keras.ops.cast(self.multiplier * self.shift, inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "multiplier": self.multiplier}


def batch_norm(x, name):
    """Batch norm without scale, then the fast-learning shift."""
    x = layers.BatchNormalization(
        momentum=BN_MOMENTUM, epsilon=BN_EPSILON, center=False, scale=False, name=name
    )(x)
    return ScaledShift(name=f"{name}_shift")(x)


def conv_group(x, filters, name):
    """3x3 conv -> 2x2 max-pool -> BN -> GELU -> 3x3 conv -> BN -> GELU."""
    x = layers.Conv2D(
        filters, 3, padding="same", use_bias=False, kernel_initializer=PartialIdentity(), name=f"{name}_conv1"
    )(x)
    if min(x.shape[1], x.shape[2]) >= 2:  # rounds down like the reference; 1x1 maps stay 1x1
        x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    x = batch_norm(x, f"{name}_bn1")
    x = layers.Activation("gelu", name=f"{name}_gelu1")(x)
    x = layers.Conv2D(
        filters, 3, padding="same", use_bias=False, kernel_initializer=PartialIdentity(), name=f"{name}_conv2"
    )(x)
    x = batch_norm(x, f"{name}_bn2")
    return layers.Activation("gelu", name=f"{name}_gelu2")(x)


@register(kind="classifier")
def airbench(
    input_shape=(32, 32, 3),
    num_classes=10,
    classifier_activation="softmax",
    dropout_rate=0.0,
    widths=(64, 256, 256),
    patch_covariance=None,
    name="airbench",
):
    """The airbench94 network: whitening 2x2 conv, three VGG-like conv groups, max-pool head.

    1.97M parameters at 32x32x3 with 10 classes (widths 64, 256, 256); 0.24 GFLOPs forward.

    Args:
        input_shape: tuple. The (height, width, channels) of the (normalized) input images.
            Defaults to (32, 32, 3).
        num_classes: int. The number of classes. Defaults to 10.
        classifier_activation: str or None. The activation after the scaled logits; None gives
            logits. Defaults to "softmax".
        dropout_rate: float. Dropout before the classifier. Defaults to 0.0.
        widths: tuple of 3 ints. Conv widths of the three groups. Defaults to (64, 256, 256).
        patch_covariance: array or None. The (4C, 4C) covariance of the training images' 2x2
            patches (`patch_covariance(images)`); given, the first layer is initialized to whiten
            them and frozen. Defaults to None (Keras' default init, trainable).
        name: str. The name of the model. Defaults to "airbench".

    Returns:
        A functional `keras.Model` mapping (B, H, W, C) images to (B, num_classes) in float32.
    """
    input_shape = cnn_common.check_arguments(input_shape, num_classes, dropout_rate)
    widths = tuple(int(width) for width in widths)
    if len(widths) != 3 or min(widths) < 1:
        raise ValueError(f"`widths` must be 3 positive integers. Received: widths={widths}")
    if min(input_shape[:2]) < PATCH_SIZE:
        raise ValueError(f"`input_shape` must be at least {PATCH_SIZE} pixels on a side. Received: {input_shape}")
    channels = input_shape[-1]
    inputs = cnn_common.image_input(input_shape)
    whiten = layers.Conv2D(2 * PATCH_SIZE * PATCH_SIZE * channels, PATCH_SIZE, use_bias=False, name="whiten")
    x = whiten(inputs)  # (B, H-1, W-1, 8C)
    if patch_covariance is not None:
        whiten.set_weights([whitening_kernel(patch_covariance, channels)])
        whiten.trainable = False
    x = ScaledShift(multiplier=1.0, name="whiten_bias")(x)
    x = layers.Activation("gelu", name="whiten_gelu")(x)
    for index, width in enumerate(widths, start=1):
        x = conv_group(x, width, name=f"group{index}")
    x = layers.GlobalMaxPooling2D(name="max_pool")(x)  # (B, widths[-1])
    if dropout_rate > 0:
        x = layers.Dropout(dropout_rate, name="head_dropout")(x)
    x = layers.Dense(num_classes, use_bias=False, dtype="float32", name="predictions")(x)
    # A fixed temperature: the reference divides the logits by 9.
    x = layers.Rescaling(LOGIT_SCALE, dtype="float32", name="logit_scale")(x)
    if classifier_activation is not None:
        x = layers.Activation(classifier_activation, dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, x, name=name)
