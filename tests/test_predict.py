"""`predict` says which export it ran and takes `--version`; a path that does not exist, or a file
with no text, is one error line; the anomaly SavedModel and `predict` flag the same rows."""

import dataclasses
import re
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf

from tasks import anomaly_detection
from tasks.families import seq2seq
from tasks import sentiment
from tasks.core import export
from tasks.core import runner
from tasks.core.runs import Run
from tasks.metrics import nab
from tests.helpers import assert_one_line_error
from tests.helpers import run_in_process
from tests.test_export_formats import built
from tests.test_export_formats import reload_in_this_process


def write_series(path, num_rows=400, spike=300):
    """A sine with one spike, as `timestamp,value` rows one minute apart."""
    values = np.sin(np.arange(num_rows) / 8.0)
    values[spike] += 6.0
    stamps = np.datetime64("2024-01-01T00:00") + np.arange(num_rows) * np.timedelta64(1, "m")
    lines = ["timestamp,value"] + [f"{str(stamp).replace('T', ' ')}:00,{value:.6f}" for stamp, value in zip(stamps, values)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def anomaly_exports(tmp_path_factory):
    """Two versions of an untrained anomaly export whose threshold flags every row (0.0), so the
    probationary period is the only thing that keeps a row undetected."""
    root = tmp_path_factory.mktemp("anomaly")
    module, config, model, info = built("anomaly_detection")
    info = {**info, "thresholds": {"standard": 0.0}}
    config = dataclasses.replace(config, export_dir=str(root / "saved_models"))
    run = Run("anomaly_detection", root / "runs" / "run")
    run.path.mkdir(parents=True)
    with mock.patch.object(export, "_fresh_process", reload_in_this_process):
        paths = [runner.export(module, model, info, config, run) for _ in range(2)]
    return root, paths


def test_predict_names_the_export_it_ran(anomaly_exports, capsys, tmp_path):
    root, paths = anomaly_exports
    series = write_series(tmp_path / "one.csv")
    result = run_in_process(anomaly_detection, capsys, root, "predict", "--output", tmp_path / "out", series)
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("model: ")]
    assert re.fullmatch(r"model: saved_models/anomaly_detection/2 \(trained \d{4}-\d\d-\d\d \d\d:\d\d, .+\)", line), line


def test_predict_runs_the_version_asked_for(anomaly_exports, capsys, tmp_path):
    root, _ = anomaly_exports
    series = write_series(tmp_path / "one.csv")
    result = run_in_process(anomaly_detection, capsys, root, "predict", "--version", 1, "--output", tmp_path, series)
    assert result.returncode == 0, result.stderr
    assert "model: saved_models/anomaly_detection/1 (" in result.stderr


def test_a_version_that_does_not_exist_is_one_line(anomaly_exports, capsys, tmp_path):
    root, _ = anomaly_exports
    result = run_in_process(anomaly_detection, capsys, root, "predict", "--version", 7, write_series(tmp_path / "a.csv"))
    assert_one_line_error(result, "--version 7", "1, 2")


@pytest.mark.parametrize("task,item", [
    ("translation", "sentences2.txt"),
    ("summarization", "articles/today.txt"),
    ("sentiment", "reviews/missing.csv"),
    ("classification", "photos/cat.jpg"),
    ("anomaly_detection", "machine_temperature.csv"),
])
def test_a_missing_path_is_one_line_before_any_model_is_loaded(task, item, capsys, tmp_path):
    import importlib

    module = importlib.import_module(f"tasks.{task}")
    result = run_in_process(module, capsys, tmp_path, "predict", item)  # no export exists here either
    assert_one_line_error(result, item, "no such file")


@pytest.mark.parametrize("text", ["Hello world.", "e.g. this one", "km", "3.5"])
def test_text_that_is_not_a_path_is_not_taken_for_one(text):
    assert not export.looks_like_path(text)


def test_a_slash_in_a_smiles_is_not_taken_for_a_path():
    from tasks import graph_property

    assert not graph_property.looks_like_path("F/C=C/F")
    assert graph_property.looks_like_path("molecules.smi")


def test_sentiment_on_a_file_of_empty_lines_is_an_error(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    with pytest.raises(sentiment.UserError, match="no sentence to classify"):
        sentiment.predict([str(empty)], str(tmp_path / "no_model"))


def test_translation_of_a_file_of_empty_lines_is_an_error(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    with pytest.raises(seq2seq.UserError, match="holds no text"):
        seq2seq.read_inputs([str(empty)], split_lines=True)


# === Anomaly detection: one post-processing for the server and the CLI ===


def test_the_savedmodel_and_predict_flag_the_same_rows(anomaly_exports, capsys, tmp_path):
    root, paths = anomaly_exports
    series = write_series(tmp_path / "one.csv")
    result = run_in_process(anomaly_detection, capsys, root, "predict", "--output", tmp_path / "out", series)
    assert result.returncode == 0, result.stderr
    rows = (tmp_path / "out" / "one_scores.csv").read_text().strip().splitlines()[1:]
    printed = np.array([row.rsplit(",", 1)[1] == "1" for row in rows])
    values = np.array([float(row.split(",")[1]) for row in rows], np.float32)
    served = tf.saved_model.load(str(paths[-1])).signatures["serving_default"](series=tf.constant(values[None]))
    detection = served["detection"].numpy()[0]
    np.testing.assert_array_equal(printed, detection)
    probation = nab.probationary_length(len(values))
    assert not detection[:probation].any() and detection[probation:].all()  # threshold 0: all after probation


@pytest.mark.parametrize("num_rows", [7, 19, 20, 21, 400, 4999, 5000, 5001, 12345])
def test_detect_suppresses_exactly_nab_probation(num_rows):
    detected = anomaly_detection.detect(np.ones((1, num_rows), np.float32), 0.5).numpy()[0]
    assert int((~detected).sum()) == nab.probationary_length(num_rows)
