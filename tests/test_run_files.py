"""Run files and exports others can read, the resume message, typed configs, the metric report,
and a `--classifier` of the wrong kind refused before training."""

import dataclasses
import json
import os
import stat
import sys
import types
from unittest import mock

import keras
import pytest

from tasks import classification
from tasks import image_generation
from tasks.core import cli
from tasks.core import config as config_lib
from tasks.core import export
from tasks.core import runner
from tasks.core import training
from tasks.core.errors import UserError
from tasks.core.runs import Run
from tasks.core.runs import write_atomic
from tests.test_export_formats import built
from tests.test_export_formats import reload_in_this_process


@pytest.fixture
def umask():
    """Sets the process umask for one test and restores it."""
    previous = os.umask(0o022)
    os.umask(previous)

    def set_mask(value):
        os.umask(value)

    yield set_mask
    os.umask(previous)


def modes(root):
    """{relative path: permission bits} of `root` and everything under it."""
    found = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        found[str(path.relative_to(root))] = stat.S_IMODE(path.stat().st_mode)
    return found


@pytest.mark.parametrize("mask,directory,file", [(0o022, 0o755, 0o644), (0o027, 0o750, 0o640)])
def test_an_export_is_readable_as_the_umask_allows(mask, directory, file, umask, tmp_path, monkeypatch):
    umask(mask)
    monkeypatch.setattr(export, "_fresh_process", reload_in_this_process)
    module, config, model, info = built("anomaly_detection")
    config = dataclasses.replace(config, export_dir=str(tmp_path / "saved_models"), export_format="tflite")
    run = Run("anomaly_detection", tmp_path / "runs" / "run")
    run.path.mkdir(parents=True)
    path = runner.export(module, model, info, config, run)
    found = modes(path)
    assert {name: mode for name, mode in found.items() if (path / name).is_dir() and mode != directory} == {}
    assert {name: mode for name, mode in found.items() if (path / name).is_file() and mode != file} == {}
    assert "model.tflite" in found and "assets/check.json" in found


@pytest.mark.parametrize("mask,file", [(0o022, 0o644), (0o077, 0o600)])
def test_run_files_are_written_as_the_umask_allows(mask, file, umask, tmp_path):
    umask(mask)
    write_atomic(tmp_path / "metrics.json", "{}\n")
    assert stat.S_IMODE((tmp_path / "metrics.json").stat().st_mode) == file


class Interrupt(keras.callbacks.Callback):
    """Ctrl-C at the start of epoch `at` (zero-based)."""

    def __init__(self, at):
        super().__init__()
        self.at = at

    def on_epoch_begin(self, epoch, logs=None):
        if epoch == self.at:
            raise KeyboardInterrupt


def test_the_resume_message_names_the_epoch_keras_runs(tmp_path, capsys):
    module, config, _, _ = built("anomaly_detection")
    config = dataclasses.replace(config, epochs=3, verbose=2, runs_dir=str(tmp_path))
    data = runner.load_data(module, config)
    run = Run("anomaly_detection", tmp_path / "run").start(config)
    with pytest.raises(KeyboardInterrupt):
        training.fit(module.build_model(config, data.info), data, config, run, extra_callbacks=[Interrupt(2)])
    capsys.readouterr()
    training.fit(module.build_model(config, data.info), data, config, run)
    printed = capsys.readouterr().out
    assert f"Resuming {run.path} at epoch 3 of 3." in printed
    assert "Epoch 3/3" in printed and "Epoch 2/3" not in printed  # Keras runs the epoch named


def test_a_config_of_the_wrong_type_fails_at_construction():
    with pytest.raises(UserError, match=r"Config.epochs must be an integer. Received: epochs='2'"):
        classification.Config(epochs="2")


def test_validate_takes_no_text_for_a_number():
    config = classification.Config()
    config.batch_size = "64"  # set after construction, as a library user might
    with pytest.raises(UserError, match="'batch_size' in config must be an integer"):
        config_lib.validate(config)


def test_an_integer_is_a_valid_float():
    assert config_lib.validate(classification.Config(learning_rate=1)).learning_rate == 1


