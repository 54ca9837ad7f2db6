"""A learned extractive summarizer: one score per sentence of a document.

Token ids (B, S, T) int32 — S sentences of T tokens, id 0 pads both — → logits (B, S) float32, the
score of each sentence for the summary (padded sentences get a very low logit).

- Sentence encoder: token embedding → 1-D convolution (width 3, ReLU) → masked mean and max
  pooling over the sentence's tokens → a dense projection: one vector per sentence.
- Document context: a bidirectional GRU over the sentence vectors (padded sentences masked), so a
  sentence is scored next to its neighbours, plus a learned embedding of the sentence's position
  (the lead matters in news) and the document's mean vector.
- Scorer: a small MLP on [sentence, context, position, document] → one logit.

Close in spirit to SummaRuNNer (a sentence-level RNN scoring each sentence with content, salience
and position terms), with a convolutional sentence encoder.

References:
- [SummaRuNNer: A Recurrent Neural Network based Sequence Model for Extractive Summarization of
  Documents](https://arxiv.org/abs/1611.04230)
"""

import keras
from keras import layers
from keras import ops

from applications.registry import register

# The logit of a padded sentence: never picked.
PADDED_LOGIT = -1e4


@register(kind="extractive")
def extractive_summarizer(
    vocabulary_size,
    max_sentences=50,
    max_sentence_tokens=32,
    embed_dim=64,
    units=64,
    dropout_rate=0.1,
    name="extractive_summarizer",
):
    """Scores each sentence of a document for an extractive summary.

    Args:
        vocabulary_size: int. Token ids are in [0, vocabulary_size); 0 pads.
        max_sentences: int. Sentences per document (S). Defaults to 50.
        max_sentence_tokens: int. Tokens per sentence (T). Defaults to 32.
        embed_dim: int. Token embedding width and sentence-encoder filters. Defaults to 64.
        units: int. Width of each direction of the document GRU. Defaults to 64.
        dropout_rate: float. Dropout on embeddings and before the scorer. Defaults to 0.1.
        name: str. The model name. Defaults to "extractive_summarizer".
    """
    if max_sentences < 1 or max_sentence_tokens < 1:
        raise ValueError(
            "max_sentences and max_sentence_tokens must be >= 1. "
            f"Received: max_sentences={max_sentences}, max_sentence_tokens={max_sentence_tokens}"
        )
    tokens = keras.Input((max_sentences, max_sentence_tokens), dtype="int32", name="tokens")
    token_mask = ops.cast(ops.not_equal(tokens, 0), "float32")  # (B, S, T)
    sentence_mask = ops.greater(ops.sum(token_mask, axis=-1), 0.0)  # (B, S)

    # === Sentence encoder ===
    x = layers.Embedding(vocabulary_size, embed_dim, name="token_embedding")(tokens)  # (B, S, T, D)
    x = layers.Dropout(dropout_rate, name="embedding_dropout")(x)
    x = ops.reshape(x, (-1, max_sentence_tokens, embed_dim))  # (B*S, T, D)
    x = layers.Conv1D(embed_dim, 3, padding="same", activation="relu", name="sentence_conv")(x)
    x = ops.reshape(x, (-1, max_sentences, max_sentence_tokens, embed_dim))  # (B, S, T, D)
    weights = ops.expand_dims(token_mask, -1)  # (B, S, T, 1)
    count = ops.maximum(ops.sum(weights, axis=2), 1.0)  # (B, S, 1)
    mean = ops.sum(x * weights, axis=2) / count
    maximum = ops.max(x * weights, axis=2)  # ReLU outputs are >= 0: padding cannot win
    sentences = layers.Dense(units, activation="relu", name="sentence_projection")(
        layers.Concatenate(name="sentence_pooling")([mean, maximum])
    )  # (B, S, U)

    # === Document context ===
    context = layers.Bidirectional(layers.GRU(units, return_sequences=True, name="document_gru"),
                                   name="document_rnn")(sentences, mask=sentence_mask)  # (B, S, 2U)
    present = ops.expand_dims(ops.cast(sentence_mask, "float32"), -1)  # (B, S, 1)
    document = ops.sum(context * present, axis=1, keepdims=True) / ops.maximum(ops.sum(present, axis=1, keepdims=True), 1.0)
    document = ops.repeat(document, max_sentences, axis=1)  # (B, S, 2U)
    positions = ops.expand_dims(ops.arange(max_sentences, dtype="int32"), 0)  # (1, S)
    position = layers.Embedding(max_sentences, 16, name="position_embedding")(positions)  # (1, S, 16)
    position = position + ops.zeros_like(sentences[:, :, :1])  # (B, S, 16)

    # === Scorer ===
    h = layers.Concatenate(name="sentence_features")([sentences, context, document, position])
    h = layers.Dense(units, activation="relu", name="scorer_hidden")(h)
    h = layers.Dropout(dropout_rate, name="scorer_dropout")(h)
    logits = ops.squeeze(layers.Dense(1, name="sentence_logit")(h), -1)  # (B, S)
    logits = ops.where(sentence_mask, logits, PADDED_LOGIT)
    return keras.Model(tokens, logits, name=name)
