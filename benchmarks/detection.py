"""Benchmark of the detection task on BCCD: test mAP@0.5 of both heads, images/s, export latency.

Usage:
    python benchmarks/detection.py --quick                 # ~3 min: checks the script, not a benchmark
    python benchmarks/detection.py                         # both heads, the goal recipe (80 epochs at 416 px each)
    python benchmarks/detection.py --epochs 16 --image-size 256 --heads yolo_v2   # the first, short budget (mAP 0.65)

For each head (`yolo_v2`, `faster_rcnn`), in one process: `tasks.detection.train` with `RECIPE`
(the package's whole path: VOC reader, letterboxing and box-aware augmentation, fit with the
spine's callbacks, evaluation on the 72 whole 640x480 test images, export with its fresh-process
reload check), then the exported SavedModel's latency on one encoded test JPEG (median of 20
calls after a warm-up) and on a batch of 8. Reports test VOC mAP@0.5 and COCO AP beside the
mean-box baseline, training images/s (the spine's `Throughput`: median of the epochs after the
first; wall clock and per CPU-second) and wall time.

Prints a Markdown section for BENCHMARKS.md on stdout (progress goes to stderr).
"""

import argparse
import json
import os
import pathlib
import statistics
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402

from benchmarks.classification import log  # noqa: E402
from benchmarks.classification import machine  # noqa: E402
from tasks import detection  # noqa: E402
from tasks.core import config as config_lib  # noqa: E402

RECIPE = dict(
    image_size=416, epochs=80, batch_size=16, learning_rate=2e-3, flip=True, vertical_flip=True, scale_jitter=0.2,
    verbose=0,
)
HEADS = ["yolo_v2", "faster_rcnn"]
QUICK = {"epochs": 1, "image_size": 256}


def run_head(model, data_path, workdir, overrides):
    config = config_lib.build(
        detection.Config, data=data_path, model=model, runs_dir=str(workdir / "runs"),
        export_dir=str(workdir / "saved_models" / model), **overrides,
    )
    log(f"{model}: {overrides}")
    started = time.perf_counter()
    detection.train(config, fresh=True)
    wall = time.perf_counter() - started
    (run,) = [path for path in (workdir / "runs" / "detection").iterdir() if path.name.startswith(model.replace("_", "-"))]
    record = json.loads((run / "metrics.json").read_text())
    version = workdir / "saved_models" / model / "detection" / "1"
    return {"model": model, "wall_seconds": round(wall, 1), "latency": latency(version, data_path), **record}


def latency(version, data_path, calls=20):
    """Median seconds of the exported `serving_default` on one encoded test JPEG, and per image on 8."""
    loaded = tf.saved_model.load(str(version))
    serve = loaded.signatures["serving_default"]
    root = pathlib.Path(data_path)
    images = sorted((root / "BCCD" / "JPEGImages").glob("*.jpg"))[:8] or sorted(root.rglob("*.jpg"))[:8]
    one = tf.constant([images[0].read_bytes()])
    eight = tf.constant([path.read_bytes() for path in images])
    timings = {}
    for label, batch in (("one", one), ("eight", eight)):
        serve(image_bytes=batch)  # warm-up (tracing, allocations)
        seconds = []
        for _ in range(calls if label == "one" else max(calls // 4, 3)):
            started = time.perf_counter()
            serve(image_bytes=batch)
            seconds.append(time.perf_counter() - started)
        timings[label] = statistics.median(seconds)
    return {"single_ms": round(1000 * timings["one"], 1), "batch8_ms_per_image": round(1000 * timings["eight"] / 8, 1)}


def markdown(result):
    m = result["machine"]
    lines = [
        "## Object detection (BCCD, Pascal VOC splits 205 / 87 / 72, 3 classes)",
        "",
        f"Machine: {m['nproc']} cores, {m['cpu']}, load {m['load_average_1min']} at start; TF {m['tensorflow']}, "
        f"Keras {m['keras']}." + (" **Quick mode: not a benchmark.**" if result["quick"] else ""),
        "",
        "| head | test mAP@0.5 (VOC) | COCO AP | AP50 | AP75 | baseline mAP@0.5 | epochs | train s | train img/s "
        "| img per CPU-s | export latency, 1 image | per image in a batch of 8 |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in result["heads"]:
        me, base = row["metrics"], row["baseline"]
        lines.append(
            f"| {row['model']} | {me['map50']:.4f} | {me['coco_ap']:.4f} | {me['coco_ap50']:.4f} | {me['coco_ap75']:.4f} "
            f"| {base['map50']:.4f} | {row['epochs']} | {row['train_seconds']} | {row['examples_per_second']} "
            f"| {row.get('examples_per_cpu_second')} | {row['latency']['single_ms']} ms "
            f"| {row['latency']['batch8_ms_per_image']} ms |"
        )
    lines.append("")
    lines.append("Per-class AP@0.5:")
    lines.append("")
    for row in result["heads"]:
        per_class = ", ".join(f"{name} {value:.3f}" for name, value in row["metrics"]["ap50_per_class"].items())
        lines.append(f"- {row['model']}: {per_class}")
    flags = " ".join(
        f"--{key.replace('_', '-')}" + ("" if value is True else f" {value}")
        for key, value in result["overrides"].items() if key != "verbose"
    )
    lines += [
        "",
        f"Recipe: `python -m tasks.detection train --data ../shared/data/bccd --model <head> {flags}`",
        "",
        f"Command: `{result['command']}`",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "bccd"))
    parser.add_argument("--epochs", type=int, default=RECIPE["epochs"])
    parser.add_argument("--image-size", type=int, default=RECIPE["image_size"])
    parser.add_argument("--heads", default=",".join(HEADS), help="Comma-separated detection builders.")
    parser.add_argument("--quick", action="store_true", help="One epoch at 256 px to check the script.")
    args = parser.parse_args(argv)
    overrides = dict(RECIPE, epochs=args.epochs, image_size=args.image_size)
    if args.quick:
        overrides.update(QUICK)
    command = " ".join(["python benchmarks/detection.py", *(argv if argv is not None else sys.argv[1:])])
    result = {"machine": machine(), "quick": args.quick, "overrides": overrides, "heads": [], "command": command}
    with tempfile.TemporaryDirectory() as scratch:
        for model in args.heads.split(","):
            result["heads"].append(run_head(model, args.data, pathlib.Path(scratch), overrides))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