def report_lines(capsys, **options):
    record = {"task": "t", "data": "demo", "metrics": {"accuracy": 0.5, "num_test": 200},
              "baseline": {"accuracy": 0.1, "num_test": 200}, "examples_per_second": 1234.5}
    runner.report(record, types.SimpleNamespace(verbose=1), **options)
    return capsys.readouterr().out.splitlines()


def test_counts_print_as_integers(capsys):
    lines = report_lines(capsys)
    assert "  num_test                 200   baseline 200" in lines
    assert "  accuracy                 0.5000   baseline 0.1000" in lines


def test_evaluate_prints_no_training_throughput(tmp_path, capsys):
    module = types.SimpleNamespace(
        __name__="tasks.fake", __spec__=None,
        evaluate=lambda model, data, config, plots_dir: {"accuracy": 0.5},
        baseline=lambda config, data: {"accuracy": 0.1},
    )
    run = Run("fake", tmp_path / "run")
    run.path.mkdir()
    run.write_metrics({"examples_per_second": 999.0})  # a trained run's record
    model = mock.Mock(count_params=lambda: 3)
    config = types.SimpleNamespace(verbose=1, data="demo")
    with mock.patch.object(runner.config_lib, "to_dict", lambda config: {}):
        runner.measure(module, model, None, config, run)  # `evaluate`: no stats
    assert "examples/s" not in capsys.readouterr().out
    assert "examples/s" in "\n".join(report_lines(capsys))  # `train` still prints it


def test_train_repeats_its_warning_lines_at_the_end(tmp_path, capsys):
    def train(config, fresh=False):
        print("warning: could not draw plots/a.png: ValueError: x", file=sys.stderr)
        print("Epoch 1/1 ... 50 lines of progress", file=sys.stderr)
        print("warning: the mask of b.png is mostly void", file=sys.stderr)
        print("warning: could not draw plots/a.png: ValueError: x", file=sys.stderr)  # once in the recap

    module = types.SimpleNamespace(__name__="tasks.fake", __spec__=None, __doc__="Fake.", Config=config_lib.TrainConfig,
                                   train=train)
    assert cli.main(module, ["train", "--runs-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().err.splitlines()
    recap = lines[lines.index("warnings:") + 1:]
    assert recap == ["  warning: could not draw plots/a.png: ValueError: x", "  warning: the mask of b.png is mostly void"]
    assert sys.stderr is not None and not hasattr(sys.stderr, "lines")  # the recorder is gone


def test_export_names_the_file_it_wrote(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(export, "_fresh_process", reload_in_this_process)
    module, config, model, info = built("anomaly_detection")
    config = dataclasses.replace(config, verbose=1, export_dir=str(tmp_path / "saved_models"), export_format="onnx")
    run = Run("anomaly_detection", tmp_path / "runs" / "run")
    run.path.mkdir(parents=True)
    path = runner.export(module, model, info, config, run)
    assert f"Wrote {path / 'model.onnx'} (checked with onnxruntime.InferenceSession" in capsys.readouterr().out


# === image_generation --classifier ===


def test_a_classifier_from_another_task_is_refused(tmp_path):
    run = tmp_path / "runs" / "segmentation" / "unet-demo"
    run.mkdir(parents=True)
    keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 1)]).save(run / "model.keras")
    (run / "metrics.json").write_text(json.dumps({"task": "segmentation", "metrics": {}}))
    with pytest.raises(UserError, match="a segmentation run, not a classification one"):
        image_generation.classifier_file(run)


def test_a_bare_model_file_that_is_no_classifier_is_refused(tmp_path):
    keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 1)]).save(tmp_path / "masks.keras")
    with pytest.raises(UserError, match=r"output \(None, 8, 8, 2\) is not \(batch, classes\)"):
        image_generation.classifier_file(tmp_path / "masks.keras")


def test_the_classifier_kind_is_checked_before_training(tmp_path):
    run = tmp_path / "runs" / "segmentation" / "unet-demo"
    run.mkdir(parents=True)
    keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 1)]).save(run / "model.keras")
    (run / "metrics.json").write_text(json.dumps({"task": "segmentation"}))
    config = image_generation.Config(classifier=str(run), runs_dir=str(tmp_path / "runs"), verbose=0)
    with mock.patch.object(training, "fit", side_effect=AssertionError("trained")):
        with pytest.raises(UserError, match="segmentation run"):
            image_generation.train(config)
