"""Text readers: labelled text (sentence-per-line files per class, CSV/TSV, JSON lines, class-per-folder
trees, TFDS, demo) and unlabelled corpora for language models.

    found = text.read("../shared/data/mr_polarity", encoding="latin-1")  # prints: data: one file of ...
    found.splits["train"]   # (texts: list of str, labels: list of str)
    found.class_names       # ["neg", "pos"]
    texts = text.read_corpus("../shared/data/tiny_shakespeare")  # {"train": str, "validation": str, "test": str}

The two entries take the `--data` value (`demo`, `tfds:NAME[/CONFIG]` or a path): `read` for
labelled text (`read_labelled` reads a path without the printed line), `read_corpus` for a text
file or a folder of `*.txt` files, split by characters.

Formats (`read_labelled(path)` picks by what is there):
- A folder of plain files, one class per file, one example per line (`rt-polarity.pos`,
  `rt-polarity.neg`): the class is the suffix when the files share a stem (`pos`, `neg`), else
  the stem (`pos.txt` → `pos`). `*.md`, README and LICENSE files and hidden files are ignored.
- A CSV (`.csv`, comma) or TSV (`.tsv`, tab; other names: tab if the first line has one) file of
  (text, label) rows; the first row is a header when it names a column (text, sentence, review,
  label, sentiment, …). A folder holding `train.csv`/`train.tsv` (and `dev`/`validation`/`test`)
  gives those splits (the GLUE SST-2 layout).
  The text and label columns are `text_column`/`label_column` (a header name or a 0-based
  number), else found by name (text, sentence, review, … and label, sentiment, polarity, …);
  two candidates for one role, or none, is an error listing the columns.
- JSON lines (`.jsonl`, one object a line, e.g. `{"text": ..., "label": 1}`), keys found as CSV
  columns are; a folder of `train.jsonl` (+ `dev`/`validation`/`test`) gives those splits.
- A class-per-folder tree: `<root>/<class>/*` one example per file, or `<root>/train/<class>/*` and
  `<root>/test/<class>/*` (the aclImdb layout; its `unsup/` folder is unlabelled text). A folder
  holding only `aclImdb/` (the archive as extracted) is read as that folder.

`read_labelled` records the layout it found in `LabelledText.layout`.

Text is decoded as UTF-8 unless told otherwise (`encoding=`); a decode failure is one line naming
the file and the byte offset. Lines are split on "\\n" only: `str.splitlines()` would also break on
0x85 (NEL), which Latin-1 files such as MR polarity contain inside sentences.
"""

import csv
import dataclasses
import io
import json
import pathlib

import numpy as np

from tasks.core import pipeline
from tasks.core.errors import UserError
from tasks.data import tfds

TEXT_COLUMNS = ("text", "sentence", "review", "content", "document", "comment", "tweet", "utterance")
LABEL_COLUMNS = ("label", "labels", "sentiment", "class", "polarity", "target", "category", "rating", "stars",
                 "score")
JSONL_SUFFIXES = (".jsonl", ".ndjson")
SPLIT_NAMES = {"train": "train", "dev": "validation", "val": "validation", "valid": "validation",
               "validation": "validation", "test": "test"}
IGNORED_NAMES = ("readme", "license", "licence", "source", "imdb.vocab", "imdber")
UNLABELLED_FOLDERS = ("unsup", "unlabeled", "unlabelled")


@dataclasses.dataclass
class LabelledText:
    """What a reader returns.

    Attributes:
        splits: dict. Split name → (texts, labels), two lists of str of equal length.
        class_names: list of str. The classes in id order.
        unlabelled: list of str. Text without labels (e.g. aclImdb `unsup/`), for pretraining.
        skipped: list of (where, reason). Records left out under `skip_bad`.
    """

    splits: dict
    class_names: list
    unlabelled: list = dataclasses.field(default_factory=list)
    skipped: list = dataclasses.field(default_factory=list)
    layout: str = ""

    def summary(self):
        """`data: <layout>, <N> examples (<split> <n>, ...), <K> classes`."""
        counts = ", ".join(f"{name} {len(labels)}" for name, (_, labels) in self.splits.items())
        total = sum(len(labels) for _, labels in self.splits.values())
        return f"data: {self.layout}, {total} examples ({counts}), {len(self.class_names)} classes"


# === Decoding ===


ENCODING_ADVICE = "pass the file's encoding, e.g. --encoding latin-1"


