"""The NAB score (`tasks.metrics.nab`) on cases with known answers, and against a direct reference.

The reference below is a plain, row-by-row reading of numenta/NAB's `Scorer.getScore` (v1.1,
with the sweeper's TP position `-(last - i + 1) / width` and probationary rows dropped), written
independently of the vectorized sweep under test.
"""

import math

import numpy as np
import pytest

from tasks.metrics import nab

STANDARD = nab.PROFILES["standard"]


def sigmoid_credit(position):
    return -1.0 if position > 3.0 else 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def reference_raw(scores, windows, profile, threshold):
    """One series' raw NAB score at `threshold`, row by row."""
    probation = nab.probationary_length(len(scores))
    detections = [i for i in range(probation, len(scores)) if scores[i] >= threshold]
    total = 0.0
    for first, last in windows:
        if last < probation:
            continue
        hits = [i for i in detections if first <= i <= last]
        if hits:
            width = last - first + 1
            total += sigmoid_credit(-(last - hits[0] + 1) / width) * profile["tpWeight"] / sigmoid_credit(-1.0)
        else:
            total -= profile["fnWeight"]
    for i in detections:
        if any(first <= i <= last for first, last in windows):
            continue
        before = [(first, last) for first, last in windows if last < i]
        if not before:
            total -= profile["fpWeight"]
        else:
            first, last = before[-1]
            total += sigmoid_credit(abs(i - last) / (last - first)) * profile["fpWeight"]
    return total


def one_detection(row, length=1000):
    scores = np.zeros(length)
    scores[row] = 1.0
    return scores


WINDOW = (500, 599)  # width 100, after the probationary period (150 rows of 1000)


def test_probationary_length_is_nabs():
    assert nab.probationary_length(1000) == 150
    assert nab.probationary_length(1001) == 150  # floor
    assert nab.probationary_length(10_000) == 750  # capped at 0.15 * 5000


def test_scaled_sigmoid_values_from_nab():
    np.testing.assert_allclose(nab.scaled_sigmoid([-1.0, -0.5, 0.0, 1.0]), [0.98661, 0.84828, 0.0, -0.98661], atol=1e-5)
    assert nab.scaled_sigmoid(3.5) == -1.0


def test_null_detector_scores_0_and_perfect_detector_100():
    windows = [[(300, 399), (700, 749)], [], [(1200, 1399)]]
    lengths = [1000, 800, 2000]
    for profile in nab.PROFILES.values():
        null = nab.corpus_score([np.zeros(n) for n in lengths], windows, profile)
        assert null["score"] == pytest.approx(0.0)
        assert null["raw"] == pytest.approx(-3 * profile["fnWeight"])
        perfect = [np.zeros(n) for n in lengths]
        for scores, series_windows in zip(perfect, windows):
            for first, _ in series_windows:
                scores[first] = 1.0
        result = nab.corpus_score(perfect, windows, profile)
        assert result["score"] == pytest.approx(100.0)
        assert result["raw"] == pytest.approx(3 * profile["tpWeight"]) and result["fp"] == 0


def test_detection_at_the_start_of_a_window_beats_one_at_its_end():
    start = nab.corpus_score([one_detection(500)], [[WINDOW]], STANDARD)
    end = nab.corpus_score([one_detection(599)], [[WINDOW]], STANDARD)
    middle = nab.corpus_score([one_detection(549)], [[WINDOW]], STANDARD)
    assert start["score"] == pytest.approx(100.0)
    # The last row: position -1/100, S = 2 sigmoid(0.05) - 1 = 0.024995, / S(-1) = 0.025334.
    credit = (2 / (1 + math.exp(-0.05)) - 1) / (2 / (1 + math.exp(-5)) - 1)
    assert credit == pytest.approx(0.025334, abs=1e-6)
    assert end["raw"] == pytest.approx(credit)
    assert end["score"] == pytest.approx(100 * (credit + 1) / 2)  # null -1, perfect +1
    assert end["score"] == pytest.approx(51.27, abs=0.01)
    # Halfway in: position -51/100.
    assert middle["raw"] == pytest.approx((2 / (1 + math.exp(-2.55)) - 1) / (2 / (1 + math.exp(-5)) - 1))
    assert start["score"] > middle["score"] > end["score"] > 50.0


