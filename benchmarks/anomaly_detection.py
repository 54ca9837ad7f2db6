"""Benchmark of the anomaly-detection task on NAB: the NAB score per detector and profile, run time.

Usage:
    python benchmarks/anomaly_detection.py --quick      # ~2 min: one category, 1 epoch; checks the script
    python benchmarks/anomaly_detection.py              # every series of ../shared/data/nab, 3 networks (~15 min)
    python benchmarks/anomaly_detection.py --models conv_forecaster --epochs 30

Measured in one process, in this order, on every series of `--data` (the NAB layout):

1. Recipe: `tasks.anomaly_detection.train` with the defaults (`conv_forecaster`; the package's
   whole path: reading and fixing the CSVs, training on the probationary periods, scoring every
   row, baselines, plots, export and its reload check), timed from call to return.
2. The other networks (`--models`): built by `tasks.anomaly_detection.build_model` on the same
   data, trained by `model.fit` for the same epochs or until `--budget-seconds` of training have
   passed (checked after each batch), scored by the same graph.
3. Baselines: null, random and the rolling z-score, scored the same way.

Every detector's threshold is optimized per profile over the whole corpus (NAB's optimizer).
Prints a Markdown section for BENCHMARKS.md on stdout (progress goes to stderr).
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.classification import log  # noqa: E402
from benchmarks.classification import machine  # noqa: E402
from tasks import anomaly_detection as ad  # noqa: E402
from tasks.core import config as config_lib  # noqa: E402
from tasks.core import training  # noqa: E402
from tasks.metrics import nab  # noqa: E402

PROFILES = list(nab.PROFILES)
# NAB v1.1 scoreboard (standard profile, all 7 categories, 58 files), for orientation only.
SCOREBOARD = {"ARTime": 74.9, "Numenta HTM": 70.1, "Random": 16.8, "Null": 0.0}


class TimeBudget(keras.callbacks.Callback):
    """Stops training once `seconds` of training time have passed; counts the epochs started."""

    def __init__(self, seconds):
        super().__init__()
        self.seconds = seconds

    def on_train_begin(self, logs=None):
        self.started = time.perf_counter()
        self.epochs = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epochs = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        if time.perf_counter() - self.started >= self.seconds:
            self.model.stop_training = True


def row(label, metrics, seconds, rows):
    return {
        "label": label,
        **{profile: metrics[f"nab_{profile}"] for profile in PROFILES},
        "window_f1": metrics["window_f1"], "found": f"{metrics['windows_found']}/{metrics['num_windows']}",
        "events": metrics["detection_events"], "seconds": round(seconds, 1),
        "rows_per_second": round(rows / seconds) if seconds else None,
    }


def recipe(args, workdir):
    config = config_lib.build(ad.Config, data=args.data, files=args.files, epochs=args.epochs,
                              runs_dir=str(workdir / "runs"), export_dir=str(workdir / "saved_models"), verbose=0)
    log(f"recipe: conv_forecaster, {args.epochs} epochs")
    started = time.perf_counter()
    ad.train(config, fresh=True)
    seconds = time.perf_counter() - started
    (run,) = (workdir / "runs" / "anomaly_detection").iterdir()
    return config, json.loads((run / "metrics.json").read_text()), seconds


def network(name, args, data):
    config = config_lib.build(ad.Config, data=args.data, files=args.files, epochs=args.epochs, model=name, verbose=0)
    training.setup(config)
    model = ad.build_model(config, data.info)
    log(f"{name}: training {args.epochs} epochs (at most {args.budget_seconds} s) on {data.info['num_train']} windows")
    budget = TimeBudget(args.budget_seconds)
    started = time.perf_counter()
    model.fit(data.train, validation_data=data.validation, epochs=config.epochs, verbose=0, shuffle=False,
              callbacks=[budget])
    trained = time.perf_counter()
    scores = ad.detector_scores(model, data.corpus, data.info)
    scored = time.perf_counter()
    return ad.detector_metrics(scores, data.corpus), trained - started, scored - trained, budget.epochs


def ablations(model, data):
    """The recipe's two halves, scored alone: its network (no statistics) and its statistics (no network)."""
    rows = []
    started = time.perf_counter()
    alone = ad.detector_scores(model, data.corpus, {**data.info, "statistics": ""})
    rows.append(row("└ its network alone (`--statistics ''`; scoring time only)", ad.detector_metrics(alone, data.corpus),
                    time.perf_counter() - started, data.info["num_rows"]))
    started = time.perf_counter()
    statistics = [ad.fused_scores(tf.constant(one.values[None], tf.float32), data.info)["anomaly_score"].numpy()[0]
                  for one in data.corpus.series]
    rows.append(row(f"└ its statistics alone ({data.info['statistics']}, {data.info['fusion']} fusion; no network)",
                    ad.detector_metrics(statistics, data.corpus), time.perf_counter() - started, data.info["num_rows"]))
    return rows


def baselines(config, data):
    rows = []
    corpus = data.corpus
    rng = np.random.default_rng(config.seed)
    makers = {
        "null": lambda one: np.zeros(len(one)),
        "random (uniform scores)": lambda one: rng.uniform(0, 1, len(one)),
        f"rolling z-score ({config.zscore_window} rows)": lambda one: ad.rolling_zscore_scores(one.values, config.zscore_window),
    }
    for label, make in makers.items():
        started = time.perf_counter()
        scores = [make(one) for one in corpus.series]
        metrics = ad.detector_metrics(scores, corpus)
        rows.append(row(label, metrics, time.perf_counter() - started, data.info["num_rows"]))
    return rows


