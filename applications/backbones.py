"""Pretrained image backbones: keras.applications networks with their preprocessing inside.

    features = backbones.backbone("mobilenet", (96, 96, 3), weights="mobilenet_2_5_224_tf_no_top.h5")
    model = backbones.image_classifier("mobilenet_v2", (28, 28, 1), num_classes=10)

Every network built here takes raw pixels (float, [0, 255]) of any channel count: grey images
are repeated to RGB, images smaller than `MINIMUM_SIDE` are resized up to it, and a Rescaling
layer maps pixels to the [-1, 1] the MobileNets were trained on. The keras.applications network
is one nested model named `BACKBONE`, which `tasks.core.finetune` freezes and unfreezes.

`weights` is "imagenet" (keras.applications' own loader, which downloads), a path to a weights
file in the keras.applications format, or None (random initialization).
"""

import collections

import keras
from keras import layers

# The nested keras.applications model's name in every network built here.
BACKBONE = "backbone"

# keras.applications refuses smaller inputs without the top (and 32 px has a 1x1 last feature map).
MINIMUM_SIDE = 32

Spec = collections.namedtuple("Spec", ["constructor", "alpha", "features"])

# alpha: the width whose ImageNet weights ship in the small sizes used here. features: the layers
# whose outputs are the feature maps at strides 2, 4, 8, 16 and 32 (the U-Net encoder taps of the
# TensorFlow segmentation tutorial for MobileNetV2).
SPECS = {
    "mobilenet": Spec(
        keras.applications.MobileNet,
        0.25,
        ("conv_pw_1_relu", "conv_pw_3_relu", "conv_pw_5_relu", "conv_pw_11_relu", "conv_pw_13_relu"),
    ),
    "mobilenet_v2": Spec(
        keras.applications.MobileNetV2,
        0.35,
        ("block_1_expand_relu", "block_3_expand_relu", "block_6_expand_relu", "block_13_expand_relu", "out_relu"),
    ),
}


def names():
    """The backbone names `--backbone` accepts (besides `none`)."""
    return sorted(SPECS)


def _spec(name):
    if name not in SPECS:
        raise ValueError(f"Unknown backbone '{name}'. Backbones: {', '.join(names())}. Received: name={name!r}")
    return SPECS[name]


def imagenet_side(name, side):
    """The input side whose ImageNet file keras.applications loads for an input of `side` pixels."""
    sizes = (128, 160, 192, 224) if name == "mobilenet" else (96, 128, 160, 192, 224)
    return side if side in sizes else 224


def weights_file(name, input_shape):
    """The file name keras.applications downloads for `weights="imagenet"` (no top)."""
    spec = _spec(name)
    side = imagenet_side(name, input_shape[0] if input_shape[0] == input_shape[1] else 0)
    if name == "mobilenet":
        alpha = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}[spec.alpha]
        return f"mobilenet_{alpha}_{side}_tf_no_top.h5"
    return f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(spec.alpha)}_{side}_no_top.h5"


def backbone_shape(input_shape):
    """The (H, W, 3) the backbone sees for raw images of `input_shape`."""
    height, width = input_shape[:2]
    return (max(height, MINIMUM_SIDE), max(width, MINIMUM_SIDE), 3)


def preprocess(x, input_shape, name="preprocess"):
    """Raw pixels (B, H, W, C) in [0, 255] → (B, H', W', 3) in [-1, 1], H' and W' at least `MINIMUM_SIDE`."""
    channels = input_shape[-1]
    if channels == 1:
        x = layers.Concatenate(name=f"{name}_rgb")([x, x, x])
    elif channels != 3:
        raise ValueError(f"A backbone takes 1 or 3 channels. Received: input_shape={tuple(input_shape)}")
    height, width, _ = backbone_shape(input_shape)
    if (height, width) != tuple(input_shape[:2]):
        x = layers.Resizing(height, width, interpolation="bilinear", name=f"{name}_resize")(x)
    return layers.Rescaling(1.0 / 127.5, offset=-1.0, name=f"{name}_rescale")(x)


def backbone(name, input_shape, weights=None):
    """The keras.applications network `name` without its top, named `BACKBONE`.

    Args:
        name: str. A key of `SPECS`: "mobilenet" (v1, alpha 0.25) or "mobilenet_v2" (alpha 0.35).
        input_shape: tuple. (H, W, 3), preprocessed pixels in [-1, 1]; H, W >= `MINIMUM_SIDE`.
        weights: str or None. "imagenet", a path to a keras.applications weights file, or None.
    """
    spec = _spec(name)
    return spec.constructor(
        input_shape=tuple(input_shape), alpha=spec.alpha, include_top=False, weights=weights, name=BACKBONE
    )


def feature_extractor(name, input_shape, weights=None, levels=5):
    """The backbone's feature maps at strides 2, 4, ..., 2**levels (a list, finest first), as a
    model named `BACKBONE` taking preprocessed (H, W, 3) pixels."""
    network = backbone(name, input_shape, weights)
    outputs = [network.get_layer(layer).output for layer in _spec(name).features[:levels]]
    return keras.Model(network.input, outputs, name=BACKBONE)


def image_classifier(
    backbone_name, input_shape, num_classes, weights=None, dropout_rate=0.0, classifier_activation=None
):
    """Preprocessing + a pretrained backbone + global average pooling + a dense head.

    Args:
        backbone_name: str. A key of `SPECS`.
        input_shape: tuple. (H, W, C) raw pixels in [0, 255], C 1 or 3.
        num_classes: int. The number of classes.
        weights: str or None. The backbone's weights: "imagenet", a path, or None.
        dropout_rate: float. Dropout before the head. Defaults to 0.0.
        classifier_activation: str or None. The head's activation. Defaults to None (logits).
    """
    # === Layers ===
    network = backbone(backbone_name, backbone_shape(input_shape), weights)
    # === Functional Model ===
    inputs = keras.Input(tuple(input_shape), name="image")
    x = network(preprocess(inputs, input_shape))
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout_rate:
        x = layers.Dropout(dropout_rate, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation=classifier_activation, name="predictions")(x)
    return keras.Model(inputs, outputs, name=f"{backbone_name}_classifier")
