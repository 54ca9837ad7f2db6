"""Semantic segmentation: FCN and U-Net on image/mask folders, VOC or TFDS, against the majority class.

Usage:
    python -m tasks.segmentation train                                     # demo: shapes, 4 classes + void
    python -m tasks.segmentation train --data membrane --class-map 0:membrane,255:cell \
        --test-names 25-29 --crop-size 128 --crops-per-image 8 --flip --rotate90 --loss ce_dice
    python -m tasks.segmentation train --data VOCdevkit/VOC2012 --model fcn8s --backbone resnet18 \
        --image-size 256 --crop-size 224
    python -m tasks.segmentation train --data tfds:oxford_iiit_pet --image-size 128
    python -m tasks.segmentation train --data membrane --class-map 0:membrane,255:cell --crop-size 128 \
        --backbone mobilenet_v2 --weights mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5
    python -m tasks.segmentation evaluate                                  # the same flags find the run
    python -m tasks.segmentation predict slice.png                         # overlay PNGs in predictions/

Data: image/mask folder pairs matched by file name (greyscale or palette masks, a value -> class
map), Pascal VOC `SegmentationClass`, `tfds:oxford_iiit_pet`, or `demo` (`tasks.data.masks`).
Model: a segmentation builder of the applications registry (unet, fcn8s, fcn16s, fcn32s), its
encoder a registry classifier or an ImageNet MobileNet (`--backbone`, `--weights`, staged
fine-tuning: `tasks.core.finetune`), on random crops with joint augmentation. Loss: cross-entropy, Dice or both, void pixels (255)
counting nowhere, optional median-frequency class weights. Metrics: mIoU and per-class IoU,
pixel accuracy, Dice (binary). Baseline: every pixel is the training set's majority class.
Inference runs a sliding window of the training crop over images of any size.
"""

import dataclasses
import pathlib
import sys

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

import applications
from applications import backbones
from tasks.core import cli
from tasks.core import finetune
from tasks.core import pipeline
from tasks.core import export
from tasks.core import plots
from tasks.core import runner
from tasks.core import training
from tasks.core.config import TrainConfig
from tasks.core.config import float32_only
from tasks.core.config import model_option
from tasks.core.config import option
from tasks.core.errors import UserError
from tasks.data import masks as mask_readers
from tasks.metrics import segmentation as segmentation_metrics

KIND = "segmenter"  # the applications registry kind(s) --model names

IGNORE = mask_readers.IGNORE  # void pixels in every mask: no loss, no metric
TILE_OVERLAP = 0.25  # share of the crop that neighbouring sliding-window tiles overlap
TILES_PER_CALL = 16  # at most this many tiles per network call (memory on large images)
# Config fields passed on to the builders whose signature has them.
BUILDER_ARGUMENTS = ("width", "depth", "backbone")


@dataclasses.dataclass
class Config(TrainConfig, finetune.BackboneConfig):
    batch_size: int = option(16, "Global batch size of training crops.", minimum=1)
    learning_rate: float = option(3e-3, "Peak learning rate.", minimum=0.0)
    precision: str = float32_only()  # bfloat16 logits flip near-tie pixels of the class map
    model: str = model_option("unet", KIND)
    backbone: str = finetune.backbone_option("", "The encoder (empty: fcn* vgg16, unet its own)")
    width: int = option(16, "U-Net filters at the first level (doubled per level).", minimum=1)
    depth: int = option(4, "U-Net levels (crops must be multiples of 2^depth).", minimum=1)
    class_map: str = option("", "Mask value -> class, e.g. 0:membrane,255:cell (empty: inferred).")
    ignore_value: int = option(255, "Mask value of void pixels that count nowhere (-1: none).", minimum=-1)
    stray_values: str = option("error", "Mask values outside the class map: an error, or void pixels (counted).",
                               choices=["error", "void"])
    image_size: int = option(0, "Resize every image (and mask) to this side first (0: keep).", minimum=0)
    crop_size: int = option(0, "Training crop side; also the inference tile (0: the images' size).", minimum=0)
    crops_per_image: int = option(1, "Random crops per training image per epoch.", minimum=1)
    test_names: str = option("", "Image names held out as the test split, e.g. 25-29,40 (default: the last test_fraction).")
    test_fraction: float = option(0.2, "Share held out as the test split when the data has none.", minimum=0.0)
    loss: str = option("ce", "Pixel loss.", choices=["ce", "dice", "ce_dice"])
    class_weights: str = option("none", "Class weights of the loss.", choices=["none", "median_frequency"])
    flip: bool = option(False, "Random horizontal flips (image and mask).")
    rotate90: bool = option(False, "Random 90-degree rotations and vertical flips (image and mask).")
    zoom: float = option(0.0, "Random rescaling by up to this share (nearest for masks; 0: off).", minimum=0.0)
    photometric: float = option(0.0, "Random brightness/contrast strength, image only (0: off).", minimum=0.0)