def decode(data, where, encoding="utf-8", advice=ENCODING_ADVICE):
    """Bytes → str in `encoding`; a `UserError` naming `where`, the byte offset and `advice` if they do not decode."""
    try:
        text = data.decode(encoding)
    except LookupError:
        raise UserError(f"--encoding {encoding}: unknown text encoding (e.g. utf-8, latin-1, cp1252).")
    except UnicodeDecodeError as error:
        raise UserError(
            f"{where}: byte 0x{data[error.start]:02x} at offset {error.start} is not valid {encoding}; {advice}."
        )
    return text[1:] if text.startswith("\ufeff") else text  # a UTF-8 byte-order mark


def read_text(path, encoding="utf-8", advice=ENCODING_ADVICE):
    """A whole file as str (see `decode`); a missing file is a `UserError`."""
    path = pathlib.Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file.")
    return decode(path.read_bytes(), str(path), encoding, advice)


def split_lines(text):
    """Lines split on "\\n" only (never on 0x85 or other Unicode breaks), "\\r" endings removed.

    A final newline does not make an extra empty line.
    """
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def read_lines(path, encoding="utf-8"):
    return split_lines(read_text(path, encoding))


# === Records ===


class _Collector:
    """Gathers (text, label) records, refusing (or, with `skip_bad`, counting) empty ones."""

    def __init__(self, skip_bad):
        self.skip_bad = skip_bad
        self.texts, self.labels, self.skipped = [], [], []

    def bad(self, where, reason, advice):
        if not self.skip_bad:
            raise UserError(f"{where}: {reason}; {advice} or pass --skip-bad to skip such records.")
        self.skipped.append((where, reason))

    def add(self, text, label, where):
        if not text.strip():
            return self.bad(where, "empty text", "remove the line")
        if not label.strip():
            return self.bad(where, "empty label", "fill it in")
        self.texts.append(text)
        self.labels.append(label.strip())


def _check_classes(found, path, class_names):
    """Fixes the class order (given, or sorted train labels) and refuses unknown or single classes."""
    train_labels = found.splits["train"][1]
    seen = sorted(set(train_labels))
    if class_names:
        allowed = list(class_names)
    else:
        allowed = seen
    if len(set(train_labels)) < 2:
        only = f"'{seen[0]}'" if seen else "none"
        raise UserError(
            f"{path}: the training labels hold a single class ({only}); classification needs at least 2 classes."
        )
    found.class_names = allowed
    return found


def _unknown(where_list, labels, allowed, path, advice):
    allowed_set = set(allowed)
    for where, label in zip(where_list, labels):
        if label not in allowed_set:
            raise UserError(
                f"{where}: unknown label {label!r}; the labels are {', '.join(map(repr, allowed))}. {advice}"
            )


# === Sentence-per-line files ===


def _data_files(folder):
    files = []
    for path in sorted(folder.iterdir()):
        lower = path.name.lower()
        if not path.is_file() or lower.startswith(".") or lower.endswith(".md"):
            continue
        if any(lower.startswith(name) for name in IGNORED_NAMES):
            continue
        files.append(path)
    return files


def class_of_files(files):
    """File → class name: the suffix when the files share a stem (rt-polarity.pos), else the stem."""
    stems = {path.stem for path in files}
    if len(stems) == 1 and all(path.suffix for path in files):
        return {path: path.suffix[1:] for path in files}
    return {path: path.stem for path in files}


def read_line_files(folder, encoding="utf-8", skip_bad=False):
    """A folder of one-class-per-file, one-example-per-line files (`rt-polarity.pos/.neg`)."""
    folder = pathlib.Path(folder)
    files = _data_files(folder)
    if not files:
        raise UserError(f"{folder}: no data files (one file of sentences per class, e.g. rt-polarity.pos).")
    collector = _Collector(skip_bad)
    for path, label in class_of_files(files).items():
        for number, line in enumerate(read_lines(path, encoding), 1):
            collector.add(line, label, f"{path} line {number}")
    return LabelledText({"train": (collector.texts, collector.labels)}, [], skipped=collector.skipped)


# === CSV / TSV ===


def _delimiter(path, text):
    suffix = pathlib.Path(path).suffix.lower()
    if suffix == ".tsv":
        return "\t"
    if suffix == ".csv":
        return ","
    first = text.split("\n", 1)[0]
    return "\t" if "\t" in first else ","


