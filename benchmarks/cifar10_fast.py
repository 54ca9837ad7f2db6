"""CIFAR-10 speed benchmark: the `cifar10-fast` preset against the classic ResNet-20 recipe.

Usage:
    python benchmarks/cifar10_fast.py --levers                 # ~5 CPU-minutes: lever ratios, no accuracy
    python benchmarks/cifar10_fast.py --full                   # the issue's proof: both recipes, ~80 min on a quiet machine
    python benchmarks/cifar10_fast.py --full --epochs 3        # a shorter side-by-side
    python benchmarks/cifar10_fast.py --quick                  # ~2 min: checks the script, not a benchmark

`--levers` (one process, one machine state, in this order):

1. fp32 (and bf16) matmul peak: `tf.linalg.matmul` of two 4096² matrices, best of 5, as GFLOP/s
   of wall time and as GFLOP per CPU-second of the process (robust to other load).
2. Training throughput of the compiled task models (`tasks.classification.build_model`) on the
   same random 32x32x3 images: `model.fit` on in-memory float32 arrays, `--lever-images` images
   per epoch, 3 epochs, the median of epochs 2-3 (epoch 1 traces), measured by the spine's
   `Throughput` callback both per wall second and per CPU-second of the process. Rows: ResNet-20
   at batch 128 (the classic recipe), airbench at batch 128 and 512, airbench at batch 512 under
   `mixed_bfloat16`, and airbench at batch 512 fed by the package's own pipeline
   (`classification.make_dataset`: uint8 arrays -> per-example flip + translate -> batch ->
   prefetch) instead of float32 arrays.
3. Efficiency: training FLOPs per image = 3 x the analytic forward FLOPs (`benchmarks/flops.py`),
   x images per CPU-second, as a share of the matmul GFLOP per CPU-second.

`--full`: `python -m tasks.classification train --preset cifar10-fast` and the classic ResNet-20
recipe (`benchmarks/classification.py`'s RECIPE) with the same `--epochs`, one after the other as
child processes, each wall-timed from outside; test accuracy (the preset with its test-time
augmentation), time to 91 % / 94 % (both with `--time-to-accuracy 0.91,0.94`), images/s and
FLOP/s as a share of the fp32 matmul peak measured at the start.

Prints a Markdown section for BENCHMARKS.md on stdout (progress to stderr) and writes the numbers
to `--output-json`.
"""

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import shlex
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script: `tasks`, `applications`, `benchmarks` from the repo
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks import classification as classification_benchmark  # noqa: E402
from benchmarks import flops  # noqa: E402
from tasks import classification  # noqa: E402
from tasks.core import config as config_lib  # noqa: E402
from tasks.core import training  # noqa: E402

PRESET = "cifar10-fast"
CLASSIC = classification_benchmark.RECIPE  # ResNet-20, SGD-Nesterov, one-cycle, flip + crop 4
GOALS = (0.91, 0.94)
LEVER_IMAGES = 1024
LEVER_EPOCHS = 3
# (row name, model, batch size, precision, pipeline): pipeline "arrays" = float32 arrays into fit,
# "package" = classification.make_dataset with the preset's augmentation.
LEVERS = (
    ("resnet20, batch 128, fp32 (classic)", "resnet20", 128, "float32", "arrays"),
    ("airbench, batch 128, fp32", "airbench", 128, "float32", "arrays"),
    ("airbench, batch 512, fp32", "airbench", 512, "float32", "arrays"),
    ("airbench, batch 512, mixed_bfloat16", "airbench", 512, "mixed_bfloat16", "arrays"),
    ("airbench, batch 512, fp32, package pipeline + augmentation", "airbench", 512, "float32", "package"),
)
QUICK = {"images": 128, "matmul_size": 512}


log = classification_benchmark.log
default_data = classification_benchmark.default_data
matmul_peak = classification_benchmark.matmul_peak  # fp32 or bf16, wall and per CPU-second


# === 2. Levers ===