# === Data ===


def read_source(config):
    """The config's data as a `MaskData` at the working size, with one channel count."""
    found = mask_readers.read(
        config.data,
        class_map=mask_readers.parse_class_map(config.class_map),
        ignore_value=None if config.ignore_value < 0 else config.ignore_value,
        stray=config.stray_values,
        skip_bad=config.skip_bad,
        verbose=config.verbose,
    )
    channels = 3 if any(image.ndim == 3 for split in found.splits.values() for image in split.images) else 1
    for split in found.splits.values():
        split.images = [conform(image, channels, config.image_size) for image in split.images]
        if config.image_size:
            split.masks = [resize_mask(mask, config.image_size) for mask in split.masks]
    return found



def conform(image, channels, size=0):
    """(H, W) or (H, W, 3) uint8 -> (H, W, channels) at `size` x `size` (bilinear) when size > 0."""
    if size and image.shape[:2] != (size, size):
        image = np.asarray(Image.fromarray(image).resize((size, size), Image.Resampling.BILINEAR))
    if image.ndim == 2:
        image = image[..., None]
    return np.repeat(image, 3, axis=-1) if channels == 3 and image.shape[-1] == 1 else image


def resize_mask(mask, size):
    """Nearest-neighbour: a resized mask holds only class ids that were there."""
    return np.asarray(Image.fromarray(mask).resize((size, size), Image.Resampling.NEAREST))


def parse_names(text):
    """`"25-29,40"` -> ["25", "26", "27", "28", "29", "40"]."""
    names = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        first, dash, last = item.partition("-")
        if dash and first.isdigit() and last.isdigit():
            names.extend(str(number) for number in range(int(first), int(last) + 1))
        else:
            names.append(item)
    return names


def take(split, indices):
    return mask_readers.Split(
        [split.images[i] for i in indices], [split.masks[i] for i in indices], [split.names[i] for i in indices]
    )


def hold_out_test(train, config):
    """(train, test): the images named by --test-names, else the last test_fraction in name order."""
    if config.test_names:
        wanted = parse_names(config.test_names)
        missing = [name for name in wanted if name not in train.names]
        if missing:
            raise UserError(
                f"--test-names: no training image named {missing[0]!r} in --data {config.data} "
                f"(names run {train.names[0]} .. {train.names[-1]})."
            )
        held = [train.names.index(name) for name in wanted]
    else:
        count = int(round(config.test_fraction * len(train.names)))
        held = list(range(len(train.names) - count, len(train.names)))
    keep = [index for index in range(len(train.names)) if index not in held]
    return take(train, keep), take(train, held)


def missing_classes(splits, class_names, verbose=True):
    """`warning:` lines (printed and returned) for every split that lacks a class entirely."""
    warnings = []
    for name, split in splits.items():
        if not split.masks:
            continue
        present = np.zeros(256, bool)
        for mask in split.masks:
            present[np.unique(mask)] = True
        absent = [class_name for index, class_name in enumerate(class_names) if not present[index]]
        if absent:
            shown = ", ".join(map(repr, absent[:8])) + (f" and {len(absent) - 8} more" if len(absent) > 8 else "")
            warnings.append(f"the {name} split ({len(split.masks)} images) has no pixel of class {shown}; "
                            "its IoU there is undefined")
    if verbose:
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
    return warnings


