"""Sentiment classification: TextCNN, BiLSTM/BiGRU, a small BERT and NB-weighted n-grams, against TF-IDF + LR.

Models: TextCNN, BiLSTM/BiGRU with attention pooling, a small BERT and an NB-weighted bag of
n-grams; baselines: TF-IDF + logistic regression and the majority class.

Usage:
    python -m tasks.sentiment train                                         # demo: generated review sentences
    python -m tasks.sentiment train --data mr_polarity --encoding latin-1 --folds 10
    python -m tasks.sentiment train --data mr_polarity --encoding latin-1 --folds 10 --fold 0
    python -m tasks.sentiment train --data reviews.csv --model bigru_attention --tokenizer wordpiece
    python -m tasks.sentiment train --data mr_polarity --encoding latin-1 --folds 10 \
        --model nb_ngrams --tokenizer ngrams --epochs 3 --sequence-length 56
    python -m tasks.sentiment train --data aclImdb --model bert_tiny --pretrain-epochs 3 --sequence-length 256
    python -m tasks.sentiment train --data tfds:glue/sst2
    python -m tasks.sentiment evaluate                                      # the same flags find the run
    python -m tasks.sentiment predict "a gripping , funny film" reviews.txt # sentences or files of lines
    python -m tasks.sentiment export

Data: sentence-per-line files per class (`rt-polarity.pos/.neg`), CSV/TSV (text, label), a
class-per-folder tree (aclImdb), `tfds:imdb_reviews`, `tfds:glue/sst2`, or `demo` (see
`tasks.data.text`). UTF-8 unless `--encoding` says otherwise. Splits: the data's own test split,
else `--test-fraction` held out per class; `--folds K` is stratified K-fold cross-validation
(`--fold I` trains one fold and exports it; without `--fold`, every fold is trained and the mean
± std is written to `cv.json`). Validation: `--validation-fraction` of the training split.

Tokens: `--tokenizer word` (keras TextVectorization, pure TF ops), `wordpiece` (keras-hub
WordPiece learned on the training split; a SavedModel holding it needs `import tensorflow_text`
before loading) or `ngrams` (the bag `nb_ngrams` reads: word 1-3-grams and character 3-6-grams,
pure TF ops, every n-gram of the training split by default, else the most frequent
`--vocabulary-size` of them). Text is lower-cased, `<br />` removed
and punctuation split off first. The vocabulary is learned on the training split only. Sentences
longer than `--sequence-length` words (or subwords) are truncated to their first
`--sequence-length` (counted in info.json, stated); n-grams are formed from what is kept.

Model: a sentence classifier of the applications registry (`text_cnn`, `bilstm_attention`,
`bigru_attention`, `bert_tiny`, `bert_mini`, `nb_ngrams`); `--pretrain-epochs N` first trains a
BERT encoder as a masked language model on the training split's own text (self-supervised);
`nb_ngrams` sets its Naive-Bayes log-count ratios from the training split before the first step. Loss:
cross-entropy. Metrics: accuracy, macro-F1, ROC-AUC (binary). Baselines: the majority class and
TF-IDF (word 1-2 grams) + logistic regression, fit on the same training sentences.
"""

import collections
import dataclasses
import os
import pathlib
import sys

import keras
import numpy as np
import tensorflow as tf

from applications import bert as bert_family
from applications import text_classifiers
from tasks.core import cli
from tasks.core import config as config_lib
from tasks.core import pipeline
from tasks.core import export
from tasks.core import plots
from tasks.core import runner
from tasks.core import training
from tasks.core.config import TrainConfig
from tasks.core.config import model_option
from tasks.core.config import option
from tasks.core.errors import UserError
from tasks.core.runs import learned_part
from tasks.data import text as text_readers

KIND = "sentence_classifier"  # the applications registry kind(s) --model names

RESERVED_TOKENS = ["[PAD]", "[UNK]", "[MASK]"]  # ids 0, 1, 2 for every tokenizer
WORD_NGRAMS = (1, 2, 3)  # the `ngrams` tokenizer's widths, in words
CHAR_NGRAMS = (3, 4, 5, 6)  # and in characters (spaces included)
CHAR_MARK = "\x1f"  # prefixes character n-grams: the word "abc" and the characters "abc" stay two features
DEFAULT_VOCABULARY = 20000  # words or WordPiece pieces, when --vocabulary-size is 0
MIN_VOCABULARY = 8
BAG_MODELS = ("nb_ngrams",)  # models that read the `ngrams` bag (unordered), and only they
MASK_ID = 2
BUILDER_DEFAULT = -1.0


