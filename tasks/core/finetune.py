"""Starting points, written once: pretrained backbones, staged fine-tuning, `--init-from`.

    @dataclasses.dataclass
    class Config(TrainConfig, finetune.BackboneConfig): ...

    network = finetune.image_classifier(config, input_shape, num_classes)   # --backbone, --weights
    network = finetune.image_classifier(Config(backbone="hub:DIR"), ...)     # a KerasHub preset
    training.fit(...)   # adds `StagedFinetune` and applies `--init-from` (see `callbacks`, `init_from`)

Detection and segmentation take a registry classifier or a pretrained backbone under the same
`--backbone` (`backbone_option`, `check_backbone`); a pretrained one enters their heads as a
`feature_extractor` behind its own preprocessing.

Fine-tuning the field's way: for `--freeze-backbone-epochs N` epochs the backbone is frozen
(`trainable=False`, which in Keras 3 also runs its batch norm in inference mode, so neither its
weights nor its moving statistics change), then the whole network trains, the backbone at
`--backbone-learning-rate-factor` times the learning rate.

`--backbone hub:<preset or directory>` takes a KerasHub image backbone through `from_preset`, with
its `ImageConverter` as the preprocessing inside the model. A directory loads offline; a preset
name or `kaggle://` / `hf://` handle downloads, and fails in seconds without a connection.
"""

import dataclasses
import os
import pathlib
import socket
import threading

import keras
import numpy as np

from applications import backbones
from tasks.core.config import option
from tasks.core.errors import UserError

# Where keras.applications downloads ImageNet weights from, and how long a probe of it may take.
DOWNLOAD_HOST = ("storage.googleapis.com", 443)
PROBE_SECONDS = 3.0


@dataclasses.dataclass
class BackboneConfig:
    """The fields of a task that can start from a pretrained image backbone."""

    backbone: str = option(
        "none",
        f"A pretrained image backbone in place of --model: none, {', '.join(backbones.names())}, or "
        "hub:<KerasHub preset or directory>.",
    )
    weights: str = option(
        "imagenet",
        f"The pretrained backbone's weights ({', '.join(backbones.names())}): imagenet (keras.applications "
        "download), the path of a keras.applications weights file, or none (random).",
    )
    freeze_backbone_epochs: int = option(
        1, "Epochs with the pretrained backbone frozen (batch norm in inference mode) before it trains.", minimum=0
    )
    backbone_learning_rate_factor: float = option(
        0.1, "The pretrained backbone's learning rate as a share of --learning-rate once it trains.", minimum=0.0
    )


def pretrained(config):
    """True when the config asks for a pretrained backbone with weights (so staged fine-tuning applies)."""
    name = getattr(config, "backbone", "none")
    return (name in backbones.names() or is_hub(name)) and getattr(config, "weights", "none") != "none"


def backbone_option(default, role):
    """The `backbone` field of a task whose networks take a registry classifier or a pretrained
    backbone: one flag, its help listing both (`role`: what the backbone is to the network)."""
    import applications

    return option(
        default,
        f"{role}: a registry classifier ({', '.join(applications.names('classifier'))}) or an ImageNet "
        f"backbone ({', '.join(backbones.names())}; see --weights).",
    )


def check_backbone(config):
    """True when `--backbone` names a pretrained backbone, False for a registry classifier (or none:
    "" / "none"); an unknown name, or a weights file beside a registry classifier, is a `UserError`."""
    import applications

    name = config.backbone
    if name in backbones.names():
        return True
    if config.weights not in ("imagenet", "none"):
        raise UserError(
            f"--weights {config.weights}: a weights file fits the pretrained backbones "
            f"({', '.join(backbones.names())}), not --backbone {name}; start a registry network from a run "
            "with --init-from."
        )
    if name in ("", "none") or (name in applications.names() and applications.kind_of(name) == "classifier"):
        return False
    raise UserError(
        f"--backbone {name}: neither a registry classifier ({', '.join(applications.names('classifier'))}) "
        f"nor a pretrained backbone ({', '.join(backbones.names())})."
    )


# === Weights ===


def _cached(file_name):
    # keras.utils.get_file's cache: $KERAS_HOME (default ~/.keras), or /tmp/.keras when unwritable.
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    for root in (home, os.path.join("/tmp", ".keras")):
        if os.path.isfile(os.path.join(root, "models", file_name)):
            return True
    return False


