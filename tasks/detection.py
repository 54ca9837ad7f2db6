"""Object detection: a YOLO v2-style grid head and a Faster R-CNN-style two-stage head, against mean boxes.

Usage:
    python -m tasks.detection train                                        # demo: shapes, YOLO head, < 1 min
    python -m tasks.detection train --data bccd --image-size 320 --epochs 30 \
        --flip --vertical-flip --scale-jitter 0.2                          # Pascal VOC layout
    python -m tasks.detection train --data bccd --model faster_rcnn --backbone resnet18
    python -m tasks.detection train --data bccd --image-size 160 --backbone mobilenet_v2 \
        --weights mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5  # ImageNet start
    python -m tasks.detection train --data coco/annotations/instances_val2017.json
    python -m tasks.detection train --data tfds:voc/2007
    python -m tasks.detection evaluate                                     # the same flags find the run
    python -m tasks.detection predict cells.jpg                            # box drawings in predictions/

Data: Pascal VOC (+ ImageSets/Main splits), VOC XML files beside their images (LabelImg), a box
CSV (filename,width,height,class,xmin,ymin,xmax,ymax), COCO JSON, YOLO txt or an Ultralytics
data.yaml, `tfds:voc`, or `demo` (`tasks.data.boxes`); --test-fraction holds out a test split where
the layout has none. Images are letterboxed (longer side to --image-size, grey padding), with
box-aware flips and scale jitter (padding or cropping) in training.
Model: a detection builder of the applications registry on a --backbone, a registry classifier or
an ImageNet MobileNet (`--weights`, staged fine-tuning: `tasks.core.finetune`): `yolo_v2`
(anchors from k-means on the training boxes, IoU distance) or `faster_rcnn` (RPN anchors at
three sizes from k-means on the training boxes and three ratios, proposal NMS, RoI align).
Each head brings its loss with its target assignment and its decoding; NMS runs in the graph.
Metrics: VOC mAP@0.5 (all-point interpolation) and COCO AP@[.5:.95] / AP50 / AP75 (pycocotools).
Baseline: each class's mean training box (relative to the image) with the class prior as score.
Export: encoded image bytes of any size -> boxes in the input's pixels, classes, class names,
scores and num_detections after NMS.
"""

import dataclasses
import pathlib
import sys

import keras
import numpy as np
import tensorflow as tf
from PIL import Image
from PIL import ImageDraw

import applications
from applications import backbones
from applications import yolo as yolo_family
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
from tasks.data import boxes as box_readers
from tasks.metrics import detection as detection_metrics

KIND = "detector"  # the applications registry kind(s) --model names

FILL = box_readers.FILL
DEMO_SIZE = 128  # the demo scenes' side: --image-size 0 uses it for demo, DEFAULT_SIZE otherwise
DEFAULT_SIZE = 320
MAX_BOXES = 100  # ground-truth boxes kept per image (VOC has at most 42, BCCD 30)
ANCHOR_RATIOS = (0.5, 1.0, 2.0)  # faster_rcnn anchor aspect ratios (height / width)
NUM_ANCHOR_SIZES = 3  # faster_rcnn anchor sides, picked from the k-means shape clusters
GALLERY_SIZE = 6  # test images drawn beside their ground truth
GALLERY_MIN_SCORE = 0.3  # detections drawn in the gallery and by predict (all count in the metrics)


