"""Export: `saved_models/<task>/<N>/`, the TF Serving layout, never half-written.

A task hands over its raw-input endpoints; this module writes them with `keras.export.ExportArchive`
into a temporary folder, adds `assets/` (label names, config), checks the result in a fresh
process with plain `tf.saved_model.load`, and only then renames it to the next version number.
An extra format (`model.onnx`, `model.tflite`) is loaded the way its consumer loads it
(`onnxruntime.InferenceSession`, `tf.lite.Interpreter`) and compared with the Keras network on a
fixed batch before it is published; `assets/check.json` holds each tolerance and the observed
difference. `load` is the one way `predict` opens an export.
"""

import contextlib
import dataclasses
import datetime
import functools
import io
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf

from tasks.core.errors import ExportCheckFailed
from tasks.core.errors import UserError
from tasks.core.runs import default_mode


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


def resolve(root, version=None):
    """The version folder `root/<version>` (the newest when None), or `root` itself if it is one."""
    root = pathlib.Path(root)
    if (root / "saved_model.pb").is_file():
        if version is not None and root.name != str(version):
            raise UserError(f"--version {version} does not apply to {root}, which is one version folder; "
                            "pass the export root with --model.")
        return root
    found = versions(root)
    if not found:
        raise UserError(f"no exported model under {root}; run `export` (or `train`) first.")
    if version is None:
        return root / str(found[-1])
    if version not in found:
        raise UserError(f"--version {version}: no such version under {root}; it holds "
                        f"{', '.join(map(str, found))}.")
    return root / str(version)


@dataclasses.dataclass
class Exported:
    """An export opened for `predict`: its folder, its `assets/` facts and, on first use, the model.

    Attributes:
        path: pathlib.Path. The version folder.
        info: dict. `assets/info.json` ({} without one).
        labels: list of str or None. `assets/labels.txt`.
    """

    path: pathlib.Path
    info: dict
    labels: list

    @functools.cached_property
    def model(self):
        """The `tf.saved_model.load` result, loaded once (tokenizer ops registered first)."""
        try:
            import tensorflow_text  # noqa: F401  (WordPiece and SentencePiece ops of text models)
        except ImportError:
            pass
        return tf.saved_model.load(str(self.path))

    @property
    def signatures(self):
        return self.model.signatures


def load(model_path, version=None, quiet=False):
    """Opens the export `predict` runs and prints which one on stderr, e.g.
    `model: saved_models/translation/3 (trained 2026-01-02 10:11, bleu 21.3400)`.

    Args:
        model_path: str or Path. An export root or one version folder.
        version: int or None. The version under the root (None: the newest).
        quiet: bool. No `model:` line. Defaults to False.
    """
    path = resolve(model_path, version)
    assets = path / "assets"
    info_file, labels_file = assets / "info.json", assets / "labels.txt"
    info = json.loads(info_file.read_text()) if info_file.is_file() else {}
    labels = labels_file.read_text().split("\n")[:-1] if labels_file.is_file() else None
    if not quiet:
        print(f"model: {describe(path)}", file=sys.stderr)
    return Exported(path, info, labels)


def describe(path):
    """`<path> (trained <date>, <headline metric> <value>)`: the date the SavedModel was written
    and the first metric of its `assets/metrics.json`, when it has one."""
    path = pathlib.Path(path)
    when = datetime.datetime.fromtimestamp((path / "saved_model.pb").stat().st_mtime)
    facts = [f"trained {when:%Y-%m-%d %H:%M}"]
    metrics_file = path / "assets" / "metrics.json"
    if metrics_file.is_file():
        metrics = json.loads(metrics_file.read_text()).get("metrics") or {}
        headline = next(((key, value) for key, value in metrics.items()
                         if isinstance(value, (int, float)) and not isinstance(value, bool)), None)
        if headline:
            facts.append(f"{headline[0]} {headline[1]:.4f}")
    else:
        facts.append("no metrics recorded")
    return f"{path} ({', '.join(facts)})"


