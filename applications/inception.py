"""Inception v1 / GoogLeNet (Szegedy et al., 2014), with batch norm after every conv.

An Inception module runs four branches side by side and concatenates them on channels:
1x1; 1x1 -> 3x3; 1x1 -> 5x5; 3x3 max-pool -> 1x1. The 1x1 convs in front of the 3x3 and 5x5
are bottlenecks that keep the module cheap. Layout: stem, 3a 3b, pool, 4a..4e, pool, 5a 5b,
global average pool, dropout, classifier. The auxiliary classifiers are left out (they matter
little and complicate `fit`).

Small images (< 64 px) get a 3x3/1 stem of 192 filters and no stem pooling (the common CIFAR
GoogLeNet), so 32 px reaches 4a at 16 px and 5a at 8 px.

Reference:
- [Going Deeper with Convolutions](https://arxiv.org/abs/1409.4842)
"""

import keras
from keras import layers

from applications import cnn_common
from applications.registry import register

# Table 1 of the paper: (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj) per module.
MODULES = {
    "3a": (64, 96, 128, 16, 32, 32),  # -> 256 channels
    "3b": (128, 128, 192, 32, 96, 64),  # -> 480
    "4a": (192, 96, 208, 16, 48, 64),  # -> 512
    "4b": (160, 112, 224, 24, 64, 64),  # -> 512
    "4c": (128, 128, 256, 24, 64, 64),  # -> 512
    "4d": (112, 144, 288, 32, 64, 64),  # -> 528
    "4e": (256, 160, 320, 32, 128, 128),  # -> 832
    "5a": (256, 160, 320, 32, 128, 128),  # -> 832
    "5b": (384, 192, 384, 48, 128, 128),  # -> 1024
}
# A max-pool 3x3/2 comes after these modules (between the stages 3, 4 and 5).
POOL_AFTER = ("3b", "4e")


def scale_filters(filters, width_multiplier):
    """Scales a filter count, keeping at least 8 (a 1x1 bottleneck narrower than that starves)."""
    return max(8, int(round(filters * width_multiplier)))


def inception_module(x, filters, name):
    """Four parallel branches, concatenated: (B, H, W, C) -> (B, H, W, sum of branch widths).

    `filters` is (1x1, 3x3 reduce, 3x3, 5x5 reduce, 5x5, pool proj), as in the paper's table.
    """
    f1x1, f3x3_reduce, f3x3, f5x5_reduce, f5x5, f_pool = filters
    branch1 = cnn_common.conv_bn(x, f1x1, 1, name=f"{name}_1x1")

    branch2 = cnn_common.conv_bn(x, f3x3_reduce, 1, name=f"{name}_3x3_reduce")
    branch2 = cnn_common.conv_bn(branch2, f3x3, 3, name=f"{name}_3x3")

    branch3 = cnn_common.conv_bn(x, f5x5_reduce, 1, name=f"{name}_5x5_reduce")
    branch3 = cnn_common.conv_bn(branch3, f5x5, 5, name=f"{name}_5x5")

    branch4 = layers.MaxPooling2D(3, strides=1, padding="same", name=f"{name}_pool")(x)
    branch4 = cnn_common.conv_bn(branch4, f_pool, 1, name=f"{name}_pool_proj")

    return layers.Concatenate(name=f"{name}_concat")([branch1, branch2, branch3, branch4])


def InceptionV1(
    input_shape,
    num_classes,
    classifier_activation,
    dropout_rate,
    name,
    width_multiplier=1.0,
):
    """The generic GoogLeNet builder; `width_multiplier` scales every conv width."""
    input_shape = cnn_common.check_arguments(input_shape, num_classes, dropout_rate)
    if width_multiplier <= 0:
        raise ValueError(
            f"`width_multiplier` must be positive. Received: width_multiplier={width_multiplier}"
        )

    def width(filters):
        return scale_filters(filters, width_multiplier)

    inputs = cnn_common.image_input(input_shape)
    if cnn_common.is_small_input(input_shape):
        x = cnn_common.conv_bn(inputs, width(192), 3, name="stem_conv")  # (B, H, W, 192)
    else:
        # 7x7/2 conv, pool, 1x1, 3x3, pool: (B, H, W, 3) -> (B, H/8, W/8, 192).
        x = cnn_common.conv_bn(inputs, width(64), 7, strides=2, name="stem_conv1")
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool1")(x)
        x = cnn_common.conv_bn(x, width(64), 1, name="stem_conv2")
        x = cnn_common.conv_bn(x, width(192), 3, name="stem_conv3")
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool2")(x)

    for module, filters in MODULES.items():
        x = inception_module(x, [width(f) for f in filters], name=f"inception{module}")
        if module in POOL_AFTER:
            # Halve the grid between stages; "same" keeps odd sizes >= 1 (7 -> 4).
            x = layers.MaxPooling2D(
                3, strides=2, padding="same", name=f"pool_after{module}"
            )(x)

    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)  # (B, 1024 * width_multiplier)
    outputs = cnn_common.classifier_head(x, num_classes, classifier_activation, dropout_rate)
    return keras.Model(inputs, outputs, name=name)


@register(kind="classifier")
def inception_v1(
    input_shape=(32, 32, 3),
    num_classes=10,
    classifier_activation="softmax",
    dropout_rate=0.0,
    name="inception_v1",
    width_multiplier=1.0,
):
    """GoogLeNet (Inception v1) with batch norm and without the auxiliary classifiers.

    5.9M parameters at 32x32x3 with 10 classes (width_multiplier=1); 7.0M at 224x224x3 with
    1000 classes. `width_multiplier=0.25` gives a 0.4M-parameter model for quick runs.

    Args:
        input_shape: tuple. The (height, width, channels) of the input images.
            Defaults to (32, 32, 3).
        num_classes: int. The number of classes. Defaults to 10.
        classifier_activation: str or None. The activation of the last layer; None gives
            logits. Defaults to "softmax".
        dropout_rate: float. The dropout rate before the classifier (0.4 in the paper).
            Defaults to 0.0.
        name: str. The name of the model. Defaults to "inception_v1".
        width_multiplier: float. Scales the width of every conv (at least 8 filters each).
            Defaults to 1.0.

    Returns:
        A functional `keras.Model` mapping (B, H, W, C) images to (B, num_classes).
    """
    return InceptionV1(
        input_shape,
        num_classes,
        classifier_activation,
        dropout_rate,
        name,
        width_multiplier=width_multiplier,
    )
