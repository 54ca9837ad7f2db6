"""Config: one flat dataclass per task, typed from its defaults, overridable from YAML and flags.

    @dataclasses.dataclass
    class Config(config.TrainConfig):
        model: str = option("resnet20", "A key of the applications registry.")

Every field is a CLI flag (`--batch-size 64`); `--config run.yaml` loads a file and flags override
it. Unknown keys and bad values raise `UserError` naming the field and what it accepts.
"""

import dataclasses
import hashlib
import json
import pathlib

import yaml

from tasks.core.errors import UserError

# Type names as a user reads them in an error message.
_TYPE_NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


def option(default, help, choices=None, minimum=None, identity=True, aliases=()):
    """A config field with its help text and the values it accepts.

    Args:
        default: The default value; its type is the field's type.
        help: str. One line for `--help`.
        choices: list or None. The only values accepted.
        minimum: number or None. The smallest value accepted.
        identity: bool. False for fields that say where to write or how to show, not what to
            train (they do not change the derived run name). Defaults to True.
        aliases: tuple of str. Other flags for the field, e.g. ("--format",).
    """
    metadata = {
        "help": help, "choices": choices, "minimum": minimum, "identity": identity, "aliases": aliases,
    }
    return dataclasses.field(default=default, metadata=metadata)


def model_option(default, kind, note=""):
    """The `model` field of a task: a builder of registry `kind` (a str or a tuple of kinds), its
    help text listing `applications.names(kind)`, so a new builder appears in `--help` on its own."""
    import applications

    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    what = " or ".join(applications.registry.KINDS[one] for one in kinds)
    return option(default, f"{what[0].upper()}{what[1:]} of the applications registry: "
                           f"{', '.join(applications.names(kinds))}{note}.")


def float32_only():
    """The `precision` field of a task whose export cannot take a bfloat16 network: float32 alone,
    so `--precision mixed_bfloat16` is one line naming the choice there is."""
    return option("float32", "Compute dtype policy: float32 only (the SavedModel of a bfloat16 network does "
                             "not answer like it within the export check's tolerance).", choices=["float32"])


@dataclasses.dataclass
class TrainConfig:
    """The fields every task shares: the algorithm, the run and the outputs."""

    data: str = option("demo", "demo, a local path, or tfds:NAME[/CONFIG].")
    epochs: int = option(10, "Passes over the training split.", minimum=1)
    batch_size: int = option(
        64, "Batch size, split across replicas (per worker with --strategy multi_worker).", minimum=1
    )
    optimizer: str = option(
        "adamw",
        "A Keras optimizer by name.",
        choices=["sgd", "adam", "adamw", "rmsprop", "adagrad", "adadelta", "adamax", "nadam", "lion"],
    )
    learning_rate: float = option(1e-3, "Peak learning rate.", minimum=0.0)
    momentum: float = option(0.9, "Momentum (sgd, rmsprop).", minimum=0.0)
    nesterov: bool = option(False, "Nesterov momentum (sgd).")
    weight_decay: float = option(
        0.01, "Decoupled weight decay (Keras scales it by the learning rate; 0: off).", minimum=0.0
    )
    schedule: str = option(
        "cosine",
        "Learning-rate schedule over the whole run.",
        choices=["constant", "cosine", "onecycle", "step", "triangle"],
    )
    warmup_epochs: float = option(0.0, "Linear warmup before the schedule.", minimum=0.0)
    patience: int = option(0, "Early-stopping patience in epochs on val_loss (0: off).", minimum=0)
    validation_fraction: float = option(
        0.1, "Share of the training split held out for validation.", minimum=0.0
    )
    precision: str = option(
        "float32", "Compute dtype policy.", choices=["float32", "mixed_bfloat16"]
    )
    strategy: str = option(
        "default", "Distribution strategy.", choices=["default", "mirrored", "multi_worker"]
    )
    cluster_timeout: float = option(
        120.0, "Seconds to wait for every multi_worker peer to answer.", minimum=1.0, identity=False
    )
    seed: int = option(0, "Seed for splits, shuffling and initialization.")
    init_from: str = option(
        "", "Start from the weights of an earlier run: a run folder, a .keras model or an .h5 weights "
        "file; layers are matched by name and shape, and the counts printed.",
    )
    skip_bad: bool = option(False, "Skip (and count) bad records instead of stopping.")
    run_name: str = option("", "Run folder name (default: derived from the config).", identity=False)
    runs_dir: str = option("runs", "Root of run folders.", identity=False)
    export_dir: str = option("saved_models", "Root of exported SavedModels.", identity=False)
    export_format: str = option(
        "saved_model",
        "Extra export format written beside the SavedModel.",
        choices=["saved_model", "onnx", "tflite"],
        identity=False,
        aliases=("--format",),
    )
    verbose: int = option(
        1, "0 silent, 1 progress bar, 2 one line per epoch and TensorFlow's log lines (on the command line).",
        identity=False,
    )

    def __post_init__(self):
        # A config made in Python (`Config(epochs="2")`) fails here, not deep inside training;
        # flags and files arrive converted by `check_value`. Ranges and choices wait for `validate`.
        for field in fields(type(self)):
            value, expected = getattr(self, field.name), type(field.default)
            if expected is float and isinstance(value, int) and not isinstance(value, bool):
                continue
            if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
                raise UserError(
                    f"{type(self).__name__}.{field.name} must be {_TYPE_NAMES[expected]}. "
                    f"Received: {field.name}={value!r}"
                )


