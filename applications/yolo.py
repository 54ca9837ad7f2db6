"""YOLO v2-style single-stage detection (Redmon & Farhadi, 2016) and a tiny Darknet backbone.

A grid of S/stride x S/stride cells; each cell predicts, for each of A anchor priors, an
objectness logit, a box as offsets against the anchor (`sigmoid(t_y) + c_y` for the centre,
`p_h * exp(t_h)` for the size) and class logits. The anchor priors are k-means centroids of the
training boxes' (width, height) under the distance 1 - IoU (`kmeans_anchors`), as in the paper.
The grid features are the backbone's stride-`stride` map fused with the upsampled map one
stride coarser (more context per cell, a light feature pyramid).

Loss (`YoloLoss`, target assignment inside the graph): each ground-truth box is assigned to the
cell holding its centre and to the anchor whose shape fits it best (IoU of shapes). That
prediction learns objectness 1, its box offsets (squared error, weighted by 2 - w*h so small
boxes count more) and its class (softmax cross-entropy); every other prediction learns
objectness 0, except those whose decoded box already overlaps some ground truth by more than
`ignore_threshold` (they are not penalized). Decoding: score = sigmoid(objectness) *
softmax(class), then per-class NMS in the graph.

References:
- [YOLO9000: Better, Faster, Stronger](https://arxiv.org/abs/1612.08242)
- [YOLOv3: An Incremental Improvement](https://arxiv.org/abs/1804.02767) (ignore threshold)
"""

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from applications import cnn_common
from applications import detection_common
from applications.registry import register

# Objectness starts at a prior of 1 % (as RetinaNet's focal-loss init): thousands of empty
# predictions would otherwise swamp the first steps.
OBJECTNESS_PRIOR = 0.01
OUTPUTS = ()  # one output: the raw grid, trained on the ground truth (B, M, 5) itself


# === Anchors ===


def shape_iou(sizes, anchors):
    """IoU of boxes (N, 2) and anchors (A, 2) given as (width, height), centred together: (N, A)."""
    sizes, anchors = np.asarray(sizes, np.float64), np.asarray(anchors, np.float64)
    intersection = np.minimum(sizes[:, None, 0], anchors[None, :, 0]) * np.minimum(sizes[:, None, 1], anchors[None, :, 1])
    union = sizes[:, 0:1] * sizes[:, 1:2] + (anchors[:, 0] * anchors[:, 1])[None] - intersection
    return intersection / np.maximum(union, 1e-12)


def kmeans_anchors(sizes, num_anchors, seed=0, iterations=100):
    """k-means of box shapes with the distance 1 - IoU: YOLO v2's anchor priors.

    Args:
        sizes: array (N, 2). Box (width, height), e.g. normalized to the image side.
        num_anchors: int. The number of clusters.
        seed: int. Seed of the k-means++ initialization. Defaults to 0.
        iterations: int. At most this many Lloyd steps. Defaults to 100.

    Returns:
        float array (num_anchors, 2) of (width, height), sorted by area; fewer rows when there
        are fewer distinct shapes than `num_anchors`.
    """
    sizes = np.asarray(sizes, np.float64).reshape(-1, 2)
    sizes = sizes[(sizes > 0).all(axis=1)]
    if len(sizes) == 0:
        raise ValueError("kmeans_anchors needs at least one box with positive width and height.")
    distinct = np.unique(np.round(sizes, 6), axis=0)
    num_anchors = min(num_anchors, len(distinct))
    rng = np.random.default_rng(seed)
    # k-means++ seeding under the same distance.
    centers = [distinct[rng.integers(len(distinct))]]
    while len(centers) < num_anchors:
        distance = 1.0 - shape_iou(distinct, np.array(centers)).max(axis=1)
        weights = distance**2
        if weights.sum() <= 0:
            break
        centers.append(distinct[rng.choice(len(distinct), p=weights / weights.sum())])
    centers = np.array(centers)
    for _ in range(iterations):
        assignment = np.argmax(shape_iou(sizes, centers), axis=1)
        updated = np.array([
            np.median(sizes[assignment == k], axis=0) if np.any(assignment == k) else centers[k]
            for k in range(len(centers))
        ])
        if np.allclose(updated, centers):
            break
        centers = updated
    return centers[np.argsort(centers[:, 0] * centers[:, 1])]


def mean_best_iou(sizes, anchors):
    """The average IoU of each box with its best anchor (the paper's "Avg IOU" of priors)."""
    return float(shape_iou(np.asarray(sizes).reshape(-1, 2), anchors).max(axis=1).mean())


# === Layers ===