def _column(spec, header, rows, path, what):
    """The index of a column given by name (needs a header) or 0-based number."""
    if spec.isdigit():
        index = int(spec)
    elif header is not None and spec.lower() in [cell.strip().lower() for cell in header]:
        index = [cell.strip().lower() for cell in header].index(spec.lower())
    else:
        names = ", ".join(header) if header is not None else "none (no header row)"
        raise UserError(f"{path}: no {what} column {spec!r}; the columns are {names}.")
    width = max(len(row) for row in rows) if rows else 0
    if index >= width:
        raise UserError(f"{path}: {what} column {index} does not exist (rows have {width} columns).")
    return index


def read_table(path, encoding="utf-8", text_column="", label_column="", skip_bad=False):
    """(texts, labels, wheres) of a CSV/TSV file; header and columns detected unless given."""
    path = pathlib.Path(path)
    text = read_text(path, encoding)
    delimiter = _delimiter(path, text)
    # newline="": only \n, \r and \r\n end rows (not 0x85); TSV quotes are taken literally.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quoting=quoting)
    rows, numbers = [], []
    try:
        for row in reader:
            rows.append(row)
            numbers.append(reader.line_num)
    except csv.Error as error:
        raise UserError(f"{path} line {reader.line_num}: not valid CSV ({error}).")
    if not rows:
        raise UserError(f"{path}: the file is empty.")
    known = set(TEXT_COLUMNS + LABEL_COLUMNS)
    first = [cell.strip().lower() for cell in rows[0]]
    header = rows[0] if any(cell in known for cell in first) or (
        (text_column and not text_column.isdigit()) or (label_column and not label_column.isdigit())
    ) else None
    body, body_numbers = (rows[1:], numbers[1:]) if header is not None else (rows, numbers)
    if not body:
        raise UserError(f"{path}: no data rows after the header.")
    if text_column:
        text_index = _column(text_column, header, body, path, "text")
    else:
        text_index = _guess(first if header is not None else [], TEXT_COLUMNS, rows[0], path, "text")
    if label_column:
        label_index = _column(label_column, header, body, path, "label")
    else:
        label_index = _guess(first if header is not None else [], LABEL_COLUMNS, rows[0], path, "label")
    width = max(len(row) for row in body)
    if text_index is None or label_index is None:
        if width != 2:
            raise UserError(
                f"{path}: {width} columns and no header naming the text and label (the first row is "
                f"{', '.join(rows[0])}); pass --text-column and --label-column (a name or a 0-based number)."
            )
        # Two columns: the text is the one with the longer cells on average.
        lengths = [np.mean([len(row[i]) if len(row) > i else 0 for row in body]) for i in range(2)]
        guess_text = int(np.argmax(lengths))
        text_index = guess_text if text_index is None else text_index
        label_index = 1 - text_index if label_index is None else label_index
    collector = _Collector(skip_bad)
    wheres = []
    for row, number in zip(body, body_numbers):
        where = f"{path} line {number}"
        if not any(cell.strip() for cell in row):
            collector.bad(where, "empty row", "remove the line")
            continue
        if len(row) <= max(text_index, label_index):
            collector.bad(where, f"{len(row)} column(s), expected at least {max(text_index, label_index) + 1}",
                          "fix the row")
            continue
        before = len(collector.texts)
        collector.add(row[text_index], row[label_index], where)
        if len(collector.texts) > before:
            wheres.append(where)
    return collector.texts, collector.labels, wheres, collector.skipped


def _guess(names, candidates, first_row, path, what):
    """The one column whose header name is a `candidates` name; None if none; several: an error."""
    found = [index for index, name in enumerate(names) if name in candidates]
    if len(found) > 1:
        raise UserError(
            f"{path}: several columns could be the {what} ({', '.join(first_row[i].strip() for i in found)}); "
            f"the columns are {', '.join(cell.strip() for cell in first_row)}; pass --{what}-column NAME."
        )
    return found[0] if found else None


def json_records(path, lines):
    """[(line number, object)] of the lines of a JSON-lines file (blank lines skipped); a line that
    is not a JSON object is a `UserError` naming `path` and the line."""
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(f"{path} line {number}: not valid JSON ({error.msg}); JSON lines hold one object a line.")
        if not isinstance(record, dict):
            raise UserError(f"{path} line {number}: expected a JSON object, found {type(record).__name__}.")
        records.append((number, record))
    if not records:
        raise UserError(f"{path}: no JSON objects in it.")
    return records


