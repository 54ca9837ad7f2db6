"""Text layouts: slices of the real MR, Multi30k, BBC News and NAB data written in every layout the text
readers claim read back as the same examples, exactly; the new bad inputs fail in one line."""

import csv
import datetime
import gzip
import io
import json
import zipfile

import numpy as np
import pytest

from tasks.core.errors import UserError
from tasks.data import pairs as pair_readers
from tasks.data import series
from tasks.data import text

NUM_PER_CLASS = 120
NUM_PAIRS = 300


# === Sentiment: MR polarity ===


@pytest.fixture(scope="module")
def reviews(shared_data):
    """[(label, sentence)]: the first sentences of each MR class (Latin-1 in the source files)."""
    found = text.read_labelled(shared_data / "mr_polarity", encoding="latin-1")
    texts, labels = found.splits["train"]
    result = []
    for label in ("neg", "pos"):
        result += [(label, sentence) for sentence, kind in zip(texts, labels) if kind == label][:NUM_PER_CLASS]
    assert not any("\t" in sentence or "\n" in sentence for _, sentence in result)
    return result


def write_line_files(root, reviews):
    root.mkdir()
    for label in ("neg", "pos"):
        lines = [sentence for kind, sentence in reviews if kind == label]
        (root / f"rt-polarity.{label}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (root / "README.md").write_text("not data\n")
    return root


def write_csv(root, reviews):
    root.mkdir()
    with open(root / "imdb.csv", "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["review", "sentiment"])  # the Kaggle IMDB column names
        writer.writerows((sentence, label) for label, sentence in reviews)
    return root / "imdb.csv"


def write_tsv_glue(root, reviews):
    root.mkdir()
    for name, part in (("train", reviews[::2]), ("dev", reviews[1::2])):
        lines = ["sentence\tlabel"] + [f"{sentence}\t{label}" for label, sentence in part]
        (root / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def write_jsonl(root, reviews):
    root.mkdir()
    lines = [json.dumps({"id": index, "text": sentence, "polarity": label})
             for index, (label, sentence) in enumerate(reviews)]
    (root / "reviews.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "reviews.jsonl"


def write_aclimdb(root, reviews):
    """<download>/aclImdb/{train,test}/{pos,neg}/<id>_<rating>.txt, as the archive extracts."""
    imdb = root / "aclImdb"
    for index, (label, sentence) in enumerate(reviews):
        folder = imdb / ("train" if index % 3 else "test") / label
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index}_{7 if label == 'pos' else 2}.txt").write_text(sentence, encoding="utf-8")
    (imdb / "train" / "unsup").mkdir()
    (imdb / "train" / "unsup" / "0_0.txt").write_text("unlabelled text")
    (imdb / "train" / "labeledBow.feat").write_text("0 0:1\n")
    (imdb / "imdb.vocab").write_text("the\n")
    (imdb / "README").write_text("Large Movie Review Dataset\n")
    return root


SENTIMENT_LAYOUTS = {
    "line-files": (write_line_files, "one file of lines per class"),
    "csv": (write_csv, "CSV"),
    "tsv-glue": (write_tsv_glue, "split files (train.tsv, dev.tsv)"),
    "jsonl": (write_jsonl, "JSON lines"),
    "aclimdb": (write_aclimdb, "class folders in split folders"),
}


@pytest.mark.parametrize("layout", list(SENTIMENT_LAYOUTS))
def test_every_sentiment_layout_reads_back_the_same_examples(layout, reviews, tmp_path):
    writer, name = SENTIMENT_LAYOUTS[layout]
    found = text.read_labelled(writer(tmp_path / "data", reviews))
    assert found.layout == name
    assert found.class_names == ["neg", "pos"]
    got = [(label, sentence) for texts, labels in found.splits.values() for sentence, label in zip(texts, labels)]
    assert sorted(got) == sorted(reviews)


def test_aclimdb_keeps_its_splits_and_unlabelled_text(reviews, tmp_path):
    found = text.read_labelled(write_aclimdb(tmp_path / "download", reviews))
    assert set(found.splits) == {"train", "test"}
    assert len(found.splits["test"][0]) == len(reviews[::3]) and found.unlabelled == ["unlabelled text"]


def test_ambiguous_columns_are_one_line_listing_them(tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("id,text,sentence,label\n1,a b,c d,pos\n2,e f,g h,neg\n")
    with pytest.raises(UserError) as error:
        text.read_labelled(path)
    assert str(error.value) == (f"{path}: several columns could be the text (text, sentence); the columns are "
                                "id, text, sentence, label; pass --text-column NAME.")
    assert text.read_labelled(path, text_column="sentence").splits["train"] == (["c d", "g h"], ["pos", "neg"])


def test_jsonl_without_a_label_key_lists_the_keys(tmp_path):
    path = tmp_path / "reviews.jsonl"
    path.write_text('{"review": "good", "stars_given": 5}\n')
    with pytest.raises(UserError, match=r"no key could be the label .*the keys are review, stars_given; "
                                        r"pass --label-column NAME"):
        text.read_labelled(path)


def test_bad_json_line_names_the_line(tmp_path):
    path = tmp_path / "reviews.jsonl"
    path.write_text('{"text": "good", "label": "pos"}\n{"text": "bad", \n')
    with pytest.raises(UserError, match=r"reviews.jsonl line 2: not valid JSON"):
        text.read_labelled(path)


# === Translation: Multi30k ===


@pytest.fixture(scope="module")
def sentence_pairs(shared_data):
    """[(German, English)]: the first Multi30k training pairs."""
    folder = shared_data / "multi30k"
    german = gzip.open(folder / "train.de.gz", "rt", encoding="utf-8").read().split("\n")[:NUM_PAIRS]
    english = gzip.open(folder / "train.en.gz", "rt", encoding="utf-8").read().split("\n")[:NUM_PAIRS]
    pairs = [(de.strip(), en.strip()) for de, en in zip(german, english)]
    assert len(pairs) == NUM_PAIRS and not any("\t" in de + en for de, en in pairs)
    return pairs


def anki_lines(pairs):
    """Anki's `eng<TAB>other<TAB>attribution` lines."""
    return "".join(f"{en}\t{de}\tCC-BY 2.0 (France) Attribution: tatoeba.org #{i}\n" for i, (de, en) in enumerate(pairs))


def write_anki_tsv(root, pairs):
    root.mkdir()
    (root / "deu.txt").write_text(anki_lines(pairs), encoding="utf-8")
    return root / "deu.txt", {"reverse": True}


def write_anki_zip(root, pairs):
    root.mkdir()
    with zipfile.ZipFile(root / "deu-eng.zip", "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("_about.txt", "** Info **\nTab-delimited Bilingual Sentence Pairs\n")
        archive.writestr("deu.txt", anki_lines(pairs))
    return root / "deu-eng.zip", {"reverse": True}


def moses_splits(pairs):
    return {"train": pairs[:200], "valid": pairs[200:250], "test": pairs[250:]}


def write_moses(root, pairs):
    root.mkdir()
    for split, part in moses_splits(pairs).items():
        (root / f"{split}.de").write_text("".join(de + "\n" for de, _ in part), encoding="utf-8")
        (root / f"{split}.en").write_text("".join(en + "\n" for _, en in part), encoding="utf-8")
    return root, {"source_lang": "de", "target_lang": "en"}


def write_jsonl_folder(root, pairs):
    root.mkdir()
    for split, part in moses_splits(pairs).items():
        lines = [json.dumps({"translation": {"en": en, "de": de}}, ensure_ascii=False) for de, en in part]
        (root / f"{split.replace('valid', 'validation')}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root, {"source_lang": "de", "target_lang": "en"}


def write_jsonl_file(root, pairs):
    """One file, no language flags: the object's two keys in order."""
    root.mkdir()
    lines = [json.dumps({"de": de, "en": en}, ensure_ascii=False) for de, en in pairs]
    (root / "pairs.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root / "pairs.jsonl", {}


TRANSLATION_LAYOUTS = {
    "anki-tsv": write_anki_tsv,
    "anki-zip": write_anki_zip,
    "moses": write_moses,
    "jsonl-folder": write_jsonl_folder,
    "jsonl-file": write_jsonl_file,
}


@pytest.mark.parametrize("layout", list(TRANSLATION_LAYOUTS))
def test_every_translation_layout_reads_back_the_same_pairs(layout, sentence_pairs, tmp_path):
    path, flags = TRANSLATION_LAYOUTS[layout](tmp_path / "data", sentence_pairs)
    splits = pair_readers.read_translation(str(path), **flags)
    got = [pair for split in ("all", "train", "validation", "test") if split in splits
           for pair in zip(splits[split].sources, splits[split].targets)]
    assert got == sentence_pairs


def test_moses_folder_keeps_its_splits(sentence_pairs, tmp_path, capsys):
    path, flags = write_moses(tmp_path / "data", sentence_pairs)
    splits = pair_readers.read_translation(str(path), verbose=True, **flags)
    assert {split: len(pairs) for split, pairs in splits.items()} == {"test": 50, "train": 200, "validation": 50}
    assert capsys.readouterr().out.startswith("data: parallel files, 300 pairs")


def test_anki_zip_without_a_pair_file_is_one_line(tmp_path):
    path = tmp_path / "deu-eng.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("_about.txt", "** Info **\n")
        archive.writestr("notes.txt", "no tab on any line\n")
    with pytest.raises(UserError) as error:
        pair_readers.read_translation(str(path))
    message = str(error.value)
    assert "the zip holds no pair file" in message and "_about.txt, notes.txt" in message
    assert "UTF-8" not in message and "\n" not in message


def test_jsonl_translation_missing_language_names_the_keys(tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"translation": {"de": "Hund", "en": "dog"}}\n')
    with pytest.raises(UserError, match=r"pairs.jsonl:1: no 'fr' \(--target-lang\); the object has de, en"):
        pair_readers.read_translation(str(path), "de", "fr")


# === Summarization: BBC News ===


@pytest.fixture(scope="module")
def articles(shared_data):
    """[(document, summary)]: the first BBC News Summary pairs."""
    pairs = pair_readers.read_summarization(str(shared_data / "bbc_news_summary_mini" / "corpus"))["all"]
    return list(zip(pairs.sources, pairs.targets))[:30]


def write_cnn_csv(root, pairs):
    root.mkdir()
    with open(root / "cnn.csv", "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(["id", "article", "highlights"])
        writer.writerows((index, document, summary) for index, (document, summary) in enumerate(pairs))
    return root / "cnn.csv"


def write_xsum_jsonl(root, pairs):
    root.mkdir()
    for split, part in (("train", pairs[:20]), ("validation", pairs[20:25]), ("test", pairs[25:])):
        lines = [json.dumps({"document": document, "summary": summary, "id": str(i)})
                 for i, (document, summary) in enumerate(part)]
        (root / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return root


def write_csv_zip(root, pairs):
    root.mkdir()
    with zipfile.ZipFile(root / "split.zip", "w") as archive:
        for split, part in (("train", pairs[:20]), ("valid", pairs[20:25]), ("test", pairs[25:])):
            stream = io.StringIO()
            writer = csv.writer(stream)
            writer.writerow(["", "document", "summary", "categories"])
            writer.writerows((i, document, summary, "business") for i, (document, summary) in enumerate(part))
            archive.writestr(f"{split}.csv", stream.getvalue())
    return root / "split.zip"


SUMMARIZATION_LAYOUTS = {"cnn-csv": write_cnn_csv, "xsum-jsonl": write_xsum_jsonl, "csv-zip": write_csv_zip}


@pytest.mark.parametrize("layout", list(SUMMARIZATION_LAYOUTS))
def test_every_summarization_layout_reads_back_the_same_pairs(layout, articles, tmp_path):
    splits = pair_readers.read_summarization(str(SUMMARIZATION_LAYOUTS[layout](tmp_path / "data", articles)))
    got = [pair for split in ("all", "train", "validation", "test") if split in splits
           for pair in zip(splits[split].sources, splits[split].targets)]
    assert got == articles


def test_csv_without_a_summary_column_is_one_line(articles, tmp_path):
    path = tmp_path / "news.csv"
    path.write_text("id,article,category\n1,some text,sport\n")
    with pytest.raises(UserError) as error:
        pair_readers.read_summarization(str(path))
    assert str(error.value) == (f"{path}: no column could be the summary (summary, highlights, abstract, "
                                "summaries, ...); its columns are 'id', 'article', 'category'; pass "
                                "--summary-column NAME.")


# === Anomaly detection series: a NAB file ===


@pytest.fixture(scope="module")
def nab_rows(shared_data):
    """[(timestamp str, value str)]: the first rows of a real NAB series (hourly, naive UTC)."""
    path = shared_data / "nab" / "data" / "realKnownCause" / "ambient_temperature_system_failure.csv"
    lines = path.read_text().splitlines()[1:201]
    return [tuple(line.split(",")) for line in lines]


def epoch(stamp):
    return int(np.datetime64(stamp.replace(" ", "T"), "s").astype(np.int64))


def iso_with_zone(stamp, hours):
    moment = datetime.datetime.fromisoformat(stamp) + datetime.timedelta(hours=hours)
    return moment.strftime("%Y-%m-%dT%H:%M:%S") + (f"+{hours:02d}:00" if hours else "Z")


SERIES_LAYOUTS = {
    "nab": ("timestamp,value", lambda stamp: stamp),
    "prophet-epoch-seconds": ("ds,y", lambda stamp: str(epoch(stamp))),
    "epoch-milliseconds": ("time,value", lambda stamp: str(epoch(stamp) * 1000)),
    "iso-utc-z": ("datetime,reading", lambda stamp: iso_with_zone(stamp, 0)),
    "iso-plus-two-hours": ("date,val", lambda stamp: iso_with_zone(stamp, 2)),
    "two-other-names": ("when,level", lambda stamp: stamp),
}


@pytest.mark.parametrize("layout", list(SERIES_LAYOUTS))
def test_every_series_layout_reads_back_the_same_rows(layout, nab_rows, tmp_path):
    header, stamp_of = SERIES_LAYOUTS[layout]
    path = tmp_path / "series.csv"
    path.write_text(header + "\n" + "".join(f"{stamp_of(stamp)},{value}\n" for stamp, value in nab_rows))
    one = series.read_csv(path)
    expected = np.array([np.datetime64(stamp.replace(" ", "T"), "s") for stamp, _ in nab_rows])
    np.testing.assert_array_equal(one.timestamps, expected)
    np.testing.assert_array_equal(one.values, np.array([float(value) for _, value in nab_rows]))


def test_series_gaps_nan_and_zones_are_counted(nab_rows, tmp_path):
    rows = [(iso_with_zone(stamp, 0), value) for stamp, value in nab_rows]
    rows[10] = (rows[10][0], "")  # NaN
    del rows[50:53]  # a three-hour gap
    path = tmp_path / "series.csv"
    path.write_text("timestamp,value\n" + "".join(f"{stamp},{value}\n" for stamp, value in rows))
    one = series.read_csv(path)
    assert one.report == {"unsorted": 0, "duplicates": 0, "nan_filled": 1, "gaps": 1, "skipped": 0,
                          "zone_to_utc": len(rows)}


def test_series_with_two_time_columns_is_one_line(tmp_path):
    path = tmp_path / "series.csv"
    path.write_text("date,time,value\n2020-01-01,00:00:00,1\n")
    with pytest.raises(UserError, match=r"several columns could be the time \(date, time\); the columns are "
                                        r"date, time, value"):
        series.read_csv(path)
