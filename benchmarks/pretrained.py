"""Pretrained ImageNet backbones against the same networks from scratch: classification on a small
CIFAR-10 slice, detection on BCCD, segmentation on membrane.

    python benchmarks/pretrained.py [--seeds 0,1,2] [--epochs 3] [--image-size 96]
    python benchmarks/pretrained.py --task detection --budget-seconds 356 [--image-size 256]
    python benchmarks/pretrained.py --task detection --image-size 320 --schedule cosine --epochs 15
    python benchmarks/pretrained.py --task segmentation --budget-seconds 180

Classification (the first 50 test images of each class to train on, the next 20 to test on) prints
one line per variant and seed (accuracy, training seconds) and the mean per variant: `frozen` (the
backbone frozen the whole run, batch norm in inference mode), `finetuned` (frozen for one epoch,
then all layers, the backbone at 0.1 x the rate) and `scratch` (random weights).

Detection (YOLOv2 on MobileNetV2 alpha 0.35, BCCD's own splits) and segmentation (U-Net width 16,
depth 4 on the same encoder, membrane slices 25-29 held out) give each variant, `pretrained` (the
ImageNet file, frozen for the first epoch, then the backbone at 0.1 x the rate) and `scratch`, the
same training time: a constant learning rate until `--budget-seconds` of training have passed
(checked after each batch), or with `--schedule cosine` a cosine decay over `--epochs`, the same
budget still stopping a run that has not finished by then. The test split is scored after every epoch (not counted as training
time): the lines give the final mAP@0.5 or Dice, the curve, and the training time to `--target`
(default mAP@0.5 0.85, Dice 0.92) where it was reached.
"""

import argparse
import pathlib
import sys
import tempfile
import time

import keras
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from benchmarks.classification import machine  # noqa: E402
from benchmarks.classification import matmul_peak  # noqa: E402
from tasks import classification  # noqa: E402
from tasks import detection  # noqa: E402
from tasks import segmentation  # noqa: E402
from tasks.core import config as config_lib  # noqa: E402
from tasks.core import finetune  # noqa: E402
from tasks.core import training  # noqa: E402
from tests.test_pretrained import PRETRAINED  # noqa: E402
from tests.test_pretrained import SHARED_DATA  # noqa: E402
from tests.test_pretrained import cifar_slice  # noqa: E402
from tests.test_pretrained_dense import BCCD  # noqa: E402
from tests.test_pretrained_dense import MEMBRANE  # noqa: E402

FILES = {
    "mobilenet": "mobilenet_2_5_224_tf_no_top.h5",
    "mobilenet_v2": "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5",
}


def run(tree, backbone, variant, seed, epochs, image_size, learning_rate):
    weights = "none" if variant == "scratch" else str(PRETRAINED / FILES[backbone])
    freeze = {"frozen": epochs, "finetuned": 1, "scratch": 0}[variant]
    config = config_lib.build(
        classification.Config, data=str(tree), backbone=backbone, weights=weights, image_size=image_size,
        epochs=epochs, batch_size=32, learning_rate=learning_rate, freeze_backbone_epochs=freeze,
        validation_fraction=0.0, seed=seed, verbose=0,
    )
    training.setup(config)
    data = classification.load_data(config)
    model = classification.build_model(config, data.info)
    started = time.perf_counter()
    model.fit(data.train, epochs=epochs, callbacks=finetune.callbacks(model, config), verbose=0)
    seconds = time.perf_counter() - started
    return classification.evaluate(model, data, config)["accuracy"], seconds


# === Detection and segmentation at equal training time ===

# task -> (module, metric, default target, the test's recipe)
DENSE = {
    "detection": (detection, "map50", 0.85, BCCD),
    "segmentation": (segmentation, "dice", 0.92, MEMBRANE),
}


class Curve(keras.callbacks.Callback):
    """Scores the test split after every epoch (not counted as training time) and stops training
    once `seconds` of it have passed; `points` holds (training seconds, metric) per epoch."""

    def __init__(self, module, data, config, metric, seconds):
        super().__init__()
        self.module, self.data, self.config = module, data, config
        self.metric, self.seconds = metric, seconds

    def on_train_begin(self, logs=None):
        self.points, self.trained = [], 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.trained + time.perf_counter() - self.started >= self.seconds:
            self.model.stop_training = True

    def on_epoch_end(self, epoch, logs=None):
        self.trained += time.perf_counter() - self.started
        score = self.module.evaluate(self.model, self.data, self.config)[self.metric]
        self.points.append((round(self.trained, 1), round(float(score), 4)))


