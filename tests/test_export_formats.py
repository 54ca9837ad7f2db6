"""Every export answers like the model before it is published: the contract over every task and
every format it offers, and guards that break an export and see it refused."""

import contextlib
import dataclasses
import functools
import importlib
import io
import json
import sys
import types
import warnings
from unittest import mock

import keras
import numpy as np
import pytest
import tensorflow as tf

import tasks
from tasks.core import config as config_lib
from tasks.core import export
from tasks.core import runner
from tasks.core.errors import ExportCheckFailed
from tasks.core.errors import UserError
from tasks.core.runs import Run

# The smallest settings of each task's demo data; the networks stay untrained (the comparison is
# what is tested, and an untrained network's outputs differ between formats as a trained one's do).
SMALL = {
    "summarization": {"model": "transformer_seq2seq", "num_layers": 1, "embed_dim": 32},
    "translation": {"num_layers": 1, "embed_dim": 32},
    "text_generation": {"num_layers": 1, "embed_dim": 32},
}


def offered(task):
    """The `--format` choices of a task's Config, as its `--help` lists them."""
    module = importlib.import_module(f"tasks.{task}")
    field = next(field for field in config_lib.fields(module.Config) if field.name == "export_format")
    return field.metadata["choices"]


CASES = [(task, form) for task in tasks.TASKS for form in offered(task)]
FRESH_PROCESS_CASE = ("anomaly_detection", "saved_model")
# The fast lane keeps the SavedModel of every task but the encoder-decoders (their exports trace
# greedy and beam decoding: 12-25 s each on two shared cores) and each extra format once; the rest
# (a conversion and its runtime, 5-15 s each) and the fresh-process case run in the full suite.
SLOW_TASKS = {"translation", "summarization"}
FAST_EXTRA = {("classification", "onnx"), ("classification", "tflite")}


def lane(task, form):
    if task in SLOW_TASKS or (task, form) == FRESH_PROCESS_CASE:
        return [pytest.mark.slow]
    return [] if form == "saved_model" or (task, form) in FAST_EXTRA else [pytest.mark.slow]


PARAMS = [pytest.param(task, form, id=f"{task}-{form}", marks=lane(task, form)) for task, form in CASES]


@functools.lru_cache(maxsize=None)
def built(task, **settings):
    """(module, config, untrained model, info) of a task's demo data, built once per settings."""
    module = importlib.import_module(f"tasks.{task}")
    fields = {field.name for field in config_lib.fields(module.Config)}
    small = {key: value for key, value in (settings or SMALL.get(task, {})).items() if key in fields}
    config = module.Config(verbose=0, epochs=1, **small)
    data = runner.load_data(module, config)
    model = module.build_model(config, data.info)
    return module, config, model, data.info


def export_task(task, form, tmp_path, **settings):
    module, config, model, info = built(task, **settings)
    config = dataclasses.replace(config, export_dir=str(tmp_path / "saved_models"), export_format=form)
    run = Run(task, tmp_path / "runs" / task / "run")
    run.path.mkdir(parents=True)
    return runner.export(module, model, info, config, run), module, model, info


def keras_outputs(model, example):
    return export._named_outputs(model(example if len(example) > 1 else example[0], training=False))


def consumer_outputs(path, form, model, example):
    """The file run by its own runtime, as a consumer would, outside the export's code."""
    if form == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path))
        values = session.run(None, {item.name: array for item, array in zip(session.get_inputs(), example)})
        return dict(zip(keras_outputs(model, example), values))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner()
    names = [tensor.name for tensor in model.inputs]
    if set(names) != set(runner.get_input_details()):
        details = runner.get_input_details()
        names = sorted(details, key=lambda name: details[name]["index"])
    outputs = runner(**dict(zip(names, example)))
    return {key: outputs[key] for key in sorted(outputs, key=lambda key: (len(key), key))}


def reload_in_this_process(arguments):
    """`export._fresh_process` without the new interpreter (its TensorFlow start-up costs seconds)."""
    printed = io.StringIO()
    with mock.patch.object(sys, "argv", ["-c", *arguments]), contextlib.redirect_stdout(printed):
        exec(export._CHECK, {"__name__": "__check__"})
    return types.SimpleNamespace(returncode=0, stdout=printed.getvalue(), stderr="")


