"""ResNets (He et al., 2015 and 2016): CIFAR (6n+2) and ImageNet layouts, v1 and v2.

One generic `ResNet` builder covers the block type (basic: two 3x3 convs; bottleneck:
1x1 -> 3x3 -> 1x1 with 4x expansion), the version (v1: conv-BN-ReLU, ReLU after the add;
v2: pre-activation BN-ReLU-conv, identity path left clean) and the stage widths and depths.
Every stage but the first halves the grid in its first block; the shortcut is the identity,
or a strided 1x1 projection when the shape changes (option B of the paper).

Small images (< 64 px) get a 3x3/1 stem and no max-pool; larger ones the ImageNet stem
(7x7/2 conv, 3x3/2 max-pool). Bottleneck blocks put the stride on the 3x3 conv (ResNet v1.5,
as in torchvision), which changes no parameter count.

References:
- [Deep Residual Learning for Image Recognition](https://arxiv.org/abs/1512.03385)
- [Identity Mappings in Deep Residual Networks](https://arxiv.org/abs/1603.05027)
"""

import keras
from keras import layers

from applications import cnn_common
from applications.registry import register

BOTTLENECK_EXPANSION = 4


def shortcut_v1(x, filters, stride, name):
    """The identity, or a strided 1x1 conv + BN when the shape changes: (B, H/s, W/s, filters)."""
    if stride == 1 and x.shape[-1] == filters:
        return x
    return cnn_common.conv_bn(x, filters, 1, strides=stride, activation=None, name=f"{name}_0")


def shortcut_v2(x, preact, filters, stride, name):
    """The raw input x, or a strided 1x1 conv of the pre-activated input when the shape changes."""
    if stride == 1 and x.shape[-1] == filters:
        return x
    return layers.Conv2D(filters, 1, strides=stride, use_bias=False, name=f"{name}_0_conv")(preact)


def pre_activation(x, name):
    """BN -> ReLU, the start of every v2 block."""
    x = cnn_common.batch_norm(f"{name}_preact_bn")(x)
    return layers.Activation("relu", name=f"{name}_preact_relu")(x)


def basic_block_v1(x, filters, stride, name):
    """conv3x3-BN-ReLU -> conv3x3-BN, + shortcut, ReLU: (B, H, W, C) -> (B, H/s, W/s, filters)."""
    shortcut = shortcut_v1(x, filters, stride, name)
    x = cnn_common.conv_bn(x, filters, 3, strides=stride, name=f"{name}_1")
    x = cnn_common.conv_bn(x, filters, 3, activation=None, name=f"{name}_2")
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def basic_block_v2(x, filters, stride, name):
    """BN-ReLU -> conv3x3 -> BN-ReLU -> conv3x3, + shortcut (nothing after the add)."""
    preact = pre_activation(x, name)
    shortcut = shortcut_v2(x, preact, filters, stride, name)
    x = cnn_common.conv_bn(preact, filters, 3, strides=stride, name=f"{name}_1")
    x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_2_conv")(x)
    return layers.Add(name=f"{name}_out")([shortcut, x])


def bottleneck_block_v1(x, filters, stride, name):
    """1x1 -> 3x3 (strided) -> 1x1 (4x wide), BN after each, + shortcut, ReLU.

    (B, H, W, C) -> (B, H/s, W/s, 4 * filters).
    """
    out_filters = BOTTLENECK_EXPANSION * filters
    shortcut = shortcut_v1(x, out_filters, stride, name)
    x = cnn_common.conv_bn(x, filters, 1, name=f"{name}_1")
    x = cnn_common.conv_bn(x, filters, 3, strides=stride, name=f"{name}_2")
    x = cnn_common.conv_bn(x, out_filters, 1, activation=None, name=f"{name}_3")
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def bottleneck_block_v2(x, filters, stride, name):
    """BN-ReLU -> 1x1 -> BN-ReLU -> 3x3 (strided) -> BN-ReLU -> 1x1 (4x wide), + shortcut."""
    out_filters = BOTTLENECK_EXPANSION * filters
    preact = pre_activation(x, name)
    shortcut = shortcut_v2(x, preact, out_filters, stride, name)
    x = cnn_common.conv_bn(preact, filters, 1, name=f"{name}_1")
    x = cnn_common.conv_bn(x, filters, 3, strides=stride, name=f"{name}_2")
    x = layers.Conv2D(out_filters, 1, use_bias=False, name=f"{name}_3_conv")(x)
    return layers.Add(name=f"{name}_out")([shortcut, x])


BLOCKS = {
    ("basic", 1): basic_block_v1,
    ("basic", 2): basic_block_v2,
    ("bottleneck", 1): bottleneck_block_v1,
    ("bottleneck", 2): bottleneck_block_v2,
}


