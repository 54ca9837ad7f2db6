"""Training: precision and strategy, optimizer and schedule, the standard callbacks, and `fit`.

    strategy = training.setup(config)           # seeds, dtype policy, tf.distribute strategy
    with strategy.scope():
        model = build_model(config, info)       # compiled with training.optimizer(config, steps)
    history = training.fit(model, data, config, run)
"""

import dataclasses
import json
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from tasks.core import distributed
from tasks.core import finetune
from tasks.core.errors import TrainingDiverged
from tasks.core.errors import UserError

# === Precision and strategy ===


def setup(config, seed=None):
    """Seeds everything (with `seed`, default the config's), sets the dtype policy and returns the
    distribution strategy."""
    keras.utils.set_random_seed(config.seed if seed is None else seed)
    keras.mixed_precision.set_global_policy(config.precision)
    return strategy(config.strategy, getattr(config, "cluster_timeout", 120.0))


def strategy(name, cluster_timeout=120.0):
    """`default`: one device. `mirrored`: every GPU, or the CPU split into two logical devices.

    `multi_worker`: `tf.distribute.MultiWorkerMirroredStrategy` over the cluster of TF_CONFIG
    (or Slurm), trained by `tasks.core.distributed.fit` since Keras 3.15 `fit` fails under it
    (keras-team/keras#20585).
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        gpus = tf.config.list_physical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy()
        cpus = tf.config.list_physical_devices("CPU")
        try:
            # Two logical CPUs give two replicas; only possible before TF initializes its devices.
            tf.config.set_logical_device_configuration(
                cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
            )
        except RuntimeError:
            pass
        devices = [device.name for device in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices)
    if name == "multi_worker":
        return distributed.strategy(cluster_timeout)
    raise UserError(f"--strategy must be default, mirrored or multi_worker. Received: {name!r}")


# === Optimizer and schedule ===

# The `triangle` schedule (airbench): start, peak position and end, as shares of the peak / run.
TRIANGLE_START = 0.2
TRIANGLE_PEAK_AT = 0.23
TRIANGLE_END = 0.07


@keras.saving.register_keras_serializable(package="tasks")
class LearningRateCurve(keras.optimizers.schedules.LearningRateSchedule):
    """A per-step learning rate: linear warmup, then a constant, cosine, one-cycle or step decay.

    Args:
        peak: float. The learning rate at the end of warmup.
        total_steps: int. Steps in the whole run.
        warmup_steps: int. Steps of linear warmup from `peak / 25`. Defaults to 0.
        shape: str. `constant`, `cosine` (to 0), `onecycle` (linear to `peak / 1e4`; warmup
            defaults to 25 % of the run), `step` (x0.1 at 50 % and 75 %) or `triangle` (the
            airbench curve: linear from `0.2 peak` up to `peak` at 23 % of the run unless warmup
            is given, then linear down to `0.07 peak` at the end). Defaults to "cosine".
    """

    def __init__(self, peak, total_steps, warmup_steps=0, shape="cosine"):
        self.peak = float(peak)
        self.total_steps = int(max(total_steps, 1))
        self.warmup_steps = int(warmup_steps)
        self.shape = shape
        if shape == "onecycle" and not warmup_steps:
            self.warmup_steps = int(0.25 * self.total_steps)
        if shape == "triangle" and not warmup_steps:
            self.warmup_steps = int(TRIANGLE_PEAK_AT * self.total_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        peak = tf.constant(self.peak, tf.float32)
        warmup = float(max(self.warmup_steps, 1))
        start = peak * TRIANGLE_START if self.shape == "triangle" else peak / 25.0
        warm = start + (peak - start) * tf.minimum(step / warmup, 1.0)
        decay_steps = float(max(self.total_steps - self.warmup_steps, 1))
        progress = tf.clip_by_value((step - self.warmup_steps) / decay_steps, 0.0, 1.0)
        if self.shape == "cosine":
            after = 0.5 * peak * (1.0 + tf.cos(math.pi * progress))
        elif self.shape == "onecycle":
            after = peak + (peak / 1e4 - peak) * progress
        elif self.shape == "triangle":
            after = peak + (peak * TRIANGLE_END - peak) * progress
        elif self.shape == "step":
            after = peak * tf.pow(0.1, tf.cast(progress >= 0.5, tf.float32) + tf.cast(progress >= 0.75, tf.float32))
        else:
            after = peak
        if self.warmup_steps == 0:
            return after
        return tf.where(step < self.warmup_steps, warm, after)

    def get_config(self):
        return {
            "peak": self.peak,
            "total_steps": self.total_steps,
            "warmup_steps": self.warmup_steps,
            "shape": self.shape,
        }


def model_builder(name, kind, role="--model"):
    """The registry builder of `--model name`, as a one-line `UserError` when there is none or it is
    of another kind than the task trains.

    Args:
        name: str. A key of the applications registry.
        kind: str or tuple of str. The registry kind(s) the task takes (`applications.registry.KINDS`).
        role: str. The flag that named the builder, for the error. Defaults to "--model".
    """
    import applications

    try:
        builder = applications.get(name)
    except ValueError as error:
        raise UserError(f"{role}: {error}")
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    found = applications.kind_of(name)
    if found not in kinds:
        wanted = " or ".join(applications.registry.KINDS[kind] for kind in kinds)
        raise UserError(f"{role} {name} is {applications.registry.KINDS[found]}, not {wanted}; "
                        f"use one of {', '.join(applications.names(kinds))}.")
    return builder


def flag_arguments(config, builder, names, passed=None):
    """Keyword arguments of `builder` from the config fields `names` (size flags: 0 means the
    builder's own default and is not passed), plus those of `passed` (name → value) it takes.

    A field of `names` set away from its default that the builder does not take is a one-line
    `UserError` (`--units does not apply to --model bert_tiny.`); left at its default, it is dropped.
    """
    import applications

    accepted = applications.arguments(builder)
    defaults = {field.name: field.default for field in dataclasses.fields(type(config))}
    wanted = {}
    for name in names:
        value = getattr(config, name)
        if not value:
            continue
        if name in accepted:
            wanted[name] = value
        elif value != defaults[name]:
            raise UserError(f"--{name.replace('_', '-')} does not apply to --model {config.model}.")
    wanted.update({name: value for name, value in (passed or {}).items() if name in accepted})
    return wanted


def build_network(builder, config, *args, **kwargs):
    """`builder(*args, **kwargs)`; the builder's `ValueError` (a size or combination it refuses) is a
    one-line `UserError` naming `--model`."""
    try:
        return builder(*args, **kwargs)
    except ValueError as error:
        raise UserError(f"--model {config.model}: {error}") from None


def steps_per_epoch(config, info):
    """Optimizer steps in one pass over the training split (`info["num_train"]` examples)."""
    return int(np.ceil(info["num_train"] / config.batch_size))


def compile(model, config, info, loss=None, metrics=None, weighted_metrics=None):
    """Compiles `model` with the config's optimizer (its schedule over `--epochs` passes of the
    training split) and the task's loss and metrics; returns the model."""
    model.compile(optimizer=optimizer(config, steps_per_epoch(config, info)), loss=loss, metrics=metrics,
                  weighted_metrics=weighted_metrics)
    return model


