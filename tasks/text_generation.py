"""Text generation: GPT and LSTM language models on characters or subwords, against n-gram models.

Usage:
    python -m tasks.text_generation train                                   # demo: a small grammar, < 2 min
    python -m tasks.text_generation train --data tiny_shakespeare --epochs 5 \
        --sequence-length 128 --steps-per-epoch 500
    python -m tasks.text_generation train --data corpus/ --tokenizer sentencepiece --vocabulary-size 1000
    python -m tasks.text_generation train --model lstm_lm --data tfds:tiny_shakespeare
    python -m tasks.text_generation evaluate                                 # the same flags find the run
    python -m tasks.text_generation predict "ROMEO:" "" --max-new-tokens 200 --temperature 0.8 --top-p 0.9
    python -m tasks.text_generation predict "To be" --top-k 1                # greedy

Data: a UTF-8 text file, a folder of `*.txt` files (joined in name order), `tfds:tiny_shakespeare`
(or any TFDS dataset with a text feature), or `demo`. The split is contiguous: the first 90 % of
the characters train, the last 10 % (`--validation-fraction`) validate, never shuffled lines; the
test split *is* that validation split (TFDS datasets keep their own validation and test splits).
Tokens: characters (the training split's), or SentencePiece BPE learned on the training split.
Model: a registry language model (`gpt`, `gpt_mini`, `lstm_lm`). Loss: next-token cross-entropy.
Algorithm: AdamW on random windows of `--sequence-length` tokens. Baselines: unigram and bigram
models of the training split, scored on the same windows in the same units.

Sampling: greedy (`top_k=1`), temperature, top-k, top-p, with stateless random ops seeded by
(seed, step), so a seed gives the same text in Keras and in the SavedModel. Characters never seen
in training are skipped (SentencePiece: pieces that map to <unk> are); an empty prompt starts
from the start token (a newline when the vocabulary has one).
"""

import base64
import dataclasses
import pathlib
import sys

import keras
import numpy as np
import tensorflow as tf

import applications
from applications import gpt as gpt_family
from applications import lstm_lm as lstm_family
from tasks.core import cli
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
from tasks.data.tokenizers import SentencePieceCodec
from tasks.data.tokenizers import learn_sentencepiece

KIND = "language_model"  # the applications registry kind(s) --model names

# The stated limit on generated tokens per prompt (signature and predict).
MAX_NEW_TOKENS = 2048
# Families with a generation cache (KV cache, recurrent state); others recompute the window.
CACHE_FAMILIES = (gpt_family, lstm_family)


# The demo's network: size flags left at 0 take these on `--data demo` (elsewhere the builder's
# defaults). With the defaults below, 360 steps of 16 x 64 characters spell the grammar's words.
DEMO_SIZES = {"num_layers": 2, "embed_dim": 64, "num_heads": 4, "units": 128}


@dataclasses.dataclass
class Config(TrainConfig):
    model: str = model_option("gpt", KIND)
    tokenizer: str = option("char", "Tokens: characters or SentencePiece BPE.", choices=["char", "sentencepiece"])
    vocabulary_size: int = option(512, "Subword vocabulary size (sentencepiece only).", minimum=16)
    sequence_length: int = option(64, "Context length in tokens: the training window.", minimum=2)
    num_layers: int = option(0, "Blocks or LSTM layers (0: the builder's default; 2 on --data demo).", minimum=0)
    embed_dim: int = option(0, "Embedding width (0: the builder's default; 64 on --data demo).", minimum=0)
    num_heads: int = option(0, "Attention heads, GPT only (0: the builder's default; 4 on --data demo).", minimum=0)
    units: int = option(0, "LSTM width, LSTM only (0: the builder's default; 128 on --data demo).", minimum=0)
    positions: str = option("rotary", "GPT positions.", choices=["learned", "rotary"])
    dropout_rate: float = option(0.0, "Dropout on embeddings, attention and residual branches.", minimum=0.0)
    epochs: int = option(3, "Passes of --steps-per-epoch batches.", minimum=1)
    batch_size: int = option(16, "Windows per batch, split across replicas.", minimum=1)
    learning_rate: float = option(5e-3, "Peak learning rate.", minimum=0.0)
    steps_per_epoch: int = option(120, "Cap on training batches per epoch, random windows each (0: all).", minimum=0)
    sample_length: int = option(
        200, "Tokens of the sample printed after each epoch (0: none).", minimum=0, identity=False
    )
    sample_prompt: str = option("", "Prompt of the per-epoch sample.", identity=False)