@dataclasses.dataclass
class Config(TrainConfig, finetune.BackboneConfig):
    epochs: int = option(8, "Passes over the training split.", minimum=1)
    batch_size: int = option(16, "Global batch size.", minimum=1)
    learning_rate: float = option(2e-3, "Peak learning rate.", minimum=0.0)
    weight_decay: float = option(5e-4, "Decoupled weight decay (0: off).", minimum=0.0)
    warmup_epochs: float = option(1.0, "Linear warmup before the schedule.", minimum=0.0)
    precision: str = float32_only()  # bfloat16 scores move boxes across NMS and the score threshold
    model: str = model_option("yolo_v2", KIND)
    backbone: str = finetune.backbone_option("darknet_tiny", "The feature extractor")
    image_size: int = option(
        0, f"Network input side; images are letterboxed to it (0: {DEMO_SIZE} for demo, {DEFAULT_SIZE} otherwise).",
        minimum=0,
    )
    stride: int = option(16, "Output stride of the detection features (the YOLO grid cell, the RPN anchor step).", minimum=4)
    num_anchors: int = option(5, "yolo_v2: anchor priors from k-means on the training boxes.", minimum=1)
    classes: str = option(
        "", "Class names in order, comma-separated; other names are an error (empty: every name in the data)."
    )
    test_fraction: float = option(0.2, "Share of the images held out as the test split when the data has none.", minimum=0.0)
    flip: bool = option(False, "Random horizontal flips (boxes follow).")
    vertical_flip: bool = option(False, "Random vertical flips (boxes follow).")
    scale_jitter: float = option(
        0.0, "Random rescaling by up to this share, then random padding or cropping (0: off).", minimum=0.0
    )
    max_detections: int = option(100, "Detections per image after NMS.", minimum=1)
    nms_iou: float = option(0.5, "IoU above which NMS suppresses a lower-scored box of the same class.", minimum=0.0)
    score_threshold: float = option(0.01, "Lowest score kept (low: mAP needs the whole ranking).", minimum=0.0)


# === Data ===


def read_source(config):
    """The config's data as a `BoxData`; prints the layout found (`data: box CSV, 120 images, 2 classes`)."""
    names = [name.strip() for name in config.classes.split(",") if name.strip()] or None
    return box_readers.read(config.data, class_names=names, skip_bad=config.skip_bad, verbose=bool(config.verbose))


def input_size(config):
    return config.image_size or (DEMO_SIZE if config.data == "demo" else DEFAULT_SIZE)


def family(model_name):
    """The applications module of a detection builder (it provides `losses` and `detections`)."""
    return sys.modules[training.model_builder(model_name, KIND).__module__]


def letterbox(images, size):
    """uint8 or float (B, H, W, C) of one size -> float32 (B, size, size, C) and the scale applied.

    The longer side becomes `size` (bilinear, antialiased), the rest is grey padding at the
    bottom and right, so a box in the input's pixels is `network box * size / scale`.
    """
    images = tf.cast(images, tf.float32)
    height, width = tf.shape(images)[1], tf.shape(images)[2]
    scale = size / tf.cast(tf.maximum(height, width), tf.float32)
    new_height = tf.maximum(tf.cast(tf.round(tf.cast(height, tf.float32) * scale), tf.int32), 1)
    new_width = tf.maximum(tf.cast(tf.round(tf.cast(width, tf.float32) * scale), tf.int32), 1)
    resized = tf.image.resize(images, tf.stack([new_height, new_width]), antialias=True)
    padded = tf.pad(resized - FILL, [[0, 0], [0, size - new_height], [0, size - new_width], [0, 0]]) + FILL
    return tf.ensure_shape(padded, [None, size, size, images.shape[-1]]), scale


def prepare(split, size):
    """A split letterboxed: uint8 (N, size, size, 3) and dense targets (N, MAX_BOXES, 5)."""
    images = np.zeros((len(split), size, size, 3), np.uint8)
    targets = np.zeros((len(split), MAX_BOXES, 5), np.float32)
    for index, (image, boxes, classes) in enumerate(zip(split.images, split.boxes, split.classes)):
        padded, scale = letterbox(image[None], size)
        images[index] = np.clip(np.round(padded[0].numpy()), 0, 255).astype(np.uint8)
        targets[index] = box_readers.dense_targets(np.asarray(boxes) * float(scale), classes, size, MAX_BOXES)
    return images, targets


