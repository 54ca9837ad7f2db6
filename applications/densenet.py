"""DenseNets (Huang et al., 2016): every layer sees the concatenated maps of all before it.

A dense block adds `growth_rate` channels per layer (BN-ReLU-conv3x3, behind a BN-ReLU-conv1x1
bottleneck of 4 * growth_rate in DenseNet-B); a transition (BN-ReLU-conv1x1-avgpool 2x2)
between blocks halves the grid and, in DenseNet-C, multiplies the channels by `compression`.

CIFAR DenseNets have three blocks and a 3x3 stem conv; the ImageNet DenseNet-121 has four
blocks and a 7x7/2 conv + 3x3/2 max-pool stem. As everywhere in `applications`, the stem
follows the input size: small images (< 64 px) get the 3x3/1 stem, larger ones the ImageNet
one.

Reference:
- [Densely Connected Convolutional Networks](https://arxiv.org/abs/1608.06993)
"""

import keras
from keras import layers

from applications import cnn_common
from applications.registry import register

BOTTLENECK_WIDTH = 4  # the 1x1 bottleneck has 4 * growth_rate filters


def dense_layer(x, growth_rate, bottleneck, name):
    """BN-ReLU-[conv1x1-BN-ReLU]-conv3x3, concatenated: (B, H, W, C) -> (B, H, W, C + growth)."""
    y = cnn_common.batch_norm(f"{name}_0_bn")(x)
    y = layers.Activation("relu", name=f"{name}_0_relu")(y)
    if bottleneck:
        y = layers.Conv2D(
            BOTTLENECK_WIDTH * growth_rate, 1, use_bias=False, name=f"{name}_1_conv"
        )(y)
        y = cnn_common.batch_norm(f"{name}_1_bn")(y)
        y = layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = layers.Conv2D(growth_rate, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(y)
    return layers.Concatenate(name=f"{name}_concat")([x, y])


def dense_block(x, num_layers, growth_rate, bottleneck, name):
    """`num_layers` dense layers: (B, H, W, C) -> (B, H, W, C + num_layers * growth_rate)."""
    for index in range(1, num_layers + 1):
        x = dense_layer(x, growth_rate, bottleneck, name=f"{name}_layer{index}")
    return x


def transition(x, compression, name):
    """BN-ReLU-conv1x1-avgpool: (B, H, W, C) -> (B, ceil(H/2), ceil(W/2), C * compression)."""
    filters = int(x.shape[-1] * compression)
    x = cnn_common.batch_norm(f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    x = layers.Conv2D(filters, 1, use_bias=False, name=f"{name}_conv")(x)
    # "same" padding: a 7x7 grid pools to 4x4 rather than 3x3, and 1x1 never to 0x0.
    return layers.AveragePooling2D(2, strides=2, padding="same", name=f"{name}_pool")(x)


def DenseNet(
    block_sizes,
    growth_rate,
    bottleneck,
    compression,
    stem_filters,
    input_shape,
    num_classes,
    classifier_activation,
    dropout_rate,
    name,
):
    """The generic DenseNet builder.

    Args:
        block_sizes: tuple of int. The number of dense layers per block.
        growth_rate: int. The channels each dense layer adds.
        bottleneck: bool. Whether a 1x1 conv (4 * growth_rate) precedes each 3x3 (the "B").
        compression: float. The channel factor of each transition; < 1 is the "C".
        stem_filters: int. The width of the stem conv.
        input_shape, num_classes, classifier_activation, dropout_rate, name: as in the
            public builders.
    """
    if not 0.0 < compression <= 1.0:
        raise ValueError(f"`compression` must be in (0, 1]. Received: compression={compression}")
    input_shape = cnn_common.check_arguments(input_shape, num_classes, dropout_rate)

    inputs = cnn_common.image_input(input_shape)
    if cnn_common.is_small_input(input_shape):
        # A bare conv: the first dense layer starts with BN-ReLU.
        x = layers.Conv2D(
            stem_filters, 3, padding="same", use_bias=False, name="stem_conv"
        )(inputs)  # (B, H, W, stem_filters)
    else:
        x = cnn_common.conv_bn(inputs, stem_filters, 7, strides=2, name="stem")
        # (B, H/2, W/2, stem) -> (B, H/4, W/4, stem)
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)

    for index, num_layers in enumerate(block_sizes, start=1):
        x = dense_block(x, num_layers, growth_rate, bottleneck, name=f"block{index}")
        if index < len(block_sizes):
            x = transition(x, compression, name=f"transition{index}")

    x = cnn_common.batch_norm("post_bn")(x)
    x = layers.Activation("relu", name="post_relu")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)  # (B, channels after the last block)
    outputs = cnn_common.classifier_head(x, num_classes, classifier_activation, dropout_rate)
    return keras.Model(inputs, outputs, name=name)


@register(kind="classifier")
def densenet40(
    input_shape=(32, 32, 3),
    num_classes=10,
    classifier_activation="softmax",
    dropout_rate=0.0,
    name="densenet40",
):
    """DenseNet-40 for CIFAR: 3 blocks of 12 layers, growth rate 12, no bottleneck or compression.

    1.0M parameters at 32x32x3 with 10 classes (1.0M in the paper).

    Args:
        input_shape: tuple. The (height, width, channels) of the input images.
            Defaults to (32, 32, 3).
        num_classes: int. The number of classes. Defaults to 10.
        classifier_activation: str or None. The activation of the last layer; None gives
            logits. Defaults to "softmax".
        dropout_rate: float. The dropout rate before the classifier. Defaults to 0.0.
        name: str. The name of the model. Defaults to "densenet40".

    Returns:
        A functional `keras.Model` mapping (B, H, W, C) images to (B, num_classes).
    """
    return DenseNet(
        block_sizes=(12, 12, 12),  # (40 - 4) / 3 layers per block
        growth_rate=12,
        bottleneck=False,
        compression=1.0,
        stem_filters=16,
        input_shape=input_shape,
        num_classes=num_classes,
        classifier_activation=classifier_activation,
        dropout_rate=dropout_rate,
        name=name,
    )


@register(kind="classifier")
def densenet_bc100(
    input_shape=(32, 32, 3),
    num_classes=10,
    classifier_activation="softmax",
    dropout_rate=0.0,
    name="densenet_bc100",
):
    """DenseNet-BC-100 for CIFAR: 3 blocks of 16 bottleneck layers, growth 12, compression 0.5.

    0.8M parameters at 32x32x3 with 10 classes (0.8M in the paper).

    Args:
        input_shape: tuple. The (height, width, channels) of the input images.
            Defaults to (32, 32, 3).
        num_classes: int. The number of classes. Defaults to 10.
        classifier_activation: str or None. The activation of the last layer; None gives
            logits. Defaults to "softmax".
        dropout_rate: float. The dropout rate before the classifier. Defaults to 0.0.
        name: str. The name of the model. Defaults to "densenet_bc100".

    Returns:
        A functional `keras.Model` mapping (B, H, W, C) images to (B, num_classes).
    """
    return DenseNet(
        block_sizes=(16, 16, 16),  # (100 - 4) / 6 layers per block: each has two convs
        growth_rate=12,
        bottleneck=True,
        compression=0.5,
        stem_filters=24,  # 2 * growth_rate
        input_shape=input_shape,
        num_classes=num_classes,
        classifier_activation=classifier_activation,
        dropout_rate=dropout_rate,
        name=name,
    )


@register(kind="classifier")
def densenet121(
    input_shape=(32, 32, 3),
    num_classes=10,
    classifier_activation="softmax",
    dropout_rate=0.0,
    name="densenet121",
):
    """DenseNet-121 (BC, ImageNet layout): blocks of 6, 12, 24, 16 layers, growth rate 32.

    7.0M parameters at 32x32x3 with 10 classes; 8.0M at 224x224x3 with 1000 classes.

    Args:
        input_shape: tuple. The (height, width, channels) of the input images.
            Defaults to (32, 32, 3).
        num_classes: int. The number of classes. Defaults to 10.
        classifier_activation: str or None. The activation of the last layer; None gives
            logits. Defaults to "softmax".
        dropout_rate: float. The dropout rate before the classifier. Defaults to 0.0.
        name: str. The name of the model. Defaults to "densenet121".

    Returns:
        A functional `keras.Model` mapping (B, H, W, C) images to (B, num_classes).
    """
    return DenseNet(
        block_sizes=(6, 12, 24, 16),
        growth_rate=32,
        bottleneck=True,
        compression=0.5,
        stem_filters=64,  # 2 * growth_rate
        input_shape=input_shape,
        num_classes=num_classes,
        classifier_activation=classifier_activation,
        dropout_rate=dropout_rate,
        name=name,
    )
