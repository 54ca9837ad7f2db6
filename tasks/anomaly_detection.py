"""Time-series anomaly detection: forecasters and autoencoders, scored the way NAB scores them.

Usage:
    python -m tasks.anomaly_detection train                          # demo: generated series, injected anomalies
    python -m tasks.anomaly_detection train --data nab   # the NAB layout (labels found)
    python -m tasks.anomaly_detection train --data nab --files "realKnownCause/*" \
        --model lstm_autoencoder
    python -m tasks.anomaly_detection train --data series.csv --labels windows.json
    python -m tasks.anomaly_detection evaluate                       # the same flags find the run
    python -m tasks.anomaly_detection predict series.csv             # scores CSV + plot in predictions/

Unsupervised: the networks learn normal behaviour; labels only score. Each series is a stream.
Its probationary period (NAB's: the first `min(floor(0.15 T), 750)` rows) is the only part the
detector learns from: the normalization (mean and standard deviation) is fitted on it, and the
training windows are cut from it (the last `--validation-fraction` of them validate). Nothing
after it is seen before it is scored.

Data: CSV files or folders (`timestamp,value`), the NAB layout (`data/<category>/*.csv` +
`labels/combined_windows.json`), or `demo` (`tasks.data.series`). Model: a registry series
network (`conv_forecaster` predicts the next `--horizon` values; `conv_autoencoder` and
`lstm_autoencoder` reconstruct the window). Loss: mean squared error. Algorithm: AdamW.

Scoring, one graph for evaluation and export (every score at row t uses rows up to t only):
- network: the error at row t is the mean absolute residual of the forecast of the rows up to t
  (or the reconstruction error of the window ending at t); its short-term mean
  (`--averaging-window` rows, 60: a sustained loss of predictability, where the statistics below
  see single rows) is compared with the mean and standard deviation of the errors of the
  `--history` rows before (a rolling Gaussian, like NAB's anomaly likelihood); the score is the
  log-scaled tail probability, `log(Q(z) + 1e-10) / log(1e-10)` in [0, 1]; it is exported as
  `network_score` and fused only with `--network-score` (or `--statistics ''`);
- `--statistics` statistical detectors, on the same scale: `zscore` (the value against the mean
  and deviation of the `--history` rows before it, two-sided tail), `seasonal` (the residual of
  the seasonal-naive forecast x_{t-P}, P the autocorrelation peak of the probationary period,
  through the same rolling Gaussian; no score when no period correlates >= 0.6), `extreme`
  (how far the value lies outside the range of the `--history` rows before it) and `likelihood`
  (numenta's anomaly likelihood over the naive forecast's errors |x_t - x_{t-1}|: the same
  rolling Gaussian over `--averaging-window` and `--history` rows);
- the anomaly score is their row-wise mean (`--fusion mean`: the Gaussian-tail scores are scaled
  -log p, so over them the mean is Fisher's combined statistic up to scale; one alarm needs
  several detectors or one very sure; a detector without a score, as seasonal without a period,
  counts 0; `--fusion max` takes the most alarmed detector); then, for `--refractory` × T rows
  after a score, a later one counts only by how much it exceeds it (one alarm per event).
The defaults (the four statistics without the network, mean fusion, refractory 0.05 T, averaging
60) are the recipe that `python benchmarks/anomaly_detection.py --protocol loco` picks from its
grid; its leave-one-category-out score measures how well that choice holds on unseen categories.
`--history` (4000) is not tuned.

Metrics: the NAB score under its three profiles, with the threshold optimized per profile over
the whole evaluated corpus (NAB's optimizer; with no labelled windows, the threshold is the
highest score seen in the probationary periods), and window-level precision / recall / F1 at the
standard profile's threshold. Baselines: null, random (uniform scores) and a rolling z-score of
the raw values (`--zscore-window` rows).
"""

import dataclasses
import json
import pathlib
import sys

import keras
import numpy as np
import tensorflow as tf

import applications
from applications import series as series_networks
from tasks.core import cli
from tasks.core import pipeline
from tasks.core import export
from tasks.core import plots
from tasks.core import runner
from tasks.core import training
from tasks.core.config import TrainConfig
from tasks.core.config import float32_only
from tasks.core.config import model_option
from tasks.core.config import option
from tasks.core.errors import UserError
from tasks.core.runs import write_atomic
from tasks.data import series as series_readers
from tasks.metrics import nab

KIND = "series"  # the applications registry kind(s) --model names

