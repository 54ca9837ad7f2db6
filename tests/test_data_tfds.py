"""TFDS through `tasks.data.tfds`, the one place that loads it: fail-fast errors, one real prepared
dataset, and each reader's conversion of fake TFDS examples through its `read("tfds:...")` entry."""

import pathlib
import re
import types

import numpy as np
import pytest

from tasks.core.errors import UserError
from tasks.data import boxes
from tasks.data import images
from tasks.data import masks
from tasks.data import pairs
from tasks.data import text
from tasks.data import tfds as tfds_reader

REPO = pathlib.Path(__file__).resolve().parents[1]


def fake_tfds(monkeypatch, features, splits, supervised_keys=None):
    """`tfds_reader.datasets` answers offline with `splits` ({name: [example]}, text as bytes, as
    TFDS's NumPy examples hold it) and these features."""
    datasets = {name: types.SimpleNamespace(as_numpy_iterator=lambda examples=examples: iter(examples))
                for name, examples in splits.items()}
    info = types.SimpleNamespace(features=features, supervised_keys=supervised_keys)
    monkeypatch.setattr(tfds_reader, "datasets", lambda name, data_dir=None: (datasets, info))


# === Loading ===


def test_an_unknown_name_fails_fast():
    with pytest.raises(UserError, match="tfds:not_a_dataset_xyz"):
        tfds_reader.builder("not_a_dataset_xyz")


def test_an_unprepared_dataset_offline_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setattr(tfds_reader, "_reachable", lambda *args, **kwargs: False)
    with pytest.raises(UserError, match="unreachable"):
        tfds_reader.builder("mnist", data_dir=str(tmp_path))


def test_a_prepared_dataset_is_read_from_TFDS_DATA_DIR(tmp_path, monkeypatch, capsys):
    import tensorflow_datasets as tfds

    tfds.testing.DummyMnist(data_dir=str(tmp_path)).download_and_prepare()
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    found = images.read("tfds:dummy_mnist")
    assert capsys.readouterr().out.splitlines()[-1] == "data: tfds:dummy_mnist, 40 images, 10 classes"
    train_images, train_labels = found.splits["train"]
    assert train_images.shape == (20, 28, 28, 1) and train_images.dtype == np.uint8
    assert train_labels.shape == (20,) and found.class_names == [str(digit) for digit in range(10)]
    assert len(found.splits["test"][1]) == 20


def test_only_the_tfds_module_imports_tensorflow_datasets():
    importers = [
        str(path.relative_to(REPO)) for path in sorted((REPO / "tasks").rglob("*.py"))
        if re.search(r"^\s*(import|from) tensorflow_datasets\b", path.read_text(), re.M)
    ]
    assert importers == ["tasks/data/tfds.py"]


def test_a_dataset_without_the_features_is_one_error_line(monkeypatch):
    import tensorflow_datasets as tfds

    features = tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(4, 4, 1)),
                                           "label": tfds.features.ClassLabel(names=["a", "b"])})
    fake_tfds(monkeypatch, features, {"train": [{"image": np.zeros((4, 4, 1), np.uint8), "label": 0}]})
    with pytest.raises(UserError) as error:
        text.read("tfds:mnist_like", verbose=False)
    message = str(error.value)
    assert "\n" not in message and "text and class-label features" in message and "image, label" in message


def test_a_dataset_without_a_train_split(monkeypatch):
    import tensorflow_datasets as tfds

    features = tfds.features.FeaturesDict({"text": tfds.features.Text()})
    fake_tfds(monkeypatch, features, {"test": [{"text": b"only a test split"}]})
    with pytest.raises(UserError, match="has no train split \\(it has test\\)"):
        text.read_corpus("tfds:test_only", verbose=False)


# === Each reader's conversion ===


