"""Benchmark of the anomaly-detection task on NAB: the NAB score per detector and profile, run time.

Usage:
    python benchmarks/anomaly_detection.py --quick      # ~2 min: one category, 1 epoch; checks the script
    python benchmarks/anomaly_detection.py              # every series of ../shared/data/nab, 3 networks (~15 min)
    python benchmarks/anomaly_detection.py --models conv_forecaster --epochs 30
    python benchmarks/anomaly_detection.py --protocol loco --epochs 3   # leave one category out (~4 min)
    python benchmarks/anomaly_detection.py --protocol loco --no-network # the statistics only (~2 min)

`--protocol loco` holds out each category in turn: every recipe of `GRID` (detector set, with or
without the network, fusion, refractory, averaging window) is scored on the other categories, the
best one and its thresholds are applied to the held-out one; the held-out categories are pooled
and shown beside the in-sample choice, sub-grid ablations and a random detector over 10 seeds.

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
import itertools
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


# === Leave one category out ===

# The grid every knob is chosen from, on the training categories only. `history` (rows of the
# long-run distribution) stays at the Config default; the threshold is NAB's optimum on the
# training categories, per profile.
GRID = {
    "statistics": [names for size in range(len(ad.STATISTICS) + 1)
                   for names in itertools.combinations(ad.STATISTICS, size)],
    "network": (False, True),
    "fusion": ad.FUSIONS,
    "refractory": (0.0, 0.02, 0.05, 0.1),
    "averaging_window": (10, 60),
}


def recipes(grid, with_network=True):
    """Every distinct recipe of the grid: averaging only where a likelihood or the network uses it,
    fusion only where two or more detectors are fused."""
    seen = []
    for names, network, fusion, refractory, averaging in itertools.product(
            grid["statistics"], grid["network"], grid["fusion"], grid["refractory"], grid["averaging_window"]):
        if (network and not with_network) or not (names or network):
            continue
        averaged = network or "likelihood" in names
        recipe = {"statistics": tuple(names), "network": network,
                  "fusion": fusion if len(names) + network > 1 else "mean",
                  "refractory": refractory, "averaging_window": averaging if averaged else None}
        if recipe not in seen:
            seen.append(recipe)
    return seen


def recipe_label(recipe):
    names = list(recipe["statistics"]) + (["network"] if recipe["network"] else [])
    text = "+".join(names) + f", {recipe['fusion']}, refractory {recipe['refractory']:g}"
    return text + (f", averaging {recipe['averaging_window']}" if recipe["averaging_window"] else "")


def components(series, history, averaging_windows, network_errors=None):
    """Each detector's scores, from the values alone (no label is read): {name: [scores (T_i,)]}.

    Averaged detectors are keyed `name@window`; the network's errors (one per series, from one
    trained model) are turned into scores once per averaging window and reused across the grid.
    """
    parts = {}
    for index, values in enumerate(series):
        raw = tf.constant(np.asarray(values, np.float32)[None])
        normalized = ad.normalize_series(raw)
        found = {"zscore": ad.rolling_zscore(raw, history), "seasonal": ad.seasonal_scores(normalized, history),
                 "extreme": ad.extreme_scores(normalized, history)}
        for window in averaging_windows:
            found[f"likelihood@{window}"] = ad.likelihood_scores(normalized, window, history)
            if network_errors is not None:
                errors = tf.constant(network_errors[index][None])
                found[f"network@{window}"] = ad.errors_to_scores(errors, window, history)
        for name, scores in found.items():
            parts.setdefault(name, []).append(scores.numpy()[0].astype(np.float32))
    return parts


def fuse(parts, recipe):
    """The recipe's anomaly scores [(T_i,)], as `ad.fused_scores` computes them."""
    names = [f"{name}@{recipe['averaging_window']}" if name == "likelihood" else name for name in recipe["statistics"]]
    names = (["network@%d" % recipe["averaging_window"]] if recipe["network"] else []) + names
    result = []
    for index in range(len(parts[names[0]])):
        stacked = np.stack([parts[name][index] for name in names])  # (D, T)
        fused = stacked.mean(axis=0) if recipe["fusion"] == "mean" else stacked.max(axis=0)
        rows = int(round(np.float32(recipe["refractory"]) * np.float32(len(fused))))
        if rows > 0:
            fused = ad.suppress_repeats(tf.constant(fused[None]), rows).numpy()[0]
        result.append(fused)
    return result


