"""Pieces shared by the segmentation families (`fcn.py`, `unet.py`): checks, backbone taps, head.

Every segmentation builder follows one contract:

- `(input_shape, num_classes, ...)` with `input_shape = (height, width, channels)` known; images
  arrive as float32, already normalized by the caller (as for the classifiers).
- The output is per-pixel logits `(B, height, width, num_classes)` in float32 (a final float32
  `logits` layer, so a `mixed_bfloat16` policy keeps the loss in full range).
- A `backbone` is a key of the registry: the classifier is built at `input_shape`, and the
  decoder taps its last layer at each output stride (2, 4, 8, 16, 32), found from the layers'
  output shapes, so every classifier family works without a table of layer names.
- Or a pretrained backbone: a name of `applications.backbones` (built with random weights), or a
  feature-extractor model such as `backbones.feature_extractor(name, input_shape, weights)`
  (pixels in [-1, 1] -> the feature maps of its named layers), nested whole as one layer named
  like the extractor, so `tasks.core.finetune` can freeze it. The caller then maps raw pixels
  to [-1, 1] (`backbones.preprocess`) in place of its normalization.
"""

import math

import keras
import numpy as np
from keras import layers

from applications import backbones
from applications import cnn_common
from applications import registry


def check_arguments(input_shape, num_classes):
    """Returns `input_shape` as a tuple of ints, or raises a ValueError on a bad argument."""
    shape = cnn_common.check_arguments(input_shape, num_classes, 0.0)
    if num_classes < 2:
        # One class would make softmax constant: a segmentation has background and something.
        raise ValueError(f"`num_classes` must be >= 2. Received: num_classes={num_classes}")
    return shape


def output_stride(input_shape, tensor_shape):
    """The power of two nearest to input height / feature height (valid convs shave a pixel)."""
    ratio = input_shape[0] / max(int(tensor_shape[1]), 1)
    return 2 ** int(round(math.log2(ratio))) if ratio >= 1 else 1


def backbone_features(backbone, input_shape, max_stride=None):
    """A registry classifier, or a pretrained feature extractor, cut into its feature pyramid.

    Args:
        backbone: str or keras.Model. A key of the applications registry (an image classifier),
            a name of `applications.backbones`, or a feature-extractor model (see
            `extractor_features`).
        input_shape: tuple. The (height, width, channels) of the input images.
        max_stride: int or None. The coarsest stride the caller uses: a feature extractor is cut
            there, so no layer without a gradient stays in the network. Defaults to None (all).

    Returns:
        `(inputs, features)`: the backbone's input tensor and a dict output stride -> the output
        of the last layer at that stride (before the global pool), e.g. {1: .., 2: .., 4: ..,
        8: .., 16: .., 32: ..} for resnet18 at 64 px and more.
    """
    if isinstance(backbone, keras.Model):
        return extractor_features(backbone, input_shape, max_stride)
    if backbone in backbones.names():
        return extractor_features(backbones.feature_extractor(backbone, input_shape), input_shape, max_stride)
    network = registry.get(backbone)(
        input_shape=input_shape, num_classes=2, classifier_activation=None
    )
    features = {}
    for layer in network.layers:  # topological order: a later layer at a stride wins
        shape = getattr(layer, "output", None)
        shape = getattr(shape, "shape", None)
        if shape is None or len(shape) != 4:
            continue  # the input list, the pooled vector and the dense head
        features[output_stride(input_shape, shape)] = layer.output
    return network.input, features


