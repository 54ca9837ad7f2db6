"""TensorFlow Datasets for every reader: `--data tfds:NAME[/CONFIG]` is loaded here, and only here.

    from tasks.data import tfds

    splits, info = tfds.read("mnist", lambda info: {"image": "image", "label": "label"})
    for example in splits["train"]:  # {"image": uint8 (28, 28, 1), "label": int64}
        ...

A dataset is read from the TFDS data folder (`TFDS_DATA_DIR`, else `~/tensorflow_datasets`). One
not prepared there is downloaded and prepared where the TFDS servers answer; offline it fails in
seconds with a clear message instead of minutes of retries. Each reader (`images`, `masks`,
`boxes`, `text`, `pairs`) picks the features it needs and converts the examples to its own format.
"""

import os
import socket

from tasks.core.errors import UserError

# TFDS split name -> the split name every reader uses; others are kept as they are.
SPLIT_NAMES = {"val": "validation", "valid": "validation", "validation": "validation", "dev": "validation"}


def _reachable(host="storage.googleapis.com", port=443, timeout=3.0):
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def builder(name, data_dir=None):
    """A TFDS builder whose data is ready to read, or a `UserError` in seconds."""
    import tensorflow_datasets

    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR") or None  # read now, not at TFDS's import
    try:
        found = tensorflow_datasets.builder(name, data_dir=data_dir)
    except Exception as error:  # DatasetNotFoundError, bad config names, ...
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"--data tfds:{name}: {first}")
    if found.is_prepared():
        return found
    if not _reachable():
        raise UserError(
            f"--data tfds:{name}: not prepared in {found.data_dir} and the TFDS servers are "
            f"unreachable from here; run `tfds build {name}` on a machine with internet and copy "
            "~/tensorflow_datasets, or pass a local path."
        )
    found.download_and_prepare()
    return found


def datasets(name, data_dir=None):
    """Every split of a TFDS dataset as a `tf.data.Dataset` of feature dicts, and the dataset info."""
    found = builder(name, data_dir)
    return {split: found.as_dataset(split=split) for split in found.info.splits}, found.info


def keys_of(info, kind):
    """The top-level feature keys whose feature is a `tfds.features.<kind>` ("Image", "Text"...), in order."""
    import tensorflow_datasets

    feature_type = getattr(tensorflow_datasets.features, kind)
    return [key for key, feature in info.features.items() if isinstance(feature, feature_type)]


def read(name, pick, wanted, data_dir=None):
    """Every split of TFDS dataset `name` as NumPy examples of the features `pick` chooses.

    Args:
        name: str. The dataset, `NAME[/CONFIG]` (`mnist`, `glue/sst2`, `voc/2007`).
        pick: callable. `pick(info)` returns `{role: feature key}` for the features the reader
            needs (a key missing from an example leaves its role out), or None when the dataset
            lacks them.
        wanted: str. What `pick` looks for, for the error when it finds nothing ("image and
            class-label features").
        data_dir: str or None. The TFDS data folder. Defaults to `TFDS_DATA_DIR` or TFDS's own.

    Returns:
        `(splits, info)`: `{split: iterator of {role: NumPy value}}` with split names `train`,
        `validation` (TFDS `val`, `valid`, `dev`), `test` and any other as TFDS names it; and the
        `tfds.core.DatasetInfo`.
    """
    found, info = datasets(name, data_dir)
    keys = pick(info)
    if not keys:
        raise UserError(f"--data tfds:{name} has no {wanted} (its features: {', '.join(info.features)}); "
                        "pass a TFDS dataset that has them, or a local path.")
    splits = {}
    for split, dataset in found.items():
        examples = dataset.as_numpy_iterator()
        splits[SPLIT_NAMES.get(split, split)] = (
            {role: example[key] for role, key in keys.items() if key in example} for example in examples
        )
    if "train" not in splits:
        raise UserError(f"--data tfds:{name} has no train split (it has {', '.join(splits)}).")
    return splits, info