def check_crop(crop, split, config):
    """The training crop (--crop-size, or the images' common size); it must fit every image."""
    shapes = {image.shape[:2] for image in split.images}
    if not crop:
        if len(shapes) > 1:
            raise UserError(
                f"--data {config.data}: the images differ in size ({len(shapes)} sizes); set "
                "--crop-size (random training crops) or --image-size (resize them all)."
            )
        crop = min(next(iter(shapes)))
    for image, name in zip(split.images, split.names):
        if crop > min(image.shape[:2]):
            raise UserError(
                f"--crop-size {crop} is larger than image {name!r} ({image.shape[1]}x{image.shape[0]}); "
                f"use a crop of at most {min(image.shape[:2])} or resize with --image-size."
            )
    return crop


def class_weights(pixel_counts, images_with_class, kind):
    """None, or median-frequency weights: median(f) / f_c, f_c = class pixels / pixels of images with c."""
    if kind == "none":
        return None
    frequency = np.asarray(pixel_counts, np.float64) / np.maximum(images_with_class, 1)
    present = frequency > 0
    weights = np.zeros_like(frequency)
    weights[present] = np.median(frequency[present]) / frequency[present]
    return weights.round(6).tolist()


def as_dataset(split):
    """Unbatched (image uint8 (H, W, C), mask uint8 (H, W)); any mix of sizes."""
    if len({image.shape for image in split.images}) <= 1:
        return tf.data.Dataset.from_tensor_slices((np.stack(split.images), np.stack(split.masks)))
    channels = split.images[0].shape[-1]
    return tf.data.Dataset.from_generator(
        lambda: zip(split.images, split.masks),
        output_signature=(
            tf.TensorSpec((None, None, channels), tf.uint8),
            tf.TensorSpec((None, None), tf.uint8),
        ),
    )


def augment_pair(config, crop):
    """A per-example map: the same random geometry on image and mask, colour on the image only.

    uint8 (H, W, C), (H, W) -> float32 (crop, crop, C) in [0, 255], int32 (crop, crop).
    """

    def augment(image, mask):
        image = tf.cast(image, tf.float32)
        mask = tf.cast(mask, tf.float32)[..., None]  # class ids <= 255 are exact in float32
        channels = tf.shape(image)[-1]
        if config.zoom:
            scale = tf.random.uniform([], 1.0 - config.zoom, 1.0 + config.zoom)
            size = tf.cast(tf.round(tf.cast(tf.shape(image)[:2], tf.float32) * scale), tf.int32)
            image = tf.image.resize(image, size, method="bilinear")
            mask = tf.image.resize(mask, size, method="nearest")  # never a mixed class id
        # Pad a shrunk image up to the crop: black pixels, void labels.
        pad_y = tf.maximum(crop - tf.shape(image)[0], 0)
        pad_x = tf.maximum(crop - tf.shape(image)[1], 0)
        image = tf.pad(image, [[0, pad_y], [0, pad_x], [0, 0]])
        mask = tf.pad(mask, [[0, pad_y], [0, pad_x], [0, 0]], constant_values=float(IGNORE))
        # One random crop of image and mask together: (crop, crop, C + 1).
        both = tf.image.random_crop(tf.concat([image, mask], axis=-1), tf.stack([crop, crop, channels + 1]))
        if config.flip:
            both = tf.image.random_flip_left_right(both)
        if config.rotate90:
            both = tf.image.random_flip_up_down(both)
            both = tf.image.rot90(both, tf.random.uniform([], 0, 4, dtype=tf.int32))
        image, mask = both[..., :-1], tf.cast(both[..., -1], tf.int32)
        if config.photometric:
            strength = config.photometric
            contrast = tf.random.uniform([], 1.0 - strength, 1.0 + strength)
            brightness = tf.random.uniform([], -strength, strength) * 255.0
            mean = tf.reduce_mean(image)
            image = tf.clip_by_value((image - mean) * contrast + mean + brightness, 0.0, 255.0)
        return image, mask

    return augment


def tiles(split, crop):
    """Whole images cut into crop x crop tiles (edges padded with void) for validation."""
    images, masks = [], []
    for image, mask in zip(split.images, split.masks):
        height, width = mask.shape
        pad_y, pad_x = -height % crop, -width % crop
        image = np.pad(image, ((0, pad_y), (0, pad_x), (0, 0)))
        mask = np.pad(mask, ((0, pad_y), (0, pad_x)), constant_values=IGNORE)
        for top in range(0, height + pad_y, crop):
            for left in range(0, width + pad_x, crop):
                images.append(image[top : top + crop, left : left + crop])
                masks.append(mask[top : top + crop, left : left + crop])
    return mask_readers.Split(images, masks, [""] * len(images))


