"""Tests for the segmentation builders (`applications/fcn.py`, `applications/unet.py`).

Every builder on a small input (64x64): per-pixel float32 logits from predict,
one fit step that reaches the first layer, a config round trip and a `.keras` round trip; the
FCN skip fusion on ResNet, VGG and Xception backbones; clear errors for impossible shapes.
"""

import keras
import numpy as np
import pytest

import applications
from applications import segmentation_common
from tests import helpers

NUM_CLASSES = 3
SHAPE = (64, 64, 3)
SEGMENTERS = [name for name in applications.names() if applications.get(name).__module__ in ("applications.fcn", "applications.unet")]
# Small settings: a light backbone, a narrow U-Net.
CASES = [
    ("unet", {"width": 8, "depth": 3}),
    ("unet", {"width": 8, "depth": 2, "backbone": "mini_xception"}),
    ("fcn32s", {"backbone": "mini_xception", "head_filters": 0}),
    ("fcn16s", {"backbone": "resnet18", "head_filters": 16}),
    ("fcn8s", {"backbone": "vgg11", "head_filters": 0}),
]


def test_segmenters_are_registered_and_documented():
    assert set(SEGMENTERS) == {"unet", "fcn8s", "fcn16s", "fcn32s"}
    for name in SEGMENTERS:
        doc = applications.get(name).__doc__
        assert "Args:" in doc and "num_classes: int." in doc


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{name}-{kw.get('backbone', 'plain')}" for name, kw in CASES])
def test_segmenter(name, kwargs, tmp_path):
    keras.utils.set_random_seed(0)
    model = applications.get(name)(input_shape=SHAPE, num_classes=NUM_CLASSES, **kwargs)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, *SHAPE)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, size=(2, *SHAPE[:2]))
    outputs = model.predict(x, verbose=0)
    assert outputs.shape == (2, *SHAPE[:2], NUM_CLASSES) and outputs.dtype == np.float32
    assert np.all(np.isfinite(outputs))

    model.compile(optimizer=keras.optimizers.SGD(1e-2), loss="sparse_categorical_crossentropy", run_eagerly=True)
    first = np.array(model.trainable_weights[0])
    history = model.fit(x, y, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert not np.array_equal(np.array(model.trainable_weights[0]), first)  # gradient reaches the stem

    restored = keras.Model.from_config(model.get_config())
    assert restored.count_params() == model.count_params()
    helpers.keras_round_trip(model, x, tmp_path)


def test_fcn_variants_fuse_finer_skips():
    layers_of = {
        name: {layer.name for layer in applications.get(name)(input_shape=SHAPE, num_classes=2, backbone="mini_xception").layers}
        for name in ("fcn32s", "fcn16s", "fcn8s")
    }
    assert "fuse16" not in layers_of["fcn32s"]
    assert "fuse16" in layers_of["fcn16s"] and "fuse8" not in layers_of["fcn16s"]
    assert {"fuse16", "fuse8"} <= layers_of["fcn8s"]


def test_bilinear_initializer_upsamples_a_constant_to_a_constant():
    # A 2x transposed conv with the bilinear kernel keeps a constant map constant (inside).
    layer = keras.layers.Conv2DTranspose(
        1, 4, strides=2, padding="same", use_bias=False, kernel_initializer=segmentation_common.BilinearUpsampling()
    )
    out = keras.ops.convert_to_numpy(layer(np.ones((1, 8, 8, 1), "float32")))
    np.testing.assert_allclose(out[0, 2:-2, 2:-2, 0], 1.0, atol=1e-6)


def test_impossible_shapes_fail_clearly():
    with pytest.raises(ValueError, match="multiples of 16"):
        applications.get("unet")(input_shape=(60, 60, 1), num_classes=2, depth=4)
    with pytest.raises(ValueError, match="stride 32"):
        applications.get("fcn8s")(input_shape=(32, 32, 3), num_classes=2, backbone="resnet20")
    with pytest.raises(ValueError, match="num_classes"):
        applications.get("unet")(input_shape=(64, 64, 1), num_classes=1)