@dataclasses.dataclass
class Config(TrainConfig):
    epochs: int = option(5, "Passes over the training split.", minimum=1)
    model: str = model_option("text_cnn", KIND, " (nb_ngrams with --tokenizer ngrams)")
    tokenizer: str = option(
        "word", "Tokens: words (TextVectorization), WordPiece subwords, or a bag of word 1-3- and character 3-6-grams.",
        choices=["word", "wordpiece", "ngrams"],
    )
    vocabulary_size: int = option(0, "Largest vocabulary, learned on the training split (0: the tokenizer's default: "
                                     "20,000 for word and wordpiece, every n-gram of the training split for ngrams).",
                                  minimum=0)
    sequence_length: int = option(64, "Tokens per sentence; longer sentences are truncated to it.", minimum=1)
    embed_dim: int = option(0, "Embedding / hidden width (0: the model's default).", minimum=0)
    units: int = option(0, "Recurrent units per direction, RNN models (0: the model's default).", minimum=0)
    num_layers: int = option(0, "Recurrent or Transformer layers (0: the model's default).", minimum=0)
    num_heads: int = option(0, "Attention heads, BERT models (0: the model's default).", minimum=0)
    dropout_rate: float = option(
        BUILDER_DEFAULT, "Dropout (-1: the model's default: 0.5 TextCNN, 0.3 RNNs, 0.1 BERT).", minimum=BUILDER_DEFAULT
    )
    pretrain_epochs: int = option(0, "Masked-LM pretraining epochs on the training text first (BERT models).", minimum=0)
    mask_rate: float = option(0.15, "Share of tokens masked in pretraining.", minimum=0.01)
    encoding: str = option("utf-8", "Text encoding of local files (e.g. latin-1 for MR polarity).")
    text_column: str = option("", "CSV/TSV text column: a header name or 0-based number (empty: detect).")
    label_column: str = option("", "CSV/TSV label column: a header name or 0-based number (empty: detect).")
    class_names: str = option("", "Comma-separated labels in class-id order; other labels are errors (empty: from the data).")
    test_fraction: float = option(0.1, "Share held out per class as the test split when the data has none.", minimum=0.0)
    folds: int = option(0, "K-fold cross-validation, stratified (0: off; K >= 2).", minimum=0)
    fold: int = option(-1, "With --folds: the one fold to train and export (-1: all folds, then cv.json).", minimum=-1)


@dataclasses.dataclass
class TextData(pipeline.Data):
    """`Data` plus the raw sentences the baselines and the pretraining read."""

    texts: dict = None  # split → (list of str, int32 labels)
    train_ids: np.ndarray = None  # (N, T) token ids of the training split
    unlabelled_ids: np.ndarray = None  # (M, T) ids of unlabelled text, if the data has any


# === Data ===


def read_source(config):
    """The config's labelled text (`tasks.data.text.LabelledText`)."""
    class_names = [name.strip() for name in config.class_names.split(",") if name.strip()]
    return text_readers.read(config.data, config.encoding, config.text_column, config.label_column, class_names,
                             config.skip_bad, seed=config.seed, verbose=bool(config.verbose))


