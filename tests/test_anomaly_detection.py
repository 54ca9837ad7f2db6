"""Anomaly detection: scores, baselines, the demo run end to end, export and predict, bad input, NAB."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import tasks.core.training  # noqa: F401  (registers LearningRateCurve for load_model)
from tasks import anomaly_detection as ad
from tasks.core import cli
from tasks.core.errors import UserError
from tasks.data import series as series_readers
from tests import helpers
from tests.helpers import assert_one_line_error

# A tiny forecaster on the demo series: seconds, enough to exercise every verb.
TINY = {"epochs": 2, "window_length": 32, "filters": 8, "verbose": 0, "max_plots": 3}


def tiny_config(tmp_path, **overrides):
    return ad.Config(runs_dir=str(tmp_path / "runs"), export_dir=str(tmp_path / "saved_models"),
                     **{**TINY, **overrides})


def write_csv(path, values, start="2020-01-01T00:00:00"):
    stamps = np.datetime64(start, "s") + np.arange(len(values)) * np.timedelta64(300, "s")
    lines = ["timestamp,value"] + [f"{str(t).replace('T', ' ')},{v}" for t, v in zip(stamps, values)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One training run on the demo series (in process) and its export."""
    workdir = tmp_path_factory.mktemp("anomaly_detection")
    config = tiny_config(workdir)
    model = ad.train(config)
    (run,) = (workdir / "runs" / "anomaly_detection").iterdir()
    return workdir, config, model, run


# === Scores ===


def test_errors_to_scores_flag_a_jump_and_stay_in_the_unit_interval():
    rng = np.random.default_rng(0)
    errors = np.abs(rng.normal(0, 1, (1, 1500))).astype(np.float32)
    errors[0, 1000] = 12.0
    plain = ad.errors_to_scores(errors, averaging_window=1, history=500).numpy()[0]
    assert plain.min() >= 0.0 and plain.max() <= 1.0
    assert plain[1000] > 0.99 and np.median(plain[100:]) < 0.1
    assert (plain[:ad.MIN_HISTORY] == 0).all()  # no history yet: no score


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 50, 400])
def test_trailing_max_is_the_brute_force_window_maximum(size):
    values = np.random.default_rng(size).normal(0, 1, (2, 300)).astype(np.float32)
    expected = np.stack([[row[max(t - size + 1, 0):t + 1].max() for t in range(300)] for row in values])
    np.testing.assert_array_equal(ad.trailing_max(tf.constant(values), tf.constant(size)).numpy(), expected)


def test_suppress_repeats_keeps_only_what_exceeds_the_recent_maximum():
    np.testing.assert_allclose(ad.suppress_repeats(tf.constant([[0.2, 0.5, 0.4, 0.9, 0.1]]), 2).numpy(),
                               [[0.2, 0.3, 0.0, 0.4, 0.0]], atol=1e-6)


def test_seasonal_period_is_found_in_the_probationary_period_only():
    rng = np.random.default_rng(2)
    steps = np.arange(4000)
    daily = np.sin(2 * np.pi * steps / 48) + rng.normal(0, 0.2, len(steps))
    noise = rng.normal(0, 1, len(steps))
    later = daily.copy()
    later[600:] = np.sin(2 * np.pi * steps[600:] / 30)  # after the 600-row probationary period
    periods = ad.seasonal_period(ad.normalize_series(tf.constant(np.stack([daily, noise, later]), tf.float32)))
    daily_lag, noise_lag, later_lag = periods.numpy().tolist()
    assert noise_lag == 0
    assert daily_lag == later_lag and daily_lag % 48 == 0 and 48 <= daily_lag <= 300  # a whole number of cycles


def test_seasonal_and_extreme_detectors_flag_what_the_zscore_cannot():
    rng = np.random.default_rng(3)
    steps = np.arange(3000)
    values = 10 + 5 * np.sign(np.sin(2 * np.pi * steps / 96)) + rng.normal(0, 0.3, len(steps))
    values[2000:2048] = 15 + rng.normal(0, 0.3, 48)  # a missing low half-cycle: every value is normal
    values[2600] = 25.0  # above everything seen before
    series = tf.constant(values[None], tf.float32)
    normalized = ad.normalize_series(series)
    seasonal = ad.seasonal_scores(normalized, history=4000).numpy()[0]
    zscore = ad.rolling_zscore(series, 4000).numpy()[0]
    extreme = ad.extreme_scores(normalized, history=4000).numpy()[0]
    assert seasonal[2000:2048].max() > 0.99 and np.median(seasonal[500:1900]) < 0.1
    assert zscore[2000:2048].max() < 0.5  # the values are ordinary; only their timing is not
    assert extreme[2600] > 0.99 and extreme[500:2600].max() < 0.5


