"""Transformer encoder–decoder (Vaswani et al., 2017) for sequence to sequence, pre-layer-norm.

Source tokens (B, S) and target tokens shifted right (B, T), int32, id 0 = padding → logits
(B, T, target_vocabulary_size) float32. Learned positions (keras-hub `PositionEmbedding`); the
decoder's output projection is its transposed token embedding (keras-hub `ReversibleEmbedding`).

The model is two nested functional models, so decoding can run them apart:
- `encoder`: source (B, S) → memory (B, S, D).
- `decoder`: [target_in (B, T), source (B, S), memory (B, S, D)] → [logits (B, T, V), attention
  (B, T, S): the last block's cross-attention, averaged over heads, for heat maps].
The blocks are written out (not keras-hub's `TransformerDecoder`) to return the cross-attention
weights; `keras.layers.MultiHeadAttention` does the attention.

References:
- [Attention Is All You Need](https://arxiv.org/abs/1706.03762)
- [On Layer Normalization in the Transformer Architecture](https://arxiv.org/abs/2002.04745) (pre-LN)
- keras-io `nlp/neural_machine_translation_with_transformer.py`
"""

import keras
import keras_hub
from keras import layers
from keras import ops

from applications.registry import register

LAYER_NORM_EPSILON = 1e-5


def source_attention_mask(source):
    """(B, S) token ids → (B, 1, S) bool: True where the source is not padding."""
    return ops.expand_dims(ops.not_equal(source, 0), 1)


def feed_forward(x, intermediate_dim, dropout_rate, name):
    width = x.shape[-1]
    h = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"{name}_mlp_norm")(x)
    h = layers.Dense(intermediate_dim, activation="gelu", name=f"{name}_mlp_up")(h)
    h = layers.Dense(width, name=f"{name}_mlp_down")(h)
    h = layers.Dropout(dropout_rate, name=f"{name}_mlp_dropout")(h)
    return layers.Add(name=f"{name}_mlp_add")([x, h])


def encoder_block(x, mask, num_heads, intermediate_dim, dropout_rate, name):
    """x + self-attention(LN(x)) over the unpadded source, then x + MLP(LN(x)). x: (B, S, D)."""
    width = x.shape[-1]
    h = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"{name}_attention_norm")(x)
    h = layers.MultiHeadAttention(
        num_heads, width // num_heads, dropout=dropout_rate, name=f"{name}_attention"
    )(h, h, attention_mask=mask)
    h = layers.Dropout(dropout_rate, name=f"{name}_attention_dropout")(h)
    x = layers.Add(name=f"{name}_attention_add")([x, h])
    return feed_forward(x, intermediate_dim, dropout_rate, name)


def decoder_block(x, memory, mask, num_heads, intermediate_dim, dropout_rate, name):
    """Causal self-attention, cross-attention to `memory`, MLP; returns (x (B, T, D), scores (B, H, T, S))."""
    width = x.shape[-1]
    h = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"{name}_self_norm")(x)
    h = layers.MultiHeadAttention(
        num_heads, width // num_heads, dropout=dropout_rate, name=f"{name}_self_attention"
    )(h, h, use_causal_mask=True)
    h = layers.Dropout(dropout_rate, name=f"{name}_self_dropout")(h)
    x = layers.Add(name=f"{name}_self_add")([x, h])
    h = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name=f"{name}_cross_norm")(x)
    h, scores = layers.MultiHeadAttention(
        num_heads, width // num_heads, dropout=dropout_rate, name=f"{name}_cross_attention"
    )(h, memory, attention_mask=mask, return_attention_scores=True)
    h = layers.Dropout(dropout_rate, name=f"{name}_cross_dropout")(h)
    x = layers.Add(name=f"{name}_cross_add")([x, h])
    return feed_forward(x, intermediate_dim, dropout_rate, name), scores