def read_jsonl(path, encoding="utf-8", text_column="", label_column="", skip_bad=False):
    """(texts, labels, wheres, skipped) of a JSON-lines file; keys guessed as CSV columns are."""
    path = pathlib.Path(path)
    records = json_records(path, split_lines(read_text(path, encoding)))
    keys = list(records[0][1])
    lower = [key.strip().lower() for key in keys]
    chosen = []
    for given, candidates, what in ((text_column, TEXT_COLUMNS, "text"), (label_column, LABEL_COLUMNS, "label")):
        if given:
            if given not in keys:
                raise UserError(f"{path}: no {what} key {given!r}; the keys are {', '.join(keys)}.")
            chosen.append(given)
            continue
        index = _guess(lower, candidates, keys, path, what)
        if index is None:
            raise UserError(f"{path}: no key could be the {what} ({', '.join(candidates[:4])}, ...); the keys are "
                            f"{', '.join(keys)}; pass --{what}-column NAME.")
        chosen.append(keys[index])
    collector = _Collector(skip_bad)
    wheres = []
    for number, record in records:
        where = f"{path} line {number}"
        text, label = record.get(chosen[0]), record.get(chosen[1])
        if text is None or label is None:
            collector.bad(where, f"no {chosen[0] if text is None else chosen[1]!r}", "fill it in")
            continue
        before = len(collector.texts)
        collector.add(str(text), str(label), where)
        if len(collector.texts) > before:
            wheres.append(where)
    return collector.texts, collector.labels, wheres, collector.skipped


def _table_split_files(folder):
    found = {}
    for path in sorted(folder.iterdir()):
        suffix = path.suffix.lower()
        if path.is_file() and suffix in (".csv", ".tsv") + JSONL_SUFFIXES and path.stem.lower() in SPLIT_NAMES:
            found.setdefault(SPLIT_NAMES[path.stem.lower()], path)
    return found


def read_tables(files, encoding="utf-8", text_column="", label_column="", class_names=(), skip_bad=False):
    """Split name → CSV/TSV file; every split's labels must be training labels (or `class_names`)."""
    splits, skipped, wheres = {}, [], {}
    for split, path in files.items():
        reader = read_jsonl if pathlib.Path(path).suffix.lower() in JSONL_SUFFIXES else read_table
        texts, labels, where, bad = reader(path, encoding, text_column, label_column, skip_bad)
        splits[split], wheres[split] = (texts, labels), where
        skipped += bad
    if "train" not in splits:
        raise UserError(f"{', '.join(map(str, files.values()))}: no training file (train.csv or train.tsv).")
    found = _check_classes(LabelledText(splits, [], skipped=skipped), files["train"], class_names)
    for split, (texts, labels) in splits.items():
        advice = ("Add it to --class-names or fix the row." if class_names
                  else "Every label must also occur in the training file.")
        _unknown(wheres[split], labels, found.class_names, files[split], advice)
    return found


# === Class-per-folder trees ===


def _class_folders(root):
    return [path for path in sorted(root.iterdir()) if path.is_dir() and not path.name.startswith(".")]


def _read_tree_split(root, encoding, collector, unlabelled):
    for folder in _class_folders(root):
        files = [path for path in sorted(folder.iterdir()) if path.is_file() and not path.name.startswith(".")]
        if folder.name.lower() in UNLABELLED_FOLDERS:
            unlabelled.extend(read_text(path, encoding) for path in files)
            continue
        for path in files:
            collector.add(read_text(path, encoding), folder.name, str(path))


def read_tree(root, encoding="utf-8", skip_bad=False):
    """`<root>/<class>/<file>` (one example per file), or `<root>/{train,test}/<class>/<file>` (aclImdb)."""
    root = pathlib.Path(root)
    split_roots = {SPLIT_NAMES[path.name.lower()]: path for path in _class_folders(root)
                   if path.name.lower() in SPLIT_NAMES and _class_folders(path)}
    if "train" not in split_roots:
        split_roots = {"train": root}
    splits, unlabelled, skipped = {}, [], []
    for split, folder in split_roots.items():
        collector = _Collector(skip_bad)
        _read_tree_split(folder, encoding, collector, unlabelled)
        splits[split] = (collector.texts, collector.labels)
        skipped += collector.skipped
    return LabelledText(splits, [], unlabelled=unlabelled, skipped=skipped)


# === Any local path ===


