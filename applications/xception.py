"""Xception (Chollet, 2016) and mini-Xception (Arriaga et al., 2017): depthwise separable convs
with residual connections.

Xception = entry flow (a two-conv stem, then downsampling blocks: two separable convs and a
3x3/2 max-pool beside a strided 1x1 conv shortcut), middle flow (`num_middle_blocks` blocks
of three separable convs with an identity shortcut), exit flow (one more downsampling block,
then two wide separable convs), global average pool, classifier.

mini-Xception is the same recipe at a size for 28-64 px images: an 8-filter stem and four
downsampling blocks of 16, 32, 64 and 128 filters.

Small images (< 64 px) get a stride-1 stem with "same" padding; larger ones the ImageNet stem
(3x3/2 then 3x3, both "valid"). Either way the max-pools use "same" padding, so a 28 px image
goes 28 -> 14 -> 7 -> 4 -> 2 through four downsampling blocks.

References:
- [Xception: Deep Learning with Depthwise Separable Convolutions](
    https://arxiv.org/abs/1610.02357)
- [Real-time Convolutional Neural Networks for Emotion and Gender Classification](
    https://arxiv.org/abs/1710.07557)
"""

import keras
from keras import layers

from applications import cnn_common
from applications.registry import register


def separable_bn(x, filters, relu_first, name):
    """[ReLU] -> SeparableConv2D 3x3 -> BN: (B, H, W, C) -> (B, H, W, filters)."""
    if relu_first:
        x = layers.Activation("relu", name=f"{name}_relu")(x)
    x = layers.SeparableConv2D(
        filters, 3, padding="same", use_bias=False, name=f"{name}_sepconv"
    )(x)
    return cnn_common.batch_norm(f"{name}_bn")(x)


def downsampling_block(x, filters, relu_first, name):
    """Two separable convs + 3x3/2 max-pool, beside a strided 1x1 conv shortcut.

    (B, H, W, C) -> (B, ceil(H/2), ceil(W/2), filters[1]). The first block of the network skips
    the leading ReLU: the stem already ends with one.
    """
    shortcut = cnn_common.conv_bn(
        x, filters[1], 1, strides=2, activation=None, name=f"{name}_shortcut"
    )
    x = separable_bn(x, filters[0], relu_first, name=f"{name}_1")
    x = separable_bn(x, filters[1], True, name=f"{name}_2")
    x = layers.MaxPooling2D(3, strides=2, padding="same", name=f"{name}_pool")(x)
    return layers.Add(name=f"{name}_add")([shortcut, x])


def middle_block(x, name):
    """Three (ReLU -> separable conv -> BN), plus the identity: shape unchanged."""
    shortcut = x
    for index in range(1, 4):
        x = separable_bn(x, x.shape[-1], True, name=f"{name}_{index}")
    return layers.Add(name=f"{name}_add")([shortcut, x])