@register(kind="seq2seq")
def transformer_seq2seq(
    source_vocabulary_size,
    target_vocabulary_size,
    max_source_length=128,
    max_target_length=128,
    num_layers=3,
    embed_dim=256,
    num_heads=4,
    intermediate_dim=0,
    dropout_rate=0.1,
    name="transformer_seq2seq",
):
    """A Transformer encoder–decoder.

    Args:
        source_vocabulary_size: int. Source token ids are in [0, source_vocabulary_size); 0 pads.
        target_vocabulary_size: int. Target token ids and logits.
        max_source_length: int. The longest source (positions learned). Defaults to 128.
        max_target_length: int. The longest decoder input (start token included). Defaults to 128.
        num_layers: int. Encoder blocks, and as many decoder blocks. Defaults to 3.
        embed_dim: int. The model width; divides by `num_heads`. Defaults to 256.
        num_heads: int. Attention heads. Defaults to 4.
        intermediate_dim: int. MLP hidden width (0: 4 x embed_dim). Defaults to 0.
        dropout_rate: float. Dropout on embeddings, attention weights and residual branches.
            Defaults to 0.1.
        name: str. The model name. Defaults to "transformer_seq2seq".
    """
    if embed_dim % num_heads:
        raise ValueError(f"embed_dim must divide by num_heads. Received: embed_dim={embed_dim}, num_heads={num_heads}")
    intermediate_dim = intermediate_dim or 4 * embed_dim

    # === Encoder ===
    source = keras.Input((None,), dtype="int32", name="source")
    mask = source_attention_mask(source)  # (B, 1, S)
    x = layers.Embedding(source_vocabulary_size, embed_dim, name="source_token_embedding")(source)
    x = layers.Add(name="source_embedding_add")(
        [x, keras_hub.layers.PositionEmbedding(max_source_length, name="source_position_embedding")(x)]
    )
    x = layers.Dropout(dropout_rate, name="source_embedding_dropout")(x)
    for index in range(num_layers):
        x = encoder_block(x, mask, num_heads, intermediate_dim, dropout_rate, f"encoder_block{index}")
    memory = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="encoder_norm")(x)  # (B, S, D)
    encoder = keras.Model(source, memory, name="encoder")

    # === Decoder ===
    target_in = keras.Input((None,), dtype="int32", name="target_in")
    decoder_source = keras.Input((None,), dtype="int32", name="source")
    decoder_memory = keras.Input((None, embed_dim), name="memory")
    token_embedding = keras_hub.layers.ReversibleEmbedding(
        target_vocabulary_size, embed_dim, name="target_token_embedding"
    )
    y = token_embedding(target_in)
    y = layers.Add(name="target_embedding_add")(
        [y, keras_hub.layers.PositionEmbedding(max_target_length, name="target_position_embedding")(y)]
    )
    y = layers.Dropout(dropout_rate, name="target_embedding_dropout")(y)
    cross_mask = source_attention_mask(decoder_source)
    for index in range(num_layers):
        y, scores = decoder_block(
            y, decoder_memory, cross_mask, num_heads, intermediate_dim, dropout_rate, f"decoder_block{index}"
        )
    y = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="decoder_norm")(y)
    logits = token_embedding(y, reverse=True)  # (B, T, V), tied to the target embedding
    attention = ops.mean(scores, axis=1)  # (B, T, S)
    decoder = keras.Model([target_in, decoder_source, decoder_memory], [logits, attention], name="decoder")

    # === Functional Model ===
    source_input = keras.Input((None,), dtype="int32", name="source")
    target_input = keras.Input((None,), dtype="int32", name="target_in")
    logits, _ = decoder([target_input, source_input, encoder(source_input)])
    return keras.Model({"source": source_input, "target_in": target_input}, logits, name=name)


def supports(model):
    """True for a model with the `encoder` / `decoder` parts decoding needs."""
    names = {layer.name for layer in model.layers}
    return {"encoder", "decoder"} <= names
