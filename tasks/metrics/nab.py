"""The NAB score (Lavin & Ahmad, 2015), as numenta/NAB v1.1 computes it, and window-level P/R/F1.

    profile = PROFILES["standard"]
    result = corpus_score(scores, windows, lengths, profile)   # threshold optimized over the corpus
    result["score"]                                            # normalized: null 0, perfect 100

Per row (NAB `sweeper.calcSweepScore`), with rows of the probationary period (the first
`min(floor(0.15 T), 750)` rows) left out of scoring:
- inside a window [first, last] (width w = last - first + 1), a detection at row i is worth
  `tpWeight * S(-(last - i + 1) / w) / S(-1)`: the window's first row gets exactly tpWeight, its
  last row almost nothing; only the window's best (earliest) detection counts; a window without
  one costs `-fnWeight`;
- outside every window, each detection costs `fpWeight * S(|i - last'| / (w' - 1))` after a
  window [first', last'] (negative: S < 0 past a window, down to -1 three widths away), or
  `-fpWeight` before the first window.
Here S(x) = 2 sigmoid(-5x) - 1 (and -1 for x > 3), the scaled sigmoid.

Thresholds (NAB `sweeper.calcScoreByThreshold` + `optimizer`): a row is a detection when its
anomaly score >= threshold; the corpus's raw score is computed at every distinct score (and at
1.1, no detection) and the best one wins, per profile. Normalization (NAB `runner.normalize`):
`100 * (raw - null) / (perfect - null)`, where null is the null detector's raw score (a constant
score, optimized the same way: no detection, `-fnWeight` per scorable window) and perfect is
`tpWeight` per labelled window.

Deviation, stated: a window of width 1 followed by a detection would divide by zero in NAB; here
the distance past it uses max(w' - 1, 1).
"""

import math

import numpy as np

# config/profiles.json of numenta/NAB (tnWeight is unused by the scorer).
PROFILES = {
    "standard": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.11},
    "reward_low_FP_rate": {"tpWeight": 1.0, "fnWeight": 1.0, "fpWeight": 0.22},
    "reward_low_FN_rate": {"tpWeight": 1.0, "fnWeight": 2.0, "fpWeight": 0.11},
}
PROBATIONARY_FRACTION = 0.15
NO_DETECTION = 1.1  # NAB's starting threshold: above every score in [0, 1]


def probationary_length(num_rows, fraction=PROBATIONARY_FRACTION):
    """Rows of the probationary period: min(floor(0.15 T), 0.15 * 5000) (NAB `_getProbationaryLength`)."""
    return int(min(math.floor(fraction * num_rows), fraction * 5000))


def scaled_sigmoid(position):
    """NAB's S(x) = 2 sigmoid(-5x) - 1, and -1 beyond 3 (far past a window). Vectorized."""
    position = np.asarray(position, np.float64)
    value = 2.0 / (1.0 + np.exp(5.0 * position)) - 1.0
    return np.where(position > 3.0, -1.0, value)


def sweep_weights(num_rows, windows, profile):
    """Each row's worth if it were a detection, and its window (NAB `calcSweepScore`).

    Args:
        num_rows: int. Rows of the series.
        windows: list of (first, last) inclusive row ranges, sorted, not overlapping.
        profile: dict. A cost matrix of `PROFILES`.

    Returns:
        `(weights (T,), window_of (T,))`: window_of is the window's index, -1 outside windows and
        -2 in the probationary period.
    """
    rows = np.arange(num_rows)
    weights = np.empty(num_rows, np.float64)
    window_of = np.full(num_rows, -1, np.int64)
    # Outside windows: distance past the closest preceding window, or -fpWeight before any.
    weights[:] = -profile["fpWeight"]
    max_tp = scaled_sigmoid(-1.0)
    for index, (first, last) in enumerate(windows):
        width = last - first + 1
        inside = rows[first:last + 1]
        weights[first:last + 1] = scaled_sigmoid(-(last - inside + 1) / width) * profile["tpWeight"] / max_tp
        window_of[first:last + 1] = index
        following = windows[index + 1][0] if index + 1 < len(windows) else num_rows
        after = rows[last + 1:following]
        weights[last + 1:following] = scaled_sigmoid(np.abs(after - last) / max(width - 1, 1)) * profile["fpWeight"]
    window_of[:probationary_length(num_rows)] = -2
    return weights, window_of