def test_the_mask_reader_maps_the_pet_trimap(monkeypatch):
    import tensorflow_datasets as tfds

    # The pets' features and trimap values (1 pet, 2 background, 3 border), without a download.
    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3)),
        "segmentation_mask": tfds.features.Image(shape=(None, None, 1)),
    })
    trimap = np.array([[1, 2], [3, 2]], np.uint8)[..., None].repeat(4, 0).repeat(4, 1)
    example = {"image": np.zeros((8, 8, 3), np.uint8), "segmentation_mask": trimap}
    fake_tfds(monkeypatch, features, {"train": [example], "test": [example]})
    data = masks.read("tfds:oxford_iiit_pet", verbose=False)
    assert data.class_names == ["pet", "background", "border"]
    assert set(np.unique(data.splits["train"].masks[0])) == {0, 1, 2}
    assert list(data.splits) == ["train", "test"]


def test_the_box_reader_turns_relative_boxes_into_pixels(monkeypatch):
    import tensorflow_datasets as tfds

    features = tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(None, None, 3)),
        "objects": tfds.features.Sequence({
            "bbox": tfds.features.BBoxFeature(),
            "label": tfds.features.ClassLabel(names=["aeroplane", "bicycle"]),
        }),
    })
    example = {
        "image": np.zeros((20, 40, 3), np.uint8),
        "objects": {"bbox": np.array([[0.1, 0.25, 0.5, 0.5]], np.float32), "label": np.array([1])},
    }
    fake_tfds(monkeypatch, features, {name: [example] for name in ("train", "val", "test")})
    data = boxes.read("tfds:voc/2007", verbose=False)
    assert data.class_names == ["aeroplane", "bicycle"] and set(data.splits) == {"train", "validation", "test"}
    np.testing.assert_allclose(data.splits["train"].boxes[0], [[10, 2, 20, 10]])


def test_the_text_reader_drops_hidden_test_labels(monkeypatch):
    import tensorflow_datasets as tfds

    features = tfds.features.FeaturesDict({
        "sentence": tfds.features.Text(), "label": tfds.features.ClassLabel(names=["negative", "positive"]),
        "idx": tfds.features.Scalar(dtype=np.int32),
    })

    def split(sentences, labels):
        return [{"sentence": sentence.encode(), "label": label, "idx": 0} for sentence, label in zip(sentences, labels)]

    fake_tfds(monkeypatch, features, {"train": split(["good", "bad"], [1, 0]), "validation": split(["fine"], [1]),
                                      "test": split(["unknown", "labels"], [-1, -1])})
    found = text.read("tfds:glue/sst2", verbose=False)
    assert set(found.splits) == {"train", "validation"} and found.class_names == ["negative", "positive"]
    assert found.splits["train"] == (["good", "bad"], ["positive", "negative"]) and found.unlabelled == []
    assert found.layout == "tfds:glue/sst2"


def test_the_corpus_reader_joins_examples_and_holds_out_the_end_of_train(monkeypatch):
    import tensorflow_datasets as tfds

    features = tfds.features.FeaturesDict({"text": tfds.features.Text()})
    fake_tfds(monkeypatch, features, {"train": [{"text": b"abcd"}, {"text": b"efghi"}], "test": [{"text": b"xyz"}]})
    texts = text.read_corpus("tfds:tiny", validation_fraction=0.2, verbose=False)
    assert texts == {"train": "abcd\nefg", "validation": "hi", "test": "xyz"}


def test_the_pair_reader_takes_the_supervised_keys(monkeypatch):
    import tensorflow_datasets as tfds

    features = tfds.features.FeaturesDict({"pt": tfds.features.Text(), "en": tfds.features.Text()})
    examples = {"train": [{"pt": "olá".encode(), "en": b"hello"}], "validation": [{"pt": b"sim", "en": b"yes"}]}
    fake_tfds(monkeypatch, features, examples, supervised_keys=("pt", "en"))
    found = pairs.read_translation("tfds:ted_like")
    assert {split: (part.sources, part.targets) for split, part in found.items()} == {
        "train": (["olá"], ["hello"]), "validation": (["sim"], ["yes"])}
    reversed_pairs = pairs.read_translation("tfds:ted_like", reverse=True)
    assert reversed_pairs["train"].sources == ["hello"]
