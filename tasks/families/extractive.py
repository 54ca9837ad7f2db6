"""Extractive summarization, the learned baseline of `tasks.summarization` (not a task itself).

- Sentences and tokens in the graph (`featurize`, the one path of training, evaluation and the
  SavedModel): a separator is put after `.`/`!`/`?` (and a closing quote) followed by spaces,
  between glued lower-case sentences (`so.mr`) and at line breaks, then the text is split there
  (RE2 has no lookbehind). Each sentence is lower-cased, cut into letter/digit words, and each
  word hashed into `--hash-buckets` ids (1 … buckets-1; 0 pads): no vocabulary to learn or ship.
  A document is `--max-sentences` × `--max-sentence-tokens` ids; later sentences are not read
  (counted, and flagged as `truncated`).
- Labels (training and validation splits only): a sentence is in the summary when its normalized
  words appear, in order, inside the normalized reference (the BBC summaries are sentences of the
  article); a document without such a sentence labels the one with the best unigram F1 against the
  reference (abstractive references, e.g. the demo's).
- Model: `applications.extractive_summarizer`, one logit per sentence; loss: per-sentence binary
  cross-entropy, padded sentences weighted 0.
- Decoding: the `k` best-scored sentences, in document order, one a line. `k` is
  `--summary-sentences`, or (0) the k in 1 … 15 with the best mean ROUGE-2 + ROUGE-L on the
  validation split (first 150 documents), chosen after training and saved in `info.json`.
"""

import dataclasses
import json
import pathlib
import re
import sys
import time

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from tasks.families import seq2seq
from tasks.core import pipeline
from tasks.data import pairs as pair_readers
from tasks.core import export
from tasks.core import training
from tasks.core.errors import UserError
from tasks.core.runs import Run
from tasks.core.runs import write_atomic

KIND = "extractive"  # the applications registry kind(s) --model names

KIND = "extractive"
SEPARATOR = "\x1e"  # ASCII record separator: never in news text
CANDIDATE_K = range(1, 16)
SELECTION_DOCUMENTS = 150


@keras.saving.register_keras_serializable(package="summarization")
def sentence_loss(y_true, y_pred):
    """Binary cross-entropy of each sentence's logit (B, S), unreduced: the sample weights mask padding."""
    return ops.binary_crossentropy(ops.cast(y_true, y_pred.dtype), y_pred, from_logits=True)


def is_extractive(config_or_info):
    if isinstance(config_or_info, dict):
        return config_or_info.get("model_kind") == KIND
    return config_or_info.model == "extractive_summarizer"


# === Sentences and tokens, in the graph ===


def split_sentences(texts):
    """Texts (B,) tf.string → sentences, a ragged (B, None) tf.string, stripped, empty ones dropped:
    `tasks.data.pairs.split_sentences` (lead-3's) in graph ops, held equal to it by a test."""
    text = tf.strings.regex_replace(texts, "\r", "")
    text = tf.strings.regex_replace(text, r"([.!?][\"']?)[ \t]+", "\\1" + SEPARATOR)
    text = tf.strings.regex_replace(text, r"([a-z][.!?])([a-z])", "\\1" + SEPARATOR + "\\2")
    text = tf.strings.regex_replace(text, "\n", SEPARATOR)
    sentences = tf.strings.strip(tf.strings.split(text, SEPARATOR))
    return tf.ragged.boolean_mask(sentences, tf.strings.length(sentences) > 0)


def words(sentences):
    """Lower-cased letter/digit words of each string (any shape) → one more ragged dimension."""
    text = tf.strings.lower(sentences, encoding="utf-8")
    return tf.strings.split(tf.strings.strip(tf.strings.regex_replace(text, r"[^\pL\pN]+", " ")))