def make_train_dataset(split, config, crop):
    dataset = as_dataset(split).cache().repeat(config.crops_per_image)
    return pipeline.finalize(
        dataset, config.batch_size, shuffle=True, seed=config.seed, cache=False, augment=augment_pair(config, crop)
    )


def make_eval_dataset(split, batch_size):
    """float32 images and int32 masks, in order; batch_size 1 for whole images of any size."""

    def prepare(image, mask):
        return tf.cast(image, tf.float32), tf.cast(mask, tf.int32)

    return pipeline.finalize(as_dataset(split), batch_size, cache=False, augment=prepare)


def load_data(config, saved=None):
    """Train / validation / test datasets and the facts the model needs."""
    found = read_source(config)
    class_names = list(found.class_names)
    if len(class_names) < 2:
        raise UserError(f"--data {config.data}: segmentation needs at least 2 classes, found {len(class_names)}.")
    if len(class_names) > IGNORE:
        raise UserError(f"--data {config.data}: at most {IGNORE} classes (255 is void), found {len(class_names)}.")
    train = found.splits["train"]
    if "test" in found.splits and found.splits["test"].images:
        test = found.splits["test"]
        if config.test_names:
            raise UserError(f"--test-names: --data {config.data} has its own test split; drop --test-names.")
    else:
        train, test = hold_out_test(train, config)
    if "validation" in found.splits and found.splits["validation"].images:
        validation = found.splits["validation"]
    else:
        keep, held = pipeline.split_indices(np.zeros(len(train.names)), config.validation_fraction, config.seed + 1)
        train, validation = take(train, keep), take(train, held)
    if not train.images or not test.images:
        raise UserError(f"--data {config.data}: too few image/mask pairs to make train and test splits.")
    crop = check_crop(config.crop_size, train, config)
    num_classes = len(class_names)
    masks = np.concatenate([mask.ravel() for mask in train.masks])
    pixel_counts = np.bincount(masks[masks != IGNORE], minlength=num_classes)[:num_classes]
    images_with_class = np.zeros(num_classes)
    for mask in train.masks:
        present = np.bincount(mask.ravel(), minlength=256)[:num_classes] > 0
        images_with_class += present * mask.size
    pixels = np.concatenate([image.reshape(-1, image.shape[-1]) for image in train.images]).astype(np.float64)
    info = {
        "class_names": class_names,
        "num_classes": num_classes,
        "channels": int(train.images[0].shape[-1]),
        "crop_size": int(crop),
        "image_size": int(config.image_size),
        "mean": pixels.mean(axis=0).tolist(),
        "variance": np.maximum(pixels.var(axis=0), 1e-6).tolist(),
        "num_train": len(train.images) * config.crops_per_image,  # training crops per epoch
        "num_train_images": len(train.images),
        "num_validation": len(validation.images),
        "num_test": len(test.images),
        "test_names": test.names,
        "pixel_counts": pixel_counts.tolist(),
        "class_weights": class_weights(pixel_counts, images_with_class, config.class_weights),
        "skipped": [f"{where}: {reason}" for where, reason in found.skipped],
        "unlabelled": found.unlabelled,
        "layout": found.layout,
        "class_map": {str(value): name for value, name in found.class_map.items()},
        "void_values": [str(value) for value in found.void],
        "class_map_inferred": found.inferred,
        "warnings": found.warnings + missing_classes({"train": train, "validation": validation, "test": test},
                                                    class_names, config.verbose),
    }
    if found.skipped and config.verbose:
        print(f"Skipped {len(found.skipped)} bad pair(s) (--skip-bad), e.g. {info['skipped'][0]}")
    return pipeline.Data(
        train=make_train_dataset(train, config, crop),
        validation=make_eval_dataset(tiles(validation, crop), config.batch_size) if validation.images else None,
        test=make_eval_dataset(test, 1),
        info=info,
    )