def read_labelled(path, encoding="utf-8", text_column="", label_column="", class_names=(), skip_bad=False):
    """Reads any supported local layout (see the module docstring) into `LabelledText`."""
    path = pathlib.Path(path)
    if not path.exists():
        raise UserError(f"{path}: no such file or folder.")
    if path.is_file():
        found = read_tables({"train": path}, encoding, text_column, label_column, class_names, skip_bad)
        found.layout = "JSON lines" if path.suffix.lower() in JSONL_SUFFIXES else _table_kind(path)
        return found
    tables = _table_split_files(path)
    if tables:
        found = read_tables(tables, encoding, text_column, label_column, class_names, skip_bad)
        ordered = [tables[split].name for split in ("train", "validation", "test") if split in tables]
        found.layout = f"split files ({', '.join(ordered)})"
        return found
    folders = _class_folders(path)
    if len(folders) == 1 and not _data_files(path) and any(
            child.name.lower() in SPLIT_NAMES for child in _class_folders(folders[0])):
        path, folders = folders[0], _class_folders(folders[0])  # the folder an archive extracted (aclImdb/)
    if folders:
        found = read_tree(path, encoding, skip_bad)
        found.layout = "class folders" + (" in split folders" if len(found.splits) > 1 or "test" in found.splits
                                          else "")
    else:
        found = read_line_files(path, encoding, skip_bad)
        found.layout = "one file of lines per class"
    found = _check_classes(found, path, class_names)
    for split, (texts, labels) in found.splits.items():
        _unknown([f"{path} ({split} split)"] * len(labels), labels, found.class_names, path,
                 "Add it to --class-names." if class_names else "Every class must occur in the training split.")
    return found


def _table_kind(path):
    return "TSV" if path.suffix.lower() == ".tsv" else "CSV" if path.suffix.lower() == ".csv" else "table"


# === TFDS ===


def _pick_text_and_label(info):
    texts, labels = tfds.keys_of(info, "Text"), tfds.keys_of(info, "ClassLabel")
    return {"text": texts[0], "label": labels[0]} if texts and labels else None


def _read_tfds(name, data_dir=None):
    """A TFDS text-classification dataset (`imdb_reviews`, `glue/sst2`, …) as `LabelledText`.

    Examples labelled -1 (GLUE's hidden test labels) are dropped; a split left empty is dropped,
    so `glue/sst2` keeps train and validation.
    """
    splits, info = tfds.read(name, _pick_text_and_label, "text and class-label features", data_dir)
    names = list(info.features[_pick_text_and_label(info)["label"]].names)
    result, unlabelled = {}, []
    for split, examples in splits.items():
        texts, labels = [], []
        for example in examples:
            text = example["text"].decode("utf-8")
            if int(example["label"]) < 0:
                unlabelled.append(text)
                continue
            texts.append(text)
            labels.append(names[int(example["label"])])
        if texts:
            result[split] = (texts, labels)
    if "train" not in result:
        raise UserError(f"--data tfds:{name} has no labelled train split (it has {', '.join(splits)}).")
    return LabelledText(result, names, unlabelled=unlabelled if name.startswith("imdb") else [],
                        layout=f"tfds:{name}")


def _read_tfds_corpus(name, data_dir=None):
    """Every split of a TFDS text dataset as one string each (examples joined by newlines)."""
    def pick(info):
        keys = tfds.keys_of(info, "Text")
        return {"text": keys[0]} if keys else None

    splits, _ = tfds.read(name, pick, "text feature", data_dir)
    return {split: "\n".join(example["text"].decode("utf-8") for example in examples)
            for split, examples in splits.items()}


# === Demo ===


def demo_sentences(num_per_class=1000, seed=0):
    """Short movie-review sentences from a small grammar with negation: `LabelledText` (neg, pos).

    "not" flips an adjective's polarity, so a bag of words is not quite enough.
    """
    rng = np.random.default_rng(seed)
    subjects = ["the movie", "this film", "the acting", "the plot", "the ending", "the soundtrack", "the script",
                "the cast", "the story", "the direction", "the dialogue", "the cinematography"]
    verbs = ["is", "was", "feels", "seemed", "remains"]
    adverbs = ["", "", "really ", "truly ", "quite ", "utterly ", "somewhat "]
    positive = ["wonderful", "brilliant", "moving", "charming", "gripping", "delightful", "superb", "funny", "clever",
                "beautiful", "great", "touching"]
    negative = ["boring", "dull", "awful", "clumsy", "tedious", "terrible", "bland", "predictable", "painful",
                "silly", "weak", "messy"]
    tails = ["", "", " .", " !", " from start to finish .", " , honestly .", " for most of its length .",
             " , as everyone says ."]
    texts, labels = [], []
    for label in ("neg", "pos"):
        for _ in range(num_per_class):
            negate = rng.random() < 0.3
            # A positive sentence is a positive adjective, or "not" + a negative one.
            words = positive if (label == "pos") != negate else negative
            negation = "not " if negate else ""
            sentence = (f"{rng.choice(subjects)} {rng.choice(verbs)} {negation}{rng.choice(adverbs)}"
                        f"{rng.choice(words)}{rng.choice(tails)}")
            if rng.random() < 0.15:  # a second clause of either polarity: the first one decides
                sentence += f" and {rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(positive + negative)}"
            texts.append(sentence)
            labels.append(label)
    order = rng.permutation(len(texts))
    return LabelledText({"train": ([texts[i] for i in order], [labels[i] for i in order])}, ["neg", "pos"])