def fold_of(labels, folds, seed):
    """Stratified fold numbers (N,): each class shuffled (seeded) and dealt round-robin to the folds."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    assignment = np.zeros(len(labels), np.int64)
    offset = 0
    for value in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == value))
        assignment[members] = (np.arange(len(members)) + offset) % folds
        offset += len(members)  # the next class starts where this one stopped: folds stay even
    return assignment


def make_splits(found, config):
    """`{"train", "validation", "test"}` → (texts, int32 labels); the test split per the config."""
    index = {name: i for i, name in enumerate(found.class_names)}
    splits = {name: (list(texts), np.asarray([index[label] for label in labels], np.int32))
              for name, (texts, labels) in found.splits.items()}
    if config.folds:
        if config.folds < 2 or config.fold >= config.folds:
            raise UserError(f"--folds must be >= 2 and --fold in 0..{max(config.folds - 1, 0)} (or -1). "
                            f"Received: folds={config.folds}, fold={config.fold}")
        texts = [text for name in splits for text in splits[name][0]]
        labels = np.concatenate([splits[name][1] for name in splits])
        assignment = fold_of(labels, config.folds, config.seed)
        fold = max(config.fold, 0)
        test, keep = np.flatnonzero(assignment == fold), np.flatnonzero(assignment != fold)
        splits = {"train": ([texts[i] for i in keep], labels[keep]), "test": ([texts[i] for i in test], labels[test])}
    elif "test" not in splits:
        keep, held = pipeline.split_indices(splits["train"][1], config.test_fraction, config.seed)
        texts, labels = splits["train"]
        splits["train"], splits["test"] = ([texts[i] for i in keep], labels[keep]), ([texts[i] for i in held], labels[held])
    if "validation" not in splits:
        keep, held = pipeline.split_indices(splits["train"][1], config.validation_fraction, config.seed + 1)
        texts, labels = splits["train"]
        splits["train"], splits["validation"] = (
            ([texts[i] for i in keep], labels[keep]), ([texts[i] for i in held], labels[held])
        )
    for name in ("train", "test"):
        if len(splits[name][1]) == 0:
            raise UserError(f"--data {config.data}: the {name} split is empty; too few examples "
                            f"(or raise --test-fraction, now {config.test_fraction}).")
    return splits


# === Tokens ===


def standardize(sentences):
    """tf.string → tf.string: lower-cased (Unicode), `<br />` removed, punctuation split off."""
    text = tf.strings.lower(sentences, encoding="utf-8")
    text = tf.strings.regex_replace(text, r"<br\s*/?>", " ")
    return tf.strings.regex_replace(text, r"([!?.,;:()\"])", r" \1 ")


def standardize_numpy(texts):
    """The same standardization as Python strings (for the TF-IDF baseline: the same words)."""
    out = []
    for start in range(0, len(texts), 4096):
        out += [text.decode("utf-8") for text in standardize(tf.constant(texts[start:start + 4096])).numpy()]
    return out


def ngrams(sentences, sequence_length):
    """tf.string (N,) → (ragged n-gram strings (N, None), word counts (N,) before truncation).

    The standardized words, cut to the first `sequence_length`, give word n-grams (joined by a
    space) and, joined by single spaces, character n-grams (prefixed by `CHAR_MARK`).
    """
    words = tf.strings.split(standardize(sentences))
    counts = tf.cast(words.row_lengths(), tf.int32)
    words = words[:, :sequence_length]
    word_grams = tf.strings.ngrams(words, ngram_width=WORD_NGRAMS, separator=" ")
    characters = tf.strings.unicode_split(tf.strings.reduce_join(words, axis=-1, separator=" "), "UTF-8")
    char_grams = tf.strings.ngrams(characters, ngram_width=CHAR_NGRAMS, separator="")
    char_grams = tf.ragged.map_flat_values(lambda grams: tf.strings.join([CHAR_MARK, grams]), char_grams)
    return tf.concat([word_grams, char_grams], axis=1), counts


def vocabulary_limit(config):
    """`--vocabulary-size`, or its tokenizer's default for 0: `DEFAULT_VOCABULARY` words or pieces,
    None (every n-gram) for `ngrams` — `nb_ngrams` wants them all (MR fold 0: 0.801 against 0.765
    with 20,000)."""
    if config.vocabulary_size:
        return config.vocabulary_size
    return None if config.tokenizer == "ngrams" else DEFAULT_VOCABULARY


def frequent_ngrams(texts, sequence_length, limit=None, verbose=0):
    """The `limit` n-grams in most training sentences (ties by the n-gram), most frequent first;
    every n-gram when `limit` is None."""
    frequency = collections.Counter()
    for start in range(0, len(texts), 4096):
        grams, _ = ngrams(tf.constant(texts[start:start + 4096], tf.string), sequence_length)
        for row in grams.to_list():
            frequency.update(set(row))
    if limit is not None and len(frequency) > limit and verbose:
        # The NB ratios make rare n-grams informative, so cutting them costs accuracy (BENCHMARKS.md).
        print(f"note: keeping the {limit:,} most frequent of the training split's {len(frequency):,} n-grams "
              f"(--vocabulary-size {limit + len(RESERVED_TOKENS)}); nb_ngrams is usually best with all of them "
              "(--vocabulary-size 0).")
    ranked = sorted(frequency.items(), key=lambda item: (-item[1], item[0]))[:limit]
    return [gram.decode("utf-8") for gram, _ in ranked]


def learn_vocabulary(config, train_texts):
    """The tokenizer's part of `info`: the kind and its vocabulary (reserved tokens first)."""
    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(train_texts)).batch(512).map(standardize)
    size = vocabulary_limit(config)
    if config.tokenizer == "ngrams":
        limit = None if size is None else size - len(RESERVED_TOKENS)
        vocabulary = RESERVED_TOKENS + frequent_ngrams(train_texts, config.sequence_length, limit, config.verbose)
    elif config.tokenizer == "word":
        layer = keras.layers.TextVectorization(max_tokens=size - 1, standardize=None, split="whitespace")
        layer.adapt(dataset)
        words = [str(word) for word in layer.get_vocabulary()[2:]]  # after "" and [UNK]
        vocabulary = RESERVED_TOKENS + words
    else:
        import keras_hub

        vocabulary = keras_hub.tokenizers.compute_word_piece_vocabulary(
            dataset.unbatch(), size, lowercase=False, strip_accents=False,
            reserved_tokens=RESERVED_TOKENS,
        )
    return {"tokenizer": config.tokenizer, "vocabulary": list(vocabulary), "sequence_length": config.sequence_length}