# === Model and loss ===


@keras.saving.register_keras_serializable(package="tasks")
class SegmentationLoss(keras.losses.Loss):
    """Pixel cross-entropy, soft Dice or their sum, with an ignore label and class weights.

    Void pixels (`ignore_class`) count nowhere: not in the cross-entropy's sum or its
    normalizer, not in Dice's intersections or sizes. The weighted cross-entropy is normalized
    by the sum of the weights of the counted pixels (as in PyTorch's `CrossEntropyLoss`).

    Args:
        num_classes: int. The number of classes.
        kind: str. "ce", "dice" or "ce_dice". Defaults to "ce".
        class_weights: list of float or None. Per-class weights. Defaults to None.
        ignore_class: int. The void label. Defaults to 255.
        smooth: float. Added to Dice's numerator and denominator. Defaults to 1.0.
    """

    def __init__(self, num_classes, kind="ce", class_weights=None, ignore_class=IGNORE, smooth=1.0,
                 name="segmentation_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.num_classes = num_classes
        self.kind = kind
        self.class_weights = class_weights
        self.ignore_class = ignore_class
        self.smooth = smooth

    def call(self, y_true, y_pred):
        logits = tf.cast(y_pred, tf.float32)  # (B, H, W, K)
        labels = tf.cast(tf.reshape(y_true, tf.shape(logits)[:-1]), tf.int32)  # (B, H, W)
        valid = tf.cast(tf.not_equal(labels, self.ignore_class), tf.float32)
        labels = tf.where(labels == self.ignore_class, 0, labels)  # any class: masked below
        weights = tf.constant(self.class_weights or [1.0] * self.num_classes, tf.float32)
        loss = 0.0
        if self.kind in ("ce", "ce_dice"):
            pixel_weights = valid * tf.gather(weights, labels)
            cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits)
            loss += tf.math.divide_no_nan(tf.reduce_sum(cross_entropy * pixel_weights), tf.reduce_sum(pixel_weights))
        if self.kind in ("dice", "ce_dice"):
            probabilities = tf.nn.softmax(logits) * valid[..., None]
            truth = tf.one_hot(labels, self.num_classes) * valid[..., None]
            intersection = tf.reduce_sum(probabilities * truth, axis=[0, 1, 2])  # (K,)
            sizes = tf.reduce_sum(probabilities, axis=[0, 1, 2]) + tf.reduce_sum(truth, axis=[0, 1, 2])
            dice = (2.0 * intersection + self.smooth) / (sizes + self.smooth)
            loss += 1.0 - tf.reduce_sum(weights * dice) / tf.reduce_sum(weights)
        return loss

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "kind": self.kind,
            "class_weights": self.class_weights,
            "ignore_class": self.ignore_class,
            "smooth": self.smooth,
        }


def builder_arguments(config, builder):
    """--width/--depth/--backbone for the builders that take them; --backbone elsewhere is an error."""
    accepted = applications.arguments(builder)
    finetune.check_backbone(config)
    if config.backbone and "backbone" not in accepted:
        raise UserError(f"--backbone: --model {config.model} takes no backbone; use fcn8s, fcn16s, fcn32s or unet.")
    return {
        key: getattr(config, key)
        for key in BUILDER_ARGUMENTS
        if key in accepted and (key != "backbone" or config.backbone)
    }


def build_model(config, info):
    """Normalization + a registry segmentation network, compiled with the config's loss and optimizer.

    A pretrained `--backbone` brings its own preprocessing (grey to RGB, pixels to [-1, 1]) in
    place of the data's normalization, and its `--weights`.
    """
    builder = training.model_builder(config.model, KIND)
    shape = (info["crop_size"], info["crop_size"], info["channels"])
    inputs = keras.Input(shape, name="image")  # float pixels in [0, 255]
    arguments = builder_arguments(config, builder)
    if finetune.check_backbone(config):
        if backbones.backbone_shape(shape)[:2] != shape[:2]:
            raise UserError(f"--backbone {config.backbone} needs --crop-size {backbones.MINIMUM_SIDE} or more.")
        x = backbones.preprocess(inputs, shape)
        shape = backbones.backbone_shape(shape)  # (crop, crop, 3)
        arguments["backbone"] = finetune.feature_extractor(config, shape)  # pixels in [-1, 1] -> strides 2 ... 32
    else:
        x = keras.layers.Normalization(mean=info["mean"], variance=info["variance"], name="normalize")(inputs)
    network = training.build_network(builder, config, input_shape=shape, num_classes=info["num_classes"],
                                     **arguments)
    model = keras.Model(inputs, network(x), name=f"{config.model}_segmenter")
    metrics = [keras.metrics.MeanIoU(info["num_classes"], ignore_class=IGNORE, sparse_y_pred=False, name="miou"),
               segmentation_metrics.PixelAccuracy(IGNORE)]
    loss = SegmentationLoss(info["num_classes"], config.loss, info["class_weights"])
    return training.compile(model, config, info, loss=loss, metrics=metrics)