CLIP = 20.0  # normalized values are clipped to +-CLIP standard deviations (of the probationary period)
CHUNK = 4096  # windows per network call when scoring a long series
MIN_HISTORY = 32  # rows of past errors before a score is given
EPSILON = 1e-10  # NAB's log-likelihood floor: a tail probability of 1e-10 scores 1.0
FUSIONS = ("mean", "max")  # row-wise rules combining the detectors' scores (`fused_scores`)


@dataclasses.dataclass
class Config(TrainConfig):
    epochs: int = option(10, "Passes over the training windows.", minimum=1)
    batch_size: int = option(64, "Global batch size of training windows.", minimum=1)
    precision: str = float32_only()  # bfloat16 forecasts move the anomaly scores by 0.04
    model: str = model_option("conv_forecaster", KIND)
    labels: str = option("", "A windows JSON (NAB combined_windows.json format); default: labels/ of a NAB folder.")
    files: str = option("", "Comma-separated keys or globs of the series to use, e.g. 'realKnownCause/*'.")
    window_length: int = option(64, "Rows per input window.", minimum=2)
    horizon: int = option(1, "Values the forecaster predicts after each window.", minimum=1)
    filters: int = option(0, "Convolution channels (0: the builder's default).", minimum=0)
    units: int = option(0, "LSTM width, lstm_autoencoder only (0: the builder's default).", minimum=0)
    dropout_rate: float = option(0.0, "Dropout inside the network.", minimum=0.0)
    averaging_window: int = option(60, "Rows of the short-term mean of the network's and the likelihood's errors "
                                   "(NAB's likelihood uses 10; 60 leaves single-row events to the other statistics).",
                                   minimum=1)
    history: int = option(4000, "Rows of past errors (or values, for zscore and extreme) a new one is compared "
                          "with (their mean and deviation; for extreme, their range).", minimum=2)
    statistics: str = option(
        "zscore,seasonal,extreme,likelihood",
        "Statistical detectors fused (--fusion): zscore, seasonal, extreme, likelihood; '' for the network alone.",
    )
    network_score: bool = option(
        False, "Fuse the network's score with the statistics' (always, with --statistics ''); off by default: "
        "held out by category it lowered the NAB score (BENCHMARKS.md).",
    )
    fusion: str = option(
        "mean", "How the detectors' scores combine, row by row: mean (one alarm needs several detectors, or one very "
        "sure) or max.",
        choices=list(FUSIONS),
    )
    refractory: float = option(
        0.05, "After a score, rows within this fraction of the series' length score only by how much they "
        "exceed it (0: off).", minimum=0.0,
    )
    zscore_window: int = option(500, "Rows of the rolling z-score baseline's trailing window.", minimum=2)
    max_plots: int = option(12, "Series plotted with their windows and detections.", minimum=0, identity=False)


@dataclasses.dataclass
class SeriesData(pipeline.Data):
    """`Data` plus the corpus: every series is scored in full, its probationary period trained on."""

    corpus: series_readers.Corpus = None


# === Data ===


def read_corpus(config):
    """The config's series and windows (`tasks.data.series`)."""
    kind, value = pipeline.source(config.data)
    if kind == "tfds":
        raise UserError("--data tfds:... is not supported for series; "
                        "use demo, a CSV file or a folder (e.g. NAB).")
    if kind == "demo":
        corpus = series_readers.demo_corpus(seed=config.seed)
        if config.files:
            keys = series_readers.select([one.key for one in corpus.series], config.files, "demo")
            corpus.series = [one for one in corpus.series if one.key in keys]
        return corpus
    return series_readers.read_corpus(value, labels=config.labels, files=config.files, skip_bad=config.skip_bad)


def check_corpus(corpus, config):
    """Bad input as one line: a series shorter than a window, nothing but constant series."""
    needed = config.window_length + config.horizon
    for one in corpus.series:
        if len(one) < needed:
            raise UserError(
                f"{one.key}: {len(one)} rows, fewer than --window-length + --horizon = {needed}; "
                "lower --window-length or drop the file (--files)."
            )
    constant = [one.key for one in corpus.series if np.ptp(one.values) == 0]
    if len(constant) == len(corpus.series):
        shown = constant[0] if len(constant) == 1 else f"all {len(constant)} series"
        raise UserError(f"{shown}: every value is the same ({corpus.series[0].values[0]:g}); "
                        "an all-constant series has no behaviour to learn.")
    if constant:
        corpus.notes.append(f"all-constant series (scored, never alarming on their own): {', '.join(constant)}")


def is_forecaster(name):
    """Whether the registry builder `name` forecasts (takes a horizon) rather than reconstructs."""
    return "horizon" in applications.arguments(applications.get(name))


