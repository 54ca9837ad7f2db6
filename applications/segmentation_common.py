"""Pieces shared by the segmentation families (`fcn.py`, `unet.py`): checks, backbone taps, head.

Every segmentation builder follows one contract:

- `(input_shape, num_classes, ...)` with `input_shape = (height, width, channels)` known; images
  arrive as float32, already normalized by the caller (as for the classifiers).
- The output is per-pixel logits `(B, height, width, num_classes)` in float32 (a final float32
  `logits` layer, so a `mixed_bfloat16` policy keeps the loss in full range).
- A `backbone` is a key of the registry: the classifier is built at `input_shape`, and the
  decoder taps its last layer at each output stride (2, 4, 8, 16, 32), found from the layers'
  output shapes, so every classifier family works without a table of layer names.
"""

import math

import keras
import numpy as np
from keras import layers

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


def backbone_features(backbone, input_shape):
    """A registry classifier cut into its feature pyramid.

    Args:
        backbone: str. A key of the applications registry (an image classifier).
        input_shape: tuple. The (height, width, channels) of the input images.

    Returns:
        `(inputs, features)`: the backbone's input tensor and a dict output stride -> the output
        of the last layer at that stride (before the global pool), e.g. {1: .., 2: .., 4: ..,
        8: .., 16: .., 32: ..} for resnet18 at 64 px and more.
    """
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


def require_strides(features, strides, backbone, input_shape):
    """Raises a ValueError unless the backbone reaches every stride in `strides`."""
    missing = [stride for stride in strides if stride not in features]
    if missing:
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