# Suffixes of the files a task's predict reads: an INPUT ending in one names a file.
FILE_SUFFIXES = (".txt", ".csv", ".tsv", ".json", ".jsonl", ".text", ".pos", ".neg", ".smi", ".sdf",
                 ".jpg", ".jpeg", ".png", ".gif", ".bmp", ".webp", ".npy", ".npz")


def looks_like_path(text, slash=True):
    """An INPUT that names a file rather than holding text: one word with a `/` (when `slash`) or a
    file suffix (`sentences2.txt`, `images/cat.jpg`)."""
    if not text or any(char.isspace() for char in text):
        return False
    return (slash and ("/" in text or os.sep in text)) or pathlib.Path(text).suffix.lower() in FILE_SUFFIXES


def check_paths(inputs, looks=looks_like_path):
    """A `UserError` for the first INPUT that looks like a path (`looks`) and does not exist."""
    for item in inputs:
        if looks(item) and not pathlib.Path(item).exists():
            raise UserError(f"{item}: no such file or folder; check the path (text that only looks like "
                            "a file name needs a space in it).")


def upright_bytes(encoded):
    """Image bytes whose EXIF Orientation tag asks for a turn, re-encoded upright as PNG (lossless);
    any other bytes as given.

    The SavedModels decode with `tf.io.decode_image`, which ignores EXIF; predict turns a photo taken
    sideways first, as the readers do in training (`tasks.data.images.upright`).
    """
    from PIL import Image
    from PIL import ImageOps

    try:
        with Image.open(io.BytesIO(encoded)) as image:
            if image.getexif().get(0x0112, 1) in (None, 1):  # 0x0112: Orientation, 1 = upright
                return encoded
            turned = ImageOps.exif_transpose(image)
            turned = turned if turned.mode in ("L", "RGB", "RGBA") else turned.convert("RGB")
            buffer = io.BytesIO()
            turned.save(buffer, format="PNG")
            return buffer.getvalue()
    except Exception:  # noqa: BLE001 (not an image PIL reads: the signature's decode reports it)
        return encoded


# The image files `tf.io.decode_image` reads, as a folder INPUT of `predict` is scanned for them.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".bmp")


def image_files(inputs):
    """The INPUTs with each folder replaced by its image files (`IMAGE_SUFFIXES`, at any depth, in
    path order); a folder without any is a `UserError` naming it."""
    for name in inputs:
        folder = pathlib.Path(name)
        if not folder.is_dir():
            yield name
            continue
        found = sorted(path for path in folder.rglob("*") if path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES)
        if not found:
            raise UserError(f"{name}: the folder holds no image files ({', '.join(IMAGE_SUFFIXES)}).")
        yield from (str(path) for path in found)


def on_image_files(signature, inputs):
    """Yields `(name, encoded bytes, outputs)` of a bytes signature on each image file, turned
    upright when its EXIF says so (`upright_bytes`).

    A folder stands for its image files (`image_files`). A missing file or one the signature cannot
    decode is a `UserError` naming it.
    """
    for name in image_files(inputs):
        file = pathlib.Path(name)
        if not file.is_file():
            raise UserError(f"{name}: no such image file.")
        encoded = upright_bytes(file.read_bytes())
        try:
            outputs = signature(image_bytes=tf.constant([encoded]))
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError):
            raise UserError(f"{name}: cannot decode it as an image (JPEG, PNG, GIF or BMP).")
        yield name, encoded, outputs


def decode_image(encoded, channels):
    """One encoded image (JPEG, PNG, GIF or BMP) → (H, W, channels) uint8, graph-safe. A greyscale
    BMP goes through RGB (TensorFlow's BMP decoder gives 3 or 4 channels only), weighted as
    `tf.image.rgb_to_grayscale` weighs them and rounded."""
    if channels != 1:
        return tf.io.decode_image(encoded, channels=channels, expand_animations=False)

    def from_bmp():
        rgb = tf.cast(tf.io.decode_bmp(encoded, channels=3), tf.float32)
        return tf.cast(tf.round(tf.image.rgb_to_grayscale(rgb)), tf.uint8)

    def other():
        return tf.io.decode_image(encoded, channels=1, expand_animations=False)

    return tf.cond(tf.equal(tf.strings.substr(encoded, 0, 2), "BM"), from_bmp, other)


