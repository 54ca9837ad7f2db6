"""Univariate time series with labelled anomaly windows: CSV files, folders, the NAB layout, demo.

Usage:

    from tasks.data import series

    corpus = series.read_corpus("../shared/data/nab")           # NAB: data/<category>/*.csv + labels/
    corpus = series.read_corpus("my_series.csv", labels="windows.json")
    corpus = series.demo_corpus()                                # generated, with its windows
    for one in corpus.series:
        one.key, one.timestamps, one.values, one.windows        # windows: [(start, end)] datetime64[s]
    corpus.report                                                # what was fixed, per file

Layouts `read_corpus` detects:

    FILE.csv                       one series; windows from `labels` if given (keyed by the file name)
    root/**/*.csv                  every CSV under the folder, keyed by its path relative to root
    root/data/<category>/*.csv +   NAB: keys `category/file.csv`, windows from
      root/labels/combined_windows.json   `labels/combined_windows.json` (or `labels`)

A CSV has a header naming a time column (`timestamp`, NAB's; also `time`, `date`, `datetime`,
`ds`, …) and a value column (`value`; also `y`, `val`, `reading`, …); a header of exactly two
other names is read as time, value. More columns are allowed and ignored; two candidates for one
role are an error listing the columns. Timestamps are ISO 8601 (`YYYY-MM-DD HH:MM:SS`, NAB's;
`2014-04-01T00:00:00Z` or `...+02:00` with a zone are converted to UTC and counted as
`zone_to_utc`), or plain numbers: epoch seconds (a step index reads the same way), or epoch
milliseconds from 1e11 on.

What is fixed, always explicitly, and counted in `Series.report`:
- unsorted rows are sorted by timestamp (stable);
- duplicate timestamps keep their first row;
- NaN or empty values are filled by linear interpolation (ends: the nearest value);
- gaps (a step longer than 1.5x the median step) are counted, not filled: detectors and NAB score
  rows, not clock time.
Non-numeric values are an error naming the file and line (with `skip_bad`: dropped and counted).
Label windows naming a file that is not there are an error, except whole NAB categories absent
from `data/` (a subset of the corpus), which are skipped and reported.
"""

import csv
import dataclasses
import datetime
import json
import math
import pathlib

import numpy as np

from tasks.core.errors import UserError

LABELS_FILE = pathlib.Path("labels") / "combined_windows.json"
MISSING = ("", "nan", "NaN", "NAN", "null", "NULL", "None", "NA")
TIME_COLUMNS = ("timestamp", "time", "date", "datetime", "ds", "time_stamp", "date_time", "epoch", "ts")
VALUE_COLUMNS = ("value", "y", "val", "values", "reading", "measurement", "count")
EPOCH_MILLISECONDS = 1e11  # plain numbers from here on are epoch milliseconds (1e11 s is year 5138)


@dataclasses.dataclass
class Series:
    """One series, sorted and de-duplicated.

    Attributes:
        key: str. Its name in the corpus, e.g. `realKnownCause/nyc_taxi.csv`.
        timestamps: np.ndarray. datetime64[s] (T,), strictly increasing.
        values: np.ndarray. float64 (T,), no NaN.
        windows: list. Labelled anomaly windows `(start, end)` as datetime64[s], inclusive.
        report: dict. Counts of what was fixed (`unsorted`, `duplicates`, `nan_filled`, `gaps`,
            `skipped`).
    """

    key: str
    timestamps: np.ndarray
    values: np.ndarray
    windows: list = dataclasses.field(default_factory=list)
    report: dict = dataclasses.field(default_factory=dict)

    def __len__(self):
        return len(self.values)

    def window_indices(self):
        """The windows as inclusive row ranges `(first, last)`, rows whose timestamps fall inside."""
        result = []
        for start, end in self.windows:
            first = int(np.searchsorted(self.timestamps, start, side="left"))
            last = int(np.searchsorted(self.timestamps, end, side="right")) - 1
            if first <= last:
                result.append((first, last))
        return result

    def labels(self):
        """int8 (T,): 1 on rows inside a labelled window."""
        flags = np.zeros(len(self), np.int8)
        for first, last in self.window_indices():
            flags[first:last + 1] = 1
        return flags


