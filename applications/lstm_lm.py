"""Stacked LSTM language models (Zaremba et al., 2014): embedding → LSTMs with dropout → logits.

Tokens (B, T) int32 → logits (B, T, vocabulary_size) float32. Dropout sits between the layers
(not on the recurrent connections, as in the paper), on the embeddings and before the output.

The LSTM's state is its cache: `call_with_cache(model, tokens, cache, index)` continues from the
state (B, num_layers, 2, units) of the tokens before, so generation is linear in length and the
context is unbounded.

Reference:
- [Recurrent Neural Network Regularization](https://arxiv.org/abs/1409.2329)
"""

import keras
from keras import layers
from keras import ops

from applications.registry import register


def LSTMLanguageModel(vocabulary_size, num_layers, embed_dim, units, dropout_rate=0.1, name="lstm_lm"):
    """A stacked LSTM language model: tokens (B, T) int32 → logits (B, T, V) float32.

    Args:
        vocabulary_size: int. The number of token ids.
        num_layers: int. Stacked LSTM layers.
        embed_dim: int. Width of the token embedding.
        units: int. Width of every LSTM layer.
        dropout_rate: float. Dropout on the embeddings, between layers and before the output.
            Defaults to 0.1.
        name: str. The model name. Defaults to "lstm_lm".
    """
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    x = layers.Embedding(vocabulary_size, embed_dim, name="token_embedding")(tokens)  # (B, T, E)
    x = layers.Dropout(dropout_rate, name="embedding_dropout")(x)
    for index in range(num_layers):
        # return_state: the generation path reads the final states of these same layers.
        x, _, _ = layers.LSTM(units, return_sequences=True, return_state=True, name=f"lstm{index}")(x)
        x = layers.Dropout(dropout_rate, name=f"lstm{index}_dropout")(x)  # (B, T, units)
    logits = layers.Dense(vocabulary_size, dtype="float32", name="logits")(x)  # (B, T, V)
    return keras.Model(tokens, logits, name=name)


@register(kind="language_model")
def lstm_lm(vocabulary_size, sequence_length, num_layers=2, embed_dim=128, units=512, dropout_rate=0.1,
            name="lstm_lm"):
    """Two LSTM layers of 512 units (char-rnn's size). `sequence_length` is the training window only."""
    del sequence_length  # an LSTM has no position table; kept for the builder contract
    return LSTMLanguageModel(vocabulary_size, num_layers, embed_dim, units, dropout_rate, name=name)


# === Generation with the recurrent state as the cache ===


def supports(model):
    """Whether `model` is an LSTM language model of this module."""
    return any(isinstance(layer, layers.LSTM) for layer in model.layers)


def _lstms(model):
    return [layer for layer in model.layers if isinstance(layer, layers.LSTM)]


def initial_cache(model, batch_size, length=None):
    """Zero states (B, num_layers, 2, units); `length` is unused (the state has no length)."""
    del length
    lstms = _lstms(model)
    return ops.zeros((batch_size, len(lstms), 2, lstms[0].units), dtype="float32")


def call_with_cache(model, tokens, cache, index=None):
    """Logits of `tokens` (B, T) continuing from the states in `cache` (B, num_layers, 2, units).

    Returns:
        `(logits, cache)`: float32 logits (B, T, V) and the states after the last token.
    """
    del index  # the state already holds the position
    x = model.get_layer("token_embedding")(tokens)
    states = []
    for layer_index, lstm in enumerate(_lstms(model)):
        initial = [ops.cast(cache[:, layer_index, 0], x.dtype), ops.cast(cache[:, layer_index, 1], x.dtype)]
        x, hidden, carry = lstm(x, initial_state=initial, training=False)
        states.append(ops.stack([ops.cast(hidden, "float32"), ops.cast(carry, "float32")], axis=1))
    logits = ops.cast(model.get_layer("logits")(x), "float32")
    return logits, ops.stack(states, axis=1)
