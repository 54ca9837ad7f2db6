"""Export: `saved_models/<task>/<N>/`, the TF Serving layout, never half-written.

A task hands over its raw-input endpoints; this module writes them with `keras.export.ExportArchive`
into a temporary folder, adds `assets/` (label names, config), checks the result in a fresh
process with plain `tf.saved_model.load`, and only then renames it to the next version number.
"""

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf

from tasks.core.errors import UserError


@dataclasses.dataclass
class Endpoint:
    """One signature: `fn(*inputs)` returning a dict of named outputs.

    Attributes:
        name: str. The signature key; the first endpoint is also `serving_default`.
        fn: callable. A traceable function of the inputs.
        signature: list of tf.TensorSpec. Each spec's `name` is the signature's input name.
        example: list of arrays. Inputs the export is checked on.
    """

    name: str
    fn: object
    signature: list
    example: list


def versions(root):
    """The integer version folders under `root`, ascending."""
    root = pathlib.Path(root)
    if not root.is_dir():
        return []
    return sorted(int(path.name) for path in root.iterdir() if path.name.isdigit())


def latest(root):
    """The newest version folder of an export root (or `root` itself if it is a version)."""
    root = pathlib.Path(root)
    if (root / "saved_model.pb").is_file():
        return root
    found = versions(root)
    if not found:
        raise UserError(f"no exported model under {root}; run `export` (or `train`) first.")
    return root / str(found[-1])


def on_image_files(signature, inputs):
    """Yields `(name, encoded bytes, outputs)` of a bytes signature on each image file.

    A missing file or one the signature cannot decode is a `UserError` naming it.
    """
    for name in inputs:
        file = pathlib.Path(name)
        if not file.is_file():
            raise UserError(f"{name}: no such image file.")
        encoded = file.read_bytes()
        try:
            outputs = signature(image_bytes=tf.constant([encoded]))
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
            raise UserError(f"{name}: cannot decode it as an image (JPEG, PNG, GIF or BMP).")
        yield name, encoded, outputs


def write(task, model, endpoints, assets, export_dir="saved_models", extra_format="saved_model"):
    """Writes, checks and publishes a SavedModel; returns its version folder.

    Args:
        task: str. The task name (the folder under `export_dir`).
        model: keras.Model. The model the endpoints call (its variables are tracked).
        endpoints: list of Endpoint. The first is `serving_default`.
        assets: dict. File name -> text written into `assets/`.
        export_dir: str. The export root. Defaults to "saved_models".
        extra_format: str. `onnx` or `tflite` also writes `model.onnx` / `model.tflite` of the
            network beside the SavedModel. Defaults to "saved_model".
    """
    root = pathlib.Path(export_dir) / task
    root.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        for endpoint in endpoints:
            archive.add_endpoint(endpoint.name, tf.function(endpoint.fn), endpoint.signature)
        archive.write_out(str(staging), verbose=False)
        (staging / "assets").mkdir(exist_ok=True)
        for name, text in assets.items():
            (staging / "assets" / name).write_text(text)
        expected = {
            endpoint.name: _numpy(endpoint.fn(*[tf.constant(x) for x in endpoint.example]))
            for endpoint in endpoints
        }
        check(staging, endpoints, expected)
        if extra_format == "onnx":
            to_onnx(model, staging / "model.onnx")
        elif extra_format == "tflite":
            to_tflite(model, staging / "model.tflite")
        return _publish(staging, root)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _publish(staging, root):
    """Renames `staging` to the next free integer version (atomic on one filesystem)."""
    while True:
        target = root / str((versions(root) or [0])[-1] + 1)
        try:
            os.rename(staging, target)
            return target
        except OSError:
            if not target.exists():
                raise


def _numpy(outputs):
    # String tensors come back as object arrays; fixed-width bytes save without pickle.
    arrays = {key: np.asarray(value) for key, value in outputs.items()}
    return {key: value.astype(bytes) if value.dtype == object else value for key, value in arrays.items()}