def test_extreme_scores_compare_with_the_range_of_the_history_rows_only():
    values = np.zeros((1, 1000), np.float32)
    values[0, 100] = 5.0  # the highest value, 900 rows before the last row
    values[0, 999] = 4.0
    long = ad.extreme_scores(tf.constant(values), history=1000).numpy()[0]
    short = ad.extreme_scores(tf.constant(values), history=500).numpy()[0]
    assert long[999] == 0.0  # inside the range of every earlier row
    assert short[999] == pytest.approx(1.0 - np.exp(-4.0 / ad.EXTREME_SCALE))  # 5.0 has left the last 500 rows


def test_fused_scores_take_the_mean_or_the_maximum_then_one_alarm_per_event():
    rng = np.random.default_rng(4)
    values = rng.normal(0, 1, (1, 3000)).astype(np.float32)
    values[0, 2000:2005] += 12.0
    info = {"statistics": "zscore", "history": 1000, "refractory": 0.0, "fusion": "max"}
    raw = ad.fused_scores(tf.constant(values), info)
    np.testing.assert_array_equal(raw["anomaly_score"].numpy(), raw["zscore"].numpy())
    assert raw["zscore"].numpy()[0, 2000:2005].min() > 0.99
    once = ad.fused_scores(tf.constant(values), {**info, "refractory": 0.05})["anomaly_score"].numpy()[0]
    plain = raw["zscore"].numpy()[0]
    assert once[2000] == pytest.approx(plain[2000] - plain[1850:2000].max(), abs=1e-6)  # 0.05 × 3000 rows
    assert once[2000] > 0.5 and once[2001:2005].max() < 0.01  # one alarm, no repeat
    network = tf.constant(np.linspace(0, 1, 3000)[None], tf.float32)
    both = ad.fused_scores(tf.constant(values), info, network)
    np.testing.assert_allclose(both["anomaly_score"].numpy(), np.maximum(raw["zscore"].numpy(), network.numpy()))
    mean = ad.fused_scores(tf.constant(values), {**info, "fusion": "mean"}, network)["anomaly_score"].numpy()
    np.testing.assert_allclose(mean, (raw["zscore"].numpy() + network.numpy()) / 2, atol=1e-6)
    without = {key: value for key, value in info.items() if key != "fusion"}  # runs before --fusion: max
    np.testing.assert_array_equal(ad.fused_scores(tf.constant(values), without, network)["anomaly_score"].numpy(),
                                  both["anomaly_score"].numpy())
    with pytest.raises(UserError, match="--statistics: unknown detector 'spectral'"):
        ad.fused_scores(tf.constant(values), {**info, "statistics": "zscore,spectral"})
    with pytest.raises(UserError, match="--fusion: unknown rule 'median'"):
        ad.fused_scores(tf.constant(values), {**info, "fusion": "median"})


def test_rolling_zscore_baseline_flags_a_spike():
    rng = np.random.default_rng(1)
    values = rng.normal(10, 1, 2000)
    values[1500] += 15
    scores = ad.rolling_zscore_scores(values, window=200)
    assert scores[1500] > 0.99 and np.median(scores[300:]) < 0.2
    assert (scores[:ad.MIN_HISTORY] == 0).all()


def test_scores_never_see_the_future(demo_run):
    _, _, model, run = demo_run
    info = json.loads((run / "info.json").read_text())
    score = ad.scorer(model, info)
    values = series_readers.demo_series("none", seed=3).values[None].astype(np.float32)
    changed = values.copy()
    changed[0, 1500:] += 100.0  # after the probationary period (450 rows): the future
    before = score(tf.constant(values))["anomaly_score"].numpy()
    after = score(tf.constant(changed))["anomaly_score"].numpy()
    np.testing.assert_allclose(after[0, :1500], before[0, :1500], atol=1e-6)
    assert after[0, 1500] > 0.5  # ... and the jump itself is seen when it comes
    assert before.min() >= 0.0 and before.max() <= 1.0


