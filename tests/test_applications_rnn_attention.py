"""Tests for the encoder–decoder builders (`applications.transformer`, `applications.rnn_attention`).

Each builder is built small, predicted on arrays and `tf.data`, trained one step, round-tripped
through a `.keras` file; its `encoder` and `decoder` parts, run apart as decoding runs them, give
the whole model's logits; the attention rows are distributions over the unpadded source only,
and the decoder is causal (a later target token never changes an earlier position's logits).
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import applications
from applications import transformer
from tests import helpers

SOURCE_VOCABULARY = 17
TARGET_VOCABULARY = 13
SMALL = {
    "transformer_seq2seq": {"num_layers": 1, "embed_dim": 16, "num_heads": 2, "max_source_length": 8,
                            "max_target_length": 6},
    "gru_attention": {"embed_dim": 8, "units": 12},
    "lstm_attention": {"embed_dim": 8, "units": 12},
}
SOURCE = np.array([[4, 5, 6, 0, 0], [7, 8, 9, 10, 11]], "int32")  # row 0 padded
TARGET_IN = np.array([[2, 5, 6, 0], [2, 4, 7, 9]], "int32")
TARGET_OUT = np.array([[5, 6, 3, 0], [4, 7, 9, 3]], "int32")


def build(name):
    return applications.get(name)(SOURCE_VOCABULARY, TARGET_VOCABULARY, **SMALL[name])


def parts(model, source, target_in):
    states = model.get_layer("encoder")(tf.constant(source), training=False)
    states = list(states) if isinstance(states, (list, tuple)) else [states]
    logits, attention = model.get_layer("decoder")([tf.constant(target_in), tf.constant(source), *states],
                                                   training=False)
    return np.asarray(logits), np.asarray(attention)


# The fast lane builds and fits the tasks' default (transformer_seq2seq); the RNNs (5-7 s each on two
# cores) run in the full suite, and every builder overfits a batch in tests/test_contract.py.
@pytest.mark.parametrize("name", [name if name == "transformer_seq2seq" else pytest.param(name, marks=pytest.mark.slow)
                                  for name in sorted(SMALL)])
def test_build_predict_fit_round_trip_and_parts(name, tmp_path):
    model = build(name)
    assert transformer.supports(model)
    inputs = {"source": SOURCE, "target_in": TARGET_IN}
    logits = model.predict(inputs, verbose=0)
    assert logits.shape == (2, 4, TARGET_VOCABULARY) and logits.dtype == np.float32
    assert np.all(np.isfinite(logits))
    dataset = tf.data.Dataset.from_tensor_slices(inputs).batch(2)
    np.testing.assert_allclose(model.predict(dataset, verbose=0), logits, atol=1e-5)
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0))
    before = np.array(model.get_layer("encoder").trainable_weights[0])
    history = model.fit(inputs, TARGET_OUT, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    # The gradient reaches the source embedding: encoder and decoder are connected.
    assert not np.array_equal(before, np.array(model.get_layer("encoder").trainable_weights[0]))
    restored = helpers.keras_round_trip(model, inputs, tmp_path)
    expected = model.predict(inputs, verbose=0)

    split_logits, attention = parts(restored, SOURCE, TARGET_IN)
    np.testing.assert_allclose(split_logits, expected, atol=1e-5)
    assert attention.shape == (2, 4, 5)
    np.testing.assert_allclose(attention.sum(axis=-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(attention[0, :, 3:], 0.0, atol=1e-7)  # never attends to padding


@pytest.mark.parametrize("name", sorted(SMALL))
def test_decoder_is_causal_and_ignores_source_padding(name):
    model = build(name)
    logits, _ = parts(model, SOURCE, TARGET_IN)
    changed = TARGET_IN.copy()
    changed[:, -1] = 11  # a different last token
    later, _ = parts(model, SOURCE, changed)
    np.testing.assert_allclose(later[:, :-1], logits[:, :-1], atol=1e-5)
    # More padding on the source changes nothing.
    padded = np.concatenate([SOURCE, np.zeros((2, 3), "int32")], axis=1)
    more, _ = parts(model, padded, TARGET_IN)
    np.testing.assert_allclose(more, logits, atol=1e-5)


def test_bad_sizes_fail_with_the_received_values():
    with pytest.raises(ValueError, match="embed_dim=10, num_heads=4"):
        applications.get("transformer_seq2seq")(10, 10, embed_dim=10, num_heads=4)
    from applications import rnn_attention as rnn_family

    with pytest.raises(ValueError, match="cell='rnn'"):
        rnn_family.rnn_attention(10, 10, cell="rnn")
