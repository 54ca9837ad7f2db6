"""Benchmark of the classification task on CIFAR-10: matmul peak, package overhead, efficiency, full run.

Usage:
    python benchmarks/classification.py --quick                # ~2 min: checks the script, not a benchmark
    python benchmarks/classification.py                        # matmul peak + overhead on 10,000 images
    python benchmarks/classification.py --full                 # + the 15-epoch recipe on all of CIFAR-10
    python benchmarks/classification.py --data ../shared/data/cifar10_jpg --overhead-images 20000

Everything is measured in one process on one machine state, in this order:

1. fp32 peak: `tf.linalg.matmul` of two n x n float32 matrices (n = 4096), warmed up, best of 5.
2. Overhead: the same compiled resnet20 (`tasks.classification.build_model`, incl. its
   Normalization layer), optimizer, batch size and images, no augmentation, trained
   (a) by a bare `model.fit` on in-memory float32 arrays, then (b) by the real
   `tasks.classification.train` on a temporary class-folder tree of the same images as PNGs
   (lossless), so its tf.data pipeline, callbacks, checkpoints and logs are all in the loop.
   Both use the spine's `Throughput` definition: each epoch from its start to its last training
   batch, median over the epochs after the first (tracing).
3. Efficiency: training FLOPs per image = 3 x the analytic forward FLOPs (`benchmarks/flops.py`),
   x images/s, as a share of the matmul peak.
4. With `--full`: `python -m tasks.classification train` with `RECIPE` as a child process, timed
   from outside; its test accuracy, the majority baseline and its examples/s from `metrics.json`.

Prints a Markdown section for BENCHMARKS.md on stdout (progress goes to stderr) and writes the
numbers to `--output-json`.
"""

import argparse
import contextlib
import dataclasses
import datetime
import json
import os
import pathlib
import platform
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
from PIL import Image  # noqa: E402

from benchmarks import flops  # noqa: E402
from tasks import classification  # noqa: E402
from tasks.core import cli  # noqa: E402
from tasks.core import training  # noqa: E402
from tasks.core.runs import Run  # noqa: E402
from tasks.data import images as image_readers  # noqa: E402

# The full-run recipe; the overhead runs use its model, batch size, optimizer and loss, without
# its augmentation and validation split.
RECIPE = (
    "--model resnet20 --epochs 15 --batch-size 128 --optimizer sgd --nesterov --momentum 0.9 "
    "--learning-rate 0.1 --weight-decay 5e-4 --schedule onecycle --flip --crop-padding 4 "
    "--label-smoothing 0.1 --validation-fraction 0.02 --verbose 2"
)
MATMUL_SIZE = 4096
MATMUL_REPEATS = 5
OVERHEAD_IMAGES = 10_000
OVERHEAD_EPOCHS = 3
OVERHEAD_TEST_IMAGES = 1_000  # the package evaluates and exports after fit; not timed
QUICK = {"overhead_images": 1_000, "epochs": 2, "matmul_size": 512, "test_images": 200}
SEED = 0


def default_data():
    shared = os.environ.get("APPLIED_DL_DATA")
    root = pathlib.Path(shared) if shared else REPO.parent / "shared" / "data"
    return str(root / "cifar10_jpg")


def log(message):
    print(message, file=sys.stderr, flush=True)


# === Machine ===


def machine():
    """CPU count and model, library versions and the load at the start (the machine is shared)."""
    model = platform.processor() or "unknown"
    with contextlib.suppress(OSError):
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu": model,
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "python": platform.python_version(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }


# === 1. Matmul peak ===


def matmul_peak(size, dtype=tf.float32, repeats=MATMUL_REPEATS):
    """Best-of-`repeats` GFLOP/s (wall) and GFLOP per CPU-second of an n x n matmul (2 n^3 FLOPs),
    after two warm-up calls."""
    a = tf.cast(tf.random.stateless_uniform((size, size), seed=(1, 2)), dtype)
    b = tf.cast(tf.random.stateless_uniform((size, size), seed=(3, 4)), dtype)
    for _ in range(2):
        tf.linalg.matmul(a, b).numpy()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        tf.linalg.matmul(a, b).numpy()  # .numpy() waits for the result
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    work = 2 * size**3 / 1e9
    return {
        "size": size,
        "dtype": dtype.name,
        "repeats": repeats,
        "best_seconds": round(min(walls), 4),
        "gflops": round(work / min(walls), 1),
        "gflop_per_cpu_second": round(work / min(cpus), 1),
    }