def featurize(texts, info):
    """Texts (B,) → `(tokens (B, S, T) int32, sentences (B, S) tf.string, counts (B,) int32)`.

    `counts` is the number of sentences found (more than S: the rest is not read).
    """
    sentences = split_sentences(texts)
    ids = tf.strings.to_hash_bucket_fast(words(sentences), info["hash_buckets"] - 1) + 1
    shape = [None, info["max_sentences"], info["max_sentence_tokens"]]
    tokens = tf.cast(ids, tf.int32).to_tensor(default_value=0, shape=shape)
    padded = sentences.to_tensor(default_value="", shape=[None, info["max_sentences"]])
    return tokens, padded, tf.cast(sentences.row_lengths(), tf.int32)


def select(logits, sentences, counts, k, max_sentences):
    """The `k` best sentences of each row in document order, joined by newlines: (B,) tf.string."""
    present = tf.range(max_sentences)[None, :] < tf.minimum(counts, max_sentences)[:, None]  # (B, S)
    logits = tf.where(present, tf.cast(logits, tf.float32), -np.inf)
    k = tf.minimum(tf.cast(k, tf.int32), max_sentences)
    _, top = tf.math.top_k(logits, k=k)  # (B, k)
    chosen = tf.reduce_any(tf.one_hot(top, max_sentences, on_value=True, off_value=False, dtype=tf.bool), axis=1)
    return tf.strings.reduce_join(tf.ragged.boolean_mask(sentences, chosen & present), axis=1, separator="\n")


def summarize(model, info, texts, k=None):
    """Texts (B,) tf.string → `(summaries (B,) tf.string, truncated (B,) bool)`. Graph-safe.

    The one text-to-text path: evaluation, the SavedModel and the reload check all run it.
    """
    tokens, sentences, counts = featurize(texts, info)
    logits = model(tokens, training=False)
    k = info["summary_sentences"] if k is None else k
    return select(logits, sentences, counts, k, info["max_sentences"]), counts > info["max_sentences"]


class Summarizer:
    """A model, its `info` and its traced batch functions: lists of documents in, summaries out.

        summarizer = Summarizer(model, info)
        summarizer.texts(documents, k=3)        # the top-k sentences of each, in document order
        summarizer.rankings(documents)          # each document's sentences and their order, best first
    """

    def __init__(self, model, info):
        self.model, self.info = model, info
        self._summarize = tf.function(self._summarize_batch, reduce_retracing=True)
        self._score = tf.function(self._score_batch, reduce_retracing=True)

    def _summarize_batch(self, texts, k):
        return summarize(self.model, self.info, texts, k)

    def _score_batch(self, texts):
        tokens, sentences, counts = featurize(texts, self.info)
        return self.model(tokens, training=False), sentences, counts

    def texts(self, texts, k=None, batch_size=32):
        """A list of str → a list of str (summaries), in batches of one shape (one trace)."""
        k = tf.constant(self.info["summary_sentences"] if k is None else k, tf.int32)
        outputs = []
        for batch, count in _batches(texts, batch_size):
            result, _ = self._summarize(batch, k)
            outputs.extend(text.decode("utf-8") for text in result.numpy()[:count])
        return outputs

    def rankings(self, texts, batch_size=32):
        """For each text: its sentences (as read) and their indices, best score first."""
        result = []
        for batch, count in _batches(texts, batch_size):
            logits, sentences, counts = (value.numpy() for value in self._score(batch))
            for row in range(count):
                n = min(int(counts[row]), self.info["max_sentences"])
                texts_row = [s.decode("utf-8") for s in sentences[row, :n]]
                result.append((texts_row, list(np.argsort(-logits[row, :n], kind="stable"))))
        return result


def _batches(texts, batch_size):
    for start in range(0, len(texts), batch_size):
        batch = list(texts[start:start + batch_size])
        count = len(batch)
        yield tf.constant(batch + [""] * (batch_size - count)), count  # one batch shape: one trace


def summarize_texts(model, info, texts, k=None, batch_size=32):
    """A list of str → a list of str (a `Summarizer` used once: hold one to summarize repeatedly)."""
    return Summarizer(model, info).texts(texts, k, batch_size)


