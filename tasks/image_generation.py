"""Image generation: DCGAN, class-conditional DCGAN and a convolutional VAE, against Gaussian noise.

Usage:
    python -m tasks.image_generation train                                 # demo: conditional DCGAN on 8x8 digits
    python -m tasks.image_generation train --data mnist --epochs 5 --width 32
    python -m tasks.image_generation train --data mnist --model vae --epochs 10
    python -m tasks.image_generation train --data faces/ --model dcgan --image-size 64 --channels 3
    python -m tasks.image_generation evaluate --classifier runs/classification/<run>   # the same flags find the run
    python -m tasks.image_generation predict all 3 7 --num-images 16 --seed 1          # sample grids in predictions/
    python -m tasks.image_generation predict digit1.png digit2.png                     # VAE: reconstructions, interpolation

Data: `tasks.data.images.read`, the reader classification uses (class folders, a `.tar.gz` of
them, a label CSV, MNIST IDX, `tfds:NAME`, `demo` = scikit-learn's 8x8 digits), with its test
split (IDX: the last `--test-fraction` is the test split; MNIST here: first 8,000 / last 2,000). Model: `dcgan`,
`conditional_dcgan` (AC-GAN) or `vae` from `applications`. Loss: the non-saturating GAN loss
(+ the auxiliary class loss), or the negative ELBO. Algorithm: `fit` on a custom `train_step`
(one discriminator then one generator step per batch, two Adam optimizers, beta_1 0.5); a sample
grid is saved after every epoch.

Metrics: FID and KID between generated and real test images on the features of an image
classifier trained by `tasks.classification` on the same data and split (Inception weights cannot
be downloaded here; `--classifier` names a finished classification run, else one is trained with
`--classifier-model` and cached under `runs/classification/`). Beside them: the floor (real
training vs real test images), the baseline (a Gaussian-noise generator), the classifier's
predicted-class counts of the samples (a mode-collapse watch), for the conditional model the
share of samples classified as the requested class, and for the VAE the test negative ELBO and
the reconstruction error (baseline: independent Bernoulli pixels with the training mean).
"""

import dataclasses
import inspect
import json
import pathlib
import sys

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from tasks import classification
from tasks.core import cli
from tasks.core import pipeline as data_lib
from tasks.core import export
from tasks.core import plots
from tasks.core import runner
from tasks.core import training
from tasks.core.config import TrainConfig
from tasks.core.config import model_option
from tasks.core.config import option
from tasks.core.errors import UserError
from tasks.core.runs import Run
from tasks.data import images as image_readers
from tasks.metrics import generation as generation_metrics

KIND = "generator"  # the applications registry kind(s) --model names

MAX_NUM_IMAGES = 1024  # per call of the `sample` signature and of `predict`
MIN_TRAIN_IMAGES = 2
MAX_EVAL_SAMPLES = 10_000
GRID_COLUMNS = 10
INTERPOLATION_STEPS = 10