# === 2. Overhead: data ===


def pick_subset(data_path, num_train, num_test, seed=SEED):
    """`num_train` random train images and `num_test` test images of the dataset, as uint8 arrays."""
    found = image_readers.read_images(data_path)
    train_x, train_y = found.splits["train"]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(train_y))
    if num_train > len(order):
        raise ValueError(f"--overhead-images is larger than the train split ({len(order)}). Received: {num_train}")
    train = order[:num_train]
    if "test" in found.splits:
        test_x, test_y = found.splits["test"]
        test = rng.permutation(len(test_y))[:num_test]
    else:  # hold the test images out of the unused train images
        test_x, test_y = train_x, train_y
        test = order[num_train : num_train + num_test]
    return (train_x[train], train_y[train]), (test_x[test], test_y[test]), found.class_names


def write_tree(root, splits, class_names):
    """Writes `root/<split>/<class>/<index>.png` (lossless, so the package reads the same pixels)."""
    for split, (x, y) in splits.items():
        for name in class_names:
            (root / split / name).mkdir(parents=True, exist_ok=True)
        for index, (image, label) in enumerate(zip(x, y)):
            Image.fromarray(image).save(root / split / class_names[label] / f"{index:05d}.png")
    return root


def recipe_config(data, **overrides):
    """The classification Config that `train --data <data> RECIPE` describes, with `overrides`."""
    args = cli.parser_for(classification).parse_args(["train", "--data", str(data), *RECIPE.split()])
    return dataclasses.replace(cli.config_from_args(classification, args), **overrides)


# === 2. Overhead: the two runs ===


