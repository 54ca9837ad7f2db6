"""VGG (Simonyan & Zisserman, 2014) with batch norm: stacks of 3x3 convs between 2x2 max-pools.

A config is a list of conv widths per stage; every stage ends in a 2x2/2 max-pool, so five
stages take 32 px to 1 px and 224 px to 7 px. Small images (< 64 px) get the CIFAR head:
global average pool -> classifier (as in the common CIFAR VGGs); larger ones the ImageNet head:
a 7x7 grid -> two 4096-wide dense layers -> classifier.

Reference:
- [Very Deep Convolutional Networks for Large-Scale Image Recognition](
    https://arxiv.org/abs/1409.1556)
"""

import keras
from keras import layers

from applications import cnn_common
from applications.registry import register

# Conv widths per stage; configuration A (11 weight layers) and D (16 weight layers).
VGG11_STAGES = ((64,), (128,), (256, 256), (512, 512), (512, 512))
VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))


def vgg_stage(x, widths, name):
    """3x3 conv-BN-ReLU per width, then a 2x2/2 max-pool: (B, H, W, C) -> (B, H/2, W/2, last)."""
    for index, filters in enumerate(widths, start=1):
        x = cnn_common.conv_bn(x, filters, 3, name=f"{name}_conv{index}")
    # "same" padding: odd sizes round up (7 -> 4), so a 28 px input ends at 1x1, never 0x0.
    return layers.MaxPooling2D(2, strides=2, padding="same", name=f"{name}_pool")(x)


def VGG(
    stages,
    input_shape,
    num_classes,
    classifier_activation,
    dropout_rate,
    name,
):
    """The generic VGG builder: `stages` is a tuple of conv-width tuples, one per stage."""
    input_shape = cnn_common.check_arguments(input_shape, num_classes, dropout_rate)
    inputs = cnn_common.image_input(input_shape)
    x = inputs
    # VGG's first conv is already 3x3/1, so small and large inputs share the body.
    for index, widths in enumerate(stages, start=1):
        x = vgg_stage(x, widths, name=f"stage{index}")  # (B, H/2^i, W/2^i, widths[-1])

    if cnn_common.is_small_input(input_shape):
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)  # (B, 512)
    else:
        # A fixed 7x7 grid (torchvision does the same) keeps the dense layers input-size-free.
        x = layers.AdaptiveAveragePooling2D(7, name="grid_pool")(x)  # (B, 7, 7, 512)
        x = layers.Flatten(name="flatten")(x)  # (B, 25088)
        for index in (6, 7):
            x = layers.Dense(4096, name=f"fc{index}_dense")(x)
            x = layers.Activation("relu", name=f"fc{index}_relu")(x)
            if dropout_rate > 0 and index == 6:
                x = layers.Dropout(dropout_rate, name=f"fc{index}_dropout")(x)
    outputs = cnn_common.classifier_head(x, num_classes, classifier_activation, dropout_rate)
    return keras.Model(inputs, outputs, name=name)


@register(kind="classifier")
def vgg11(
    input_shape=(32, 32, 3),
    num_classes=10,
    classifier_activation="softmax",
    dropout_rate=0.0,
    name="vgg11",
):
    """VGG-11 (configuration A) with batch norm.

    9.2M parameters at 32x32x3 with 10 classes; 132.9M at 224x224x3 with 1000 classes.

    Args:
        input_shape: tuple. The (height, width, channels) of the input images.
            Defaults to (32, 32, 3).
        num_classes: int. The number of classes. Defaults to 10.
        classifier_activation: str or None. The activation of the last layer; None gives
            logits. Defaults to "softmax".
        dropout_rate: float. The dropout rate before the classifier (and, for inputs of
            64 px and more, after the first dense layer). Defaults to 0.0.
        name: str. The name of the model. Defaults to "vgg11".

    Returns:
        A functional `keras.Model` mapping (B, H, W, C) images to (B, num_classes).
    """
    return VGG(VGG11_STAGES, input_shape, num_classes, classifier_activation, dropout_rate, name)


@register(kind="classifier")
def vgg16(
    input_shape=(32, 32, 3),
    num_classes=10,
    classifier_activation="softmax",
    dropout_rate=0.0,
    name="vgg16",
):
    """VGG-16 (configuration D) with batch norm.

    14.7M parameters at 32x32x3 with 10 classes; 138.4M at 224x224x3 with 1000 classes.

    Args:
        input_shape: tuple. The (height, width, channels) of the input images.
            Defaults to (32, 32, 3).
        num_classes: int. The number of classes. Defaults to 10.
        classifier_activation: str or None. The activation of the last layer; None gives
            logits. Defaults to "softmax".
        dropout_rate: float. The dropout rate before the classifier (and, for inputs of
            64 px and more, after the first dense layer). Defaults to 0.0.
        name: str. The name of the model. Defaults to "vgg16".

    Returns:
        A functional `keras.Model` mapping (B, H, W, C) images to (B, num_classes).
    """
    return VGG(VGG16_STAGES, input_shape, num_classes, classifier_activation, dropout_rate, name)
