"""GPT-style decoders (Radford et al., 2018/2019): causal self-attention in pre-layer-norm blocks.

Tokens (B, T) int32 → logits (B, T, vocabulary_size) float32. Positions are learned (GPT-2) or
rotary (RoFormer; applied to queries and keys inside attention); the output projection is the
transposed token embedding (tied weights, keras-hub `ReversibleEmbedding`); dropout on the
embeddings, the attention weights and each residual branch.

Generation is linear in length with the KV cache: `call_with_cache(model, tokens, cache, index)`
runs only the new tokens and attends to the keys and values of the earlier ones, kept in a
tensor of shape (B, num_layers, 2, cache_length, num_heads, head_dim) (the keras-hub layout).

References:
- [Language Models are Unsupervised Multitask Learners](https://cdn.openai.com/better-language-models/language_models_are_unsupervised_multitask_learners.pdf)
- [RoFormer: Enhanced Transformer with Rotary Position Embedding](https://arxiv.org/abs/2104.09864)
- nanoGPT `model.py` (karpathy/nanoGPT), keras-hub `GPT2CausalLM.call_with_cache`
"""

import keras
import keras_hub
from keras import layers
from keras import ops

from applications.registry import register

LAYER_NORM_EPSILON = 1e-5
# Masked attention scores: large and negative, yet finite in bfloat16 (softmax gives exact 0).
MASK_VALUE = -1e9