@pytest.mark.parametrize("task,form", PARAMS)
def test_export_answers_like_the_model(task, form, tmp_path, monkeypatch):
    if (task, form) != FRESH_PROCESS_CASE:
        # The fresh-process reload is the same script; one case (and the guard test) runs it for real.
        monkeypatch.setattr(export, "_fresh_process", reload_in_this_process)
    path, module, model, info = export_task(task, form, tmp_path)
    record = json.loads((path / "assets" / "check.json").read_text())
    saved = record["saved_model"]
    assert saved["max_abs_difference"] <= saved["atol"] and saved["outputs_compared"] >= 1
    # A server's view: plain tf.saved_model.load, the first endpoint's example, the model's answer.
    endpoint = module.serving(model, info)[0]
    want = export._numpy(endpoint.fn(*[tf.constant(x) for x in endpoint.example]))
    loaded = export.load(path, quiet=True)
    got = loaded.signatures[endpoint.name](
        **{spec.name: tf.constant(x) for spec, x in zip(endpoint.signature, endpoint.example)})
    for key, value in want.items():
        other = export._numpy({key: got[key]})[key]
        if value.dtype.kind == "f":
            np.testing.assert_allclose(other, value, atol=1e-4, rtol=1e-4)
        else:
            np.testing.assert_array_equal(other, value)
    if form == "saved_model":
        assert set(record) == {"saved_model"}
        return
    extra = record[form]
    network = module.network(model, info) if hasattr(module, "network") else export.Network(model)
    example = network.example or export.example_inputs(network.model)
    want = keras_outputs(network.model, example)
    got = consumer_outputs(path / extra["file"], form, network.model, example)
    largest = max(float(np.max(np.abs(want[key] - got[key]), initial=0.0)) for key in want)
    assert np.isfinite(largest) and largest <= extra["tolerance"], (largest, extra)
    assert extra["max_abs_difference"] <= extra["tolerance"]


def only_versions(root):
    return sorted(path.name for path in root.iterdir()) if root.is_dir() else []


def test_a_variable_changed_after_writing_is_refused(tmp_path, monkeypatch):
    """The SavedModel on disk no longer matches the model: the reload check refuses it."""
    module, config, model, info = built("anomaly_detection")
    archive_class = type(keras.export.ExportArchive())  # the backend's subclass
    write_out = archive_class.write_out

    def write_then_perturb(self, *args, **kwargs):
        write_out(self, *args, **kwargs)
        variable = model.trainable_variables[-1]  # the output layer's bias: every score moves
        variable.assign(variable + 1.0)

    monkeypatch.setattr(archive_class, "write_out", write_then_perturb)
    weights = [variable.numpy() for variable in model.trainable_variables]
    try:
        with pytest.raises(ExportCheckFailed, match="differs"):
            export_task("anomaly_detection", "saved_model", tmp_path)
    finally:
        for variable, value in zip(model.trainable_variables, weights):
            variable.assign(value)
    assert only_versions(tmp_path / "saved_models" / "anomaly_detection") == []


@pytest.mark.slow  # a TFLite conversion and its interpreter, 10 s on two cores
def test_a_tflite_file_with_uninitialized_weights_is_refused(tmp_path, monkeypatch):
    """The converter path that once wrote NaN (weights left as resource variables) is caught."""

    def from_concrete_functions(model):
        signature = [tf.TensorSpec(tensor.shape, tensor.dtype) for tensor in model.inputs]
        function = tf.function(lambda x: model(x, training=False)).get_concrete_function(*signature)
        return tf.lite.TFLiteConverter.from_concrete_functions([function], model)

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_keras_model", from_concrete_functions)
    with pytest.raises(ExportCheckFailed, match="model.tflite loaded with tf.lite.Interpreter differs"):
        export_task("anomaly_detection", "tflite", tmp_path)
    assert only_versions(tmp_path / "saved_models" / "anomaly_detection") == []


@pytest.mark.slow  # two ONNX conversions and onnxruntime, 10 s on two cores
def test_an_onnx_file_of_other_weights_is_refused(tmp_path, monkeypatch):
    import tf2onnx

    from_keras = tf2onnx.convert.from_keras

    def convert_a_perturbed_copy(model, **kwargs):
        copy = keras.models.clone_model(model)
        copy.set_weights([weight + 0.5 for weight in model.get_weights()])
        return from_keras(copy, **kwargs)

    monkeypatch.setattr(tf2onnx.convert, "from_keras", convert_a_perturbed_copy)
    with pytest.raises(ExportCheckFailed, match="model.onnx loaded with onnxruntime"):
        export_task("anomaly_detection", "onnx", tmp_path)
    assert only_versions(tmp_path / "saved_models" / "anomaly_detection") == []


