"""Sequence to sequence, the core shared by `tasks.translation` and `tasks.summarization`.

Not a task itself: the two task modules read their own formats into text pairs
(`tasks.data.pairs`) and score with their own metrics (`tasks.metrics.text`); everything else
is here, written once:

- Pairs → splits (carved, seeded, when a source has none) → SentencePiece learned on the training
  split (one model for both sides, or one per side; `tasks.data.tokenizers`) → padded id arrays →
  `tf.data` batches `({"source", "target_in"}, target_out, weights)`, trimmed to each batch's
  longest row. Over-length sources are truncated and counted; over-length targets are dropped,
  truncated or an error (`--over-length`), and counted.
- Models: any encoder–decoder of the registry (`transformer_seq2seq`, `gru_attention`,
  `lstm_attention`): nested `encoder` and `decoder` functional models. Loss: token cross-entropy
  with padding ignored; algorithm: the config's optimizer and schedule (teacher forcing).
- Decoding, batched and in the graph: greedy, and beam search (beam width, GNMT length penalty
  `((5 + length) / 6) ** alpha`, max length), end token or max length ends a row. The decoder is
  run on the whole prefix at each step (no cache): keras-hub's samplers have no length penalty,
  and one loop serves every model family.
- Text in → text out, one function for evaluation, export and the reload check: tokenize, truncate
  to `max_source_length` (and say so), pad to it, decode, detokenize. An empty input gives "".
- Evaluation: the test split decoded greedily and with the beam; sentences/s of each; attention
  heat maps of a few test examples under `plots/`.
- Export: `serving_default` (greedy) and `beam` (beam width, length penalty, max length), both
  `tf.string` (B,) → `tf.string` (B,) plus a `truncated` flag per input.
"""

import base64
import dataclasses
import pathlib
import sys
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

from tasks.core import pipeline
from tasks.core import export
from tasks.core import plots
from tasks.core import training
from tasks.core.config import TrainConfig
from tasks.core.config import model_option
from tasks.core.config import option
from tasks.core.errors import UserError
from tasks.core.runs import learned_part
from tasks.data import pairs as pair_readers
from tasks.data.tokenizers import END_ID
from tasks.data.tokenizers import PAD_ID
from tasks.data.tokenizers import START_ID
from tasks.data.tokenizers import UNKNOWN_ID
from tasks.data.tokenizers import SentencePieceCodec
from tasks.data.tokenizers import learn_sentencepiece

KIND = "seq2seq"  # the applications registry kind(s) --model names

# Logits of tokens a decoder must never write (padding, unknown, start).
NEVER = -1e9
# Test examples whose attention is drawn.
NUM_HEAT_MAPS = 3


@dataclasses.dataclass
class Seq2SeqConfig(TrainConfig):
    """The fields both sequence-to-sequence tasks share (each task sets its own defaults)."""

    model: str = model_option("transformer_seq2seq", KIND)
    vocabulary_size: int = option(
        8000, "SentencePiece vocabulary (each side, or shared); lowered to what the text supports.", minimum=16
    )
    shared_vocabulary: bool = option(True, "One SentencePiece model for source and target (else one per side).")
    max_source_length: int = option(64, "Source tokens the model reads; longer inputs are truncated (counted).", minimum=1)
    max_target_length: int = option(64, "Target tokens the model writes, the end token included.", minimum=2)
    over_length: str = option(
        "drop", "Training pairs with a target over --max-target-length.", choices=["drop", "truncate", "error"]
    )
    num_layers: int = option(0, "Encoder (and decoder) blocks, Transformer (0: builder default).", minimum=0)
    embed_dim: int = option(0, "Embedding width (0: builder default).", minimum=0)
    num_heads: int = option(0, "Attention heads, Transformer (0: builder default).", minimum=0)
    intermediate_dim: int = option(0, "MLP width, Transformer (0: 4 x embed_dim).", minimum=0)
    units: int = option(0, "RNN width, GRU/LSTM (0: builder default).", minimum=0)
    dropout_rate: float = option(0.1, "Dropout on embeddings, attention and residual branches.", minimum=0.0)
    beam_width: int = option(4, "Beam width of the beam evaluation (1: greedy only).", minimum=1, identity=False)
    length_penalty: float = option(0.6, "GNMT length-penalty exponent of beam search (0: off).", minimum=0.0, identity=False)
    test_limit: int = option(0, "Score the first N test pairs (0: all); baselines too.", minimum=0, identity=False)
    train_limit: int = option(
        0, "Learn tokenizers and train on the first N training pairs (0: all), before length filtering.", minimum=0
    )