@keras.saving.register_keras_serializable(package="applications")
class GPTBlock(layers.Layer):
    """A pre-layer-norm decoder block: x + attention(LN(x)), then x + MLP(LN(x)).

    Args:
        num_heads: int. Attention heads; the input width must divide by it.
        intermediate_dim: int. Width of the MLP's hidden layer (GELU).
        dropout_rate: float. Dropout on the attention weights and on each residual branch.
            Defaults to 0.0.
        rotary: bool. Rotate queries and keys by their position (RoPE). Defaults to False.
        rotary_max_wavelength: int. The longest RoPE wavelength. Defaults to 10000.
        **kwargs: Standard layer arguments (`name`, `dtype`, ...).
    """

    def __init__(
        self,
        num_heads,
        intermediate_dim,
        dropout_rate=0.0,
        rotary=False,
        rotary_max_wavelength=10000,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.intermediate_dim = intermediate_dim
        self.dropout_rate = dropout_rate
        self.rotary = rotary
        self.rotary_max_wavelength = rotary_max_wavelength

    def build(self, input_shape):
        dim = input_shape[-1]
        if dim % self.num_heads:
            raise ValueError(
                f"The width must divide by num_heads. Received: width={dim}, num_heads={self.num_heads}"
            )
        self.head_dim = dim // self.num_heads
        # === Layers ===
        kwargs = {"dtype": self.dtype_policy}
        self.attention_norm = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="attention_norm", **kwargs)
        self.qkv = layers.Dense(3 * dim, name="qkv", **kwargs)  # one matmul for queries, keys, values
        self.attention_output = layers.Dense(dim, name="attention_output", **kwargs)
        self.mlp_norm = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="mlp_norm", **kwargs)
        self.mlp_up = layers.Dense(self.intermediate_dim, activation="gelu", name="mlp_up", **kwargs)
        self.mlp_down = layers.Dense(dim, name="mlp_down", **kwargs)
        self.attention_dropout = layers.Dropout(self.dropout_rate, name="attention_dropout")
        self.residual_dropout = layers.Dropout(self.dropout_rate, name="residual_dropout")
        self.rotary_embedding = (
            keras_hub.layers.RotaryEmbedding(max_wavelength=self.rotary_max_wavelength, name="rotary", **kwargs)
            if self.rotary else None
        )
        for layer, shape in [
            (self.attention_norm, input_shape),
            (self.qkv, input_shape),
            (self.attention_output, input_shape),
            (self.mlp_norm, input_shape),
            (self.mlp_up, input_shape),
            (self.mlp_down, (*input_shape[:-1], self.intermediate_dim)),
        ]:
            layer.build(shape)
        self.built = True

    def call(self, x, training=None):
        return self._forward(x, None, 0, training)[0]

    def call_with_cache(self, x, cache, index):
        """Runs tokens at positions `index + [0, T)` against `cache` (B, 2, S, H, hd); returns (x, cache)."""
        return self._forward(x, cache, index, training=False)

    def _forward(self, x, cache, index, training):
        attended, cache = self._attend(self.attention_norm(x), cache, index, training)
        x = x + self.residual_dropout(attended, training=training)
        mlp = self.mlp_down(self.mlp_up(self.mlp_norm(x)))
        return x + self.residual_dropout(mlp, training=training), cache

    def _attend(self, x, cache, index, training):
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        qkv = ops.reshape(self.qkv(x), (batch, length, 3, self.num_heads, self.head_dim))
        query, key, value = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (B, T, H, hd)
        if self.rotary_embedding is not None:
            query = self.rotary_embedding(query, start_index=index)
            key = self.rotary_embedding(key, start_index=index)
        if cache is not None:
            # Write this step's keys and values at `index`, then attend to the whole cache; the
            # causal mask below hides the slots not written yet.
            start = [0, index, 0, 0]
            key = ops.slice_update(cache[:, 0], start, ops.cast(key, cache.dtype))
            value = ops.slice_update(cache[:, 1], start, ops.cast(value, cache.dtype))
            cache = ops.stack([key, value], axis=1)  # (B, 2, S, H, hd)
            key, value = ops.cast(key, query.dtype), ops.cast(value, query.dtype)
        query_positions = ops.arange(length) + index  # (T,)
        key_positions = ops.arange(ops.shape(key)[1])  # (S,)
        causal = key_positions[None, :] <= query_positions[:, None]  # (T, S)
        scores = ops.einsum("bqhd,bkhd->bhqk", query, key) * ops.cast(self.head_dim**-0.5, query.dtype)
        scores = ops.where(causal[None, None], scores, ops.cast(MASK_VALUE, scores.dtype))  # (B, H, T, S)
        weights = ops.softmax(ops.cast(scores, "float32"), axis=-1)  # softmax in float32 for bf16
        weights = self.attention_dropout(ops.cast(weights, query.dtype), training=training)
        attended = ops.einsum("bhqk,bkhd->bqhd", weights, value)  # (B, T, H, hd)
        attended = ops.reshape(attended, (batch, length, self.num_heads * self.head_dim))
        return self.attention_output(attended), cache

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "intermediate_dim": self.intermediate_dim,
                "dropout_rate": self.dropout_rate,
                "rotary": self.rotary,
                "rotary_max_wavelength": self.rotary_max_wavelength,
            }
        )
        return config


def GPT(
    vocabulary_size,
    sequence_length,
    num_layers,
    embed_dim,
    num_heads,
    intermediate_dim=None,
    dropout_rate=0.1,
    positions="learned",
    name="gpt",
):
    """A GPT-style decoder-only language model: tokens (B, T) int32 → logits (B, T, V) float32.

    Args:
        vocabulary_size: int. The number of token ids.
        sequence_length: int. The longest context (the learned position table's length).
        num_layers: int. Decoder blocks.
        embed_dim: int. Width of the token embedding and of every block.
        num_heads: int. Attention heads per block; `embed_dim` must divide by it.
        intermediate_dim: int or None. MLP hidden width. Defaults to `4 * embed_dim`.
        dropout_rate: float. Dropout on embeddings, attention weights and residual branches.
            Defaults to 0.1.
        positions: str. `"learned"` (a table added to the embeddings) or `"rotary"` (RoPE on
            queries and keys). Defaults to "learned".
        name: str. The model name. Defaults to "gpt".
    """
    if positions not in ("learned", "rotary"):
        raise ValueError(f"positions must be 'learned' or 'rotary'. Received: positions={positions!r}")
    # === Layers ===
    embedding = keras_hub.layers.ReversibleEmbedding(
        vocabulary_size,
        embed_dim,
        tie_weights=True,  # the output projection is the embedding matrix, transposed
        embeddings_initializer=keras.initializers.RandomNormal(stddev=0.02),
        reverse_dtype="float32",  # logits in float32 also under mixed_bfloat16
        name="token_embedding",
    )
    # === Functional Model ===
    tokens = keras.Input((None,), dtype="int32", name="tokens")
    x = embedding(tokens)  # (B, T, C)
    if positions == "learned":
        position_table = keras_hub.layers.PositionEmbedding(
            sequence_length,
            initializer=keras.initializers.RandomNormal(stddev=0.02),
            name="position_embedding",
        )
        x = layers.Add(name="embedding_add")([x, position_table(x)])
    x = layers.Dropout(dropout_rate, name="embedding_dropout")(x)
    for index in range(num_layers):
        x = GPTBlock(
            num_heads,
            intermediate_dim or 4 * embed_dim,
            dropout_rate=dropout_rate,
            rotary=positions == "rotary",
            name=f"block{index}",
        )(x)
    x = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="final_norm")(x)
    logits = embedding(x, reverse=True)  # (B, T, V)
    logits = layers.Activation("linear", dtype="float32", name="logits")(logits)
    return keras.Model(tokens, logits, name=name)