@dataclasses.dataclass
class TextData(pipeline.Data):
    """`Data` plus the token ids the n-gram baselines count."""

    train_ids: np.ndarray = None


# === Data ===


def demo_text(num_characters=120_000, seed=0):
    """Sentences from a small grammar, a few per line: learnable structure in seconds."""
    rng = np.random.default_rng(seed)
    subjects = ["the cat", "the old dog", "a small bird", "my friend", "the king", "a young queen",
                "the farmer", "his brother", "the sailor", "her mother"]
    verbs = ["sees", "likes", "follows", "finds", "calls", "helps", "remembers", "chases"]
    objects = ["the moon", "a red apple", "the river", "an old song", "the green door", "a letter",
               "the horse", "the city"]
    endings = ["", " today", " at night", " in the garden", " again", " by the sea"]
    lines, size = [], 0
    while size < num_characters:
        sentences = []
        for _ in range(rng.integers(1, 4)):
            sentence = f"{rng.choice(subjects)} {rng.choice(verbs)} {rng.choice(objects)}{rng.choice(endings)}"
            sentences.append(sentence[0].upper() + sentence[1:] + rng.choice([".", ".", "!", "?"]))
        lines.append(" ".join(sentences))
        size += len(lines[-1]) + 1
    return "\n".join(lines) + "\n"


def read_source(config):
    """The config's text as `{"train": str, "validation": str, "test": str}` (test may be validation)."""
    return text_readers.read_corpus(config.data, config.validation_fraction, demo=lambda: demo_text(seed=config.seed),
                                    verbose=bool(config.verbose))


# === Tokens ===


class CharCodec:
    """Characters ↔ ids; characters outside the vocabulary are skipped (counted in NumPy).

    Args:
        vocabulary: list of str. One character per id.
    """

    def __init__(self, vocabulary):
        self.vocabulary = list(vocabulary)
        self.index = {char: i for i, char in enumerate(self.vocabulary)}
        self.codepoints = tf.constant([ord(char) for char in self.vocabulary], tf.int32)

    def encode_numpy(self, text):
        """`(ids, skipped)`: int32 ids of the known characters, and the unknown ones in order."""
        ids = np.fromiter((self.index.get(char, -1) for char in text), np.int32, len(text))
        skipped = [char for char, i in zip(text, ids) if i < 0] if (ids < 0).any() else []
        return ids[ids >= 0], skipped

    def decode_numpy(self, ids):
        return "".join(self.vocabulary[i] for i in ids)

    def encode(self, text):
        """A scalar `tf.string` → int32 ids (P,), unknown characters dropped."""
        codepoints = tf.strings.unicode_decode(text, "UTF-8", errors="replace")  # (P,)
        matches = tf.equal(codepoints[:, None], self.codepoints[None, :])  # (P, V): no table to track
        known = tf.reduce_any(matches, axis=1)
        return tf.boolean_mask(tf.argmax(tf.cast(matches, tf.int32), axis=1, output_type=tf.int32), known)

    def decode(self, ids):
        return tf.strings.unicode_encode(tf.gather(self.codepoints, ids), "UTF-8")


def codec_for(info):
    """The tokenizer the info describes (export and predict rebuild it from info.json)."""
    if info["tokenizer"] == "char":
        return CharCodec(info["vocabulary"])
    return SentencePieceCodec(base64.b64decode(info["sentencepiece_model"]))