def top_k_summary(sentences, order, k):
    return "\n".join(sentences[i] for i in sorted(order[:k]))


# === Labels and data ===


def _normalized(text):
    return " ".join(re.findall(r"[^\W_]+", text.lower()))


def labels_of(sentences, summary):
    """1.0 for each sentence (list of str) found in the summary; else the best unigram-F1 one."""
    reference = f" {_normalized(summary)} "
    labels = np.zeros(len(sentences), np.float32)
    for i, sentence in enumerate(sentences):
        words_ = _normalized(sentence)
        if words_ and f" {words_} " in reference:
            labels[i] = 1.0
    if not labels.any() and len(sentences):
        summary_words = set(reference.split())
        best, best_f1 = 0, -1.0
        for i, sentence in enumerate(sentences):
            sentence_words = set(_normalized(sentence).split())
            overlap = len(sentence_words & summary_words)
            f1 = 2 * overlap / max(len(sentence_words) + len(summary_words), 1)
            if f1 > best_f1:
                best, best_f1 = i, f1
        labels[best] = 1.0
    return labels


def encode_documents(pairs, info, with_labels=True, batch_size=256):
    """`(tokens (N, S, T), labels (N, S), weights (N, S))` and the count of documents cut short."""
    tokens, labels, counts = [], [], []
    for start in range(0, len(pairs.sources), batch_size):
        batch_tokens, sentences, batch_counts = featurize(tf.constant(pairs.sources[start:start + batch_size]), info)
        tokens.append(batch_tokens.numpy())
        counts.append(batch_counts.numpy())
        if with_labels:
            for row, summary in zip(sentences.numpy(), pairs.targets[start:start + batch_size]):
                row_labels = np.zeros(info["max_sentences"], np.float32)
                texts = [s.decode("utf-8") for s in row if s]
                row_labels[: len(texts)] = labels_of(texts, summary)
                labels.append(row_labels)
    empty = np.zeros((0, info["max_sentences"], info["max_sentence_tokens"]), np.int32)
    tokens = np.concatenate(tokens) if tokens else empty
    counts = np.concatenate(counts) if counts else np.zeros(0, np.int32)
    weights = (tokens != 0).any(axis=2).astype(np.float32)
    labels = np.stack(labels) if labels else np.zeros(weights.shape, np.float32)
    return (tokens, labels, weights), int((counts > info["max_sentences"]).sum())


@dataclasses.dataclass
class ExtractiveData(seq2seq.Seq2SeqData):
    validation_sources: list = None
    validation_references: list = None


def load_data(config, splits):
    """Batches `(tokens, labels, weights)` of every split, and the raw texts of validation and test."""
    splits = seq2seq.complete_splits(splits, config)
    info = {
        "model_kind": KIND,
        "hash_buckets": config.hash_buckets,
        "max_sentences": config.max_sentences,
        "max_sentence_tokens": config.max_sentence_tokens,
        "summary_sentences": config.summary_sentences,  # 0: chosen on the validation split after training
    }
    arrays, truncated = {}, {}
    for split in ("train", "validation"):
        if split in splits:
            arrays[split], truncated[split] = encode_documents(splits[split], info)
    test = splits["test"]
    limit = config.test_limit or len(test)
    test_sources, test_references = test.sources[:limit], test.targets[:limit]
    _, truncated["test"] = encode_documents(pair_readers.Pairs(test_sources, test_references), info, False)
    tokens, labels, weights = arrays["train"]
    sentences = weights.sum(axis=1)
    info.update({
        "num_train": int(len(tokens)),
        "num_validation": int(len(arrays["validation"][0])) if "validation" in arrays else 0,
        "num_test": len(test_sources),
        "test_is_validation": splits["test"] is splits.get("validation"),
        "mean_sentences": float(sentences.mean()),
        "positive_fraction": float(labels.sum() / max(weights.sum(), 1.0)),  # of the sentences read
        "documents_truncated": truncated,  # more sentences than --max-sentences
        "examples": test_sources[:2],
    })
    if config.verbose:
        for split, count in truncated.items():
            if count:
                print(f"{split}: {count} documents have more than --max-sentences {config.max_sentences} sentences; "
                      "the rest is not read")
        print(f"Extractive labels: {info['positive_fraction']:.1%} of the training sentences are in their summary")
    validation = splits.get("validation")

    def dataset(split, training_split=False):
        tokens, labels, weights = arrays[split]
        return pipeline.finalize(tf.data.Dataset.from_tensor_slices((tokens, labels, weights)), config.batch_size,
                                 shuffle=training_split, seed=config.seed)

    return ExtractiveData(
        train=dataset("train", True),
        validation=dataset("validation") if "validation" in arrays else None,
        test=None,
        info=info,
        test_sources=test_sources,
        test_references=test_references,
        train_pairs=splits["train"],
        validation_sources=validation.sources if validation else None,
        validation_references=validation.targets if validation else None,
    )