class Sweeper:
    """NAB's threshold sweep (`nab._sweep`) vectorized, over any subset of a fixed corpus's series.

    The per-row weights depend on the labels; they are built once per profile, and a subset's
    sweep reads only the rows of its series (`rows_of`), so a held-out series' labels never
    enter a training-category choice.
    """

    def __init__(self, lengths, windows, profile):
        self.profile = profile
        weights, window_of, owner = [], [], []
        offset = 0
        for index, (length, series_windows) in enumerate(zip(lengths, windows)):
            w, k = nab.sweep_weights(length, series_windows, profile)
            weights.append(w)
            window_of.append(np.where(k >= 0, k + offset, k))
            owner.append(np.full(length, index))
            offset += len(series_windows)
        self.weights, self.window_of, self.owner = (np.concatenate(x) for x in (weights, window_of, owner))

    def sweep(self, scores, order, subset):
        """(thresholds, raw) of the series in `subset`, scores concatenated and `order` their descending sort."""
        keep = np.isin(self.owner[order], subset) & (self.window_of[order] != -2)
        rows = order[keep]
        scores, weights, window_of = scores[rows], self.weights[rows], self.window_of[rows]
        fn = self.profile["fnWeight"]
        delta = np.where(window_of < 0, weights, 0.0)
        inside = np.flatnonzero(window_of >= 0)
        if len(inside):  # a window is worth its best detection: running maximum per window, in score order
            by_window = inside[np.argsort(window_of[inside], kind="stable")]
            group = window_of[by_window]
            first = np.r_[True, group[1:] != group[:-1]]
            offset = 10.0 * np.cumsum(first)  # segments never mix: weights lie in [-2, 1]
            running = np.maximum(np.maximum.accumulate(weights[by_window] + offset) - offset, -fn)
            delta[by_window] = running - np.where(first, -fn, np.r_[-fn, running[:-1]])
        start = -fn * len(np.unique(window_of[window_of >= 0]))
        ends = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True]) if len(scores) else np.array([], int)
        return np.r_[nab.NO_DETECTION, scores[ends]], np.r_[start, start + np.cumsum(delta)[ends]]


def best_threshold(sweeper, scores, order, subset):
    thresholds, raw = sweeper.sweep(scores, order, subset)
    best = int(np.argmax(raw))
    return float(thresholds[best]), float(raw[best])


def held_out_scores(scores_by_fold, windows, thresholds_by_fold, profile):
    """The pooled NAB score of per-fold detections: each fold's series thresholded by its own threshold."""
    detections, pooled_windows = [], []
    for fold, series_scores in scores_by_fold.items():
        for index, scores in series_scores:
            detections.append((scores >= thresholds_by_fold[fold]).astype(np.float64))
            pooled_windows.append(windows[index])
    return nab.corpus_score(detections, pooled_windows, profile, threshold=0.5)