def class_outputs(probabilities, names):
    """A classifier's serving outputs from (B, C) probabilities and the (C,) class-name tensor:
    `probabilities`, `class_id` (B,) int32, `label` (B,) string and `score` (B,) (the top probability)."""
    class_id = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
    return {
        "probabilities": probabilities,
        "class_id": class_id,
        "label": tf.gather(names, class_id),
        "score": tf.reduce_max(probabilities, axis=-1),
    }


@dataclasses.dataclass
class Network:
    """The Keras network an ONNX or TFLite file holds, and the fixed batch it is checked on.

    Attributes:
        model: keras.Model. A functional network on tensors (no string decoding).
        example: list of arrays or None. One array per `model.inputs`, in order; None makes one
            with `example_inputs`.
    """

    model: object
    example: list = None


def write(task, model, endpoints, assets, export_dir="saved_models", extra_format="saved_model", network=None,
          log_file=None):
    """Writes, checks and publishes a SavedModel; returns its version folder.

    Nothing is published unless every format answers like the model: the SavedModel reloaded in a
    fresh process, an extra format loaded by its runtime. `assets/check.json` records, per format,
    the tolerance and the largest difference observed.

    Args:
        task: str. The task name (the folder under `export_dir`).
        model: keras.Model. The model the endpoints call (its variables are tracked).
        endpoints: list of Endpoint. The first is `serving_default`.
        assets: dict. File name -> text written into `assets/`.
        export_dir: str. The export root. Defaults to "saved_models".
        extra_format: str. `onnx` or `tflite` also writes `model.onnx` / `model.tflite` of the
            network beside the SavedModel. Defaults to "saved_model".
        network: Network or None. What the extra format holds. Defaults to `model` on a made-up batch.
        log_file: str, Path or None. Where what the writer and converters print goes (MLIR dumps,
            absl logs, warnings), this export's only; a failure's error names it. None: discarded.
    """
    log = pathlib.Path(log_file) if log_file else None
    if log is not None:
        log.write_text("")
    root = pathlib.Path(export_dir) / task
    root.mkdir(parents=True, exist_ok=True)
    staging = pathlib.Path(tempfile.mkdtemp(dir=root, prefix=".staging-"))
    os.chmod(staging, default_mode(directory=True))  # mkdtemp makes 0700: a server as another user could not read it
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        for endpoint in endpoints:
            archive.add_endpoint(endpoint.name, tf.function(endpoint.fn), endpoint.signature)
        with quiet_output(log):
            archive.write_out(str(staging), verbose=False)
        (staging / "assets").mkdir(exist_ok=True)
        for name, text in assets.items():
            (staging / "assets" / name).write_text(text)
        expected = {
            endpoint.name: _numpy(endpoint.fn(*[tf.constant(x) for x in endpoint.example]))
            for endpoint in endpoints
        }
        checks = {"saved_model": check(staging, endpoints, expected)}
        if extra_format in CONVERTERS:
            checks[extra_format] = convert(network or Network(model), extra_format, staging, log)
        (staging / "assets" / "check.json").write_text(json.dumps(checks, indent=2) + "\n")
        return _publish(staging, root)
    except UserError as error:
        if log is not None and log.is_file() and log.stat().st_size:  # the one line says where the rest is
            error.args = (f"{str(error).rstrip('.')}; the converter's output is in {log}.",)
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
        if log is not None and log.is_file() and not log.stat().st_size:
            log.unlink()


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


# The SavedModel's tolerance: the same graph on the same machine, so only float round-off.
SAVED_MODEL_ATOL = 1e-4
SAVED_MODEL_RTOL = 1e-4