def build_vocabulary(config, train_text):
    """The tokenizer's part of `info`: the characters, or the learned SentencePiece model."""
    if config.tokenizer == "char":
        return {"tokenizer": "char", "vocabulary": sorted(set(train_text))}
    proto = learn_sentencepiece(train_text, config.vocabulary_size)
    return {"tokenizer": "sentencepiece", "sentencepiece_model": base64.b64encode(proto).decode("ascii")}


def start_token(codec, counts):
    """The id an empty prompt starts from: a newline if the vocabulary has one, else the commonest."""
    ids, _ = codec.encode_numpy("\n")
    return int(ids[-1]) if len(ids) else int(np.argmax(counts))


# === Windows ===


def make_windows(ids, config, training_split=False):
    """Windows of `sequence_length + 1` tokens → (inputs (B, T), targets (B, T)) batches.

    Training windows start every `T/2` tokens plus a random shift each epoch (so every epoch sees
    new windows), shuffled; validation windows tile the split without overlap, in order.
    """
    length = config.sequence_length
    stride = max(length // 2, 1) if training_split else length
    starts = np.arange(0, len(ids) - length, stride, dtype=np.int64)
    tokens = tf.constant(ids, tf.int32)
    last_start = len(ids) - length - 1

    def window(start):
        if training_split:
            start = tf.minimum(start + tf.random.uniform((), 0, stride, tf.int64), last_start)
        chunk = tokens[start:start + length + 1]  # (T + 1,)
        return chunk[:-1], chunk[1:]

    dataset = pipeline.finalize(
        tf.data.Dataset.from_tensor_slices(starts), config.batch_size, shuffle=training_split,
        seed=config.seed, cache=False, augment=window,
    )
    if training_split and config.steps_per_epoch:
        dataset = dataset.take(config.steps_per_epoch)  # a new random subset every epoch
    return dataset, len(starts)


def load_data(config, saved=None):
    """Train / validation / test windows and the facts the model and the export need.

    `saved` is the run's info when the run exists (a resumed run, `evaluate`): its tokenizer is
    kept, not learned again.
    """
    texts = read_source(config)
    learned = "vocabulary" if config.tokenizer == "char" else "sentencepiece_model"
    info = learned_part(saved, ("tokenizer", learned)) or build_vocabulary(config, texts["train"])
    codec = codec_for(info)
    ids, skipped, characters = {}, {}, {}
    for split, text in texts.items():
        ids[split], unknown = codec.encode_numpy(text)
        skipped[split], characters[split] = len(unknown), len(text)
        if len(ids[split]) < config.sequence_length + 1:
            raise UserError(
                f"--data {config.data}: the {split} split has {len(ids[split])} tokens, fewer than "
                f"--sequence-length + 1 = {config.sequence_length + 1}; lower --sequence-length or add text."
            )
    vocabulary_size = len(info["vocabulary"]) if config.tokenizer == "char" else codec.tokenizer.vocabulary_size()
    counts = np.bincount(ids["train"], minlength=vocabulary_size)
    train, num_windows = make_windows(ids["train"], config, training_split=True)
    validation, _ = make_windows(ids["validation"], config)
    test, num_test = make_windows(ids["test"], config) if texts["test"] is not texts["validation"] else (validation, None)
    num_train = min(num_windows, config.steps_per_epoch * config.batch_size) if config.steps_per_epoch else num_windows
    info.update(
        {
            "vocabulary_size": int(vocabulary_size),
            "sequence_length": config.sequence_length,
            "start_token": start_token(codec, counts),
            "num_train": int(num_train),  # training windows per epoch
            "num_train_tokens": int(len(ids["train"])),
            "num_validation_tokens": int(len(ids["validation"])),
            "num_test_tokens": int(len(ids["test"])),
            "test_is_validation": texts["test"] is texts["validation"],
            # nats/char = nats/token x tokens/char, on the test text.
            "test_tokens_per_char": len(ids["test"]) / max(characters["test"], 1),
            "skipped_unknown": {split: count for split, count in skipped.items() if count},
        }
    )
    return TextData(train=train, validation=validation, test=test, info=info, train_ids=ids["train"])


# === Model ===


def build_model(config, info):
    """A registry language model, compiled with next-token cross-entropy and the config's optimizer."""
    builder = training.model_builder(config.model, KIND)
    sizes = ("num_layers", "embed_dim", "num_heads", "units")
    wanted = training.flag_arguments(config, builder, sizes,
                                     passed={"dropout_rate": config.dropout_rate, "positions": config.positions})
    if config.data == "demo":
        accepted = applications.arguments(builder)
        wanted = {**{name: DEMO_SIZES[name] for name in sizes if name in accepted and not getattr(config, name)},
                  **wanted}
    model = training.build_network(builder, config, vocabulary_size=info["vocabulary_size"],
                                   sequence_length=info["sequence_length"], **wanted)
    return training.compile(model, config, info, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                            metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])


