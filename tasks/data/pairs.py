"""Readers of text pairs (source → target) for translation and summarization: every split as lists.

    splits = read_translation("../shared/data/multi30k", "de", "en")   # {"train": Pairs, ...}
    splits = read_summarization("../shared/data/bbc_news_summary/train_val_test_split.zip")

Translation (`read_translation`; the layout found is printed as `data: <layout>, <N> pairs`):
- a folder of parallel files, one sentence a line, line i of one language aligned with line i of
  the other, plain or `.gz`: `train.de.gz` + `train.en.gz` (Multi30k, WMT), Moses-style `train.de`
  + `train.en` (+ `valid.*`, `test.*`), or `de.train.txt` + `en.train.txt` (the TFDS
  `TranslateFolder` layout); `--source-lang/--target-lang` pick the pair.
- a TSV file of pairs, `source<TAB>target[<TAB>anything]` a line (the Tatoeba/Anki `eng<TAB>spa<TAB>
  attribution` layout); `reverse=True` reads the second column as the source.
- the Anki/Tatoeba `.zip` as downloaded (`spa-eng.zip`): its one TSV pair file (`spa.txt`), read in
  place; `_about.txt` and other notes are not pairs.
- JSON lines, one pair an object: `{"translation": {"de": ..., "en": ...}}` (the Hugging Face WMT
  layout) or `{"de": ..., "en": ...}`; a `.jsonl` file or a folder of `train.jsonl` (+ `validation`,
  `test`). The language keys are `--source-lang/--target-lang`, else the object's two keys in order.
- `tfds:NAME[/CONFIG]` (ted_hrlr_translate, wmt…): the language features, else the supervised keys.
- `demo`: dates written out in many ways (`the third of march, nineteen ninety-seven`,
  `Mar 3 1997`, …) → ISO dates (`1997-03-03`).

Summarization (`read_summarization`):
- a CSV file of document and summary columns, a folder of `train.csv`/`valid.csv`/`test.csv`, or a
  zip of them read in place (the BBC News Summary layout). The columns are named by
  `document_column`/`summary_column`, else found by name: `document`, `article`, `text`, `story`
  … and `summary`, `highlights`, `abstract` (CNN/DailyMail's `article,highlights`; XSum's
  `document,summary`).
- JSON lines with the same keys (`{"document": ..., "summary": ...}`): a `.jsonl` file or a folder
  of `train.jsonl` (+ `validation`, `test`).
- a folder with `article/…` and `summary/…` subtrees holding files of the same relative names (the
  BBC News Summary `corpus/` layout).
- `tfds:cnn_dailymail` (or any TFDS dataset with a (document, summary) supervised pair).
- `demo`: short made-up news reports in shuffled sentence order → one-sentence summaries.

Split names: `train`; `val`, `valid`, `validation`, `dev` → `validation`; `test*` → `test`. A
source with one collection has no splits: the task's core carves them (seeded). Mismatched line
counts are an error; empty pairs are an error naming the line, or skipped and counted with
`skip_bad=True`.
"""

import csv
import dataclasses
import datetime
import gzip
import io
import pathlib
import re
import sys
import zipfile

import numpy as np

from tasks.core import pipeline
from tasks.core.errors import UserError
from tasks.data import text as text_readers
from tasks.data import tfds

VALIDATION_NAMES = ("val", "valid", "validation", "dev")
DOCUMENT_COLUMNS = ("document", "article", "text", "story", "content", "body", "source")
SUMMARY_COLUMNS = ("summary", "highlights", "abstract", "summaries", "headline", "target")
NOTE_NAMES = ("_about", "about", "readme", "license", "licence")  # files in an Anki zip that are not pairs
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")


@dataclasses.dataclass
class Pairs:
    """One split: aligned lists of source and target texts, and how many bad pairs were skipped."""

    sources: list
    targets: list
    skipped: int = 0

    def __len__(self):
        return len(self.sources)


def split_name(name):
    """`train`, `validation`, `test` or None for a file prefix such as `test_2016_flickr`."""
    name = name.lower()
    if name.startswith("train"):
        return "train"
    if name in VALIDATION_NAMES:
        return "validation"
    if name.startswith("test"):
        return "test"
    return None