def loco(parts, categories, windows, grid, memo=None, log_every=0):
    """Leave one category out: per held-out category, every recipe of `grid` is scored on the other
    categories (NAB standard, threshold optimized there), the best one and its thresholds (one
    per profile, also from the other categories) are applied to the held-out category.

    Args:
        parts: dict. `components` of every series.
        categories: list of str, one per series.
        windows: list of lists of (first, last), one per series; a fold's choice reads only the
            training categories' entries.
        grid: dict. Lists of values per knob (`GRID`).
        memo: dict or None. Each recipe's training scores per fold, kept across calls on the
            same corpus (sub-grids of one grid cost nothing more).

    Returns:
        A dict: `folds` {category: {"recipe", "thresholds", "train_score"}}, `held_out`
        {profile: pooled result}, `per_category` {category: {profile: result}}, `in_sample`
        (the best recipe on every category, scored there).
    """
    lengths = [len(scores) for scores in next(iter(parts.values()))]
    names = sorted(set(categories))
    index_of = {name: [i for i, c in enumerate(categories) if c == name] for name in names}
    sweepers = {profile: Sweeper(lengths, windows, nab.PROFILES[profile]) for profile in PROFILES}
    with_network = any(name.startswith("network@") for name in parts)
    candidates = recipes(grid, with_network)
    subsets = {name: np.array([i for i in range(len(lengths)) if categories[i] != name]) for name in names}
    subsets[None] = np.arange(len(lengths))  # in-sample: every category
    best = {fold: (-np.inf, None) for fold in subsets}
    memo = {} if memo is None else memo
    for number, recipe in enumerate(candidates):
        key = tuple(sorted(recipe.items()))
        if key not in memo:
            scores = np.concatenate(fuse(parts, recipe))
            order = np.argsort(-scores, kind="stable")
            memo[key] = {fold: best_threshold(sweepers["standard"], scores, order, subset)[1]
                         for fold, subset in subsets.items()}
        for fold, raw in memo[key].items():
            if raw > best[fold][0] + 1e-9:  # ties keep the earlier (simpler) recipe
                best[fold] = (raw, recipe)
        if log_every and (number + 1) % log_every == 0:
            log(f"loco: {number + 1}/{len(candidates)} recipes")
    result = {"folds": {}, "per_category": {}, "num_recipes": len(candidates)}
    fold_scores, fold_thresholds = {}, {profile: {} for profile in PROFILES}
    for fold, subset in subsets.items():
        recipe = best[fold][1]
        fused = fuse(parts, recipe)
        scores = np.concatenate(fused)
        order = np.argsort(-scores, kind="stable")
        thresholds = {profile: best_threshold(sweepers[profile], scores, order, subset)[0] for profile in PROFILES}
        if fold is None:
            result["in_sample"] = {"recipe": recipe, "thresholds": thresholds, **{
                profile: nab.corpus_score(fused, windows, nab.PROFILES[profile]) for profile in PROFILES}}
            continue
        held = index_of[fold]
        result["folds"][fold] = {"recipe": recipe, "thresholds": thresholds}
        fold_scores[fold] = [(i, fused[i]) for i in held]
        result["per_category"][fold] = {
            profile: nab.corpus_score([fused[i] for i in held], [windows[i] for i in held], nab.PROFILES[profile],
                                      threshold=thresholds[profile]) for profile in PROFILES}
        for profile in PROFILES:
            fold_thresholds[profile][fold] = thresholds[profile]
    result["held_out"] = {profile: held_out_scores(fold_scores, windows, fold_thresholds[profile],
                                                   nab.PROFILES[profile]) for profile in PROFILES}
    return result


def fixed(parts, categories, windows, recipe):
    """One recipe without a choice: in-sample (threshold on every category) and LOCO (threshold
    only from the other categories), {"in_sample": {profile: ...}, "held_out": {profile: ...}}."""
    grid = {"statistics": [recipe["statistics"]], "network": (recipe["network"],), "fusion": (recipe["fusion"],),
            "refractory": (recipe["refractory"],), "averaging_window": (recipe["averaging_window"] or 60,)}
    return loco(parts, categories, windows, grid)


def network_errors(args, corpus):
    """One conv_forecaster (the Config defaults, `--epochs`) trained on every probationary period
    (no labels), and its per-row errors of every series; cached in `--cache` when given."""
    cache = pathlib.Path(args.cache) if args.cache else None
    if cache is not None and cache.is_file():
        stored = np.load(cache)
        log(f"network errors from {cache}")
        return [stored[one.key] for one in corpus.series]
    config = config_lib.build(ad.Config, data=args.data, epochs=args.epochs, verbose=0)
    training.setup(config)
    data = ad.load_data(config)
    model = ad.build_model(config, data.info)
    log(f"network: conv_forecaster, {args.epochs} epochs on {data.info['num_train']} probationary windows")
    model.fit(data.train, validation_data=data.validation, epochs=config.epochs, verbose=0)
    forecast = ad.is_forecaster(config.model)
    errors = [ad.series_errors(model, tf.constant(one.values[None], tf.float32), config.window_length,
                               config.horizon, forecast).numpy()[0] for one in corpus.series]
    if cache is not None:
        np.savez(cache, **{one.key: e for one, e in zip(corpus.series, errors)})
    return errors