def resnet_stage(x, block, filters, depth, stride, name):
    """`depth` blocks; the first one applies `stride` (and projects the shortcut)."""
    x = block(x, filters, stride, name=f"{name}_block1")
    for index in range(2, depth + 1):
        x = block(x, filters, 1, name=f"{name}_block{index}")
    return x


def resnet_stem(x, filters, version, small):
    """(B, H, W, C) -> (B, H, W, filters) for small inputs, (B, H/4, W/4, filters) for large.

    Small: a 3x3/1 conv (CIFAR). Large: a 7x7/2 conv and a 3x3/2 max-pool (ImageNet).
    v1 follows the conv with BN-ReLU; v2 blocks start with BN-ReLU, so its stem is a bare conv.
    """
    kernel_size, strides = (3, 1) if small else (7, 2)
    if version == 1:
        x = cnn_common.conv_bn(x, filters, kernel_size, strides=strides, name="stem")
    else:
        x = layers.Conv2D(
            filters, kernel_size, strides=strides, padding="same", use_bias=False, name="stem_conv"
        )(x)
    if not small:
        x = layers.MaxPooling2D(3, strides=2, padding="same", name="stem_pool")(x)
    return x


def ResNet(
    block_type,
    version,
    stage_depths,
    stage_filters,
    input_shape,
    num_classes,
    classifier_activation,
    dropout_rate,
    name,
):
    """The generic ResNet builder.

    Args:
        block_type: str. "basic" (two 3x3 convs) or "bottleneck" (1x1-3x3-1x1, 4x wide out).
        version: int. 1 (post-activation) or 2 (pre-activation).
        stage_depths: tuple of int. The number of blocks per stage.
        stage_filters: tuple of int. The (inner) width per stage; the stem has the first one.
        input_shape, num_classes, classifier_activation, dropout_rate, name: as in the
            public builders.
    """
    if (block_type, version) not in BLOCKS:
        raise ValueError(
            "`block_type` must be 'basic' or 'bottleneck' and `version` 1 or 2. "
            f"Received: block_type={block_type}, version={version}"
        )
    if len(stage_depths) != len(stage_filters):
        raise ValueError(
            "`stage_depths` and `stage_filters` need one entry per stage. "
            f"Received: stage_depths={stage_depths}, stage_filters={stage_filters}"
        )
    input_shape = cnn_common.check_arguments(input_shape, num_classes, dropout_rate)
    block = BLOCKS[(block_type, version)]

    inputs = cnn_common.image_input(input_shape)
    x = resnet_stem(inputs, stage_filters[0], version, cnn_common.is_small_input(input_shape))

    for index, (depth, filters) in enumerate(zip(stage_depths, stage_filters), start=1):
        stride = 1 if index == 1 else 2
        x = resnet_stage(x, block, filters, depth, stride, name=f"stage{index}")

    if version == 2:
        # The last block's output has not been normalized yet.
        x = cnn_common.batch_norm("post_bn")(x)
        x = layers.Activation("relu", name="post_relu")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)  # (B, channels of the last stage)
    outputs = cnn_common.classifier_head(x, num_classes, classifier_activation, dropout_rate)
    return keras.Model(inputs, outputs, name=name)


# Stage widths: the CIFAR layout has 3 stages of 16/32/64 filters (6n + 2 layers in all), the
# ImageNet layout 4 stages of 64/128/256/512 (x4 at the output of a bottleneck block).
CIFAR_FILTERS = (16, 32, 64)
IMAGENET_FILTERS = (64, 128, 256, 512)