@keras.saving.register_keras_serializable(package="applications")
class YoloOutput(layers.Layer):
    """(B, G, G, A * (5 + K)) -> (B, G, G, A, 5 + K) float32; holds the anchor priors.

    Channels per anchor: `[t_y, t_x, t_h, t_w, objectness, class logits...]`.

    Args:
        anchors: list of (width, height). Anchor priors normalized to the input side.
        num_classes: int. The number of classes.
    """

    def __init__(self, anchors, num_classes, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self.anchors = [[float(w), float(h)] for w, h in anchors]
        self.num_classes = num_classes

    def call(self, inputs):
        shape = tf.shape(inputs)
        outputs = tf.reshape(
            tf.cast(inputs, tf.float32),
            tf.stack([shape[0], shape[1], shape[2], len(self.anchors), 5 + self.num_classes]),
        )
        return outputs

    def compute_output_shape(self, input_shape):
        return (*input_shape[:3], len(self.anchors), 5 + self.num_classes)

    def get_config(self):
        return {**super().get_config(), "anchors": self.anchors, "num_classes": self.num_classes}


def decode_boxes(outputs, anchors):
    """Raw (B, G, G, A, 5 + K) -> boxes (B, G, G, A, 4) normalized yxyx."""
    grid = tf.shape(outputs)[1]
    size = tf.cast(grid, tf.float32)
    cells = tf.cast(tf.range(grid), tf.float32)
    cell_y = cells[None, :, None, None]
    cell_x = cells[None, None, :, None]
    anchors = tf.constant(anchors, tf.float32)  # (A, 2) width, height
    center_y = (tf.sigmoid(outputs[..., 0]) + cell_y) / size
    center_x = (tf.sigmoid(outputs[..., 1]) + cell_x) / size
    height = anchors[:, 1] * tf.exp(tf.minimum(outputs[..., 2], detection_common.MAX_LOG_SCALE))
    width = anchors[:, 0] * tf.exp(tf.minimum(outputs[..., 3], detection_common.MAX_LOG_SCALE))
    return tf.stack(
        [center_y - 0.5 * height, center_x - 0.5 * width, center_y + 0.5 * height, center_x + 0.5 * width], axis=-1
    )


@keras.saving.register_keras_serializable(package="applications")
class YoloLoss(keras.losses.Loss):
    """The YOLO v2 loss with its target assignment, summed over predictions, averaged over images.

    Args:
        anchors: list of (width, height). The model's anchor priors (normalized).
        num_classes: int. The number of classes.
        ignore_threshold: float. Predictions whose box overlaps a ground truth by more than
            this are not pushed to objectness 0. Defaults to 0.6.
        box_weight: float. Weight of the box term. Defaults to 1.0.
        class_weight: float. Weight of the class term. Defaults to 1.0.
    """

    def __init__(self, anchors, num_classes, ignore_threshold=0.6, box_weight=1.0, class_weight=1.0,
                 name="yolo_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.anchors = [[float(w), float(h)] for w, h in anchors]
        self.num_classes = num_classes
        self.ignore_threshold = ignore_threshold
        self.box_weight = box_weight
        self.class_weight = class_weight

    def call(self, y_true, y_pred):
        outputs = tf.cast(y_pred, tf.float32)  # (B, G, G, A, 5 + K)
        batch, grid = tf.shape(outputs)[0], tf.shape(outputs)[1]
        num_anchors = len(self.anchors)
        anchors = tf.constant(self.anchors, tf.float32)  # (A, 2)
        boxes, classes, valid = detection_common.split_ground_truth(y_true)  # (B, M, 4), (B, M), (B, M)

        # --- Target assignment: the centre's cell, the best-fitting anchor shape ---
        center_y, center_x, height, width = detection_common.to_center(boxes)  # (B, M) each
        size = tf.cast(grid, tf.float32)
        row = tf.clip_by_value(tf.cast(tf.floor(center_y * size), tf.int32), 0, grid - 1)
        col = tf.clip_by_value(tf.cast(tf.floor(center_x * size), tf.int32), 0, grid - 1)
        overlap = tf.minimum(width[..., None], anchors[:, 0]) * tf.minimum(height[..., None], anchors[:, 1])
        shape_iou = overlap / (width[..., None] * height[..., None] + anchors[:, 0] * anchors[:, 1] - overlap + 1e-9)
        anchor = tf.argmax(shape_iou, axis=-1, output_type=tf.int32)  # (B, M)
        image = tf.broadcast_to(tf.range(batch)[:, None], tf.shape(row))
        indices = tf.boolean_mask(tf.stack([image, row, col, anchor], axis=-1), valid)  # (P, 4)
        chosen = tf.gather(anchors, tf.boolean_mask(anchor, valid))  # (P, 2)
        target_values = tf.stack([
            tf.ones_like(chosen[:, 0]),
            tf.boolean_mask(center_y * size, valid) - tf.cast(indices[:, 1], tf.float32),
            tf.boolean_mask(center_x * size, valid) - tf.cast(indices[:, 2], tf.float32),
            tf.math.log(tf.maximum(tf.boolean_mask(height, valid), 1e-6) / chosen[:, 1]),
            tf.math.log(tf.maximum(tf.boolean_mask(width, valid), 1e-6) / chosen[:, 0]),
            2.0 - tf.boolean_mask(height * width, valid),
            tf.cast(tf.boolean_mask(classes, valid), tf.float32),
        ], axis=-1)  # (P, 7): responsible, t_y, t_x, t_h, t_w, box scale, class
        targets = tf.tensor_scatter_nd_update(
            tf.zeros(tf.stack([batch, grid, grid, num_anchors, 7])), indices, target_values
        )
        responsible = targets[..., 0]  # (B, G, G, A)

        # --- Ignore: unassigned predictions that already overlap a ground truth well ---
        predicted = tf.reshape(decode_boxes(outputs, self.anchors), tf.stack([batch, -1, 4]))
        iou = detection_common.pairwise_iou(predicted, boxes)  # (B, GGA, M)
        iou = tf.where(valid[:, None, :], iou, 0.0)
        best = tf.reshape(_max_or_zero(iou), tf.shape(responsible))
        empty = (1.0 - responsible) * tf.cast(best <= self.ignore_threshold, tf.float32)

        objectness = outputs[..., 4]
        object_loss = responsible * tf.nn.sigmoid_cross_entropy_with_logits(tf.ones_like(objectness), objectness)
        empty_loss = empty * tf.nn.sigmoid_cross_entropy_with_logits(tf.zeros_like(objectness), objectness)
        offsets = tf.stack([tf.sigmoid(outputs[..., 0]), tf.sigmoid(outputs[..., 1]), outputs[..., 2], outputs[..., 3]], -1)
        box_loss = responsible * targets[..., 5] * tf.reduce_sum(tf.square(offsets - targets[..., 1:5]), axis=-1)
        labels = tf.cast(targets[..., 6], tf.int32)
        class_loss = responsible * tf.nn.sparse_softmax_cross_entropy_with_logits(labels, outputs[..., 5:])
        total = object_loss + empty_loss + self.box_weight * box_loss + self.class_weight * class_loss
        return tf.reduce_sum(total, axis=[1, 2, 3])  # (B,): Keras averages over the batch

    def get_config(self):
        return {
            **super().get_config(),
            "anchors": self.anchors,
            "num_classes": self.num_classes,
            "ignore_threshold": self.ignore_threshold,
            "box_weight": self.box_weight,
            "class_weight": self.class_weight,
        }


def _max_or_zero(iou):
    # reduce_max over an empty axis (no ground truth padded in) gives -inf; 0 is meant.
    return tf.maximum(tf.reduce_max(tf.concat([iou, tf.zeros_like(iou[..., :1])], axis=-1), axis=-1), 0.0)


# === Builders ===


@register(kind="classifier")
def darknet_tiny(
    input_shape=(224, 224, 3),
    num_classes=1000,
    classifier_activation="softmax",
    dropout_rate=0.0,
    name="darknet_tiny",
    width=16,
):
    """Tiny Darknet: 3x3 conv-BN-leaky units and max-pools, strides 2 to 32 (YOLO's own CPU backbone).

    0.6M parameters at width 16 (filters 16, 32, 64, 128, 256 and a 256-wide stride-32 conv).
    A stride-2 stem keeps full-resolution work small, so it trains at 320 px on a CPU.

    Args:
        input_shape: tuple. The (height, width, channels) of the input images.
            Defaults to (224, 224, 3).
        num_classes: int. The number of classes. Defaults to 1000.
        classifier_activation: str or None. The activation of the last layer; None gives
            logits. Defaults to "softmax".
        dropout_rate: float. The dropout rate before the classifier. Defaults to 0.0.
        name: str. The name of the model. Defaults to "darknet_tiny".
        width: int. Filters of the stem (doubled per stage). Defaults to 16.

    Returns:
        A functional `keras.Model` mapping (B, H, W, C) images to (B, num_classes).
    """
    input_shape = cnn_common.check_arguments(input_shape, num_classes, dropout_rate)
    inputs = cnn_common.image_input(input_shape)
    x = detection_common.leaky_conv_bn(inputs, width, 3, strides=2, name="stem")  # stride 2
    for index, multiple in enumerate((2, 4, 8, 16), start=1):
        x = layers.MaxPooling2D(2, padding="same", name=f"stage{index}_pool")(x)  # stride 2^(index+1)
        x = detection_common.leaky_conv_bn(x, width * multiple, 3, name=f"stage{index}")
    x = detection_common.leaky_conv_bn(x, width * 16, 3, name="stage5")
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = cnn_common.classifier_head(x, num_classes, classifier_activation, dropout_rate)
    return keras.Model(inputs, outputs, name=name)


@register(kind="detector")
def yolo_v2(
    input_shape=(320, 320, 3),
    num_classes=20,
    anchors=((0.08, 0.08), (0.16, 0.16), (0.3, 0.3), (0.5, 0.5), (0.8, 0.8)),
    backbone="darknet_tiny",
    stride=16,
    head_filters=128,
    name="yolo_v2",
):
    """YOLO v2-style grid detector on a registry backbone.

    Args:
        input_shape: tuple. (size, size, channels), size a multiple of 2 * stride.
            Defaults to (320, 320, 3).
        num_classes: int. The number of classes. Defaults to 20.
        anchors: list of (width, height). Anchor priors normalized to the input side, e.g.
            from `kmeans_anchors` on the training boxes. Defaults to 5 square priors.
        backbone: str or keras.Model. The feature extractor: a classifier of the registry, a
            pretrained backbone's name (`applications.backbones.names()`) or a feature-extractor
            model such as `backbones.feature_extractor(name, input_shape, weights)` (its inputs
            then in [-1, 1]). Defaults to "darknet_tiny".
        stride: int. The grid's output stride (16: a 20x20 grid at 320 px). Defaults to 16.
        head_filters: int. Width of the two 3x3 head convs. Defaults to 128.
        name: str. The name of the model. Defaults to "yolo_v2".

    Returns:
        A functional `keras.Model` mapping (B, S, S, C) images to raw (B, G, G, A, 5 + K)
        predictions (G = S / stride); `losses(model)` and `detections(model, ...)` of this
        module train and decode it.
    """
    input_shape = detection_common.check_arguments(input_shape, num_classes, 2 * stride)
    anchors = [[float(w), float(h)] for w, h in anchors]
    if not anchors or any(w <= 0 or h <= 0 for w, h in anchors):
        raise ValueError(f"`anchors` must be a non-empty list of positive (width, height). Received: anchors={anchors}")
    inputs, features = detection_common.backbone_features(backbone, input_shape, [stride, 2 * stride])
    x = features[stride]  # (B, G, G, C)
    if 2 * stride in features:  # context from one level coarser, upsampled to the grid
        coarse = detection_common.leaky_conv_bn(features[2 * stride], head_filters, 1, name="lateral")
        coarse = layers.UpSampling2D(2, name="lateral_up")(coarse)
        x = layers.Concatenate(name="fuse")([x, coarse])
    x = detection_common.leaky_conv_bn(x, head_filters, 3, name="head1")
    x = detection_common.leaky_conv_bn(x, head_filters, 3, name="head2")
    bias = np.zeros((len(anchors), 5 + num_classes), np.float32)
    bias[:, 4] = np.log(OBJECTNESS_PRIOR / (1 - OBJECTNESS_PRIOR))
    x = layers.Conv2D(
        len(anchors) * (5 + num_classes), 1, name="predictions",
        kernel_initializer=keras.initializers.RandomNormal(stddev=0.01),
        bias_initializer=keras.initializers.Constant(bias.ravel()),
    )(x)
    outputs = YoloOutput(anchors, num_classes, name="yolo_output")(x)
    return keras.Model(inputs, outputs, name=name)


# === The head's interface to a task ===


def losses(model):
    """The loss `compile` takes for a `yolo_v2` model (found by its `YoloOutput` layer)."""
    head = detection_common.find_layer(model, YoloOutput)
    return YoloLoss(head.anchors, head.num_classes)


def detections(model, outputs, max_detections=100, iou_threshold=0.5, score_threshold=0.01):
    """Raw outputs of `model` -> boxes (normalized yxyx), scores, classes, num_detections after NMS."""
    head = detection_common.find_layer(model, YoloOutput)
    outputs = tf.cast(outputs, tf.float32)
    batch = tf.shape(outputs)[0]
    boxes = tf.reshape(decode_boxes(outputs, head.anchors), tf.stack([batch, -1, 4]))
    scores = tf.sigmoid(outputs[..., 4:5]) * tf.nn.softmax(outputs[..., 5:])  # (B, G, G, A, K)
    scores = tf.reshape(scores, tf.stack([batch, -1, head.num_classes]))
    return detection_common.non_max_suppression(boxes, scores, max_detections, iou_threshold, score_threshold)