@dataclasses.dataclass
class Config(TrainConfig):
    model: str = model_option("conditional_dcgan", KIND)
    latent_dim: int = option(0, "Latent size (0: the builder's default: GAN 100, VAE 16).", minimum=0)
    width: int = option(0, "Filters at full resolution, doubled per stride-2 step (0: the builder's default).", minimum=0)
    optimizer: str = option("adam", "A Keras optimizer by name (one per network for the GAN).",
                            choices=["sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "lion"])
    learning_rate: float = option(
        1e-3, "Peak learning rate of every optimizer (DCGAN's 2e-4 learns slower in short runs).", minimum=0.0
    )
    beta_1: float = option(0.5, "Adam-family beta_1 (DCGAN: 0.5).", minimum=0.0)
    weight_decay: float = option(0.0, "Decoupled weight decay (0: off).", minimum=0.0)
    schedule: str = option("constant", "Learning-rate schedule over the whole run.",
                           choices=["constant", "cosine", "onecycle", "step"])
    validation_fraction: float = option(
        0.0, "Share of the training split held out for validation (VAE: val_loss; the GAN ignores it).", minimum=0.0
    )
    image_size: int = option(0, "Resize images to this side (0: the data's own size).", minimum=0)
    channels: int = option(0, "Image channels, 1 or 3 (0: from the data).", choices=[0, 1, 3])
    test_fraction: float = option(0.2, "Share held out as the test split when the data has none.", minimum=0.0)
    classifier: str = option(
        "", "A tasks.classification run folder (or its model.keras) for FID/KID features (empty: train one).",
        identity=False,
    )
    classifier_model: str = option(
        "dcgan_classifier", "The registry classifier trained when --classifier is empty.", identity=False
    )
    classifier_epochs: int = option(5, "Epochs of that classifier.", minimum=1, identity=False)
    classifier_learning_rate: float = option(3e-3, "Peak learning rate of that classifier.", minimum=0.0, identity=False)
    num_eval_samples: int = option(
        0, f"Generated images scored (0: as many as test images, at most {MAX_EVAL_SAMPLES}).", minimum=0,
        identity=False,
    )


@dataclasses.dataclass
class GenerationData(data_lib.Data):
    """`Data` plus the uint8 arrays the metrics compare samples with."""

    train_images: np.ndarray = None
    test_images: np.ndarray = None
    test_labels: np.ndarray = None


# === Data ===


def load_data(config, saved=None):
    """Train / validation / test datasets of (pixels float32 [0, 255], class id) and the facts."""
    builder = training.model_builder(config.model, KIND)
    found = image_readers.read(config.data, config.image_size, config.channels, config.test_fraction, config.seed,
                               config.skip_bad, verbose=bool(config.verbose))
    class_names = list(found.class_names)
    train_x, train_y = found.splits["train"]
    if len(train_y) < MIN_TRAIN_IMAGES:
        raise UserError(
            f"--data {config.data}: the training set holds {len(train_y)} image(s); a generative model "
            f"needs at least {MIN_TRAIN_IMAGES} to learn a distribution from."
        )
    test_x, test_y = found.splits["test"]
    if len(train_y) < MIN_TRAIN_IMAGES or len(test_y) < 2:
        raise UserError(
            f"--data {config.data}: too few images to make train and test splits "
            f"({len(train_y)} and {len(test_y)}); add images or change --test-fraction."
        )
    if config.model == "conditional_dcgan" and len(class_names) < 2:
        raise UserError(f"--model conditional_dcgan needs at least 2 classes; --data {config.data} has 1. Use --model dcgan.")
    if not config.classifier and len(class_names) < 2:
        raise UserError(
            f"--data {config.data} has 1 class, so no classifier can be trained for the FID features; "
            "pass --classifier with a classification run of similar images."
        )
    if config.classifier:
        classifier_file(config.classifier)  # a missing run fails now, before training
    validation_x = np.zeros((0, *train_x.shape[1:]), np.uint8)
    if config.validation_fraction > 0 and "validation" not in found.splits:
        keep, held = data_lib.split_indices(train_y, config.validation_fraction, config.seed + 1)
        (train_x, train_y), (validation_x, validation_y) = (train_x[keep], train_y[keep]), (train_x[held], train_y[held])
    elif config.validation_fraction > 0:
        validation_x, validation_y = found.splits["validation"]
    pixels = train_x.reshape(-1, train_x.shape[-1]).astype(np.float64)
    defaults = inspect.signature(builder).parameters
    info = {
        "model": config.model,
        "class_names": class_names,
        "num_classes": len(class_names),
        "image_shape": list(train_x.shape[1:]),
        "latent_dim": config.latent_dim or defaults["latent_dim"].default,
        "width": config.width or defaults["width"].default,
        "channel_mean": pixels.mean(axis=0).tolist(),
        "channel_std": pixels.std(axis=0).tolist(),
        "num_train": int(len(train_y)),
        "num_test": int(len(test_y)),
        "train_counts": np.bincount(train_y, minlength=len(class_names)).tolist(),
        "skipped": [f"{where}: {reason}" for where, reason in found.skipped],
    }
    use_validation = config.model == "vae" and len(validation_x) > 0
    return GenerationData(
        train=make_dataset(train_x, train_y, config, training_split=True),
        validation=make_dataset(validation_x, validation_y, config) if use_validation else None,
        test=make_dataset(test_x, test_y, config),
        info=info,
        train_images=train_x,
        test_images=test_x,
        test_labels=test_y,
    )


def make_dataset(x, y, config, training_split=False):
    """uint8 arrays → (float32 pixels in [0, 255], int32 class id), batched and prefetched."""

    def prepare(image, label):
        return tf.cast(image, tf.float32), tf.cast(label, tf.int32)

    return data_lib.finalize(
        tf.data.Dataset.from_tensor_slices((x, y)),
        config.batch_size,
        shuffle=training_split,
        seed=config.seed,
        cache=False,  # already in memory as arrays
        augment=prepare,
    )


# === Model ===


def build_model(config, info):
    """A registry GAN or VAE, compiled with the config's optimizer(s) and schedule."""
    builder = training.model_builder(config.model, KIND)
    kwargs = {"input_shape": tuple(info["image_shape"]), "latent_dim": info["latent_dim"], "width": info["width"]}
    if config.model == "conditional_dcgan":
        kwargs["num_classes"] = info["num_classes"]
    try:
        model = builder(**kwargs)
    except ValueError as error:
        raise UserError(f"--model {config.model}: {error}; use --image-size to resize the images.")
    def make_optimizer():
        optimizer = training.optimizer(config, training.steps_per_epoch(config, info))
        if hasattr(optimizer, "beta_1"):
            optimizer.beta_1 = config.beta_1  # read at each update; set before the first
        return optimizer

    if config.model == "vae":
        model.compile(optimizer=make_optimizer())
    else:
        model.compile(optimizer=make_optimizer(), discriminator_optimizer=make_optimizer())
    return model


# === Sampling (Keras, the callback, the SavedModel: one function) ===


def sampler(model, info, chunk_size=None):
    """`sample(num_images, seed, class_id)` → (uint8 images (N, H, W, C), int32 class ids (N,)).

    The latents are `tf.random.stateless_normal` of `(seed, 0)`: a seed gives the same images in
    Keras, in the SavedModel and after a reload. `class_id` -1 cycles through the classes
    (image i has class i mod K); it is ignored by unconditional models (their class ids are -1).
    With `chunk_size` (eager use only) the network runs on that many latents at a time.
    """
    kind = info["model"]
    num_classes = info["num_classes"]

    def generate(latent, labels):
        if kind == "conditional_dcgan":
            return to_uint8(model([latent, labels], training=False))
        return to_uint8(model.decode(latent) if kind == "vae" else model(latent, training=False))

    def sample(num_images, seed, class_id=-1):
        num_images = tf.convert_to_tensor(num_images, tf.int32)
        seed = tf.convert_to_tensor(seed, tf.int32)
        class_id = tf.convert_to_tensor(class_id, tf.int32)
        latent = tf.random.stateless_normal(tf.stack([num_images, info["latent_dim"]]), seed=tf.stack([seed, 0]))
        if kind == "conditional_dcgan":
            labels = tf.where(class_id < 0, tf.range(num_images) % num_classes, tf.fill([num_images], class_id))
        else:
            labels = tf.fill([num_images], -1)
        if chunk_size is None:
            return generate(latent, labels), labels
        chunks = [
            generate(latent[start : start + chunk_size], labels[start : start + chunk_size])
            for start in range(0, int(num_images), chunk_size)
        ]
        return tf.concat(chunks, axis=0), labels

    return sample


def to_uint8(pixels):
    return tf.cast(tf.clip_by_value(tf.round(pixels), 0.0, 255.0), tf.uint8)


# === Pictures ===


def tile(images, columns, scale=1, border=2):
    """uint8 images (N, H, W, C) → one uint8 mosaic (rows x columns), grey borders."""
    images = np.asarray(images)
    count, height, width, channels = images.shape
    rows = max(int(np.ceil(count / columns)), 1)
    mosaic = np.full((rows * (height + border) + border, columns * (width + border) + border, channels), 128, np.uint8)
    for index, image in enumerate(images):
        top = border + (index // columns) * (height + border)
        left = border + (index % columns) * (width + border)
        mosaic[top : top + height, left : left + width] = image
    if scale > 1:
        mosaic = mosaic.repeat(scale, axis=0).repeat(scale, axis=1)
    return mosaic


def save_png(mosaic, path):
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mosaic[..., 0] if mosaic.shape[-1] == 1 else mosaic).save(path)
    return path


def display_scale(image_shape):
    """Enlarges small images so a grid is readable: 8x8 → x8, 28x28 → x2."""
    return max(1, 64 // max(image_shape[0], image_shape[1]))


def sample_grid(model, info, seed, path, per_class=GRID_COLUMNS):
    """Samples of a fixed seed: one row per class (conditional) or a 10x10 grid."""
    sample = sampler(model, info)
    if info["model"] == "conditional_dcgan":
        count = min(per_class * info["num_classes"], MAX_NUM_IMAGES)
        images, labels = sample(count, seed)  # image i has class i mod K
        order = np.argsort(labels.numpy() * count + np.arange(count), kind="stable")  # class by class
        images, columns = images.numpy()[order], per_class
    else:
        images, _ = sample(GRID_COLUMNS * GRID_COLUMNS, seed)
        images, columns = images.numpy(), GRID_COLUMNS
    return save_png(tile(images, columns, display_scale(info["image_shape"])), path)


class SampleGrid(keras.callbacks.Callback):
    """Saves a grid of samples of one fixed seed after every epoch: `plots/samples/epoch_NNN.png`.

    Args:
        info: dict. The data's facts (model kind, image shape, classes).
        folder: path. Where the grids go.
        seed: int. The sampling seed (the same every epoch, so grids show progress).
    """

    def __init__(self, info, folder, seed=0):
        super().__init__()
        self.info = info
        self.folder = pathlib.Path(folder)
        self.seed = seed

    def on_epoch_end(self, epoch, logs=None):
        with plots.best_effort(self.folder / f"epoch_{epoch + 1:03d}.png") as path:
            sample_grid(self.model, self.info, self.seed, path)


def callbacks(config, data, run):
    """The per-epoch sample grid."""
    return [SampleGrid(data.info, run.plots_dir / "samples", seed=config.seed)]


# === Feature classifier (FID, KID, class accuracy) ===

_FEATURE_NETWORKS = {}  # classifier file → feature network, loaded once per process


def classifier_file(path):
    """`model.keras` of a classification run folder, or the `.keras` file itself; checked to be a
    classifier (the run's task, else the model's (N, K) output) before anything trains."""
    path = pathlib.Path(path)
    found = path / "model.keras" if path.is_dir() else path
    advice = "pass a finished `python -m tasks.classification train` run folder (runs/classification/<run>) or its model.keras."
    if not found.is_file() or found.suffix != ".keras":
        raise UserError(f"--classifier {path}: no classification model there; {advice}")
    metrics = found.parent / "metrics.json"
    task = json.loads(metrics.read_text()).get("task") if metrics.is_file() else None
    if task not in (None, "classification"):
        raise UserError(f"--classifier {path}: a {task} run, not a classification one; {advice}")
    if task is None:
        shape = keras.saving.load_model(found, compile=False).output_shape
        if not (isinstance(shape, tuple) and len(shape) == 2):
            raise UserError(f"--classifier {path}: the model's output {shape} is not (batch, classes); {advice}")
    return found


def classifier_config(config):
    """The `tasks.classification` config of the feature classifier: the same data, split and seed."""
    return classification.Config(
        data=config.data,
        model=config.classifier_model,
        epochs=config.classifier_epochs,
        learning_rate=config.classifier_learning_rate,
        image_size=config.image_size,
        channels=config.channels,
        test_fraction=config.test_fraction,
        seed=config.seed,
        skip_bad=config.skip_bad,
        runs_dir=config.runs_dir,
        export_dir=str(pathlib.Path(config.runs_dir) / "classification" / "exports"),
        verbose=config.verbose,
    )


def feature_classifier(config):
    """The classifier file: `--classifier`, or a `tasks.classification` run trained (once) and cached.

    The cached run is `runs/classification/<model>-<data>-<hash>`: the classification task's
    own derived name, so later generation runs on the same data and split reuse it.
    """
    if config.classifier:
        return classifier_file(config.classifier)
    settings = classifier_config(config)
    run = Run.for_config("classification", settings)
    if not run.complete:
        runner.say(config, f"Training the feature classifier ({settings.model}, {settings.epochs} epochs) "
                           "with tasks.classification.")
        classification.train(settings)
    return run.model_file


def feature_network(path, image_shape):
    """classifier (float pixels [0, 255] → logits) → model (pixels → (features, logits)).

    The features are the input of the classifier's last layer (its pooled penultimate
    activations), the usual choice for FID. A classification run's model is
    input → normalization → the registry network (nested); the network's head is opened up.
    """
    key = str(pathlib.Path(path).resolve())
    if key in _FEATURE_NETWORKS:
        return _FEATURE_NETWORKS[key]
    classifier = keras.saving.load_model(path)
    shape = list(classifier.input_shape[1:])
    if shape != list(image_shape):
        raise UserError(
            f"--classifier {path} takes {shape} images but the generated ones are {list(image_shape)}; "
            "use a classifier trained on the same data and --image-size."
        )
    layers = [layer for layer in classifier.layers if not isinstance(layer, keras.layers.InputLayer)]
    inputs = keras.Input(tuple(shape), name="image")
    x = inputs
    for layer in layers:
        if layer is layers[-1] and isinstance(layer, keras.Model):
            head = layer.layers[-1]
            x = keras.Model(layer.inputs, [head.input, layer.outputs[0]])(x)  # (features, logits)
        elif layer is layers[-1]:
            x = [x, layer(x)]  # a flat classifier: its last layer's input is the feature vector
        else:
            x = layer(x)
    _FEATURE_NETWORKS[key] = keras.Model(inputs, list(x), name="feature_network")
    return _FEATURE_NETWORKS[key]


def features(network, images, batch_size=250):
    """(features (N, D) float64, logits (N, K)) of uint8 images."""
    feature_batches, logit_batches = [], []
    for start in range(0, len(images), batch_size):
        feature, logit = network(np.asarray(images[start : start + batch_size], np.float32), training=False)
        feature_batches.append(np.asarray(feature, np.float64).reshape(len(feature), -1))
        logit_batches.append(np.asarray(logit))
    return np.concatenate(feature_batches), np.concatenate(logit_batches)


def num_scored(config, data):
    return min(config.num_eval_samples or len(data.test_images), MAX_EVAL_SAMPLES)


def score_samples(network, images, requested, real_test, info):
    """FID, KID, predicted-class counts and (when classes were requested) the class accuracy."""
    fake_features, logits = features(network, images)
    predicted = np.argmax(logits, axis=-1)
    names = info["class_names"]
    counts = np.bincount(predicted, minlength=len(names))
    kid_mean, kid_std = generation_metrics.kid(real_test, fake_features)
    result = {"fid": generation_metrics.fid(real_test, fake_features), "kid": kid_mean}
    if kid_std is not None:  # None: every KID subset was the whole sample (no spread to report)
        result["kid_std"] = kid_std
    if requested is not None:
        hits = predicted == requested
        result["class_accuracy"] = float(np.mean(hits))
        result["per_class_accuracy"] = {
            name: float(np.mean(hits[requested == index])) for index, name in enumerate(names) if np.any(requested == index)
        }
    result["sample_class_counts"] = {name: int(count) for name, count in zip(names, counts)}
    return result


# === Baseline and evaluation ===


def noise_images(info, count, seed):
    """The baseline generator: i.i.d. Gaussian pixels with the training split's channel mean and std."""
    rng = np.random.default_rng(seed)
    shape = (count, *info["image_shape"])
    noise = rng.normal(info["channel_mean"], info["channel_std"], size=shape)
    return np.clip(np.round(noise), 0, 255).astype(np.uint8)


def cycle_labels(count, info):
    return np.arange(count) % info["num_classes"] if info["model"] == "conditional_dcgan" else None


def baseline(config, data):
    """A Gaussian-noise generator scored like the model; for the VAE also the mean-image Bernoulli model."""
    info = data.info
    network = feature_network(feature_classifier(config), info["image_shape"])
    real_test, _ = features(network, data.test_images)
    count = num_scored(config, data)
    result = {"name": "Gaussian noise (training channel mean and std, i.i.d. pixels)"}
    result.update(score_samples(network, noise_images(info, count, config.seed + 2), cycle_labels(count, info), real_test, info))
    if info["model"] == "vae":
        probability = np.clip(data.train_images.astype(np.float64).mean(axis=0) / 255.0, 1e-4, 1 - 1e-4)  # (H, W, C)
        targets = data.test_images.astype(np.float64) / 255.0
        cross_entropy = -(targets * np.log(probability) + (1 - targets) * np.log(1 - probability))
        result["negative_elbo"] = float(cross_entropy.sum(axis=(1, 2, 3)).mean())
        result["reconstruction_mse"] = float(np.mean((targets - probability) ** 2))
        result["name"] += "; ELBO and reconstruction: the training mean image (independent Bernoulli pixels)"
    return result


def evaluate(model, data, config, plots_dir=None):
    """FID/KID of samples vs the test split (floor: train vs test), class accuracy, VAE ELBO; grids."""
    info = data.info
    path = feature_classifier(config)
    network = feature_network(path, info["image_shape"])
    real_test, test_logits = features(network, data.test_images)
    count = num_scored(config, data)
    rng = np.random.default_rng(config.seed + 3)
    train_subset = data.train_images[rng.choice(len(data.train_images), min(count, len(data.train_images)), replace=False)]
    real_train, _ = features(network, train_subset)
    # KID is an unbiased MMD^2: for two samples of one distribution it scatters around 0 and can
    # come out negative. The floor is that 0; a negative estimate is reported as 0.
    kid_floor = max(generation_metrics.kid(real_test, real_train)[0], 0.0)
    result = {
        "feature_network": f"penultimate layer of the tasks.classification model {path} (not Inception-v3)",
        "classifier_test_accuracy": float(np.mean(np.argmax(test_logits, axis=-1) == data.test_labels)),
        "num_samples": count,
        "fid_floor": generation_metrics.fid(real_test, real_train),
        "kid_floor": kid_floor,
    }
    images, labels = sampler(model, info, chunk_size=500)(count, config.seed + 1)
    requested = labels.numpy() if info["model"] == "conditional_dcgan" else None
    result.update(score_samples(network, images.numpy(), requested, real_test, info))
    if info["model"] == "vae":
        result.update(vae_scores(model, data))
    if plots_dir is not None:
        plots_dir = pathlib.Path(plots_dir)
        with plots.best_effort(plots_dir / "samples.png") as path:
            sample_grid(model, info, config.seed, path)
        if info["model"] == "vae":
            vae_pictures(model, data.test_images[:GRID_COLUMNS], info, plots_dir)
    return result


def vae_scores(model, data, batch_size=250):
    """Test negative ELBO (reconstruction + KL, nats per image) and the pixel MSE of reconstructions."""
    totals = {"negative_elbo": [], "reconstruction_nats": [], "kl_nats": [], "squared_error": []}
    for start in range(0, len(data.test_images), batch_size):
        pixels = data.test_images[start : start + batch_size].astype(np.float32)
        loss, reconstruction, kl = model.negative_elbo(pixels, training=False)
        totals["negative_elbo"].append(np.asarray(loss))
        totals["reconstruction_nats"].append(np.asarray(reconstruction))
        totals["kl_nats"].append(np.asarray(kl))
        rebuilt = np.asarray(model(pixels, training=False)) / 255.0
        totals["squared_error"].append(((rebuilt - pixels / 255.0) ** 2).reshape(len(pixels), -1).mean(axis=1))
    result = {key: float(np.concatenate(values).mean()) for key, values in totals.items()}
    result["reconstruction_mse"] = result.pop("squared_error")
    return result


def interpolate(model, first, second, steps=INTERPOLATION_STEPS):
    """uint8 images along the straight line between the latent means of two images."""
    means, _ = model.encode(np.stack([first, second]).astype(np.float32))
    weights = tf.linspace(0.0, 1.0, steps)[:, None]
    latent = (1.0 - weights) * means[0] + weights * means[1]
    return to_uint8(model.decode(latent)).numpy()


def vae_pictures(model, originals, info, folder):
    """`reconstructions.png` (originals above, reconstructions below) and `interpolation.png`."""
    scale = display_scale(info["image_shape"])
    rebuilt = to_uint8(model(originals.astype(np.float32), training=False)).numpy()
    with plots.best_effort(folder / "reconstructions.png") as path:
        save_png(tile(np.concatenate([originals, rebuilt]), len(originals), scale), path)
    if len(originals) >= 2:
        with plots.best_effort(folder / "interpolation.png") as path:
            save_png(tile(interpolate(model, originals[0], originals[1]), INTERPOLATION_STEPS, scale), path)


# === Export and predict ===


def check_request(num_images, class_id, num_classes):
    """The SavedModel's own checks: one readable `InvalidArgumentError` per bad argument."""
    checks = [
        tf.debugging.assert_greater_equal(num_images, 1, message="num_images must be >= 1"),
        tf.debugging.assert_less_equal(num_images, MAX_NUM_IMAGES, message=f"num_images must be <= {MAX_NUM_IMAGES}"),
    ]
    if class_id is not None:
        checks += [
            tf.debugging.assert_greater_equal(class_id, -1, message=f"class_id must be -1 (every class) or in 0..{num_classes - 1}"),
            tf.debugging.assert_less(class_id, num_classes, message=f"class_id must be -1 (every class) or in 0..{num_classes - 1}"),
        ]
    return checks


def network(model, info):
    """What ONNX and TFLite hold: the generator (latent[, class_id] → pixels in [-1, 1]) of a GAN,
    the decoder (latent → pixel logits) of a VAE; sampling and the uint8 images stay in the SavedModel."""
    return export.Network(model.decoder if info["model"] == "vae" else model.generator)


def serving(model, info):
    """`sample` (= `serving_default`): (num_images, seed[, class_id]) → uint8 images; VAE: `encode`, `decode`."""
    sample = sampler(model, info)
    height, width, channels = info["image_shape"]
    latent_dim = info["latent_dim"]
    counts = [tf.TensorSpec([], tf.int32, name="num_images"), tf.TensorSpec([], tf.int32, name="seed")]

    if info["model"] == "conditional_dcgan":
        def sample_images(num_images, seed, class_id):
            with tf.control_dependencies(check_request(num_images, class_id, info["num_classes"])):
                images, labels = sample(tf.identity(num_images), seed, class_id)
            return {"images": images, "class_id": labels}

        signature = counts + [tf.TensorSpec([], tf.int32, name="class_id")]
        example = [np.int32(12), np.int32(3), np.int32(-1)]
    else:
        def sample_images(num_images, seed):
            with tf.control_dependencies(check_request(num_images, None, 0)):
                images, _ = sample(tf.identity(num_images), seed)
            return {"images": images}

        signature, example = counts, [np.int32(6), np.int32(3)]
    endpoints = [export.Endpoint("sample", sample_images, signature, example)]
    if info["model"] != "vae":
        return endpoints

    def encode(images):
        shape = tf.shape(images)
        size_ok = tf.debugging.assert_equal(
            shape[1:3], tf.constant([height, width]), message=f"encode takes {height}x{width} images (height x width)"
        )
        with tf.control_dependencies([size_ok]):
            mean, log_variance = model.encode(tf.cast(images, tf.float32))
        return {"mean": mean, "log_variance": log_variance}

    def decode(latent):
        return {"images": to_uint8(model.decode(latent))}

    pictures = np.random.default_rng(0).integers(0, 256, size=(2, height, width, channels), dtype=np.uint8)
    latents = np.random.default_rng(1).normal(size=(2, latent_dim)).astype(np.float32)
    return endpoints + [
        export.Endpoint("encode", encode, [tf.TensorSpec([None, None, None, channels], tf.uint8, name="images")], [pictures]),
        export.Endpoint("decode", decode, [tf.TensorSpec([None, latent_dim], tf.float32, name="latent")], [latents]),
    ]


# Class names hold `/` (Fashion-MNIST's "T-shirt/top"): only an image suffix marks an INPUT as a path.
def looks_like_path(text):
    return export.looks_like_path(text, slash=False)


def predict_flags(parser):
    """The sampling flags of `predict`."""
    parser.add_argument("--num-images", type=int, default=GRID_COLUMNS,
                        help=f"Images per requested class (or per grid), 1..{MAX_NUM_IMAGES}.")
    parser.add_argument("--seed", type=int, default=0, help="Sampling seed: the same seed gives the same images.")


def parse_requests(inputs, info):
    """INPUTs → (class ids (-1: all), image files); one `UserError` per input that cannot be."""
    names = info["class_names"]
    classes, files = [], []
    for item in inputs:
        path = pathlib.Path(item)
        if path.is_file() or path.suffix.lower() in image_readers.IMAGE_EXTENSIONS:
            if info["model"] != "vae":
                raise UserError(f"{item}: only a VAE (--model vae) reconstructs images; give class names or 'all'.")
            files.append(path)
        elif item == "all":
            classes.append(-1)
        elif info["model"] != "conditional_dcgan":
            raise UserError(f"{item!r}: this {info['model']} model takes no class; give 'all'"
                            + (" or image files." if info["model"] == "vae" else "."))
        elif item in names:
            classes.append(names.index(item))
        elif item.lstrip("-").isdigit() and 0 <= int(item) < len(names):
            classes.append(int(item))
        else:
            raise UserError(
                f"class {item!r} is out of range: the model knows {len(names)} classes, ids 0..{len(names) - 1} "
                f"({', '.join(names[:10])}{', ...' if len(names) > 10 else ''}), or 'all'."
            )
    return classes, files


def read_for_encoding(path, info):
    """One image file as uint8 (H, W, C) at the model's size, or a `UserError` naming it."""
    height, width, channels = info["image_shape"]
    if not path.is_file():
        raise UserError(f"{path}: no such image file.")
    try:
        image = tf.io.decode_image(export.upright_bytes(path.read_bytes()), channels=channels,
                                   expand_animations=False).numpy()
    except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
        raise UserError(f"{path}: cannot decode it as an image (JPEG, PNG, GIF or BMP).")
    if image.shape[:2] != (height, width):
        raise UserError(
            f"{path}: the image is {image.shape[1]}x{image.shape[0]} but the model encodes {width}x{height} "
            "images; resize it first."
        )
    return image


def predict(inputs, model_path, output_dir="predictions", num_images=GRID_COLUMNS, seed=0):
    """Sample grids from the exported SavedModel; a VAE also reconstructs and interpolates image files."""
    if not 1 <= num_images <= MAX_NUM_IMAGES:
        raise UserError(f"--num-images must be between 1 and {MAX_NUM_IMAGES}. Received: {num_images}")
    loaded = export.load(model_path)
    info = loaded.info
    classes, files = parse_requests(inputs, info)
    images = [read_for_encoding(file, info) for file in files]  # every file checked before any output
    output = pathlib.Path(output_dir)
    scale = display_scale(info["image_shape"])
    sample = loaded.signatures["sample"]
    names = info["class_names"]
    for class_id in classes:
        arguments = {"num_images": tf.constant(num_images), "seed": tf.constant(seed)}
        columns = min(num_images, GRID_COLUMNS)
        if info["model"] == "conditional_dcgan":
            if class_id == -1:  # num_images of every class, one column per class
                arguments["num_images"] = tf.constant(min(num_images * len(names), MAX_NUM_IMAGES))
                columns = len(names)
            arguments["class_id"] = tf.constant(class_id)
        result = sample(**arguments)["images"].numpy()
        label = "all" if class_id == -1 else names[class_id]
        file = save_png(tile(result, columns, scale), output / f"samples_{label}.png")
        print(f"{file}\t{len(result)} samples ({label}), seed {seed}")
    if images:
        encoded = loaded.signatures["encode"](images=tf.constant(np.stack(images)))
        rebuilt = loaded.signatures["decode"](latent=encoded["mean"])["images"].numpy()
        file = save_png(tile(np.concatenate([np.stack(images), rebuilt]), len(images), scale), output / "reconstructions.png")
        print(f"{file}\t{len(images)} images above, their reconstructions below")
        if len(images) >= 2:
            weights = np.linspace(0.0, 1.0, INTERPOLATION_STEPS, dtype=np.float32)[:, None]
            means = encoded["mean"].numpy()
            strip = loaded.signatures["decode"](latent=tf.constant((1 - weights) * means[0] + weights * means[1]))["images"]
            file = save_png(tile(strip.numpy(), INTERPOLATION_STEPS, scale), output / "interpolation.png")
            print(f"{file}\tlatent interpolation from {files[0].name} to {files[1].name}")
    return loaded.path


def train(config, fresh=False):
    """The whole job: data → model → fit → evaluate + baseline → export. Returns the model."""
    return runner.train(sys.modules[__name__], config, fresh=fresh)


if __name__ == "__main__":
    cli.main(sys.modules[__name__])