def box_statistics(split, size, num_anchors, seed):
    """Training-box facts the heads and the baseline need (all relative to the letterboxed input)."""
    sizes, relative, labels = [], [], []
    for image, boxes, classes in zip(split.images, split.boxes, split.classes):
        height, width = image.shape[:2]
        scale = size / max(height, width)
        boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
        sizes.append((boxes[:, 2:] - boxes[:, :2]) * scale / size)  # (n, 2) width, height / S
        relative.append(boxes / np.array([width, height, width, height]))
        labels.append(np.asarray(classes))
    sizes, relative, labels = np.concatenate(sizes), np.concatenate(relative), np.concatenate(labels)
    if not len(sizes):
        raise UserError("the training split holds no boxes; a detector needs some objects to learn from.")
    anchors = yolo_family.kmeans_anchors(sizes, num_anchors, seed=seed)
    # faster_rcnn anchor sides: sqrt(w h) of the smallest, middle and largest shape clusters, so
    # rare sizes count (quantiles would all fall inside a dominant class, e.g. BCCD's red cells).
    clusters = yolo_family.kmeans_anchors(sizes, max(num_anchors, NUM_ANCHOR_SIZES), seed=seed)
    clusters = clusters[np.unique(np.linspace(0, len(clusters) - 1, NUM_ANCHOR_SIZES).round().astype(int))]
    return {
        "anchors": np.round(anchors, 5).tolist(),
        "anchor_mean_iou": round(yolo_family.mean_best_iou(sizes, anchors), 4),
        "anchor_sizes": np.round(np.sqrt(clusters[:, 0] * clusters[:, 1]), 4).tolist(),
        "relative_boxes": relative,
        "labels": labels,
    }


def load_data(config, saved=None):
    """Train / validation / test datasets and the facts the model needs."""
    head = family(config.model)
    found = read_source(config)
    size = input_size(config)
    train = found.splits["train"]
    if "test" in found.splits and len(found.splits["test"]):
        test = found.splits["test"]
    else:
        keep, held = pipeline.split_indices(np.zeros(len(train)), config.test_fraction, config.seed, stratify=False)
        train, test = train.take(keep), train.take(held)
    if "validation" in found.splits and len(found.splits["validation"]):
        validation = found.splits["validation"]
    else:
        keep, held = pipeline.split_indices(
            np.zeros(len(train)), config.validation_fraction, config.seed + 1, stratify=False
        )
        train, validation = train.take(keep), train.take(held)
    if not len(train) or not len(test):
        raise UserError(f"--data {config.data}: too few images to make train and test splits.")
    statistics = box_statistics(train, size, config.num_anchors, config.seed)
    num_classes = len(found.class_names)
    counts = np.bincount(statistics["labels"], minlength=num_classes)
    mean_boxes = [
        statistics["relative_boxes"][statistics["labels"] == k].mean(axis=0).round(5).tolist() if counts[k] else None
        for k in range(num_classes)
    ]
    train_images, train_targets = prepare(train, size)
    pixels = train_images.reshape(-1, 3).astype(np.float64)
    info = {
        "class_names": list(found.class_names),
        "num_classes": num_classes,
        "image_size": size,
        "max_boxes": MAX_BOXES,
        "anchors": statistics["anchors"],
        "anchor_mean_iou": statistics["anchor_mean_iou"],
        "anchor_sizes": statistics["anchor_sizes"],
        "anchor_ratios": list(ANCHOR_RATIOS),
        "mean": pixels.mean(axis=0).tolist(),
        "variance": np.maximum(pixels.var(axis=0), 1e-6).tolist(),
        "num_train": len(train),
        "num_validation": len(validation),
        "num_test": len(test),
        "train_boxes_per_class": dict(zip(found.class_names, counts.tolist())),
        "class_priors": (counts / counts.sum()).round(5).tolist(),
        "mean_boxes": mean_boxes,  # per class: mean x1 y1 x2 y2 as fractions of the image
        "boxes_clipped": found.clipped,
        "boxes_dropped": found.dropped,
        "skipped": [f"{where}: {reason}" for where, reason in found.skipped],
        "test_names": list(test.names),
        # Decoding settings the export carries.
        "detection": {"model": config.model, "max_detections": config.max_detections,
                      "nms_iou": config.nms_iou, "score_threshold": config.score_threshold},
    }
    if config.verbose and (found.clipped or found.dropped or found.skipped):
        print(f"Boxes clipped to their image: {found.clipped}; zero-area boxes dropped: {found.dropped}; "
              f"images skipped (--skip-bad): {len(found.skipped)}")
    outputs = getattr(head, "OUTPUTS", ())

    def label(target):  # one ground-truth tensor, or the same one for each output of a two-stage model
        return {key: target for key in outputs} if outputs else target

    augment = box_readers.augment_fn(size, config.flip, config.vertical_flip, config.scale_jitter)

    def train_map(image, target):
        image, target = augment(image, target)
        return image, label(target)

    train_dataset = pipeline.finalize(
        tf.data.Dataset.from_tensor_slices((train_images, train_targets)), config.batch_size, shuffle=True,
        seed=config.seed, augment=train_map,
    )
    validation_dataset = None
    if len(validation):
        images, targets = prepare(validation, size)
        validation_dataset = pipeline.finalize(
            tf.data.Dataset.from_tensor_slices((images, targets)), config.batch_size,
            augment=lambda image, target: (tf.cast(image, tf.float32), label(target)),  # noqa: E731
        )
    test_dataset = tf.data.Dataset.from_generator(
        lambda: zip(test.images, test.boxes, test.classes),
        output_signature=(
            tf.TensorSpec((None, None, 3), tf.uint8),
            tf.TensorSpec((None, 4), tf.float32),
            tf.TensorSpec((None,), tf.int32),
        ),
    )
    return pipeline.Data(train=train_dataset, validation=validation_dataset, test=test_dataset, info=info)