def test_without_labels_the_threshold_comes_from_the_probationary_period():
    one = series_readers.demo_series("spike", seed=0)
    one.windows = []
    scores = np.zeros(len(one))
    scores[100] = 0.3  # inside the probationary period (450 rows): sets the threshold
    scores[[2000, 2001, 2500]] = [0.5, 0.6, 0.2]
    result = ad.detector_metrics([scores], series_readers.Corpus([one]))
    assert result["threshold_rule"] == "probationary maximum"
    assert result["thresholds"]["standard"] == pytest.approx(0.3, abs=1e-5)
    assert result["detection_events"] == 1 and "nab_standard" not in result


# === The demo run: metrics beside baselines, plots, export, predict ===


def test_demo_run_reports_nab_beside_null_random_and_zscore(demo_run):
    _, _, _, run = demo_run
    record = json.loads((run / "metrics.json").read_text())
    metrics, baseline = record["metrics"], record["baseline"]
    for key in ("nab_standard", "nab_reward_low_FP_rate", "nab_reward_low_FN_rate", "window_f1"):
        assert key in metrics and key in baseline
    assert baseline["name"].startswith("rolling z-score")
    assert baseline["null"]["nab_standard"] == pytest.approx(0.0)
    assert metrics["nab_standard"] > baseline["random"]["nab_standard"]
    assert metrics["threshold_rule"] == "NAB optimizer over the corpus"
    info = json.loads((run / "info.json").read_text())
    assert set(info["thresholds"]) == {"standard", "reward_low_FP_rate", "reward_low_FN_rate"}
    assert len(list((run / "plots" / "series").glob("*.png"))) == 3
    assert (run / "plots" / "training_curves.png").is_file()


def read_values(path):
    """The `value` column of a CSV, parsed by the standard library (not the task's reader)."""
    import csv

    with open(path, newline="") as handle:
        return np.array([float(row["value"]) for row in csv.DictReader(handle)])


def numpy_errors(model, values, window_length, horizon):
    """A forecaster's per-row errors in numpy: the series standardized by its probationary period
    (NAB's min(floor(0.15 T), 750) rows), left-padded with its first value, each row's window of
    `window_length` values through the Keras model, the mean |forecast - next `horizon` values|."""
    head = values[:max(min(int(np.floor(0.15 * len(values))), 750), 1)]
    scale = max(head.std(), 1e-3 * max(abs(head.mean()), 1.0))
    normalized = np.clip((values - head.mean()) / scale, -ad.CLIP, ad.CLIP).astype(np.float32)
    span = window_length + horizon
    padded = np.concatenate([np.full(span - 1, normalized[0], np.float32), normalized])
    frames = np.lib.stride_tricks.sliding_window_view(padded, span)  # (T, span): frame t ends at row t
    forecasts = model.predict(frames[:, :window_length], batch_size=1024, verbose=0)
    return np.mean(np.abs(forecasts - frames[:, window_length:]), axis=1)