# === Baseline and evaluation ===


def units(nats_per_token, info):
    """One loss in the four units of the field: nats/token, nats/char, perplexity, bits/char."""
    nats_per_char = nats_per_token * info["test_tokens_per_char"]
    return {
        "nats_per_token": float(nats_per_token),
        "nats_per_char": float(nats_per_char),
        "perplexity": float(np.exp(nats_per_token)),
        "bits_per_char": float(nats_per_char / np.log(2.0)),
    }


def ngram_models(train_ids, vocabulary_size):
    """Unigram (add-one) and bigram (Witten-Bell interpolated with the unigram) probabilities.

    Returns:
        `(unigram (V,), bigram (V, V))`; `bigram[a, b]` = p(b | a).
    """
    counts = np.bincount(train_ids, minlength=vocabulary_size).astype(np.float64)
    unigram = (counts + 1.0) / (counts.sum() + vocabulary_size)
    pairs = np.zeros((vocabulary_size, vocabulary_size), np.float64)
    np.add.at(pairs, (train_ids[:-1], train_ids[1:]), 1.0)
    seen = pairs.sum(axis=1, keepdims=True)  # c(a)
    types = (pairs > 0).sum(axis=1, keepdims=True)  # T(a): distinct tokens seen after a
    bigram = (pairs + types * unigram[None, :]) / np.maximum(seen + types, 1.0)
    bigram[seen[:, 0] == 0] = unigram  # never seen as a context: back off entirely
    return unigram, bigram


def baseline(config, data):
    """Unigram and bigram models of the training split, scored on the test windows' targets."""
    unigram, bigram = ngram_models(data.train_ids, data.info["vocabulary_size"])
    unigram_nats, bigram_nats, count = 0.0, 0.0, 0
    for inputs, targets in data.test.as_numpy_iterator():
        unigram_nats -= np.log(unigram[targets]).sum()
        bigram_nats -= np.log(bigram[inputs, targets]).sum()  # inputs[t] is the token before targets[t]
        count += targets.size
    result = {key: value for key, value in units(bigram_nats / count, data.info).items()}
    result["name"] = "bigram (Witten-Bell)"
    result["unigram"] = units(unigram_nats / count, data.info)
    return result


@tf.function(reduce_retracing=True)
def _token_losses(model, inputs, targets):
    logits = model(inputs, training=False)  # (B, T, V)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(targets, tf.cast(logits, tf.float32))  # (B, T)
    correct = tf.cast(tf.argmax(logits, axis=-1, output_type=tf.int32) == targets, tf.float32)
    return losses, correct


def evaluate(model, data, config, plots_dir=None):
    """Loss on every token of the test windows (nats/token, nats/char, perplexity, bits/char), accuracy.

    Also plots the loss against the position in the window (how much context helps).
    """
    total, correct, count = 0.0, 0.0, 0
    by_position = np.zeros(data.info["sequence_length"])
    for inputs, targets in data.test:
        losses, hits = _token_losses(model, inputs, targets)
        losses = losses.numpy()
        total += losses.sum()
        correct += float(tf.reduce_sum(hits))
        count += losses.size
        by_position[: losses.shape[1]] += losses.sum(axis=0)
    result = units(total / count, data.info)
    result["accuracy"] = correct / count
    if plots_dir is not None:
        by_position /= count / data.info["sequence_length"]
        with plots.best_effort(pathlib.Path(plots_dir) / "loss_by_position.png") as path:
            plot_loss_by_position(by_position, path)
    return result


