"""Sentence-classifier builders (`applications.text_classifiers`, `applications.bert`) and the masked-LM model.

Every registered sentence classifier is built small, predicted on arrays and `tf.data`, trained one
step, and round-tripped through a `.keras` file; attention pooling ignores padding; the masked-LM
model trains the classifier's own encoder; the NB bag counts each id once and adapts its ratios
to hand-computed log-count ratios.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

import applications
from applications import bert
from applications import text_classifiers
from tests import helpers

VOCABULARY_SIZE = 40
SEQUENCE_LENGTH = 12
SMALL = {
    "text_cnn": {"embed_dim": 16, "num_filters": 8},
    "bilstm_attention": {"embed_dim": 16, "units": 8},
    "bigru_attention": {"embed_dim": 16, "units": 8, "num_layers": 2},
    "bert_tiny": {"embed_dim": 32, "num_heads": 2},
    "bert_mini": {"num_layers": 1, "embed_dim": 32, "num_heads": 4},
    "nb_ngrams": {"dropout_rate": 0.1},
}
SENTENCE_CLASSIFIERS = [name for name in applications.names()
                        if applications.get(name).__module__ in ("applications.text_classifiers", "applications.bert")]


def token_ids(batch_size=4, seed=0):
    """Random ids (B, T) with trailing padding of varying length."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, VOCABULARY_SIZE, (batch_size, SEQUENCE_LENGTH)).astype("int32")
    for row in range(batch_size):
        ids[row, rng.integers(2, SEQUENCE_LENGTH):] = 0
    return ids


def test_every_sentence_classifier_is_registered():
    assert set(SENTENCE_CLASSIFIERS) == set(SMALL)