# === Inference on images of any size ===


def sliding_window(model, image, tile, fill):
    """Class probabilities of a whole image from overlapping tile x tile windows, in the graph.

    Windows start every `tile * (1 - TILE_OVERLAP)` pixels, the last one flush with the border;
    an image smaller than a tile is padded with `fill`. Overlapping predictions are blended with
    a tent window (highest at a tile's centre, where the network sees the most context).

    Args:
        model: keras.Model. (B, tile, tile, C) float pixels -> (B, tile, tile, K) logits.
        image: float32 tensor (H, W, C) in [0, 255].
        tile: int. The network's input side.
        fill: list of C floats. Padding pixel value (the training mean).

    Returns:
        float32 (H, W, K) probabilities.
    """
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    pad_y, pad_x = tf.maximum(tile - height, 0), tf.maximum(tile - width, 0)
    image = tf.pad(image - fill, [[0, pad_y], [0, pad_x], [0, 0]]) + fill
    padded_height, padded_width = height + pad_y, width + pad_x
    stride = max(tile - int(tile * TILE_OVERLAP), 1)

    def starts(size):  # (n,) window offsets, the last one flush with the far border
        count = (size - tile + stride - 1) // stride + 1
        return tf.minimum(tf.range(count) * stride, size - tile)

    top, left = tf.meshgrid(starts(padded_height), starts(padded_width), indexing="ij")
    top, left = tf.reshape(top, [-1]), tf.reshape(left, [-1])  # (N,)
    rows = top[:, None] + tf.range(tile)[None]  # (N, tile)
    cols = left[:, None] + tf.range(tile)[None]
    windows = tf.gather(image, rows)  # (N, tile, W, C)
    windows = tf.gather(windows, cols, axis=2, batch_dims=1)  # (N, tile, tile, C)

    # At most TILES_PER_CALL windows per network call, in equal chunks (little padding).
    count = tf.shape(windows)[0]
    num_chunks = (count + TILES_PER_CALL - 1) // TILES_PER_CALL
    chunk = (count + num_chunks - 1) // num_chunks
    windows = tf.pad(windows, [[0, num_chunks * chunk - count], [0, 0], [0, 0], [0, 0]])
    windows = tf.reshape(windows, tf.stack([num_chunks, chunk, tile, tile, tf.shape(image)[-1]]))
    num_classes = model.output_shape[-1]
    probabilities = tf.map_fn(
        lambda batch: tf.nn.softmax(tf.cast(model(batch, training=False), tf.float32)),
        windows,
        fn_output_signature=tf.TensorSpec((None, tile, tile, num_classes), tf.float32),
    )
    probabilities = tf.reshape(probabilities, [-1, tile, tile, num_classes])[:count]  # (N, tile, tile, K)

    ramp = np.minimum(np.arange(tile) + 1, tile - np.arange(tile)).astype(np.float32)
    tent = tf.constant(np.outer(ramp, ramp) / ramp.max() ** 2)  # (tile, tile), > 0 everywhere
    pixel = rows[:, :, None] * padded_width + cols[:, None, :]  # (N, tile, tile) flat positions
    pixel = tf.reshape(pixel, [-1])
    weighted = tf.reshape(probabilities * tent[None, :, :, None], [-1, num_classes])
    total = tf.math.unsorted_segment_sum(weighted, pixel, padded_height * padded_width)
    weight = tf.math.unsorted_segment_sum(
        tf.reshape(tf.broadcast_to(tent, tf.shape(probabilities)[:3]), [-1]), pixel, padded_height * padded_width
    )
    blended = tf.reshape(total / weight[:, None], tf.stack([padded_height, padded_width, num_classes]))
    return blended[:height, :width]