def plot_loss_by_position(losses, path):
    """Test loss (nats/token) against the number of tokens of context before the target."""
    import matplotlib.pyplot as plt  # the Agg backend is set by tasks.core.plots

    figure, axis = plt.subplots(figsize=(5, 3.2))
    axis.plot(np.arange(1, len(losses) + 1), losses, marker=".")
    axis.set_xscale("log")
    axis.set_xlabel("tokens of context")
    axis.set_ylabel("nats per token")
    axis.set_title("Test loss by position in the window")
    axis.grid(alpha=0.3)
    return plots.save(figure, path)


# === Sampling and generation ===


def sample_logits(logits, temperature, top_k, top_p, seed):
    """One token id from logits (V,): temperature, then top-k (0: off), then top-p (1.0: off).

    Deterministic for a `seed` (int64 (2,)): `tf.random.stateless_categorical`. `top_k=1` is greedy.
    """
    logits = tf.cast(logits, tf.float32) / temperature
    size = tf.shape(logits)[0]
    ordered = tf.sort(logits, direction="DESCENDING")  # (V,)
    k = tf.where(top_k > 0, tf.minimum(top_k, size), size)
    floor = ordered[k - 1]
    # Top-p: the smallest prefix of the ordered tokens whose probability reaches top_p.
    probabilities = tf.nn.softmax(ordered)
    before = tf.cumsum(probabilities, exclusive=True)
    nucleus = tf.reduce_sum(tf.cast(before < top_p, tf.int32))
    floor = tf.maximum(floor, ordered[tf.maximum(nucleus, 1) - 1])
    logits = tf.where(logits < floor, tf.constant(-1e9, tf.float32), logits)
    return tf.random.stateless_categorical(logits[None], 1, seed, dtype=tf.int32)[0, 0]


def cache_family(model):
    """The applications module with a cached generation path for `model`, or None."""
    return next((family for family in CACHE_FAMILIES if family.supports(model)), None)