class Tokenizer:
    """tf.string sentences (N,) → token ids (N, T) int32 (truncated / zero-padded) and token counts (N,).

    For `ngrams`, the ids are the sentence's n-grams (an unordered bag; unknown ones are [UNK]),
    T is the longest bag of the batch, and the counts are words.

    Args:
        info: dict. `tokenizer`, `vocabulary` and `sequence_length`, as `learn_vocabulary` makes them.
    """

    def __init__(self, info):
        self.sequence_length = info["sequence_length"]
        self.kind = info["tokenizer"]
        if self.kind == "ngrams":
            self.layer = keras.layers.StringLookup(
                vocabulary=info["vocabulary"][2:], mask_token="", oov_token="[UNK]"  # "" → 0, [UNK] → 1
            )
        elif self.kind == "word":
            # "" and [UNK] are ids 0 and 1 of TextVectorization; [MASK] follows as id 2.
            self.layer = keras.layers.TextVectorization(
                standardize=None, split="whitespace", ragged=True, vocabulary=info["vocabulary"][2:]
            )
        else:
            import keras_hub
            import tensorflow_text  # noqa: F401  (registers the WordPiece ops)

            self.layer = keras_hub.tokenizers.WordPieceTokenizer(
                vocabulary=info["vocabulary"], lowercase=False, strip_accents=False, oov_token="[UNK]",
            )

    def __call__(self, sentences):
        if tf.executing_eagerly():
            # Eagerly, keras-hub tokenizers return Python lists or dense arrays, not ragged tensors.
            return self._graph(tf.convert_to_tensor(sentences, tf.string))
        return self._tokenize(sentences)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
    def _graph(self, sentences):
        return self._tokenize(sentences)

    def _tokenize(self, sentences):
        if self.kind == "ngrams":
            grams, counts = ngrams(sentences, self.sequence_length)
            return tf.cast(self.layer(grams), tf.int32).to_tensor(default_value=0), counts  # (N, longest bag)
        pieces = tf.cast(self.layer(standardize(sentences)), tf.int32)  # ragged (N, None)
        counts = tf.cast(pieces.row_lengths(), tf.int32)
        ids = pieces.to_tensor(default_value=0, shape=[None, self.sequence_length])  # truncates and pads
        return ids, counts

    def numpy(self, texts, batch_size=4096):
        """Token ids (N, T) and counts (N,) of a list of str, in batches (bags padded to the longest)."""
        ids, counts = [np.zeros((0, self.sequence_length), np.int32)], [np.zeros((0,), np.int32)]
        for start in range(0, len(texts), batch_size):
            batch_ids, batch_counts = self(tf.constant(texts[start:start + batch_size], tf.string))
            ids.append(batch_ids.numpy())
            counts.append(batch_counts.numpy())
        if self.kind == "ngrams":
            width = max(batch.shape[1] for batch in ids)
            ids = [np.pad(batch, [(0, 0), (0, width - batch.shape[1])]) for batch in ids]
        return np.concatenate(ids), np.concatenate(counts)


