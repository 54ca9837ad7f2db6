"""Pieces shared by the detection heads (`yolo.py`, `rpn.py`): box algebra, backbone taps, NMS.

Every detection builder follows one contract:

- `(input_shape, num_classes, ..., backbone=...)` with square `input_shape = (S, S, channels)`;
  images arrive as float32, already normalized by the caller (as for the classifiers).
- Boxes inside the networks are `[y_min, x_min, y_max, x_max]` normalized to [0, 1] of the
  network input (the convention of `tf.image.crop_and_resize` and the NMS ops).
- Ground truth for the losses is one dense tensor `(B, M, 5)`: M boxes per image, padded, each
  `[y_min, x_min, y_max, x_max, class]` with class -1 for padding.
- `backbone` is a registry classifier's name, a pretrained backbone's name or a feature
  extractor model (`segmentation_common.backbone_features`).
- Each family module provides `losses(model)` (what `compile` takes), and
  `detections(model, outputs, max_detections, iou_threshold, score_threshold)` (decoding and
  NMS inside the graph), so a task never needs to know a head's internals.
"""

import keras
import numpy as np
import tensorflow as tf

from applications import cnn_common
from applications import segmentation_common

# Deltas are clipped before `exp` so an untrained head cannot overflow a box to infinity.
MAX_LOG_SCALE = float(np.log(1000.0 / 16.0))


def check_arguments(input_shape, num_classes, multiple):
    """Returns `input_shape` as a tuple of ints, or raises a ValueError on a bad argument."""
    try:
        shape = tuple(int(size) for size in input_shape)
    except (TypeError, ValueError):
        shape = ()
    if len(shape) != 3 or min(shape) < 1 or shape[0] != shape[1]:
        raise ValueError(
            "`input_shape` must be square (size, size, channels) with positive integer sizes. "
            f"Received: input_shape={input_shape}"
        )
    if shape[0] % multiple:
        raise ValueError(
            f"The input size must be a multiple of {multiple} for this head. Received: input_shape={input_shape}"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"`num_classes` must be a positive integer. Received: num_classes={num_classes}")
    return shape


def backbone_features(backbone, input_shape, strides):
    """The backbone cut at the output strides it is asked for.

    Args:
        backbone: str or keras.Model. A registry classifier, a name of `applications.backbones`
            or a feature-extractor model (see `segmentation_common.backbone_features`).
        input_shape: tuple. The (size, size, channels) of the network input.
        strides: list of int. The strides wanted, the one the head cannot do without first.

    Returns:
        `(inputs, features)`: the image input and a dict stride -> feature map for each of
        `strides` the backbone reaches (at least the first one, else a ValueError).
    """
    inputs, features = segmentation_common.backbone_features(backbone, input_shape, max_stride=max(strides))
    segmentation_common.require_strides(features, strides[:1], backbone, input_shape)
    return inputs, {stride: features[stride] for stride in strides if stride in features}


def find_layer(model, layer_class):
    """The first layer of `layer_class` in `model`, searching nested models too."""
    for layer in model.layers:
        if isinstance(layer, layer_class):
            return layer
        if isinstance(layer, keras.Model):
            found = find_layer(layer, layer_class)
            if found is not None:
                return found
    return None


# === Box algebra (normalized yxyx) ===


def box_area(boxes):
    return tf.maximum(boxes[..., 2] - boxes[..., 0], 0.0) * tf.maximum(boxes[..., 3] - boxes[..., 1], 0.0)


def pairwise_iou(boxes_a, boxes_b):
    """IoU of every box in `boxes_a` (..., N, 4) with every box in `boxes_b` (..., M, 4): (..., N, M)."""
    a = boxes_a[..., :, None, :]
    b = boxes_b[..., None, :, :]
    top = tf.maximum(a[..., 0], b[..., 0])
    left = tf.maximum(a[..., 1], b[..., 1])
    bottom = tf.minimum(a[..., 2], b[..., 2])
    right = tf.minimum(a[..., 3], b[..., 3])
    intersection = tf.maximum(bottom - top, 0.0) * tf.maximum(right - left, 0.0)
    union = box_area(a) + box_area(b) - intersection
    return tf.math.divide_no_nan(intersection, union)


