"""Benchmark of the image-generation task on MNIST: conditional accuracy, FID, images/s.

Usage:
    python benchmarks/image_generation.py --quick       # ~2 min: checks the script, not a benchmark
    python benchmarks/image_generation.py               # conditional DCGAN + VAE (~6 min on an idle 2-core CPU)
    python benchmarks/image_generation.py --gan-epochs 40 --width 64 --data ../shared/data/mnist

Measured in one process, in this order (MNIST here: first 8,000 images train, last 2,000 test):

1. The feature classifier: `tasks.classification` trains `dcgan_classifier` on the same split
   (its test accuracy is the ceiling of the conditional accuracy below).
2. The conditional DCGAN through the package's whole path (`tasks.image_generation.train`:
   tf.data, callbacks, sample grids, evaluation, export): the share of 2,000 samples (200 per
   class) that the classifier assigns to their requested class (goal >= 95 %), FID and KID on
   the classifier's features against the real test images, beside the floor (2,000 real
   training images vs the test images) and the Gaussian-noise baseline; training images/s.
3. The VAE the same way: test negative ELBO and reconstruction error beside the mean-image
   baseline, and the FID of its samples.

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

from benchmarks.classification import log  # noqa: E402
from benchmarks.classification import machine  # noqa: E402
from tasks import image_generation  # noqa: E402
from tasks.core import config as config_lib  # noqa: E402

COMMON = dict(verbose=0, classifier_epochs=5)
GAN = dict(COMMON, model="conditional_dcgan", epochs=10, width=32, schedule="cosine")
VAE = dict(COMMON, model="vae", epochs=10, validation_fraction=0.1)
QUICK = {"epochs": 1, "classifier_epochs": 1}


def run(label, overrides, data_path, workdir):
    config = config_lib.build(
        image_generation.Config, data=data_path, runs_dir=str(workdir / "runs"),
        export_dir=str(workdir / "saved_models"), **overrides,
    )
    log(f"{label}: {overrides}")
    started = time.perf_counter()
    image_generation.train(config, fresh=True)
    seconds = time.perf_counter() - started
    path = image_generation.Run.for_config("image_generation", config).path
    record = json.loads((path / "metrics.json").read_text())
    return {"label": label, "overrides": overrides, "wall_seconds": round(seconds, 1), **record}


def flags(overrides):
    return " ".join(
        f"--{key.replace('_', '-')}" + ("" if value is True else f" {value}")
        for key, value in overrides.items() if key != "verbose"
    )


def markdown(result):
    gan, vae = result["gan"], result["vae"]
    m, b = gan["metrics"], gan["baseline"]
    counts = ", ".join(f"{name}: {count}" for name, count in m["sample_class_counts"].items())
    per_class = ", ".join(f"{name}: {value:.2f}" for name, value in m["per_class_accuracy"].items())
    lines = [
        "## Image generation (MNIST: first 8,000 train / last 2,000 test)",
        "",
        f"Machine: {result['machine']['nproc']} cores, {result['machine']['cpu']}, load "
        f"{result['machine']['load_average_1min']} at start; TF {result['machine']['tensorflow']}, "
        f"Keras {result['machine']['keras']}." + (" **Quick mode: not a benchmark.**" if result["quick"] else ""),
        "",
        f"Conditional DCGAN: `python -m tasks.image_generation train --data ../shared/data/mnist {flags(gan['overrides'])}`",
        "",
        f"FID and KID are on the features of the feature classifier (`dcgan_classifier` trained by "
        f"`tasks.classification` on the same 8,000 images; test accuracy {m['classifier_test_accuracy']:.4f}), "
        f"not Inception-v3; {m['num_samples']} samples against the {m['num_samples']} test images.",
        "",
        "| metric | conditional DCGAN | Gaussian-noise baseline | floor (real train vs test) |",
        "|---|---|---|---|",
        f"| samples classified as the requested class (goal >= 0.95) | **{m['class_accuracy']:.4f}** "
        f"| {b['class_accuracy']:.4f} | {m['classifier_test_accuracy']:.4f} (classifier on real test images) |",
        f"| FID | {m['fid']:.4f} | {b['fid']:.2f} | {m['fid_floor']:.4f} |",
        f"| KID | {m['kid']:.5f} | {b['kid']:.3f} | {m['kid_floor']:.5f} |",
        "",
        f"Per requested class: {per_class}. Samples per class as the classifier sees them (200 requested "
        f"each): {counts}.",
        "",
        f"Training: {gan['examples_per_second']} images/s ({gan['examples_per_cpu_second']} per CPU-second), "
        f"{gan['train_seconds']} s for {gan['epochs']} epochs; {gan['wall_seconds']} s wall in all "
        "(the feature classifier's training, evaluation and export included).",
        "",
    ]
    v, vb = vae["metrics"], vae["baseline"]
    lines += [
        f"VAE: `python -m tasks.image_generation train --data ../shared/data/mnist {flags(vae['overrides'])}`",
        "",
        "| metric (test split) | VAE | baseline |",
        "|---|---|---|",
        f"| negative ELBO, nats/image (reconstruction + KL) | **{v['negative_elbo']:.2f}** "
        f"({v['reconstruction_nats']:.2f} + {v['kl_nats']:.2f}) | {vb['negative_elbo']:.2f} (mean image, independent Bernoulli pixels) |",
        f"| reconstruction MSE (pixels in [0, 1]) | {v['reconstruction_mse']:.4f} | {vb['reconstruction_mse']:.4f} (mean image) |",
        f"| FID of samples | {v['fid']:.4f} | {vb['fid']:.2f} (Gaussian noise) |",
        "",
        f"Training: {vae['examples_per_second']} images/s, {vae['train_seconds']} s for {vae['epochs']} epochs.",
        "",
        "Command: `python benchmarks/image_generation.py" + (" --quick`" if result["quick"] else "`"),
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "mnist"))
    parser.add_argument("--gan-epochs", type=int, default=GAN["epochs"])
    parser.add_argument("--vae-epochs", type=int, default=VAE["epochs"])
    parser.add_argument("--width", type=int, default=GAN["width"], help="GAN width.")
    parser.add_argument("--quick", action="store_true", help="One epoch each, to check the script.")
    args = parser.parse_args(argv)
    gan = dict(GAN, epochs=args.gan_epochs, width=args.width)
    vae = dict(VAE, epochs=args.vae_epochs)
    if args.quick:
        gan, vae = dict(gan, **QUICK), dict(vae, **QUICK)
    result = {"machine": machine(), "quick": args.quick}
    with tempfile.TemporaryDirectory() as scratch:
        result["gan"] = run("conditional DCGAN", gan, args.data, pathlib.Path(scratch))
        result["vae"] = run("VAE", vae, args.data, pathlib.Path(scratch))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
