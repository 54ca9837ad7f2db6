"""Labelled-text readers (`tasks.data.text`): line files, CSV/TSV, folder trees, TFDS, demo; decoding and bad input."""

import numpy as np
import pytest

from tasks.core.errors import UserError
from tasks.data import text


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


# === Decoding and lines ===


def test_split_lines_breaks_on_newline_only_not_on_0x85():
    raw = "a film \x85 with an ellipsis\nsecond\r\nthird\n"
    assert raw.splitlines() != text.split_lines(raw)  # the gotcha: splitlines breaks at \x85
    assert text.split_lines(raw) == ["a film \x85 with an ellipsis", "second", "third"]
    assert text.split_lines("no final newline") == ["no final newline"]


def test_latin1_line_files_read_with_encoding_and_fail_clearly_without(tmp_path):
    # MR polarity's situation: cp1252/Latin-1 bytes, 0x85 inside a sentence.
    write(tmp_path / "rt-polarity.pos", "a charming caf\xe9 comedy \x85 really\nwarm and funny\n".encode("latin-1"))
    write(tmp_path / "rt-polarity.neg", "a dull mess\n".encode("latin-1"))
    write(tmp_path / "SOURCE.md", "not data")
    with pytest.raises(UserError, match=r"rt-polarity.pos: byte 0xe9 at offset 14 is not valid utf-8.*--encoding latin-1") as raised:
        text.read_labelled(tmp_path)
    assert "\n" not in str(raised.value)
    found = text.read_labelled(tmp_path, encoding="latin-1")
    texts, labels = found.splits["train"]
    assert found.class_names == ["neg", "pos"]
    assert sorted(zip(labels, texts)) == [("neg", "a dull mess"), ("pos", "a charming café comedy \x85 really"),
                                          ("pos", "warm and funny")]


def test_unknown_encoding_and_missing_path_are_user_errors(tmp_path):
    write(tmp_path / "a.pos", "x\n")
    with pytest.raises(UserError, match="--encoding klingon: unknown text encoding"):
        text.read_labelled(tmp_path, encoding="klingon")
    with pytest.raises(UserError, match="nothing-here: no such file or folder"):
        text.read_labelled(tmp_path / "nothing-here")
    with pytest.raises(UserError, match="missing.txt: no such file"):
        text.read_lines(tmp_path / "missing.txt")


def test_class_names_come_from_stems_when_the_files_differ(tmp_path):
    write(tmp_path / "pos.txt", "good\n")
    write(tmp_path / "neg.txt", "bad\n")
    write(tmp_path / "README", "ignored")
    assert text.read_labelled(tmp_path).class_names == ["neg", "pos"]


def test_empty_lines_are_an_error_or_counted_with_skip_bad(tmp_path):
    write(tmp_path / "rt.pos", "good\n\ngreat\n")
    write(tmp_path / "rt.neg", "bad\n   \n")
    with pytest.raises(UserError, match=r"rt.neg line 2: empty text; remove the line or pass --skip-bad"):
        text.read_labelled(tmp_path)
    found = text.read_labelled(tmp_path, skip_bad=True)
    assert len(found.splits["train"][0]) == 3
    assert sorted(where.rsplit("/", 1)[-1] for where, _ in found.skipped) == ["rt.neg line 2", "rt.pos line 2"]


# === CSV / TSV ===


def test_csv_header_is_detected_and_columns_found_by_name(tmp_path):
    path = write(tmp_path / "reviews.csv", 'id,label,text\n1,pos,"great, really great"\n2,neg,awful\n')
    texts, labels, wheres, skipped = text.read_table(path)
    assert texts == ["great, really great", "awful"] and labels == ["pos", "neg"] and not skipped
    assert wheres[0].endswith("reviews.csv line 2")


def test_csv_without_header_takes_the_longer_column_as_text(tmp_path):
    path = write(tmp_path / "plain.csv", "1,a long enough sentence\n0,another long sentence here\n")
    texts, labels, _, _ = text.read_table(path)
    assert labels == ["1", "0"] and texts[0] == "a long enough sentence"


