"""Fully convolutional networks (Long, Shelhamer & Darrell, 2015): FCN-32s, FCN-16s and FCN-8s.

A registry classifier (VGG, ResNet, Xception, ...) without its pooled head, or a pretrained
backbone (`applications/backbones.py`), is the encoder. A 1x1
conv scores every class on the stride-32 features; learned transposed convolutions
("deconvolution", initialized to bilinear interpolation) upsample the scores. FCN-16s adds the
scores of the stride-16 features after a 2x upsampling, FCN-8s also those at stride 8 ("skip
fusion"), which recovers finer boundaries. As in the paper the skip scorers start at zero, so
training begins from the coarser net's output.

Reference:
- [Fully Convolutional Networks for Semantic Segmentation](https://arxiv.org/abs/1411.4038)
"""

import keras
from keras import layers

from applications import segmentation_common
from applications.registry import register


def upsample(x, num_classes, stride, name):
    """A learned Conv2DTranspose, bilinear at start: (B, H, W, classes) -> (B, sH, sW, classes)."""
    return layers.Conv2DTranspose(
        num_classes,
        kernel_size=2 * stride,
        strides=stride,
        padding="same",
        use_bias=False,
        kernel_initializer=segmentation_common.BilinearUpsampling(),
        name=name,
    )(x)


def score(x, num_classes, name, zero=False):
    """A 1x1 conv scoring every class: (B, H, W, C) -> (B, H, W, classes)."""
    return layers.Conv2D(
        num_classes, 1, kernel_initializer="zeros" if zero else "glorot_uniform", name=name
    )(x)


def FCN(finest_stride, input_shape, num_classes, backbone, head_filters, name):
    """The generic FCN builder.

    Args:
        finest_stride: int. 32, 16 or 8: the finest skip fused (FCN-32s, -16s, -8s).
        input_shape, num_classes, backbone, head_filters, name: as in the public builders.
    """
    if finest_stride not in (8, 16, 32):
        raise ValueError(f"`finest_stride` must be 8, 16 or 32. Received: finest_stride={finest_stride}")
    input_shape = segmentation_common.check_arguments(input_shape, num_classes)
    inputs, features = segmentation_common.backbone_features(backbone, input_shape, max_stride=32)
    strides = [stride for stride in (32, 16, 8) if stride >= finest_stride]
    segmentation_common.require_strides(features, strides, backbone, input_shape)

    # The paper's fc6/fc7 as a conv on the coarsest grid: context for the class scores.
    x = features[32]  # (B, H/32, W/32, C32)
    if head_filters:
        x = layers.Conv2D(head_filters, 3, padding="same", activation="relu", name="head_conv")(x)
    x = score(x, num_classes, name="score32")  # (B, H/32, W/32, classes)
    for coarse, fine in zip(strides, strides[1:]):
        x = upsample(x, num_classes, 2, name=f"up{coarse}")  # (B, H/fine, W/fine, classes)
        skip = score(features[fine], num_classes, name=f"score{fine}", zero=True)
        x = segmentation_common.match_size(x, skip, name=f"up{coarse}")
        x = layers.Add(name=f"fuse{fine}")([x, skip])
    x = upsample(x, num_classes, finest_stride, name=f"up{finest_stride}_to_input")  # (B, H, W, classes)
    x = segmentation_common.match_size(x, inputs, name="output")
    return keras.Model(inputs, segmentation_common.logits_output(x), name=name)


def _builder_docstring(variant, skips):
    return f"""FCN-{variant}: {skips}.

    Args:
        input_shape: tuple. The (height, width, channels) of the input images; the backbone
            must reach the coarsest stride used. Defaults to (224, 224, 3).
        num_classes: int. The number of classes (>= 2). Defaults to 21.
        backbone: str or keras.Model. The encoder: a classifier of the registry, a pretrained
            backbone's name (`applications.backbones.names()`) or a feature extractor such as
            `backbones.feature_extractor(name, input_shape, weights)` (its inputs then in
            [-1, 1]). Defaults to "vgg16".
        head_filters: int. Width of a 3x3 conv on the stride-32 features before scoring
            (0: none). Defaults to 256.
        name: str. The name of the model. Defaults to "fcn{variant}".

    Returns:
        A functional `keras.Model` mapping (B, H, W, C) images to (B, H, W, num_classes)
        float32 logits.
    """


@register(kind="segmenter")
def fcn32s(input_shape=(224, 224, 3), num_classes=21, backbone="vgg16", head_filters=256, name="fcn32s"):
    return FCN(32, input_shape, num_classes, backbone, head_filters, name)


@register(kind="segmenter")
def fcn16s(input_shape=(224, 224, 3), num_classes=21, backbone="vgg16", head_filters=256, name="fcn16s"):
    return FCN(16, input_shape, num_classes, backbone, head_filters, name)


@register(kind="segmenter")
def fcn8s(input_shape=(224, 224, 3), num_classes=21, backbone="vgg16", head_filters=256, name="fcn8s"):
    return FCN(8, input_shape, num_classes, backbone, head_filters, name)


fcn32s.__doc__ = _builder_docstring("32s", "one 32x learned upsampling of the stride-32 scores")
fcn16s.__doc__ = _builder_docstring("16s", "stride-32 scores, 2x up, + stride-16 scores, then 16x up")
fcn8s.__doc__ = _builder_docstring("8s", "FCN-16s fused once more with the stride-8 scores, then 8x up")