def make_dataset(ids, labels, config, training_split=False):
    return pipeline.finalize(
        tf.data.Dataset.from_tensor_slices((ids, labels)), config.batch_size, shuffle=training_split,
        seed=config.seed, cache=False,
    )


def load_data(config, saved=None):
    """Train / validation / test token ids and labels, and the facts the model and the export need.

    `saved` is the run's info when the run exists (a resumed run, `evaluate`): its vocabulary is
    kept, not learned again.
    """
    check_model(config)  # a bad --model fails before the data is read
    found = read_source(config)
    splits = make_splits(found, config)
    info = learned_part(saved, ("tokenizer", "vocabulary", "sequence_length")) or learn_vocabulary(config, splits["train"][0])
    tokenizer = Tokenizer(info)
    ids, truncated = {}, {}
    for name, (texts, _) in splits.items():
        ids[name], counts = tokenizer.numpy(texts)
        truncated[name] = int((counts > config.sequence_length).sum())
    if truncated["train"] and config.verbose:
        print(f"note: {truncated['train']} of {len(splits['train'][1])} training sentences are longer than "
              f"--sequence-length {config.sequence_length} tokens and are truncated to their first "
              f"{config.sequence_length} tokens.")
    unlabelled = tokenizer.numpy(found.unlabelled)[0] if found.unlabelled else None
    num_classes = len(found.class_names)
    train_labels = splits["train"][1]
    info.update({
        "class_names": list(found.class_names),
        "num_classes": num_classes,
        "vocabulary_size": len(info["vocabulary"]),
        "num_train": int(len(train_labels)),
        "num_validation": int(len(splits["validation"][1])),
        "num_test": int(len(splits["test"][1])),
        "train_counts": np.bincount(train_labels, minlength=num_classes).tolist(),
        "truncated": truncated,  # sentences longer than sequence_length, per split
        "num_unlabelled": 0 if unlabelled is None else int(len(unlabelled)),
        "folds": config.folds,
        "fold": config.fold,
        "skipped": [f"{where}: {reason}" for where, reason in found.skipped],
    })
    if found.skipped and config.verbose:
        print(f"Skipped {len(found.skipped)} bad record(s) (--skip-bad), e.g. {info['skipped'][0]}")
    has_validation = len(splits["validation"][1]) > 0
    return TextData(
        train=make_dataset(ids["train"], train_labels, config, training_split=True),
        validation=make_dataset(ids["validation"], splits["validation"][1], config) if has_validation else None,
        test=make_dataset(ids["test"], splits["test"][1], config),
        info=info,
        texts=splits,
        train_ids=ids["train"],
        unlabelled_ids=unlabelled,
    )


# === Model ===


def check_model(config):
    """The registry builder of `--model`, or a `UserError` if it is no sentence classifier or the flags do not fit."""
    builder = training.model_builder(config.model, KIND)
    if config.pretrain_epochs and builder.__module__ != "applications.bert":
        raise UserError(f"--pretrain-epochs applies to the BERT models (bert_tiny, bert_mini), not --model {config.model}.")
    if 0 < config.vocabulary_size < MIN_VOCABULARY:
        raise UserError(f"--vocabulary-size {config.vocabulary_size} is too small: use 0 (the tokenizer's default) or "
                        f"at least {MIN_VOCABULARY} (the {len(RESERVED_TOKENS)} reserved tokens and some words).")
    if config.model in BAG_MODELS and config.tokenizer != "ngrams":
        raise UserError(f"--model {config.model} reads a bag of n-grams: add --tokenizer ngrams "
                        f"(received --tokenizer {config.tokenizer}).")
    if config.tokenizer == "ngrams" and config.model not in BAG_MODELS:
        raise UserError(f"--tokenizer ngrams gives an unordered bag of n-grams, which only {', '.join(BAG_MODELS)} "
                        f"reads; --model {config.model} needs --tokenizer word or wordpiece.")
    return builder


