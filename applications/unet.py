"""U-Net (Ronneberger, Fischer & Brox, 2015): an encoder-decoder with skip concatenation.

The encoder is `depth` levels of two 3x3 conv-BN-ReLU and a 2x2 max-pool, doubling the width
at each level from `width`; the bottleneck has two more convs. The decoder mirrors it: a 2x2/2
`Conv2DTranspose` ("up-convolution") halves the width and doubles the grid, the encoder's
features at that level are concatenated, and two 3x3 convs fuse them. A 1x1 conv gives the
per-pixel class logits. Unlike the paper, convs use "same" padding (and BN), so the output has
the input's size and no border is lost: the input sides must be multiples of 2^depth.

With `backbone`, a registry classifier or a pretrained backbone (`applications/backbones.py`,
by name or as a feature-extractor model) replaces the encoder: its last feature map at each
stride 2^depth, ..., 2, 1 is the skip at that level (a level it does not have, e.g. stride 1
under a stride-2 stem, just gets no skip).

Reference:
- [U-Net: Convolutional Networks for Biomedical Image Segmentation](
    https://arxiv.org/abs/1505.04597)
"""

import keras
from keras import layers

from applications import cnn_common
from applications import segmentation_common
from applications.registry import register


def double_conv(x, filters, name):
    """Two 3x3 conv-BN-ReLU: (B, H, W, C) -> (B, H, W, filters)."""
    x = cnn_common.conv_bn(x, filters, 3, name=f"{name}_conv1")
    return cnn_common.conv_bn(x, filters, 3, name=f"{name}_conv2")


def up_block(x, skip, filters, name):
    """2x2/2 up-conv, concatenate the skip (if any), two 3x3 convs: (B, H, W, C) -> (B, 2H, 2W, filters)."""
    x = layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=f"{name}_upconv")(x)
    if skip is not None:
        x = segmentation_common.match_size(x, skip, name=f"{name}_up")
        x = layers.Concatenate(name=f"{name}_concat")([skip, x])  # (B, 2H, 2W, C_skip + filters)
    return double_conv(x, filters, name=name)


def plain_encoder(input_shape, width, depth):
    """The U-Net encoder: `(inputs, bottleneck, skips)` with skips[i] at stride 2^i."""
    inputs = cnn_common.image_input(input_shape)
    x, skips = inputs, []
    for level in range(depth):
        x = double_conv(x, width * 2**level, name=f"down{level + 1}")  # (B, H/2^l, W/2^l, w 2^l)
        skips.append(x)
        x = layers.MaxPooling2D(2, name=f"down{level + 1}_pool")(x)
    x = double_conv(x, width * 2**depth, name="bottleneck")  # (B, H/2^d, W/2^d, w 2^d)
    return inputs, x, skips


def backbone_encoder(backbone, input_shape, depth):
    """A registry classifier or a feature extractor as the encoder: the same `(inputs, bottleneck, skips)`."""
    inputs, features = segmentation_common.backbone_features(backbone, input_shape, max_stride=2**depth)
    segmentation_common.require_strides(features, [2**depth], backbone, input_shape)
    skips = [features.get(2**level) for level in range(depth)]
    return inputs, features[2**depth], skips


@register(kind="segmenter")
def unet(
    input_shape=(256, 256, 1),
    num_classes=2,
    width=64,
    depth=4,
    backbone="",
    dropout_rate=0.0,
    name="unet",
):
    """U-Net with `depth` down/up levels, `Conv2DTranspose` upsampling and skip concatenation.

    31.0M parameters at the paper's width 64 and depth 4; 1.9M at width 16.

    Args:
        input_shape: tuple. The (height, width, channels) of the input images; height and width
            must be multiples of 2^depth. Defaults to (256, 256, 1).
        num_classes: int. The number of classes (>= 2). Defaults to 2.
        width: int. Filters of the first level, doubled at each level down. Defaults to 64.
        depth: int. The number of 2x downsamplings (and of up-convolutions). Defaults to 4.
        backbone: str or keras.Model. The encoder instead of the plain one: a classifier of the
            registry, a pretrained backbone's name (`applications.backbones.names()`), or a
            feature extractor such as `backbones.feature_extractor(name, input_shape, weights)`
            (its inputs then in [-1, 1]); "" is the plain U-Net encoder. Defaults to "".
        dropout_rate: float. Dropout on the bottleneck features. Defaults to 0.0.
        name: str. The name of the model. Defaults to "unet".

    Returns:
        A functional `keras.Model` mapping (B, H, W, C) images to (B, H, W, num_classes)
        float32 logits.
    """
    input_shape = segmentation_common.check_arguments(input_shape, num_classes)
    if width < 1 or depth < 1:
        raise ValueError(f"`width` and `depth` must be >= 1. Received: width={width}, depth={depth}")
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"`dropout_rate` must be in [0, 1). Received: dropout_rate={dropout_rate}")
    multiple = 2**depth
    if input_shape[0] % multiple or input_shape[1] % multiple:
        raise ValueError(
            f"U-Net with depth {depth} needs input sides that are multiples of {multiple}. "
            f"Received: input_shape={input_shape}"
        )
    if isinstance(backbone, keras.Model) or backbone:
        inputs, x, skips = backbone_encoder(backbone, input_shape, depth)
    else:
        inputs, x, skips = plain_encoder(input_shape, width, depth)
    if dropout_rate > 0:
        x = layers.Dropout(dropout_rate, name="bottleneck_dropout")(x)
    for level in reversed(range(depth)):  # (B, H/2^(l+1), ..) -> (B, H/2^l, W/2^l, w 2^l)
        x = up_block(x, skips[level], width * 2**level, name=f"up{level + 1}")
    x = layers.Conv2D(num_classes, 1, name="classifier")(x)  # (B, H, W, classes)
    return keras.Model(inputs, segmentation_common.logits_output(x), name=name)
