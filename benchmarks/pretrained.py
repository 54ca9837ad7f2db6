"""Classification from a pretrained backbone against the same network from scratch, on a small
CIFAR-10 slice (the first 50 test images of each class to train on, the next 20 to test on).

    python benchmarks/pretrained.py [--seeds 0,1,2] [--epochs 3] [--image-size 96]

Prints one line per variant and seed (accuracy, training seconds) and the mean per variant:
`frozen` (the backbone frozen the whole run, batch norm in inference mode), `finetuned` (frozen
for one epoch, then all layers, the backbone at 0.1 x the rate) and `scratch` (random weights).
"""

import argparse
import pathlib
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from tasks import classification  # noqa: E402
from tasks.core import config as config_lib  # noqa: E402
from tasks.core import finetune  # noqa: E402
from tasks.core import training  # noqa: E402
from tests.test_pretrained import PRETRAINED  # noqa: E402
from tests.test_pretrained import SHARED_DATA  # noqa: E402
from tests.test_pretrained import cifar_slice  # noqa: E402

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


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--backbone", default="mobilenet_v2", choices=sorted(FILES))
    parser.add_argument("--variants", default="frozen,finetuned,scratch")
    args = parser.parse_args()
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
