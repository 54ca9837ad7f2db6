"""Tests for the analytic FLOP counter of `benchmarks/flops.py`, against hand counts."""

import keras
import pytest

import applications
from benchmarks import flops


def test_conv_and_dense_match_a_hand_count():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same")(inputs)  # (B, 4, 4, 4)
    x = keras.layers.BatchNormalization()(x)  # not counted
    x = keras.layers.Flatten()(x)  # (B, 64)
    outputs = keras.layers.Dense(5)(x)
    model = keras.Model(inputs, outputs)
    conv = 2 * (4 * 4) * (3 * 3) * 3 * 4  # 2 * H_out * W_out * k_h * k_w * C_in * C_out = 3,456
    dense = 2 * 64 * 5  # 640
    assert flops.forward_flops(model) == conv + dense


def test_depthwise_separable_grouped_and_nested():
    inner_inputs = keras.Input((6, 6, 4))
    x = keras.layers.DepthwiseConv2D(3, depth_multiplier=2)(inner_inputs)  # (B, 4, 4, 8)
    x = keras.layers.SeparableConv2D(6, 3, padding="same")(x)  # (B, 4, 4, 6)
    x = keras.layers.Conv2D(4, 1, groups=2)(x)  # (B, 4, 4, 4)
    inner = keras.Model(inner_inputs, x)
    inputs = keras.Input((6, 6, 4))
    model = keras.Model(inputs, keras.layers.Add()([inner(inputs), inner(inputs)]))  # called twice
    depthwise = 2 * 16 * 9 * 4 * 2
    separable = 2 * 16 * (9 * 8 + 8 * 6)
    grouped = 2 * 16 * 1 * (6 // 2) * 4
    assert flops.forward_flops(inner) == depthwise + separable + grouped
    assert flops.forward_flops(model) == 2 * (depthwise + separable + grouped)


def test_resnet20_is_about_81_mflops():
    # ~40.6M multiply-adds at 32x32x3 (He et al. 2015 list 41M for ResNet-20 on CIFAR).
    model = applications.get("resnet20")(input_shape=(32, 32, 3), num_classes=10)
    assert flops.forward_flops(model) == pytest.approx(81e6, rel=0.10)
