"""The NAB scorer on windows scored by hand, and the leave-one-category-out protocol of the benchmark."""

import math

import numpy as np
import pytest
import tensorflow as tf

from benchmarks import anomaly_detection as bench
from tasks import anomaly_detection as ad
from tasks.metrics import nab

# One series of 1,000 rows: the probationary period is floor(0.15 * 1000) = 150 rows; one window
# [500, 599], width w = 100. NAB's scaled sigmoid S(x) = 2 / (1 + exp(5x)) - 1 = tanh(-5x / 2).
# A detection at row i of the window is worth S(-(599 - i + 1) / w) / S(-1) (standard: tpWeight 1).
# The null detector misses the window: raw -fnWeight; the perfect one: +tpWeight. So under the
# standard profile (fn 1) the score is 100 (raw + 1) / 2; under low FN (fn 2) 100 (raw + 2) / 3.
LENGTH, WINDOW = 1000, (500, 599)


def nab_score(rows, profile="standard"):
    """The NAB score of detections (score 1.0) at `rows`, at the given threshold 0.5."""
    scores = np.zeros(LENGTH)
    scores[list(rows)] = 1.0
    return nab.corpus_score([scores], [[WINDOW]], nab.PROFILES[profile], threshold=0.5)["score"]


@pytest.mark.parametrize("row, expected", [
    (500, 100.0),  # the window's first row: S(-1) / S(-1) = 1 → raw 1 → 100 (1 + 1) / 2
    # the middle: S(-50/100) / S(-1) = tanh(1.25) / tanh(2.5) = 0.848284 / 0.986614 = 0.859787
    # → 100 (1 + 0.859787) / 2 = 92.99
    (550, 50.0 * (1.0 + math.tanh(1.25) / math.tanh(2.5))),
    # the last row: S(-1/100) / S(-1) = tanh(0.025) / tanh(2.5) = 0.024995 / 0.986614 = 0.025334 → 51.27
    (599, 50.0 * (1.0 + math.tanh(0.025) / math.tanh(2.5))),
])
def test_nab_scores_one_detection_by_its_place_in_the_window(row, expected):
    assert nab_score([row]) == pytest.approx(expected, abs=1e-9)
    assert round(nab_score([row]), 2) == {500: 100.0, 550: 92.99, 599: 51.27}[row]


def test_nab_charges_a_false_positive_by_its_place_and_profile():
    # Before the window: -fpWeight = -0.11, and the window is missed (-1): raw -1.11 → 100 (-0.11) / 2 = -5.5.
    assert nab_score([200]) == pytest.approx(-5.5, abs=1e-9)
    # Low FP (fpWeight 0.22): raw -1.22 → -11.
    assert nab_score([200], "reward_low_FP_rate") == pytest.approx(-11.0, abs=1e-9)
    # After the window at row 699: fpWeight S(|699 - 599| / (w - 1)) = 0.11 tanh(-2.5 * 100 / 99) = -0.108614;
    # with the window found at its start: raw 1 - 0.108614 → 100 (2 - 0.108614) / 2 = 94.57.
    assert nab_score([500, 699]) == pytest.approx(50.0 * (2.0 + 0.11 * math.tanh(-2.5 * 100 / 99)), abs=1e-9)
    # A detection inside the probationary period is not scored; only the window's best detection counts.
    assert nab_score([100, 550, 560]) == pytest.approx(nab_score([550]), abs=1e-12)
    # Low FN (fnWeight 2): the end-of-window hit gives raw 0.025334 → 100 (2 + 0.025334) / 3 = 67.51.
    assert nab_score([599], "reward_low_FN_rate") == pytest.approx(
        100.0 * (2.0 + math.tanh(0.025) / math.tanh(2.5)) / 3.0, abs=1e-9)