# A fresh interpreter that knows nothing of keras or this package: what a server does. It prints
# one JSON line: the largest absolute difference over float outputs and the first output that
# differs beyond `atol + rtol * |want|` (or whose shape, strings or integers differ), if any.
_CHECK = r"""
import sys, json, numpy as np, tensorflow as tf
try:
    import tensorflow_text  # registers the ops of tokenizers, if the model has any
except ImportError:
    pass
path, arrays = sys.argv[1], np.load(sys.argv[2], allow_pickle=False)
spec, atol, rtol = json.loads(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
loaded = tf.saved_model.load(path)
largest, differs, compared = 0.0, None, 0
for name, inputs in spec.items():
    outputs = loaded.signatures[name](**{key: tf.constant(arrays[f"{name}/in/{key}"]) for key in inputs})
    for key, value in outputs.items():
        want, got = arrays[f"{name}/out/{key}"], value.numpy()
        got = got.astype(bytes) if got.dtype == object else got
        compared += 1
        if want.shape != got.shape:
            ok = False
        elif want.dtype.kind in "fc":
            if want.size:
                largest = max(largest, float(np.nanmax(np.abs(want.astype(np.float64) - got))))
            ok = np.allclose(want, got, atol=atol, rtol=rtol, equal_nan=True)
        else:
            ok = (want == got).all()
        if not ok and differs is None:
            differs = f"{name}/{key}"
print(json.dumps({"max_abs_difference": largest, "differs": differs, "compared": compared}))
"""


def _fresh_process(arguments):
    """Runs `_CHECK` with `arguments` in a new interpreter; returns the CompletedProcess."""
    return subprocess.run(
        [sys.executable, "-c", _CHECK, *arguments],
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""},
    )


def check(path, endpoints, expected):
    """Reloads `path` in a fresh process and compares every signature's outputs to `expected`.

    Returns the record `assets/check.json` keeps; raises `ExportCheckFailed` when an output differs.
    """
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
        result = _fresh_process(
            [str(path), str(npz), json.dumps(spec), str(SAVED_MODEL_ATOL), str(SAVED_MODEL_RTOL)])
    if result.returncode != 0:
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ExportCheckFailed(f"the exported SavedModel does not reload with tf.saved_model.load: {last}; "
                                "nothing was published.")
    found = json.loads(result.stdout.strip().splitlines()[-1])
    if found["differs"]:
        raise ExportCheckFailed(
            f"the reloaded SavedModel's output {found['differs']} differs from the model's (largest "
            f"|difference| {found['max_abs_difference']:.3g}, tolerance {SAVED_MODEL_ATOL:g} + "
            f"{SAVED_MODEL_RTOL:g}·|value|); nothing was published."
        )
    return {
        "loaded_with": "tf.saved_model.load in a fresh process",
        "inputs": "each signature's example batch",
        "outputs_compared": found["compared"],
        "atol": SAVED_MODEL_ATOL,
        "rtol": SAVED_MODEL_RTOL,
        "max_abs_difference": found["max_abs_difference"],
    }


# === Other formats ===
# ONNX and TFLite hold the network on its tensor input (e.g. pixels at the training size); the
# string decoding and resizing of the raw-input signatures stay in the SavedModel.

# A converted graph reorders float arithmetic (fused kernels, other accumulation orders), so its
# outputs may differ by `atol + rtol * max|Keras output|`, elementwise.
CONVERTED_ATOL = 1e-4
CONVERTED_RTOL = 1e-3


def example_inputs(model, batch_size=2, length=7, seed=0):
    """A fixed batch for `model.inputs`: floats uniform in [0, 1), integers in [0, the smallest
    Embedding's input_dim) so every id is valid; unknown non-batch sizes become `length`."""
    input_dims = [layer.input_dim for layer in model._flatten_layers() if isinstance(layer, keras.layers.Embedding)]
    high = min(input_dims) if input_dims else 2
    rng = np.random.default_rng(seed)
    batch = []
    for tensor in model.inputs:
        shape = [batch_size] + [length if size is None else size for size in tensor.shape[1:]]
        dtype = np.dtype(tensor.dtype)
        if np.issubdtype(dtype, np.integer):
            batch.append(rng.integers(0, high, size=shape).astype(dtype))
        else:
            batch.append(rng.uniform(0.0, 1.0, size=shape).astype(dtype))
    return batch