def check_pairs(sources, targets, where, skip_bad=False):
    """`Pairs` of stripped texts; an empty side is a `UserError` naming the line, or skipped."""
    kept_sources, kept_targets, skipped = [], [], 0
    for number, (source, target) in enumerate(zip(sources, targets), 1):
        source, target = source.strip(), target.strip()
        if not source or not target:
            if not skip_bad:
                side = "source" if not source else "target"
                raise UserError(
                    f"{where}: pair {number} has an empty {side}; fix it or pass --skip-bad to skip "
                    "(and count) empty pairs."
                )
            skipped += 1
            continue
        kept_sources.append(source)
        kept_targets.append(target)
    return Pairs(kept_sources, kept_targets, skipped)


def _read_text(path):
    """A text file, plain or gzip, as str (UTF-8; a BOM is dropped)."""
    try:
        raw = gzip.open(path).read() if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError) as error:
        raise UserError(f"{path}: cannot read it ({error}).")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UserError(f"{path}: not UTF-8 text (byte {error.start}); convert it to UTF-8.")


def _lines(path):
    text = _read_text(path)
    lines = text.split("\n")  # not splitlines(): \x85 and \u2028 are not line breaks here
    if lines and lines[-1] == "":
        lines.pop()
    return [line.rstrip("\r") for line in lines]


# === Translation ===


def _parallel_files(folder):
    """`{prefix: {lang: path}}` for files named `prefix.lang[.txt][.gz]` or `lang.prefix.txt`."""
    found = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        name = path.name
        for suffix in (".gz", ".txt"):
            if name.endswith(suffix):
                name = name[: -len(suffix)]
        parts = name.split(".")
        if len(parts) != 2:
            continue
        first, second = parts
        if split_name(first):  # train.de
            prefix, lang = first, second
        elif split_name(second):  # de.train (TFDS TranslateFolder)
            prefix, lang = second, first
        else:
            continue
        found.setdefault(prefix, {})[lang] = path
    return found


def read_parallel_folder(folder, source_lang, target_lang, skip_bad=False):
    """Every split of a folder of parallel files as `{split: Pairs}`."""
    found = _parallel_files(folder)
    languages = sorted({lang for files in found.values() for lang in files})
    if not found:
        raise UserError(
            f"--data {folder}: no parallel files (train.de.gz + train.en.gz, or de.train.txt + en.train.txt)."
        )
    if not source_lang or not target_lang:
        raise UserError(
            f"--data {folder}: holds {', '.join(languages)} files; pass --source-lang and --target-lang "
            "to choose the direction."
        )
    for lang, flag in ((source_lang, "--source-lang"), (target_lang, "--target-lang")):
        if lang not in languages:
            raise UserError(f"{flag} {lang}: {folder} has no {lang} files (it has {', '.join(languages)}).")
    splits = {}
    for prefix in sorted(found):
        files = found[prefix]
        split = split_name(prefix)
        if source_lang not in files or target_lang not in files:
            present = next(iter(files.values()))
            missing = source_lang if source_lang not in files else target_lang
            raise UserError(f"{present}: no matching {missing} file for the {prefix} split in {folder}.")
        if split in splits:
            continue  # a second test set (e.g. test_2017): the first in name order is the test split
        sources, targets = _lines(files[source_lang]), _lines(files[target_lang])
        if len(sources) != len(targets):
            raise UserError(
                f"{files[source_lang].name} has {len(sources)} lines but {files[target_lang].name} has "
                f"{len(targets)}; parallel files must align line by line."
            )
        splits[split] = check_pairs(sources, targets, f"{files[source_lang]} / {files[target_lang].name}", skip_bad)
    return splits


def read_tsv(path, reverse=False, skip_bad=False):
    """A TSV file of pairs (`source<TAB>target[<TAB>…]`) as one `Pairs` collection."""
    return _tsv_pairs(_lines(path), str(path), reverse, skip_bad)


def _tsv_pairs(lines, where, reverse, skip_bad):
    sources, targets, bad = [], [], 0
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2:
            if not skip_bad:
                raise UserError(
                    f"{where}:{number}: expected source<TAB>target, found no tab; fix it or pass --skip-bad."
                )
            bad += 1
            continue
        source, target = (fields[1], fields[0]) if reverse else (fields[0], fields[1])
        sources.append(source)
        targets.append(target)
    pairs = check_pairs(sources, targets, where, skip_bad)
    pairs.skipped += bad
    return pairs