def build_model(config, info):
    """A registry sentence classifier on token ids, compiled with cross-entropy and the config's optimizer."""
    builder = check_model(config)
    wanted = training.flag_arguments(config, builder, ("embed_dim", "units", "num_layers", "num_heads"))
    if config.dropout_rate != BUILDER_DEFAULT:
        wanted["dropout_rate"] = config.dropout_rate
    model = training.build_network(builder, config, info["vocabulary_size"], info["sequence_length"],
                                   info["num_classes"], **wanted)
    return training.compile(model, config, info, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])


# === Pretraining (masked language model on the task's own text) ===


def masked_lm_dataset(ids, config, max_predictions, vocabulary_size):
    """Token ids (N, T) → ((masked ids, positions), original ids at them, weights) batches."""
    import keras_hub

    masker = keras_hub.layers.MaskedLMMaskGenerator(
        vocabulary_size=vocabulary_size, mask_selection_rate=config.mask_rate, mask_token_id=MASK_ID,
        mask_selection_length=max_predictions, unselectable_token_ids=[0],
    )

    def mask(batch):
        out = masker(batch)
        return (out["token_ids"], out["mask_positions"]), out["mask_ids"], out["mask_weights"]

    dataset = tf.data.Dataset.from_tensor_slices(ids).shuffle(len(ids), seed=config.seed)
    return dataset.batch(config.batch_size).map(mask, num_parallel_calls=pipeline.AUTOTUNE).prefetch(pipeline.AUTOTUNE)


