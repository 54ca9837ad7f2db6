"""Recurrent encoder–decoder with additive (Bahdanau) attention, GRU or LSTM cells.

Source tokens (B, S) and target tokens shifted right (B, T), int32, id 0 = padding → logits
(B, T, target_vocabulary_size) float32.

- Encoder: embedding → bidirectional RNN over the unpadded source → memory (B, S, 2U) and a
  first decoder state (B, U) from the last forward and backward states.
- Decoder: embedding → RNN (B, T, U) started from that state; additive attention scores each
  memory position against each decoder output, `v·tanh(W_q q_t + W_k m_s)` (keras
  `AdditiveAttention` on the two projections); the context (B, T, 2U) and the RNN output go
  through a tanh layer to the logits (Luong's "attentional hidden state", with Bahdanau's score).

Like `applications.transformer`, two nested functional models decoding can run apart:
`encoder`: source → [memory, state]; `decoder`: [target_in, source, memory, state] →
[logits (B, T, V), attention (B, T, S)].

References:
- [Neural Machine Translation by Jointly Learning to Align and Translate](https://arxiv.org/abs/1409.0473)
- [Effective Approaches to Attention-based Neural Machine Translation](https://arxiv.org/abs/1508.04025)
"""

import keras
from keras import layers
from keras import ops

from applications.registry import register

CELLS = {"gru": layers.GRU, "lstm": layers.LSTM}


def rnn_attention(
    source_vocabulary_size,
    target_vocabulary_size,
    cell="gru",
    embed_dim=128,
    units=256,
    dropout_rate=0.1,
    name="rnn_attention",
):
    """A bidirectional-RNN encoder and an RNN decoder with additive attention.

    Args:
        source_vocabulary_size: int. Source token ids are in [0, source_vocabulary_size); 0 pads.
        target_vocabulary_size: int. Target token ids and logits.
        cell: str. `gru` or `lstm`. Defaults to "gru".
        embed_dim: int. Token embedding width. Defaults to 128.
        units: int. Decoder RNN width; each encoder direction has as many. Defaults to 256.
        dropout_rate: float. Dropout on embeddings and before the output layer. Defaults to 0.1.
        name: str. The model name. Defaults to "rnn_attention".
    """
    if cell not in CELLS:
        raise ValueError(f"cell must be one of {', '.join(CELLS)}. Received: cell={cell!r}")
    rnn = CELLS[cell]
    num_states = 2 if cell == "lstm" else 1

    # === Encoder ===
    source = keras.Input((None,), dtype="int32", name="source")
    source_mask = ops.not_equal(source, 0)  # (B, S)
    x = layers.Embedding(source_vocabulary_size, embed_dim, name="source_token_embedding")(source)
    x = layers.Dropout(dropout_rate, name="source_embedding_dropout")(x)
    outputs = layers.Bidirectional(
        rnn(units, return_sequences=True, return_state=True, name=f"encoder_{cell}"), name="encoder_rnn"
    )(x, mask=source_mask)
    memory, states = outputs[0], outputs[1:]  # (B, S, 2U); forward states, then backward ones
    # Zero at padding, and a plain tensor: the decoder gets the source ids for its mask instead.
    memory = memory * ops.expand_dims(ops.cast(source_mask, memory.dtype), -1)
    forward, backward = states[:num_states], states[num_states:]
    bridge = layers.Dense(units, activation="tanh", name="encoder_bridge")
    state = bridge(layers.Concatenate(name="encoder_final_states")([forward[0], backward[0]]))  # (B, U)
    encoder = keras.Model(source, [memory, state], name="encoder")

    # === Decoder ===
    target_in = keras.Input((None,), dtype="int32", name="target_in")
    decoder_source = keras.Input((None,), dtype="int32", name="source")
    decoder_memory = keras.Input((None, 2 * units), name="memory")
    decoder_state = keras.Input((units,), name="state")
    y = layers.Embedding(target_vocabulary_size, embed_dim, name="target_token_embedding")(target_in)
    y = layers.Dropout(dropout_rate, name="target_embedding_dropout")(y)
    initial = [decoder_state] * num_states  # LSTM: the same vector starts the memory cell
    y = rnn(units, return_sequences=True, name=f"decoder_{cell}")(y, initial_state=initial)  # (B, T, U)
    query = layers.Dense(units, use_bias=False, name="attention_query")(y)
    key = layers.Dense(units, use_bias=False, name="attention_key")(decoder_memory)
    context, attention = layers.AdditiveAttention(use_scale=True, name="additive_attention")(
        [query, decoder_memory, key], mask=[None, ops.not_equal(decoder_source, 0)], return_attention_scores=True
    )  # (B, T, 2U), (B, T, S)
    h = layers.Concatenate(name="attention_concat")([y, context])
    h = layers.Dense(units, activation="tanh", name="attention_output")(h)
    h = layers.Dropout(dropout_rate, name="output_dropout")(h)
    logits = layers.Dense(target_vocabulary_size, name="logits")(h)
    decoder = keras.Model(
        [target_in, decoder_source, decoder_memory, decoder_state], [logits, attention], name="decoder"
    )

    # === Functional Model ===
    source_input = keras.Input((None,), dtype="int32", name="source")
    target_input = keras.Input((None,), dtype="int32", name="target_in")
    logits, _ = decoder([target_input, source_input, *encoder(source_input)])
    return keras.Model({"source": source_input, "target_in": target_input}, logits, name=name)


@register(kind="seq2seq")
def gru_attention(source_vocabulary_size, target_vocabulary_size, embed_dim=128, units=256, dropout_rate=0.1,
                  name="gru_attention"):
    """GRU encoder–decoder with additive attention (see `rnn_attention`)."""
    return rnn_attention(source_vocabulary_size, target_vocabulary_size, "gru", embed_dim, units, dropout_rate, name)


@register(kind="seq2seq")
def lstm_attention(source_vocabulary_size, target_vocabulary_size, embed_dim=128, units=256, dropout_rate=0.1,
                   name="lstm_attention"):
    """LSTM encoder–decoder with additive attention (see `rnn_attention`)."""
    return rnn_attention(source_vocabulary_size, target_vocabulary_size, "lstm", embed_dim, units, dropout_rate, name)