# A fresh interpreter that knows nothing of keras or this package: what a server does.
_CHECK = r"""
import sys, json, numpy as np, tensorflow as tf
try:
    import tensorflow_text  # registers the ops of tokenizers, if the model has any
except ImportError:
    pass
path, arrays = sys.argv[1], np.load(sys.argv[2], allow_pickle=False)
spec = json.loads(sys.argv[3])
loaded = tf.saved_model.load(path)
for name, inputs in spec.items():
    outputs = loaded.signatures[name](**{key: tf.constant(arrays[f"{name}/in/{key}"]) for key in inputs})
    for key, value in outputs.items():
        want, got = arrays[f"{name}/out/{key}"], value.numpy()
        got = got.astype(bytes) if got.dtype == object else got
        if want.dtype.kind in "fc":
            ok = want.shape == got.shape and np.allclose(want, got, atol=1e-4, rtol=1e-4)
        else:
            ok = want.shape == got.shape and (want == got).all()
        if not ok:
            sys.exit(f"signature {name} output {key} differs after reload")
print("ok")
"""


def check(path, endpoints, expected):
    """Reloads `path` in a fresh process and compares every signature's outputs to `expected`."""
    arrays, spec = {}, {}
    for endpoint in endpoints:
        names = [tensor_spec.name for tensor_spec in endpoint.signature]
        spec[endpoint.name] = names
        for key, value in zip(names, endpoint.example):
            value = np.asarray(value)
            arrays[f"{endpoint.name}/in/{key}"] = value.astype(bytes) if value.dtype == object else value
        for key, value in expected[endpoint.name].items():
            arrays[f"{endpoint.name}/out/{key}"] = value
    with tempfile.TemporaryDirectory() as scratch:
        npz = pathlib.Path(scratch) / "check.npz"
        np.savez(npz, **arrays)
        result = subprocess.run(
            [sys.executable, "-c", _CHECK, str(path), str(npz), json.dumps(spec)],
            capture_output=True,
            text=True,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""},
        )
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(f"the exported SavedModel failed its reload check: {last}")


# === Other formats ===
# ONNX and TFLite hold the network on its tensor input (e.g. pixels at the training size); the
# string decoding and resizing of the raw-input signatures stay in the SavedModel.


def _model_signature(model):
    return [tf.TensorSpec(tensor.shape, tensor.dtype, name=tensor.name) for tensor in model.inputs]


def _model_function(model):
    return tf.function(lambda *inputs: model(list(inputs) if len(inputs) > 1 else inputs[0], training=False))


def to_onnx(model, path):
    """The network as ONNX (tf2onnx), if the `onnx` extra is installed."""
    try:
        import tf2onnx
    except ImportError:
        raise UserError("--export-format onnx needs the onnx extra: pip install -e '.[onnx]'")
    try:
        # from_keras freezes the variables; from_function would leave captured ones as inputs.
        proto, _ = tf2onnx.convert.from_keras(model, input_signature=_model_signature(model), opset=17)
    except Exception as error:
        raise UserError(f"cannot convert {model.name} to ONNX: {str(error).strip().splitlines()[0]}")
    pathlib.Path(path).write_bytes(proto.SerializeToString())
    return path


def to_tflite(model, path):
    """The network as a TFLite flatbuffer, TFLite builtin ops only."""
    function = _model_function(model).get_concrete_function(*_model_signature(model))
    converter = tf.lite.TFLiteConverter.from_concrete_functions([function], model)
    try:
        flatbuffer = converter.convert()
    except Exception as error:
        lines = [line for line in str(error).splitlines() if " op " in line] or str(error).splitlines()
        raise UserError(f"cannot convert {model.name} to TFLite: {lines[0].strip()}")
    pathlib.Path(path).write_bytes(flatbuffer)
    return path