def test_tsv_glue_layout_with_splits_and_literal_quotes(tmp_path):
    write(tmp_path / "train.tsv", 'sentence\tlabel\nit \'s a "charming" film \t1\nflat \t0\n')
    write(tmp_path / "dev.tsv", "sentence\tlabel\ngood fun \t1\n")
    found = text.read_labelled(tmp_path)
    assert set(found.splits) == {"train", "validation"} and found.class_names == ["0", "1"]
    assert found.splits["train"][0][0] == 'it \'s a "charming" film '


def test_explicit_columns_and_a_bad_column_name(tmp_path):
    path = write(tmp_path / "multi.csv", "a,b,c\nx,hello there,pos\ny,bye now,neg\n")
    with pytest.raises(UserError, match="3 columns and no header naming the text and label"):
        text.read_labelled(path)
    found = text.read_labelled(path, text_column="b", label_column="2")
    assert found.splits["train"] == (["hello there", "bye now"], ["pos", "neg"])
    with pytest.raises(UserError, match="no text column 'review'; the columns are a, b, c"):
        text.read_labelled(path, text_column="review", label_column="c")


def test_a_label_column_with_one_class_is_an_error(tmp_path):
    path = write(tmp_path / "one.csv", "text,label\ngood,pos\nfine,pos\n")
    with pytest.raises(UserError, match=r"one.csv: the training labels hold a single class \('pos'\)"):
        text.read_labelled(path)


def test_unknown_label_values_name_the_file_and_line(tmp_path):
    path = write(tmp_path / "labels.csv", "text,label\ngood,pos\nbad,neg\nhmm,neutral\n")
    with pytest.raises(UserError, match=r"labels.csv line 4: unknown label 'neutral'; the labels are 'neg', 'pos'"):
        text.read_labelled(path, class_names=["neg", "pos"])
    write(tmp_path / "split" / "train.csv", "text,label\ngood,pos\nbad,neg\n")
    write(tmp_path / "split" / "test.csv", "text,label\nok,pos\nmeh,mixed\n")
    with pytest.raises(UserError, match=r"test.csv line 3: unknown label 'mixed'.*also occur in the training file"):
        text.read_labelled(tmp_path / "split")


def test_csv_empty_cells_and_blank_rows(tmp_path):
    path = write(tmp_path / "holes.csv", "text,label\ngood,pos\n,neg\nbad,\n\nworse,neg\n")
    with pytest.raises(UserError, match="holes.csv line 3: empty text"):
        text.read_labelled(path)
    texts, _, _, skipped = text.read_table(path, skip_bad=True)
    assert texts == ["good", "worse"] and [reason for _, reason in skipped] == ["empty text", "empty label", "empty row"]


def test_non_utf8_csv_names_file_and_offset(tmp_path):
    path = write(tmp_path / "bad.csv", b"text,label\ngood,pos\nna\xefve \xff,neg\n")
    with pytest.raises(UserError, match=r"bad.csv: byte 0xef at offset 22 is not valid utf-8"):
        text.read_labelled(path)


# === Folder trees ===


def test_aclimdb_tree_with_splits_and_unlabelled_text(tmp_path):
    root = tmp_path / "aclImdb"
    write(root / "train" / "pos" / "0_9.txt", "Great.<br /><br />Loved it")
    write(root / "train" / "neg" / "1_2.txt", "Dreadful")
    write(root / "train" / "unsup" / "2_0.txt", "no label here")
    write(root / "test" / "pos" / "0_10.txt", "Superb")
    write(root / "test" / "neg" / "1_1.txt", "Bad")
    write(root / "README", "readme")
    found = text.read_labelled(root)
    assert found.class_names == ["neg", "pos"] and set(found.splits) == {"train", "test"}
    assert sorted(found.splits["train"][1]) == ["neg", "pos"] and found.unlabelled == ["no label here"]
    flat = tmp_path / "flat"
    write(flat / "happy" / "a.txt", "yay")
    write(flat / "sad" / "b.txt", "nay")
    assert text.read_labelled(flat).splits["train"][1] == ["happy", "sad"]


# === TFDS and demo ===


def test_demo_is_balanced_and_seeded():
    found = text.demo_sentences(num_per_class=50, seed=3)
    texts, labels = found.splits["train"]
    assert len(texts) == 100 and labels.count("pos") == 50 and found.class_names == ["neg", "pos"]
    assert text.demo_sentences(num_per_class=50, seed=3).splits == found.splits
    assert any(" not " in sentence for sentence in texts)
    assert np.mean([len(sentence.split()) for sentence in texts]) > 4
