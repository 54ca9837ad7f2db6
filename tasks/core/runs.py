"""Run folders: `runs/<task>/<run-name>/` with the config, history, logs, checkpoints and metrics.

The default run name is derived from the config, so re-running the same command finds the same
folder and resumes from its `backup/` (keras BackupAndRestore); `--fresh` starts it over.
"""

import dataclasses
import json
import os
import pathlib
import re
import shutil
import tempfile

import yaml

from tasks.core import config as config_lib
from tasks.core.errors import UserError


def _slug(text):
    text = re.sub(r"[^A-Za-z0-9]+", "-", str(text)).strip("-")
    return text[-24:] or "data"


def default_name(config):
    """`<model>-<data>-<hash>`, e.g. `resnet20-demo-1a2b3c4d`."""
    data = config.data
    if data not in ("demo",) and not data.startswith("tfds:"):
        data = pathlib.Path(data).name
    model = getattr(config, "model", "model")
    return f"{_slug(model)}-{_slug(data)}-{config_lib.fingerprint(config)}"


@dataclasses.dataclass
class Run:
    """The folder of one training run and the paths inside it."""

    task: str
    path: pathlib.Path

    @classmethod
    def for_config(cls, task, config):
        name = config.run_name or default_name(config)
        return cls(task, pathlib.Path(config.runs_dir) / task / name)

    # === Paths ===
    @property
    def config_file(self):
        return self.path / "config.yaml"

    @property
    def metrics_file(self):
        return self.path / "metrics.json"

    @property
    def history_file(self):
        return self.path / "history.csv"

    @property
    def model_file(self):
        return self.path / "model.keras"

    @property
    def best_file(self):
        return self.path / "checkpoints" / "best.keras"

    @property
    def backup_dir(self):
        return self.path / "backup"

    @property
    def logs_dir(self):
        return self.path / "logs"

    @property
    def export_file(self):
        return self.path / "export.json"

    @property
    def stats_file(self):
        return self.path / "train_stats.json"

    @property
    def plots_dir(self):
        path = self.path / "plots"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # === State ===
    @property
    def complete(self):
        """Trained and evaluated (`exported` says whether the export was written too)."""
        return self.metrics_file.is_file() and self.model_file.is_file()

    @property
    def exported(self):
        """True when this run's export was written and its folder is still there."""
        if not self.export_file.is_file():
            return False
        try:
            return pathlib.Path(json.loads(self.export_file.read_text())["path"]).is_dir()
        except (ValueError, KeyError, TypeError, OSError):
            return False

    def resume_epoch(self):
        """The zero-based epoch a killed run resumes at (the epochs it finished), or None if there
        is nothing to resume. BackupAndRestore writes that count as `epoch` and fit starts there."""
        metadata = self.backup_dir / "training_metadata.json"
        if not metadata.is_file():
            return None
        try:
            return int(json.loads(metadata.read_text()).get("epoch", 0))
        except (ValueError, OSError):
            return 0

    def start(self, config, fresh=False):
        """Creates (or, with `fresh`, empties) the folder and writes the resolved config."""
        if fresh and self.path.exists():
            shutil.rmtree(self.path)
        (self.path / "checkpoints").mkdir(parents=True, exist_ok=True)
        if config.run_name and self.config_file.is_file() and self.resume_epoch() is not None:
            saved = yaml.safe_load(self.config_file.read_text()) or {}
            saved_config = dataclasses.replace(config, **{
                key: value for key, value in saved.items() if hasattr(config, key)
            })
            if config_lib.fingerprint(saved_config) != config_lib.fingerprint(config):
                raise UserError(
                    f"run {self.path} was started with a different config; "
                    "pass --fresh to start it over or choose another --run-name."
                )
        write_atomic(self.config_file, config_lib.to_yaml(config))
        return self

    def saved_info(self):
        """The run's `info.json` (what `load_data` learned when the run started), or None."""
        path = self.path / "info.json"
        return json.loads(path.read_text()) if path.is_file() else None

    def save_model(self, model, stats):
        """Writes model.keras (through a temporary file and a rename) and the training's stats."""
        partial = self.path / ".partial.keras"
        model.save(partial)
        os.replace(partial, self.model_file)
        write_atomic(self.stats_file, json.dumps(stats or {}, indent=2, default=_jsonable) + "\n")

    def saved_stats(self):
        """The stats `save_model` wrote (train seconds, examples per second, epochs), or {}."""
        return json.loads(self.stats_file.read_text()) if self.stats_file.is_file() else {}

    def record_export(self, path):
        """Notes where this run was exported, so a re-run knows the export is done."""
        write_atomic(self.export_file, json.dumps({"path": str(pathlib.Path(path).resolve())}, indent=2) + "\n")

    def write_metrics(self, record):
        write_atomic(self.metrics_file, json.dumps(record, indent=2, default=_jsonable) + "\n")

    def read_metrics(self):
        return json.loads(self.metrics_file.read_text())

    def require_model(self):
        if not self.model_file.is_file():
            raise UserError(
                f"no trained model at {self.model_file}; run `train` with the same flags first "
                "(or pass --run-name of a finished run)."
            )
        return self.model_file


def learned_part(saved, keys):
    """`{key: saved[key]}` for `keys` when a run's saved info has them all, else None: what a
    task's `load_data(config, saved=...)` keeps instead of learning it again."""
    if not saved or not all(key in saved for key in keys):
        return None
    return {key: saved[key] for key in keys}


def _jsonable(value):
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def write_atomic(path, text):
    """Writes text to `path` through a temporary file and a rename: never half-written."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    os.fchmod(handle, default_mode())  # mkstemp makes 0600: readable by others as the umask allows
    with os.fdopen(handle, "w") as file:
        file.write(text)
    os.replace(temporary, path)


def default_mode(directory=False):
    """The mode `open` or `mkdir` would give under the process umask (0644 / 0755 under 022)."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask
