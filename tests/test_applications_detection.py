"""Tests for the detection builders (`applications/yolo.py`, `applications/rpn.py`) and their heads.

Both heads on a small input (64x64): raw outputs, one fit step on their own losses that reaches
the backbone, decoding with NMS, `.keras` round trips; the k-means anchors; the target
assignment and box codings (a prediction made from the targets decodes back to the boxes).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import applications
from applications import detection_common
from applications import rpn
from applications import yolo
from tests import helpers

SHAPE = (64, 64, 3)
NUM_CLASSES = 3


def ground_truth():
    """(2, 4, 5) normalized yxyx + class, class -1 padding; the second image holds one box."""
    target = np.zeros((2, 4, 5), np.float32)
    target[..., 4] = -1
    target[0, 0] = [0.1, 0.1, 0.4, 0.3, 1]
    target[0, 1] = [0.5, 0.55, 0.9, 0.95, 0]
    target[1, 0] = [0.2, 0.3, 0.6, 0.5, 2]
    return target


CASES = [
    ("yolo_v2", yolo, {"anchors": [[0.2, 0.3], [0.4, 0.4]], "stride": 16}),
    ("yolo_v2", yolo, {"anchors": [[0.3, 0.3]], "backbone": "resnet18", "stride": 8, "head_filters": 16}),
    ("faster_rcnn", rpn, {"anchor_sizes": [0.2, 0.4], "stride": 8, "head_units": 32, "train_proposals": 16}),
    ("faster_rcnn", rpn, {"backbone": "vgg11", "stride": 16, "head_units": 32, "rpn_filters": 16}),
]


@pytest.mark.parametrize("name,module,kwargs", CASES, ids=[f"{c[0]}-{c[2].get('backbone', 'darknet_tiny')}" for c in CASES])
def test_detector(name, module, kwargs, tmp_path):
    keras.utils.set_random_seed(0)
    model = applications.get(name)(input_shape=SHAPE, num_classes=NUM_CLASSES, **kwargs)
    x = np.random.default_rng(0).normal(size=(2, *SHAPE)).astype("float32")
    y = ground_truth()
    loss = module.losses(model)
    targets = {key: y for key in module.OUTPUTS} if module.OUTPUTS else y
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, run_eagerly=True)
    first = np.array(model.trainable_weights[0])
    history = model.fit(x, targets, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    assert not np.array_equal(np.array(model.trainable_weights[0]), first)  # the gradient reaches the stem

    found = module.detections(model, model(x, training=False), max_detections=10, score_threshold=0.0)
    assert found["boxes"].shape == (2, 10, 4) and found["classes"].shape == (2, 10)
    assert found["num_detections"].shape == (2,)
    boxes = found["boxes"].numpy()
    assert (boxes >= 0).all() and (boxes <= 1).all()

    helpers.keras_round_trip(model, x, tmp_path, atol=1e-4, rtol=1e-4)


def test_registered_and_documented():
    for name in ("yolo_v2", "faster_rcnn", "darknet_tiny"):
        doc = applications.get(name).__doc__
        assert "Args:" in doc and "num_classes: int." in doc


def test_darknet_tiny_is_a_classifier_and_a_backbone():
    model = applications.get("darknet_tiny")(input_shape=(64, 64, 3), num_classes=5)
    assert model.output_shape == (None, 5)
    _, features = detection_common.backbone_features("darknet_tiny", (64, 64, 3), [8, 16, 32])
    assert {stride: tuple(f.shape[1:3]) for stride, f in features.items()} == {8: (8, 8), 16: (4, 4), 32: (2, 2)}


def test_bad_arguments():
    with pytest.raises(ValueError, match="multiple of 32"):
        applications.get("yolo_v2")(input_shape=(72, 72, 3), num_classes=2)
    with pytest.raises(ValueError, match="square"):
        applications.get("faster_rcnn")(input_shape=(64, 96, 3), num_classes=2)
    with pytest.raises(ValueError, match="anchors"):
        applications.get("yolo_v2")(input_shape=SHAPE, num_classes=2, anchors=[])


# === Anchors and codings ===


def test_kmeans_anchors_find_the_shape_clusters():
    rng = np.random.default_rng(0)
    centers = np.array([[0.05, 0.05], [0.1, 0.3], [0.4, 0.2]])
    sizes = np.concatenate([center * rng.uniform(0.9, 1.1, size=(200, 2)) for center in centers])
    anchors = yolo.kmeans_anchors(sizes, 3)
    np.testing.assert_allclose(anchors, centers, rtol=0.08)  # sorted by area, as the centres are
    assert yolo.mean_best_iou(sizes, anchors) > 0.85 > yolo.mean_best_iou(sizes, anchors[:1])
    assert len(yolo.kmeans_anchors([[0.1, 0.1]] * 5, 4)) == 1  # fewer distinct shapes than anchors


def perfect_yolo_outputs(target, anchors, grid, num_classes):
    """The raw outputs a perfect YOLO head would give: targets inverted through the decoding."""
    outputs = np.full((len(target), grid, grid, len(anchors), 5 + num_classes), -10.0, np.float32)
    anchors = np.asarray(anchors)
    for b, image in enumerate(target):
        for y1, x1, y2, x2, cls in image:
            if cls < 0:
                continue
            cy, cx, h, w = (y1 + y2) / 2, (x1 + x2) / 2, y2 - y1, x2 - x1
            row, col = int(cy * grid), int(cx * grid)
            a = int(np.argmax(yolo.shape_iou([[w, h]], anchors)[0]))
            logit = lambda p: np.log(np.clip(p, 1e-4, 1 - 1e-4) / (1 - np.clip(p, 1e-4, 1 - 1e-4)))  # noqa: E731
            outputs[b, row, col, a, :5] = [logit(cy * grid - row), logit(cx * grid - col),
                                           np.log(h / anchors[a, 1]), np.log(w / anchors[a, 0]), 10.0]
            outputs[b, row, col, a, 5 + int(cls)] = 10.0
    return outputs


def test_yolo_targets_decode_back_and_score_low():
    anchors = [[0.2, 0.3], [0.4, 0.4]]
    target = ground_truth()
    outputs = perfect_yolo_outputs(target, anchors, 4, NUM_CLASSES)
    loss = yolo.YoloLoss(anchors, NUM_CLASSES)
    random = np.random.default_rng(0).normal(size=outputs.shape).astype("float32")
    assert float(loss(target, outputs)) < 0.05 < float(loss(target, random))

    model = applications.get("yolo_v2")(input_shape=SHAPE, num_classes=NUM_CLASSES, anchors=anchors)
    found = yolo.detections(model, tf.constant(outputs), score_threshold=0.5)
    assert found["num_detections"].numpy().tolist() == [2, 1]
    np.testing.assert_allclose(found["boxes"][1, 0], target[1, 0, :4], atol=1e-4)
    assert found["classes"][1, 0] == 2


def test_box_deltas_round_trip():
    anchors = tf.constant([[0.1, 0.1, 0.3, 0.2], [0.5, 0.4, 0.9, 0.9]])
    boxes = tf.constant([[0.12, 0.05, 0.35, 0.3], [0.45, 0.5, 0.8, 0.7]])
    for variances in ((1.0, 1.0, 1.0, 1.0), rpn.HEAD_VARIANCES):
        deltas = detection_common.encode_deltas(anchors, boxes, variances)
        np.testing.assert_allclose(detection_common.decode_deltas(anchors, deltas, variances), boxes, atol=1e-6)


def test_anchors_and_rpn_assignment():
    anchors = rpn.make_anchors(4, 16, 64, [0.25, 0.5], [0.5, 1.0, 2.0])
    assert anchors.shape == (4 * 4 * 6, 4)
    np.testing.assert_allclose(anchors[6 * 5 + 1], [0.375 - 0.125, 0.375 - 0.125, 0.375 + 0.125, 0.375 + 0.125])
    loss = rpn.RpnLoss(4, 16, 64, [0.25, 0.5], [0.5, 1.0, 2.0])
    target = np.zeros((1, 2, 5), np.float32)
    target[..., 4] = -1
    target[0, 0] = [*anchors[6 * 5 + 1], 0]  # exactly one anchor
    # A perfect RPN: objectness only on that anchor, zero deltas.
    perfect = np.zeros((1, len(anchors), 5), np.float32)
    perfect[..., 0] = -12
    perfect[0, 6 * 5 + 1, 0] = 12
    wrong = perfect.copy()
    wrong[..., 0] *= -1
    assert float(loss(target, perfect)) < 1e-3 < 1.0 < float(loss(target, wrong))


def test_proposals_are_nms_filtered_boxes():
    layer = rpn.Proposals(4, 16, 64, [0.25], [1.0], train_proposals=3, test_proposals=5, proposal_iou=0.5)
    scores = np.linspace(-2, 2, 16, dtype=np.float32)
    outputs = np.concatenate([scores[None, :, None], np.zeros((1, 16, 4), np.float32)], axis=-1)
    inference = layer(outputs, training=False).numpy()
    assert inference.shape == (1, 5, 4) and layer(outputs, training=True).shape == (1, 3, 4)
    np.testing.assert_allclose(inference[0, 0], rpn.make_anchors(4, 16, 64, [0.25], [1.0])[15], atol=1e-6)


def test_head_loss_prefers_the_right_class():
    target = ground_truth()[:1]
    rois = np.zeros((1, 3, 4), np.float32)
    rois[0, 0] = target[0, 0, :4]  # foreground, class 1
    rois[0, 1] = [0.0, 0.7, 0.05, 0.75]  # background
    right = np.zeros((1, 3, 4 + NUM_CLASSES + 1 + 4), np.float32)
    right[..., :4] = rois
    right[0, 0, 4 + 2] = 8.0  # class 1 is logit index 2 (background first)
    right[0, 1, 4] = 8.0
    wrong = right.copy()
    wrong[0, 0, 4 + 2], wrong[0, 0, 4 + 3] = 0.0, 8.0
    loss = rpn.HeadLoss(NUM_CLASSES)
    assert float(loss(target, right)) < 0.01 < 1.0 < float(loss(target, wrong))