def Xception(
    stem_filters,
    entry_filters,
    num_middle_blocks,
    exit_filters,
    head_filters,
    input_shape,
    num_classes,
    classifier_activation,
    dropout_rate,
    name,
):
    """The generic Xception builder.

    Args:
        stem_filters: tuple of 2 int. The widths of the two stem convs.
        entry_filters: tuple of (int, int). The two separable widths of each entry block.
        num_middle_blocks: int. The number of middle-flow blocks (width of the last entry
            block).
        exit_filters: tuple of (int, int). The same, for the exit flow's downsampling blocks.
        head_filters: tuple of int. The widths of the separable convs (each + BN + ReLU)
            before the global average pool.
        input_shape, num_classes, classifier_activation, dropout_rate, name: as in the
            public builders.
    """
    if num_middle_blocks < 0:
        raise ValueError(
            "`num_middle_blocks` must be >= 0. "
            f"Received: num_middle_blocks={num_middle_blocks}"
        )
    input_shape = cnn_common.check_arguments(input_shape, num_classes, dropout_rate)
    inputs = cnn_common.image_input(input_shape)

    # === Entry flow ===
    if cnn_common.is_small_input(input_shape):
        x = cnn_common.conv_bn(inputs, stem_filters[0], 3, name="stem1")  # (B, H, W, s0)
        x = cnn_common.conv_bn(x, stem_filters[1], 3, name="stem2")  # (B, H, W, s1)
    else:
        x = cnn_common.conv_bn(
            inputs, stem_filters[0], 3, strides=2, padding="valid", name="stem1"
        )  # 299 px -> (B, 149, 149, s0)
        x = cnn_common.conv_bn(
            x, stem_filters[1], 3, padding="valid", name="stem2"
        )  # (B, 147, 147, s1)
    for index, filters in enumerate(entry_filters, start=1):
        x = downsampling_block(x, filters, relu_first=index > 1, name=f"entry{index}")

    # === Middle flow ===
    for index in range(1, num_middle_blocks + 1):
        x = middle_block(x, name=f"middle{index}")

    # === Exit flow ===
    for index, filters in enumerate(exit_filters, start=1):
        x = downsampling_block(x, filters, relu_first=True, name=f"exit{index}")
    for index, filters in enumerate(head_filters, start=1):
        x = separable_bn(x, filters, False, name=f"head{index}")
        x = layers.Activation("relu", name=f"head{index}_relu")(x)
    if not head_filters:
        # The last block ends on an add; activate it like the head would.
        x = layers.Activation("relu", name="post_relu")(x)

    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)  # (B, channels)
    outputs = cnn_common.classifier_head(x, num_classes, classifier_activation, dropout_rate)
    return keras.Model(inputs, outputs, name=name)


@register(kind="classifier")
def xception(
    input_shape=(32, 32, 3),
    num_classes=10,
    classifier_activation="softmax",
    dropout_rate=0.0,
    name="xception",
    num_middle_blocks=8,
):
    """Xception: entry, middle and exit flows of residual depthwise separable convs.

    20.9M parameters at 32x32x3 with 10 classes; 22.9M at 299x299x3 with 1000 classes.

    Args:
        input_shape: tuple. The (height, width, channels) of the input images.
            Defaults to (32, 32, 3).
        num_classes: int. The number of classes. Defaults to 10.
        classifier_activation: str or None. The activation of the last layer; None gives
            logits. Defaults to "softmax".
        dropout_rate: float. The dropout rate before the classifier. Defaults to 0.0.
        name: str. The name of the model. Defaults to "xception".
        num_middle_blocks: int. The number of 728-wide middle-flow blocks. Defaults to 8.

    Returns:
        A functional `keras.Model` mapping (B, H, W, C) images to (B, num_classes).
    """
    return Xception(
        stem_filters=(32, 64),
        entry_filters=((128, 128), (256, 256), (728, 728)),
        num_middle_blocks=num_middle_blocks,
        exit_filters=((728, 1024),),
        head_filters=(1536, 2048),
        input_shape=input_shape,
        num_classes=num_classes,
        classifier_activation=classifier_activation,
        dropout_rate=dropout_rate,
        name=name,
    )


@register(kind="classifier")
def mini_xception(
    input_shape=(32, 32, 3),
    num_classes=10,
    classifier_activation="softmax",
    dropout_rate=0.0,
    name="mini_xception",
):
    """mini-Xception: an 8-filter stem and 4 residual separable blocks (16, 32, 64, 128).

    52K parameters at 32x32x3 with 10 classes.

    Args:
        input_shape: tuple. The (height, width, channels) of the input images.
            Defaults to (32, 32, 3).
        num_classes: int. The number of classes. Defaults to 10.
        classifier_activation: str or None. The activation of the last layer; None gives
            logits. Defaults to "softmax".
        dropout_rate: float. The dropout rate before the classifier. Defaults to 0.0.
        name: str. The name of the model. Defaults to "mini_xception".

    Returns:
        A functional `keras.Model` mapping (B, H, W, C) images to (B, num_classes).
    """
    return Xception(
        stem_filters=(8, 8),
        entry_filters=((16, 16), (32, 32), (64, 64), (128, 128)),
        num_middle_blocks=0,
        exit_filters=(),
        head_filters=(),
        input_shape=input_shape,
        num_classes=num_classes,
        classifier_activation=classifier_activation,
        dropout_rate=dropout_rate,
        name=name,
    )