# === Model ===


def build_model(config, info):
    """`extractive_summarizer`, compiled with the per-sentence loss and the config's optimizer."""
    builder = training.model_builder(config.model, KIND)
    wanted = training.flag_arguments(config, builder,
                                     ("num_layers", "num_heads", "intermediate_dim", "embed_dim", "units"))
    model = training.build_network(builder, config, info["hash_buckets"], info["max_sentences"],
                                   info["max_sentence_tokens"], dropout_rate=config.dropout_rate, **wanted)
    return training.compile(model, config, info, loss=sentence_loss,
                            weighted_metrics=[keras.metrics.BinaryAccuracy(name="accuracy", threshold=0.0)])


# === Choosing k, evaluation ===


def choose_k(model, info, sources, references, score):
    """The k of CANDIDATE_K with the best mean ROUGE-2 + ROUGE-L on (the first) validation documents."""
    sources, references = sources[:SELECTION_DOCUMENTS], references[:SELECTION_DOCUMENTS]
    ranked = Summarizer(model, info).rankings(sources)
    results = {}
    for k in CANDIDATE_K:
        summaries = [top_k_summary(sentences, order, k) for sentences, order in ranked]
        scores = score(summaries, references, keys=("rouge2", "rougeL"))
        results[k] = (scores["rouge2"] + scores["rougeL"]) / 2
    return max(results, key=results.get), results


class ChooseK(keras.callbacks.Callback):
    """After training: picks k on the validation split (when `--summary-sentences` is 0) and saves it."""

    def __init__(self, data, run, score, verbose):
        super().__init__()
        self.data, self.run, self.score, self.verbose = data, run, score, verbose

    def on_train_end(self, logs=None):
        info = self.data.info
        if info["summary_sentences"]:
            return
        if not self.data.validation_sources:
            info["summary_sentences"] = 3
            return
        k, results = choose_k(self.model, info, self.data.validation_sources, self.data.validation_references,
                              self.score)
        info["summary_sentences"] = k
        info["summary_sentences_validation"] = {str(key): round(value, 3) for key, value in results.items()}
        write_atomic(self.run.path / "info.json", json.dumps(info, indent=2) + "\n")
        if self.verbose:
            print(f"Summary length chosen on validation: {k} sentences (mean ROUGE-2/L {results[k]:.2f})")


def resolve_k(data, config, model, score):
    """k of this run: the flag, the one chosen after training (info.json), or chosen now."""
    info = data.info
    if not info["summary_sentences"]:
        path = Run.for_config("summarization", config).path / "info.json"
        saved = json.loads(path.read_text()).get("summary_sentences") if path.is_file() else 0
        if saved:
            info["summary_sentences"] = saved
        elif data.validation_sources:
            info["summary_sentences"], _ = choose_k(
                model, info, data.validation_sources, data.validation_references, score
            )
        else:
            info["summary_sentences"] = 3
    return info["summary_sentences"]