@dataclasses.dataclass
class Seq2SeqData(pipeline.Data):
    """`Data` plus the raw test texts the metrics and baselines read."""

    test_sources: list = None
    test_references: list = None
    train_pairs: pair_readers.Pairs = None


# === Data ===


def complete_splits(splits, config):
    """`{train, validation, test}` Pairs: carve what the source lacks (seeded), in this order.

    One collection → test and validation each take `validation_fraction` (at least one pair);
    no validation → carved from train; no test → the validation split is the test split.
    """
    splits = dict(splits)
    fraction = config.validation_fraction
    if "all" in splits:
        pairs = splits.pop("all")
        order = np.random.default_rng(config.seed).permutation(len(pairs))
        count = max(int(round(fraction * len(pairs))), 1)
        if len(pairs) < 3 * count:
            raise UserError(f"--data {config.data}: {len(pairs)} pairs are too few to split into train, validation and test.")
        pick = lambda index: pair_readers.Pairs([pairs.sources[i] for i in index], [pairs.targets[i] for i in index])  # noqa: E731
        splits["test"], splits["validation"] = pick(order[:count]), pick(order[count:2 * count])
        splits["train"] = pick(order[2 * count:])
        splits["train"].skipped = pairs.skipped
    if "train" not in splits:
        raise UserError(f"--data {config.data}: no train split (found {', '.join(splits) or 'none'}).")
    if "validation" not in splits and fraction > 0:
        train = splits["train"]
        keep, held = pipeline.split_indices(np.zeros(len(train)), fraction, config.seed, stratify=False)
        splits["validation"] = pair_readers.Pairs([train.sources[i] for i in held], [train.targets[i] for i in held])
        splits["train"] = pair_readers.Pairs(
            [train.sources[i] for i in keep], [train.targets[i] for i in keep], train.skipped
        )
    if "test" not in splits:
        if "validation" not in splits:
            raise UserError(f"--data {config.data}: no test split; set --validation-fraction > 0 to hold one out.")
        splits["test"] = splits["validation"]
    for split in ("train", "test"):
        if not len(splits[split]):
            raise UserError(f"--data {config.data}: the {split} split has no pairs.")
    return splits


def learn_tokenizers(config, train):
    """The tokenizer part of `info`: one SentencePiece model (shared) or one per side."""

    def learn(texts, side):
        size = config.vocabulary_size
        for _ in range(2):
            try:
                return learn_sentencepiece(texts, size, special_tokens=True, seed=config.seed), size
            except UserError as error:
                # "Vocabulary size is too high (8000). Please set it to a value <= 812."
                tail = str(error).rsplit("<=", 1)
                if len(tail) < 2:
                    raise
                size = int(tail[1].strip(" .)"))
        raise UserError(f"--vocabulary-size {config.vocabulary_size}: cannot learn a {side} vocabulary.")

    if config.shared_vocabulary:
        proto, size = learn(train.sources + train.targets, "shared")
        source = target = base64.b64encode(proto).decode("ascii")
        sizes = {"source": size, "target": size}
    else:
        source_proto, source_size = learn(train.sources, "source")
        target_proto, target_size = learn(train.targets, "target")
        source = base64.b64encode(source_proto).decode("ascii")
        target = base64.b64encode(target_proto).decode("ascii")
        sizes = {"source": source_size, "target": target_size}
    lowered = {side: size for side, size in sizes.items() if size < config.vocabulary_size}
    if lowered and config.verbose:
        print(f"Vocabulary lowered to what the training text supports: {lowered}")
    return {"shared_vocabulary": config.shared_vocabulary, "source_tokenizer": source, "target_tokenizer": target}


_CODECS = {}


def codecs(info):
    """`(source, target)` SentencePieceCodecs of `info` (the same object when shared)."""
    key = (info["source_tokenizer"], info["target_tokenizer"])
    if key not in _CODECS:
        with tf.init_scope():  # the tokenizer's resource lives outside any function being traced
            source = SentencePieceCodec(base64.b64decode(info["source_tokenizer"]))
            target = source if key[0] == key[1] else SentencePieceCodec(base64.b64decode(info["target_tokenizer"]))
        _CODECS.clear()  # keep one pair: tokenizers hold the whole model
        _CODECS[key] = (source, target)
    return _CODECS[key]


