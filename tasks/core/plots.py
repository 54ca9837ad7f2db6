"""Pictures under `plots/`: headless matplotlib, one PNG per figure.

Every picture is best-effort: drawn inside `best_effort(path)`, a failure prints one
`warning: could not draw <file>: <reason>` line and the run goes on.

    with plots.best_effort(run.plots_dir / "training_curves.png") as path:
        plots.training_curves(rows, path)
"""

import contextlib
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


@contextlib.contextmanager
def best_effort(path):
    """Runs the drawing of `path` in the block; any failure becomes one warning line, never an error.

    Yields `path`. On failure the figures left open are closed and a partly written file is removed,
    so `plots/` holds whole pictures only.
    """
    path = pathlib.Path(path)
    try:
        yield path
    except Exception as error:  # noqa: BLE001 — a picture never costs a run its metrics or export
        plt.close("all")
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
        reason = " ".join(str(error).split())[:300] or "no message"
        print(f"warning: could not draw {path}: {type(error).__name__}: {reason}", file=sys.stderr)


def save(figure, path, dpi=100):
    """Lays out `figure`, writes it to `path`, closes it; returns `path`."""
    figure.tight_layout()
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path


# Panels a row in `training_curves`: 8 metrics (a GAN's) make 2 rows of 4, not one 3200-pixel strip.
CURVE_COLUMNS = 4


def training_curves(rows, path):
    """Loss and every other logged metric (train and validation) against the epoch, in a grid of
    at most `CURVE_COLUMNS` panels a row."""
    if not rows:
        return None
    epochs = [row["epoch"] + 1 for row in rows]
    names = [key for key in rows[0] if key != "epoch" and not key.startswith("val_")]
    columns = min(len(names), CURVE_COLUMNS)
    lines = -(-len(names) // columns)  # ceil: rows of panels
    figure, axes = plt.subplots(lines, columns, figsize=(4 * columns, 3.2 * lines), squeeze=False)
    for axis in axes.flat[len(names):]:
        axis.set_visible(False)
    for axis, name in zip(axes.flat, names):
        axis.plot(epochs, [row.get(name, np.nan) for row in rows], label="train", marker=".")
        if f"val_{name}" in rows[0]:
            axis.plot(epochs, [row.get(f"val_{name}", np.nan) for row in rows], label="validation", marker=".")
        axis.set_title(name)
        axis.set_xlabel("epoch")
        axis.legend()
        axis.grid(alpha=0.3)
    return save(figure, path)


def confusion_matrix(matrix, class_names, path, title="Confusion matrix (test)"):
    """Row-normalized confusion matrix with counts, true classes down, predictions across."""
    matrix = np.asarray(matrix)
    totals = matrix.sum(axis=1, keepdims=True)
    share = matrix / np.maximum(totals, 1)
    size = max(4.0, 0.45 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size + 1, size))
    image = axis.imshow(share, cmap="Blues", vmin=0, vmax=1)
    ticks = np.arange(len(class_names))
    axis.set_xticks(ticks, class_names, rotation=45, ha="right")
    axis.set_yticks(ticks, class_names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    axis.set_title(title)
    if len(class_names) <= 20:
        for i in ticks:
            for j in ticks:
                color = "white" if share[i, j] > 0.5 else "black"
                axis.text(j, i, int(matrix[i, j]), ha="center", va="center", fontsize=7, color=color)
    figure.colorbar(image, ax=axis, fraction=0.046)
    return save(figure, path)


def image_grid(images, titles, path, columns=8):
    """A grid of images with a title under each.

    Images may differ in size, aspect ratio and channels: uint8 or float arrays (H, W), (H, W, 1),
    (H, W, 2) grey + alpha, (H, W, 3) RGB or (H, W, 4) RGBA, or PIL images of any mode.
    """
    images = [displayable(image) for image in images]
    rows = max(1, int(np.ceil(len(images) / columns)))
    figure, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.8 * rows), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for axis, image, title in zip(axes.flat, images, titles):
        axis.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=255)
        axis.set_title(title, fontsize=7)
    return save(figure, path)


def displayable(image):
    """One image as uint8 (H, W) grey, (H, W, 3) RGB or (H, W, 4) RGBA, for `imshow`.

    Floats in [0, 1] are scaled to [0, 255]; other values are clipped to [0, 255].
    """
    if isinstance(image, Image.Image):
        mode = image.mode
        image = image.convert("L" if mode in ("1", "L", "I", "I;16", "F") else "RGBA" if "A" in mode else "RGB")
    array = np.asarray(image)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    elif array.ndim == 3 and array.shape[-1] == 2:  # grey + alpha: the grey
        array = array[..., 0]
    elif array.ndim == 3 and array.shape[-1] > 4:
        raise ValueError(f"an image needs 1 to 4 channels. Received: shape={array.shape}")
    if array.ndim not in (2, 3) or min(array.shape[:2]) == 0:
        raise ValueError(f"an image must be (H, W) or (H, W, C) with H, W > 0. Received: shape={array.shape}")
    if array.dtype != np.uint8:
        values = np.nan_to_num(array.astype(np.float64))
        if array.dtype.kind == "f" and values.max(initial=0.0) <= 1.0:
            values = values * 255.0
        array = np.clip(values, 0, 255).round().astype(np.uint8)
    return array