def can_download(host=None, seconds=None):
    """True when a TCP connection to the weights host opens within `seconds` (DNS included)."""
    host, seconds = host or DOWNLOAD_HOST, PROBE_SECONDS if seconds is None else seconds
    result = []

    def probe():
        try:
            socket.create_connection(host, timeout=seconds).close()
            result.append(True)
        except OSError:
            result.append(False)

    thread = threading.Thread(target=probe, daemon=True)  # getaddrinfo itself has no timeout
    thread.start()
    thread.join(seconds)
    return bool(result and result[0])


def resolve_weights(config, input_shape):
    """`--weights` as keras.applications takes it: None, "imagenet" or a file path; a `UserError`
    in seconds when `imagenet` cannot be downloaded or the path is not a file."""
    if config.weights == "none":
        return None
    file_name = backbones.weights_file(config.backbone, backbones.backbone_shape(input_shape))
    if config.weights == "imagenet":
        if _cached(file_name) or can_download():
            return "imagenet"
        raise UserError(
            f"--weights imagenet: cannot download {file_name} for --backbone {config.backbone} "
            f"(no connection to {DOWNLOAD_HOST[0]}); pass that file as --weights PATH."
        )
    path = pathlib.Path(config.weights).expanduser()
    if not path.is_file():
        raise UserError(
            f"--weights {config.weights}: no such file; pass imagenet, none or the path of a "
            f"keras.applications weights file such as {file_name}."
        )
    return str(path)


def build(config, input_shape, builder, *args, **kwargs):
    """`builder(*args, weights=..., **kwargs)` from `applications.backbones`, with a failed download
    or a weights file that does not fit the backbone as a one-line `UserError`."""
    weights = resolve_weights(config, input_shape)
    try:
        return builder(*args, weights=weights, **kwargs)
    except ValueError as error:
        if weights is None:
            raise
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"--weights {config.weights} does not fit --backbone {config.backbone}: {first}") from None
    except Exception as error:  # keras.utils.get_file: "URL fetch failure on ..."
        if weights != "imagenet":
            raise
        file_name = backbones.weights_file(config.backbone, backbones.backbone_shape(input_shape))
        raise UserError(
            f"--weights imagenet: downloading {file_name} failed ({type(error).__name__}); "
            "pass that file as --weights PATH."
        ) from None


def image_classifier(config, input_shape, num_classes, dropout_rate=0.0):
    """The config's backbone with its preprocessing and a dense head: raw pixels → logits."""
    if is_hub(config.backbone):
        from applications import hub

        backbone, converter = hub_image_backbone(config)
        try:
            return hub.image_classifier(backbone, converter, tuple(input_shape), num_classes, dropout_rate=dropout_rate)
        except ValueError as error:
            raise UserError(f"--backbone {config.backbone}: {first_line(error)}") from None
    if config.backbone not in backbones.names():
        raise UserError(
            f"--backbone {config.backbone}: not a pretrained backbone; pass none, {', '.join(backbones.names())} "
            "or hub:<KerasHub preset or directory>."
        )
    return build(
        config, input_shape, backbones.image_classifier, config.backbone, tuple(input_shape), num_classes,
        dropout_rate=dropout_rate,
    )


def feature_extractor(config, input_shape, levels=5):
    """The config's backbone as multi-scale features (strides 2 … 2**levels) of preprocessed pixels."""
    shape = backbones.backbone_shape(input_shape)
    return build(config, input_shape, backbones.feature_extractor, config.backbone, shape, levels=levels)


# === KerasHub presets ===

HUB_PREFIX = "hub:"
# The host a preset handle downloads from, by scheme (a bare preset name is a Kaggle handle).
HUB_HOSTS = {"kaggle": ("api.kaggle.com", 443), "hf": ("huggingface.co", 443), "modelscope": ("modelscope.cn", 443)}


def is_hub(name):
    """True for a `hub:<preset or directory>` backbone or model."""
    return str(name).startswith(HUB_PREFIX)