# === Model ===


def build_model(config, info):
    """Normalization + a registry detection network on its backbone, compiled with its head's losses.

    A pretrained `--backbone` brings its own preprocessing (pixels to [-1, 1]) in place of the
    data's normalization, and its `--weights`; a registry classifier starts from random weights.
    """
    head = family(config.model)
    size = info["image_size"]
    shape = (size, size, 3)
    inputs = keras.Input(shape, name="image")  # float pixels in [0, 255], letterboxed
    if finetune.check_backbone(config):
        if backbones.backbone_shape(shape) != shape:
            raise UserError(f"--backbone {config.backbone} needs --image-size {backbones.MINIMUM_SIDE} or more.")
        x = backbones.preprocess(inputs, shape)
        backbone = finetune.feature_extractor(config, shape)  # pixels in [-1, 1] -> strides 2 ... 32
    else:
        x = keras.layers.Normalization(mean=info["mean"], variance=info["variance"], name="normalize")(inputs)
        backbone = config.backbone
    arguments = {"backbone": backbone, "stride": config.stride}
    if head is yolo_family:
        arguments["anchors"] = info["anchors"]
    else:
        arguments.update(anchor_sizes=info["anchor_sizes"], anchor_ratios=info["anchor_ratios"])
    try:
        network = applications.get(config.model)(input_shape=shape, num_classes=info["num_classes"], **arguments)
    except ValueError as error:
        raise UserError(f"--model {config.model} --backbone {config.backbone}: {error}")
    model = keras.Model(inputs, network(x), name=f"{config.model}_detector")
    return training.compile(model, config, info, loss=head.losses(network))


def detector(model, info, options):
    """uint8 (B, H, W, 3) images of one size -> detections in their pixels, NMS in the graph.

    `options` is the Config (or anything with its `model`, `max_detections`, `nms_iou` and
    `score_threshold`). Returns a function giving `boxes` (B, D, 4) `[x_min, y_min, x_max,
    y_max]` in the input's pixels, `scores` (B, D), `classes` (B, D) int32, `num_detections` (B,).
    """
    head = family(options.model)
    network = next(layer for layer in model.layers if isinstance(layer, keras.Model))
    size = info["image_size"]

    def detect(images):
        height, width = tf.shape(images)[1], tf.shape(images)[2]
        padded, scale = letterbox(images, size)
        found = head.detections(
            network, model(padded, training=False), options.max_detections, options.nms_iou, options.score_threshold
        )
        boxes = found["boxes"] * (size / scale)  # normalized yxyx -> input pixels
        limits = tf.cast(tf.stack([width, height, width, height]), tf.float32)
        boxes = tf.minimum(tf.stack([boxes[..., 1], boxes[..., 0], boxes[..., 3], boxes[..., 2]], axis=-1), limits)
        return {**found, "boxes": boxes}

    return detect


# === Baseline and evaluation ===


def truth_of(data):
    return [(boxes, classes) for _, boxes, classes in data.test.as_numpy_iterator()]


def scores(detections, truth, class_names):
    voc = detection_metrics.voc_map(detections, truth, class_names)
    coco = detection_metrics.coco_ap(detections, truth, class_names)
    return {
        "map50": voc["map50"],
        "coco_ap": coco["ap"],
        "coco_ap50": coco["ap50"],
        "coco_ap75": coco["ap75"],
        "ap50_per_class": voc["ap50_per_class"],
    }