@pytest.mark.parametrize("name", sorted(SMALL))
def test_build_predict_fit_and_round_trip(name, tmp_path):
    keras.utils.set_random_seed(0)
    model = applications.get(name)(VOCABULARY_SIZE, SEQUENCE_LENGTH, 3, **SMALL[name])
    assert model.name == name
    x, y = token_ids(), np.array([0, 1, 2, 1])
    logits = model.predict(x, verbose=0)
    assert logits.shape == (4, 3) and logits.dtype == np.float32 and np.all(np.isfinite(logits))
    np.testing.assert_allclose(model.predict(tf.data.Dataset.from_tensor_slices(x).batch(4), verbose=0), logits,
                               atol=1e-5)
    # All padding (an empty sentence) still gives finite logits.
    assert np.all(np.isfinite(model.predict(np.zeros((1, SEQUENCE_LENGTH), "int32"), verbose=0)))
    model.compile(optimizer=keras.optimizers.Adam(1e-2),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    embedding = next(weight for weight in model.trainable_weights  # the id-indexed weights
                     if "embedding" in weight.path or weight.path.endswith("bag/kernel"))
    before = np.array(embedding)
    history = model.fit(x, y, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert not np.array_equal(before, np.array(embedding))  # the gradient reaches the embedding
    helpers.keras_round_trip(model, x, tmp_path)


def test_text_cnn_matches_kims_architecture():
    model = applications.get("text_cnn")(VOCABULARY_SIZE, SEQUENCE_LENGTH, 2)
    # Embedding 40 x 300, convolutions of widths 3, 4, 5 with 100 maps each, dense 300 → 2.
    expected = 40 * 300 + sum(width * 300 * 100 + 100 for width in (3, 4, 5)) + 300 * 2 + 2
    assert model.count_params() == expected
    assert model.get_layer("text_cnn_predictions").kernel_constraint.max_value == 3.0
    with pytest.raises(ValueError, match="widest filter must fit"):
        applications.get("text_cnn")(VOCABULARY_SIZE, 4, 2)


def test_attention_pooling_gives_padding_no_weight():
    layer = text_classifiers.AttentionPooling(8, return_attention=True)
    x = tf.random.normal((2, 5, 6))
    mask = tf.constant([[True, True, False, False, False], [True] * 5])
    pooled, weights = layer(x, mask=mask)
    weights = weights.numpy()
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
    assert np.all(weights[0, 2:] == 0.0)
    np.testing.assert_allclose(pooled[0], (weights[0, :2, None] * x[0, :2].numpy()).sum(axis=0), atol=1e-5)


@pytest.mark.parametrize("name", ["bilstm_attention", "bert_tiny"])
def test_masked_models_ignore_what_follows_the_padding(name):
    """Padding is masked: a sentence's logits do not depend on how much padding follows it."""
    keras.utils.set_random_seed(1)
    model = applications.get(name)(VOCABULARY_SIZE, SEQUENCE_LENGTH, 2, **SMALL[name])
    short = np.zeros((1, SEQUENCE_LENGTH), "int32")
    short[0, :4] = [5, 6, 7, 8]
    # The same 4 tokens and 8 pads in a model of length 12 vs. the pads' embeddings being perturbed:
    embedding = model.get_layer(f"{name}_embedding") if name != "bert_tiny" else \
        model.get_layer("bert_encoder").get_layer("token_embedding")
    before = model(short, training=False).numpy()
    weights = embedding.get_weights()
    weights[0][0] += 5.0  # the padding token's embedding row
    embedding.set_weights(weights)
    np.testing.assert_allclose(model(short, training=False).numpy(), before, atol=1e-5)


@pytest.mark.slow  # a BERT masked-LM fit, 4 s on two cores; tests/test_sentiment.py covers the path
def test_masked_lm_trains_the_classifiers_own_encoder():
    keras.utils.set_random_seed(0)
    classifier = applications.get("bert_tiny")(VOCABULARY_SIZE, SEQUENCE_LENGTH, 2, **SMALL["bert_tiny"])
    mlm = bert.masked_lm(classifier, max_predictions=3)
    assert mlm.get_layer("bert_encoder") is classifier.get_layer("bert_encoder")
    x = token_ids()
    positions = np.array([[0, 1, 2]] * 4, "int32")
    logits = mlm.predict([x, positions], verbose=0)
    assert logits.shape == (4, 3, VOCABULARY_SIZE)
    before = classifier.predict(x, verbose=0)
    mlm.compile(optimizer=keras.optimizers.Adam(1e-2),
                loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    mlm.fit([x, positions], x[:, :3], epochs=1, verbose=0)
    assert not np.allclose(classifier.predict(x, verbose=0), before)  # shared weights moved
    assert bert.supports(classifier) and not bert.supports(applications.get("text_cnn")(VOCABULARY_SIZE, 12, 2))


def test_distinct_ids_is_the_same_in_numpy_and_in_the_graph():
    ids = np.array([[4, 2, 4, 0, 2, 7], [0, 0, 0, 0, 0, 0], [9, 8, 7, 6, 5, 9]], "int32")
    expected = np.array([[0, 2, 0, 4, 0, 7], [0] * 6, [5, 6, 7, 8, 9, 0]])  # sorted, repeats → 0
    np.testing.assert_array_equal(text_classifiers.distinct_ids(ids), expected)
    np.testing.assert_array_equal(text_classifiers.distinct_ids(tf.constant(ids)), expected)


def test_nb_bag_counts_each_id_once_in_any_order_and_ignores_padding():
    layer = text_classifiers.NaiveBayesBag(6, 2)
    layer.build((None, None))
    kernel = np.arange(12, dtype="float32").reshape(6, 2)
    ratios = np.linspace(-1.0, 1.0, 12, dtype="float32").reshape(6, 2)
    layer.kernel.assign(kernel)
    layer.ratios.assign(ratios)
    layer.bias.assign([0.5, -0.5])
    expected = (kernel[[3, 5]] * ratios[[3, 5]]).sum(axis=0) + [0.5, -0.5]
    bags = np.array([[3, 5, 3, 0], [5, 3, 0, 0], [0, 0, 5, 3]], "int32")
    np.testing.assert_allclose(layer(bags), np.tile(expected, (3, 1)), atol=1e-5)
    np.testing.assert_allclose(layer(np.zeros((1, 4), "int32")), [[0.5, -0.5]])  # an empty bag: the bias


def test_nb_bag_adapts_to_smoothed_one_against_the_rest_log_count_ratios(tmp_path):
    layer = text_classifiers.NaiveBayesBag(5, 2, smoothing=1.0)
    bags = np.array([[2, 3, 3, 0], [2, 0, 0, 0], [4, 0, 0, 0]], "int32")  # the repeated 3 counts once
    layer.adapt(bags, np.array([1, 1, 0]))
    # Sentences holding each id: class 1 → [0, 0, 2, 1, 0], class 0 → [0, 0, 0, 0, 1]; plus 1 each.
    p, q = np.array([1, 1, 3, 2, 1.0]), np.array([1, 1, 1, 1, 2.0])
    r = np.log(p / p.sum()) - np.log(q / q.sum())
    r[0] = 0.0
    np.testing.assert_allclose(np.array(layer.ratios), np.stack([-r, r], axis=1), atol=1e-6)
    # The ratios are state of the model: they survive a .keras round trip.
    ids = keras.Input((None,), dtype="int32")
    model = keras.Model(ids, layer(ids))
    model.save(tmp_path / "bag.keras")
    restored = keras.saving.load_model(tmp_path / "bag.keras")
    np.testing.assert_allclose(np.array(restored.layers[-1].ratios), np.array(layer.ratios))
