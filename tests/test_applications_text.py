"""Tests for the language-model builders (`applications.gpt`, `applications.lstm_lm`).

Each builder is built small, predicted on arrays and `tf.data`, trained one step, round-tripped
through a `.keras` file, and its cached generation path (KV cache / recurrent state) is checked
against the full forward pass token by token.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import applications
from applications import gpt
from applications import lstm_lm
from tests import helpers

VOCABULARY_SIZE = 13
SEQUENCE_LENGTH = 16
SMALL = {
    "gpt": {"num_layers": 2, "embed_dim": 32, "num_heads": 4},
    "gpt_mini": {"num_layers": 1, "embed_dim": 32, "num_heads": 4},
    "lstm_lm": {"num_layers": 2, "embed_dim": 16, "units": 32},
}
# The fast lane builds and fits the task's default (gpt); the others (2-5 s each on two cores) run in
# the full suite, and every builder overfits a batch in tests/test_contract.py.
SLOW = pytest.mark.slow
CASES = [
    ("gpt", gpt, {}),
    pytest.param("gpt", gpt, {"positions": "rotary"}, marks=SLOW),
    pytest.param("gpt_mini", gpt, {}, marks=SLOW),
    pytest.param("lstm_lm", lstm_lm, {}, marks=SLOW),
]


def tokens(batch_size=2, length=12, seed=0):
    return np.random.default_rng(seed).integers(0, VOCABULARY_SIZE, (batch_size, length)).astype("int32")


def build(name, extra):
    return applications.get(name)(VOCABULARY_SIZE, SEQUENCE_LENGTH, **SMALL[name], **extra)


@pytest.mark.parametrize("name, family, extra", CASES)
def test_build_predict_fit_and_round_trip(name, family, extra, tmp_path):
    model = build(name, extra)
    x = tokens()
    logits = model.predict(x, verbose=0)
    assert logits.shape == (2, 12, VOCABULARY_SIZE) and logits.dtype == np.float32
    assert np.all(np.isfinite(logits))
    dataset = tf.data.Dataset.from_tensor_slices(x).batch(2)
    np.testing.assert_allclose(model.predict(dataset, verbose=0), logits, atol=1e-5)
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    before = np.array(model.trainable_weights[0])
    history = model.fit(x, np.roll(x, -1, axis=1), epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.array_equal(before, np.array(model.trainable_weights[0]))  # gradient reaches the embedding
    restored = helpers.keras_round_trip(model, x, tmp_path, atol=1e-6)
    assert family.supports(model) and family.supports(restored)


@pytest.mark.parametrize("name, family, extra", CASES)
def test_cached_logits_match_the_full_forward_pass(name, family, extra):
    model = build(name, extra)
    x = tokens(length=SEQUENCE_LENGTH)
    full = keras.ops.convert_to_numpy(model(x, training=False))  # (B, T, V)
    cache = family.initial_cache(model, 2, SEQUENCE_LENGTH)
    logits, cache = family.call_with_cache(model, x[:, :5], cache, 0)  # prefill 5, then one at a time
    pieces = [keras.ops.convert_to_numpy(logits)]
    for index in range(5, SEQUENCE_LENGTH):
        logits, cache = family.call_with_cache(model, x[:, index:index + 1], cache, index)
        pieces.append(keras.ops.convert_to_numpy(logits))
    np.testing.assert_allclose(np.concatenate(pieces, axis=1), full, atol=1e-4)


def test_gpt_ties_the_output_to_the_embedding_and_checks_heads():
    model = gpt.gpt(VOCABULARY_SIZE, SEQUENCE_LENGTH, num_layers=1, embed_dim=32, num_heads=4)
    embeddings = [w for w in model.weights if "embedding" in w.path and "position" not in w.path]
    assert len(embeddings) == 1  # no separate output matrix
    names = {layer.name for layer in model.layers}
    assert {"token_embedding", "position_embedding", "block0", "final_norm", "logits"} <= names
    with pytest.raises(ValueError, match="num_heads"):
        gpt.gpt(VOCABULARY_SIZE, SEQUENCE_LENGTH, num_layers=1, embed_dim=30, num_heads=4)
    with pytest.raises(ValueError, match="positions"):
        gpt.gpt(VOCABULARY_SIZE, SEQUENCE_LENGTH, positions="sinusoidal")


def test_gpt_is_causal():
    model = build("gpt", {})
    x = tokens(length=10)
    changed = x.copy()
    changed[:, 6:] = (changed[:, 6:] + 1) % VOCABULARY_SIZE  # the future changes ...
    a = keras.ops.convert_to_numpy(model(x, training=False))
    b = keras.ops.convert_to_numpy(model(changed, training=False))
    np.testing.assert_allclose(a[:, :6], b[:, :6], atol=1e-5)  # ... the past's logits do not
    assert np.abs(a[:, 6:] - b[:, 6:]).max() > 1e-4
