"""A small BERT-style encoder (Devlin et al., 2019): a sentence classifier and a masked-LM model on one encoder.

Token ids (B, T) int32, 0 = padding. The encoder prepends a learned `[CLS]` vector, adds learned
positions, and runs pre-layer-norm Transformer blocks (keras-hub `TransformerEncoder`) with a
padding mask: (B, T) → (B, T + 1, D), position 0 being `[CLS]`.

- `bert_tiny` / `bert_mini` (registered): encoder → `[CLS]` state → dropout → dense logits
  (B, num_classes). Sizes of BERT-Tiny (2 × 128) and BERT-Mini (4 × 256) (Turc et al., 2019).
- `masked_lm(classifier_or_encoder, ...)`: the masked-language-model head on the *same* encoder
  layers (keras-hub `MaskedLMHead`, tied to the token embedding): `(token_ids (B, T),
  mask_positions (B, P))` → logits (B, P, vocabulary_size). Training it updates the classifier's
  encoder, which is how self-supervised pretraining on the task's own text works.

References:
- [BERT: Pre-training of Deep Bidirectional Transformers](https://arxiv.org/abs/1810.04805)
- [Well-Read Students Learn Better](https://arxiv.org/abs/1908.08962)
"""

import keras
import keras_hub
from keras import layers
from keras import ops

from applications.registry import register

LAYER_NORM_EPSILON = 1e-5
ENCODER_NAME = "bert_encoder"


@keras.saving.register_keras_serializable(package="applications")
class ClassToken(layers.Layer):
    """Prepends one learned vector to a sequence: (B, T, D) → (B, T + 1, D).

    Args:
        **kwargs: Standard layer arguments (`name`, `dtype`, ...).
    """

    def build(self, input_shape):
        self.token = self.add_weight(shape=(1, 1, input_shape[-1]), initializer="truncated_normal", name="token")
        self.built = True

    def call(self, x):
        batch = ops.shape(x)[0]
        token = ops.broadcast_to(ops.cast(self.token, x.dtype), (batch, 1, ops.shape(x)[-1]))
        return ops.concatenate([token, x], axis=1)

    def compute_output_shape(self, input_shape):
        length = None if input_shape[1] is None else input_shape[1] + 1
        return (input_shape[0], length, input_shape[2])


def BERTEncoder(vocabulary_size, sequence_length, num_layers=2, embed_dim=128, num_heads=2, intermediate_dim=None,
                dropout_rate=0.1, name=ENCODER_NAME):
    """Token ids (B, T) → hidden states (B, T + 1, D), `[CLS]` first.

    Args:
        vocabulary_size: int. The number of token ids (0 is padding).
        sequence_length: int. Tokens per sentence (T).
        num_layers: int. Transformer blocks. Defaults to 2.
        embed_dim: int. Hidden width D; must divide by `num_heads`. Defaults to 128.
        num_heads: int. Attention heads. Defaults to 2.
        intermediate_dim: int or None. Feed-forward width (None: 4 × D). Defaults to None.
        dropout_rate: float. Dropout on embeddings, attention and residual branches. Defaults to 0.1.
        name: str. The model name. Defaults to "bert_encoder".
    """
    if embed_dim % num_heads:
        raise ValueError(f"embed_dim must divide by num_heads. Received: embed_dim={embed_dim}, num_heads={num_heads}")
    tokens = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    embedding = keras_hub.layers.ReversibleEmbedding(vocabulary_size, embed_dim, name="token_embedding")
    x = ClassToken(name="cls_token")(embedding(tokens))  # (B, T + 1, D)
    x = x + keras_hub.layers.PositionEmbedding(sequence_length + 1, name="position_embedding")(x)
    x = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="embedding_norm")(x)
    x = layers.Dropout(dropout_rate, name="embedding_dropout")(x)
    # [CLS] always attends; padding (id 0) is never attended to.
    padding_mask = ops.concatenate([ops.ones_like(tokens[:, :1], dtype="bool"), ops.not_equal(tokens, 0)], axis=1)
    for index in range(num_layers):
        x = keras_hub.layers.TransformerEncoder(
            intermediate_dim or 4 * embed_dim, num_heads, dropout=dropout_rate, activation="gelu",
            layer_norm_epsilon=LAYER_NORM_EPSILON, normalize_first=True, name=f"block{index}",
        )(x, padding_mask=padding_mask)
    x = layers.LayerNormalization(epsilon=LAYER_NORM_EPSILON, name="final_norm")(x)  # pre-LN needs a last norm
    return keras.Model(tokens, x, name=name)


