"""Data sources and the one `finalize` step every pipeline ends with.

`--data` is `demo` (generated or shipped, offline, seconds), a local path in the task's formats,
or `tfds:NAME[/CONFIG]`; `source` tells them apart, and the readers in `tasks/data` read them
(TFDS datasets through `tasks.data.tfds`, the one place that loads them).
"""

import dataclasses
import pathlib

import numpy as np
import tensorflow as tf

from tasks.core.errors import UserError

AUTOTUNE = tf.data.AUTOTUNE


@dataclasses.dataclass
class Data:
    """What `load_data` returns: batched splits and the facts the model needs."""

    train: tf.data.Dataset
    validation: object  # tf.data.Dataset or None
    test: tf.data.Dataset
    info: dict


# === Sources ===


def source(data):
    """Parses `--data` into `("demo", None)`, `("tfds", "name/config")` or `("path", Path)`."""
    if data == "demo":
        return "demo", None
    if data.startswith("tfds:"):
        name = data[len("tfds:"):].strip()
        if not name:
            raise UserError("--data tfds: needs a dataset name, e.g. tfds:mnist or tfds:glue/sst2.")
        return "tfds", name
    path = pathlib.Path(data).expanduser()
    if not path.exists():
        raise UserError(
            f"--data {data}: no such file or folder. Use demo, a local path, or tfds:NAME."
        )
    return "path", path


# === Splits ===


def split_indices(labels, fraction, seed, stratify=True):
    """Indices `(keep, held_out)` holding out `fraction` of examples, per class if `stratify`."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    if fraction <= 0:
        return np.arange(len(labels)), np.arange(0)
    groups = [np.flatnonzero(labels == value) for value in np.unique(labels)] if stratify else [
        np.arange(len(labels))
    ]
    held = []
    for group in groups:
        group = rng.permutation(group)
        held.append(group[: int(round(fraction * len(group)))])
    held = np.sort(np.concatenate(held)) if held else np.arange(0)
    keep = np.setdiff1d(np.arange(len(labels)), held)
    return keep, held


# === Finalize ===


def finalize(dataset, batch_size, shuffle=False, seed=0, cache=True, augment=None, batch_map=None):
    """cache → shuffle → (augment) → batch → (batch_map) → prefetch, parallel maps throughout.

    Args:
        dataset: tf.data.Dataset. Unbatched examples.
        batch_size: int. The global batch size.
        shuffle: bool. Reshuffle every epoch (training). Defaults to False.
        seed: int. The shuffle seed. Defaults to 0.
        cache: bool. Cache in memory before shuffling, so each epoch gets a new order. Defaults to True.
        augment: callable or None. A per-example map applied after the cache (fresh each epoch).
        batch_map: callable or None. A per-batch map (e.g. MixUp/CutMix).
    """
    if cache:
        dataset = dataset.cache()
    if shuffle:
        size = dataset.cardinality()
        buffer = int(size) if 0 < int(size) <= 100_000 else 10_000
        dataset = dataset.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if augment is not None:
        dataset = dataset.map(augment, num_parallel_calls=AUTOTUNE)
    dataset = dataset.batch(batch_size, num_parallel_calls=AUTOTUNE)
    if batch_map is not None:
        dataset = dataset.map(batch_map, num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)