def pad_rows(rows, length):
    """List of int arrays → (N, length) int32, each row cut to `length` and padded with 0."""
    array = np.zeros((len(rows), length), np.int32)
    for i, row in enumerate(rows):
        row = row[:length]
        array[i, : len(row)] = row
    return array


def encode_pairs(pairs, source_codec, target_codec, config, split):
    """Padded arrays `(source, target_in, target_out)` of a split and the counts of what was filtered.

    Sources longer than `max_source_length` are truncated (counted). Targets (with their end
    token) longer than `max_target_length`: dropped, truncated or an error (`--over-length`).
    """
    sources = source_codec.encode_texts(pairs.sources)
    targets = target_codec.encode_texts(pairs.targets)
    limit = config.max_target_length - 1  # room for the end token
    long_targets = [i for i, row in enumerate(targets) if len(row) > limit]
    counts = {
        "pairs": len(pairs),
        "sources_truncated": int(sum(len(row) > config.max_source_length for row in sources)),
        "targets_over_length": len(long_targets),
        "targets_dropped": 0,
        "empty_after_tokenizing": 0,
    }
    if long_targets and config.over_length == "error":
        i = long_targets[0]
        raise UserError(
            f"--data {config.data}: {len(long_targets)} {split} targets are longer than --max-target-length "
            f"{config.max_target_length} (first: pair {i + 1}, {len(targets[i]) + 1} tokens); raise it or pass "
            "--over-length drop/truncate."
        )
    keep = np.ones(len(pairs), bool)
    if config.over_length == "drop":
        keep[long_targets] = False
        counts["targets_dropped"] = len(long_targets)
    empty = [i for i, (s, t) in enumerate(zip(sources, targets)) if keep[i] and (len(s) == 0 or len(t) == 0)]
    keep[empty] = False  # every character unseen: nothing left to learn from
    counts["empty_after_tokenizing"] = len(empty)
    index = np.flatnonzero(keep)
    source = pad_rows([sources[i] for i in index], config.max_source_length)
    target = [np.concatenate([[START_ID], targets[i][:limit], [END_ID]]).astype(np.int32) for i in index]
    target_in = pad_rows([row[:-1] for row in target], config.max_target_length)
    target_out = pad_rows([row[1:] for row in target], config.max_target_length)
    return (source, target_in, target_out), counts


def _trim(inputs, target_out, weights):
    """Cuts a padded batch to its longest source and target rows (fewer wasted positions)."""
    source_length = tf.reduce_max(tf.reduce_sum(tf.cast(inputs["source"] != PAD_ID, tf.int32), axis=1))
    target_length = tf.reduce_max(tf.reduce_sum(tf.cast(target_out != PAD_ID, tf.int32), axis=1))
    source_length = tf.maximum(source_length, 1)
    inputs = {"source": inputs["source"][:, :source_length], "target_in": inputs["target_in"][:, :target_length]}
    return inputs, target_out[:, :target_length], weights[:, :target_length]


def make_dataset(arrays, config, training_split=False):
    """`({"source", "target_in"}, target_out, weights)` batches; weights are 0 on padding."""
    source, target_in, target_out = arrays
    weights = (target_out != PAD_ID).astype(np.float32)
    dataset = tf.data.Dataset.from_tensor_slices(({"source": source, "target_in": target_in}, target_out, weights))
    return pipeline.finalize(
        dataset, config.batch_size, shuffle=training_split, seed=config.seed, batch_map=_trim
    )


