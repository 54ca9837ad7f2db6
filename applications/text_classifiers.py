"""Sentence classifiers on token ids: TextCNN (Kim, 2014), bidirectional RNNs with attention pooling,
and a Naive-Bayes-weighted bag of n-grams (NBSVM-style, Wang & Manning, 2012).

Token ids (B, T) int32, 0 = padding → logits (B, num_classes) float32 (softmax with
`classifier_activation="softmax"`).

- TextCNN: an embedding, parallel 1-D convolutions of several widths (ReLU), max-over-time
  pooling of each feature map, concatenation, dropout and a dense layer whose weight vectors
  have a max-norm constraint (Kim's l2 constraint, s = 3). Padding takes part in the convolution
  and the max, as in the paper.
- BiLSTM / BiGRU: an embedding with padding mask, bidirectional recurrent layers, and additive
  attention pooling over the time steps (Yang et al., 2016: u = tanh(W h + b), a = softmax(v·u),
  sum of a·h), so padded steps get no weight.
- NB bag of n-grams: the ids are an unordered bag (word and character n-gram ids, say); each
  distinct id counts once (binary features). A linear softmax layer whose weight for id j and
  class c is scaled by a fixed Naive-Bayes log-count ratio r[j, c] = log(p_c[j] / |p_c|) −
  log(q_c[j] / |q_c|), with p_c / q_c the smoothed counts of sentences holding j in class c / in
  the other classes. The ratios come from the training split (`NaiveBayesBag.adapt`), the
  weights from gradient descent: the logistic-regression form of NBSVM.

References:
- [Convolutional Neural Networks for Sentence Classification](https://arxiv.org/abs/1408.5882)
- [Hierarchical Attention Networks for Document Classification](https://aclanthology.org/N16-1174/)
- [Baselines and Bigrams: Simple, Good Sentiment and Topic Classification](https://aclanthology.org/P12-2018/)
"""

import keras
import numpy as np
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


def distinct_ids(ids):
    """Each row's ids sorted (B, T), a repeat replaced by 0 (padding): a binary bag of ids. NumPy or tensor."""
    if isinstance(ids, np.ndarray):
        ordered = np.sort(ids, axis=-1)
        repeat = np.concatenate([np.zeros_like(ordered[:, :1], bool), ordered[:, 1:] == ordered[:, :-1]], axis=-1)
        return np.where(repeat, 0, ordered)
    ordered = ops.sort(ids, axis=-1)
    repeat = ops.concatenate([ops.zeros_like(ordered[:, :1], "bool"), ops.equal(ordered[:, 1:], ordered[:, :-1])],
                             axis=-1)
    return ops.where(repeat, 0, ordered)


