"""Detection metrics: VOC all-point AP by hand, and VOC mAP@0.5 against pycocotools' AP50."""

import numpy as np
import pytest

from tasks.metrics import detection as metrics


def test_all_point_interpolation_by_hand():
    # Ranked hits: TP, FP, TP, FP with 3 ground truths -> recall 1/3, 1/3, 2/3, 2/3.
    recall = np.array([1, 1, 2, 2]) / 3
    precision = np.array([1, 1 / 2, 2 / 3, 2 / 4])
    # Envelope: 1 up to recall 1/3, 2/3 up to 2/3, 0 beyond: 1/3 * 1 + 1/3 * 2/3.
    assert metrics.average_precision(recall, precision) == pytest.approx(1 / 3 + 2 / 9)


def test_matching_rules():
    truth = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30]]), np.array([0, 0]))]
    # A duplicate of the first box is a false positive; a wrong class counts nowhere for class 0.
    detections = [(np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30]]), np.array([0.9, 0.8, 0.7]),
                   np.array([0, 0, 1]))]
    result = metrics.voc_map(detections, truth, ["a", "b"])
    assert result["ap50_per_class"]["b"] is None  # no ground truth: not in the mean
    assert result["map50"] == pytest.approx(0.5)  # recall 0.5 at precision 1, never more
    perfect = [(truth[0][0], np.array([0.9, 0.8]), truth[0][1])]
    assert metrics.voc_map(perfect, truth, ["a", "b"])["map50"] == 1.0
    assert metrics.coco_ap(perfect, truth, ["a", "b"])["ap"] == pytest.approx(1.0)


def random_scene(rng, num_images=60, num_classes=3):
    """Ground truth and noisy detections: jittered true boxes (some misplaced) plus clutter."""
    truth, detections = [], []
    for _ in range(num_images):
        # Ground truths in distinct cells of a 3x3 grid of 100 px cells: objects rarely overlap.
        count = rng.integers(0, 6)
        cells = rng.permutation(9)[:count]
        corner = np.stack([cells % 3, cells // 3], axis=1) * 100 + rng.uniform(0, 30, size=(count, 2))
        size = rng.uniform(20, 70, size=(count, 2))
        boxes = np.concatenate([corner, corner + size], axis=1)
        classes = rng.integers(0, num_classes, size=count)
        truth.append((boxes, classes))
        jitter = rng.normal(0, 3, size=boxes.shape) * rng.choice([1, 4], size=(count, 1))
        found = boxes + jitter
        found = np.concatenate([np.minimum(found[:, :2], found[:, 2:]), np.maximum(found[:, :2], found[:, 2:])], 1)
        found_classes = np.where(rng.random(count) < 0.85, classes, rng.integers(0, num_classes, size=count))
        clutter_count = rng.integers(0, 4)
        clutter_corner = rng.uniform(0, 250, size=(clutter_count, 2))
        clutter = np.concatenate([clutter_corner, clutter_corner + rng.uniform(10, 60, size=(clutter_count, 2))], 1)
        detections.append((
            np.concatenate([found, clutter]),
            np.concatenate([rng.uniform(0.3, 1.0, count), rng.uniform(0.0, 0.7, clutter_count)]),
            np.concatenate([found_classes, rng.integers(0, num_classes, size=clutter_count)]),
        ))
    return detections, truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_voc_map_agrees_with_pycocotools_ap50(seed):
    detections, truth = random_scene(np.random.default_rng(seed))
    names = ["a", "b", "c"]
    voc = metrics.voc_map(detections, truth, names)["map50"]
    coco = metrics.coco_ap(detections, truth, names)
    assert 0.2 < voc < 0.95  # a real mix of hits and misses, not a trivial case
    # All-point (VOC) vs 101-point (COCO) interpolation: equal up to the sampling of recall.
    assert voc == pytest.approx(coco["ap50"], abs=0.01)
    assert coco["ap"] < coco["ap50"] and coco["ap75"] <= coco["ap50"]


def test_empty_detections_score_zero():
    truth = [(np.array([[0, 0, 10, 10]]), np.array([0]))]
    empty = [(np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))]
    assert metrics.voc_map(empty, truth, ["a"])["map50"] == 0.0
    assert metrics.coco_ap(empty, truth, ["a"])["ap50"] == 0.0