def load_data(config, splits, saved=None):
    """Batches of every split, the raw test texts, and the facts the model and the export need.

    Args:
        config: Seq2SeqConfig.
        splits: dict. `{split: tasks.data.pairs.Pairs}` as a reader returns them.
        saved: dict or None. The info of this config's run, when it exists (a resumed run,
            `evaluate`): its tokenizers are kept instead of learned again.
    """
    splits = complete_splits(splits, config)
    if config.train_limit and config.train_limit < len(splits["train"]):
        train = splits["train"]
        splits["train"] = pair_readers.Pairs(
            train.sources[: config.train_limit], train.targets[: config.train_limit], train.skipped
        )
    info = learned_part(saved, ("shared_vocabulary", "source_tokenizer", "target_tokenizer")) or learn_tokenizers(config, splits["train"])
    _CODECS.clear()  # fresh tokenizer ops for a fresh run (an exported model may hold the old ones)
    source_codec, target_codec = codecs(info)
    arrays, filtered = {}, {}
    for split in ("train", "validation"):
        if split in splits:
            arrays[split], filtered[split] = encode_pairs(splits[split], source_codec, target_codec, config, split)
            filtered[split]["skipped_bad"] = splits[split].skipped
    if not len(arrays["train"][0]):
        raise UserError(f"--data {config.data}: no training pair is left after filtering: {filtered['train']}")
    test = splits["test"]
    limit = config.test_limit or len(test)
    test_sources, test_references = test.sources[:limit], test.targets[:limit]
    test_arrays, filtered["test"] = encode_pairs(
        pair_readers.Pairs(test_sources, test_references), source_codec, target_codec,
        dataclasses.replace(config, over_length="truncate"), "test",
    )
    source_tokens = (arrays["train"][0] != PAD_ID).sum(axis=1)
    target_tokens = (arrays["train"][2] != PAD_ID).sum(axis=1)
    info.update(
        {
            "source_vocabulary_size": source_codec.vocabulary_size,
            "target_vocabulary_size": target_codec.vocabulary_size,
            "max_source_length": config.max_source_length,
            "max_target_length": config.max_target_length,
            "num_train": int(len(source_tokens)),
            "num_validation": int(len(arrays["validation"][0])) if "validation" in arrays else 0,
            "num_test": len(test_sources),
            "test_is_validation": splits["test"] is splits.get("validation"),
            "mean_source_tokens": float(source_tokens.mean()),
            "mean_target_tokens": float(target_tokens.mean()),  # the end token included
            "filtered": filtered,
            "examples": test_sources[:2],
        }
    )
    if config.verbose:
        report_filters(filtered)
    return Seq2SeqData(
        train=make_dataset(arrays["train"], config, training_split=True),
        validation=make_dataset(arrays["validation"], config) if "validation" in arrays else None,
        test=make_dataset(test_arrays, config),
        info=info,
        test_sources=test_sources,
        test_references=test_references,
        train_pairs=splits["train"],
    )


def report_filters(filtered):
    """One line per split that lost or cut pairs."""
    for split, counts in filtered.items():
        notes = [f"{counts[key]} {label}" for key, label in (
            ("skipped_bad", "bad pairs skipped"),
            ("sources_truncated", "sources truncated to --max-source-length"),
            ("targets_dropped", "pairs dropped (target over --max-target-length)"),
            ("empty_after_tokenizing", "pairs dropped (empty after tokenizing)"),
        ) if counts.get(key)]
        if counts.get("targets_over_length") and not counts.get("targets_dropped"):
            notes.append(f"{counts['targets_over_length']} targets truncated to --max-target-length")
        if notes:
            print(f"{split}: {counts['pairs']} pairs; " + ", ".join(notes))


# === Model ===


def build_model(config, info):
    """A registry encoder–decoder, compiled with masked token cross-entropy and the config's optimizer."""
    builder = training.model_builder(config.model, KIND)
    wanted = training.flag_arguments(
        config, builder, ("num_layers", "embed_dim", "num_heads", "intermediate_dim", "units"),
        passed={"dropout_rate": config.dropout_rate, "max_source_length": info["max_source_length"],
                "max_target_length": info["max_target_length"]})
    model = training.build_network(builder, config, info["source_vocabulary_size"], info["target_vocabulary_size"],
                                   **wanted)
    return training.compile(model, config, info,
                            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=PAD_ID),
                            weighted_metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])


# === Decoding ===


def _encode(model, source):
    states = model.get_layer("encoder")(source, training=False)
    return list(states) if isinstance(states, (list, tuple)) else [states]


def _next_log_probabilities(model, tokens, source, states):
    """Log-probabilities (N, V) float32 of the token after `tokens` (N, t); special tokens excluded."""
    logits, _ = model.get_layer("decoder")([tokens, source, *states], training=False)
    logits = tf.cast(logits[:, -1], tf.float32)  # (N, V)
    vocabulary_size = tf.shape(logits)[1]
    never = tf.reduce_sum(tf.one_hot([PAD_ID, UNKNOWN_ID, START_ID], vocabulary_size), axis=0)  # (V,)
    return tf.nn.log_softmax(logits + never * NEVER)