def _named_outputs(outputs):
    """Keras outputs as `{name: array}`: a dict's own keys, else `output_<i>` (TFLite's names)."""
    if isinstance(outputs, dict):
        return {key: np.asarray(keras.ops.convert_to_numpy(value)) for key, value in outputs.items()}
    flat = outputs if isinstance(outputs, (list, tuple)) else [outputs]
    return {f"output_{index}": np.asarray(keras.ops.convert_to_numpy(value)) for index, value in enumerate(flat)}


def convert(network, extra_format, folder, log_file=None):
    """Writes `folder/model.<format>`, loads it with its runtime, runs the fixed batch and compares
    it with the Keras network; returns the record `assets/check.json` keeps. What the converter
    prints goes to `log_file` (None: discarded)."""
    model = network.model
    if not getattr(model, "inputs", None):
        raise UserError(f"--format {extra_format}: {model.name} is not a functional network with tensor inputs; "
                        "export the SavedModel alone.")
    example = network.example or example_inputs(model)
    want = _named_outputs(model(example if len(example) > 1 else example[0], training=False))
    path = pathlib.Path(folder) / f"model.{extra_format}"
    to_file, run, runtime = CONVERTERS[extra_format]
    note = to_file(model, path, log_file)
    got = run(path, model, example)
    if sorted(got) != sorted(want) and len(got) == len(want):  # unnamed outputs: in the network's order
        got = dict(zip(want, got.values()))
    scale = max((float(np.abs(value).max()) for value in want.values() if value.size), default=0.0)
    tolerance = CONVERTED_ATOL + CONVERTED_RTOL * scale
    largest, differs = 0.0, []
    for key, value in want.items():
        other = got.get(key)
        if other is None or np.shape(other) != value.shape:
            differs.append(key)
            continue
        difference = float(np.max(np.abs(value.astype(np.float64) - other), initial=0.0))
        if not np.isfinite(difference) or difference > tolerance:
            differs.append(key)
        largest = max(largest, difference) if np.isfinite(difference) else float("inf")
    if differs:
        raise ExportCheckFailed(
            f"{path.name} loaded with {runtime} differs from the Keras network on output {differs[0]} "
            f"(largest |difference| {largest:.3g}, tolerance {tolerance:.3g}); nothing was published."
        )
    record = {
        "file": path.name,
        "loaded_with": runtime,
        "inputs": {tensor.name: list(array.shape) for tensor, array in zip(model.inputs, example)},
        "atol": CONVERTED_ATOL,
        "rtol_of_largest_output": CONVERTED_RTOL,
        "largest_output": scale,
        "tolerance": tolerance,
        "max_abs_difference": largest,
    }
    if note:
        record["note"] = note
    return record


@contextlib.contextmanager
def quiet_output(log_file=None):
    """Sends what converters print (MLIR dumps, absl logs, `Saved artifact` lines, UserWarnings)
    to a scratch file, so a failure shows one `error:` line; yields a list that holds the text after,
    which is also appended to `log_file` when given."""
    captured = []
    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+", errors="replace") as sink, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        saved = [os.dup(1), os.dup(2)]
        python_streams = sys.stdout, sys.stderr
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        sys.stdout = sys.stderr = sink
        try:
            yield captured
        finally:
            sink.flush()
            sys.stdout, sys.stderr = python_streams
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for descriptor in saved:
                os.close(descriptor)
            sink.seek(0)
            text = sink.read() + "".join(warnings.formatwarning(w.message, w.category, w.filename, w.lineno)
                                         for w in caught)
            captured.append(text)
            if log_file is not None and text:
                with open(log_file, "a", errors="replace") as log:
                    log.write(text)