def test_false_positives_cost_by_profile_and_distance_after_a_window():
    scores = one_detection(500)
    scores[200] = 1.0  # before any window: -fpWeight
    for name, profile in nab.PROFILES.items():
        result = nab.corpus_score([scores], [[WINDOW]], profile)
        null = -profile["fnWeight"]
        assert result["raw"] == pytest.approx(1.0 - profile["fpWeight"]), name
        assert result["score"] == pytest.approx(100 * (1.0 - profile["fpWeight"] - null) / (1.0 - null)), name
    after = one_detection(500)
    after[649] = 1.0  # 50 rows past the window's end: position 50 / 99
    result = nab.corpus_score([after], [[WINDOW]], STANDARD)
    assert result["raw"] == pytest.approx(1.0 + 0.11 * (2 / (1 + math.exp(5 * 50 / 99)) - 1))
    far = one_detection(500)
    far[950] = 1.0  # more than 3 widths past: -fpWeight
    assert nab.corpus_score([far], [[WINDOW]], STANDARD)["raw"] == pytest.approx(1.0 - 0.11)


def test_probationary_rows_are_not_scored():
    scores = one_detection(500)
    scores[10] = 1.0  # in the probationary period: neither FP nor anything
    result = nab.corpus_score([scores], [[WINDOW]], STANDARD)
    assert result["raw"] == pytest.approx(1.0) and result["fp"] == 0


def test_threshold_is_optimized_over_the_corpus_per_profile():
    # Series A: window hit early at 0.9; noise at 0.5 outside. Series B: a window hit only at 0.5.
    a = np.zeros(1000)
    a[500] = 0.9
    a[[200, 250, 950, 960, 970]] = 0.5
    b = np.zeros(1000)
    b[400] = 0.5
    windows = [[WINDOW], [(400, 499)]]
    standard = nab.corpus_score([a, b], windows, STANDARD)
    # At 0.5: +1 +1 - 5 FPs (0.11 each, 2 before the window, 3 far after it) = 1.45 beats 0.9's 1 - 1 = 0.
    assert standard["threshold"] == pytest.approx(0.5)
    assert standard["raw"] == pytest.approx(2 - 5 * 0.11)
    low_fp = nab.corpus_score([a, b], windows, nab.PROFILES["reward_low_FP_rate"])
    assert low_fp["raw"] == pytest.approx(2 - 5 * 0.22)
    fixed = nab.corpus_score([a, b], windows, STANDARD, threshold=0.7)
    assert fixed["threshold"] == pytest.approx(0.9) and fixed["raw"] == pytest.approx(0.0)


def test_the_sweep_matches_the_row_by_row_reference_on_random_detectors():
    rng = np.random.default_rng(0)
    lengths = [900, 1500, 6000]
    windows = [[(200, 260), (600, 700)], [(1000, 1149)], [(900, 1500), (3000, 3300), (5000, 5100)]]
    scores = [np.round(rng.uniform(0, 1, n) ** 8, 3) for n in lengths]  # ties on purpose
    for name, profile in nab.PROFILES.items():
        for threshold in (0.2, 0.6, 0.95):
            expected = sum(reference_raw(s, w, profile, threshold) for s, w in zip(scores, windows))
            got = nab.corpus_score(scores, windows, profile, threshold=threshold)
            assert got["raw"] == pytest.approx(expected), (name, threshold)
        best = nab.corpus_score(scores, windows, profile)
        candidates = [nab.NO_DETECTION] + sorted(set(np.concatenate(scores).tolist()))
        brute = max(sum(reference_raw(s, w, profile, t) for s, w in zip(scores, windows)) for t in candidates[::7])
        assert best["raw"] >= brute - 1e-9


def test_window_metrics_count_events_and_found_windows():
    detections = np.zeros(1000, bool)
    detections[[510, 511, 512]] = True  # one event inside the window
    detections[[800, 900]] = True  # two events outside
    detections[20] = True  # probationary: ignored
    result = nab.window_metrics([detections], [[WINDOW, (700, 720)]])
    assert result["detection_events"] == 3 and result["windows_found"] == 1 and result["num_windows"] == 2
    assert result["window_precision"] == pytest.approx(1 / 3)
    assert result["window_recall"] == pytest.approx(1 / 2)
    assert result["window_f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))