def cifar_depths(depth):
    """(n, n, n) blocks for a 6n + 2 layer CIFAR ResNet."""
    if (depth - 2) % 6:
        raise ValueError(f"A CIFAR ResNet has 6n + 2 layers. Received: depth={depth}")
    return ((depth - 2) // 6,) * 3


@register(kind="classifier")
def resnet20(
    input_shape=(32, 32, 3),
    num_classes=10,
    classifier_activation="softmax",
    dropout_rate=0.0,
    name="resnet20",
):
    """ResNet-20 for CIFAR: v1, 3 basic blocks per stage, 16/32/64 filters.

    0.27M parameters at 32x32x3 with 10 classes (0.27M in the paper).

    Args:
        input_shape: tuple. The (height, width, channels) of the input images.
            Defaults to (32, 32, 3).
        num_classes: int. The number of classes. Defaults to 10.
        classifier_activation: str or None. The activation of the last layer; None gives
            logits. Defaults to "softmax".
        dropout_rate: float. The dropout rate before the classifier. Defaults to 0.0.
        name: str. The name of the model. Defaults to "resnet20".

    Returns:
        A functional `keras.Model` mapping (B, H, W, C) images to (B, num_classes).
    """
    return ResNet(
        block_type="basic",
        version=1,
        stage_depths=cifar_depths(20),
        stage_filters=CIFAR_FILTERS,
        input_shape=input_shape,
        num_classes=num_classes,
        classifier_activation=classifier_activation,
        dropout_rate=dropout_rate,
        name=name,
    )


@register(kind="classifier")
def resnet56(
    input_shape=(32, 32, 3),
    num_classes=10,
    classifier_activation="softmax",
    dropout_rate=0.0,
    name="resnet56",
):
    """ResNet-56 for CIFAR: v1, 9 basic blocks per stage, 16/32/64 filters.

    0.86M parameters at 32x32x3 with 10 classes (0.85M in the paper).

    Args:
        input_shape: tuple. The (height, width, channels) of the input images.
            Defaults to (32, 32, 3).
        num_classes: int. The number of classes. Defaults to 10.
        classifier_activation: str or None. The activation of the last layer; None gives
            logits. Defaults to "softmax".
        dropout_rate: float. The dropout rate before the classifier. Defaults to 0.0.
        name: str. The name of the model. Defaults to "resnet56".

    Returns:
        A functional `keras.Model` mapping (B, H, W, C) images to (B, num_classes).
    """
    return ResNet(
        block_type="basic",
        version=1,
        stage_depths=cifar_depths(56),
        stage_filters=CIFAR_FILTERS,
        input_shape=input_shape,
        num_classes=num_classes,
        classifier_activation=classifier_activation,
        dropout_rate=dropout_rate,
        name=name,
    )


@register(kind="classifier")
def resnet20_v2(
    input_shape=(32, 32, 3),
    num_classes=10,
    classifier_activation="softmax",
    dropout_rate=0.0,
    name="resnet20_v2",
):
    """Pre-activation ResNet-20 for CIFAR: v2, 3 basic blocks per stage.

    0.27M parameters at 32x32x3 with 10 classes.

    Args:
        input_shape: tuple. The (height, width, channels) of the input images.
            Defaults to (32, 32, 3).
        num_classes: int. The number of classes. Defaults to 10.
        classifier_activation: str or None. The activation of the last layer; None gives
            logits. Defaults to "softmax".
        dropout_rate: float. The dropout rate before the classifier. Defaults to 0.0.
        name: str. The name of the model. Defaults to "resnet20_v2".

    Returns:
        A functional `keras.Model` mapping (B, H, W, C) images to (B, num_classes).
    """
    return ResNet(
        block_type="basic",
        version=2,
        stage_depths=cifar_depths(20),
        stage_filters=CIFAR_FILTERS,
        input_shape=input_shape,
        num_classes=num_classes,
        classifier_activation=classifier_activation,
        dropout_rate=dropout_rate,
        name=name,
    )


@register(kind="classifier")
def resnet56_v2(
    input_shape=(32, 32, 3),
    num_classes=10,
    classifier_activation="softmax",
    dropout_rate=0.0,
    name="resnet56_v2",
):
    """Pre-activation ResNet-56 for CIFAR: v2, 9 basic blocks per stage.

    0.86M parameters at 32x32x3 with 10 classes.

    Args:
        input_shape: tuple. The (height, width, channels) of the input images.
            Defaults to (32, 32, 3).
        num_classes: int. The number of classes. Defaults to 10.
        classifier_activation: str or None. The activation of the last layer; None gives
            logits. Defaults to "softmax".
        dropout_rate: float. The dropout rate before the classifier. Defaults to 0.0.
        name: str. The name of the model. Defaults to "resnet56_v2".

    Returns:
        A functional `keras.Model` mapping (B, H, W, C) images to (B, num_classes).
    """
    return ResNet(
        block_type="basic",
        version=2,
        stage_depths=cifar_depths(56),
        stage_filters=CIFAR_FILTERS,
        input_shape=input_shape,
        num_classes=num_classes,
        classifier_activation=classifier_activation,
        dropout_rate=dropout_rate,
        name=name,
    )


@register(kind="classifier")
def resnet18(
    input_shape=(32, 32, 3),
    num_classes=10,
    classifier_activation="softmax",
    dropout_rate=0.0,
    name="resnet18",
):
    """ResNet-18: v1, basic blocks, ImageNet layout (2, 2, 2, 2).

    11.2M parameters at 32x32x3 with 10 classes; 11.7M at 224x224x3 with 1000 classes.

    Args:
        input_shape: tuple. The (height, width, channels) of the input images.
            Defaults to (32, 32, 3).
        num_classes: int. The number of classes. Defaults to 10.
        classifier_activation: str or None. The activation of the last layer; None gives
            logits. Defaults to "softmax".
        dropout_rate: float. The dropout rate before the classifier. Defaults to 0.0.
        name: str. The name of the model. Defaults to "resnet18".

    Returns:
        A functional `keras.Model` mapping (B, H, W, C) images to (B, num_classes).
    """
    return ResNet(
        block_type="basic",
        version=1,
        stage_depths=(2, 2, 2, 2),
        stage_filters=IMAGENET_FILTERS,
        input_shape=input_shape,
        num_classes=num_classes,
        classifier_activation=classifier_activation,
        dropout_rate=dropout_rate,
        name=name,
    )


@register(kind="classifier")
def resnet34(
    input_shape=(32, 32, 3),
    num_classes=10,
    classifier_activation="softmax",
    dropout_rate=0.0,
    name="resnet34",
):
    """ResNet-34: v1, basic blocks, ImageNet layout (3, 4, 6, 3).

    21.3M parameters at 32x32x3 with 10 classes; 21.8M at 224x224x3 with 1000 classes.

    Args:
        input_shape: tuple. The (height, width, channels) of the input images.
            Defaults to (32, 32, 3).
        num_classes: int. The number of classes. Defaults to 10.
        classifier_activation: str or None. The activation of the last layer; None gives
            logits. Defaults to "softmax".
        dropout_rate: float. The dropout rate before the classifier. Defaults to 0.0.
        name: str. The name of the model. Defaults to "resnet34".

    Returns:
        A functional `keras.Model` mapping (B, H, W, C) images to (B, num_classes).
    """
    return ResNet(
        block_type="basic",
        version=1,
        stage_depths=(3, 4, 6, 3),
        stage_filters=IMAGENET_FILTERS,
        input_shape=input_shape,
        num_classes=num_classes,
        classifier_activation=classifier_activation,
        dropout_rate=dropout_rate,
        name=name,
    )


@register(kind="classifier")
def resnet50(
    input_shape=(32, 32, 3),
    num_classes=10,
    classifier_activation="softmax",
    dropout_rate=0.0,
    name="resnet50",
):
    """ResNet-50: v1, bottleneck blocks, ImageNet layout (3, 4, 6, 3).

    23.6M parameters at 32x32x3 with 10 classes; 25.6M at 224x224x3 with 1000 classes.

    Args:
        input_shape: tuple. The (height, width, channels) of the input images.
            Defaults to (32, 32, 3).
        num_classes: int. The number of classes. Defaults to 10.
        classifier_activation: str or None. The activation of the last layer; None gives
            logits. Defaults to "softmax".
        dropout_rate: float. The dropout rate before the classifier. Defaults to 0.0.
        name: str. The name of the model. Defaults to "resnet50".

    Returns:
        A functional `keras.Model` mapping (B, H, W, C) images to (B, num_classes).
    """
    return ResNet(
        block_type="bottleneck",
        version=1,
        stage_depths=(3, 4, 6, 3),
        stage_filters=IMAGENET_FILTERS,
        input_shape=input_shape,
        num_classes=num_classes,
        classifier_activation=classifier_activation,
        dropout_rate=dropout_rate,
        name=name,
    )


@register(kind="classifier")
def resnet50_v2(
    input_shape=(32, 32, 3),
    num_classes=10,
    classifier_activation="softmax",
    dropout_rate=0.0,
    name="resnet50_v2",
):
    """Pre-activation ResNet-50: v2, bottleneck blocks, layout (3, 4, 6, 3).

    23.6M parameters at 32x32x3 with 10 classes; 25.6M at 224x224x3 with 1000 classes.

    Args:
        input_shape: tuple. The (height, width, channels) of the input images.
            Defaults to (32, 32, 3).
        num_classes: int. The number of classes. Defaults to 10.
        classifier_activation: str or None. The activation of the last layer; None gives
            logits. Defaults to "softmax".
        dropout_rate: float. The dropout rate before the classifier. Defaults to 0.0.
        name: str. The name of the model. Defaults to "resnet50_v2".

    Returns:
        A functional `keras.Model` mapping (B, H, W, C) images to (B, num_classes).
    """
    return ResNet(
        block_type="bottleneck",
        version=2,
        stage_depths=(3, 4, 6, 3),
        stage_filters=IMAGENET_FILTERS,
        input_shape=input_shape,
        num_classes=num_classes,
        classifier_activation=classifier_activation,
        dropout_rate=dropout_rate,
        name=name,
    )