@dataclasses.dataclass
class Corpus:
    """Series and the report of what reading them fixed or skipped."""

    series: list
    notes: list = dataclasses.field(default_factory=list)

    @property
    def report(self):
        return {one.key: one.report for one in self.series if any(one.report.values())}

    def summary(self):
        """One line per kind of fix, summed over the corpus (empty when nothing was fixed)."""
        totals = {}
        for one in self.series:
            for kind, count in one.report.items():
                if count:
                    totals.setdefault(kind, []).append((one.key, count))
        lines = []
        for kind, found in totals.items():
            shown = ", ".join(f"{key} ({count})" for key, count in found[:3])
            more = f" and {len(found) - 3} more" if len(found) > 3 else ""
            lines.append(f"{kind.replace('_', ' ')}: {sum(c for _, c in found)} in {len(found)} file(s): {shown}{more}")
        return lines + list(self.notes)


# === Timestamps ===


def parse_time(text):
    """One timestamp string → datetime64[s]: ISO 8601 (fractional seconds dropped, a zone converted
    to UTC), epoch seconds or a step number, epoch milliseconds from 1e11."""
    return _parse_time(text)[0]


def _parse_time(text):
    """(datetime64[s], whether a zone was converted)."""
    text = text.strip()
    try:
        number = float(text)  # a step index or epoch seconds, e.g. 0, 1, 2 ... or 1396310400
    except ValueError:
        iso = text.replace(" ", "T")
        if len(iso) > 19 and (iso.endswith("Z") or iso[-6] in "+-" and iso[-3] == ":" or iso[-5] in "+-"):
            moment = datetime.datetime.fromisoformat(iso[:-1] + "+00:00" if iso.endswith("Z") else iso)
            utc = moment.astimezone(datetime.timezone.utc).replace(tzinfo=None, microsecond=0)
            return np.datetime64(utc, "s"), True
        return np.datetime64(iso[:19], "s"), False
    if not math.isfinite(number):
        raise ValueError(text)
    if abs(number) >= EPOCH_MILLISECONDS:
        return np.datetime64(int(number // 1000), "s"), False
    return np.datetime64(int(number), "s"), False


def _find_column(header, names, what, path, raw):
    found = [index for index, name in enumerate(header) if name in names]
    if len(found) > 1:
        raise UserError(f"{path}: several columns could be the {what} ({', '.join(raw[i] for i in found)}); "
                        f"the columns are {', '.join(raw)}; keep one or rename the other.")
    return found[0] if found else None


# === CSV ===


def read_csv(path, key=None, skip_bad=False):
    """One CSV file → a `Series` (no windows yet).

    Raises:
        UserError: no `value` or `timestamp` column, a non-numeric value or bad timestamp (unless
            `skip_bad`), or no rows.
    """
    path = pathlib.Path(path)
    key = key or path.name
    try:
        with path.open(newline="", encoding="utf-8") as file:
            rows = list(csv.reader(file))
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: cannot read it as UTF-8 CSV ({error}).")
    if not rows:
        raise UserError(f"{path}: empty file; expected a header with timestamp and value columns.")
    header = [name.strip().lower() for name in rows[0]]
    time_column = _find_column(header, TIME_COLUMNS, "time", path, rows[0])
    value_column = _find_column(header, VALUE_COLUMNS, "value", path, rows[0])
    if (time_column is None or value_column is None) and len(header) == 2:
        time_column = 0 if time_column is None else time_column  # two columns: time, value
        value_column = 1 - time_column if value_column is None else value_column
    for column, names in ((time_column, TIME_COLUMNS), (value_column, VALUE_COLUMNS)):
        if column is None:
            raise UserError(
                f"{path}: no '{names[0]}' column in the header ({', '.join(rows[0]) or 'empty'}); "
                f"expected a CSV with timestamp,value columns (or {', '.join(names[1:4])}, ...)."
            )
    times, values, skipped, missing, zoned = [], [], 0, 0, 0
    for line, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        try:
            stamp, converted = _parse_time(row[time_column])
            zoned += converted
        except (ValueError, IndexError):
            if skip_bad:
                skipped += 1
                continue
            shown = row[time_column] if time_column < len(row) else ""
            raise UserError(f"{path}, line {line}: bad timestamp {shown!r}; expected YYYY-MM-DD HH:MM:SS "
                            "(or pass --skip-bad to skip such rows).")
        cell = row[value_column].strip() if value_column < len(row) else ""
        if cell in MISSING:
            value = math.nan
            missing += 1
        else:
            try:
                value = float(cell)
            except ValueError:
                if skip_bad:
                    skipped += 1
                    continue
                raise UserError(f"{path}, line {line}: value {cell!r} is not a number "
                                "(or pass --skip-bad to skip such rows).")
            if math.isinf(value):
                value = math.nan
                missing += 1
        times.append(stamp)
        values.append(value)
    if not values:
        raise UserError(f"{path}: no data rows under the header.")
    one = clean(key, np.array(times, "datetime64[s]"), np.array(values, np.float64), skipped=skipped)
    if zoned:
        one.report["zone_to_utc"] = zoned
    return one


def clean(key, timestamps, values, skipped=0):
    """Sorts, de-duplicates, fills NaNs and counts gaps; returns a `Series` with its report."""
    order = np.argsort(timestamps, kind="stable")
    unsorted = int(np.count_nonzero(order != np.arange(len(order))))
    timestamps, values = timestamps[order], values[order]
    keep = np.r_[True, timestamps[1:] != timestamps[:-1]]
    duplicates = int(np.count_nonzero(~keep))
    timestamps, values = timestamps[keep], values[keep]
    nans = np.isnan(values)
    if nans.all():
        raise UserError(f"{key}: every value is missing (NaN or empty).")
    if nans.any():
        rows = np.arange(len(values))
        values = values.copy()
        values[nans] = np.interp(rows[nans], rows[~nans], values[~nans])
    gaps = 0
    if len(timestamps) > 2:
        steps = np.diff(timestamps).astype(np.int64)
        gaps = int(np.count_nonzero(steps > 1.5 * np.median(steps)))
    report = {"unsorted": unsorted, "duplicates": duplicates, "nan_filled": int(nans.sum()),
              "gaps": gaps, "skipped": int(skipped)}
    return Series(key, timestamps, values, report=report)


# === Labels ===


def read_windows(path):
    """A NAB windows JSON → {key: [(start, end) datetime64[s]]}."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(f"labels file {path} does not exist.")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise UserError(f"{path}: not valid JSON ({error}).")
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected an object of file key -> [[start, end], ...].")
    windows = {}
    for key, pairs in raw.items():
        try:
            windows[key] = [(parse_time(start), parse_time(end)) for start, end in pairs]
        except (TypeError, ValueError):
            raise UserError(f"{path}: windows of {key!r} must be [[start, end], ...] timestamps.")
    return windows


def attach_windows(found, windows, labels_path, categories=None):
    """Gives each series its windows; a key naming no series is an error (see module docstring).

    Args:
        found: dict. key -> Series.
        windows: dict. key -> windows, from `read_windows`.
        labels_path: path. For messages.
        categories: set or None. NAB categories present; keys of absent categories are skipped.

    Returns:
        A list of notes about skipped keys.
    """
    absent = []
    for key, pairs in windows.items():
        if key in found:
            found[key].windows = sorted(pairs)
            continue
        category = key.split("/", 1)[0] if "/" in key else None
        if categories is not None and category not in categories:
            absent.append(key)
            continue
        raise UserError(f"{labels_path}: labels name {key!r}, which is not a file of the data "
                        f"({len(found)} series read); fix the key or add the file.")
    if absent:
        names = sorted({key.split("/", 1)[0] for key in absent})
        return [f"labels for {len(absent)} file(s) of absent categories skipped: {', '.join(names)}"]
    return []


# === Corpora ===


def read_corpus(path, labels="", files="", skip_bad=False):
    """A file, a folder of CSVs or a NAB folder → `Corpus` (see the module docstring).

    Args:
        path: str or Path. The file or folder.
        labels: str. A windows JSON; default: `labels/combined_windows.json` under a NAB folder.
        files: str. Comma-separated keys or glob patterns (e.g. `realKnownCause/*`) to keep.
        skip_bad: bool. Drop (and count) rows with non-numeric values or bad timestamps.
    """
    path = pathlib.Path(path)
    nab = path.is_dir() and (path / "data").is_dir() and (path / LABELS_FILE).is_file()
    if path.is_file():
        found = {path.name: read_csv(path, path.name, skip_bad)}
        categories = None
    else:
        root = path / "data" if nab else path
        csvs = sorted(file for file in root.rglob("*.csv") if file.is_file())
        if not csvs:
            raise UserError(f"--data {path}: no .csv files in the folder.")
        keys = [file.relative_to(root).as_posix() for file in csvs]
        selected = select(keys, files, path)
        found = {key: read_csv(root / key, key, skip_bad) for key in selected}
        categories = {key.split("/", 1)[0] for key in keys if "/" in key} if nab else None
    labels_path = pathlib.Path(labels) if labels else (path / LABELS_FILE if nab else None)
    notes = []
    if labels_path is not None:
        windows = read_windows(labels_path)
        if files and not path.is_file():
            # Keys of existing files that were not selected are fine; still check the others.
            everything = set(select(keys, "", path))
            windows = {key: value for key, value in windows.items() if key in found or key not in everything}
        notes = attach_windows(found, windows, labels_path, categories)
    return Corpus(list(found.values()), notes)


def select(keys, files, where):
    """The keys matching any comma-separated key or glob pattern in `files` (all when empty)."""
    if not files:
        return keys
    chosen = []
    for pattern in [part.strip() for part in files.split(",") if part.strip()]:
        matches = [key for key in keys if pathlib.PurePosixPath(key).match(pattern) or key == pattern]
        if not matches:
            raise UserError(f"--files {pattern!r} matches no CSV under {where}.")
        chosen.extend(key for key in matches if key not in chosen)
    return chosen


# === Demo ===


def demo_series(kind, length=3000, seed=0):
    """One generated series with one injected anomaly of `kind` and its window.

    Kinds: `spike`, `level_shift`, `frequency`, `noise_burst`, `none`. Normal behaviour: a daily
    cycle (period 48 rows, half-hourly) plus a weekly one and Gaussian noise. The anomaly starts
    in the last 70 % of the series; its window is NAB's size: 10 % of the series, centred on it.
    """
    rng = np.random.default_rng(seed)
    steps = np.arange(length)
    period = 48
    values = (10 + 3 * np.sin(2 * np.pi * steps / period) + 1.0 * np.sin(2 * np.pi * steps / (7 * period))
              + rng.normal(0, 0.3, length))
    at = int(rng.integers(int(0.3 * length), int(0.85 * length)))
    if kind == "spike":
        values[at] += 6.0
    elif kind == "level_shift":
        values[at:] += 4.0
    elif kind == "frequency":
        values[at:] = (10 + 3 * np.sin(2 * np.pi * steps[at:] / (period / 4)) + 1.0 * np.sin(
            2 * np.pi * steps[at:] / (7 * period)) + rng.normal(0, 0.3, length - at))
    elif kind == "noise_burst":
        values[at:at + 60] += rng.normal(0, 2.5, min(60, length - at))
    timestamps = np.datetime64("2026-01-01T00:00:00", "s") + steps * np.timedelta64(1800, "s")
    windows = []
    if kind != "none":
        half = int(0.05 * length)
        first, last = max(at - half, 0), min(at + half, length - 1)
        windows = [(timestamps[first], timestamps[last])]
    return Series(f"demo/{kind}_{seed}.csv", timestamps, values, windows,
                  {"unsorted": 0, "duplicates": 0, "nan_filled": 0, "gaps": 0, "skipped": 0})


DEMO_KINDS = ("spike", "level_shift", "frequency", "noise_burst", "none")


def demo_corpus(num_series=8, length=3000, seed=0):
    """`num_series` demo series cycling through the anomaly kinds (one `none` per cycle)."""
    return Corpus([demo_series(DEMO_KINDS[i % len(DEMO_KINDS)], length, seed + i) for i in range(num_series)])
