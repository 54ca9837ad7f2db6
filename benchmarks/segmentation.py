"""Benchmark of the segmentation task on ISBI membrane: held-out Dice, images/s, FCN vs U-Net.

Usage:
    python benchmarks/segmentation.py --quick        # ~3 min: checks the script, not a benchmark
    python benchmarks/segmentation.py                # the recipe + FCN vs U-Net at equal time (~20 min)
    python benchmarks/segmentation.py --budget-seconds 300 --data ../shared/data/membrane

Measured in one process, in this order (slices 25-29 held out as the test split throughout):

1. Recipe: `tasks.segmentation.train` with `RECIPE` (the package's whole path: tf.data, callbacks,
   checkpoints, sliding-window evaluation on the whole 512x512 test slices, export); its test
   Dice / mIoU / pixel accuracy beside the majority baseline, and its training crops/s (the
   spine's `Throughput`: median over the epochs after the first).
2. Decoder choice at equal wall-clock time: each of `DECODERS` is built by
   `tasks.segmentation.build_model` on the same data and crops and trained by `model.fit` with a
   constant learning rate until `--budget-seconds` of training have passed (checked after each
   batch), then evaluated the same way.

Prints a Markdown section for BENCHMARKS.md on stdout (progress goes to stderr).
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from benchmarks.classification import log  # noqa: E402
from benchmarks.classification import machine  # noqa: E402
from tasks import segmentation  # noqa: E402
from tasks.core import config as config_lib  # noqa: E402
from tasks.core import training  # noqa: E402

COMMON = dict(
    class_map="0:membrane,255:cell", test_names="25-29", validation_fraction=0.0, crop_size=128,
    flip=True, rotate90=True, loss="ce_dice", verbose=0,
)
RECIPE = dict(COMMON, model="unet", width=32, depth=4, crops_per_image=16, epochs=20, photometric=0.1)
DECODERS = [
    ("U-Net (plain, width 16)", dict(model="unet", width=16, depth=4)),
    ("FCN-8s (resnet18)", dict(model="fcn8s", backbone="resnet18")),
    ("FCN-32s (resnet18)", dict(model="fcn32s", backbone="resnet18")),
]
QUICK = {"epochs": 1, "crops_per_image": 2, "budget_seconds": 20}


class TimeBudget(keras.callbacks.Callback):
    """Stops training once `seconds` of training time have passed; counts the crops seen."""

    def __init__(self, seconds, batch_size):
        super().__init__()
        self.seconds = seconds
        self.batch_size = batch_size

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()
        self.crops = 0

    def on_train_batch_end(self, batch, logs=None):
        self.crops += self.batch_size
        if time.perf_counter() - self.started >= self.seconds:
            self.model.stop_training = True


def recipe(data_path, workdir, quick):
    overrides = dict(RECIPE, epochs=QUICK["epochs"], crops_per_image=QUICK["crops_per_image"]) if quick else RECIPE
    config = config_lib.build(segmentation.Config, data=data_path, runs_dir=str(workdir / "runs"),
                              export_dir=str(workdir / "saved_models"), **overrides)
    log(f"recipe: {overrides}")
    started = time.perf_counter()
    segmentation.train(config, fresh=True)
    seconds = time.perf_counter() - started
    (run,) = (workdir / "runs" / "segmentation").iterdir()
    record = json.loads((run / "metrics.json").read_text())
    return {"overrides": overrides, "wall_seconds": round(seconds, 1), **record}


def decoder_at_budget(label, overrides, data_path, budget):
    config = config_lib.build(
        segmentation.Config, data=data_path, schedule="constant", epochs=1000, crops_per_image=8,
        **dict(COMMON, **overrides),
    )
    training.setup(config)
    data = segmentation.load_data(config)
    model = segmentation.build_model(config, data.info)
    meter = TimeBudget(budget, config.batch_size)
    log(f"{label}: training for {budget} s")
    model.fit(data.train, epochs=config.epochs, callbacks=[meter], verbose=0)
    seconds = time.perf_counter() - meter.started
    result = segmentation.evaluate(model, data, config)
    return {
        "label": label, "parameters": model.count_params(), "crops": meter.crops,
        "crops_per_second": round(meter.crops / seconds, 1), "dice": result["dice"], "miou": result["miou"],
    }


def markdown(result):
    r = result["recipe"]
    m, b = r["metrics"], r["baseline"]
    flags = " ".join(
        f"--{key.replace('_', '-')}" + ("" if value is True else f" {value}")
        for key, value in r["overrides"].items() if key != "verbose"
    )
    lines = [
        "## Semantic segmentation (ISBI 2012 membrane, slices 25-29 held out)",
        "",
        f"Machine: {result['machine']['nproc']} cores, {result['machine']['cpu']}, load "
        f"{result['machine']['load_average_1min']} at start; TF {result['machine']['tensorflow']}, "
        f"Keras {result['machine']['keras']}." + (" **Quick mode: not a benchmark.**" if result["quick"] else ""),
        "",
        f"Recipe: `python -m tasks.segmentation train --data ../shared/data/membrane {flags}`",
        "",
        "| metric (5 whole test slices, sliding window) | model | majority baseline |",
        "|---|---|---|",
        f"| Dice (cell) | {m['dice']:.4f} | {b['dice']:.4f} |",
        f"| mIoU | {m['miou']:.4f} | {b['miou']:.4f} |",
        f"| pixel accuracy | {m['pixel_accuracy']:.4f} | {b['pixel_accuracy']:.4f} |",
        "",
        f"Training: {r['examples_per_second']} crops/s (128x128), {r['train_seconds']} s for {r['epochs']} "
        f"epochs; {r['wall_seconds']} s wall in all (data, fit, evaluation, export).",
        "",
        f"Decoder choice at equal training time ({result['budget_seconds']} s each, constant learning rate, "
        "same crops and augmentation):",
        "",
        "| decoder | parameters | crops seen | crops/s | test Dice | test mIoU |",
        "|---|---|---|---|---|---|",
    ]
    for row in result["decoders"]:
        lines.append(
            f"| {row['label']} | {row['parameters'] / 1e6:.2f}M | {row['crops']} | {row['crops_per_second']} "
            f"| {row['dice']:.4f} | {row['miou']:.4f} |"
        )
    lines.append("")
    lines.append("Command: `python benchmarks/segmentation.py" + (" --quick`" if result["quick"] else "`"))
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "membrane"))
    parser.add_argument("--budget-seconds", type=float, default=180.0, help="Training time per decoder.")
    parser.add_argument("--quick", action="store_true", help="Tiny sizes to check the script.")
    args = parser.parse_args(argv)
    budget = QUICK["budget_seconds"] if args.quick else args.budget_seconds
    result = {"machine": machine(), "quick": args.quick, "budget_seconds": budget}
    with tempfile.TemporaryDirectory() as scratch:
        result["recipe"] = recipe(args.data, pathlib.Path(scratch), args.quick)
    result["decoders"] = [decoder_at_budget(label, overrides, args.data, budget) for label, overrides in DECODERS]
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