@register(kind="language_model")
def gpt(vocabulary_size, sequence_length, num_layers=4, embed_dim=128, num_heads=4, dropout_rate=0.1,
        positions="learned", name="gpt"):
    """A small GPT (4 blocks of width 128, 4 heads: 0.8M parameters + the embeddings)."""
    return GPT(vocabulary_size, sequence_length, num_layers, embed_dim, num_heads,
               dropout_rate=dropout_rate, positions=positions, name=name)


@register(kind="language_model")
def gpt_mini(vocabulary_size, sequence_length, num_layers=6, embed_dim=256, num_heads=8, dropout_rate=0.1,
             positions="learned", name="gpt_mini"):
    """A mid-size GPT (6 blocks of width 256, 8 heads: 4.7M parameters + the embeddings)."""
    return GPT(vocabulary_size, sequence_length, num_layers, embed_dim, num_heads,
               dropout_rate=dropout_rate, positions=positions, name=name)


# === Generation with a KV cache ===


def supports(model):
    """Whether `model` is a GPT of this module (it has `GPTBlock`s and a token embedding)."""
    return any(isinstance(layer, GPTBlock) for layer in model.layers)


def _blocks(model):
    return [layer for layer in model.layers if isinstance(layer, GPTBlock)]


def initial_cache(model, batch_size, length):
    """Zeros of shape (B, num_layers, 2, length, num_heads, head_dim) in the compute dtype."""
    blocks = _blocks(model)
    block = blocks[0]
    return ops.zeros(
        (batch_size, len(blocks), 2, length, block.num_heads, block.head_dim),
        dtype=block.compute_dtype,
    )


def call_with_cache(model, tokens, cache, index):
    """Logits of `tokens` (B, T) at positions `index + [0, T)`, reusing the cached keys and values.

    Args:
        model: keras.Model. A model built by `GPT`.
        tokens: int tensor (B, T). The new tokens.
        cache: tensor (B, num_layers, 2, S, H, hd). Keys and values of positions `[0, index)`.
        index: int scalar. The position of `tokens[:, 0]`; `index + T <= S`.

    Returns:
        `(logits, cache)`: float32 logits (B, T, V) and the cache with positions up to `index + T`.
    """
    embedding = model.get_layer("token_embedding")
    x = embedding(tokens)  # (B, T, C)
    try:
        position_table = model.get_layer("position_embedding")
    except ValueError:  # rotary positions live inside the blocks
        position_table = None
    if position_table is not None:
        x = x + position_table(x, start_index=index)
    caches = []
    for layer_index, block in enumerate(_blocks(model)):
        x, layer_cache = block.call_with_cache(x, cache[:, layer_index], index)
        caches.append(layer_cache)
    x = model.get_layer("final_norm")(x)
    logits = ops.cast(embedding(x, reverse=True), "float32")
    return logits, ops.stack(caches, axis=1)