def training_windows(corpus, config):
    """Windows of each series' probationary period → (inputs (N, W), targets (N, W or H)), split.

    Returns:
        `(train, validation)`: pairs of arrays; validation is the last `validation_fraction` of
        each series' windows (in time order), or None.
    """
    length, horizon = config.window_length, config.horizon
    forecast = is_forecaster(config.model)
    span = length + (horizon if forecast else 0)
    parts = {"train": ([], []), "validation": ([], [])}
    for one in corpus.series:
        head = normalize_series(one.values[None]).numpy()[0, :nab.probationary_length(len(one))]
        if len(head) < span:
            continue
        frames = np.lib.stride_tricks.sliding_window_view(head, span)  # (N, span)
        inputs, targets = (frames[:, :length], frames[:, length:]) if forecast else (frames, frames)
        cut = len(frames) - int(round(config.validation_fraction * len(frames)))
        for split, rows in (("train", slice(0, cut)), ("validation", slice(cut, None))):
            parts[split][0].append(inputs[rows])
            parts[split][1].append(targets[rows])
    train = tuple(np.concatenate(part) for part in parts["train"]) if parts["train"][0] else None
    if train is None or not len(train[0]):
        raise UserError(
            f"--data {config.data}: no probationary period is as long as --window-length"
            f"{' + --horizon' if forecast else ''} = {span} rows; lower --window-length."
        )
    validation = tuple(np.concatenate(part) for part in parts["validation"])
    return train, validation if len(validation[0]) else None


def load_data(config, saved=None):
    """Training windows (probationary periods only), the corpus to score, and the facts export needs."""
    corpus = read_corpus(config)
    check_corpus(corpus, config)
    if config.model not in applications.names():
        raise UserError(f"--model: Model '{config.model}' is never registered. Series networks: "
                        "conv_forecaster, conv_autoencoder, lstm_autoencoder.")
    statistics_names(config.statistics)
    train, validation = training_windows(corpus, config)
    make = lambda pair, shuffle: pipeline.finalize(  # noqa: E731
        tf.data.Dataset.from_tensor_slices(pair), config.batch_size, shuffle=shuffle, seed=config.seed)
    train_ds = make(train, True)
    validation_ds = make(validation, False) if validation is not None else None
    info = {
        "window_length": config.window_length,
        "horizon": config.horizon,
        "averaging_window": config.averaging_window,
        "history": config.history,
        "refractory": config.refractory,
        "statistics": ",".join(statistics_names(config.statistics)),
        "network_score": config.network_score,
        "fusion": config.fusion,
        "num_train": int(len(train[0])),
        "num_validation": int(len(validation[0])) if validation is not None else 0,
        "num_series": len(corpus.series),
        "num_rows": int(sum(len(one) for one in corpus.series)),
        "num_windows": int(sum(len(one.window_indices()) for one in corpus.series)),
        "series": [one.key for one in corpus.series],
        "data_report": corpus.summary(),
        "probationary": "min(floor(0.15 T), 750) rows: normalization and training windows",
    }
    if config.verbose and info["data_report"]:
        print("Data fixes and notes:\n  " + "\n  ".join(info["data_report"]))
    return SeriesData(train=train_ds, validation=validation_ds, test=validation_ds or train_ds, info=info,
                      corpus=corpus)


# === Model ===


def build_model(config, info):
    """A registry series network, compiled with mean squared error and the config's optimizer."""
    builder = training.model_builder(config.model, KIND)
    wanted = training.flag_arguments(config, builder, ("filters", "units"), passed={"horizon": config.horizon})
    model = training.build_network(builder, config, window_length=info["window_length"],
                                   dropout_rate=config.dropout_rate, **wanted)
    return training.compile(model, config, info, loss="mse", metrics=[keras.metrics.MeanAbsoluteError(name="mae")])


# === Scores: errors → a rolling Gaussian tail → [0, 1] ===


def _trailing(cumulative, end, size):
    """Sums over rows [end - size, end) from a zero-prefixed cumulative sum (B, T + 1), and counts."""
    start = tf.maximum(end - size, 0)
    return tf.gather(cumulative, end, axis=1) - tf.gather(cumulative, start, axis=1), tf.cast(end - start, cumulative.dtype)