def test_vectorized_sweep_finds_nab_threshold_and_raw_score():
    rng = np.random.default_rng(0)
    lengths = [1200, 800, 1500]
    windows = [[(400, 449), (900, 960)], [], [(300, 320)]]
    scores = [np.round(rng.uniform(0, 1, n) ** 4, 3) for n in lengths]
    scores[0][403] = scores[2][303] = 1.0  # two windows found early
    flat = np.concatenate(scores)
    order = np.argsort(-flat, kind="stable")
    for name, profile in nab.PROFILES.items():
        sweeper = bench.Sweeper(lengths, windows, profile)
        for subset in ([0, 1, 2], [0, 2], [1]):
            threshold, raw = bench.best_threshold(sweeper, flat, order, np.array(subset))
            expected = nab.corpus_score([scores[i] for i in subset], [windows[i] for i in subset], profile)
            assert (threshold, raw) == pytest.approx((expected["threshold"], expected["raw"]), abs=1e-9), name


# === Leave one category out ===

def spike_corpus(held_out_window_row):
    """Categories X, Y (2 series each) and Z (6 series), 2,000 rows each; detector `a` fires at row
    1,000 of every series, detector `b` at row 1,500. X and Y are labelled at 1,000; Z at
    `held_out_window_row`."""
    categories = ["X"] * 2 + ["Y"] * 2 + ["Z"] * 6
    parts = {"a": [], "b": []}
    windows = []
    for category in categories:
        for name, row in (("a", 1000), ("b", 1500)):
            scores = np.zeros(2000, np.float32)
            scores[row] = 1.0
            parts[name].append(scores)
        start = 1000 if category != "Z" else held_out_window_row
        windows.append([(start, start + 49)])
    return parts, categories, windows


def test_loco_chooses_without_the_held_out_labels():
    grid = {"statistics": [("a",), ("b",)], "network": (False,), "fusion": ("mean",), "refractory": (0.0,),
            "averaging_window": (60,)}
    same = bench.loco(*spike_corpus(1000), grid)
    moved = bench.loco(*spike_corpus(1500), grid)
    # Z's labels decide the in-sample choice once they move to b's spikes (6 windows found by b
    # against 4 by a): read in a fold, they would flip its choice ...
    assert same["in_sample"]["recipe"]["statistics"] == ("a",)
    assert moved["in_sample"]["recipe"]["statistics"] == ("b",)
    # ... but the fold holding Z out chooses a on X and Y either way, and only its score changes.
    assert same["folds"]["Z"]["recipe"] == moved["folds"]["Z"]["recipe"]
    assert moved["folds"]["Z"]["recipe"]["statistics"] == ("a",)
    assert same["per_category"]["Z"]["standard"]["score"] == pytest.approx(100.0)
    assert moved["per_category"]["Z"]["standard"]["score"] < 0.0
    assert same["folds"]["Z"]["thresholds"] == moved["folds"]["Z"]["thresholds"]


def test_loco_pools_each_fold_at_its_own_threshold():
    grid = {"statistics": [("a",), ("b",)], "network": (False,), "fusion": ("mean",), "refractory": (0.0,),
            "averaging_window": (60,)}
    result = bench.loco(*spike_corpus(1000), grid)
    # Every fold picks a and finds every window at its first row: 10 windows, 10 hits, no false positive.
    pooled = result["held_out"]["standard"]
    assert pooled["score"] == pytest.approx(100.0) and (pooled["tp"], pooled["fp"]) == (10, 0)


def test_likelihood_flags_a_lasting_rise_in_forecast_errors():
    rng = np.random.default_rng(3)
    values = rng.normal(0, 1, (1, 4000)).astype(np.float32)
    values[0, 3000:3200] *= 4.0  # the same mean, four times the step-to-step change
    scores = ad.likelihood_scores(ad.normalize_series(tf.constant(values)), 10, 2000).numpy()[0]
    assert scores[3000:3200].max() > 0.99
    assert np.quantile(scores[500:3000], 0.99) < 0.5