def optimizer(config, steps_per_epoch):
    """The config's optimizer with its schedule over `config.epochs * steps_per_epoch` steps."""
    total = config.epochs * steps_per_epoch
    rate = LearningRateCurve(
        config.learning_rate,
        total_steps=total,
        warmup_steps=int(config.warmup_epochs * steps_per_epoch),
        shape=config.schedule,
    )
    # Always explicit: AdamW would otherwise decay by its own default of 0.004.
    kwargs = {"learning_rate": rate, "weight_decay": config.weight_decay or None}
    if config.optimizer == "adamw":
        kwargs["weight_decay"] = config.weight_decay
    if config.optimizer == "sgd":
        kwargs.update(momentum=config.momentum, nesterov=config.nesterov)
    elif config.optimizer == "rmsprop":
        kwargs.update(momentum=config.momentum)
    return keras.optimizers.get({"class_name": config.optimizer, "config": kwargs})


# === Callbacks ===


class LearningRateLogger(keras.callbacks.Callback):
    """Adds the current `learning_rate` to each epoch's logs (history.csv, TensorBoard)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            rate = self.model.optimizer.learning_rate
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(rate))


class Throughput(keras.callbacks.Callback):
    """Training examples per second, from each epoch's start to its last training batch.

    Wall-clock rates say how fast a run is; rates per CPU-second of this process (all its
    threads) say how much work each example costs, and hold up when other processes share
    the cores.

    Args:
        batch_size: int. The global batch size.
        num_examples: int or None. Examples per epoch, when known (exact with a partial last
            batch); otherwise batches x batch_size.
    """

    def __init__(self, batch_size, num_examples=None):
        super().__init__()
        self.batch_size = batch_size
        self.num_examples = num_examples

    def on_train_begin(self, logs=None):
        self.epoch_rates = []
        self.epoch_cpu_rates = []

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()
        self.started_cpu = time.process_time()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1
        self.last = time.perf_counter()
        self.last_cpu = time.process_time()

    def on_epoch_end(self, epoch, logs=None):
        if self.batches:
            examples = self.num_examples or self.batches * self.batch_size
            self.epoch_rates.append(examples / (self.last - self.started))
            self.epoch_cpu_rates.append(examples / max(self.last_cpu - self.started_cpu, 1e-9))

    @staticmethod
    def _median(rates):
        # The first epoch includes tracing; report the median of the others when there are any.
        rates = rates[1:] or rates
        return float(np.median(rates)) if rates else 0.0

    @property
    def examples_per_second(self):
        return self._median(self.epoch_rates)

    @property
    def examples_per_cpu_second(self):
        return self._median(self.epoch_cpu_rates)


class TimeToAccuracy(keras.callbacks.Callback):
    """Logs the time at which a held-out accuracy first reaches each threshold (report only).

    After each epoch it calls `accuracy_fn(model)` and records, per epoch, the accuracy, the
    training seconds so far (wall time since training began, without the time spent in these
    measurements), the wall seconds including them and the seconds since the process started
    (data reading and model building included; restarts from 0 when a run resumes). Nothing is
    selected or stopped on it: it may measure the test split without leaking into training. A resumed run continues the
    record in `path` (JSON), so the times add up over restarts.

    Args:
        thresholds: list of float. Accuracies to time, e.g. [0.91, 0.94].
        accuracy_fn: callable. `model -> float` accuracy on the held-out data.
        path: path or None. Where the record is written after every epoch.
        label: str. What the accuracy is, for the printed lines. Defaults to "test accuracy".
    """

    def __init__(self, thresholds, accuracy_fn, path=None, label="test accuracy"):
        super().__init__()
        self.thresholds = sorted(float(value) for value in thresholds)
        self.accuracy_fn = accuracy_fn
        self.path = path
        self.label = label

    def on_train_begin(self, logs=None):
        self.record = {"thresholds": self.thresholds, "epochs": [], "reached": {}}
        if self.path is not None and os.path.isfile(self.path):
            with open(self.path) as file:
                self.record = json.load(file)
        last = self.record["epochs"][-1] if self.record["epochs"] else {}
        self.offset_train = last.get("train_seconds", 0.0)
        self.offset_wall = last.get("wall_seconds", 0.0)
        self.started = time.perf_counter()
        self.measuring = 0.0

    def on_epoch_end(self, epoch, logs=None):
        began = time.perf_counter()
        accuracy = float(self.accuracy_fn(self.model))
        ended = time.perf_counter()
        train_seconds = self.offset_train + (began - self.started) - self.measuring
        self.measuring += ended - began
        entry = {
            "epoch": epoch + 1,
            "accuracy": round(accuracy, 6),
            "train_seconds": round(train_seconds, 2),
            "wall_seconds": round(self.offset_wall + ended - self.started, 2),
            "measure_seconds": round(ended - began, 2),
            "process_seconds": process_age(),
        }
        self.record["epochs"] = [row for row in self.record["epochs"] if row["epoch"] < epoch + 1] + [entry]
        for threshold in self.thresholds:
            key = f"{threshold:g}"
            if accuracy >= threshold and key not in self.record["reached"]:
                self.record["reached"][key] = {
                    name: entry[name] for name in ("epoch", "train_seconds", "wall_seconds", "process_seconds")
                }
                print(
                    f"Reached {self.label} {threshold:g} at epoch {epoch + 1}: "
                    f"{entry['train_seconds']:.1f} s of training ({entry['wall_seconds']:.1f} s wall)"
                )
        if self.path is not None:
            tmp = f"{self.path}.tmp"
            with open(tmp, "w") as file:
                json.dump(self.record, file, indent=2)
            os.replace(tmp, self.path)


class Lookahead(keras.callbacks.Callback):
    """Lookahead on the weights (airbench's form): every `every` steps, slow = a slow + (1 - a) fast,
    then the model continues from slow; at the end of training the model takes the slow weights.

    The decay `a` ramps up as `decay * (step / total_steps) ** 3`, so early training is plain
    SGD and the end of the run averages over more and more steps. Unlike Keras' optimizer EMA
    (`use_ema`), the network always trains on the averaged weights, so batch-norm statistics
    match them, and there is no bias towards the initial weights in short runs. A resumed run
    starts a new average from the restored weights.

    Args:
        decay: float. The final decay, in [0, 1); airbench uses 0.95^5 = 0.774 with `every=5`.
        total_steps: int. Training steps in the whole run.
        every: int. Steps between updates. Defaults to 5.
    """

    def __init__(self, decay, total_steps, every=5):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise UserError(f"--lookahead must be in [0, 1). Received: {decay}")
        self.decay = float(decay)
        self.total_steps = max(int(total_steps), 1)
        self.every = max(int(every), 1)

    def on_train_begin(self, logs=None):
        self.fast = self.model.trainable_variables
        self.slow = [tf.Variable(variable, trainable=False) for variable in self.fast]
        self.step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def _update(self, decay):
        for slow, fast in zip(self.slow, self.fast):
            slow.assign(decay * slow + (1.0 - decay) * tf.cast(fast, slow.dtype))
            fast.assign(tf.cast(slow, fast.dtype))

    def on_train_batch_end(self, batch, logs=None):
        self.step += 1
        if self.step % self.every == 0:
            self._update(self.decay * min(self.step / self.total_steps, 1.0) ** 3)

    def on_train_end(self, logs=None):
        self._update(1.0)  # the model ends on the slow weights


def process_age():
    """Wall seconds since this process started (reading, building and tracing included), or None."""
    try:
        with open("/proc/self/stat") as file:
            start_ticks = int(file.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/uptime") as file:
            uptime = float(file.read().split()[0])
        return round(uptime - start_ticks / os.sysconf("SC_CLK_TCK"), 2)
    except (OSError, ValueError, IndexError):
        return None  # not Linux


class StopOnNaN(keras.callbacks.Callback):
    """Stops at the first NaN or infinite loss and remembers where, so `fit` can fail clearly."""

    def on_train_begin(self, logs=None):
        self.where = None
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if loss is not None and not np.isfinite(float(loss)):
            self.where = (self.epoch + 1, batch + 1)
            self.model.stop_training = True


def callbacks(run, config, has_validation, extra=(), num_examples=None):
    """The standard callbacks, in the order they must run at each epoch's end."""
    monitor = "val_loss" if has_validation else "loss"
    result = [
        LearningRateLogger(),
        StopOnNaN(),
        Throughput(config.batch_size, num_examples),
        # Before the CSV log: a row is only written for an epoch whose state is backed up.
        keras.callbacks.BackupAndRestore(str(run.backup_dir)),
        keras.callbacks.ModelCheckpoint(str(run.best_file), monitor=monitor, save_best_only=True),
        keras.callbacks.CSVLogger(str(run.history_file), append=True),
        keras.callbacks.TensorBoard(str(run.logs_dir)),
    ]
    if config.patience:
        result.append(
            keras.callbacks.EarlyStopping(
                monitor=monitor, patience=config.patience, restore_best_weights=True
            )
        )
    return result + list(extra)


def average_models(members, name="ensemble"):
    """One functional model whose output is the mean of `members`' outputs (same inputs, one
    output each: regression values, or logits). Members are renamed `member1`, `member2`, ... so
    their layer names stay unique; the result saves and reloads as a `.keras` file."""
    for index, member in enumerate(members, 1):
        member.name = f"member{index}"
    inputs = [keras.Input(tensor.shape[1:], dtype=tensor.dtype, name=tensor.name) for tensor in members[0].inputs]
    if len(inputs) == 1:
        inputs = inputs[0]  # a single-input member is called on a tensor, not a list of one
    outputs = keras.layers.Average(name="average")([member(inputs) for member in members])
    return keras.Model(inputs, outputs, name=name)


# === Fit ===


def fit(model, data, config, run, extra_callbacks=()):
    """Trains with the standard callbacks; resumes a killed run; raises on a NaN loss.

    Returns:
        A dict with `epochs` (run in total), `train_seconds` and `examples_per_second`.
    """
    has_validation = data.validation is not None
    # Tasks put the number of training examples per epoch in info["num_train"].
    extra_callbacks = list(extra_callbacks) + finetune.callbacks(model, config)
    standard = callbacks(run, config, has_validation, extra_callbacks, data.info.get("num_train"))
    resume = run.resume_epoch()
    if getattr(config, "init_from", "") and resume is None:
        finetune.init_from(model, config.init_from, verbose=config.verbose)  # a resumed run has its own
    if resume is not None and config.verbose:
        print(f"Resuming {run.path} at epoch {resume + 1} of {config.epochs}.")
    verbose = config.verbose
    if verbose == 1 and not os.isatty(1):
        verbose = 2  # one line per epoch in logs and CI
    started = time.perf_counter()
    if distributed.is_multi_worker(model.distribute_strategy):
        if not distributed.is_chief(model.distribute_strategy):
            verbose = 0  # the chief reports progress
        distributed.fit(model, data.train, data.validation, config.epochs, standard, verbose)
    else:
        model.fit(
            data.train,
            validation_data=data.validation,
            epochs=config.epochs,
            callbacks=standard,
            verbose=verbose,
            shuffle=False,  # the pipeline shuffles (finalize)
        )
    seconds = time.perf_counter() - started
    nan = next(callback for callback in standard if isinstance(callback, StopOnNaN))
    if nan.where:
        epoch, batch = nan.where
        raise TrainingDiverged(
            f"training diverged: the loss became NaN or infinite at epoch {epoch}, batch {batch}; "
            f"nothing was exported. Lower --learning-rate (now {config.learning_rate}) or add warmup."
        )
    meter = next(callback for callback in standard if isinstance(callback, Throughput))
    return {
        "epochs": len(history_rows(run)),
        "train_seconds": round(seconds, 2),
        "examples_per_second": round(meter.examples_per_second, 1),
        "examples_per_cpu_second": round(meter.examples_per_cpu_second, 1),
    }


def history_rows(run):
    """history.csv as a list of dicts, one per epoch (the last row wins after a resume)."""
    if not run.history_file.is_file():
        return []
    lines = run.history_file.read_text().strip().splitlines()
    if len(lines) < 2:
        return []
    header = lines[0].split(",")
    rows = {}
    for line in lines[1:]:
        if line.startswith("epoch"):
            continue  # a header repeated by a resumed CSVLogger
        values = dict(zip(header, line.split(",")))
        rows[int(values["epoch"])] = {
            key: float(value) for key, value in values.items() if _is_number(value)
        }
    return [rows[epoch] for epoch in sorted(rows)]


def _is_number(text):
    try:
        float(text)  # CSVLogger writes "NA" for keys an epoch did not log
        return True
    except ValueError:
        return False
