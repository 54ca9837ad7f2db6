"""Two-stage detection, Faster R-CNN style (Ren, He, Girshick & Sun, 2015), on a registry or pretrained backbone.

Stage one, the Region Proposal Network: a 3x3 conv on the backbone's stride-`stride` features,
then for each of A anchors per cell (every size x every aspect ratio) an objectness logit and
box deltas against the anchor. Proposals: decode the deltas, keep the `pre_nms_top_k` best,
NMS at `proposal_iou`, keep `train_proposals` (training) or `test_proposals` (inference) per
image, all inside the graph, with no gradient through the boxes.

Stage two: RoI align (`tf.image.crop_and_resize` to 2x the pooled size, then 2x2 max-pool) of
every proposal on the same features, two fully connected layers, then class logits
(background + K classes) and class-agnostic box deltas against the proposal.

Losses (target assignment inside the graph, per image):
- RPN (`RpnLoss`): an anchor is positive when its IoU with some ground truth is >= 0.7 or it
  is a ground truth's best anchor, negative below 0.3, ignored between; binary cross-entropy
  with positives and negatives weighted to half the loss each (in place of sampling 256
  anchors at 1:1), smooth-L1 deltas on the positives.
- Head (`HeadLoss`): a proposal is foreground when its IoU with a ground truth is >= 0.5 (its
  class), else background; cross-entropy with the background capped at 3x the foreground
  weight (in place of sampling at 1:3), smooth-L1 deltas (variances 0.1, 0.1, 0.2, 0.2) on
  the foreground. Training is approximate joint training, as in the paper's released code.

Decoding: softmax scores of the K classes per proposal, refined boxes, per-class NMS.

Reference:
- [Faster R-CNN: Towards Real-Time Object Detection with Region Proposal Networks](https://arxiv.org/abs/1506.01497)
"""

import keras
import numpy as np
import tensorflow as tf
from keras import layers

from applications import detection_common
from applications.registry import register

HEAD_VARIANCES = (0.1, 0.1, 0.2, 0.2)
OUTPUTS = ("rpn", "head")  # the model's outputs; each takes the same ground truth (B, M, 5)


def make_anchors(feature_size, stride, image_size, sizes, ratios):
    """Anchors of every cell (row-major), then every size x ratio: (F * F * A, 4) normalized yxyx.

    Args:
        feature_size: int. The feature map's side F.
        stride: int. Input pixels per feature cell.
        image_size: int. The input side S.
        sizes: list of float. Anchor sides (sqrt of the area) as fractions of S.
        ratios: list of float. Aspect ratios height / width.
    """
    centers = (np.arange(feature_size) + 0.5) * stride / image_size
    center_y, center_x = np.meshgrid(centers, centers, indexing="ij")  # (F, F)
    shapes = np.array([
        (size * np.sqrt(ratio), size / np.sqrt(ratio)) for size in sizes for ratio in ratios
    ])  # (A, 2) height, width
    cy = center_y[:, :, None]
    cx = center_x[:, :, None]
    anchors = np.stack(
        [cy - shapes[:, 0] / 2, cx - shapes[:, 1] / 2, cy + shapes[:, 0] / 2, cx + shapes[:, 1] / 2], axis=-1
    )  # (F, F, A, 4)
    return anchors.reshape(-1, 4).astype(np.float32)


class _AnchorConfig:
    """The fields that define the anchors, shared by the proposal layer and the RPN loss."""

    def _set_anchors(self, feature_size, stride, image_size, sizes, ratios):
        self.feature_size = int(feature_size)
        self.stride = int(stride)
        self.image_size = int(image_size)
        self.sizes = [float(size) for size in sizes]
        self.ratios = [float(ratio) for ratio in ratios]

    def anchors(self):
        return tf.constant(make_anchors(self.feature_size, self.stride, self.image_size, self.sizes, self.ratios))

    def _anchor_config(self):
        return {
            "feature_size": self.feature_size, "stride": self.stride, "image_size": self.image_size,
            "sizes": self.sizes, "ratios": self.ratios,
        }