def run_bare(config, info, x, y):
    """`model.fit` on in-memory float32 arrays; returns images per second and per CPU-second."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)
    model = classification.build_model(config, info)
    meter = training.Throughput(config.batch_size, len(y))  # the package's definition, measured the same way
    inputs = x.astype(np.float32)  # (N, 32, 32, 3) pixels in [0, 255]
    targets = keras.utils.to_categorical(y, info["num_classes"]).astype(np.float32)  # (N, classes)
    with contextlib.redirect_stdout(sys.stderr):
        model.fit(
            inputs,
            targets,
            batch_size=config.batch_size,
            epochs=config.epochs,
            shuffle=True,
            callbacks=[meter],
            verbose=config.verbose,
        )
    return meter.examples_per_second, meter.examples_per_cpu_second


def run_package(config):
    """`tasks.classification.train` end to end; returns its metrics.json and history.csv rows."""
    keras.backend.clear_session()
    keras.utils.set_random_seed(config.seed)  # train() seeds again in training.setup
    with contextlib.redirect_stdout(sys.stderr):
        classification.train(config, fresh=True)
    run = Run.for_config("classification", config)
    return run.read_metrics(), training.history_rows(run)


def overhead(data_path, workdir, num_images, epochs, num_test, rounds):
    """Bare fit and the package, alternately, on the same `num_images` training images."""
    log(f"Reading {data_path} and writing {num_images:,} + {num_test:,} PNGs ...")
    (train_x, train_y), test, class_names = pick_subset(data_path, num_images, num_test)
    tree = write_tree(workdir / "cifar10_subset", {"train": (train_x, train_y), "test": test}, class_names)
    config = recipe_config(
        tree,
        epochs=epochs,
        flip=False,
        crop_padding=0,
        validation_fraction=0.0,
        seed=SEED,
        run_name="overhead",
        runs_dir=str(workdir / "runs"),
        export_dir=str(workdir / "saved_models"),
    )
    # The package's own facts (mean / variance of the Normalization layer) for the bare model too.
    info = classification.load_data(config).info
    if info["num_train"] != num_images:
        raise RuntimeError(f"the package read {info['num_train']} training images, expected {num_images}")
    # Alternate the two so that a change in machine load hits both alike; report medians.
    bare, package = [], []
    for round_index in range(rounds):
        log(f"Round {round_index + 1}/{rounds}: bare model.fit, {num_images:,} images, {epochs} epochs ...")
        bare.append(run_bare(config, info, train_x, train_y))
        log(f"Round {round_index + 1}/{rounds}: tasks.classification.train, same ...")
        metrics, history = run_package(config)
        if len(history) != epochs:
            raise RuntimeError(f"the package logged {len(history)} epochs, expected {epochs}")
        package.append((metrics["examples_per_second"], metrics["examples_per_cpu_second"]))
    bare_wall, bare_cpu = (float(np.median(values)) for values in zip(*bare))
    package_wall, package_cpu = (float(np.median(values)) for values in zip(*package))
    record = {
        "images": num_images,
        "epochs": epochs,
        "rounds": rounds,
        "batch_size": config.batch_size,
        "model": config.model,
        "bare_rounds": [[round(wall, 1), round(cpu, 1)] for wall, cpu in bare],
        "package_rounds": [[round(wall, 1), round(cpu, 1)] for wall, cpu in package],
        "bare_images_per_second": round(bare_wall, 1),
        "package_images_per_second": round(package_wall, 1),
        "ratio": round(package_wall / bare_wall, 4),
        "bare_images_per_cpu_second": round(bare_cpu, 1),
        "package_images_per_cpu_second": round(package_cpu, 1),
        "cpu_ratio": round(package_cpu / bare_cpu, 4),
        "config": {key: value for key, value in metrics["config"].items() if key not in ("runs_dir", "export_dir")},
    }
    return record, config, info


# === 3. Efficiency ===


def efficiency(config, info, peak_gflops, rates):
    """Training GFLOPs per image (3 x forward) and model GFLOP/s as a share of the matmul peak."""
    keras.backend.clear_session()
    model = classification.build_model(config, info)  # the network both overhead runs trained
    forward = flops.forward_flops(model)
    result = {"forward_flops_per_image": forward, "train_gflops_per_image": round(3 * forward / 1e9, 4)}
    for name, rate in rates.items():
        gflops = 3 * forward * rate / 1e9
        result[f"{name}_gflops_per_second"] = round(gflops, 1)
        result[f"{name}_percent_of_peak"] = round(100 * gflops / peak_gflops, 1)
    return result


# === 4. Full run ===


def full_run(data_path, workdir):
    """The recipe as `python -m tasks.classification train`, wall-timed from outside."""
    data = pathlib.Path(data_path).expanduser().resolve()  # the child runs in the repo root
    command = [
        sys.executable, "-m", "tasks.classification", "train", "--data", str(data), *RECIPE.split(),
        "--runs-dir", str(workdir / "full_runs"), "--export-dir", str(workdir / "full_saved_models"),
        "--run-name", "full", "--fresh",
    ]
    log("Full run: " + shlex.join(command))
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, stdout=sys.stderr, check=True)
    wall = time.perf_counter() - started
    metrics = json.loads((workdir / "full_runs" / "classification" / "full" / "metrics.json").read_text())
    return {
        "command": f"python -m tasks.classification train --data {data_path} {RECIPE}",
        "test_accuracy": metrics["metrics"]["accuracy"],
        "test_top5": metrics["metrics"].get("top5"),
        "baseline_accuracy": metrics["baseline"]["accuracy"],
        "wall_seconds": round(wall, 1),
        "train_seconds": metrics["train_seconds"],
        "examples_per_second": metrics["examples_per_second"],
        "epochs": metrics["epochs"],
    }


# === Report ===


def markdown(result):
    """The section for BENCHMARKS.md."""
    m, peak, over, eff = result["machine"], result["matmul"], result["overhead"], result["efficiency"]
    timed = "epoch 2" if over["epochs"] == 2 else f"median of epochs 2–{over['epochs']}"
    timed += f", median of {over['rounds']} alternating rounds"
    lines = [
        f"### Classification: CIFAR-10, {over['model']} ({result['date']})",
        "",
        f"Machine: {m['nproc']} CPUs ({m['cpu']}), Python {m['python']}, TensorFlow {m['tensorflow']}, "
        f"Keras {m['keras']}; 1-min load average {m['load_average_1min']} at the start, "
        f"{result['load_average_1min_end']} at the end (other processes share these cores).",
        "",
        f"Command: `{result['command']}`" + (" (quick mode: checks the script; not a benchmark)" * result["quick"]),
        "",
        "| Measure | Value |",
        "|---|---|",
        f"| fp32 matmul peak ({peak['size']}², best of {peak['repeats']}) | {peak['gflops']:.1f} GFLOP/s |",
        f"| bare `model.fit` ({over['images']:,} images, batch {over['batch_size']}, {timed}) "
        f"| {over['bare_images_per_second']:,.1f} images/s |",
        f"| package `tasks.classification.train` (same) | {over['package_images_per_second']:,.1f} images/s |",
        f"| package / bare, wall clock (goal ≥ 0.97) | {over['ratio']:.3f} |",
        f"| bare / package images per CPU-second of the process | {over['bare_images_per_cpu_second']:,.1f} / "
        f"{over['package_images_per_cpu_second']:,.1f} |",
        f"| package / bare, per CPU-second (robust to other load) | {over['cpu_ratio']:.3f} |",
        f"| {over['model']} training FLOPs per image (3 × forward) | {eff['train_gflops_per_image']:.3f} GFLOP |",
        f"| model throughput, bare / package | {eff['bare_gflops_per_second']:.1f} / "
        f"{eff['package_gflops_per_second']:.1f} GFLOP/s |",
        f"| share of matmul peak, bare / package | {eff['bare_percent_of_peak']:.1f} % / "
        f"{eff['package_percent_of_peak']:.1f} % |",
    ]
    full = result.get("full")
    if full:
        lines += [
            f"| test accuracy (full recipe, {full['epochs']} epochs) | {full['test_accuracy']:.4f} |",
            f"| majority-class baseline | {full['baseline_accuracy']:.4f} |",
            f"| wall time (process start to exit) | {full['wall_seconds'] / 60:.1f} min |",
            f"| train examples/s (full recipe, with augmentation) | {full['examples_per_second']:,.1f} |",
        ]
    lines += [
        "",
        "Overhead runs: same compiled model, optimizer, loss and images, no augmentation, no "
        "validation; images/s counts the last partial batch at its real size.",
        "",
        f"Full recipe{'' if full else ' (not run; pass --full)'}: "
        f"`python -m tasks.classification train --data {result['data']} {RECIPE}`",
    ]
    return "\n".join(lines)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--data", default=default_data(), help="CIFAR-10 (class folders or archives).")
    parser.add_argument(
        "--overhead-images", type=int, default=OVERHEAD_IMAGES, help="Training images of each overhead run."
    )
    parser.add_argument(
        "--epochs", type=int, default=OVERHEAD_EPOCHS, help="Epochs of each overhead run (the first is warm-up)."
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="Alternating (bare, package) rounds; medians are reported."
    )
    parser.add_argument("--full", action="store_true", help="Also run the full recipe (long).")
    parser.add_argument("--quick", action="store_true", help="Tiny sizes to check the script (~2 min).")
    parser.add_argument(
        "--output-json",
        default=str(REPO / "benchmarks" / "results" / "classification.json"),
        help="Where the numbers go.",
    )
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error(f"--epochs must be >= 2 (the first is warm-up). Received: {args.epochs}")
    if args.overhead_images < 1:
        parser.error(f"--overhead-images must be >= 1. Received: {args.overhead_images}")
    return args


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.quick:
        num_images, epochs = QUICK["overhead_images"], QUICK["epochs"]
        matmul_size, num_test = QUICK["matmul_size"], QUICK["test_images"]
    else:
        num_images, epochs = args.overhead_images, args.epochs
        matmul_size, num_test = MATMUL_SIZE, OVERHEAD_TEST_IMAGES
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "command": shlex.join(["python", "benchmarks/classification.py", *argv]),
        "quick": args.quick,
        "data": args.data,
        "recipe": RECIPE,
        "machine": machine(),
    }
    log(f"Matmul peak ({matmul_size}²) ...")
    result["matmul"] = matmul_peak(matmul_size)
    with tempfile.TemporaryDirectory(prefix="benchmark-classification-") as workdir:
        workdir = pathlib.Path(workdir)
        over, config, info = overhead(args.data, workdir, num_images, epochs, num_test, args.rounds)
        rates = {"bare": over["bare_images_per_second"], "package": over["package_images_per_second"]}
        result["overhead"] = over
        result["efficiency"] = efficiency(config, info, result["matmul"]["gflops"], rates)
        result["full"] = full_run(args.data, workdir) if args.full and not args.quick else None
    write_result(result, args.output_json, markdown)


def write_result(result, path, to_markdown):
    """Stamps the end load average, writes `result` as JSON to `path` and prints its Markdown."""
    result["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    output = pathlib.Path(path)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    log(f"Wrote {output}")
    print(to_markdown(result))


if __name__ == "__main__":
    main()