def segmenter(model, info):
    """uint8 or float (H, W, C) of any size -> float32 (H, W, K) probabilities at that size.

    With `image_size` the image is first resized to the training size and the probabilities
    resized back (bilinear), so the class map always has the input's size.
    """
    size, crop = info["image_size"], info["crop_size"]
    fill = [float(value) for value in info["mean"]]

    def segment(image):
        image = tf.cast(image, tf.float32)
        original = tf.shape(image)[:2]
        if size:
            image = tf.image.resize(image, (size, size), antialias=True)
        probabilities = sliding_window(model, image, crop, fill)
        if size:
            probabilities = tf.image.resize(probabilities, original)
        return probabilities

    return segment


# === Baseline and evaluation ===


def baseline(config, data):
    """Every pixel is the training split's most frequent class; scored like the model."""
    num_classes = data.info["num_classes"]
    majority = int(np.argmax(data.info["pixel_counts"]))
    matrix = np.zeros((num_classes, num_classes), np.int64)
    for _, mask in data.test.as_numpy_iterator():
        matrix += segmentation_metrics.confusion_matrix(mask, np.full_like(mask, majority), num_classes)
    result = segmentation_metrics.scores(matrix, data.info["class_names"])
    result["name"] = f"majority class ({data.info['class_names'][majority]})"
    return result


def evaluate(model, data, config, plots_dir=None, max_plotted=6):
    """mIoU, per-class IoU, pixel accuracy and (binary) Dice on whole test images; a grid PNG."""
    info = data.info
    segment = tf.function(segmenter(model, info), input_signature=[tf.TensorSpec((None, None, info["channels"]), tf.float32)])
    num_classes = info["num_classes"]
    matrix = np.zeros((num_classes, num_classes), np.int64)
    shown = []
    for image, mask in data.test.as_numpy_iterator():  # batches of 1 whole image
        predicted = np.argmax(segment(image[0]).numpy(), axis=-1)
        matrix += segmentation_metrics.confusion_matrix(mask[0], predicted, num_classes)
        if len(shown) < max_plotted:
            shown.append((image[0], mask[0], predicted))
    result = segmentation_metrics.scores(matrix, info["class_names"])
    if plots_dir is not None and shown:
        with plots.best_effort(pathlib.Path(plots_dir) / "segmentation_examples.png") as path:
            comparison_grid(shown, num_classes, path)
    return result


# === Pictures ===


def palette(num_classes):
    """(256, 3) uint8 colours: the VOC palette for class ids (0 black), white for void."""
    colours = np.zeros((256, 3), np.uint8)
    for index in range(256):
        value, colour = index, np.zeros(3, int)
        for bit in range(8):  # VOC's bit-interleaving: distinct, stable colours per id
            colour |= ((value >> np.arange(3)) & 1) << (7 - bit)
            value >>= 3
        colours[index] = colour
    colours[IGNORE] = 255
    return colours


def overlay(image, class_map, alpha=0.5):
    """An RGB uint8 picture: the image blended with its coloured class map (background kept)."""
    rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image[..., :3]
    colours = palette(256)[np.clip(class_map, 0, 255)].astype(np.float32)
    blend = np.where((class_map > 0)[..., None], (1 - alpha) * rgb + alpha * colours, rgb)
    return blend.astype(np.uint8)


def comparison_grid(examples, num_classes, path, side=192):
    """Rows of image / truth / prediction (coloured masks), via `plots.image_grid`."""
    colours = palette(num_classes)
    pictures, titles = [], []
    for image, mask, predicted in examples:
        image = np.clip(image, 0, 255).astype(np.uint8)
        rgb = np.repeat(image, 3, axis=-1) if image.shape[-1] == 1 else image
        for picture, title in ((rgb, "image"), (colours[mask], "truth"), (colours[predicted], "prediction")):
            pictures.append(np.asarray(Image.fromarray(picture).resize((side, side), Image.Resampling.NEAREST)))
            titles.append(title)
    plots.image_grid(pictures, titles, path, columns=3)


