"""AlexNet (Krizhevsky et al., 2012): five convolutions, three max-pools, three dense layers.

The conv widths are the single-tower ones of "One weird trick" (Krizhevsky, 2014), as in
torchvision: 64, 192, 384, 256, 256. Local response normalization is left out, as there and in
torchvision; the rest is the classic recipe: ReLU, overlapping 3x3/2 max-pools, dropout in the
dense layers, no batch norm.

Reference:
- [ImageNet Classification with Deep Convolutional Neural Networks](
    https://papers.nips.cc/paper/4824-imagenet-classification-with-deep-convolutional-neural-networks)
"""

import keras
from keras import layers

from applications import cnn_common
from applications.registry import register


def conv_relu(x, filters, kernel_size, strides=1, name=None):
    """Conv2D (with bias: AlexNet has no batch norm) -> ReLU."""
    x = layers.Conv2D(filters, kernel_size, strides=strides, padding="same", name=f"{name}_conv")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def max_pool(x, name):
    # Overlapping 3x3/2 pooling; "same" padding so a 28 px input shrinks 28 -> 14 -> 7 -> 4.
    return layers.MaxPooling2D(3, strides=2, padding="same", name=name)(x)


def dense_relu(x, units, name):
    """Dense -> ReLU."""
    x = layers.Dense(units, name=f"{name}_dense")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


@register(kind="classifier")
def alexnet(
    input_shape=(32, 32, 3),
    num_classes=10,
    classifier_activation="softmax",
    dropout_rate=0.0,
    name="alexnet",
):
    """AlexNet for images of any size (8 px and up; built for 28 px and up).

    Images of 64 px and more get the ImageNet stem (11x11/4 conv, then a max-pool) and
    4096-wide dense layers over a 6x6 grid: 61.1M parameters at 224x224x3 with 1000 classes.
    Smaller images get a 3x3/1 stem and 512-wide dense layers over a 4x4 grid (4.8M
    parameters at 32x32x3 with 10 classes).

    Args:
        input_shape: tuple. The (height, width, channels) of the input images.
            Defaults to (32, 32, 3).
        num_classes: int. The number of classes. Defaults to 10.
        classifier_activation: str or None. The activation of the last layer; None gives
            logits. Defaults to "softmax".
        dropout_rate: float. The dropout rate after each hidden dense layer (0.5 in the
            paper). Defaults to 0.0.
        name: str. The name of the model. Defaults to "alexnet".

    Returns:
        A functional `keras.Model` mapping (B, H, W, C) images to (B, num_classes).
    """
    input_shape = cnn_common.check_arguments(input_shape, num_classes, dropout_rate)
    small = cnn_common.is_small_input(input_shape)
    # The dense layers see a fixed grid whatever the input size (torchvision does the same).
    grid_size, dense_units = (4, 512) if small else (6, 4096)

    inputs = cnn_common.image_input(input_shape)
    if small:
        x = conv_relu(inputs, 64, 3, name="conv1")  # (B, H, W, 64)
    else:
        x = conv_relu(inputs, 64, 11, strides=4, name="conv1")  # (B, H/4, W/4, 64)
    x = max_pool(x, "pool1")  # (B, H/2, W/2, 64) small; (B, H/8, W/8, 64) large
    x = conv_relu(x, 192, 5, name="conv2")
    x = max_pool(x, "pool2")
    x = conv_relu(x, 384, 3, name="conv3")
    x = conv_relu(x, 256, 3, name="conv4")
    x = conv_relu(x, 256, 3, name="conv5")
    x = max_pool(x, "pool5")  # 32 px -> (B, 4, 4, 256); 224 px -> (B, 7, 7, 256)

    # Tiny inputs (e.g. 8x8 digits) reach pool5 smaller than the grid: keep what is there (Keras
    # 3.15's adaptive pooling to a side of 1 fails in graph mode, so no pooling layer at all).
    grid = (min(grid_size, x.shape[1]), min(grid_size, x.shape[2]))
    if grid == tuple(x.shape[1:3]):
        x = layers.Identity(name="grid_pool")(x)  # (B, g, g, 256)
    else:
        x = layers.AdaptiveAveragePooling2D(grid, name="grid_pool")(x)  # (B, g, g, 256)
    x = layers.Flatten(name="flatten")(x)  # (B, g*g*256)
    x = dense_relu(x, dense_units, name="fc6")
    if dropout_rate > 0:
        # The paper (and its Caffe model) drops out the outputs of fc6 and fc7.
        x = layers.Dropout(dropout_rate, name="fc6_dropout")(x)
    x = dense_relu(x, dense_units, name="fc7")
    outputs = cnn_common.classifier_head(x, num_classes, classifier_activation, dropout_rate)
    return keras.Model(inputs, outputs, name=name)