def first_line(error):
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def hub_preset(value, flag="--backbone"):
    """The preset `keras_hub` loads for `hub:<preset or directory>`: a directory's path, or a name or
    handle when a connection to its host opens in seconds; anything else is a one-line `UserError`."""
    preset = value[len(HUB_PREFIX):]
    if not preset:
        raise UserError(f"{flag} {value}: name a KerasHub preset or a preset directory after hub:.")
    scheme = preset.split("://", 1)[0] if "://" in preset else ""
    path = pathlib.Path(preset).expanduser()
    if not scheme:
        if path.is_dir():
            if not (path / "config.json").is_file():
                raise UserError(
                    f"{flag} {value}: {preset} holds no config.json; pass a directory written by save_to_preset."
                )
            return str(path)
        if path.exists() or "/" in preset or preset.startswith((".", "~")):
            raise UserError(f"{flag} {value}: no such preset directory; pass a directory written by save_to_preset.")
    host = HUB_HOSTS.get(scheme or "kaggle")
    if host is None:
        schemes = ", ".join(f"{name}://" for name in HUB_HOSTS)
        raise UserError(f"{flag} {value}: unknown preset scheme {scheme}://; use {schemes}, a preset name or a directory.")
    if not can_download(host):
        raise UserError(
            f"{flag} {value}: cannot download the preset (no connection to {host[0]}); "
            "pass a local preset directory as hub:DIR (written by save_to_preset)."
        )
    return preset


def hub_image_backbone(config):
    """`(backbone, image converter or None)` of the config's `hub:` preset, the backbone named
    `BACKBONE`; `--weights none` keeps the preset's architecture with random weights."""
    if config.weights not in ("imagenet", "none"):
        raise UserError(
            f"--weights {config.weights}: a KerasHub preset brings its own weights; pass imagenet (the "
            "preset's) or none (random)."
        )
    preset = hub_preset(config.backbone)
    import keras_hub

    try:
        backbone = keras_hub.models.Backbone.from_preset(
            preset, load_weights=config.weights != "none", name=backbones.BACKBONE
        )
    except Exception as error:  # a bad config.json, a failed download, weights that do not fit
        raise UserError(f"--backbone {config.backbone}: cannot load the preset ({first_line(error)}).") from None
    local = pathlib.Path(preset).is_dir()
    if local and not (pathlib.Path(preset) / "image_converter.json").is_file():
        return backbone, None  # no converter saved: pixels scaled to [0, 1]
    try:
        return backbone, keras_hub.layers.ImageConverter.from_preset(preset)
    except Exception as error:
        if not local:
            return backbone, None  # a backbone-only preset
        raise UserError(f"--backbone {config.backbone}: cannot load its image_converter.json ({first_line(error)}).") from None


# === Staged fine-tuning ===


def find_backbone(model):
    """The nested model named `applications.backbones.BACKBONE` inside `model`, or None."""
    for layer in model.layers:
        if layer.name == backbones.BACKBONE:
            return layer
        if hasattr(layer, "layers"):
            found = find_backbone(layer)
            if found is not None:
                return found
    return None


class StagedFinetune(keras.callbacks.Callback):
    """Trains the head alone for `freeze_epochs`, then everything, the backbone at a lower rate.

    While frozen the backbone is `trainable=False`: no gradient reaches it, and its batch norm
    runs in inference mode (Keras 3 ties the two), so its moving statistics stay the pretrained
    ones. The train function is retraced when the backbone's state changes. The backbone's
    learning rate is `factor` times the optimizer's, applied per variable in the optimizer's
    `update_step` (any Keras optimizer; decoupled weight decay keeps the full rate). A resumed
    run sets the state of the epoch it resumes at.

    Args:
        backbone: keras.Model. The nested backbone.
        freeze_epochs: int. Epochs with the backbone frozen.
        factor: float. The backbone's share of the learning rate afterwards.
    """

    def __init__(self, backbone, freeze_epochs, factor):
        super().__init__()
        self.backbone = backbone
        self.freeze_epochs = int(freeze_epochs)
        self.factor = float(factor)

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        if not optimizer.built:
            # Slots for every variable, the backbone's too, before any of them is frozen.
            self.backbone.trainable = True
            optimizer.build(self.model.trainable_variables)
        if self.factor != 1.0 and not getattr(optimizer, "_backbone_rate_scaled", False):
            keys = {optimizer._var_key(variable) for variable in self.backbone.trainable_weights}
            update_step, factor = optimizer.update_step, self.factor

            def scaled_update_step(gradient, variable, learning_rate):
                if optimizer._var_key(variable) in keys:
                    learning_rate = learning_rate * factor
                return update_step(gradient, variable, learning_rate)

            optimizer.update_step = scaled_update_step  # per instance: the class (and its config) stays
            optimizer._backbone_rate_scaled = True

    def on_epoch_begin(self, epoch, logs=None):
        trainable = epoch >= self.freeze_epochs
        if self.backbone.trainable != trainable or self.model.train_function is None:
            self.backbone.trainable = trainable
            self.model.make_train_function(force=True)


