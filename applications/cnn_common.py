"""Pieces shared by the image-classifier families: argument checks, stem choice, conv/BN, head.

Every classifier builder in `alexnet.py`, `vgg.py`, `inception.py`, `resnet.py`, `densenet.py`
and `xception.py` follows one contract:

- `input_shape` is `(height, width, channels)` with known height and width; images arrive as
  float32, already normalized by the caller (no `Rescaling` inside the network).
- Inputs smaller than `SMALL_INPUT_SIZE` pixels on a side get a CIFAR-style stem (3x3 conv,
  stride 1, no early max-pool); larger inputs get the family's ImageNet stem.
- The last layer is a float32 `Dense` named `predictions`, so outputs stay float32 under a
  `mixed_bfloat16` policy; `classifier_activation=None` gives logits.
"""

import keras
from keras import layers

# Below this size (pixels, on the shorter side) a stride-4 ImageNet stem would leave too
# little of the image for the rest of the network: 32 px -> 8 px before the first stage.
SMALL_INPUT_SIZE = 64

# torch-style batch norm: momentum 0.9 adapts the moving statistics within a few hundred
# steps, which matters for the short training runs of the demos and tests.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5


def check_arguments(input_shape, num_classes, dropout_rate):
    """Returns `input_shape` as a tuple of ints, or raises a ValueError on a bad argument."""
    try:
        shape = tuple(int(size) for size in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1:
        # Height and width must be known: the stem choice and the fixed-size heads need them.
        raise ValueError(
            "`input_shape` must be (height, width, channels) with positive integer sizes. "
            f"Received: input_shape={input_shape}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(
            f"`num_classes` must be a positive integer. Received: num_classes={num_classes}"
        )
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(
            f"`dropout_rate` must be in [0, 1). Received: dropout_rate={dropout_rate}"
        )
    return shape


def is_small_input(input_shape):
    """True when the image is small enough (< 64 px on a side) for a CIFAR-style stem."""
    return min(input_shape[0], input_shape[1]) < SMALL_INPUT_SIZE


def batch_norm(name):
    """A BatchNormalization layer with the package's momentum and epsilon."""
    return layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, name=name)


def conv_bn(x, filters, kernel_size, strides=1, padding="same", activation="relu", name=None):
    """Conv2D (no bias: BN has one) -> BatchNorm -> activation; layers `{name}_conv|_bn|_relu`."""
    x = layers.Conv2D(
        filters,
        kernel_size,
        strides=strides,
        padding=padding,
        use_bias=False,
        name=f"{name}_conv",
    )(x)
    x = batch_norm(f"{name}_bn")(x)
    if activation is not None:
        x = layers.Activation(activation, name=f"{name}_{activation}")(x)
    return x


def classifier_head(x, num_classes, classifier_activation, dropout_rate):
    """(B, features) -> optional dropout -> float32 Dense `predictions` (B, num_classes)."""
    if dropout_rate > 0:
        x = layers.Dropout(dropout_rate, name="head_dropout")(x)
    # float32 even under a mixed policy: softmax and the loss need the range.
    return layers.Dense(
        num_classes,
        activation=classifier_activation,
        dtype="float32",
        name="predictions",
    )(x)


def image_input(input_shape):
    """The model's input: a float32 image batch (B, H, W, C), named `images`."""
    return keras.Input(shape=tuple(input_shape), dtype="float32", name="images")