def BERTClassifier(vocabulary_size, sequence_length, num_classes, num_layers=2, embed_dim=128, num_heads=2,
                   intermediate_dim=None, dropout_rate=0.1, classifier_activation=None, name="bert_classifier"):
    """A BERT encoder and a classifier on its `[CLS]` state: token ids (B, T) → logits (B, num_classes).

    Args:
        vocabulary_size: int. The number of token ids (0 is padding).
        sequence_length: int. Tokens per sentence.
        num_classes: int. The number of classes.
        num_layers: int. Transformer blocks. Defaults to 2.
        embed_dim: int. Hidden width. Defaults to 128.
        num_heads: int. Attention heads. Defaults to 2.
        intermediate_dim: int or None. Feed-forward width (None: 4 × embed_dim). Defaults to None.
        dropout_rate: float. Dropout in the encoder and before the output layer. Defaults to 0.1.
        classifier_activation: str or None. None gives logits. Defaults to None.
        name: str. The model name. Defaults to "bert_classifier".
    """
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2. Received: num_classes={num_classes}")
    encoder = BERTEncoder(vocabulary_size, sequence_length, num_layers, embed_dim, num_heads, intermediate_dim,
                          dropout_rate)
    tokens = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    cls = encoder(tokens)[:, 0]  # (B, D)
    x = layers.Dense(embed_dim, activation="tanh", name=f"{name}_pooler")(cls)
    x = layers.Dropout(dropout_rate, name=f"{name}_dropout")(x)
    outputs = layers.Dense(num_classes, activation=classifier_activation, dtype="float32",
                           name=f"{name}_predictions")(x)
    return keras.Model(tokens, outputs, name=name)


def encoder_of(model):
    """The BERT encoder inside a classifier (or the encoder itself)."""
    if model.name == ENCODER_NAME:
        return model
    for layer in model.layers:
        if layer.name == ENCODER_NAME:
            return layer
    raise ValueError(f"{model.name} has no BERT encoder (a layer named {ENCODER_NAME}).")


def supports(model):
    """Whether `model` holds a BERT encoder (so it can be pretrained as a masked LM)."""
    return any(layer.name == ENCODER_NAME for layer in model.layers) or model.name == ENCODER_NAME


def masked_lm(model, max_predictions, name="bert_masked_lm"):
    """A masked-LM model on the encoder of `model` (shared layers, tied output embedding).

    Args:
        model: keras.Model. A BERT classifier or encoder.
        max_predictions: int. Masked positions per sentence (P).
        name: str. The model name. Defaults to "bert_masked_lm".

    Returns:
        A `keras.Model` `(token_ids (B, T), mask_positions (B, P))` → logits (B, P, V) float32.
    """
    encoder = encoder_of(model)
    embedding = encoder.get_layer("token_embedding")
    sequence_length = encoder.inputs[0].shape[1]
    tokens = keras.Input((sequence_length,), dtype="int32", name="token_ids")
    positions = keras.Input((max_predictions,), dtype="int32", name="mask_positions")
    hidden = encoder(tokens)[:, 1:]  # (B, T, D): drop [CLS]
    logits = keras_hub.layers.MaskedLMHead(
        vocabulary_size=embedding.input_dim, token_embedding=embedding, activation=None, dtype="float32",
        name="mlm_head",
    )(hidden, mask_positions=positions)  # (B, P, V)
    return keras.Model([tokens, positions], logits, name=name)


@register(kind="sentence_classifier")
def bert_tiny(vocabulary_size, sequence_length, num_classes=2, num_layers=2, embed_dim=128, num_heads=2,
              dropout_rate=0.1, classifier_activation=None, name="bert_tiny"):
    """BERT-Tiny's size: 2 blocks of width 128, 2 heads, feed-forward 512.

    Args:
        vocabulary_size: int. The number of token ids (0 is padding).
        sequence_length: int. Tokens per sentence.
        num_classes: int. The number of classes. Defaults to 2.
        num_layers: int. Transformer blocks. Defaults to 2.
        embed_dim: int. Hidden width. Defaults to 128.
        num_heads: int. Attention heads. Defaults to 2.
        dropout_rate: float. Dropout throughout. Defaults to 0.1.
        classifier_activation: str or None. None gives logits. Defaults to None.
        name: str. The model name. Defaults to "bert_tiny".
    """
    return BERTClassifier(vocabulary_size, sequence_length, num_classes, num_layers, embed_dim, num_heads,
                          dropout_rate=dropout_rate, classifier_activation=classifier_activation, name=name)


@register(kind="sentence_classifier")
def bert_mini(vocabulary_size, sequence_length, num_classes=2, num_layers=4, embed_dim=256, num_heads=4,
              dropout_rate=0.1, classifier_activation=None, name="bert_mini"):
    """BERT-Mini's size: 4 blocks of width 256, 4 heads, feed-forward 1024.

    Args:
        vocabulary_size: int. The number of token ids (0 is padding).
        sequence_length: int. Tokens per sentence.
        num_classes: int. The number of classes. Defaults to 2.
        num_layers: int. Transformer blocks. Defaults to 4.
        embed_dim: int. Hidden width. Defaults to 256.
        num_heads: int. Attention heads. Defaults to 4.
        dropout_rate: float. Dropout throughout. Defaults to 0.1.
        classifier_activation: str or None. None gives logits. Defaults to None.
        name: str. The model name. Defaults to "bert_mini".
    """
    return BERTClassifier(vocabulary_size, sequence_length, num_classes, num_layers, embed_dim, num_heads,
                          dropout_rate=dropout_rate, classifier_activation=classifier_activation, name=name)