# === The entries: the --data value ===


def read(source, encoding="utf-8", text_column="", label_column="", class_names=(), skip_bad=False, seed=0,
         verbose=True):
    """Labelled text from the `--data` value: `demo`, `tfds:NAME[/CONFIG]` or a path (see `read_labelled`).

    `verbose` prints `data: <layout>, <N> examples (<split> <n>, ...), <K> classes`.

    Returns:
        `LabelledText`.
    """
    kind, value = pipeline.source(str(source))
    if kind == "demo":
        found = demo_sentences(seed=seed)
        found.layout = "demo (generated sentences)"
    elif kind == "tfds":
        found = _read_tfds(value)
    else:
        found = read_labelled(value, encoding, text_column, label_column, class_names, skip_bad)
    if verbose:
        print(found.summary())
    return found


def read_corpus(source, validation_fraction=0.1, demo=None, verbose=True):
    """Unlabelled text for a language model from the `--data` value, split by characters.

    Args:
        source: str. `demo`, `tfds:NAME[/CONFIG]`, a UTF-8 text file, or a folder of `*.txt` files
            (found at any depth, joined by newlines in path order).
        validation_fraction: float. The contiguous end of the text held out for validation (and
            of the TFDS train split, when the dataset has no validation split). Defaults to 0.1.
        demo: callable or None. Returns the demo text for `source == "demo"`.
        verbose: bool. Print `data: <layout>, <N> characters (train <n>, validation <n>)`.

    Returns:
        `{"train": str, "validation": str, "test": str}`; `test` is the validation string itself
        (the same object) unless the data has its own test split.
    """
    kind, value = pipeline.source(str(source))
    if kind == "tfds":
        texts, layout = _read_tfds_corpus(value), f"tfds:{value}"
    else:
        if kind == "demo":
            if demo is None:
                raise UserError("--data demo: this task has no demo text; pass a text file or a folder of .txt files.")
            text, layout = demo(), "demo text"
        elif value.is_dir():
            files = sorted(path for path in value.rglob("*.txt") if path.is_file())
            if not files:
                raise UserError(f"--data {source}: the folder has no .txt files.")
            text = "\n".join(_corpus_file(path) for path in files)
            layout = f"folder of {len(files)} .txt file{'s' if len(files) > 1 else ''}"
        else:
            text, layout = _corpus_file(value), "text file"
        if not text.strip():
            what = ("the .txt files hold no text" if value.is_dir() else
                    "the file is empty" if not text else "the file holds only whitespace")
            raise UserError(f"--data {source}: {what}; give it text to learn from.")
        # Contiguous: the first (1 - fraction) of the characters train, the rest validates.
        cut = int(round(len(text) * (1.0 - validation_fraction)))
        texts = {"train": text[:cut], "validation": text[cut:]}
    if "validation" not in texts:  # hold out the end of the training text
        cut = int(round(len(texts["train"]) * (1.0 - validation_fraction)))
        texts["train"], texts["validation"] = texts["train"][:cut], texts["train"][cut:]
    texts.setdefault("test", texts["validation"])
    if not texts["validation"].strip():
        raise UserError(f"--data {source}: no validation text; raise --validation-fraction (now {validation_fraction}).")
    if verbose:
        shown = [split for split in texts if split != "test" or texts["test"] is not texts["validation"]]
        counts = ", ".join(f"{split} {len(texts[split])}" for split in shown)
        print(f"data: {layout}, {sum(len(texts[split]) for split in shown)} characters ({counts})")
    return texts


def _corpus_file(path):
    """A UTF-8 text file with "\\r\\n" and "\\r" line ends read as "\\n"."""
    text = read_text(path, advice="convert it to UTF-8")
    return text.replace("\r\n", "\n").replace("\r", "\n")