def read_anki_zip(path, reverse=False, skip_bad=False):
    """The Anki/Tatoeba zip as downloaded (`spa-eng.zip` holding `spa.txt`, `_about.txt`): `Pairs`."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as error:
        raise UserError(f"--data {path}: not a readable zip file ({error}).")
    with archive:
        names = [name for name in archive.namelist() if not name.endswith("/")]
        candidates = []
        for name in names:
            base = pathlib.PurePosixPath(name)
            if (base.suffix.lower() not in (".txt", ".tsv", "") or base.name.startswith(".")
                    or base.stem.lower().startswith(NOTE_NAMES) or "__MACOSX" in base.parts):
                continue
            head = archive.open(name).read(4096)
            if b"\t" in head:
                candidates.append(name)
        if not candidates:
            listed = ", ".join(names[:6]) or "nothing"
            raise UserError(
                f"--data {path}: the zip holds no pair file (a .txt of source<TAB>target lines, as "
                f"spa.txt in spa-eng.zip); it holds {listed}. Pass the pair file itself or a zip that holds one."
            )
        if len(candidates) > 1:
            raise UserError(
                f"--data {path}: the zip holds {len(candidates)} pair files ({', '.join(candidates)}); unzip it "
                "and pass the one to train on."
            )
        where = f"{path}:{candidates[0]}"
        raw = archive.read(candidates[0])
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise UserError(f"{where}: not UTF-8 text (byte {error.start}); convert it to UTF-8.")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return _tsv_pairs([line.rstrip("\r") for line in lines], where, reverse, skip_bad)


def _json_lines(path):
    """[(line number, object)] of a JSON-lines file (blank lines skipped); bad JSON is a `UserError`."""
    return text_readers.json_records(path, _lines(path))


def read_jsonl_translation(path, source_lang="", target_lang="", reverse=False, skip_bad=False):
    """`{"translation": {"de": ..., "en": ...}}` (or `{"de": ..., "en": ...}`) lines as `Pairs`."""
    sources, targets = [], []
    for number, record in _json_lines(path):
        record = record.get("translation", record)
        if not isinstance(record, dict):
            raise UserError(f"{path}:{number}: \"translation\" is not an object of language: text.")
        if source_lang and target_lang:
            keys = (source_lang, target_lang)
        else:
            keys = tuple(key for key, value in record.items() if isinstance(value, str))
            if len(keys) != 2:
                raise UserError(f"{path}:{number}: {len(keys)} text fields ({', '.join(keys)}); pass "
                                "--source-lang and --target-lang to choose the pair.")
        for key, flag in zip(keys, ("--source-lang", "--target-lang")):
            if key not in record:
                raise UserError(f"{path}:{number}: no {key!r} ({flag}); the object has {', '.join(record)}.")
        source, target = (record[keys[1]], record[keys[0]]) if reverse else (record[keys[0]], record[keys[1]])
        sources.append(str(source))
        targets.append(str(target))
    return check_pairs(sources, targets, str(path), skip_bad)


def _jsonl_split_files(folder):
    """`{split: path}` of `train.jsonl`, `validation.jsonl`, `test.jsonl` (any JSON-lines suffix)."""
    result = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in JSONL_SUFFIXES:
            split = split_name(path.stem)
            if split and split not in result:
                result[split] = path
    return result


def _read_tfds(name, first_key=None, second_key=None, skip_bad=False):
    """Every split of a TFDS dataset as `{split: Pairs}`: the named features or the supervised keys."""
    def pick(info):
        keys = list(info.features.keys()) if hasattr(info.features, "keys") else []
        if first_key in keys and second_key in keys:
            return {"source": first_key, "target": second_key}
        if info.supervised_keys and len(info.supervised_keys) == 2:
            return dict(zip(("source", "target"), info.supervised_keys))
        return None

    splits, _ = tfds.read(name, pick, "supervised (source, target) pair, nor the two text features named")
    result = {}
    for split, examples in splits.items():
        sources, targets = [], []
        for example in examples:
            sources.append(example["source"].decode("utf-8"))
            targets.append(example["target"].decode("utf-8"))
        result[split_name(split) or split] = check_pairs(sources, targets, f"tfds:{name} {split}", skip_bad)
    return result


def read_translation(data, source_lang="", target_lang="", reverse=False, skip_bad=False, seed=0, verbose=False):
    """The translation pairs `--data` names, as `{split: Pairs}` (one `"all"` collection if unsplit).

    `verbose` prints the layout found: `data: <layout>, <N> pairs (<split> <n>, ...)`."""
    kind, value = pipeline.source(data)
    if kind == "demo":
        sources, targets = demo_dates(seed=seed)
        splits, layout = {"all": Pairs(sources, targets)}, "demo (dates)"
    elif kind == "tfds":
        splits, layout = _read_tfds(value, source_lang, target_lang, skip_bad), f"tfds:{value}"
        if reverse:
            splits = {split: Pairs(pairs.targets, pairs.sources, pairs.skipped) for split, pairs in splits.items()}
    elif value.is_dir() and _jsonl_split_files(value):
        files = _jsonl_split_files(value)
        splits = {split: read_jsonl_translation(path, source_lang, target_lang, reverse, skip_bad)
                  for split, path in files.items()}
        layout = f"JSON lines ({', '.join(path.name for path in files.values())})"
    elif value.is_dir():
        splits, layout = read_parallel_folder(value, source_lang, target_lang, skip_bad), "parallel files"
    elif zipfile.is_zipfile(value):
        splits, layout = {"all": read_anki_zip(value, reverse, skip_bad)}, "Anki/Tatoeba zip"
    elif value.suffix.lower() in JSONL_SUFFIXES:
        splits = {"all": read_jsonl_translation(value, source_lang, target_lang, reverse, skip_bad)}
        layout = "JSON lines"
    else:
        splits, layout = {"all": read_tsv(value, reverse=reverse, skip_bad=skip_bad)}, "TSV pairs"
    if verbose:
        print(describe(layout, splits))
    return splits


def describe(layout, splits):
    """`data: <layout>, <N> pairs (<split> <n>, ...)`."""
    counts = ", ".join(f"{name} {len(pairs)}" for name, pairs in splits.items())
    return f"data: {layout}, {sum(len(pairs) for pairs in splits.values())} pairs ({counts})"


# === Summarization ===


def pick_column(columns, given, candidates, flag, where):
    """The column (or JSON key) `given` names, else the one of `candidates` present; ambiguity or
    absence is a `UserError` listing the columns."""
    listed = ", ".join(repr(column) for column in columns)
    if given:
        if given not in columns:
            raise UserError(f"{where}: no column '{given}' ({flag}); its columns are {listed}.")
        return given
    found = [column for column in columns if column.strip().lower() in candidates]
    if len(found) == 1:
        return found[0]
    what = "several" if found else "no"
    raise UserError(f"{where}: {what} column could be the {flag[2:].replace('-column', '')} "
                    f"({', '.join(candidates[:4])}, ...); its columns are {listed}; pass {flag} NAME.")


def _csv_pairs(stream, where, document_column, summary_column, skip_bad):
    csv.field_size_limit(sys.maxsize)
    reader = csv.DictReader(stream)
    columns = reader.fieldnames or []
    document_column = pick_column(columns, document_column, DOCUMENT_COLUMNS, "--document-column", where)
    summary_column = pick_column(columns, summary_column, SUMMARY_COLUMNS, "--summary-column", where)
    documents, summaries = [], []
    try:
        for row in reader:
            documents.append(row[document_column] or "")
            summaries.append(row[summary_column] or "")
    except csv.Error as error:
        raise UserError(f"{where}: not a valid CSV file near line {reader.line_num}: {error}")
    return check_pairs(documents, summaries, where, skip_bad)


def _jsonl_summaries(path, document_column, summary_column, skip_bad):
    records = _json_lines(path)
    keys = list(records[0][1])
    document_column = pick_column(keys, document_column, DOCUMENT_COLUMNS, "--document-column", str(path))
    summary_column = pick_column(keys, summary_column, SUMMARY_COLUMNS, "--summary-column", str(path))
    documents, summaries = [], []
    for number, record in records:
        for key in (document_column, summary_column):
            if key not in record:
                raise UserError(f"{path}:{number}: no {key!r}; the object has {', '.join(record)}.")
        documents.append(str(record[document_column] or ""))
        summaries.append(str(record[summary_column] or ""))
    return check_pairs(documents, summaries, str(path), skip_bad)


def _csv_split_files(names):
    """`{split: name}` for CSV member names such as `train.csv`, `data/valid.csv`, `test.csv`."""
    result = {}
    for name in sorted(names):
        stem = pathlib.PurePosixPath(name)
        if stem.suffix.lower() != ".csv" or stem.name.startswith("."):
            continue
        split = split_name(stem.stem)
        if split and split not in result:
            result[split] = name
    return result


def _folder_pairs(folder, skip_bad):
    """Article/summary subtrees with files of the same relative names → one `Pairs` collection."""
    article_names = ("article", "articles", "document", "documents", "stories")
    summary_names = ("summary", "summaries", "highlights")
    articles = next((p for p in sorted(folder.rglob("*")) if p.is_dir() and p.name.lower() in article_names), None)
    if articles is None:
        return None
    summaries = next((articles.parent / name for name in summary_names if (articles.parent / name).is_dir()), None)
    if summaries is None:
        raise UserError(f"{articles}: no summary folder beside it ({' or '.join(summary_names)}).")
    documents, targets, missing = [], [], 0
    for path in sorted(p for p in articles.rglob("*") if p.is_file() and not p.name.startswith(".")):
        partner = summaries / path.relative_to(articles)
        if not partner.is_file():
            if not skip_bad:
                raise UserError(f"{path}: no summary file {partner}; add it or pass --skip-bad.")
            missing += 1
            continue
        documents.append(_read_text(path))
        targets.append(_read_text(partner))
    if not documents:
        raise UserError(f"{articles}: no article files.")
    pairs = check_pairs(documents, targets, str(articles), skip_bad)
    pairs.skipped += missing
    return pairs


def read_summarization(data, document_column="", summary_column="", skip_bad=False, seed=0, verbose=False):
    """The (document, summary) pairs `--data` names, as `{split: Pairs}` (`"all"` if unsplit).

    `verbose` prints the layout found: `data: <layout>, <N> pairs (<split> <n>, ...)`."""
    splits, layout = _summarization_splits(data, document_column, summary_column, skip_bad, seed)
    if verbose:
        print(describe(layout, splits))
    return splits


def _summarization_splits(data, document_column, summary_column, skip_bad, seed):
    kind, value = pipeline.source(data)
    if kind == "demo":
        documents, summaries = demo_reports(seed=seed)
        return {"all": Pairs(documents, summaries)}, "demo (news reports)"
    if kind == "tfds":
        return _read_tfds(value, document_column, summary_column, skip_bad), f"tfds:{value}"
    columns = (document_column, summary_column, skip_bad)
    if value.is_file() and zipfile.is_zipfile(value):
        try:
            archive = zipfile.ZipFile(value)
        except zipfile.BadZipFile:
            raise UserError(f"--data {data}: not a readable zip file.")
        with archive:
            members = _csv_split_files(archive.namelist())
            if not members:
                raise UserError(f"--data {data}: the zip holds no train/valid/test CSV files.")
            return {
                split: _csv_pairs(io.TextIOWrapper(archive.open(name), "utf-8-sig", newline=""),
                                  f"{value}:{name}", *columns)
                for split, name in members.items()
            }, "zip of CSV splits"
    if value.is_file() and value.suffix.lower() in JSONL_SUFFIXES:
        return {"all": _jsonl_summaries(value, *columns)}, "JSON lines"
    if value.is_file():
        with open(value, encoding="utf-8-sig", newline="") as stream:
            return {"all": _csv_pairs(stream, str(value), *columns)}, "CSV"
    members = _csv_split_files(path.name for path in value.iterdir() if path.is_file())
    if members:
        result = {}
        for split, name in members.items():
            with open(value / name, encoding="utf-8-sig", newline="") as stream:
                result[split] = _csv_pairs(stream, str(value / name), *columns)
        return result, f"CSV splits ({', '.join(members.values())})"
    files = _jsonl_split_files(value)
    if files:
        return ({split: _jsonl_summaries(path, *columns) for split, path in files.items()},
                f"JSON lines ({', '.join(path.name for path in files.values())})")
    pairs = _folder_pairs(value, skip_bad)
    if pairs is None:
        raise UserError(
            f"--data {data}: no train/valid/test CSV or JSON-lines files and no article/ + summary/ folders."
        )
    return {"all": pairs}, "article/ + summary/ folders"


# === Demo data ===

_ONES = ["", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven", "twelve",
         "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]
_ORDINALS = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
             "nine": "ninth", "twelve": "twelfth", "twenty": "twentieth", "thirty": "thirtieth"}
_MONTHS = ["january", "february", "march", "april", "may", "june", "july", "august", "september",
           "october", "november", "december"]


def _number_words(n):
    """0 < n < 100 in words: `forty-two`."""
    if n < 20:
        return _ONES[n]
    tens, ones = divmod(n, 10)
    return _TENS[tens] + (f"-{_ONES[ones]}" if ones else "")


def _ordinal_words(n):
    words = _number_words(n)
    head, _, last = words.rpartition("-")
    last = _ORDINALS.get(last, last[:-1] + "ieth" if last.endswith("y") else last + "th")
    return f"{head}-{last}" if head else last


def _year_words(year):
    century, rest = divmod(year, 100)
    if century == 20 and rest < 10:
        return "two thousand" + (f" and {_ONES[rest]}" if rest else "")
    if rest == 0:
        return f"{_number_words(century)} hundred"
    return f"{_number_words(century)} {'oh ' + _ONES[rest] if rest < 10 else _number_words(rest)}"


def _ordinal_suffix(day):
    return "th" if 10 <= day % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(day % 10, "th")


def date_phrase(date, style):
    """One of eight ways to write `date` (a datetime.date)."""
    month = _MONTHS[date.month - 1]
    if style == 0:
        return f"the {_ordinal_words(date.day)} of {month}, {_year_words(date.year)}"
    if style == 1:
        return f"{month} {_ordinal_words(date.day)} {_year_words(date.year)}"
    if style == 2:
        return f"{date.strftime('%A').lower()}, {month} {date.day}, {date.year}"
    if style == 3:
        return f"{date.day}{_ordinal_suffix(date.day)} {month.capitalize()} {date.year}"
    if style == 4:
        return f"{month[:3].capitalize()} {date.day} {date.year}"
    if style == 5:
        return f"{date.day:02d}.{date.month:02d}.{date.year}"
    if style == 6:
        return f"{date.day} {month} {_year_words(date.year)}"
    return f"{month.upper()} {date.day}, {date.year}"


def demo_dates(num_pairs=6_000, seed=0):
    """Dates written out in eight styles → ISO 8601 dates, 1950-2049 (a generated pair language)."""
    rng = np.random.default_rng(seed)
    start = datetime.date(1950, 1, 1).toordinal()
    days = rng.integers(0, datetime.date(2049, 12, 31).toordinal() - start + 1, num_pairs)
    styles = rng.integers(0, 8, num_pairs)
    sources, targets = [], []
    for day, style in zip(days, styles):
        date = datetime.date.fromordinal(start + int(day))
        sources.append(date_phrase(date, int(style)))
        targets.append(date.isoformat())
    return sources, targets


def demo_reports(num_pairs=4_000, seed=0):
    """Made-up news reports of five to seven sentences in shuffled order → a one-sentence summary.

    The summary names who met whom, where, and about what: facts spread over the report, so
    the first sentences alone (lead-3) miss some of them.
    """
    rng = np.random.default_rng(seed)
    people = ["the mayor", "the minister", "a union leader", "the coach", "the chief executive",
              "a senior judge", "the ambassador", "the head teacher", "a famous singer", "the bishop"]
    others = ["local farmers", "bank officials", "young voters", "hospital staff", "the players",
              "factory workers", "foreign investors", "the police", "angry residents", "film makers"]
    cities = ["london", "leeds", "cardiff", "glasgow", "belfast", "bristol", "york", "oxford", "dover", "bath"]
    topics = ["new taxes", "the floods", "school meals", "rail fares", "the election", "a stadium plan",
              "job cuts", "river pollution", "house prices", "the budget"]
    filler = ["the weather was cold and wet", "crowds gathered outside", "the talks lasted two hours",
              "reporters waited at the door", "no agreement was signed", "a statement will follow next week",
              "the event was broadcast live", "security was tight"]
    documents, summaries = [], []
    for _ in range(num_pairs):
        who, whom = rng.choice(people), rng.choice(others)
        city, topic = rng.choice(cities), rng.choice(topics)
        facts = [f"{who} travelled to {city} on monday", f"there {who} met {whom}",
                 f"the meeting was about {topic}"]
        extra = list(rng.choice(filler, size=int(rng.integers(2, 5)), replace=False))
        sentences = facts + extra
        order = rng.permutation(len(sentences))
        documents.append(" ".join(sentences[i].capitalize() + "." for i in order))
        summaries.append(f"{who.capitalize()} met {whom} in {city.capitalize()} to discuss {topic}.")
    return documents, summaries


def split_sentences(text):
    """Sentences of a text: lines, then after `.`/`!`/`?` (and a closing quote) and a space, or glued
    between lower-case words (`so.mr`, as in the lower-cased BBC summaries). The extractive model's
    in-graph `tasks.families.extractive.split_sentences` is the same rule in RE2 (no lookbehind); a test
    holds the two equal on every BBC article."""
    sentences = []
    for line in text.split("\n"):
        parts = re.split(r"(?<=[.!?])\s+|(?<=[.!?][\"'])\s+|(?<=[a-z][.!?])(?=[a-z])", line.strip())
        sentences.extend(part.strip() for part in parts if part and part.strip())
    return sentences