def lever_config(model, batch_size, precision):
    return config_lib.build(
        classification.Config,
        preset=PRESET,
        model=model,
        batch_size=batch_size,
        precision=precision,
        epochs=LEVER_EPOCHS,
        verbose=0,
    )


def fake_info(x, y, model_name):
    """The facts build_model needs, from the (random) images, as load_data would compute them."""
    pixels = x.reshape(-1, 3).astype(np.float64)
    mean, variance = pixels.mean(axis=0), pixels.var(axis=0)
    info = {
        "image_shape": [32, 32, 3],
        "num_classes": 10,
        "num_train": len(y),
        "mean": mean.tolist(),
        "variance": variance.tolist(),
    }
    if classification.wants_patch_statistics(model_name):
        normalized = (x.astype(np.float32) - mean) / np.sqrt(variance)
        info["patch_covariance"] = classification.applications.airbench.patch_covariance(normalized).tolist()
    return info


def lever(name, model_name, batch_size, precision, pipeline, x, y):
    """Images per second and per CPU-second of training, median of epochs 2-3."""
    keras.backend.clear_session()
    config = lever_config(model_name, batch_size, precision)
    keras.utils.set_random_seed(0)
    keras.mixed_precision.set_global_policy(precision)
    try:
        info = fake_info(x, y, model_name)
        model = classification.build_model(config, info)
        meter = training.Throughput(batch_size, len(y))
        if pipeline == "arrays":
            inputs = x.astype(np.float32)
            targets = keras.utils.to_categorical(y, 10).astype(np.float32)
            fit_args = dict(x=inputs, y=targets, batch_size=batch_size, shuffle=True)
        else:
            fit_args = dict(x=classification.make_dataset(x, y, 10, config, training_split=True))
        log(f"  {name} ...")
        with contextlib.redirect_stdout(sys.stderr):
            model.fit(epochs=LEVER_EPOCHS, callbacks=[meter], verbose=0, **fit_args)
        forward = flops.forward_flops(model)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    return {
        "name": name,
        "model": model_name,
        "batch_size": batch_size,
        "precision": precision,
        "pipeline": pipeline,
        "images_per_second": round(meter.examples_per_second, 1),
        "images_per_cpu_second": round(meter.examples_per_cpu_second, 1),
        "epoch_cpu_rates": [round(rate, 1) for rate in meter.epoch_cpu_rates],
        "forward_flops_per_image": forward,
    }


def levers(num_images, peak):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(num_images, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, size=(num_images,)).astype(np.int32)
    rows = [lever(*spec, x, y) for spec in LEVERS]
    for row in rows:
        train_gflop = 3 * row["forward_flops_per_image"] / 1e9
        row["train_gflop_per_image"] = round(train_gflop, 4)
        row["percent_of_peak_per_cpu_second"] = round(
            100 * train_gflop * row["images_per_cpu_second"] / peak["gflop_per_cpu_second"], 1
        )
    return rows


# === --full: both recipes as the user runs them ===


def run_recipe(label, args, data, workdir):
    """`python -m tasks.classification train ARGS`, wall-timed; its metrics and timings."""
    data = pathlib.Path(data).expanduser().resolve()
    name = label.replace(" ", "_")
    command = [
        sys.executable, "-m", "tasks.classification", "train", *args, "--data", str(data),
        "--runs-dir", str(workdir / "runs"), "--export-dir", str(workdir / "saved_models"),
        "--run-name", name, "--fresh", "--verbose", "2",
    ]
    log(f"{label}: " + shlex.join(command))
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, stdout=sys.stderr, check=True)
    wall = time.perf_counter() - started
    run_dir = workdir / "runs" / "classification" / name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    timings_file = run_dir / classification.TIME_TO_ACCURACY_FILE
    timings = json.loads(timings_file.read_text()) if timings_file.is_file() else {"reached": {}, "epochs": []}
    measuring = sum(row.get("measure_seconds", 0.0) for row in timings["epochs"])
    return {
        "label": label,
        "command": "python -m tasks.classification train " + " ".join(args),
        "test_accuracy": metrics["metrics"]["accuracy"],
        "baseline_accuracy": metrics["baseline"]["accuracy"],
        "tta": metrics["config"]["tta"],
        "model": metrics["config"]["model"],
        "epochs": metrics["epochs"],
        "wall_seconds": round(wall, 1),
        # The run a user makes (no per-epoch test passes): the process minus those passes.
        "measure_seconds": round(measuring, 1),
        "wall_seconds_without_measuring": round(wall - measuring, 1),
        "train_seconds": metrics["train_seconds"],
        "images_per_second": metrics["examples_per_second"],
        "images_per_cpu_second": metrics.get("examples_per_cpu_second"),
        "reached": timings["reached"],
        "per_epoch": timings["epochs"],
    }