def greedy_search(model, source, max_length):
    """The likeliest token at each step. source (B, S) int32 → ids (B, L ≤ max_length), END then PAD."""
    batch_size = tf.shape(source)[0]
    states = _encode(model, source)
    tokens = tf.fill([batch_size, 1], START_ID)
    done = tf.zeros([batch_size], tf.bool)

    def body(step, tokens, done):
        token = tf.argmax(_next_log_probabilities(model, tokens, source, states), axis=-1, output_type=tf.int32)
        token = tf.where(done, PAD_ID, token)
        return step + 1, tf.concat([tokens, token[:, None]], axis=1), done | (token == END_ID)

    _, tokens, _ = tf.while_loop(
        lambda step, tokens, done: (step < max_length) & ~tf.reduce_all(done),
        body,
        [tf.constant(0), tokens, done],
        shape_invariants=[tf.TensorShape([]), tf.TensorShape([None, None]), tf.TensorShape([None])],
    )
    return tokens[:, 1:]


def beam_search(model, source, max_length, beam_width, length_penalty):
    """Beam search with the GNMT length penalty. source (B, S) → the best beam's ids (B, L).

    Every beam keeps its log-probability; a finished beam (END written) carries on with PAD at no
    cost, so it competes with the open ones; at the end each beam's score is divided by
    `((5 + length) / 6) ** length_penalty` and the best is kept.
    """
    batch_size = tf.shape(source)[0]
    width = tf.convert_to_tensor(beam_width, tf.int32)
    states = [tf.repeat(state, width, axis=0) for state in _encode(model, source)]  # encoded once per row
    source = tf.repeat(source, width, axis=0)  # (B*K, S), the beams of a row next to each other
    tokens = tf.fill([batch_size * width, 1], START_ID)
    # Only the first beam is live at the start, so the first step picks K different tokens.
    scores = tf.concat([tf.zeros([batch_size, 1]), tf.fill([batch_size, width - 1], NEVER)], axis=1)  # (B, K)
    done = tf.zeros([batch_size, width], tf.bool)
    lengths = tf.zeros([batch_size, width], tf.int32)
    offsets = tf.range(batch_size)[:, None] * width  # (B, 1)

    def body(step, tokens, scores, done, lengths):
        log_probabilities = _next_log_probabilities(model, tokens, source, states)  # (B*K, V)
        vocabulary_size = tf.shape(log_probabilities)[1]
        log_probabilities = tf.reshape(log_probabilities, [batch_size, width, vocabulary_size])
        pad_only = tf.where(tf.range(vocabulary_size) == PAD_ID, 0.0, NEVER)  # (V,)
        log_probabilities = tf.where(done[:, :, None], pad_only, log_probabilities)
        total = tf.reshape(scores[:, :, None] + log_probabilities, [batch_size, width * vocabulary_size])
        scores, index = tf.math.top_k(total, k=width)  # (B, K)
        beam, token = index // vocabulary_size, index % vocabulary_size
        rows = tf.reshape(beam + offsets, [-1])  # (B*K,)
        tokens = tf.concat([tf.gather(tokens, rows), tf.reshape(token, [-1, 1])], axis=1)
        was_done = tf.gather(done, beam, batch_dims=1)
        lengths = tf.gather(lengths, beam, batch_dims=1) + tf.cast(~was_done, tf.int32)
        return step + 1, tokens, scores, was_done | (token == END_ID), lengths

    _, tokens, scores, _, lengths = tf.while_loop(
        lambda step, tokens, scores, done, lengths: (step < max_length) & ~tf.reduce_all(done),
        body,
        [tf.constant(0), tokens, scores, done, lengths],
        shape_invariants=[tf.TensorShape([]), tf.TensorShape([None, None]), tf.TensorShape([None, None]),
                          tf.TensorShape([None, None]), tf.TensorShape([None, None])],
    )
    penalty = tf.pow((5.0 + tf.cast(lengths, tf.float32)) / 6.0, tf.cast(length_penalty, tf.float32))
    best = tf.argmax(scores / penalty, axis=1, output_type=tf.int32)  # (B,)
    return tf.gather(tokens, best + offsets[:, 0])[:, 1:]