def baseline(config, data):
    """Each class's mean training box, placed relative to each test image, scored by its class prior."""
    info = data.info
    detections, truth = [], []
    for image, boxes, classes in data.test.as_numpy_iterator():
        height, width = image.shape[:2]
        present = [k for k, box in enumerate(info["mean_boxes"]) if box is not None]
        placed = np.array([info["mean_boxes"][k] for k in present]).reshape(-1, 4) * [width, height, width, height]
        detections.append((placed, np.array([info["class_priors"][k] for k in present]), np.array(present)))
        truth.append((boxes, classes))
    result = scores(detections, truth, info["class_names"])
    result["name"] = "mean training box per class, class prior as score"
    return result


def evaluate(model, data, config, plots_dir=None, batch_size=8):
    """VOC mAP@0.5 and COCO AP on the whole test images (any sizes), and a gallery PNG."""
    info = data.info
    detect = tf.function(detector(model, info, config), input_signature=[tf.TensorSpec((None, None, None, 3), tf.uint8)])
    examples = list(data.test.as_numpy_iterator())
    detections = [None] * len(examples)
    by_shape = {}
    for index, (image, _, _) in enumerate(examples):
        by_shape.setdefault(image.shape, []).append(index)
    for indices in by_shape.values():
        for start in range(0, len(indices), batch_size):
            chunk = indices[start : start + batch_size]
            found = {key: value.numpy() for key, value in detect(np.stack([examples[i][0] for i in chunk])).items()}
            for row, index in enumerate(chunk):
                count = found["num_detections"][row]
                detections[index] = tuple(found[key][row, :count] for key in ("boxes", "scores", "classes"))
    truth = [(boxes, classes) for _, boxes, classes in examples]
    result = scores(detections, truth, info["class_names"])
    if plots_dir is not None:
        with plots.best_effort(pathlib.Path(plots_dir) / "detection_gallery.png") as path:
            gallery(examples[:GALLERY_SIZE], detections[:GALLERY_SIZE], info["class_names"], path)
    return result


# === Pictures ===

COLOURS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180), (70, 240, 240),
           (240, 50, 230), (210, 245, 60), (0, 128, 128), (170, 110, 40)]


def draw_boxes(image, boxes, classes, class_names, scores=None, min_score=GALLERY_MIN_SCORE):
    """An RGB uint8 copy of `image` with labelled boxes (those scored >= min_score, or all ground truth)."""
    picture = Image.fromarray(np.asarray(image, np.uint8)).convert("RGB")
    draw = ImageDraw.Draw(picture)
    line = max(1, round(max(picture.size) / 250))
    for index, (box, cls) in enumerate(zip(np.asarray(boxes).reshape(-1, 4), np.asarray(classes).reshape(-1))):
        if scores is not None and scores[index] < min_score:
            continue
        colour = COLOURS[int(cls) % len(COLOURS)]
        draw.rectangle([float(v) for v in box], outline=colour, width=line)
        text = class_names[int(cls)] + ("" if scores is None else f" {scores[index]:.2f}")
        draw.text((float(box[0]) + 2, float(box[1]) + 1), text, fill=colour)
    return np.asarray(picture)


def gallery(examples, detections, class_names, path, side=256):
    """Rows of ground truth | prediction for the first test images, via `plots.image_grid`."""
    pictures, titles = [], []
    for (image, boxes, classes), (found, found_scores, found_classes) in zip(examples, detections):
        for picture, title in (
            (draw_boxes(image, boxes, classes, class_names), f"truth ({len(boxes)})"),
            (draw_boxes(image, found, found_classes, class_names, found_scores),
             f"prediction (score >= {GALLERY_MIN_SCORE})"),
        ):
            scale = side / max(picture.shape[:2])
            size = (max(1, round(picture.shape[1] * scale)), max(1, round(picture.shape[0] * scale)))
            pictures.append(np.asarray(Image.fromarray(picture).resize(size, Image.Resampling.BILINEAR)))
            titles.append(title)
    if pictures:
        plots.image_grid(pictures, titles, path, columns=2)


# === Export and predict ===