def callbacks(model, config):
    """`[StagedFinetune]` when the config asks for a pretrained backbone the model holds, else `[]`."""
    if not pretrained(config):
        return []
    backbone = find_backbone(model)
    if backbone is None:
        return []
    return [StagedFinetune(backbone, config.freeze_backbone_epochs, config.backbone_learning_rate_factor)]


# === --init-from ===


def _leaf_layers(model):
    for layer in model.layers:
        if hasattr(layer, "layers") and layer.layers:
            yield from _leaf_layers(layer)
        elif layer.weights:
            yield layer


def source_arrays(source):
    """`{layer name: [arrays of each layer of that name, in order]}` of a run folder, a `.keras`
    model or a keras.applications-style `.h5` weights file."""
    path = pathlib.Path(source).expanduser()
    if path.is_dir():
        if not (path / "model.keras").is_file():
            raise UserError(f"--init-from {source}: the folder holds no model.keras; pass a finished run folder.")
        path = path / "model.keras"
    if not path.is_file():
        raise UserError(f"--init-from {source}: no such file or folder; pass a run folder, a .keras file or an .h5 weights file.")
    found = {}
    if path.suffix == ".keras":
        import applications  # noqa: F401  (registers the custom layers a saved model may hold)

        try:
            model = keras.saving.load_model(path, compile=False, safe_mode=False)
        except Exception as error:
            raise UserError(f"--init-from {source}: cannot load the model ({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}).") from None
        for layer in _leaf_layers(model):
            found.setdefault(layer.name, []).append([np.asarray(weight) for weight in layer.get_weights()])
        return found
    if path.name.endswith(".weights.h5"):
        raise UserError(
            f"--init-from {source}: a Keras .weights.h5 file names no layers; pass the run folder or its model.keras."
        )
    import h5py

    try:
        with h5py.File(path, "r") as file:
            group = file["model_weights"] if "model_weights" in file else file
            for name in group.attrs.get("layer_names", []):
                name = name.decode() if isinstance(name, bytes) else str(name)
                weight_names = group[name].attrs.get("weight_names", [])
                arrays = [np.asarray(group[name][w.decode() if isinstance(w, bytes) else w]) for w in weight_names]
                if arrays:
                    found.setdefault(name, []).append(arrays)
    except OSError as error:
        raise UserError(f"--init-from {source}: not an HDF5 weights file ({error}).") from None
    if not found:
        raise UserError(f"--init-from {source}: no layer weights found (expected a keras.applications-style .h5 file).")
    return found


def init_from(model, source, verbose=1):
    """Copies into `model` the weights of every layer of `source` that has the same name and
    shapes; prints and returns `(matched, unmatched)` counts of `model`'s layers with weights."""
    arrays = source_arrays(source)
    used = {name: 0 for name in arrays}
    matched, missed = 0, []
    for layer in _leaf_layers(model):
        candidates = arrays.get(layer.name, [])
        index = used.get(layer.name, 0)
        if index >= len(candidates):
            missed.append(f"{layer.name} (not in the source)")
            continue
        used[layer.name] = index + 1
        wanted = [tuple(weight.shape) for weight in layer.weights]
        given = [array.shape for array in candidates[index]]
        if wanted != given:
            missed.append(f"{layer.name} (shapes {given} vs {wanted})")
            continue
        layer.set_weights(candidates[index])
        matched += 1
    if verbose:
        example = f", e.g. {', '.join(missed[:3])}" if missed else ""
        print(f"--init-from {source}: {matched} layers loaded by name and shape, {len(missed)} not{example}")
    return matched, len(missed)