def preset_epochs():
    return config_lib.build(classification.Config, preset=PRESET).epochs


def full(data, epochs, workdir, peak):
    timing = ["--time-to-accuracy", ",".join(f"{goal:g}" for goal in GOALS)]
    classic = CLASSIC.split()
    index = classic.index("--epochs")
    classic[index + 1] = str(epochs)
    runs = [
        run_recipe("preset cifar10-fast", ["--preset", PRESET, "--epochs", str(epochs), *timing], data, workdir),
        run_recipe("classic resnet20", [*classic, *timing], data, workdir),
    ]
    for run in runs:
        keras.backend.clear_session()
        config = config_lib.build(classification.Config, preset=PRESET, model=run["model"])
        # Shapes only: FLOPs do not depend on the weights or the normalization.
        info = {"image_shape": [32, 32, 3], "num_classes": 10, "num_train": 1, "mean": [0.0] * 3, "variance": [1.0] * 3}
        forward = flops.forward_flops(classification.build_model(config, info))
        gflops = 3 * forward * run["images_per_second"] / 1e9
        run["train_gflop_per_image"] = round(3 * forward / 1e9, 4)
        run["percent_of_peak"] = round(100 * gflops / peak["gflops"], 1)
    return runs


# === Report ===


def markdown(result):
    m, peak = result["machine"], result["matmul"]
    lines = [
        f"### CIFAR-10 speed: `--preset {PRESET}` against the classic ResNet-20 recipe ({result['date']})",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), TensorFlow {m['tensorflow']}, Keras {m['keras']}; "
        f"1-min load average {m['load_average_1min']} at the start, {result['load_average_1min_end']} at "
        "the end (other processes share these cores).",
        "",
        f"Command: `{result['command']}`" + (" (quick mode: checks the script; not a benchmark)" * result["quick"]),
        "",
        f"fp32 matmul {peak['size']}²: {peak['gflops']:.1f} GFLOP/s wall, {peak['gflop_per_cpu_second']:.1f} "
        f"GFLOP per CPU-second; bf16: {result['matmul_bf16']['gflops']:.1f} GFLOP/s wall, "
        f"{result['matmul_bf16']['gflop_per_cpu_second']:.1f} per CPU-second.",
    ]
    rows = result.get("levers")
    if rows:
        base = rows[0]["images_per_cpu_second"]
        reference = next(row for row in rows if row["name"].startswith("airbench, batch 512, fp32"))
        lines += [
            "",
            f"Training throughput, {result['lever_images']:,} random 32×32×3 images per epoch, median of "
            "epochs 2–3 (`Throughput`); ratios per CPU-second of the process:",
            "",
            "| configuration | train GFLOP/image | images/s (wall) | images/CPU-s | vs resnet20 | vs airbench b512 fp32 "
            "| % of fp32 matmul (per CPU-s) |",
            "|---|---|---|---|---|---|---|",
        ]
        for row in rows:
            lines.append(
                f"| {row['name']} | {row['train_gflop_per_image']:.3f} | {row['images_per_second']:,.1f} | "
                f"{row['images_per_cpu_second']:,.1f} | {row['images_per_cpu_second'] / base:.2f} | "
                f"{row['images_per_cpu_second'] / reference['images_per_cpu_second']:.2f} | "
                f"{row['percent_of_peak_per_cpu_second']:.1f} % |"
            )
    runs = result.get("full")
    if runs:
        lines += [
            "",
            f"Both recipes, {runs[0]['epochs']} epoch(s) each, one after the other (`--full`):",
            "",
            "| recipe | test accuracy | time to 91 % | time to 94 % | wall, process | wall without the measuring "
            "passes | training images/s | % of fp32 matmul peak |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for run in runs:
            def reached(goal):
                hit = run["reached"].get(f"{goal:g}")
                if not hit:
                    return "not reached"
                since_start = f", {hit['process_seconds'] / 60:.1f} min from start" if hit.get("process_seconds") else ""
                return f"{hit['train_seconds'] / 60:.1f} min (epoch {hit['epoch']}{since_start})"

            lines.append(
                f"| {run['label']} (`{run['model']}`, TTA {run['tta']}) | **{run['test_accuracy']:.4f}** | "
                f"{reached(0.91)} | {reached(0.94)} | {run['wall_seconds'] / 60:.1f} min | "
                f"{run['wall_seconds_without_measuring'] / 60:.1f} min | "
                f"{run['images_per_second']:,.1f} | {run['percent_of_peak']:.1f} % |"
            )
        lines += [
            "",
            "Times to accuracy: training time (wall, without the per-epoch test passes that measure "
            "them) at the end of the first epoch whose test accuracy reached the goal, and the wall "
            "time since the process started (reading the data, building, tracing and the measuring "
            "passes included); nothing is selected on them. The preset does not measure per epoch "
            "unless asked; the benchmark asks (`--time-to-accuracy 0.91,0.94`), and \"wall without the "
            "measuring passes\" is the process wall time minus those passes: the run a user makes.",
        ]
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--data", default=default_data(), help="CIFAR-10 as class folders / archives.")
    parser.add_argument("--levers", action="store_true", help="Matmul peak and lever throughput ratios.")
    parser.add_argument("--full", action="store_true", help="Both recipes end to end (long).")
    parser.add_argument(
        "--epochs", type=int, default=None, help="Epochs of both recipes under --full (default: the preset's)."
    )
    parser.add_argument("--lever-images", type=int, default=LEVER_IMAGES, help="Images per lever epoch.")
    parser.add_argument("--quick", action="store_true", help="Tiny sizes to check the script.")
    parser.add_argument(
        "--output-json", default=str(REPO / "benchmarks" / "results" / "cifar10_fast.json"), help="Where the numbers go."
    )
    args = parser.parse_args(argv)
    if not (args.levers or args.full or args.quick):
        args.levers = True
    if args.epochs is None:
        args.epochs = preset_epochs()
    if args.epochs < 1:
        parser.error(f"--epochs must be >= 1. Received: {args.epochs}")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    images = QUICK["images"] if args.quick else args.lever_images
    size = QUICK["matmul_size"] if args.quick else classification_benchmark.MATMUL_SIZE
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python", "benchmarks/cifar10_fast.py", *argv]),
        "quick": args.quick,
        "machine": classification_benchmark.machine(),
        "lever_images": images,
    }
    log(f"Matmul peak ({size}²) ...")
    result["matmul"] = matmul_peak(size)
    result["matmul_bf16"] = matmul_peak(size, tf.bfloat16)
    if args.levers or args.quick:
        log("Levers ...")
        result["levers"] = levers(images, result["matmul"])
    if args.full and not args.quick:
        with tempfile.TemporaryDirectory(prefix="benchmark-cifar10-fast-") as workdir:
            result["full"] = full(args.data, args.epochs, pathlib.Path(workdir), result["matmul"])
    classification_benchmark.write_result(result, args.output_json, markdown)


if __name__ == "__main__":
    main()