@contextlib.contextmanager
def _gelu_with_erf(used):
    """Exact GELU written as 0.5·x·(1 + erf(x/√2)) while tf2onnx traces: TensorFlow writes it with
    Erfc, which ONNX lacks, and Erf it has (the same function, no approximation)."""
    original = tf.nn.gelu

    def gelu(features, approximate=False, name=None):
        if approximate:
            return original(features, approximate=True, name=name)
        used.append(True)
        x = tf.convert_to_tensor(features)
        return 0.5 * x * (1.0 + tf.math.erf(x * tf.cast(0.7071067811865476, x.dtype)))

    tf.nn.gelu = gelu
    try:
        yield
    finally:
        tf.nn.gelu = original


def _first_line(error):
    return (str(error).strip().splitlines() or [type(error).__name__])[0].strip()


def to_onnx(model, path, log_file=None):
    """The network as ONNX (tf2onnx, opset 17); returns a note on what was changed, or None."""
    try:
        import onnxruntime  # noqa: F401  (the check loads the file with it)
        import tf2onnx
    except ImportError:
        raise UserError("--format onnx needs the onnx extra: pip install -e '.[onnx]'")
    signature = [tf.TensorSpec(tensor.shape, tensor.dtype, name=tensor.name) for tensor in model.inputs]
    gelu = []
    try:
        with quiet_output(log_file) as log, _gelu_with_erf(gelu):
            # from_keras freezes the variables; from_function would leave captured ones as inputs.
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=signature, opset=17)
    except Exception as error:
        raise UserError(f"cannot convert {model.name} to ONNX: {_first_line(error)}")
    unsupported = sorted(set(re.findall(r"Tensorflow op \[[^\]]*?: (\w+)\] is not supported", log[0])))
    if unsupported:
        raise UserError(f"cannot convert {model.name} to ONNX: tf2onnx has no ONNX form of the op(s) "
                        f"{', '.join(unsupported)}; export without --format onnx, or try --format tflite.")
    pathlib.Path(path).write_bytes(proto.SerializeToString())
    return "GELU written with Erf instead of Erfc (the same function; ONNX has no Erfc)" if gelu else None


def run_onnx(path, model, example):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [tensor.name for tensor in model.inputs]
    feeds = {item.name: array for item, array in zip(session.get_inputs(), example)}
    if set(names) == {item.name for item in session.get_inputs()}:
        feeds = dict(zip(names, example))
    outputs = session.run(None, feeds)
    return {item.name: value for item, value in zip(session.get_outputs(), outputs)}


def to_tflite(model, path, log_file=None):
    """The network as a TFLite flatbuffer, TFLite builtin ops only, weights as constants."""
    # from_keras_model freezes the variables into the flatbuffer; from_concrete_functions kept them
    # as resource variables without initial values, and the file computed NaN.
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    try:
        with quiet_output(log_file):
            flatbuffer = converter.convert()
    except Exception as error:
        text = str(error)
        ops = sorted(set(re.findall(r"'(tf\.\w+)' op", text)))
        reason = f"TFLite builtins lack the op(s) {', '.join(ops)}" if ops else _first_line(error)
        raise UserError(f"cannot convert {model.name} to TFLite: {reason}; export without --format tflite.")
    pathlib.Path(path).write_bytes(flatbuffer)
    return None


def run_tflite(path, model, example):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tf.lite.Interpreter's deprecation notice
        interpreter = tf.lite.Interpreter(model_path=str(path))
    runner = interpreter.get_signature_runner()
    names = [tensor.name for tensor in model.inputs]
    if set(names) != set(runner.get_input_details()):  # inputs named by the converter: in tensor order
        details = runner.get_input_details()
        names = sorted(details, key=lambda name: details[name]["index"])
    outputs = runner(**dict(zip(names, example)))
    order = sorted(outputs, key=lambda key: (len(key), key))  # output_2 before output_10
    return {key: outputs[key] for key in order}


# format -> (write the file, run it, the runtime's name)
CONVERTERS = {
    "onnx": (to_onnx, run_onnx, "onnxruntime.InferenceSession"),
    "tflite": (to_tflite, run_tflite, "tf.lite.Interpreter"),
}