def evaluate(model, data, config, plots_dir, score):
    """ROUGE of the top-k summaries of the test documents, and of lead-k; documents/s; samples.txt."""
    k = resolve_k(data, config, model, score)
    sources, references = data.test_sources, data.test_references
    summarizer = Summarizer(model, data.info)
    summarizer.texts(sources[: config.batch_size], batch_size=config.batch_size)  # trace
    started = time.perf_counter()
    summaries = summarizer.texts(sources, batch_size=config.batch_size)
    speed = len(sources) / max(time.perf_counter() - started, 1e-9)
    result = score(summaries, references)
    # Lead-k (the first k sentences as this model reads them): what position alone gives at the same length.
    lead_k = [top_k_summary(sentences, list(range(len(sentences))), k)
              for sentences, _ in summarizer.rankings(sources)]
    result.update({f"lead_k_{key}": value for key, value in score(lead_k, references).items()})
    result.update(summary_sentences=k, documents_per_second=speed, test_pairs=len(sources))
    if plots_dir is not None:
        seq2seq.write_samples(sources, references, summaries, pathlib.Path(plots_dir).parent / "samples.txt")
    return result


# === Export and predict ===


def serving(model, info, output_name):
    """`serving_default`: `text` (B,) → the model's k sentences; `select`: `text`, `sentences` → that many."""

    def default(text):
        summaries, truncated = summarize(model, info, text)
        return {output_name: summaries, "truncated": truncated}

    def chosen(text, sentences):
        check = tf.debugging.assert_greater(sentences, 0, message="sentences must be >= 1")
        with tf.control_dependencies([check]):
            sentences = tf.identity(sentences)
        summaries, truncated = summarize(model, info, text, sentences)
        return {output_name: summaries, "truncated": truncated}

    examples = np.array([text.encode("utf-8") for text in info["examples"]] + [b""], dtype=object)
    text_spec = tf.TensorSpec([None], tf.string, name="text")
    select_signature = [text_spec, tf.TensorSpec([], tf.int32, name="sentences")]
    return [
        export.Endpoint("serving_default", tf.function(default, input_signature=[text_spec]), [text_spec], [examples]),
        export.Endpoint("select", tf.function(chosen, input_signature=select_signature), select_signature,
                        [examples, np.int32(2)]),
    ]


def predict(inputs, loaded, output_name, beam_width=1, max_length=0, sentences=0):
    """Prints the extractive summary of `loaded` (an `export.load` result) of each input (a string,
    or a file's whole text)."""
    path, info = loaded.path, loaded.info
    if beam_width != 1 or max_length:
        flag = "--beam-width" if beam_width != 1 else "--max-length"
        raise UserError(f"{flag} applies to abstractive models; {path} is extractive (use --sentences).")
    if sentences < 0:
        raise UserError(f"--sentences must be >= 0 (0: the model's {info['summary_sentences']}). Received: {sentences}")
    labelled = seq2seq.read_inputs(inputs, split_lines=False)
    for label, text in labelled:
        if not text.strip():
            raise UserError(f"{label} is empty; give a non-empty text.")
    texts = tf.constant([text for _, text in labelled])
    if sentences:
        outputs = loaded.signatures["select"](text=texts, sentences=tf.constant(sentences, tf.int32))
    else:
        outputs = loaded.signatures["serving_default"](text=texts)
    for (label, _), flag in zip(labelled, outputs["truncated"].numpy()):
        if flag:
            print(f"warning: {label}: more than {info['max_sentences']} sentences; only the first "
                  f"{info['max_sentences']} are read", file=sys.stderr)
    results = [text.decode("utf-8") for text in outputs[output_name].numpy()]
    for (label, _), result in zip(labelled, results):
        print(result if len(labelled) == 1 else f"{label}\t{result}")
    return results
