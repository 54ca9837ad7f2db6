"""Semantic-segmentation metrics with an ignore label: confusion matrix, IoU, pixel accuracy, Dice.

    matrix = confusion_matrix(labels, predicted, num_classes)   # void (255) pixels count nowhere
    scores(matrix, class_names)  # {"miou", "pixel_accuracy", "per_class_iou", ["dice"]}

mIoU averages the IoU of the classes that occur in the truth or the prediction (as
`keras.metrics.MeanIoU` does); Dice is reported for binary tasks, on class 1 (the foreground).
`PixelAccuracy` is the training-time metric beside `keras.metrics.MeanIoU(ignore_class=255)`.
"""

import keras
import numpy as np
import tensorflow as tf

IGNORE = 255


def confusion_matrix(labels, predicted, num_classes, ignore_class=IGNORE):
    """(num_classes, num_classes) int64 counts, true classes down, predictions across.

    Args:
        labels: int array of any shape. True class ids; `ignore_class` marks void pixels.
        predicted: int array of the same shape. Predicted class ids.
        num_classes: int. The number of classes.
        ignore_class: int. The void label. Defaults to 255.
    """
    labels = np.asarray(labels).ravel().astype(np.int64)
    predicted = np.asarray(predicted).ravel().astype(np.int64)
    valid = (labels != ignore_class) & (labels >= 0) & (labels < num_classes)
    index = labels[valid] * num_classes + predicted[valid]
    return np.bincount(index, minlength=num_classes**2).reshape(num_classes, num_classes)


def scores(matrix, class_names):
    """mIoU, per-class IoU, pixel accuracy and (binary) Dice from a confusion matrix."""
    matrix = np.asarray(matrix, np.float64)
    true_positive = matrix.diagonal()
    union = matrix.sum(axis=0) + matrix.sum(axis=1) - true_positive
    iou = np.divide(true_positive, union, out=np.full_like(true_positive, np.nan), where=union > 0)
    result = {
        "miou": float(np.nanmean(iou)) if np.any(union > 0) else 0.0,
        "pixel_accuracy": float(true_positive.sum() / max(matrix.sum(), 1)),
    }
    if len(class_names) == 2:
        # Dice = 2 TP / (2 TP + FP + FN) = 2 |A ∩ B| / (|A| + |B|) for class 1.
        denominator = matrix[1].sum() + matrix[:, 1].sum()
        result["dice"] = float(2 * true_positive[1] / denominator) if denominator else 0.0
    result["per_class_iou"] = {
        name: (None if np.isnan(value) else float(value)) for name, value in zip(class_names, iou)
    }
    return result


@keras.saving.register_keras_serializable(package="tasks")
class PixelAccuracy(keras.metrics.Metric):
    """The share of non-void pixels whose argmax class is right.

    Args:
        ignore_class: int. The void label, counted nowhere. Defaults to 255.
        name: str. The metric's name. Defaults to "pixel_accuracy".
    """

    def __init__(self, ignore_class=IGNORE, name="pixel_accuracy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.ignore_class = ignore_class
        self.correct = self.add_variable(shape=(), initializer="zeros", name="correct")
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")

    def update_state(self, y_true, y_pred, sample_weight=None):
        labels = tf.cast(tf.reshape(y_true, tf.shape(y_pred)[:-1]), tf.int32)  # (B, H, W)
        predicted = tf.argmax(y_pred, axis=-1, output_type=tf.int32)
        valid = tf.not_equal(labels, self.ignore_class)
        hits = tf.logical_and(valid, tf.equal(labels, predicted))
        self.correct.assign_add(tf.reduce_sum(tf.cast(hits, self.dtype)))
        self.total.assign_add(tf.reduce_sum(tf.cast(valid, self.dtype)))

    def result(self):
        return tf.math.divide_no_nan(self.correct, self.total)

    def reset_state(self):
        self.correct.assign(0.0)
        self.total.assign(0.0)

    def get_config(self):
        return {**super().get_config(), "ignore_class": self.ignore_class}
