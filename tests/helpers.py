"""Helpers shared by the tests: run a task's CLI in a child process or in process, check one-line
errors, and the model checks every builder test repeats (a `.keras` round trip, a classifier's
predict / fit / config contract)."""

import os
import subprocess
import sys
import types

import keras
import numpy as np
import tensorflow as tf

from tests.conftest import REPO


def run_cli(task, *args, cwd, timeout=900):
    """Runs `python -m tasks.<task> ARGS` in `cwd`; returns the CompletedProcess."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run(
        [sys.executable, "-m", f"tasks.{task}", *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout,
    )


def run_in_process(module, capsys, workdir, *args):
    """`python -m tasks.<module> ARGS` run by the same `cli.main` in this process, in `workdir`.

    The CLI's own code path without a TensorFlow start-up per call; returns what `run_cli` does
    (returncode, stdout, stderr). An uncaught exception propagates, failing the test, as a traceback
    from the real CLI would.
    """
    from tasks.core import cli

    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        code = cli.main(module, [str(arg) for arg in args]) or 0
    except SystemExit as exit:
        code = exit.code
    finally:
        os.chdir(cwd)
    captured = capsys.readouterr()
    return types.SimpleNamespace(returncode=code, stdout=captured.out, stderr=captured.err)


def assert_one_line_error(result, *words, code=2):
    """A user mistake: exit `code`, one `error:` line on stderr naming `words`, no traceback."""
    assert result.returncode == code, result.stderr[-2000:]
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0], lines[0]


# === Model checks ===


def keras_round_trip(model, inputs, tmp_path, atol=1e-5, rtol=1e-5):
    """Saves `model` as `.keras`, loads it back, asserts the same outputs on `inputs` (direct
    calls, every output of a nested structure); returns the loaded model."""
    path = tmp_path / f"{model.name}.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    want, got = model(inputs, training=False), restored(inputs, training=False)
    for expected, actual in zip(tf.nest.flatten(want), tf.nest.flatten(got), strict=True):
        np.testing.assert_allclose(keras.ops.convert_to_numpy(actual), keras.ops.convert_to_numpy(expected),
                                   rtol=rtol, atol=atol)
    return restored


def check_class_outputs(outputs, batch_size, num_classes):
    outputs = np.asarray(outputs)
    assert outputs.shape == (batch_size, num_classes)
    assert outputs.dtype == np.float32
    assert np.all(np.isfinite(outputs))


def run_classifier_test(model, x, y):
    """An image classifier's contract: predict on arrays and on tf.data, one fit step that reaches
    the first layer, and a get_config/from_config round trip."""
    num_classes = model.output_shape[-1]
    outputs = model.predict(x, verbose=0)
    check_class_outputs(outputs, len(x), num_classes)
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(len(x))
    np.testing.assert_allclose(model.predict(dataset, verbose=0), outputs, rtol=1e-5, atol=1e-5)

    # One eager step: tracing the train step of a 400-layer net costs ~10 s and tests Keras,
    # not the builder; the graph-mode forward pass is covered by `predict` above.
    model.compile(optimizer=keras.optimizers.SGD(1e-3), loss="sparse_categorical_crossentropy", run_eagerly=True)
    stem_kernel = np.array(model.trainable_weights[0])
    history = model.fit(x, y, batch_size=len(x), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][-1])
    # The gradient reaches the first layer: the graph is connected end to end.
    assert not np.array_equal(np.array(model.trainable_weights[0]), stem_kernel)

    restored = keras.Model.from_config(model.get_config())
    assert [layer.name for layer in restored.layers] == [layer.name for layer in model.layers]
    assert restored.count_params() == model.count_params()