def serving(model, info):
    """`serving_default`: encoded image bytes (any sizes) -> detections in each image's pixels.

    Outputs: `boxes` (B, D, 4) `[x_min, y_min, x_max, y_max]` in input pixels, `classes` (B, D)
    int32, `class_names` (B, D) string, `scores` (B, D), `num_detections` (B,); rows past
    `num_detections` are padding (zeros, ""). `detect_images` takes uint8 (B, H, W, 3) of one
    size. Label names are also in `assets/labels.txt`.
    """
    options = _Options(**{key: info["detection"][key] for key in _Options.__dataclass_fields__})
    detect = detector(model, info, options)
    names = tf.constant(info["class_names"] + [""])

    def named(found):
        valid = tf.range(tf.shape(found["classes"])[1])[None, :] < found["num_detections"][:, None]
        found["class_names"] = tf.gather(names, tf.where(valid, found["classes"], len(info["class_names"])))
        return found

    def from_bytes(image_bytes):
        def one(encoded):
            image = tf.io.decode_image(encoded, channels=3, expand_animations=False)  # (H, W, 3) uint8
            found = detect(image[None])
            return {key: value[0] for key, value in found.items()}

        found = tf.map_fn(
            one, image_bytes,
            fn_output_signature={
                "boxes": tf.TensorSpec((options.max_detections, 4), tf.float32),
                "scores": tf.TensorSpec((options.max_detections,), tf.float32),
                "classes": tf.TensorSpec((options.max_detections,), tf.int32),
                "num_detections": tf.TensorSpec((), tf.int32),
            },
        )
        return named(found)

    def from_uint8(images):
        return named(detect(images))

    rng = np.random.default_rng(0)
    size = info["image_size"]
    wide = rng.integers(0, 256, size=(size // 2 + 7, size + 13, 3), dtype=np.uint8)
    tall = rng.integers(0, 256, size=(size + 5, size // 2, 3), dtype=np.uint8)
    encoded = np.array([tf.io.encode_png(image).numpy() for image in (wide, tall)])
    return [
        export.Endpoint("serving_default", from_bytes, [tf.TensorSpec([None], tf.string, name="image_bytes")], [encoded]),
        export.Endpoint("detect_images", from_uint8, [tf.TensorSpec([None, None, None, 3], tf.uint8, name="images")],
                        [wide[None]]),
    ]


@dataclasses.dataclass
class _Options:
    """The decoding settings an export carries (in info.json under "detection")."""

    model: str
    max_detections: int
    nms_iou: float
    score_threshold: float


def predict_flags(parser):
    parser.add_argument("--min-score", type=float, default=GALLERY_MIN_SCORE,
                        help=f"Draw and print detections scored at least this (default: {GALLERY_MIN_SCORE}).")


def predict(inputs, model_path, output_dir="predictions", min_score=GALLERY_MIN_SCORE):
    """Runs the exported SavedModel on image files: one line per detection, a PNG with the boxes drawn."""
    loaded = export.load(model_path)
    signature = loaded.signatures["serving_default"]
    class_names = loaded.labels
    output = pathlib.Path(output_dir)
    for name, encoded, found in export.on_image_files(signature, inputs):
        count = int(found["num_detections"][0])
        boxes = found["boxes"].numpy()[0, :count]
        found_scores = found["scores"].numpy()[0, :count]
        classes = found["classes"].numpy()[0, :count]
        names = [value.decode() for value in found["class_names"].numpy()[0, :count]]
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False).numpy()
        output.mkdir(parents=True, exist_ok=True)
        drawn = draw_boxes(image, boxes, classes, class_names or [str(k) for k in range(int(classes.max(initial=0)) + 1)],
                           found_scores, min_score)
        Image.fromarray(drawn).save(output / f"{pathlib.Path(name).stem}_boxes.png")
        shown = [i for i in range(count) if found_scores[i] >= min_score]
        print(f"{name}\t{image.shape[1]}x{image.shape[0]}\t{len(shown)} detection(s) scored >= {min_score}")
        for i in shown:
            x1, y1, x2, y2 = boxes[i]
            print(f"  {names[i]}\t{found_scores[i]:.3f}\t{x1:.0f},{y1:.0f},{x2:.0f},{y2:.0f}")
    return loaded.path


def train(config, fresh=False):
    """The whole job: data → model → fit → evaluate + baseline → export. Returns the model."""
    return runner.train(sys.modules[__name__], config, fresh=fresh)


if __name__ == "__main__":
    cli.main(sys.modules[__name__])