def random_baseline(categories, windows, lengths, seeds=10):
    """Uniform random scores, seeds 0..9: in-sample and LOCO standard / low-FP / low-FN, mean and sd."""
    rows = {"in_sample": [], "held_out": []}
    grid = {"statistics": [("random",)], "network": (False,), "fusion": ("mean",), "refractory": (0.0,),
            "averaging_window": (60,)}
    for seed in range(seeds):
        rng = np.random.default_rng(seed)
        parts = {"random": [rng.uniform(0, 1, length).astype(np.float32) for length in lengths]}
        result = loco(parts, categories, windows, grid)
        for key in rows:
            rows[key].append([result[key][profile]["score"] for profile in PROFILES])
    return {key: (np.mean(value, axis=0), np.std(value, axis=0)) for key, value in rows.items()}


def loco_markdown(result):
    m = result["machine"]
    fmt = lambda scores: " / ".join(f"{scores[p]['score']:.2f}" for p in PROFILES)  # noqa: E731
    lines = [
        "## Time-series anomaly detection: leave one category out",
        "",
        f"Machine: {m['nproc']} cores, {m['cpu']}, load {m['load_average_1min']} at start; TF {m['tensorflow']}.",
        f"Data: {result['num_series']} series in {len(result['categories'])} categories, {result['num_windows']} windows. "
        f"Grid: {result['num_recipes']} recipes (detector set incl. the network or not, fusion, refractory, "
        "averaging window); the threshold per profile; all chosen on the other categories (standard profile).",
        "",
        "| held out | files | windows | recipe chosen on the others | standard / low FP / low FN held out | FP rows |",
        "|---|---|---|---|---|---|",
    ]
    for category, fold in result["loco"]["folds"].items():
        scores = result["loco"]["per_category"][category]
        lines.append(f"| {category} | {result['files'][category]} | {result['windows'][category]} | "
                     f"{recipe_label(fold['recipe'])} | {fmt(scores)} | {scores['standard']['fp']} |")
    lines += [
        "",
        "| detector | LOCO pooled held out (standard / low FP / low FN) | in sample | gap (standard) |",
        "|---|---|---|---|",
    ]
    for label, protocol in result["protocols"].items():
        held, inside = protocol["held_out"], protocol["in_sample"]
        picks = sorted({recipe_label(fold["recipe"]) for fold in protocol["folds"].values()})
        lines.append(f"| protocol, {label}: picks {'; '.join(picks)} | **{fmt(held)}** | {fmt(inside)} "
                     f"(picks {recipe_label(inside['recipe'])}) | {inside['standard']['score'] - held['standard']['score']:.2f} |")
    for label, scores in result["fixed"].items():
        lines.append(f"| {label} | {fmt(scores['held_out'])} | {fmt(scores['in_sample'])} | "
                     f"{scores['in_sample']['standard']['score'] - scores['held_out']['standard']['score']:.2f} |")
    spread = {key: " / ".join(f"{a:.2f} ± {b:.2f}" for a, b in zip(*result["random"][key])) for key in result["random"]}
    lines.append(f"| random, seeds 0-9 (mean ± sd) | {spread['held_out']} | {spread['in_sample']} | |")
    lines += ["", "Command: `python benchmarks/anomaly_detection.py --protocol loco"
              + (f" --epochs {result['epochs']}" if result["network"] else " --no-network") + "`"
              f" ({result['seconds']:.0f} s)"]
    return "\n".join(lines)