class MaskedLMPretraining(keras.callbacks.Callback):
    """Before the classifier's first epoch, trains its BERT encoder as a masked LM for `epochs` epochs.

    The masked-LM model shares the classifier's encoder layers (`applications.bert.masked_lm`), so
    fine-tuning starts from the pretrained encoder. Skipped when a killed run resumes (its
    backup already holds the pretrained and partly fine-tuned weights).

    Args:
        ids: np.ndarray. Token ids (N, T) of the unlabelled text (the training sentences).
        config: Config. Batch size, learning rate, mask rate, seed.
        log_file: path. CSV log of the pretraining epochs.
        resume: bool. Whether the run resumes from a backup.
    """

    def __init__(self, ids, config, log_file, resume=False):
        super().__init__()
        self.ids = ids
        self.config = config
        self.log_file = log_file
        self.resume = resume

    def on_train_begin(self, logs=None):
        self.history = {}
        if self.resume:
            return
        config = self.config
        max_predictions = max(1, int(np.ceil(config.mask_rate * config.sequence_length)))
        mlm = bert_family.masked_lm(self.model, max_predictions)
        vocabulary_size = mlm.get_layer("mlm_head").vocabulary_size
        schedule = dataclasses.replace(config, epochs=config.pretrain_epochs,
                                       warmup_epochs=min(1.0, config.pretrain_epochs / 5))
        training.compile(mlm, schedule, {"num_train": len(self.ids)},
                         loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                         weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
        if config.verbose:
            print(f"Masked-LM pretraining of the encoder: {config.pretrain_epochs} epoch(s) on {len(self.ids)} sentences.")
        history = mlm.fit(
            masked_lm_dataset(self.ids, config, max_predictions, vocabulary_size),
            epochs=config.pretrain_epochs, verbose=2 if config.verbose else 0,
            callbacks=[keras.callbacks.CSVLogger(str(self.log_file))],
        )
        self.history = history.history


class NaiveBayesRatios(keras.callbacks.Callback):
    """Before the first step, adapts every `NaiveBayesBag` of the model to the training bags and labels."""

    def __init__(self, ids, labels):
        super().__init__()
        self.ids, self.labels = ids, labels

    def on_train_begin(self, logs=None):
        for layer in self.model._flatten_layers():
            if isinstance(layer, text_classifiers.NaiveBayesBag):
                layer.adapt(self.ids, self.labels)  # the same counts on a resumed run


def callbacks(config, data, run):
    """NB ratios for the bag models; masked-LM pretraining before fine-tuning, when `--pretrain-epochs` is set."""
    if config.model in BAG_MODELS:
        return [NaiveBayesRatios(data.train_ids, data.texts["train"][1])]
    if not config.pretrain_epochs:
        return []
    ids = data.train_ids if data.unlabelled_ids is None else np.concatenate([data.train_ids, data.unlabelled_ids])
    return [MaskedLMPretraining(ids, config, run.path / "pretraining.csv", resume=run.resume_epoch() is not None)]


# === Baselines and evaluation ===


def classification_metrics(labels, probabilities, num_classes):
    """Accuracy, macro-F1, ROC-AUC (binary: of class 1's probability), cross-entropy; scikit-learn's definitions."""
    from sklearn import metrics as sk

    labels = np.asarray(labels)
    predicted = np.argmax(probabilities, axis=-1)
    result = {
        "accuracy": float(np.mean(predicted == labels)),
        "macro_f1": float(sk.f1_score(labels, predicted, average="macro", labels=np.arange(num_classes),
                                      zero_division=0)),
    }
    if num_classes == 2:
        both = len(np.unique(labels)) == 2
        result["roc_auc"] = float(sk.roc_auc_score(labels, probabilities[:, 1])) if both else float("nan")
    picked = np.clip(probabilities[np.arange(len(labels)), labels], 1e-12, 1.0)
    result["loss"] = float(-np.mean(np.log(picked)))
    return result


def tfidf_logistic_regression(train_texts, train_labels, test_texts, seed=0):
    """TF-IDF of word 1-2 grams (sublinear tf) + L2 logistic regression, C chosen by 3-fold CV on the training texts.

    Returns:
        `(probabilities (N_test, C'), class ids of those C' columns)`.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegressionCV

    vectorizer = TfidfVectorizer(tokenizer=str.split, token_pattern=None, lowercase=False, ngram_range=(1, 2),
                                 sublinear_tf=True, min_df=1)
    features = vectorizer.fit_transform(standardize_numpy(train_texts))
    # L2 only and accuracy as the CV score, stated: scikit-learn 1.9 warns that both defaults change.
    classifier = LogisticRegressionCV(Cs=[0.5, 2.0, 8.0, 32.0], cv=3, max_iter=2000, random_state=seed,
                                      l1_ratios=(0.0,), scoring="accuracy", use_legacy_attributes=False)
    classifier.fit(features, train_labels)
    probabilities = classifier.predict_proba(vectorizer.transform(standardize_numpy(test_texts)))
    return probabilities, classifier.classes_


def baseline(config, data):
    """TF-IDF + logistic regression (top level) and the majority class (`majority`) on the test split.

    Both see the same training sentences as the network: the training split plus the validation
    split (the network uses the latter only to pick its checkpoint).
    """
    num_classes = data.info["num_classes"]
    test_texts, test_labels = data.texts["test"]
    train_texts = data.texts["train"][0] + data.texts["validation"][0]
    train_labels = np.concatenate([data.texts["train"][1], data.texts["validation"][1]])
    counts = np.bincount(train_labels, minlength=num_classes).astype(np.float64)
    prior = np.tile(counts / counts.sum(), (len(test_labels), 1))
    majority = classification_metrics(test_labels, prior, num_classes)
    majority["name"] = "majority class"
    scores, classes = tfidf_logistic_regression(train_texts, train_labels, test_texts, config.seed)
    probabilities = np.full((len(test_labels), num_classes), 1e-12)
    probabilities[:, classes] = scores
    result = classification_metrics(test_labels, probabilities, num_classes)
    result["name"] = "TF-IDF (1-2 grams) + logistic regression"
    result["majority"] = majority  # printed as the `majority` column beside `baseline`
    return result


def test_labels(data):
    return np.concatenate([labels for _, labels in data.test.as_numpy_iterator()])


def evaluate(model, data, config, plots_dir=None):
    """Accuracy, macro-F1, ROC-AUC (binary) and cross-entropy on the test split; confusion matrix PNG."""
    logits = model.predict(data.test.map(lambda ids, labels: ids), verbose=0)
    probabilities = keras.ops.convert_to_numpy(keras.ops.softmax(keras.ops.cast(logits, "float32")))
    labels = test_labels(data)
    names = data.info["class_names"]
    result = classification_metrics(labels, probabilities, len(names))
    result["num_test"] = int(len(labels))
    result["truncated_test_sentences"] = data.info["truncated"]["test"]
    if plots_dir is not None:
        matrix = np.zeros((len(names), len(names)), np.int64)
        np.add.at(matrix, (labels, np.argmax(probabilities, axis=-1)), 1)
        with plots.best_effort(pathlib.Path(plots_dir) / "confusion_matrix.png") as path:
            plots.confusion_matrix(matrix, names, path)
    return result


# === Export and predict ===


def serving(model, info):
    """`serving_default`: tf.string sentences (N,) → probabilities, class_id, label, score, num_tokens, truncated."""
    tokenizer = Tokenizer(info)
    model.sentiment_tokenizer = tokenizer.layer  # tracked with the model, so the export holds its tables/ops
    names = tf.constant(info["class_names"])
    length = info["sequence_length"]

    def classify(sentences):
        ids, counts = tokenizer(sentences)
        probabilities = tf.nn.softmax(tf.cast(model(ids, training=False), tf.float32), axis=-1)  # (N, C)
        return {**export.class_outputs(probabilities, names),
                "num_tokens": counts,  # before truncation
                "truncated": counts > length}

    example = [np.array([b"a wonderful , moving film", b"", " ".join(["dull"] * (length + 5)).encode()])]
    return [export.Endpoint("serving_default", classify, [tf.TensorSpec([None], tf.string, name="sentences")], example)]


def load_exported(model_path, quiet=True):
    """`(version folder, serving_default, info)` of an export (`export.load`, which registers the
    WordPiece ops first); prints the `model:` line unless `quiet`."""
    loaded = export.load(model_path, quiet=quiet)
    return loaded.path, loaded.signatures["serving_default"], loaded.info


def looks_like_path(text):
    """An argument that names a file (one word with a path separator or a text-file suffix), not a sentence."""
    if not text or any(char.isspace() for char in text):
        return False
    return os.sep in text or pathlib.Path(text).suffix.lower() in (".txt", ".csv", ".tsv", ".pos", ".neg", ".text")


def sentences_of(inputs, encoding="utf-8"):
    """`(sentences, skipped empty lines)` from sentence arguments and files of one sentence a line."""
    sentences, empty = [], 0
    for number, item in enumerate(inputs, 1):
        path = pathlib.Path(item)
        if path.is_file():
            for line in text_readers.read_lines(path, encoding):
                if line.strip():
                    sentences.append(line)
                else:
                    empty += 1
        elif looks_like_path(item):
            raise UserError(f"{item}: no such file (to classify it as a sentence, add a word to it).")
        elif not item.strip():
            raise UserError(f"input {number} is an empty sentence; give some text.")
        else:
            sentences.append(item)
    return sentences, empty


def predict_flags(parser):
    """The encoding of input files."""
    parser.add_argument("--encoding", default="utf-8", help="Text encoding of input files (default utf-8).")


def predict(inputs, model_path, output_dir="predictions", encoding="utf-8"):
    """Prints `label<TAB>score<TAB>sentence` per sentence (arguments, or lines of files)."""
    sentences, empty = sentences_of(inputs, encoding)
    if not sentences:
        raise UserError(f"{', '.join(inputs)}: no sentence to classify (only empty lines); give a file with "
                        "one sentence a line, or a sentence.")
    path, classify, info = load_exported(model_path, quiet=False)
    if empty:
        print(f"warning: skipped {empty} empty line(s) in the input files.", file=sys.stderr)
    truncated = 0
    for start in range(0, len(sentences), 256):
        batch = sentences[start:start + 256]
        out = classify(sentences=tf.constant(batch))
        truncated += int(out["truncated"].numpy().sum())
        for sentence, label, score in zip(batch, out["label"].numpy(), out["score"].numpy()):
            print(f"{label.decode()}\t{score:.4f}\t{sentence}")
    if truncated:
        length = info["sequence_length"]
        print(f"note: {truncated} sentence(s) longer than {length} tokens were truncated to their first {length} "
              "tokens.", file=sys.stderr)
    return path


# === Train ===


def train(config, fresh=False):
    """The whole job: data → model → fit → evaluate + baselines → export. Returns the model.

    With `--folds K` and no `--fold`, runs K-fold cross-validation instead and returns its summary.
    """
    if config.folds and config.fold < 0:
        config_lib.validate(config)
        if config.folds < 2:
            raise UserError(f"--folds must be >= 2 (or 0: off). Received: folds={config.folds}")
        return runner.cross_validate(sys.modules[__name__], config, fresh=fresh)
    if config.fold >= 0 and not config.folds:
        raise UserError("--fold needs --folds K (the number of folds).")
    return runner.train(sys.modules[__name__], config, fresh=fresh)


if __name__ == "__main__":
    cli.main(sys.modules[__name__])