@keras.saving.register_keras_serializable(package="applications")
class NaiveBayesBag(layers.Layer):
    """Binary bag of ids (B, T) int, 0 = padding, any order → logits (B, num_classes), NB-scaled weights.

    logits[b, c] = bias[c] + sum over the distinct ids j of row b of kernel[j, c] * ratios[j, c].
    `ratios` is not trained: `adapt` sets it from labelled bags (ones until then, which makes the
    layer plain logistic regression on binary features).

    Args:
        vocabulary_size: int. The number of ids (0 is padding and never counts).
        num_classes: int. The number of classes.
        l2: float. L2 penalty on `kernel` (summed squares times l2). Defaults to 0.0.
        dropout_rate: float. In training, each (sentence, id) feature is dropped with this rate.
            Defaults to 0.0.
        smoothing: float. The count added to every id and class in `adapt` (Laplace). Defaults to 1.0.
        **kwargs: Standard layer arguments (`name`, `dtype`, ...).
    """

    def __init__(self, vocabulary_size, num_classes, l2=0.0, dropout_rate=0.0, smoothing=1.0, **kwargs):
        super().__init__(**kwargs)
        self.vocabulary_size = vocabulary_size
        self.num_classes = num_classes
        self.l2 = l2
        self.dropout_rate = dropout_rate
        self.smoothing = smoothing
        self.dropout = layers.Dropout(dropout_rate, dtype=self.dtype_policy)

    def build(self, input_shape):
        # === Weights ===
        shape = (self.vocabulary_size, self.num_classes)
        regularizer = keras.regularizers.L2(self.l2) if self.l2 else None
        self.kernel = self.add_weight(shape=shape, initializer="zeros", regularizer=regularizer, name="kernel")
        self.ratios = self.add_weight(shape=shape, initializer="ones", trainable=False, name="ratios")
        self.bias = self.add_weight(shape=(self.num_classes,), initializer="zeros", name="bias")
        self.built = True

    def adapt(self, ids, labels):
        """Sets `ratios` (one class against the rest) from bags (N, T) int and their class ids (N,), NumPy."""
        ids, labels = distinct_ids(np.asarray(ids)), np.asarray(labels)
        if not self.built:
            self.build(ids.shape)
        counts = np.zeros((self.vocabulary_size, self.num_classes))
        for index in range(self.num_classes):
            held = ids[labels == index]
            counts[:, index] = np.bincount(held[held > 0], minlength=self.vocabulary_size)[: self.vocabulary_size]
        inside = self.smoothing + counts
        outside = self.smoothing + counts.sum(axis=1, keepdims=True) - counts
        ratios = np.log(inside / inside.sum(axis=0)) - np.log(outside / outside.sum(axis=0))
        ratios[0] = 0.0
        self.ratios.assign(ratios.astype(self.ratios.dtype))

    def call(self, ids, training=None):
        ids = distinct_ids(ops.cast(ids, "int32"))  # (B, T)
        present = ops.expand_dims(ops.cast(ops.greater(ids, 0), self.compute_dtype), -1)  # (B, T, 1)
        present = self.dropout(present, training=training)
        weights = ops.take(self.kernel, ids, axis=0) * ops.take(self.ratios, ids, axis=0)  # (B, T, C)
        return ops.sum(ops.cast(weights, self.compute_dtype) * present, axis=1) + ops.cast(self.bias, self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.num_classes)

    def get_config(self):
        config = super().get_config()
        config.update({"vocabulary_size": self.vocabulary_size, "num_classes": self.num_classes, "l2": self.l2,
                       "dropout_rate": self.dropout_rate, "smoothing": self.smoothing})
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


@register(kind="sentence_classifier")
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


@register(kind="sentence_classifier")
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


@register(kind="sentence_classifier")
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


@register(kind="sentence_classifier")
def nb_ngrams(vocabulary_size, sequence_length=None, num_classes=2, l2=0.0, dropout_rate=0.0,
              classifier_activation=None, name="nb_ngrams"):
    """NB-weighted logistic regression on a binary bag of n-gram ids (NBSVM's LR form).

    The ids are read as an unordered bag; the input length is free (each batch its own). Call
    the `NaiveBayesBag` layer's `adapt` with the training bags and labels before training.

    Args:
        vocabulary_size: int. The number of n-gram ids (0 is padding).
        sequence_length: int or None. Bag length if fixed; None (or any value) lets it vary. Defaults to None.
        num_classes: int. The number of classes. Defaults to 2.
        l2: float. L2 penalty on the weights. Defaults to 0.0 (few epochs from zero weights regularize).
        dropout_rate: float. Feature dropout in training. Defaults to 0.0.
        classifier_activation: str or None. None gives logits. Defaults to None.
        name: str. The model name. Defaults to "nb_ngrams".
    """
    _check(vocabulary_size, sequence_length or 1, num_classes)
    ids = keras.Input((None,), dtype="int32", name="token_ids")
    outputs = NaiveBayesBag(vocabulary_size, num_classes, l2=l2, dropout_rate=dropout_rate, dtype="float32",
                            name=f"{name}_bag")(ids)
    if classifier_activation:
        outputs = layers.Activation(classifier_activation, dtype="float32", name=f"{name}_predictions")(outputs)
    return keras.Model(ids, outputs, name=name)