def by_category(config, data, model_scores):
    """Standard score per NAB category (its own optimized threshold): the recipe vs the rolling z-score."""
    corpus = data.corpus
    zscores = [ad.rolling_zscore_scores(one.values, config.zscore_window) for one in corpus.series]
    result = []
    for category in sorted({one.key.split("/")[0] for one in corpus.series}):
        index = [i for i, one in enumerate(corpus.series) if one.key.startswith(category + "/")]
        windows = [corpus.series[i].window_indices() for i in index]
        if not any(windows):
            continue
        ours = nab.corpus_score([model_scores[i] for i in index], windows, nab.PROFILES["standard"])["score"]
        theirs = nab.corpus_score([zscores[i] for i in index], windows, nab.PROFILES["standard"])["score"]
        result.append((category, len(index), ours, theirs))
    return result


def markdown(result):
    m = result["machine"]
    lines = [
        "## Time-series anomaly detection (NAB, the 5 categories in ../shared/data/nab)",
        "",
        f"Machine: {m['nproc']} cores, {m['cpu']}, load {m['load_average_1min']} at start; TF {m['tensorflow']}, "
        f"Keras {m['keras']}." + (" **Quick mode: not a benchmark.**" if result["quick"] else ""),
        "",
        f"Data: {result['num_series']} series, {result['num_rows']:,} rows, {result['num_windows']} labelled windows "
        "(NAB's artificialNoAnomaly, artificialWithAnomaly, realAdExchange, realKnownCause, realTraffic; "
        "realAWSCloudwatch and realTweets are not in this copy, so these scores are **not** the scoreboard's, "
        "which cover all 7 categories and 58 files).",
        "",
        f"Recipe: `python -m tasks.anomaly_detection train --data {result['data']} --epochs {result['epochs']}"
        + (f" --files '{result['files']}'" if result["files"] else "") + "`"
        f" — {result['recipe_seconds']:.0f} s wall from call to return (read, train, score, baselines, plots, export + reload check).",
        "",
        "| detector | standard | reward_low_FP_rate | reward_low_FN_rate | window F1 | windows found | alarms | seconds | rows/s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        lines.append(
            f"| {r['label']} | {r['standard']:.2f} | {r['reward_low_FP_rate']:.2f} | {r['reward_low_FN_rate']:.2f} "
            f"| {r['window_f1']:.3f} | {r['found']} | {r['events']} | {r['seconds']} | {r['rows_per_second'] or ''} |"
        )
    lines += [
        "",
        "Seconds: networks = training + scoring every row (the recipe's row: the whole `train` call); baselines = "
        f"scoring. The other networks train for the recipe's epochs or {result['budget_seconds']:.0f} s, "
        "whichever ends first.",
        "",
        "Standard score per category (the recipe vs the rolling z-score), threshold optimized per category:",
        "",
        "| category | files | recipe | rolling z-score |",
        "|---|---|---|---|",
    ]
    for category, files, ours, theirs in result["categories"]:
        lines.append(f"| {category} | {files} | {ours:.2f} | {theirs:.2f} |")
    lines += [
        "",
        "NAB scoreboard (standard, all 7 categories): " + ", ".join(f"{k} {v}" for k, v in SCOREBOARD.items()) + ".",
        "",
        "Command: `python benchmarks/anomaly_detection.py" + (" --quick" if result["quick"] else "")
        + (f" --budget-seconds {result['budget_seconds']:.0f}" if result["budget_seconds"] != 150 else "") + "`",
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "nab"))
    parser.add_argument("--files", default="", help="Series to use (default: all).")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--models", default="conv_autoencoder,lstm_autoencoder",
                        help="Networks trained beside the recipe's conv_forecaster.")
    parser.add_argument("--budget-seconds", type=float, default=150.0, help="Training time cap per extra network.")
    parser.add_argument("--quick", action="store_true", help="One category, 1 epoch: checks the script.")
    args = parser.parse_args(argv)
    if args.quick:
        args.files, args.epochs = args.files or "realKnownCause/*", 1
    result = {"machine": machine(), "quick": args.quick, "data": args.data, "epochs": args.epochs,
              "files": args.files, "budget_seconds": args.budget_seconds}
    with tempfile.TemporaryDirectory() as scratch:
        config, record, seconds = recipe(args, pathlib.Path(scratch))
        data = ad.load_data(config)
        result["recipe_seconds"] = seconds
        result.update(num_series=data.info["num_series"], num_rows=data.info["num_rows"], num_windows=data.info["num_windows"])
        rows = [row("conv_forecaster + statistics (recipe)", record["metrics"], seconds, data.info["num_rows"])]
        model = keras.saving.load_model(next((pathlib.Path(scratch) / "runs" / "anomaly_detection").iterdir()) / "model.keras")
        model_scores = ad.detector_scores(model, data.corpus, data.info)
        rows += ablations(model, data)
    for name in [name for name in args.models.split(",") if name]:
        metrics, train_seconds, score_seconds, epochs = network(name, args, data)
        rows.append(row(f"{name} + statistics ({epochs} epoch(s), {train_seconds:.0f} s training)", metrics,
                        train_seconds + score_seconds, data.info["num_rows"]))
    log("baselines")
    rows += baselines(config, data)
    result["rows"] = rows
    result["categories"] = by_category(config, data, model_scores)
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
