"""Sentence classifiers on token ids: TextCNN (Kim, 2014) and bidirectional RNNs with attention pooling.

Token ids (B, T) int32, 0 = padding → logits (B, num_classes) float32 (softmax with
`classifier_activation="softmax"`).

- TextCNN: an embedding, parallel 1-D convolutions of several widths (ReLU), max-over-time
  pooling of each feature map, concatenation, dropout and a dense layer whose weight vectors
  have a max-norm constraint (Kim's l2 constraint, s = 3). Padding takes part in the convolution
  and the max, as in the paper.
- BiLSTM / BiGRU: an embedding with padding mask, bidirectional recurrent layers, and additive
  attention pooling over the time steps (Yang et al., 2016: u = tanh(W h + b), a = softmax(v·u),
  sum of a·h), so padded steps get no weight.

References:
- [Convolutional Neural Networks for Sentence Classification](https://arxiv.org/abs/1408.5882)
- [Hierarchical Attention Networks for Document Classification](https://aclanthology.org/N16-1174/)
"""

import keras
from keras import layers
from keras import ops

from applications.registry import register

# Masked attention scores: very negative yet finite, so an all-padding row gives uniform weights.
MASK_VALUE = -1e9


@keras.saving.register_keras_serializable(package="applications")
class AttentionPooling(layers.Layer):
    """Additive attention over time: (B, T, D) and a mask (B, T) → (B, D).

    Args:
        units: int. Width of the attention's hidden layer. Defaults to 64.
        return_attention: bool. Also return the weights (B, T). Defaults to False.
        **kwargs: Standard layer arguments (`name`, `dtype`, ...).
    """

    def __init__(self, units=64, return_attention=False, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        self.return_attention = return_attention
        self.supports_masking = True

    def build(self, input_shape):
        # === Layers ===
        self.hidden = layers.Dense(self.units, activation="tanh", name="hidden", dtype=self.dtype_policy)
        self.score = layers.Dense(1, use_bias=False, name="score", dtype=self.dtype_policy)
        self.hidden.build(input_shape)
        self.score.build((*input_shape[:-1], self.units))
        self.built = True

    def call(self, x, mask=None):
        scores = ops.squeeze(self.score(self.hidden(x)), axis=-1)  # (B, T)
        scores = ops.cast(scores, "float32")
        if mask is not None:
            scores = ops.where(mask, scores, MASK_VALUE)
        weights = ops.softmax(scores, axis=-1)  # (B, T), float32 for bfloat16 policies
        pooled = ops.einsum("bt,btd->bd", ops.cast(weights, x.dtype), x)  # (B, D)
        return (pooled, weights) if self.return_attention else pooled

    def compute_mask(self, inputs, mask=None):
        return None

    def compute_output_shape(self, input_shape):
        pooled = (input_shape[0], input_shape[-1])
        return (pooled, input_shape[:2]) if self.return_attention else pooled

    def get_config(self):
        config = super().get_config()
        config.update({"units": self.units, "return_attention": self.return_attention})
        return config


def _check(vocabulary_size, sequence_length, num_classes):
    if vocabulary_size < 2:
        raise ValueError(f"vocabulary_size must be >= 2. Received: vocabulary_size={vocabulary_size}")
    if sequence_length < 1:
        raise ValueError(f"sequence_length must be >= 1. Received: sequence_length={sequence_length}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2. Received: num_classes={num_classes}")


def _classifier_head(x, num_classes, dropout_rate, classifier_activation, name, max_norm=None):
    x = layers.Dropout(dropout_rate, name=f"{name}_dropout")(x)
    constraint = keras.constraints.MaxNorm(max_norm, axis=0) if max_norm else None
    return layers.Dense(
        num_classes, activation=classifier_activation, kernel_constraint=constraint, dtype="float32",
        name=f"{name}_predictions",
    )(x)


def TextCNN(
    vocabulary_size,
    sequence_length,
    num_classes,
    embed_dim=300,
    filter_sizes=(3, 4, 5),
    num_filters=100,
    dropout_rate=0.5,
    max_norm=3.0,
    classifier_activation=None,
    name="text_cnn",
):
    """Kim's sentence CNN: token ids (B, T) → logits (B, num_classes).

    Args:
        vocabulary_size: int. The number of token ids (0 is padding).
        sequence_length: int. Tokens per sentence (T); must be >= the widest filter.
        num_classes: int. The number of classes.
        embed_dim: int. Width of the (randomly initialized) word embedding. Defaults to 300.
        filter_sizes: tuple of int. Convolution widths, one feature map bank each. Defaults to (3, 4, 5).
        num_filters: int. Feature maps per width. Defaults to 100.
        dropout_rate: float. Dropout on the pooled features. Defaults to 0.5.
        max_norm: float or None. Max-norm of each output weight vector (Kim: 3). Defaults to 3.0.
        classifier_activation: str or None. None gives logits. Defaults to None.
        name: str. The model name. Defaults to "text_cnn".
    """
    _check(vocabulary_size, sequence_length, num_classes)
    if max(filter_sizes) > sequence_length:
        raise ValueError(
            f"The widest filter must fit in sequence_length. Received: filter_sizes={tuple(filter_sizes)}, "
            f"sequence_length={sequence_length}"
        )
    tokens = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    x = layers.Embedding(vocabulary_size, embed_dim, name=f"{name}_embedding")(tokens)  # (B, T, E)
    pooled = []
    for width in filter_sizes:
        maps = layers.Conv1D(num_filters, width, activation="relu", name=f"{name}_conv{width}")(x)  # (B, T-w+1, F)
        pooled.append(layers.GlobalMaxPooling1D(name=f"{name}_maxpool{width}")(maps))  # (B, F)
    x = layers.Concatenate(name=f"{name}_features")(pooled) if len(pooled) > 1 else pooled[0]
    outputs = _classifier_head(x, num_classes, dropout_rate, classifier_activation, name, max_norm)
    return keras.Model(tokens, outputs, name=name)


def RecurrentAttentionClassifier(
    vocabulary_size,
    sequence_length,
    num_classes,
    cell="lstm",
    embed_dim=128,
    units=64,
    num_layers=1,
    attention_units=64,
    dropout_rate=0.3,
    classifier_activation=None,
    name="bilstm_attention",
):
    """Bidirectional LSTM/GRU layers and attention pooling: token ids (B, T) → logits (B, num_classes).

    Args:
        vocabulary_size: int. The number of token ids (0 is padding, masked throughout).
        sequence_length: int. Tokens per sentence (T).
        num_classes: int. The number of classes.
        cell: str. `lstm` or `gru`. Defaults to "lstm".
        embed_dim: int. Width of the word embedding. Defaults to 128.
        units: int. Units per direction of every recurrent layer. Defaults to 64.
        num_layers: int. Stacked bidirectional layers. Defaults to 1.
        attention_units: int. Width of the attention's hidden layer. Defaults to 64.
        dropout_rate: float. Dropout on the embeddings, between layers and on the pooled vector.
            Defaults to 0.3.
        classifier_activation: str or None. None gives logits. Defaults to None.
        name: str. The model name. Defaults to "bilstm_attention".
    """
    _check(vocabulary_size, sequence_length, num_classes)
    recurrent = {"lstm": layers.LSTM, "gru": layers.GRU}.get(cell)
    if recurrent is None:
        raise ValueError(f"cell must be lstm or gru. Received: cell={cell!r}")
    tokens = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    x = layers.Embedding(vocabulary_size, embed_dim, mask_zero=True, name=f"{name}_embedding")(tokens)
    x = layers.Dropout(dropout_rate, name=f"{name}_embedding_dropout")(x)  # (B, T, E)
    for index in range(num_layers):
        x = layers.Bidirectional(
            recurrent(units, return_sequences=True, name=f"{name}_{cell}{index}"), name=f"{name}_bi{cell}{index}"
        )(x)  # (B, T, 2U), mask carried along
        if index < num_layers - 1:
            x = layers.Dropout(dropout_rate, name=f"{name}_{cell}{index}_dropout")(x)
    x = AttentionPooling(attention_units, name=f"{name}_attention")(x)  # (B, 2U)
    outputs = _classifier_head(x, num_classes, dropout_rate, classifier_activation, name)
    return keras.Model(tokens, outputs, name=name)


@register
def text_cnn(vocabulary_size, sequence_length, num_classes=2, embed_dim=300, num_filters=100, dropout_rate=0.5,
             classifier_activation=None, name="text_cnn"):
    """CNN-rand of Kim (2014): widths 3, 4, 5 with 100 maps each, dropout 0.5, max-norm 3.

    Args:
        vocabulary_size: int. The number of token ids (0 is padding).
        sequence_length: int. Tokens per sentence.
        num_classes: int. The number of classes. Defaults to 2.
        embed_dim: int. Word embedding width. Defaults to 300.
        num_filters: int. Feature maps per width. Defaults to 100.
        dropout_rate: float. Dropout before the output layer. Defaults to 0.5.
        classifier_activation: str or None. None gives logits. Defaults to None.
        name: str. The model name. Defaults to "text_cnn".
    """
    return TextCNN(vocabulary_size, sequence_length, num_classes, embed_dim=embed_dim, num_filters=num_filters,
                   dropout_rate=dropout_rate, classifier_activation=classifier_activation, name=name)


@register
def bilstm_attention(vocabulary_size, sequence_length, num_classes=2, embed_dim=128, units=64, num_layers=1,
                     dropout_rate=0.3, classifier_activation=None, name="bilstm_attention"):
    """A bidirectional LSTM (64 units each way) with attention pooling.

    Args:
        vocabulary_size: int. The number of token ids (0 is padding).
        sequence_length: int. Tokens per sentence.
        num_classes: int. The number of classes. Defaults to 2.
        embed_dim: int. Word embedding width. Defaults to 128.
        units: int. LSTM units per direction. Defaults to 64.
        num_layers: int. Stacked bidirectional layers. Defaults to 1.
        dropout_rate: float. Dropout on embeddings and the pooled vector. Defaults to 0.3.
        classifier_activation: str or None. None gives logits. Defaults to None.
        name: str. The model name. Defaults to "bilstm_attention".
    """
    return RecurrentAttentionClassifier(vocabulary_size, sequence_length, num_classes, "lstm", embed_dim, units,
                                        num_layers, dropout_rate=dropout_rate,
                                        classifier_activation=classifier_activation, name=name)


@register
def bigru_attention(vocabulary_size, sequence_length, num_classes=2, embed_dim=128, units=64, num_layers=1,
                    dropout_rate=0.3, classifier_activation=None, name="bigru_attention"):
    """A bidirectional GRU (64 units each way) with attention pooling.

    Args:
        vocabulary_size: int. The number of token ids (0 is padding).
        sequence_length: int. Tokens per sentence.
        num_classes: int. The number of classes. Defaults to 2.
        embed_dim: int. Word embedding width. Defaults to 128.
        units: int. GRU units per direction. Defaults to 64.
        num_layers: int. Stacked bidirectional layers. Defaults to 1.
        dropout_rate: float. Dropout on embeddings and the pooled vector. Defaults to 0.3.
        classifier_activation: str or None. None gives logits. Defaults to None.
        name: str. The model name. Defaults to "bigru_attention".
    """
    return RecurrentAttentionClassifier(vocabulary_size, sequence_length, num_classes, "gru", embed_dim, units,
                                        num_layers, dropout_rate=dropout_rate,
                                        classifier_activation=classifier_activation, name=name)