def decode_ids(model, source, max_length, beam_width=1, length_penalty=0.6):
    """Greedy (`beam_width` 1, a Python int) or beam search; ids (B, L) int32."""
    if isinstance(beam_width, int) and beam_width == 1:
        return greedy_search(model, source, max_length)
    return beam_search(model, source, max_length, beam_width, length_penalty)


def texts_to_source(codec, texts, max_source_length):
    """Texts (B,) → source ids (B, max_source_length), truncated (B,) bool, lengths (B,) int32."""
    ids = codec.encode_batch(texts)
    lengths = tf.cast(ids.row_lengths(), tf.int32)
    source = ids.to_tensor(default_value=PAD_ID, shape=[None, max_source_length])
    return source, lengths > max_source_length, lengths


def generate(model, info, texts, max_length=None, beam_width=1, length_penalty=0.6):
    """Texts (B,) tf.string → `(outputs (B,) tf.string, truncated (B,) bool)`. Graph-safe.

    The one text-to-text path: evaluation, the SavedModel and the reload check all run it.
    """
    source_codec, target_codec = codecs(info)
    source, truncated, lengths = texts_to_source(source_codec, texts, info["max_source_length"])
    limit = info["max_target_length"]
    max_length = limit if max_length is None else tf.minimum(max_length, limit)
    ids = decode_ids(model, source, max_length, beam_width, length_penalty)
    outputs = target_codec.decode_batch(ids)
    return tf.where(lengths > 0, outputs, ""), truncated


class Decoder:
    """A model, its `info` and one traced batch function: lists of strings in, lists out.

        decoder = Decoder(model, info)
        decoder.texts(["ein Hund läuft ."], beam_width=3)      # one trace per beam width
        outputs, per_second = decoder.timed(texts, batch_size=64)
    """

    def __init__(self, model, info):
        self.model, self.info = model, info
        codecs(info)  # built outside the traced function
        self._batch = tf.function(self._generate_batch, reduce_retracing=True)

    def _generate_batch(self, texts, beam_width, length_penalty):
        return generate(self.model, self.info, texts, None, beam_width, length_penalty)

    def texts(self, texts, batch_size=64, beam_width=1, length_penalty=0.6):
        """A list of str → a list of str, decoded in batches of one shape (one trace)."""
        outputs = []
        for start in range(0, len(texts), batch_size):
            batch = list(texts[start:start + batch_size])
            count = len(batch)
            batch += [""] * (batch_size - count)
            result, _ = self._batch(tf.constant(batch), beam_width, tf.constant(length_penalty, tf.float32))
            outputs.extend(text.decode("utf-8") for text in result.numpy()[:count])
        return outputs

    def timed(self, texts, batch_size, beam_width=1, length_penalty=0.6):
        """`(outputs, sentences per second)`; a first batch traces the graph before the clock starts."""
        self.texts(texts[:batch_size], batch_size, beam_width, length_penalty)
        started = time.perf_counter()
        outputs = self.texts(texts, batch_size, beam_width, length_penalty)
        return outputs, len(texts) / max(time.perf_counter() - started, 1e-9)


def generate_texts(model, info, texts, batch_size=64, beam_width=1, length_penalty=0.6):
    """A list of str → a list of str (a `Decoder` used once: hold one to decode repeatedly)."""
    return Decoder(model, info).texts(texts, batch_size, beam_width, length_penalty)


# === Evaluation ===


