"""Detection metrics: Pascal VOC mAP (all-point interpolation) and COCO AP via pycocotools.

    per_image_detections = [(boxes (n, 4) x1 y1 x2 y2, scores (n,), classes (n,)), ...]
    per_image_truth = [(boxes (m, 4), classes (m,)), ...]
    voc = voc_map(per_image_detections, per_image_truth, class_names)   # {"map50", "ap50_per_class"}
    coco = coco_ap(per_image_detections, per_image_truth, class_names)  # {"ap", "ap50", "ap75", ...}

Boxes are pixel coordinates; areas are continuous (x2 - x1) * (y2 - y1), as in pycocotools
(VOC's devkit adds one pixel to each side, a difference that vanishes at any real image size).
"""

import contextlib
import io

import numpy as np


def box_iou(box, boxes):
    """IoU of one box (4,) with boxes (n, 4), all x1 y1 x2 y2: (n,)."""
    top_left = np.maximum(box[:2], boxes[:, :2])
    bottom_right = np.minimum(box[2:], boxes[:, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0, None), axis=1)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return intersection / np.maximum(area + areas - intersection, 1e-12)


def average_precision(recall, precision):
    """Area under the precision envelope at every recall change (VOC 2010+ all-point interpolation)."""
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]  # the envelope: max precision to the right
    changes = np.flatnonzero(recall[1:] != recall[:-1])
    return float(np.sum((recall[changes + 1] - recall[changes]) * precision[changes + 1]))


def class_ap(detections, truth, class_id, iou_threshold=0.5):
    """VOC AP of one class, or None when the class has no ground truth.

    Detections are matched greedily in descending score order to the unmatched ground truth of
    highest IoU in the same image; a match needs IoU >= `iou_threshold`.
    """
    gt = {i: boxes[classes == class_id] for i, (boxes, classes) in enumerate(truth)}
    num_truth = sum(len(boxes) for boxes in gt.values())
    if num_truth == 0:
        return None
    found = [
        (score, i, box)
        for i, (boxes, scores, classes) in enumerate(detections)
        for box, score, cls in zip(boxes, scores, classes)
        if cls == class_id
    ]
    found.sort(key=lambda item: -item[0])
    used = {i: np.zeros(len(boxes), bool) for i, boxes in gt.items()}
    hits = np.zeros(len(found))
    for rank, (_, i, box) in enumerate(found):
        if len(gt[i]) == 0:
            continue
        overlaps = box_iou(np.asarray(box, np.float64), gt[i].astype(np.float64))
        best = int(np.argmax(overlaps))
        if overlaps[best] >= iou_threshold and not used[i][best]:
            used[i][best] = True
            hits[rank] = 1
    true_positives = np.cumsum(hits)
    recall = true_positives / num_truth
    precision = true_positives / np.arange(1, len(found) + 1)
    return average_precision(recall, precision)


def voc_map(detections, truth, class_names, iou_threshold=0.5):
    """Mean over classes with ground truth of the VOC AP at `iou_threshold`.

    Returns:
        {"map50": float, "ap50_per_class": {name: AP or None}}.
    """
    truth = [(np.asarray(b, np.float64).reshape(-1, 4), np.asarray(c).reshape(-1)) for b, c in truth]
    detections = [
        (np.asarray(b, np.float64).reshape(-1, 4), np.asarray(s).reshape(-1), np.asarray(c).reshape(-1))
        for b, s, c in detections
    ]
    per_class = {name: class_ap(detections, truth, k, iou_threshold) for k, name in enumerate(class_names)}
    present = [value for value in per_class.values() if value is not None]
    return {"map50": float(np.mean(present)) if present else 0.0, "ap50_per_class": per_class}


def to_coco(detections, truth, class_names):
    """The same boxes as pycocotools' ground truth dict and result list."""
    images, annotations, results = [], [], []
    for i, ((boxes, classes), (found, scores, found_classes)) in enumerate(zip(truth, detections)):
        images.append({"id": i + 1})
        for box, cls in zip(np.asarray(boxes).reshape(-1, 4), np.asarray(classes).reshape(-1)):
            width, height = float(box[2] - box[0]), float(box[3] - box[1])
            annotations.append({
                "id": len(annotations) + 1, "image_id": i + 1, "category_id": int(cls) + 1,
                "bbox": [float(box[0]), float(box[1]), width, height], "area": width * height, "iscrowd": 0,
            })
        for box, score, cls in zip(np.asarray(found).reshape(-1, 4), np.asarray(scores).reshape(-1),
                                   np.asarray(found_classes).reshape(-1)):
            results.append({
                "image_id": i + 1, "category_id": int(cls) + 1, "score": float(score),
                "bbox": [float(box[0]), float(box[1]), float(box[2] - box[0]), float(box[3] - box[1])],
            })
    categories = [{"id": k + 1, "name": name} for k, name in enumerate(class_names)]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def coco_ap(detections, truth, class_names, max_detections=100):
    """COCO box AP@[.5:.95], AP50, AP75 and AP by size from pycocotools' `COCOeval`."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ground_truth, results = to_coco(detections, truth, class_names)
    keys = ["ap", "ap50", "ap75", "ap_small", "ap_medium", "ap_large"]
    if not results or not ground_truth["annotations"]:
        return {key: 0.0 for key in keys}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress and table
        coco = COCO()
        coco.dataset = ground_truth
        coco.createIndex()
        evaluation = COCOeval(coco, coco.loadRes(results), "bbox")
        evaluation.params.maxDets = [1, 10, max_detections]
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    # stats: AP, AP50, AP75, APs, APm, APl (-1 where a size has no ground truth).
    return {key: float(value) for key, value in zip(keys, evaluation.stats[:6])}