def errors_to_scores(errors, averaging_window, history):
    """Errors (B, T) → anomaly scores (B, T) in [0, 1], each from rows up to its own only.

    z = (mean of the last `averaging_window` errors - mean of the `history` errors before them)
    / their standard deviation; score = log(Q(z) + 1e-10) / log(1e-10), Q the Gaussian tail.
    """
    errors = tf.cast(errors, tf.float64)
    steps = tf.shape(errors)[1]
    zero = tf.zeros_like(errors[:, :1])
    sums = tf.concat([zero, tf.cumsum(errors, axis=1)], axis=1)  # (B, T + 1)
    squares = tf.concat([zero, tf.cumsum(tf.square(errors), axis=1)], axis=1)
    rows = tf.range(steps)
    recent, count = _trailing(sums, rows + 1, averaging_window)
    short = recent / count  # (B, T)
    before = tf.maximum(rows + 1 - averaging_window, 0)  # the history ends where the short mean starts
    total, seen = _trailing(sums, before, history)
    total_squares, _ = _trailing(squares, before, history)
    mean = total / tf.maximum(seen, 1.0)
    variance = tf.maximum(total_squares / tf.maximum(seen, 1.0) - tf.square(mean), 0.0)
    std = tf.maximum(tf.sqrt(variance), 1e-4 + 1e-3 * tf.abs(mean))
    z = (short - mean) / std
    scores = _log_tail(0.5 * tf.math.erfc(z / np.sqrt(2.0)))
    return tf.where(seen[None, :] >= MIN_HISTORY, scores, tf.zeros_like(scores))


def _log_tail(tail):
    """A tail probability (float64) → log(tail + 1e-10) / log(1e-10), float32 in [0, 1]."""
    scores = tf.math.log(tail + EPSILON) / np.log(EPSILON)
    return tf.cast(tf.clip_by_value(scores, 0.0, 1.0), tf.float32)


def _shift(values, steps, fill):
    """values (B, T) moved `steps` rows later; the first `steps` rows become `fill`."""
    steps = tf.minimum(tf.cast(steps, tf.int32), tf.shape(values)[1])
    pad = tf.fill(tf.stack([tf.shape(values)[0], steps]), tf.cast(fill, values.dtype))
    return tf.concat([pad, values[:, :tf.shape(values)[1] - steps]], axis=1)


def trailing_max(values, size):
    """max(values[t - size + 1 .. t]) at every row t of (B, T); `size` >= 1 may be a tensor.

    Doubling: after j steps each row holds the maximum of its last 2^j rows; one more shifted
    maximum covers the rest, so the cost is O(T log size) for any size.
    """
    size = tf.maximum(tf.cast(size, tf.int32), 1)
    lowest = values.dtype.min
    level, width = tf.while_loop(
        lambda level, width: width * 2 <= size,
        lambda level, width: (tf.maximum(level, _shift(level, width, lowest)), width * 2),
        [values, tf.constant(1)],
    )
    return tf.maximum(level, _shift(level, size - width, lowest))


def suppress_repeats(scores, refractory):
    """scores (B, T) → max(0, s_t - max(s_{t-R}, ..., s_{t-1})), causal; R >= 1 rows (may be a tensor)."""
    recent = trailing_max(_shift(scores, 1, 0.0), refractory)
    return tf.maximum(scores - tf.maximum(recent, 0.0), 0.0)


# === Statistical detectors, fused with the network's score ===

STATISTICS = ("zscore", "seasonal", "extreme", "likelihood")
SEASONAL_MIN_CORRELATION = 0.6  # autocorrelation a period needs in the probationary period to be used
SEASONAL_AVERAGING = 10  # rows of the short-term mean of the seasonal residual
EXTREME_SCALE = 0.1  # deviations (of the probationary period) past the range seen so far that score 1 - 1/e


def statistics_names(text):
    """'zscore,seasonal' → ('zscore', 'seasonal'); an unknown name is a one-line error."""
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [name for name in names if name not in STATISTICS]
    if unknown:
        raise UserError(f"--statistics: unknown detector {unknown[0]!r}; choose from {', '.join(STATISTICS)} "
                        "(comma-separated), or '' for the network alone.")
    return names


def probationary_rows(steps):
    """NAB's probationary length min(floor(0.15 T), 750), at least 1, as an int32 tensor."""
    return tf.maximum(tf.minimum(tf.cast(tf.floor(0.15 * tf.cast(steps, tf.float32)), tf.int32), 750), 1)


def normalize_series(series):
    """Raw (B, T) → float32 (B, T) standardized by each row's probationary period, clipped."""
    series = tf.cast(series, tf.float32)
    head = series[:, :probationary_rows(tf.shape(series)[1])]
    mean = tf.reduce_mean(head, axis=1, keepdims=True)
    std = tf.math.reduce_std(head, axis=1, keepdims=True)
    scale = tf.maximum(std, 1e-3 * tf.maximum(tf.abs(mean), 1.0))
    return tf.clip_by_value((series - mean) / scale, -CLIP, CLIP)


