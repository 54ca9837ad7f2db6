"""KerasHub image backbones behind their own preprocessing, with a dense head.

    backbone = keras_hub.models.Backbone.from_preset(preset, name=hub.BACKBONE)
    converter = keras_hub.layers.ImageConverter.from_preset(preset)   # or None
    model = hub.image_classifier(backbone, converter, (28, 28, 1), num_classes=10)

The network takes raw pixels (float, [0, 255]) of 1 or 3 channels: grey images are repeated to
RGB, then the preset's `ImageConverter` resizes and rescales them as the backbone was trained
(without one, pixels are scaled to [0, 1]). The KerasHub backbone is the nested model named
`BACKBONE`, which `tasks.core.finetune` freezes and unfreezes. Loading a preset (file or network
I/O) is the caller's: this module only assembles networks.
"""

import keras
from keras import layers

from applications.backbones import BACKBONE  # noqa: F401  (the nested backbone's name here too)


def image_classifier(backbone, converter, input_shape, num_classes, dropout_rate=0.0, classifier_activation=None):
    """Preprocessing + a KerasHub image backbone + global average pooling + a dense head.

    Args:
        backbone: keras_hub.models.Backbone. An image backbone whose output is a feature map
            (B, h, w, C) or a sequence of patch tokens (B, N, C).
        converter: keras_hub.layers.ImageConverter or None. The preset's preprocessing; None
            scales pixels to [0, 1].
        input_shape: tuple. (H, W, C) raw pixels in [0, 255], C 1 or 3.
        num_classes: int. The number of classes.
        dropout_rate: float. Dropout before the head. Defaults to 0.0.
        classifier_activation: str or None. The head's activation. Defaults to None (logits).
    """
    channels = input_shape[-1]
    if channels not in (1, 3):
        raise ValueError(f"A KerasHub image backbone takes 1 or 3 channels. Received: input_shape={tuple(input_shape)}")
    # === Functional Model ===
    inputs = keras.Input(tuple(input_shape), name="image")
    x = layers.Concatenate(name="preprocess_rgb")([inputs, inputs, inputs]) if channels == 1 else inputs
    x = converter(x) if converter is not None else layers.Rescaling(1.0 / 255.0, name="preprocess_rescale")(x)
    features = backbone(x)
    if len(features.shape) == 4:  # (B, h, w, C)
        x = layers.GlobalAveragePooling2D(name="pool")(features)
    elif len(features.shape) == 3:  # (B, N, C) patch tokens
        x = layers.GlobalAveragePooling1D(name="pool")(features)
    else:
        raise ValueError(
            f"A KerasHub image backbone must give (B, h, w, C) or (B, N, C) features. "
            f"Received: output shape={tuple(features.shape)}"
        )
    if dropout_rate:
        x = layers.Dropout(dropout_rate, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation=classifier_activation, name="predictions")(x)
    return keras.Model(inputs, outputs, name="hub_classifier")