def to_center(boxes):
    """yxyx -> (center_y, center_x, height, width)."""
    height = boxes[..., 2] - boxes[..., 0]
    width = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * height, boxes[..., 1] + 0.5 * width, height, width


def encode_deltas(anchors, boxes, variances=(1.0, 1.0, 1.0, 1.0)):
    """Faster R-CNN box deltas of `boxes` against `anchors` (both (..., 4) yxyx): (..., 4)."""
    anchor_y, anchor_x, anchor_h, anchor_w = to_center(anchors)
    box_y, box_x, box_h, box_w = to_center(boxes)
    anchor_h, anchor_w = tf.maximum(anchor_h, 1e-6), tf.maximum(anchor_w, 1e-6)
    deltas = tf.stack([
        (box_y - anchor_y) / anchor_h,
        (box_x - anchor_x) / anchor_w,
        tf.math.log(tf.maximum(box_h, 1e-6) / anchor_h),
        tf.math.log(tf.maximum(box_w, 1e-6) / anchor_w),
    ], axis=-1)
    return deltas / tf.constant(variances, deltas.dtype)


def decode_deltas(anchors, deltas, variances=(1.0, 1.0, 1.0, 1.0)):
    """The inverse of `encode_deltas`: boxes (..., 4) yxyx from anchors and deltas."""
    deltas = deltas * tf.constant(variances, deltas.dtype)
    anchor_y, anchor_x, anchor_h, anchor_w = to_center(anchors)
    center_y = anchor_y + deltas[..., 0] * anchor_h
    center_x = anchor_x + deltas[..., 1] * anchor_w
    height = anchor_h * tf.exp(tf.minimum(deltas[..., 2], MAX_LOG_SCALE))
    width = anchor_w * tf.exp(tf.minimum(deltas[..., 3], MAX_LOG_SCALE))
    return tf.stack(
        [center_y - 0.5 * height, center_x - 0.5 * width, center_y + 0.5 * height, center_x + 0.5 * width], axis=-1
    )


def split_ground_truth(y_true):
    """(B, M, 5) -> boxes (B, M, 4) float32, classes (B, M) int32, valid (B, M) bool."""
    y_true = tf.cast(y_true, tf.float32)
    boxes, classes = y_true[..., :4], tf.cast(tf.round(y_true[..., 4]), tf.int32)
    valid = (classes >= 0) & (box_area(boxes) > 0.0)
    return boxes, classes, valid


def smooth_l1(difference, beta=1.0 / 9.0):
    """Huber / smooth-L1 per element, quadratic below `beta` (Detectron's RPN setting)."""
    absolute = tf.abs(difference)
    return tf.where(absolute < beta, 0.5 * absolute**2 / beta, absolute - 0.5 * beta)


# === Decoding ===


def non_max_suppression(boxes, scores, max_detections, iou_threshold, score_threshold):
    """Per-class NMS inside the graph.

    Args:
        boxes: (B, N, 4) normalized yxyx boxes shared by every class.
        scores: (B, N, K) per-class scores in [0, 1].

    Returns:
        A dict: `boxes` (B, D, 4) normalized yxyx, `scores` (B, D), `classes` (B, D) int32,
        `num_detections` (B,) int32, padded with zeros past `num_detections`.
    """
    result = tf.image.combined_non_max_suppression(
        tf.cast(boxes, tf.float32)[:, :, None, :],
        tf.cast(scores, tf.float32),
        max_output_size_per_class=max_detections,
        max_total_size=max_detections,
        iou_threshold=iou_threshold,
        score_threshold=score_threshold,
        clip_boxes=True,
    )
    return {
        "boxes": result.nmsed_boxes,
        "scores": result.nmsed_scores,
        "classes": tf.cast(result.nmsed_classes, tf.int32),
        "num_detections": result.valid_detections,
    }


def leaky_conv_bn(x, filters, kernel_size, name, strides=1):
    """Conv2D (no bias) -> BatchNorm -> LeakyReLU(0.1): the Darknet unit, `{name}_conv|_bn|_leaky`."""
    x = keras.layers.Conv2D(filters, kernel_size, strides=strides, padding="same", use_bias=False, name=f"{name}_conv")(x)
    x = cnn_common.batch_norm(f"{name}_bn")(x)
    return keras.layers.LeakyReLU(0.1, name=f"{name}_leaky")(x)