def fields(config_cls):
    """The dataclass fields of a config class, in declaration order."""
    return dataclasses.fields(config_cls)


def check_value(field, value, where="flag"):
    """Returns `value` converted to the field's type, or raises `UserError` saying what it accepts."""
    expected = type(field.default)
    label = f"--{field.name.replace('_', '-')}" if where == "flag" else f"'{field.name}' in {where}"
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    converts = where != "config"  # text from flags and files; a config made in Python is typed
    if expected is bool and isinstance(value, str) and converts:
        lowered = value.lower()
        if lowered in ("true", "yes", "1", "on"):
            value = True
        elif lowered in ("false", "no", "0", "off"):
            value = False
    if expected in (int, float) and isinstance(value, str) and converts:
        try:
            value = expected(value)
        except ValueError:
            pass
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise UserError(
            f"{label} must be {_TYPE_NAMES[expected]}. Received: {field.name}={value!r}"
        )
    choices = field.metadata.get("choices")
    if choices and value not in choices:
        raise UserError(
            f"{label} must be one of {', '.join(map(str, choices))}. Received: {field.name}={value!r}"
        )
    minimum = field.metadata.get("minimum")
    if minimum is not None and value < minimum:
        raise UserError(f"{label} must be >= {minimum}. Received: {field.name}={value!r}")
    return value


def load_file(config_cls, path):
    """Reads a YAML (or JSON) config file into a dict of checked values."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(f"config file {path} does not exist.")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise UserError(f"config file {path} is not valid YAML{where}: {getattr(error, 'problem', error)}")
    if not isinstance(raw, dict):
        raise UserError(f"config file {path} must hold a mapping of field: value.")
    by_name = {field.name: field for field in fields(config_cls)}
    values = {}
    for key, value in raw.items():
        name = str(key).replace("-", "_")
        if name not in by_name:
            raise UserError(
                f"unknown key '{key}' in {path}. Accepted keys: {', '.join(by_name)}"
            )
        values[name] = check_value(by_name[name], value, where=str(path))
    return values


def build(config_cls, file=None, **overrides):
    """Returns `config_cls` from its defaults, then its preset, then `file`, then `overrides`.

    A config class with a `preset` field and a `PRESETS` class attribute (name -> dict of field
    values) takes `preset=NAME` (from `file` or `overrides`): the preset's values replace the
    defaults, and the file and explicit overrides still win over them.
    """
    values = load_file(config_cls, file) if file else {}
    by_name = {field.name: field for field in fields(config_cls)}
    checked = {}
    for name, value in overrides.items():
        if name not in by_name:
            raise UserError(f"unknown config field '{name}'. Accepted: {', '.join(by_name)}")
        checked[name] = check_value(by_name[name], value)
    preset = checked.get("preset", values.get("preset"))
    if preset:
        values = {**preset_values(config_cls, preset), **values}
    values.update(checked)
    return config_cls(**values)


def preset_names(config_cls):
    """The names of a config class's presets (its `PRESETS` mapping), sorted."""
    return sorted(getattr(config_cls, "PRESETS", None) or {})


def preset_values(config_cls, name):
    """The checked field values of preset `name`, or a `UserError` listing the presets."""
    presets = getattr(config_cls, "PRESETS", None) or {}
    if name not in presets:
        known = ", ".join(preset_names(config_cls)) or "none"
        raise UserError(f"--preset {name!r} is not a preset. Presets: {known}")
    by_name = {field.name: field for field in fields(config_cls)}
    values = {}
    for key, value in presets[name].items():
        if key not in by_name:
            raise UserError(f"preset {name!r} sets unknown field '{key}'. Accepted: {', '.join(by_name)}")
        values[key] = check_value(by_name[key], value, where=f"preset {name!r}")
    return values


def validate(config):
    """Checks every field of an already-built config (e.g. one made in Python)."""
    for field in fields(type(config)):
        check_value(field, getattr(config, field.name), where="config")
    if getattr(config, "preset", ""):
        preset_values(type(config), config.preset)  # an unknown name is an error here too
    return config


def to_dict(config):
    return dataclasses.asdict(config)


def to_yaml(config):
    return yaml.safe_dump(to_dict(config), sort_keys=False)


def fingerprint(config):
    """A short hash of the fields that change what is trained (not where it is written)."""
    identity = {
        field.name: getattr(config, field.name)
        for field in fields(type(config))
        if field.metadata.get("identity", True)
    }
    text = json.dumps(identity, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:8]