def dense_run(task, variant, seed, args):
    module, metric, _, recipe = DENSE[task]
    weights = "none" if variant == "scratch" else str(PRETRAINED / FILES[args.backbone])
    epochs = args.epochs if args.schedule == "cosine" else 1000  # constant: the budget stops it
    overrides = dict(recipe, backbone=args.backbone, data=str(SHARED_DATA / recipe["data"]), epochs=epochs)
    if args.image_size and task == "detection":
        overrides["image_size"] = args.image_size
    config = config_lib.build(module.Config, weights=weights, schedule=args.schedule, seed=seed, verbose=0,
                              **overrides)
    training.setup(config)
    data = module.load_data(config)
    model = module.build_model(config, data.info)
    curve = Curve(module, data, config, metric, args.budget_seconds)
    model.fit(data.train, epochs=config.epochs, callbacks=finetune.callbacks(model, config) + [curve], verbose=0)
    return curve.points


def dense(args):
    _, metric, target, _ = DENSE[args.task]
    target = args.target or target
    rate = matmul_peak(4096)["gflops"]
    print(f"{args.task}: {machine()}; TensorFlow 4096^2 fp32 matmul {rate} GFLOP/s", flush=True)
    shown = ("backbone", "variants", "seeds", "budget_seconds", "schedule", "epochs", "image_size")
    print("settings: " + ", ".join(f"{key} {getattr(args, key)}" for key in shown), flush=True)
    for variant in args.variants.split(","):
        for seed in (int(part) for part in args.seeds.split(",")):
            points = dense_run(args.task, variant, seed, args)
            reached = next((seconds for seconds, score in points if score >= target), None)
            when = f"{target} at {reached:.0f} s" if reached is not None else f"{target} not reached"
            curve = ", ".join(f"{score:.3f}@{seconds:.0f}s" for seconds, score in points)
            print(f"{args.task} {args.backbone} {variant} seed {seed}: {metric} {points[-1][1]:.4f} after "
                  f"{points[-1][0]:.0f} s of training in {len(points)} epochs; {when}; curve {curve}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="classification", choices=["classification", *DENSE])
    parser.add_argument("--seeds", default=None, help="Default: 0,1,2 (classification), 0 (detection, segmentation).")
    parser.add_argument("--epochs", type=int, default=3,
                        help="Classification; detection and segmentation with --schedule cosine.")
    parser.add_argument("--image-size", type=int, default=None,
                        help="Classification: 96 by default; detection: the test recipe's 160 by default.")
    parser.add_argument("--learning-rate", type=float, default=3e-3, help="Classification only.")
    parser.add_argument("--backbone", default="mobilenet_v2", choices=sorted(FILES))
    parser.add_argument("--variants", default=None,
                        help="Default: frozen,finetuned,scratch (classification), pretrained,scratch (the others).")
    parser.add_argument("--budget-seconds", type=float, default=180.0, help="Training time per dense run.")
    parser.add_argument("--schedule", default="constant", choices=["constant", "cosine"],
                        help="Detection and segmentation: the learning-rate schedule.")
    parser.add_argument("--target", type=float, default=None, help="Dense: the score whose time is reported.")
    args = parser.parse_args()
    if args.task != "classification":
        args.seeds = args.seeds or "0"
        args.variants = args.variants or "pretrained,scratch"
        return dense(args)
    args.seeds, args.image_size = args.seeds or "0,1,2", args.image_size or 96
    args.variants = args.variants or "frozen,finetuned,scratch"
    with tempfile.TemporaryDirectory() as folder:
        tree = cifar_slice(SHARED_DATA / "cifar10_jpg", pathlib.Path(folder))
        for variant in args.variants.split(","):
            results = []
            for seed in (int(part) for part in args.seeds.split(",")):
                accuracy, seconds = run(tree, args.backbone, variant, seed, args.epochs, args.image_size,
                                        args.learning_rate)
                results.append((accuracy, seconds))
                print(f"{args.backbone} {variant} seed {seed}: accuracy {accuracy:.4f}, {seconds:.1f} s", flush=True)
            accuracy, seconds = np.mean(results, axis=0)
            print(f"{args.backbone} {variant} mean: accuracy {accuracy:.4f}, {seconds:.1f} s of training", flush=True)


if __name__ == "__main__":
    main()