def run_loco(args):
    started = time.perf_counter()
    corpus = ad.series_readers.read_corpus(args.data, files=args.files)
    series = [one.values for one in corpus.series]
    categories = [one.key.split("/")[0] for one in corpus.series]
    defaults = ad.Config()
    errors = network_errors(args, corpus) if args.network else None
    log(f"loco: detector scores of {len(series)} series")
    parts = components(series, defaults.history, GRID["averaging_window"], errors)
    windows = [one.window_indices() for one in corpus.series]  # read here, used per fold by `loco`
    result = {"machine": machine(), "epochs": args.epochs, "network": args.network, "num_series": len(series),
              "num_windows": sum(len(w) for w in windows), "categories": sorted(set(categories)),
              "files": {c: categories.count(c) for c in set(categories)},
              "windows": {c: sum(len(w) for w, k in zip(windows, categories) if k == c) for c in set(categories)}}
    memo = {}
    grid = {**GRID, "network": (False, True) if args.network else (False,)}
    result["loco"] = loco(parts, categories, windows, grid, memo, log_every=50)
    result["num_recipes"] = result["loco"]["num_recipes"]
    result["protocols"] = {"every knob" if args.network else "every knob, no network": result["loco"]}
    if args.network:
        result["protocols"]["no network"] = loco(parts, categories, windows, {**GRID, "network": (False,)}, memo)
    older = [names for names in GRID["statistics"] if "likelihood" not in names]
    result["protocols"]["no network, no likelihood"] = loco(
        parts, categories, windows, {**GRID, "statistics": older, "network": (False,)}, memo)
    if args.network:
        result["protocols"]["the network alone"] = loco(
            parts, categories, windows, {**GRID, "statistics": [()], "network": (True,)}, memo)
    current = {"statistics": tuple(ad.statistics_names(defaults.statistics)), "network": defaults.network_score,
               "fusion": defaults.fusion, "refractory": defaults.refractory,
               "averaging_window": defaults.averaging_window}
    result["fixed"] = {f"the Config defaults, fixed ({recipe_label(current)})": fixed(parts, categories, windows, current)}
    if args.network:
        fused = {**current, "statistics": ("zscore", "seasonal", "extreme"), "network": True}
        result["fixed"][f"{recipe_label(fused)}, fixed"] = fixed(parts, categories, windows, fused)
    for name in ad.STATISTICS:
        one = {"statistics": (name,), "network": False, "fusion": "mean", "refractory": defaults.refractory,
               "averaging_window": defaults.averaging_window}
        result["fixed"][f"{name} alone, refractory {defaults.refractory:g}"] = fixed(parts, categories, windows, one)
    if args.network:
        alone = {"statistics": (), "network": True, "fusion": "mean", "refractory": defaults.refractory,
                 "averaging_window": defaults.averaging_window}
        result["fixed"][f"network alone ({recipe_label(alone)})"] = fixed(parts, categories, windows, alone)
    log("loco: random baseline, 10 seeds")
    result["random"] = random_baseline(categories, windows, [len(s) for s in series])
    result["seconds"] = time.perf_counter() - started
    print(loco_markdown(result))
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--data", default=str(REPO.parent / "shared" / "data" / "nab"))
    parser.add_argument("--files", default="", help="Series to use (default: all).")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--models", default="conv_autoencoder,lstm_autoencoder",
                        help="Networks trained beside the recipe's conv_forecaster.")
    parser.add_argument("--budget-seconds", type=float, default=150.0, help="Training time cap per extra network.")
    parser.add_argument("--quick", action="store_true", help="One category, 1 epoch: checks the script.")
    parser.add_argument("--protocol", choices=("recipe", "loco"), default="recipe",
                        help="recipe: the default recipe and the other networks, in sample; loco: leave one "
                        "category out, every knob chosen on the other categories.")
    parser.add_argument("--no-network", dest="network", action="store_false",
                        help="loco: the statistical detectors only (no network is trained).")
    parser.add_argument("--cache", default="", help="loco: an .npz file keeping the network's per-row errors.")
    args = parser.parse_args(argv)
    if args.protocol == "loco":
        return run_loco(args)
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
