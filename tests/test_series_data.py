"""Series readers (`tasks.data.series`): CSV fixes and their report, NAB layout, labels, demo, bad input."""

import json

import numpy as np
import pytest

from tasks.core.errors import UserError
from tasks.data import series


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_csv_is_sorted_deduplicated_filled_and_reported(tmp_path):
    csv = write(tmp_path / "s.csv", "\n".join([
        "timestamp,value,extra",
        "2020-01-01 00:10:00,3,x",
        "2020-01-01 00:00:00,1,x",   # unsorted
        "2020-01-01 00:05:00,,x",    # NaN: interpolated between 1 and 3
        "2020-01-01 00:10:00,99,x",  # duplicate timestamp: the first row (3) is kept
        "2020-01-01 00:15:00,nan,x",  # NaN: interpolated by row between 3 and 5
        "2020-01-01 01:00:00,5,x",   # a gap of 45 minutes
    ]) + "\n")
    one = series.read_csv(csv)
    np.testing.assert_allclose(one.values, [1, 2, 3, 4, 5])
    assert one.timestamps[0] == np.datetime64("2020-01-01T00:00:00")
    assert (np.diff(one.timestamps).astype(int) > 0).all()
    assert one.report == {"unsorted": 3, "duplicates": 1, "nan_filled": 2, "gaps": 1, "skipped": 0}


def test_numeric_timestamps_are_step_indices(tmp_path):
    one = series.read_csv(write(tmp_path / "n.csv", "value,timestamp\n1.5,0\n2.5,1\n3.5,2\n"))
    np.testing.assert_allclose(one.values, [1.5, 2.5, 3.5])
    assert one.timestamps[2] - one.timestamps[0] == np.timedelta64(2, "s")


def test_a_file_without_a_value_column_is_one_clear_error(tmp_path):
    path = write(tmp_path / "bad.csv", "timestamp,level,note\n2020-01-01 00:00:00,1,x\n")
    with pytest.raises(UserError, match=r"bad.csv: no 'value' column .*timestamp, level, note"):
        series.read_csv(path)


def test_non_numeric_values_name_the_line_or_are_skipped_and_counted(tmp_path):
    path = write(tmp_path / "words.csv", "timestamp,value\n2020-01-01 00:00:00,1\n2020-01-01 00:05:00,high\n"
                                         "2020-01-01 00:10:00,3\n")
    with pytest.raises(UserError, match=r"words.csv, line 3: value 'high' is not a number"):
        series.read_csv(path)
    one = series.read_csv(path, skip_bad=True)
    np.testing.assert_allclose(one.values, [1, 3])
    assert one.report["skipped"] == 1


def test_nab_layout_reads_windows_keyed_by_category_and_file(tmp_path):
    rows = "timestamp,value\n" + "".join(f"2020-01-01 {h:02d}:00:00,{h}\n" for h in range(20))
    write(tmp_path / "data" / "catA" / "one.csv", rows)
    write(tmp_path / "data" / "catB" / "two.csv", rows)
    windows = {"catA/one.csv": [["2020-01-01 05:00:00.000000", "2020-01-01 07:00:00.000000"]],
               "catB/two.csv": [], "catC/absent.csv": [["2020-01-01 01:00:00", "2020-01-01 02:00:00"]]}
    write(tmp_path / "labels" / "combined_windows.json", json.dumps(windows))
    corpus = series.read_corpus(tmp_path)
    assert [one.key for one in corpus.series] == ["catA/one.csv", "catB/two.csv"]
    assert corpus.series[0].window_indices() == [(5, 7)]
    assert corpus.series[0].labels().sum() == 3
    assert corpus.series[1].windows == []
    # A whole category absent from data/ (a subset of NAB) is skipped and reported.
    assert any("catC" in note for note in corpus.notes)
    chosen = series.read_corpus(tmp_path, files="catB/*")
    assert [one.key for one in chosen.series] == ["catB/two.csv"]
    with pytest.raises(UserError, match="--files 'catZ/\\*' matches no CSV"):
        series.read_corpus(tmp_path, files="catZ/*")


def test_labels_naming_a_file_that_does_not_exist_are_an_error(tmp_path):
    write(tmp_path / "data" / "catA" / "one.csv", "timestamp,value\n2020-01-01 00:00:00,1\n2020-01-01 01:00:00,2\n")
    write(tmp_path / "labels" / "combined_windows.json", json.dumps({"catA/one.csv": [], "catA/typo.csv": []}))
    with pytest.raises(UserError, match=r"combined_windows.json: labels name 'catA/typo.csv', which is not a file"):
        series.read_corpus(tmp_path)
    single = write(tmp_path / "single.csv", "timestamp,value\n2020-01-01 00:00:00,1\n2020-01-01 01:00:00,2\n")
    labels = write(tmp_path / "w.json", json.dumps({"other.csv": []}))
    with pytest.raises(UserError, match="labels name 'other.csv'"):
        series.read_corpus(single, labels=str(labels))


def test_demo_has_every_kind_of_anomaly_with_its_window():
    corpus = series.demo_corpus()
    kinds = {one.key.split("/")[1].rsplit("_", 1)[0] for one in corpus.series}
    assert kinds == {"spike", "level_shift", "frequency", "noise_burst", "none"}
    for one in corpus.series:
        assert len(one) == 3000 and not np.isnan(one.values).any()
        if "none" in one.key:
            assert one.windows == []
        else:
            (first, last), = one.window_indices()
            assert last - first == 300  # 10 % of the series, NAB's window size
            assert first >= 0.15 * len(one) - 150  # the anomaly is after the probationary period