def extractor_features(extractor, input_shape, max_stride=None):
    """A feature-extractor model nested as one layer: `(inputs, {stride: feature map})`.

    Args:
        extractor: keras.Model. (B, H, W, C) -> one feature map or a list of them, at distinct
            strides (e.g. `backbones.feature_extractor`: its named layers at strides 2 ... 32).
        input_shape: tuple. The extractor's (height, width, channels).
        max_stride: int or None. Outputs at coarser strides are cut off (a sub-model of the same
            layers and the same name). Defaults to None.
    """
    if tuple(extractor.input_shape[1:]) != tuple(input_shape):
        raise ValueError(
            f"The feature extractor '{extractor.name}' takes {tuple(extractor.input_shape[1:])}, not the "
            f"network's input_shape={tuple(input_shape)}; build it at that shape."
        )
    outputs = list(extractor.outputs)
    strides = [output_stride(input_shape, output.shape) for output in outputs]
    if len(set(strides)) != len(strides):
        raise ValueError(f"The feature extractor '{extractor.name}' gives two maps at one stride: {strides}.")
    kept = [index for index, stride in enumerate(strides) if max_stride is None or stride <= max_stride]
    if not kept:
        raise ValueError(
            f"The feature extractor '{extractor.name}' has no map at stride {max_stride} or finer "
            f"(it gives strides {sorted(strides)})."
        )
    if len(kept) < len(outputs):  # the same layers up to the coarsest stride used
        extractor = keras.Model(extractor.inputs, [outputs[index] for index in kept], name=extractor.name)
    inputs = keras.Input(tuple(input_shape), name="image")
    maps = extractor(inputs)
    maps = list(maps) if isinstance(maps, (list, tuple)) else [maps]
    return inputs, {strides[index]: feature for index, feature in zip(kept, maps)}


def require_strides(features, strides, backbone, input_shape):
    """Raises a ValueError unless the backbone reaches every stride in `strides`."""
    missing = [stride for stride in strides if stride not in features]
    if missing:
        backbone = getattr(backbone, "name", backbone)  # a feature-extractor model by its name
        raise ValueError(
            f"Backbone '{backbone}' at input_shape={tuple(input_shape)} has no feature map at "
            f"stride {missing[0]} (it reaches {max(features)}); use a larger input (the ImageNet "
            "stems start at 64 px) or another backbone."
        )


def match_size(x, reference, name):
    """Center-crops or resizes `x` to the spatial size of `reference` when they differ.

    A transposed convolution doubles 15 to 30 where the skip has 29 (valid convs, odd sizes):
    a crop (as in FCN's `crop` layer) when larger, a bilinear resize when smaller.
    """
    height, width = reference.shape[1], reference.shape[2]
    if (x.shape[1], x.shape[2]) == (height, width):
        return x
    if x.shape[1] >= height and x.shape[2] >= width:
        top, left = (x.shape[1] - height) // 2, (x.shape[2] - width) // 2
        return layers.Cropping2D(
            ((top, x.shape[1] - height - top), (left, x.shape[2] - width - left)), name=f"{name}_crop"
        )(x)
    return layers.Resizing(height, width, interpolation="bilinear", name=f"{name}_resize")(x)


def logits_output(x):
    """The float32 `logits` layer every segmentation builder ends with: (B, H, W, classes)."""
    return layers.Activation("linear", dtype="float32", name="logits")(x)


@keras.saving.register_keras_serializable(package="applications")
class BilinearUpsampling(keras.initializers.Initializer):
    """Initializes a `Conv2DTranspose` kernel to bilinear interpolation, channel by channel.

    FCN starts its learned upsampling ("deconvolution") at bilinear interpolation; training
    may then refine it. The kernel shape is (k, k, out_channels, in_channels) with k = 2 * stride
    (or 2 * stride - stride % 2); channel i maps to channel i, other pairs start at zero.
    """

    def __call__(self, shape, dtype=None):
        size, _, out_channels, in_channels = shape
        factor = (size + 1) // 2
        center = factor - 1 if size % 2 == 1 else factor - 0.5
        grid = np.arange(size)
        weights_1d = 1 - np.abs(grid - center) / factor
        kernel = np.zeros(shape, dtype="float32")
        for channel in range(min(out_channels, in_channels)):
            kernel[:, :, channel, channel] = np.outer(weights_1d, weights_1d)
        return keras.ops.convert_to_tensor(kernel, dtype=dtype or "float32")

    def get_config(self):
        return {}