def generate_ids(model, ids, max_new_tokens, temperature=1.0, top_k=0, top_p=1.0, seed=0,
                 context_length=128, use_cache=True):
    """Continues `ids` (P,) int32, P >= 1, by `max_new_tokens` sampled ids (N,). Graph-safe.

    With the cache, the prompt's last `context_length` tokens are run once and every new token
    costs one position; when a finite cache (GPT) is full, it is rebuilt from the last half of the
    context (a sliding window, amortized). Without it, every step runs the model on the last
    `context_length` tokens.
    """
    family = cache_family(model) if use_cache else None
    ids = tf.cast(ids, tf.int32)
    prompt_length = tf.shape(ids)[0]
    buffer = tf.concat([ids, tf.zeros([max_new_tokens], tf.int32)], axis=0)  # (P + N,)
    seed = tf.cast(seed, tf.int64)

    def put(buffer, step, token):
        return tf.tensor_scatter_nd_update(buffer, [[prompt_length + step]], [token])

    if family is None:
        def body(step, buffer):
            end = prompt_length + step
            context = buffer[tf.maximum(end - context_length, 0):end]
            logits = model(context[None], training=False)[0, -1]  # (V,)
            token = sample_logits(logits, temperature, top_k, top_p, tf.stack([seed, tf.cast(step, tf.int64)]))
            return step + 1, put(buffer, step, token)

        _, buffer = tf.while_loop(lambda step, _: step < max_new_tokens, body, [tf.constant(0), buffer])
        return buffer[prompt_length:]

    finite = family is gpt_family
    keep = max(context_length // 2, 1)
    start = tf.maximum(prompt_length - context_length, 0) if finite else 0
    logits, cache = family.call_with_cache(model, ids[None, start:], family.initial_cache(model, 1, context_length), 0)
    position = prompt_length - start

    def body(step, buffer, logits, cache, position):
        token = sample_logits(logits[0, -1], temperature, top_k, top_p, tf.stack([seed, tf.cast(step, tf.int64)]))
        buffer = put(buffer, step, token)
        end = prompt_length + step + 1

        def rebuild():  # the cache is full: keep the last `keep` tokens
            fresh = family.initial_cache(model, 1, context_length)
            logits, cache = family.call_with_cache(model, buffer[None, end - keep:end], fresh, 0)
            return logits[:, -1:], cache, tf.constant(keep)

        def advance():
            logits, new_cache = family.call_with_cache(model, token[None, None], cache, position)
            return logits, new_cache, position + 1

        if finite:
            logits, cache, position = tf.cond(position >= context_length, rebuild, advance)
        else:
            logits, cache, position = advance()
        return step + 1, buffer, logits, cache, position

    _, buffer, *_ = tf.while_loop(
        lambda step, *_: step < max_new_tokens,
        body,
        [tf.constant(0), buffer, logits[:, -1:], cache, position],
        shape_invariants=[tf.TensorShape([]), tf.TensorShape([None]), tf.TensorShape([1, None, None]),
                          cache.shape, tf.TensorShape([])],
    )
    return buffer[prompt_length:]


def prompt_ids(codec, prompt, info):
    """A scalar prompt → ids (P,), P >= 1: an empty (or all-unknown) prompt becomes the start token."""
    ids = codec.encode(prompt)
    return tf.cond(tf.size(ids) > 0, lambda: ids, lambda: tf.constant([info["start_token"]], tf.int32))


# === Export and predict ===


def serving(model, info):
    """`serving_default`: prompts + sampling settings → continuation and full text (KV cache on)."""
    codec = codec_for(info)
    if isinstance(codec, SentencePieceCodec):
        model.sentencepiece = codec.tokenizer  # tracked with the model, so the export holds its op

    def generate(prompt, max_new_tokens, temperature, top_k, top_p, seed):
        # A server cannot print one line: out-of-range settings fail with these messages.
        checks = [
            tf.debugging.assert_greater(max_new_tokens, 0, message="max_new_tokens must be >= 1"),
            tf.debugging.assert_less_equal(max_new_tokens, MAX_NEW_TOKENS, message=f"max_new_tokens must be <= {MAX_NEW_TOKENS}"),
            tf.debugging.assert_greater(temperature, 0.0, message="temperature must be > 0 (use top_k=1 for greedy)"),
            tf.debugging.assert_non_negative(top_k, message="top_k must be >= 0 (0: off)"),
            tf.debugging.assert_greater(top_p, 0.0, message="top_p must be in (0, 1]"),
            tf.debugging.assert_less_equal(top_p, 1.0, message="top_p must be in (0, 1]"),
        ]
        with tf.control_dependencies(checks):
            max_new_tokens = tf.identity(max_new_tokens)

        def one(text):
            new = generate_ids(model, prompt_ids(codec, text, info), max_new_tokens, temperature, top_k,
                               top_p, seed, info["sequence_length"])
            return codec.decode(new)

        continuation = tf.map_fn(one, prompt, fn_output_signature=tf.TensorSpec([], tf.string))
        return {"continuation": continuation, "text": prompt + continuation}

    signature = [
        tf.TensorSpec([None], tf.string, name="prompt"),
        tf.TensorSpec([], tf.int32, name="max_new_tokens"),
        tf.TensorSpec([], tf.float32, name="temperature"),
        tf.TensorSpec([], tf.int32, name="top_k"),
        tf.TensorSpec([], tf.float32, name="top_p"),
        tf.TensorSpec([], tf.int32, name="seed"),
    ]
    example = [np.array([b"", b"Th"]), np.int32(12), np.float32(0.9), np.int32(0), np.float32(0.95), np.int32(7)]
    return [export.Endpoint("serving_default", generate, signature, example)]


def predict_flags(parser):
    """The sampling flags of `predict`."""
    parser.add_argument("--max-new-tokens", type=int, default=200, help=f"Tokens to generate, 1..{MAX_NEW_TOKENS}.")
    parser.add_argument("--temperature", type=float, default=0.8, help="Softmax temperature, > 0.")
    parser.add_argument("--top-k", type=int, default=0, help="Sample among the k likeliest (0: off; 1: greedy).")
    parser.add_argument("--top-p", type=float, default=1.0, help="Nucleus sampling mass in (0, 1] (1: off).")
    parser.add_argument("--seed", type=int, default=0, help="Sampling seed: the same seed gives the same text.")


# Prompts are text, never files: no INPUT is checked as a path.
looks_like_path = None


def check_settings(max_new_tokens, temperature, top_k, top_p):
    """Raises `UserError` for out-of-range sampling settings, one line each."""
    if not 1 <= max_new_tokens <= MAX_NEW_TOKENS:
        raise UserError(f"--max-new-tokens must be between 1 and {MAX_NEW_TOKENS}. Received: {max_new_tokens}")
    if not temperature > 0:
        raise UserError(f"--temperature must be > 0 (for greedy decoding use --top-k 1). Received: {temperature}")
    if top_k < 0:
        raise UserError(f"--top-k must be >= 0 (0: off). Received: {top_k}")
    if not 0 < top_p <= 1:
        raise UserError(f"--top-p must be in (0, 1]. Received: {top_p}")


def predict(inputs, model_path, output_dir="predictions", max_new_tokens=200, temperature=0.8, top_k=0,
            top_p=1.0, seed=0):
    """Prints the exported model's continuation of each prompt (the prompt, then the new text)."""
    check_settings(max_new_tokens, temperature, top_k, top_p)
    loaded = export.load(model_path)
    codec = codec_for(loaded.info)  # also imports tensorflow_text for SentencePiece models
    generate = loaded.signatures["serving_default"]
    for number, prompt in enumerate(inputs, 1):
        _, unknown = codec.encode_numpy(prompt)
        if unknown:
            shown = ", ".join(repr(char) for char in dict.fromkeys(unknown))
            print(f"warning: prompt {number}: skipped {len(unknown)} character(s) never seen in training: {shown}",
                  file=sys.stderr)
        out = generate(prompt=tf.constant([prompt]), max_new_tokens=tf.constant(max_new_tokens),
                       temperature=tf.constant(temperature, tf.float32), top_k=tf.constant(top_k),
                       top_p=tf.constant(top_p, tf.float32), seed=tf.constant(seed))
        print(f"=== prompt {number}: {prompt!r}")
        print(out["text"].numpy()[0].decode("utf-8"))
    return loaded.path


# === Train ===


class SampleText(keras.callbacks.Callback):
    """Prints a sample continuation of `prompt` after each epoch (temperature 0.8, seed = epoch).

    Args:
        info: dict. The data's facts (tokenizer, sequence length, start token).
        prompt: str. The text to continue.
        length: int. Tokens to generate.
    """

    def __init__(self, info, prompt, length):
        super().__init__()
        self.info = info
        self.prompt = prompt
        self.length = length

    def on_train_begin(self, logs=None):
        self.codec = codec_for(self.info)

    def on_epoch_end(self, epoch, logs=None):
        ids = prompt_ids(self.codec, tf.constant(self.prompt), self.info)
        new = generate_ids(self.model, ids, self.length, temperature=0.8, seed=epoch,
                           context_length=self.info["sequence_length"])
        text = self.prompt + self.codec.decode_numpy(new.numpy())
        print(f"\nsample after epoch {epoch + 1}: {text!r}")


def callbacks(config, data, run):
    """The per-epoch sample, when `--sample-length` is not 0."""
    if not config.sample_length or not config.verbose:
        return []
    return [SampleText(data.info, config.sample_prompt, config.sample_length)]


def train(config, fresh=False):
    """The whole job: data → model → fit → evaluate + baseline → export. Returns the model."""
    return runner.train(sys.modules[__name__], config, fresh=fresh)


if __name__ == "__main__":
    cli.main(sys.modules[__name__])