# === Export and predict ===


def serving(model, info):
    """`serving_default`: encoded image bytes (any sizes) -> class map + probabilities at each size.

    Outputs are padded to the batch's largest image: `class_map` with -1, `probabilities` with 0;
    `height` and `width` give each image's own size. `segment_images` takes uint8 tensors
    (B, H, W, C) of one size. Label names are in `assets/labels.txt`.
    """
    channels, num_classes = info["channels"], info["num_classes"]
    segment = segmenter(model, info)

    def decode(encoded):
        return export.decode_image(encoded, channels)  # (H, W, C) uint8

    def from_bytes(image_bytes):
        sizes = tf.map_fn(lambda encoded: tf.shape(decode(encoded))[:2], image_bytes, fn_output_signature=tf.int32)
        largest = tf.reduce_max(sizes, axis=0)

        def one(encoded):
            probabilities = segment(decode(encoded))  # (H, W, K)
            pad = [[0, largest[0] - tf.shape(probabilities)[0]], [0, largest[1] - tf.shape(probabilities)[1]]]
            class_map = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
            return tf.pad(class_map, pad, constant_values=-1), tf.pad(probabilities, pad + [[0, 0]])

        class_map, probabilities = tf.map_fn(
            one,
            image_bytes,
            fn_output_signature=(
                tf.TensorSpec((None, None), tf.int32),
                tf.TensorSpec((None, None, num_classes), tf.float32),
            ),
        )
        return {"class_map": class_map, "probabilities": probabilities, "height": sizes[:, 0], "width": sizes[:, 1]}

    def from_uint8(images):
        probabilities = tf.map_fn(
            segment, images, fn_output_signature=tf.TensorSpec((None, None, num_classes), tf.float32)
        )
        return {"class_map": tf.argmax(probabilities, axis=-1, output_type=tf.int32), "probabilities": probabilities}

    # A crop-size image and a larger, odd-sized one: the check covers tiling and padding.
    crop = info["crop_size"]
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, size=(crop, crop, channels), dtype=np.uint8)
    large = rng.integers(0, 256, size=(crop + crop // 2 + 3, crop + 5, channels), dtype=np.uint8)
    encoded = np.array([tf.io.encode_png(image).numpy() for image in (small, large)])
    return [
        export.Endpoint(
            "serving_default", from_bytes, [tf.TensorSpec([None], tf.string, name="image_bytes")], [encoded]
        ),
        export.Endpoint(
            "segment_images",
            from_uint8,
            [tf.TensorSpec([None, None, None, channels], tf.uint8, name="images")],
            [small[None]],
        ),
    ]


def predict(inputs, model_path, output_dir="predictions"):
    """Runs the exported SavedModel on image files: one line each, overlay and mask PNGs."""
    loaded = export.load(model_path)
    segment = loaded.signatures["serving_default"]
    names = loaded.labels
    output = pathlib.Path(output_dir)
    for name, encoded, out in export.on_image_files(segment, inputs):
        file = pathlib.Path(name)
        height, width = int(out["height"][0]), int(out["width"][0])
        class_map = out["class_map"].numpy()[0, :height, :width]
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False).numpy()
        output.mkdir(parents=True, exist_ok=True)
        Image.fromarray(overlay(image, class_map)).save(output / f"{file.stem}_overlay.png")
        mask = Image.fromarray(class_map.astype(np.uint8)).convert("P")
        mask.putpalette(palette(256).ravel().tolist())
        mask.save(output / f"{file.stem}_mask.png")  # palette PNG: pixel values are class ids
        shares = np.bincount(class_map.ravel(), minlength=len(names or [])) / class_map.size
        listed = ", ".join(
            f"{names[i] if names else i} {share:.1%}" for i, share in enumerate(shares) if share > 0
        )
        print(f"{name}\t{width}x{height}\t{listed}")
    return loaded.path


def train(config, fresh=False):
    """The whole job: data → model → fit → evaluate + baseline → export. Returns the model."""
    return runner.train(sys.modules[__name__], config, fresh=fresh)


if __name__ == "__main__":
    cli.main(sys.modules[__name__])