def rolling_zscore(series, window):
    """Raw (B, T) → two-sided tail score of |x_t - mean| / std over the `window` rows before t."""
    values = tf.cast(series, tf.float64)
    steps = tf.shape(values)[1]
    zero = tf.zeros_like(values[:, :1])
    sums = tf.concat([zero, tf.cumsum(values, axis=1)], axis=1)
    squares = tf.concat([zero, tf.cumsum(tf.square(values), axis=1)], axis=1)
    rows = tf.range(steps)
    total, seen = _trailing(sums, rows, window)
    total_squares, _ = _trailing(squares, rows, window)
    mean = total / tf.maximum(seen, 1.0)
    std = tf.sqrt(tf.maximum(total_squares / tf.maximum(seen, 1.0) - tf.square(mean), 0.0))
    std = tf.maximum(std, 1e-6 * tf.maximum(tf.abs(mean), 1.0))
    z = tf.abs(values - mean) / std
    scores = _log_tail(tf.math.erfc(z / np.sqrt(2.0)))  # two-sided P(|Z| >= z)
    return tf.where(seen[None, :] >= MIN_HISTORY, scores, tf.zeros_like(scores))


def seasonal_period(values):
    """Normalized (B, T) → int32 (B,): each row's period, from its probationary period only.

    The lag (3 .. half the period) of the highest local maximum of the autocorrelation, if that
    is at least `SEASONAL_MIN_CORRELATION`; else 0 (no season). It may be a whole number of base
    cycles (nyc_taxi: the week, 336 half-hours, over the day); the seasonal-naive residual
    x_t - x_{t-P} works with either.
    """
    count = probationary_rows(tf.shape(values)[1])
    head = tf.cast(values[:, :count], tf.float64)
    head = head - tf.reduce_mean(head, axis=1, keepdims=True)
    size = 2 * count
    spectrum = tf.signal.rfft(tf.pad(head, [[0, 0], [0, size - count]]))
    power = tf.cast(tf.square(tf.abs(spectrum)), tf.complex128)
    lagged = tf.signal.irfft(power)[:, :count]  # (B, n): sum_i h_i h_{i+k}
    lags = tf.cast(tf.range(count), tf.float64)
    correlation = lagged / tf.maximum(lagged[:, :1], 1e-12) * tf.cast(count, tf.float64) / (
        tf.cast(count, tf.float64) - lags)
    middle = correlation[:, 1:-1]
    peak = (middle > correlation[:, :-2]) & (middle >= correlation[:, 2:])
    lag = tf.range(1, count - 1)
    usable = peak & (lag >= 3) & (lag <= count // 2 - 1) & (middle >= SEASONAL_MIN_CORRELATION)
    candidates = tf.where(usable, middle, tf.cast(-np.inf, middle.dtype))
    best = tf.argmax(candidates, axis=1, output_type=tf.int32)
    return tf.where(tf.reduce_any(usable, axis=1), best + 1, 0)


def seasonal_scores(values, history):
    """Normalized (B, T) → the rolling-Gaussian score of |x_t - x_{t-P}| (0 for rows without a period)."""
    period = seasonal_period(values)[:, None]  # (B, 1)
    rows = tf.range(tf.shape(values)[1])[None, :]
    previous = tf.gather(values, tf.maximum(rows - period, 0), batch_dims=1)
    valid = (period > 0) & (rows >= period)
    residual = tf.where(valid, tf.abs(values - previous), 0.0)
    scores = errors_to_scores(residual, SEASONAL_AVERAGING, history)
    return tf.where(period > 0, scores, 0.0)


def extreme_scores(values, history):
    """Normalized (B, T) → 1 - exp(-d / 0.1), d how far x_t lies outside the range of the `history` rows before it.

    A bounded memory, like the other detectors': after a lasting shift the range follows the
    series, so a new excursion scores again.
    """
    steps = tf.shape(values)[1]
    highest = _shift(trailing_max(values, history), 1, values.dtype.max)  # max(x_{t-H} .. x_{t-1})
    lowest = -_shift(trailing_max(-values, history), 1, values.dtype.max)
    beyond = tf.maximum(tf.maximum(values - highest, lowest - values), 0.0)
    scores = 1.0 - tf.exp(-beyond / EXTREME_SCALE)
    return tf.where(tf.range(steps)[None, :] >= MIN_HISTORY, scores, 0.0)


def likelihood_scores(values, averaging_window, history):
    """Normalized (B, T) → the anomaly likelihood of the naive forecast's errors |x_t - x_{t-1}|.

    As numenta's HTM anomaly likelihood does with its prediction errors: the tail probability of
    the mean of the last `averaging_window` errors under the Gaussian of the `history` errors
    before them (`errors_to_scores`), learned per series as it streams.
    """
    errors = tf.abs(values - _shift(values, 1, 0.0))
    errors = tf.concat([tf.zeros_like(errors[:, :1]), errors[:, 1:]], axis=1)  # (B, T): row 0 has no forecast
    return errors_to_scores(errors, averaging_window, history)


def fused_scores(series, info, network=None):
    """Raw series (B, T) → {name: scores (B, T)} of every detector in `info["statistics"]`, and the fusion.

    The anomaly score is the row-wise mean (or maximum: `info["fusion"]`; "max" when absent, the
    rule of runs before the field) over the network's score (`network`, if given) and the
    statistical detectors'; then, for `refractory` × T rows after a score, a later one counts
    only by how much it exceeds it (one alarm per event; NAB credits only the first detection in
    a window and charges every later one outside it).
    """
    values = normalize_series(series)
    parts = {} if network is None else {"network": network}
    for name in statistics_names(info.get("statistics", "")):
        if name == "zscore":
            parts[name] = rolling_zscore(series, info["history"])
        elif name == "seasonal":
            parts[name] = seasonal_scores(values, info["history"])
        elif name == "likelihood":
            parts[name] = likelihood_scores(values, info["averaging_window"], info["history"])
        else:
            parts[name] = extreme_scores(values, info["history"])
    if not parts:
        raise UserError("--statistics '' without a network: no detector is left to score with.")
    fusion = info.get("fusion", "max")
    if fusion not in FUSIONS:
        raise UserError(f"--fusion: unknown rule {fusion!r}; choose from {', '.join(FUSIONS)}.")
    stacked = tf.stack(list(parts.values()))  # (D, B, T)
    fused = tf.reduce_mean(stacked, axis=0) if fusion == "mean" else tf.reduce_max(stacked, axis=0)
    steps = tf.shape(fused)[1]
    refractory = tf.cast(tf.round(info.get("refractory", 0.0) * tf.cast(steps, tf.float32)), tf.int32)
    parts["anomaly_score"] = tf.cond(refractory > 0, lambda: suppress_repeats(fused, refractory), lambda: fused)
    return parts


def series_errors(model, series, window_length, horizon, forecast):
    """Raw series (B, T) float32 → per-row errors (B, T): normalization, windows, network, residuals.

    Every series is standardized by its own probationary period and left-padded with its first
    value, so row t's window (or the forecast of rows t-H+1..t) uses rows up to t only.
    """
    values = normalize_series(series)  # (B, T)
    span = window_length + (horizon if forecast else 0)
    padded = tf.concat([tf.repeat(values[:, :1], span - 1, axis=1), values], axis=1)  # (B, T + span - 1)
    frames = tf.signal.frame(padded, span, 1, axis=1)  # (B, T, span): frame t ends at row t
    flat = tf.reshape(frames, [-1, span])
    count = tf.shape(flat)[0]
    chunks = (count + CHUNK - 1) // CHUNK
    flat = tf.pad(flat, [[0, chunks * CHUNK - count], [0, 0]])
    inputs = tf.reshape(flat[:, :window_length], [chunks, CHUNK, window_length])
    outputs = tf.map_fn(lambda chunk: tf.cast(model(chunk, training=False), tf.float32), inputs,
                        fn_output_signature=tf.TensorSpec([CHUNK, None], tf.float32))
    outputs = tf.reshape(outputs, [chunks * CHUNK, -1])[:count]
    targets = flat[:count, window_length:] if forecast else flat[:count, :window_length]
    errors = tf.reduce_mean(tf.abs(outputs - targets), axis=1)
    return tf.reshape(errors, tf.shape(values))


def fuses_network(info):
    """Whether the network's score enters the fusion: `network_score`, or no statistics to fuse
    (runs from before the field always fused it)."""
    return bool(info.get("network_score", True)) or not statistics_names(info.get("statistics", ""))


def scorer(model, info):
    """A function raw series (B, T) → {"anomaly_score", "error"} (B, T), for one trained model."""
    forecast = series_networks.objective(model) == "forecast"

    def score(series):
        errors = series_errors(model, series, info["window_length"], info["horizon"], forecast)
        network = errors_to_scores(errors, info["averaging_window"], info["history"])
        parts = fused_scores(series, info, network if fuses_network(info) else None)
        return {"anomaly_score": parts["anomaly_score"], "error": errors, "network_score": network,
                **{f"{name}_score": parts[name] for name in statistics_names(info.get("statistics", ""))}}

    return score


def detector_scores(model, corpus, info):
    """Anomaly scores (T_i,) of every series of the corpus, one traced graph for all lengths."""
    score = tf.function(scorer(model, info), input_signature=[tf.TensorSpec([None, None], tf.float32)])
    return [score(tf.constant(one.values[None], tf.float32))["anomaly_score"].numpy()[0] for one in corpus.series]


# === Baselines ===


def rolling_zscore_scores(values, window):
    """The rolling z-score baseline of one raw series (T,) → scores (T,) (`rolling_zscore`)."""
    return rolling_zscore(np.asarray(values, np.float64)[None], window).numpy()[0]


def detector_metrics(scores, corpus, thresholds=None):
    """NAB scores under every profile and window-level P/R/F1 at the standard threshold."""
    windows = [one.window_indices() for one in corpus.series]
    if not any(windows):
        # No labels: NAB is undefined; the threshold is the highest score of the probationary periods.
        threshold = (thresholds or {}).get("standard")
        if threshold is None:
            heads = [s[MIN_HISTORY:nab.probationary_length(len(s))] for s in scores]
            threshold = float(max((h.max() for h in heads if len(h)), default=1.0)) + 1e-6
        detections = [s >= threshold for s in scores]
        events = sum(int((d & ~np.r_[False, d[:-1]])[nab.probationary_length(len(d)):].sum()) for d in detections)
        return {"thresholds": {"standard": threshold}, "threshold_rule": "probationary maximum",
                "detection_events": events, "note": "no labelled windows: NAB and window metrics undefined"}
    profiles = nab.all_profiles(scores, windows, thresholds)
    result = {f"nab_{name}": profiles[name]["score"] for name in nab.PROFILES}
    standard = profiles["standard"]["threshold"]
    result.update(nab.window_metrics([s >= standard for s in scores], windows))
    result["thresholds"] = {name: profiles[name]["threshold"] for name in nab.PROFILES}
    result["threshold_rule"] = "NAB optimizer over the corpus" if thresholds is None else "given"
    result["profiles"] = profiles
    return result


def baseline(config, data):
    """Rolling z-score (the baseline beside each metric), with null and random detectors nested."""
    corpus = data.corpus
    rng = np.random.default_rng(config.seed)
    detectors = {
        "null": [np.zeros(len(one)) for one in corpus.series],
        "random": [rng.uniform(0.0, 1.0, len(one)) for one in corpus.series],
        "rolling_zscore": [rolling_zscore_scores(one.values, config.zscore_window) for one in corpus.series],
    }
    results = {name: detector_metrics(scores, corpus) for name, scores in detectors.items()}
    result = {"name": f"rolling z-score ({config.zscore_window} rows)", **results["rolling_zscore"]}
    result["null"], result["random"] = results["null"], results["random"]
    if config.verbose and "nab_standard" in result:
        print("Baselines (NAB score per profile: standard / low FP / low FN):")
        for name, metrics in results.items():
            print(f"  {name:<16} " + " / ".join(f"{metrics[f'nab_{p}']:.2f}" for p in nab.PROFILES))
    return result


# === Evaluation and pictures ===


def evaluate(model, data, config, plots_dir=None):
    """NAB scores (three profiles, thresholds optimized over the corpus) and window P/R/F1.

    The thresholds found here travel with the model: into `info` (so the export's `detection`
    output uses the standard one) and into the run's info.json (for a later `export`).
    """
    scores = detector_scores(model, data.corpus, data.info)
    result = detector_metrics(scores, data.corpus)
    data.info["thresholds"] = result["thresholds"]
    if plots_dir is not None:
        plots_dir = pathlib.Path(plots_dir)
        info_file = plots_dir.parent / "info.json"
        if info_file.is_file():
            write_atomic(info_file, json.dumps(data.info, indent=2) + "\n")
        threshold = result["thresholds"]["standard"]
        for one, series_scores in list(zip(data.corpus.series, scores))[:config.max_plots]:
            name = one.key.replace("/", "__").removesuffix(".csv")
            with plots.best_effort(plots_dir / "series" / f"{name}.png") as path:
                plot_series(one, series_scores, threshold, path)
    return result


def plot_series(one, scores, threshold, path, title=None):
    """The series with its labelled windows (red bands), probationary period (grey) and detections."""
    import matplotlib.pyplot as plt

    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = np.arange(len(one))
    detected = detect(np.asarray(scores, np.float32)[None], threshold).numpy()[0]
    starts = np.flatnonzero(detected & ~np.r_[False, detected[:-1]])
    figure, (top, bottom) = plt.subplots(2, 1, figsize=(11, 4.2), sharex=True, height_ratios=[3, 1.4])
    top.plot(rows, one.values, lw=0.7, color="tab:blue")
    for axis in (top, bottom):
        axis.axvspan(0, nab.probationary_length(len(one)), color="grey", alpha=0.15, lw=0)
        for first, last in one.window_indices():
            axis.axvspan(first, last, color="tab:red", alpha=0.18, lw=0)
    top.scatter(starts, one.values[starts], color="red", marker="v", s=36, zorder=3, label="detection")
    top.set_title(title or f"{one.key}: windows (red), probationary (grey), {len(starts)} detection(s)", fontsize=9)
    bottom.plot(rows, scores, lw=0.7, color="black")
    bottom.axhline(threshold, color="red", lw=0.8, ls="--")
    bottom.set_ylim(0, 1.02)
    bottom.set_ylabel("score")
    bottom.set_xlabel("row")
    return plots.save(figure, path, dpi=90)


# === Export and predict ===


def detect(scores, threshold):
    """Scores (B, T) → detection bool (B, T): at or above `threshold`, and never inside the
    probationary period (NAB's min(floor(0.15 T), 750) rows, which it does not score). The one
    post-processing of the SavedModel's `detection`, which `predict` prints and the plots draw."""
    scores = tf.convert_to_tensor(scores, tf.float32)
    steps = tf.shape(scores)[-1]
    probation = tf.minimum(15 * steps // 100, 750)  # integer arithmetic: equals nab.probationary_length
    return (scores >= threshold) & (tf.range(steps) >= probation)


def serving(model, info):
    """`serving_default`: raw series float32 (B, T) → anomaly_score, error (B, T) and detection (B, T).

    The rows of one batch share a length; each is normalized by its own probationary period.
    `detection` is `detect`: score >= the standard profile's threshold (found in evaluation), after probation.
    """
    score = scorer(model, info)
    threshold = float((info.get("thresholds") or {}).get("standard", 1.0))

    def serve(series):
        outputs = score(series)
        outputs["detection"] = detect(outputs["anomaly_score"], threshold)
        return outputs

    rng = np.random.default_rng(0)
    steps = np.arange(3 * info["window_length"] + 200)
    example = (np.sin(steps / 8.0)[None] + rng.normal(0, 0.1, (2, len(steps)))).astype(np.float32)
    example[1, -40] += 5.0
    signature = [tf.TensorSpec([None, None], tf.float32, name="series")]
    return [export.Endpoint("serving_default", serve, signature, [example])]


def predict(inputs, model_path, output_dir="predictions"):
    """Scores each CSV with the exported model: one line each, a scores CSV and a plot."""
    loaded = export.load(model_path)
    info = loaded.info
    threshold = float((info.get("thresholds") or {}).get("standard", 1.0))
    signature = loaded.signatures["serving_default"]
    output = pathlib.Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    needed = info["window_length"] + info["horizon"]
    for name in inputs:
        file = pathlib.Path(name)
        if not file.is_file():
            raise UserError(f"{name}: no such CSV file.")
        one = series_readers.read_csv(file)
        if len(one) < needed:
            raise UserError(f"{name}: {len(one)} rows, fewer than the model's window + horizon = {needed}.")
        out = signature(series=tf.constant(one.values[None], tf.float32))
        scores = out["anomaly_score"].numpy()[0]
        detected = out["detection"].numpy()[0]  # the SavedModel's own post-processing (`detect`)
        starts = np.flatnonzero(detected & ~np.r_[False, detected[:-1]])
        lines = ["timestamp,value,anomaly_score,detection"] + [
            f"{str(t).replace('T', ' ')},{v:.10g},{s:.6f},{int(d)}"
            for t, v, s, d in zip(one.timestamps, one.values, scores, detected)
        ]
        write_atomic(output / f"{file.stem}_scores.csv", "\n".join(lines) + "\n")
        plot_series(one, scores, threshold, output / f"{file.stem}.png")
        fixes = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in one.report.items() if v)
        when = ", ".join(str(one.timestamps[i]).replace("T", " ") for i in starts[:5])
        print(f"{name}\t{len(one)} rows\t{len(starts)} detection(s) at threshold {threshold:.4f}"
              + (f": {when}{' ...' if len(starts) > 5 else ''}" if len(starts) else "")
              + (f"\t(fixed: {fixes})" if fixes else ""))
    return loaded.path


# === Train ===


def train(config, fresh=False):
    """The whole job: data → model → fit → evaluate + baseline → export. Returns the model."""
    return runner.train(sys.modules[__name__], config, fresh=fresh)


if __name__ == "__main__":
    cli.main(sys.modules[__name__])