def evaluate(model, data, config, plots_dir, score):
    """Scores greedy and beam outputs on the test texts; decoding speed; attention heat maps.

    Args:
        score: callable. `(hypotheses, references) -> dict` of the task's metrics.
    """
    info, references, sources = data.info, data.test_references, data.test_sources
    result = {}
    decoder = Decoder(model, info)
    greedy, speed = decoder.timed(sources, config.batch_size)
    result.update(score(greedy, references))
    result["greedy_sentences_per_second"] = speed
    if config.beam_width > 1:
        batch_size = max(config.batch_size // config.beam_width, 1)
        beam, speed = decoder.timed(sources, batch_size, config.beam_width, config.length_penalty)
        for key, value in score(beam, references).items():
            result[f"{key}_beam{config.beam_width}"] = value
        result["beam_sentences_per_second"] = speed
    result["test_pairs"] = len(sources)
    if plots_dir is not None:
        plots_dir = pathlib.Path(plots_dir)
        for index in range(min(NUM_HEAT_MAPS, len(sources))):
            with plots.best_effort(plots_dir / f"attention_{index + 1}.png") as path:
                plot_attention(model, info, sources[index], path)
        write_samples(sources, references, greedy, plots_dir.parent / "samples.txt")
    return result


def write_samples(sources, references, outputs, path, count=20):
    """The first test examples side by side, for reading."""
    lines = []
    for source, reference, output in list(zip(sources, references, outputs))[:count]:
        source, reference, output = (text.replace("\n", " | ") for text in (source, reference, output))
        lines += [f"source:    {source}", f"reference: {reference}", f"model:     {output}", ""]
    pathlib.Path(path).write_text("\n".join(lines))


def attention_weights(model, info, text):
    """`(source pieces, output pieces, weights (T, S))` of the greedy output for one text."""
    source_codec, target_codec = codecs(info)
    source, _, _ = texts_to_source(source_codec, tf.constant([text]), info["max_source_length"])
    with warnings.catch_warnings():  # eager steps of one token: Keras warns of a softmax over one key
        warnings.simplefilter("ignore", UserWarning)
        ids = greedy_search(model, source, info["max_target_length"]).numpy()[0]
    ids = ids[: int(np.argmax(ids == END_ID)) + 1] if (ids == END_ID).any() else ids
    ids = ids[ids != PAD_ID]
    length = int((source.numpy()[0] != PAD_ID).sum())
    tokens = tf.constant(np.concatenate([[START_ID], ids[:-1]])[None], tf.int32) if len(ids) else tf.constant([[START_ID]])
    states = _encode(model, source[:, :max(length, 1)])
    _, weights = model.get_layer("decoder")([tokens, source[:, :max(length, 1)], *states], training=False)
    source_pieces = [source_codec.tokenizer.id_to_token(int(i)) for i in source.numpy()[0][:length]]
    output_pieces = [target_codec.tokenizer.id_to_token(int(i)) for i in ids] or ["</s>"]
    return source_pieces, output_pieces, np.asarray(weights)[0, : len(output_pieces), :length]


def plot_attention(model, info, text, path, max_pieces=60):
    """A heat map of the decoder's attention over the source pieces, one row per output piece."""
    import matplotlib.pyplot as plt  # the Agg backend is set by tasks.core.plots

    source_pieces, output_pieces, weights = attention_weights(model, info, text)
    source_pieces, output_pieces = source_pieces[:max_pieces], output_pieces[:max_pieces]
    weights = weights[: len(output_pieces), : len(source_pieces)]
    figure, axis = plt.subplots(figsize=(max(4, 0.3 * len(source_pieces) + 2), max(3, 0.3 * len(output_pieces) + 1.5)))
    axis.imshow(weights, cmap="viridis", aspect="auto", vmin=0)
    axis.set_xticks(range(len(source_pieces)), source_pieces, rotation=90, fontsize=7)
    axis.set_yticks(range(len(output_pieces)), output_pieces, fontsize=7)
    axis.set_xlabel("source pieces")
    axis.set_ylabel("output pieces")
    axis.set_title("Cross-attention (last decoder block, mean over heads)", fontsize=9)
    return plots.save(figure, path)


# === Export and predict ===


def serving(model, info, output_name):
    """`serving_default` (greedy) and `beam` signatures: `text` (B,) tf.string → `output_name`, `truncated`."""
    source_codec, target_codec = codecs(info)
    model.source_tokenizer = source_codec.tokenizer  # tracked with the model: the export holds the ops
    model.target_tokenizer = target_codec.tokenizer

    def greedy(text):
        outputs, truncated = generate(model, info, text)
        return {output_name: outputs, "truncated": truncated}

    def beam(text, beam_width, length_penalty, max_length):
        # A server cannot print one line: out-of-range settings fail with these messages.
        checks = [
            tf.debugging.assert_greater(beam_width, 0, message="beam_width must be >= 1"),
            tf.debugging.assert_non_negative(length_penalty, message="length_penalty must be >= 0"),
            tf.debugging.assert_greater(max_length, 0, message="max_length must be >= 1"),
        ]
        with tf.control_dependencies(checks):
            beam_width = tf.identity(beam_width)
        outputs, truncated = generate(model, info, text, max_length, beam_width, length_penalty)
        return {output_name: outputs, "truncated": truncated}

    examples = np.array([text.encode("utf-8") for text in info["examples"]] + [b""], dtype=object)
    text_spec = tf.TensorSpec([None], tf.string, name="text")
    beam_signature = [
        text_spec,
        tf.TensorSpec([], tf.int32, name="beam_width"),
        tf.TensorSpec([], tf.float32, name="length_penalty"),
        tf.TensorSpec([], tf.int32, name="max_length"),
    ]
    beam_example = [examples, np.int32(3), np.float32(0.6), np.int32(info["max_target_length"])]
    return [
        # Traced once with the signature: the export and its in-process check share the graph.
        export.Endpoint("serving_default", tf.function(greedy, input_signature=[text_spec]), [text_spec], [examples]),
        export.Endpoint("beam", tf.function(beam, input_signature=beam_signature), beam_signature, beam_example),
    ]


def predict_flags(parser):
    """The decoding flags of `predict`."""
    parser.add_argument("--beam-width", type=int, default=1, help="1: greedy; more: beam search with that many beams.")
    parser.add_argument("--length-penalty", type=float, default=0.6, help="GNMT length-penalty exponent, >= 0.")
    parser.add_argument("--max-length", type=int, default=0, help="Most tokens to write (0: the model's maximum).")


def check_settings(beam_width, length_penalty, max_length, info):
    """Raises `UserError` for out-of-range decoding settings, one line each."""
    if beam_width < 1:
        raise UserError(f"--beam-width must be >= 1 (1 is greedy decoding). Received: {beam_width}")
    if length_penalty < 0:
        raise UserError(f"--length-penalty must be >= 0. Received: {length_penalty}")
    if not 0 <= max_length <= info["max_target_length"]:
        raise UserError(
            f"--max-length must be between 1 and the model's maximum {info['max_target_length']} (0: that maximum). "
            f"Received: {max_length}"
        )


def read_inputs(inputs, split_lines):
    """`(label, text)` for each input: a file's lines (`split_lines`) or whole text, else the string."""
    result = []
    for number, item in enumerate(inputs, 1):
        path = pathlib.Path(item)
        try:
            is_file = bool(item) and path.is_file()
        except OSError:  # a text too long to be a file name
            is_file = False
        if is_file:
            text = pair_readers._read_text(path)
            if split_lines:
                lines = [(f"{item}:{line_number}", line) for line_number, line in enumerate(text.split("\n"), 1)
                         if line.strip()]
                if not lines:
                    raise UserError(f"{item}: the file holds no text (only empty lines); give one text a line.")
                result += lines
            else:
                result.append((item, text))
        else:
            result.append((f"input {number}", item))
    return result


def input_warnings(info, labelled):
    """One line per input that is truncated or holds characters never seen in training."""
    source_codec, _ = codecs(info)
    texts = [text for _, text in labelled]
    lines = []
    lengths = [len(row) for row in source_codec.encode_texts(texts)]
    for (label, text), length in zip(labelled, lengths):
        unknown = source_codec.unknown_characters(text)
        if unknown:
            shown = ", ".join(repr(char) for char in unknown)
            lines.append(f"warning: {label}: characters never seen in training, skipped: {shown}")
        if length > info["max_source_length"]:
            lines.append(f"warning: {label}: {length} tokens, truncated to the model's maximum of "
                         f"{info['max_source_length']}")
    return lines


def predict(inputs, loaded, output_name, beam_width=1, length_penalty=0.6, max_length=0, split_lines=True):
    """Prints the output of `loaded` (an `export.load` result) for each input (strings, or files:
    `split_lines` per line)."""
    info = loaded.info
    check_settings(beam_width, length_penalty, max_length, info)
    labelled = read_inputs(inputs, split_lines)
    for label, text in labelled:
        if not text.strip():
            raise UserError(f"{label} is empty; give a non-empty text.")
    for line in input_warnings(info, labelled):
        print(line, file=sys.stderr)
    texts = tf.constant([text for _, text in labelled])
    if beam_width == 1 and not max_length:
        outputs = loaded.signatures["serving_default"](text=texts)
    else:
        outputs = loaded.signatures["beam"](
            text=texts, beam_width=tf.constant(beam_width), length_penalty=tf.constant(length_penalty, tf.float32),
            max_length=tf.constant(max_length or info["max_target_length"]),
        )
    results = [text.decode("utf-8") for text in outputs[output_name].numpy()]
    for (label, text), result in zip(labelled, results):
        print(result if len(labelled) == 1 else f"{label}\t{result}")
    return results