@keras.saving.register_keras_serializable(package="applications")
class Proposals(_AnchorConfig, layers.Layer):
    """RPN outputs (B, N, 5) -> proposals (B, P, 4) normalized yxyx, zero-padded, no gradient.

    Args:
        feature_size, stride, image_size, sizes, ratios: the anchors (see `make_anchors`).
        pre_nms_top_k: int. Best-scored boxes kept before NMS.
        train_proposals: int. Proposals per image in training.
        test_proposals: int. Proposals per image at inference.
        proposal_iou: float. The NMS IoU threshold.
        min_size: float. Boxes smaller than this (fraction of S) on a side are dropped.
    """

    def __init__(self, feature_size, stride, image_size, sizes, ratios, pre_nms_top_k=600, train_proposals=64,
                 test_proposals=100, proposal_iou=0.7, min_size=0.01, **kwargs):
        kwargs.setdefault("dtype", "float32")
        super().__init__(**kwargs)
        self._set_anchors(feature_size, stride, image_size, sizes, ratios)
        self.pre_nms_top_k = pre_nms_top_k
        self.train_proposals = train_proposals
        self.test_proposals = test_proposals
        self.proposal_iou = proposal_iou
        self.min_size = min_size

    def call(self, rpn, training=None):
        rpn = tf.stop_gradient(tf.cast(rpn, tf.float32))
        count = self.train_proposals if training else self.test_proposals
        boxes = tf.clip_by_value(detection_common.decode_deltas(self.anchors()[None], rpn[..., 1:5]), 0.0, 1.0)
        scores = tf.sigmoid(rpn[..., 0])  # (B, N)
        height, width = boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]
        scores = tf.where((height >= self.min_size) & (width >= self.min_size), scores, -1.0)
        top = min(self.pre_nms_top_k, len(self.sizes) * len(self.ratios) * self.feature_size**2)
        scores, order = tf.math.top_k(scores, k=top)  # (B, k)
        boxes = tf.gather(boxes, order, batch_dims=1)  # (B, k, 4)
        result = tf.image.combined_non_max_suppression(
            boxes[:, :, None, :], scores[:, :, None], max_output_size_per_class=count, max_total_size=count,
            iou_threshold=self.proposal_iou, score_threshold=0.0, pad_per_class=False, clip_boxes=True,
        )
        return tf.stop_gradient(result.nmsed_boxes)  # (B, P, 4); padding rows are all zero

    def compute_output_shape(self, input_shape):
        return (input_shape[0], None, 4)

    def get_config(self):
        return {
            **super().get_config(), **self._anchor_config(), "pre_nms_top_k": self.pre_nms_top_k,
            "train_proposals": self.train_proposals, "test_proposals": self.test_proposals,
            "proposal_iou": self.proposal_iou, "min_size": self.min_size,
        }


@keras.saving.register_keras_serializable(package="applications")
class RoIAlign(layers.Layer):
    """[features (B, h, w, C), boxes (B, P, 4)] -> (B, P, pool * pool * C) pooled and flattened.

    Bilinear sampling at 2 * pool points a side (`tf.image.crop_and_resize`), then a 2x2
    max-pool: RoI align with 4 samples per bin, max-reduced.

    Args:
        pool_size: int. The pooled side. Defaults to 7.
    """

    def __init__(self, pool_size=7, **kwargs):
        super().__init__(**kwargs)
        self.pool_size = pool_size

    def call(self, inputs):
        features, boxes = inputs
        batch, count = tf.shape(boxes)[0], tf.shape(boxes)[1]
        flat = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
        index = tf.repeat(tf.range(batch), count)
        crops = tf.image.crop_and_resize(
            tf.cast(features, tf.float32), flat, index, (2 * self.pool_size, 2 * self.pool_size)
        )
        crops = tf.nn.max_pool2d(crops, 2, 2, "VALID")  # (B * P, pool, pool, C)
        channels = features.shape[-1]
        return tf.cast(tf.reshape(crops, tf.stack([batch, count, self.pool_size**2 * channels])), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[1][0], input_shape[1][1], self.pool_size**2 * input_shape[0][-1])

    def get_config(self):
        return {**super().get_config(), "pool_size": self.pool_size}