def _sweep(anomaly_scores, weights, window_of, fn_weight):
    """Raw corpus score at every candidate threshold, highest threshold first.

    Returns:
        `(thresholds, raw_scores, counts)`; counts (K, 4) = tp, fp, fn, tn rows at each threshold.
    """
    scorable = window_of != -2
    scores, weights, window_of = anomaly_scores[scorable], weights[scorable], window_of[scorable]
    order = np.argsort(-scores, kind="stable")
    scores, weights, window_of = scores[order], weights[order], window_of[order]
    windows = np.unique(window_of[window_of >= 0])
    delta = np.where(window_of < 0, weights, 0.0)  # every false positive adds its (negative) worth
    best = dict.fromkeys(windows.tolist(), -fn_weight)
    for row in np.flatnonzero(window_of >= 0):  # a window's worth is its best detection's
        window = int(window_of[row])
        if weights[row] > best[window]:
            delta[row] = weights[row] - best[window]
            best[window] = weights[row]
    start = -fn_weight * len(windows)
    totals = start + np.cumsum(delta)
    ends = np.flatnonzero(np.r_[scores[1:] != scores[:-1], True])  # last row of each tie group
    in_window = np.cumsum(window_of >= 0)
    outside = np.cumsum(window_of < 0)
    num_in, num_out = int(in_window[-1]) if len(scores) else 0, int(outside[-1]) if len(scores) else 0
    thresholds = np.r_[NO_DETECTION, scores[ends]]
    raw = np.r_[start, totals[ends]]
    tp = np.r_[0, in_window[ends]]
    fp = np.r_[0, outside[ends]]
    counts = np.stack([tp, fp, num_in - tp, num_out - fp], axis=1)
    return thresholds, raw, counts


def corpus_score(anomaly_scores, windows, profile, threshold=None):
    """The NAB score of a detector over a corpus, for one profile.

    Args:
        anomaly_scores: list of float arrays (T_i,) in [0, 1], one per series.
        windows: list of lists of (first, last) row ranges, one per series.
        profile: dict. A cost matrix of `PROFILES`.
        threshold: float or None. None: optimized over the corpus (NAB); else detections are
            scores >= threshold.

    Returns:
        A dict: `score` (normalized), `raw`, `null`, `perfect`, `threshold`, `tp`, `fp`, `fn`, `tn`
        (row counts after the probationary period).
    """
    all_scores, all_weights, all_windows = [], [], []
    offset = 0
    for series_scores, series_windows in zip(anomaly_scores, windows):
        weights, window_of = sweep_weights(len(series_scores), series_windows, profile)
        window_of = np.where(window_of >= 0, window_of + offset, window_of)
        offset += len(series_windows)
        all_scores.append(np.asarray(series_scores, np.float64))
        all_weights.append(weights)
        all_windows.append(window_of)
    scores, weights, window_of = (np.concatenate(parts) for parts in (all_scores, all_weights, all_windows))
    thresholds, raw, counts = _sweep(scores, weights, window_of, profile["fnWeight"])
    if threshold is None:
        best = int(np.argmax(raw))  # the first maximum: the highest threshold among equals
    else:
        best = int(np.flatnonzero(thresholds >= threshold)[-1]) if (thresholds >= threshold).any() else 0
    # The null detector: one constant score everywhere, its threshold optimized the same way.
    _, null_raw, _ = _sweep(np.full_like(scores, 0.5), weights, window_of, profile["fnWeight"])
    null = float(np.max(null_raw))
    perfect = profile["tpWeight"] * offset
    tp, fp, fn, tn = (int(value) for value in counts[best])
    return {
        "score": float(100.0 * (raw[best] - null) / (perfect - null)) if perfect != null else 0.0,
        "raw": float(raw[best]),
        "null": null,
        "perfect": float(perfect),
        "threshold": float(thresholds[best]),
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
    }


def all_profiles(anomaly_scores, windows, thresholds=None):
    """`corpus_score` under every profile of `PROFILES`; thresholds: {profile: float} or None."""
    return {
        name: corpus_score(anomaly_scores, windows, profile, (thresholds or {}).get(name))
        for name, profile in PROFILES.items()
    }


def window_metrics(detections, windows):
    """Window-level precision, recall and F1 after the probationary period.

    A window is found when any row inside it is a detection. Detections are counted as events
    (a detection whose previous row is not one); an event is correct when it starts inside a
    window. Precision = correct events / events; recall = found windows / windows.

    Args:
        detections: list of bool arrays (T_i,).
        windows: list of lists of (first, last) row ranges.
    """
    found = total = correct = events = 0
    for flags, series_windows in zip(detections, windows):
        flags = np.asarray(flags, bool).copy()
        flags[:probationary_length(len(flags))] = False
        starts = np.flatnonzero(flags & ~np.r_[False, flags[:-1]])
        inside = np.zeros(len(flags), bool)
        for first, last in series_windows:
            inside[first:last + 1] = True
            if last >= probationary_length(len(flags)):
                total += 1
                found += bool(flags[first:last + 1].any())
        events += len(starts)
        correct += int(inside[starts].sum())
    precision = correct / events if events else 0.0
    recall = found / total if total else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"window_precision": precision, "window_recall": recall, "window_f1": f1,
            "windows_found": found, "num_windows": total, "detection_events": events}