@pytest.mark.slow  # the extractive summarizer's demo data and failed conversion: ~20 s on two shared cores
def test_an_op_tflite_lacks_is_named_and_nothing_is_published(tmp_path, capfd):
    # The extractive summarizer's bidirectional GRU needs TensorList ops TFLite builtins lack.
    with pytest.raises(UserError, match=r"tf\.TensorListReserve") as caught:
        export_task("summarization", "tflite", tmp_path, model="extractive_summarizer")
    assert not isinstance(caught.value, ExportCheckFailed)
    assert only_versions(tmp_path / "saved_models" / "summarization") == []
    assert "TensorListReserve" not in capfd.readouterr().err  # the MLIR dump stays out of the terminal


@pytest.mark.slow  # a GPT conversion to ONNX, 8 s on two cores
def test_converter_output_goes_to_the_runs_export_log_named_by_the_error(tmp_path, capfd, monkeypatch):
    """An MLIR dump, a UserWarning and an AttributeError from the converter: the terminal gets one
    line, which names the run's export.log, and the log holds the dump and the warning."""
    import tf2onnx

    def noisy_failure(model, **kwargs):
        print("module @jit_fn { func.func @main(%arg0: tensor<?x8xf32>) }")  # what converters dump
        print("E0000 absl: op not lowered", file=sys.stderr)
        warnings.warn("keras says something", UserWarning)
        raise AttributeError("'NoneType' object has no attribute 'name'")

    monkeypatch.setattr(export, "_fresh_process", reload_in_this_process)
    monkeypatch.setattr(tf2onnx.convert, "from_keras", noisy_failure)
    with pytest.raises(UserError) as caught:
        export_task("anomaly_detection", "onnx", tmp_path)
    log = tmp_path / "runs" / "anomaly_detection" / "run" / runner.EXPORT_LOG
    message = str(caught.value)
    assert message.startswith("cannot convert") and str(log) in message and "\n" not in message
    terminal = capfd.readouterr()
    assert "func.func" not in terminal.out + terminal.err and "keras says" not in terminal.out + terminal.err
    written = log.read_text()
    assert "func.func @main" in written and "op not lowered" in written and "keras says something" in written
    assert only_versions(tmp_path / "saved_models" / "anomaly_detection") == []


@pytest.mark.slow  # a GPT conversion to ONNX, 8 s on two cores
def test_gelu_converts_to_onnx_without_erfc(tmp_path):
    path, *_ = export_task("text_generation", "onnx", tmp_path)
    record = json.loads((path / "assets" / "check.json").read_text())["onnx"]
    assert "Erf" in record["note"]
    import onnx

    ops = {node.op_type for node in onnx.load(str(path / "model.onnx")).graph.node}
    assert "Erf" in ops and "Erfc" not in ops


def test_graph_property_offers_no_tflite():
    assert "tflite" not in offered("graph_property")
    module = importlib.import_module("tasks.graph_property")
    with pytest.raises(UserError, match="must be one of saved_model, onnx"):
        config_lib.build(module.Config, None, export_format="tflite")


def test_a_greyscale_classifier_reads_bmp_like_png(tmp_path, monkeypatch):
    """TensorFlow's BMP decoder refuses one channel; the serving decode goes through RGB instead."""
    from PIL import Image

    monkeypatch.setattr(export, "_fresh_process", reload_in_this_process)
    path, _, _, _ = export_task("classification", "saved_model", tmp_path)  # the demo digits: 1 channel
    grey = np.random.default_rng(0).integers(0, 256, size=(8, 8), dtype=np.uint8)
    encoded = {}
    for form in ("PNG", "BMP"):
        buffer = io.BytesIO()
        Image.fromarray(grey).convert("RGB" if form == "BMP" else "L").save(buffer, format=form)
        encoded[form] = buffer.getvalue()
    serve = export.load(path, quiet=True).signatures["serving_default"]
    answers = {form: serve(image_bytes=tf.constant([data]))["probabilities"].numpy() for form, data in encoded.items()}
    np.testing.assert_allclose(answers["BMP"], answers["PNG"], atol=1e-6)