@pytest.mark.subprocess
def test_export_and_predict_give_the_keras_forecasts(demo_run, tmp_path):
    workdir, config, model, run = demo_run
    export_root = workdir / "saved_models" / "anomaly_detection"
    (version,) = export_root.iterdir()
    assets = json.loads((version / "assets" / "info.json").read_text())
    assert "thresholds" in assets
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    assert set(signature.structured_outputs) == {"anomaly_score", "error", "detection", "network_score"} | {
        f"{name}_score" for name in ad.statistics_names(assets["statistics"])}
    csv = write_csv(tmp_path / "shift.csv", series_readers.demo_series("level_shift", seed=11).values)
    values = read_values(csv)
    served = signature(series=tf.constant(values[None], tf.float32))
    # The export's network errors are the Keras model's on windows cut in numpy.
    expected = numpy_errors(model, values, config.window_length, config.horizon)
    np.testing.assert_allclose(served["error"].numpy()[0], expected, atol=1e-4)
    # `predict` in a fresh process reloads the export on its own.
    result = helpers.run_cli("anomaly_detection", "predict", csv, "--model", export_root, "--output", tmp_path / "out",
                             cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "shift.csv\t3000 rows\t" in result.stdout and "detection(s) at threshold" in result.stdout
    rows = (tmp_path / "out" / "shift_scores.csv").read_text().splitlines()
    assert rows[0] == "timestamp,value,anomaly_score,detection" and len(rows) == 3001
    predicted = np.array([float(row.split(",")[2]) for row in rows[1:]])
    np.testing.assert_allclose(predicted, served["anomaly_score"].numpy()[0], atol=1e-5)
    assert [int(row.split(",")[3]) for row in rows[1:]] == served["detection"].numpy()[0].astype(int).tolist()
    assert (tmp_path / "out" / "shift.png").is_file()


def test_help_lists_every_config_field(capsys):
    with pytest.raises(SystemExit):
        cli.main(ad, ["train", "--help"])
    text = capsys.readouterr().out
    for field in ("--window-length", "--horizon", "--averaging-window", "--history", "--refractory", "--statistics",
                  "--fusion", "--zscore-window", "--labels", "--files", "--model", "--max-plots"):
        assert field in text


# === Bad input ===


def test_a_series_shorter_than_the_window_is_one_clear_error(tmp_path):
    csv = write_csv(tmp_path / "short.csv", np.arange(20.0))
    with pytest.raises(UserError, match=r"short.csv: 20 rows, fewer than --window-length \+ --horizon = 65"):
        ad.load_data(ad.Config(data=str(csv)))


def test_an_all_constant_series_is_one_clear_error(tmp_path):
    csv = write_csv(tmp_path / "flat.csv", np.full(500, 7.0))
    with pytest.raises(UserError, match=r"flat.csv: every value is the same \(7\)"):
        ad.load_data(ad.Config(data=str(csv)))


def test_non_numeric_values_and_labels_naming_a_missing_file_are_clear_errors(tmp_path):
    csv = write_csv(tmp_path / "words.csv", np.arange(200.0))
    lines = csv.read_text().splitlines()
    lines[5] = lines[5].rsplit(",", 1)[0] + ",n/a!"
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(UserError, match=r"words.csv, line 6: value 'n/a!' is not a number"):
        ad.load_data(ad.Config(data=str(csv)))
    good = write_csv(tmp_path / "good.csv", np.sin(np.arange(300.0)))
    labels = tmp_path / "windows.json"
    labels.write_text(json.dumps({"missing.csv": [["2020-01-01 01:00:00", "2020-01-01 02:00:00"]]}))
    with pytest.raises(UserError, match="labels name 'missing.csv', which is not a file"):
        ad.load_data(ad.Config(data=str(good), labels=str(labels)))


def test_cli_file_without_a_value_column_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,sensor,note\n2020-01-01 00:00:00,1,ok\n")  # three columns, none a value alias
    result = helpers.run_in_process(ad, capsys, tmp_path, "train", "--data", bad)
    assert_one_line_error(result, "bad.csv", "no 'value' column")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "saved_models").exists()


# === Real data: NAB ===


@pytest.mark.slow  # real NAB series, 7 s on two cores; the demo run keeps the fast lane's proof
def test_nab_known_cause_recipe_beats_the_rolling_zscore(shared_data, tmp_path):
    """realKnownCause (7 files, 69,561 rows): the default recipe's NAB standard score at least 20 points
    above the rolling z-score's and the random detector's. Measured at 2 epochs, seeds 0 / 1 / 2: 72.32
    each (z-score 24.94; random 27.37 / 0.25 / 7.39), 6-9 s each; with the trained forecaster fused
    (`--network-score true`, the default before) 72.23 / 72.11 / 72.16 against the statistics' 72.19.

    The claim is the statistical recipe's (z-score, seasonal, extreme and likelihood detectors, mean
    fusion, one alarm per event), not the network's: scored without the network, the detectors alone
    reach the recipe's score, so the network's contribution is not claimed. The z-score baseline is
    the control that removes the recipe. Trained without the export (`export_model=False`): the demo
    tests cover the export and `predict`.
    """
    from tasks.core import runner

    config = ad.Config(data=str(shared_data / "nab"), files="realKnownCause/*", epochs=NAB_EPOCHS,
                       runs_dir=str(tmp_path / "runs"), export_dir=str(tmp_path / "saved_models"), verbose=0,
                       max_plots=0)
    runner.train(ad, config, export_model=False)
    (run,) = (tmp_path / "runs" / "anomaly_detection").iterdir()
    record = json.loads((run / "metrics.json").read_text())
    ours, baseline = record["metrics"]["nab_standard"], record["baseline"]
    bar = max(baseline["nab_standard"], baseline["random"]["nab_standard"]) + 20.0
    info = json.loads((run / "info.json").read_text())
    corpus = ad.load_data(config).corpus
    statistics = [ad.fused_scores(tf.constant(one.values[None], tf.float32), info)["anomaly_score"].numpy()[0]
                  for one in corpus.series]
    alone = ad.detector_metrics(statistics, corpus)["nab_standard"]
    assert ours >= bar and alone >= bar, (ours, alone, bar)
    assert isinstance(keras.saving.load_model(run / "model.keras"), keras.Model)


NAB_EPOCHS = 2