@keras.saving.register_keras_serializable(package="applications")
class RpnLoss(_AnchorConfig, keras.losses.Loss):
    """The RPN loss with its anchor assignment (see the module docstring); one value per image.

    Args:
        feature_size, stride, image_size, sizes, ratios: the anchors (see `make_anchors`).
        positive_iou: float. Defaults to 0.7.
        negative_iou: float. Defaults to 0.3.
        box_weight: float. Weight of the box term. Defaults to 1.0.
    """

    def __init__(self, feature_size, stride, image_size, sizes, ratios, positive_iou=0.7, negative_iou=0.3,
                 box_weight=1.0, name="rpn_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self._set_anchors(feature_size, stride, image_size, sizes, ratios)
        self.positive_iou = positive_iou
        self.negative_iou = negative_iou
        self.box_weight = box_weight

    def call(self, y_true, y_pred):
        rpn = tf.cast(y_pred, tf.float32)  # (B, N, 5)
        anchors = self.anchors()  # (N, 4)
        boxes, _, valid = detection_common.split_ground_truth(y_true)
        iou = detection_common.pairwise_iou(anchors[None], boxes)  # (B, N, M)
        iou = tf.where(valid[:, None, :], iou, -1.0)
        padded = tf.concat([iou, -tf.ones_like(iou[..., :1])], axis=-1)  # an always-present column
        best_iou = tf.reduce_max(padded, axis=-1)  # (B, N)
        match = tf.minimum(tf.argmax(padded, axis=-1, output_type=tf.int32), tf.shape(iou)[-1] - 1)
        best_per_box = tf.reduce_max(tf.concat([iou, -tf.ones_like(iou[:, :1])], axis=1), axis=1)  # (B, M)
        is_best = tf.reduce_any((iou >= best_per_box[:, None, :]) & (iou > 0.0) & valid[:, None, :], axis=-1)
        positive = (best_iou >= self.positive_iou) | is_best
        negative = (best_iou < self.negative_iou) & ~positive
        positive, negative = tf.cast(positive, tf.float32), tf.cast(negative, tf.float32)
        num_positive = tf.maximum(tf.reduce_sum(positive, axis=1, keepdims=True), 1.0)
        num_negative = tf.maximum(tf.reduce_sum(negative, axis=1, keepdims=True), 1.0)
        weights = 0.5 * positive / num_positive + 0.5 * negative / num_negative
        objectness = tf.nn.sigmoid_cross_entropy_with_logits(positive, rpn[..., 0])
        object_loss = tf.reduce_sum(weights * objectness, axis=1)
        matched = tf.gather(boxes, match, batch_dims=1)  # (B, N, 4)
        targets = detection_common.encode_deltas(anchors[None], matched)
        box = tf.reduce_sum(detection_common.smooth_l1(rpn[..., 1:5] - targets), axis=-1)
        box_loss = tf.reduce_sum(positive * box, axis=1) / num_positive[:, 0]
        return object_loss + self.box_weight * box_loss

    def get_config(self):
        return {
            **super().get_config(), **self._anchor_config(), "positive_iou": self.positive_iou,
            "negative_iou": self.negative_iou, "box_weight": self.box_weight,
        }


@keras.saving.register_keras_serializable(package="applications")
class HeadLoss(keras.losses.Loss):
    """The second stage's loss with its proposal assignment (see the module docstring).

    `y_pred` is the head output (B, P, 4 + (K + 1) + 4): proposals, class logits, deltas.

    Args:
        num_classes: int. The number of object classes K (background excluded).
        foreground_iou: float. Defaults to 0.5.
        background_ratio: float. Background weight at most this times the foreground count.
            Defaults to 3.0.
        box_weight: float. Weight of the box term. Defaults to 1.0.
    """

    def __init__(self, num_classes, foreground_iou=0.5, background_ratio=3.0, box_weight=1.0, name="head_loss",
                 **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.foreground_iou = foreground_iou
        self.background_ratio = background_ratio
        self.box_weight = box_weight

    def call(self, y_true, y_pred):
        head = tf.cast(y_pred, tf.float32)
        rois = tf.stop_gradient(head[..., :4])
        logits = head[..., 4 : 5 + self.num_classes]
        deltas = head[..., 5 + self.num_classes :]
        boxes, classes, valid = detection_common.split_ground_truth(y_true)
        iou = detection_common.pairwise_iou(rois, boxes)  # (B, P, M)
        iou = tf.where(valid[:, None, :], iou, -1.0)
        padded = tf.concat([iou, -tf.ones_like(iou[..., :1])], axis=-1)
        best_iou = tf.reduce_max(padded, axis=-1)
        match = tf.minimum(tf.argmax(padded, axis=-1, output_type=tf.int32), tf.shape(iou)[-1] - 1)
        real = detection_common.box_area(rois) > 0.0
        foreground = real & (best_iou >= self.foreground_iou)
        background = real & ~foreground
        labels = tf.where(foreground, tf.gather(classes, match, batch_dims=1) + 1, 0)
        foreground, background = tf.cast(foreground, tf.float32), tf.cast(background, tf.float32)
        num_foreground = tf.reduce_sum(foreground, axis=1, keepdims=True)
        num_background = tf.maximum(tf.reduce_sum(background, axis=1, keepdims=True), 1.0)
        background_weight = tf.minimum(1.0, tf.maximum(self.background_ratio * num_foreground, 16.0) / num_background)
        weights = foreground + background * background_weight
        cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
        class_loss = tf.math.divide_no_nan(tf.reduce_sum(weights * cross_entropy, 1), tf.reduce_sum(weights, 1))
        matched = tf.gather(boxes, match, batch_dims=1)
        targets = detection_common.encode_deltas(rois, matched, HEAD_VARIANCES)
        box = tf.reduce_sum(detection_common.smooth_l1(deltas - targets, beta=1.0), axis=-1)
        box_loss = tf.reduce_sum(foreground * box, axis=1) / tf.maximum(num_foreground[:, 0], 1.0)
        return class_loss + self.box_weight * box_loss

    def get_config(self):
        return {
            **super().get_config(), "num_classes": self.num_classes, "foreground_iou": self.foreground_iou,
            "background_ratio": self.background_ratio, "box_weight": self.box_weight,
        }


@register(kind="detector")
def faster_rcnn(
    input_shape=(320, 320, 3),
    num_classes=20,
    backbone="darknet_tiny",
    stride=16,
    anchor_sizes=(0.1, 0.2, 0.4),
    anchor_ratios=(0.5, 1.0, 2.0),
    rpn_filters=128,
    head_units=256,
    pool_size=7,
    train_proposals=64,
    test_proposals=100,
    name="faster_rcnn",
):
    """Faster R-CNN-style two-stage detector: RPN, proposal NMS, RoI align, classification + boxes.

    Args:
        input_shape: tuple. (size, size, channels), size a multiple of `stride`.
            Defaults to (320, 320, 3).
        num_classes: int. The number of object classes (background excluded). Defaults to 20.
        backbone: str or keras.Model. The feature extractor: a classifier of the registry, a
            pretrained backbone's name (`applications.backbones.names()`) or a feature-extractor
            model such as `backbones.feature_extractor(name, input_shape, weights)` (its inputs
            then in [-1, 1]). Defaults to "darknet_tiny".
        stride: int. Output stride of the features both stages use. Defaults to 16.
        anchor_sizes: list of float. Anchor sides as fractions of the input side.
            Defaults to (0.1, 0.2, 0.4).
        anchor_ratios: list of float. Anchor aspect ratios (height / width).
            Defaults to (0.5, 1.0, 2.0).
        rpn_filters: int. Width of the RPN's 3x3 conv. Defaults to 128.
        head_units: int. Width of the two fully connected layers of stage two. Defaults to 256.
        pool_size: int. RoI align output side. Defaults to 7.
        train_proposals: int. Proposals per image in training. Defaults to 64.
        test_proposals: int. Proposals per image at inference. Defaults to 100.
        name: str. The name of the model. Defaults to "faster_rcnn".

    Returns:
        A functional `keras.Model` mapping (B, S, S, C) images to a dict: `rpn` (B, N, 5)
        anchor objectness logits and deltas, and `head` (B, P, 4 + K + 1 + 4) proposals, class
        logits (background first) and deltas; `losses(model)` and `detections(model, ...)` of
        this module train and decode it.
    """
    input_shape = detection_common.check_arguments(input_shape, num_classes, stride)
    if not anchor_sizes or not anchor_ratios or min(anchor_sizes) <= 0 or min(anchor_ratios) <= 0:
        raise ValueError(
            f"`anchor_sizes` and `anchor_ratios` must be non-empty and positive. Received: "
            f"anchor_sizes={anchor_sizes}, anchor_ratios={anchor_ratios}"
        )
    num_anchors = len(anchor_sizes) * len(anchor_ratios)
    inputs, features = detection_common.backbone_features(backbone, input_shape, [stride])
    features = features[stride]  # (B, F, F, C)
    feature_size = input_shape[0] // stride
    if features.shape[1] != feature_size:
        raise ValueError(
            f"Backbone '{getattr(backbone, 'name', backbone)}' gives a {features.shape[1]}-cell map at stride {stride}, expected "
            f"{feature_size} at input_shape={input_shape}; use a size that divides evenly."
        )

    # === Region proposal network ===
    x = layers.Conv2D(rpn_filters, 3, padding="same", activation="relu", name="rpn_conv")(features)
    objectness = layers.Conv2D(num_anchors, 1, name="rpn_objectness")(x)  # (B, F, F, A)
    deltas = layers.Conv2D(
        4 * num_anchors, 1, kernel_initializer=keras.initializers.RandomNormal(stddev=0.01), name="rpn_deltas"
    )(x)  # (B, F, F, 4A)
    objectness = layers.Reshape((-1, 1), name="rpn_objectness_flat")(objectness)
    deltas = layers.Reshape((-1, 4), name="rpn_deltas_flat")(deltas)
    rpn = layers.Concatenate(dtype="float32", name="rpn")([objectness, deltas])  # (B, N, 5)
    proposals = Proposals(
        feature_size, stride, input_shape[0], anchor_sizes, anchor_ratios,
        train_proposals=train_proposals, test_proposals=test_proposals, name="proposals",
    )(rpn)  # (B, P, 4)

    # === Second stage ===
    x = RoIAlign(pool_size, name="roi_align")([features, proposals])  # (B, P, pool * pool * C)
    x = layers.Dense(head_units, activation="relu", name="head_fc1")(x)
    x = layers.Dense(head_units, activation="relu", name="head_fc2")(x)
    class_logits = layers.Dense(num_classes + 1, name="head_classes")(x)
    box_deltas = layers.Dense(
        4, kernel_initializer=keras.initializers.RandomNormal(stddev=0.001), name="head_deltas"
    )(x)
    head = layers.Concatenate(dtype="float32", name="head")([proposals, class_logits, box_deltas])
    return keras.Model(inputs, {"rpn": rpn, "head": head}, name=name)


# === The head's interface to a task ===


def losses(model):
    """The losses `compile` takes for a `faster_rcnn` model: one per output, both on the same ground truth."""
    proposals = detection_common.find_layer(model, Proposals)
    classes = _find_dense(model, "head_classes")
    return {
        "rpn": RpnLoss(**proposals._anchor_config()),
        "head": HeadLoss(classes.units - 1),
    }


def _find_dense(model, name):
    for layer in model.layers:
        if layer.name == name:
            return layer
        if isinstance(layer, keras.Model):
            found = _find_dense(layer, name)
            if found is not None:
                return found
    return None


def detections(model, outputs, max_detections=100, iou_threshold=0.5, score_threshold=0.01):
    """Model outputs -> boxes (normalized yxyx), scores, classes, num_detections after NMS."""
    head = tf.cast(outputs["head"], tf.float32)
    num_classes = _find_dense(model, "head_classes").units - 1
    rois = head[..., :4]
    probabilities = tf.nn.softmax(head[..., 4 : 5 + num_classes])[..., 1:]  # (B, P, K)
    probabilities *= tf.cast(detection_common.box_area(rois) > 0.0, tf.float32)[..., None]  # padding rows
    boxes = tf.clip_by_value(
        detection_common.decode_deltas(rois, head[..., 5 + num_classes :], HEAD_VARIANCES), 0.0, 1.0
    )
    return detection_common.non_max_suppression(boxes, probabilities, max_detections, iou_threshold, score_threshold)
