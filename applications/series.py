"""Networks over sliding windows of a univariate series: two autoencoders and a forecaster.

Every builder takes windows (B, window_length) float32 of a normalized series:
- `conv_autoencoder`: Conv1D encoder (stride 2) → bottleneck → Conv1DTranspose decoder;
  reconstructs the window (B, window_length).
- `lstm_autoencoder`: LSTM encoder → its last state repeated → LSTM decoder; reconstructs the
  window (B, window_length) (Malhotra et al., 2016).
- `conv_forecaster`: a causal, dilated Conv1D stack (a small TCN) that reads the window and
  predicts the next `horizon` values (B, horizon).

The last layer is named `reconstruction` or `forecast`; `objective(model)` says which, so a task
knows how to turn the network's output into an error per time step.

References:
- [LSTM-based Encoder-Decoder for Multi-sensor Anomaly Detection](https://arxiv.org/abs/1607.00148)
- [An Empirical Evaluation of Generic Convolutional and Recurrent Networks for Sequence
  Modeling](https://arxiv.org/abs/1803.01271)
"""

import keras
from keras import layers

from applications.registry import register


def objective(model):
    """`"forecast"` or `"reconstruction"`: what the model's output is, from its last layer's name."""
    names = {layer.name for layer in model.layers}
    if "forecast" in names:
        return "forecast"
    if "reconstruction" in names:
        return "reconstruction"
    raise ValueError(f"Model {model.name!r} is not a series network of applications.series "
                     "(no 'forecast' or 'reconstruction' layer).")


def _window_input(window_length):
    windows = keras.Input((window_length,), dtype="float32", name="windows")
    return windows, layers.Reshape((window_length, 1), name="add_channel")(windows)  # (B, W, 1)


@register(kind="series")
def conv_autoencoder(window_length=64, filters=32, latent_dim=16, dropout_rate=0.0, name="conv_autoencoder"):
    """A Conv1D autoencoder: (B, W) windows → (B, W) reconstructions.

    Args:
        window_length: int. Steps per window; a multiple of 4. Defaults to 64.
        filters: int. Channels of the first convolution (the second has twice as many).
            Defaults to 32.
        latent_dim: int. Channels of the bottleneck, at W / 4 steps. Defaults to 16.
        dropout_rate: float. Dropout after the encoder's convolutions. Defaults to 0.0.
        name: str. The model name. Defaults to "conv_autoencoder".
    """
    if window_length % 4:
        raise ValueError(
            f"window_length must be a multiple of 4 for conv_autoencoder. Received: window_length={window_length}"
        )
    windows, x = _window_input(window_length)
    x = layers.Conv1D(filters, 7, strides=2, padding="same", activation="relu", name=f"{name}_enc1_conv")(x)
    x = layers.Dropout(dropout_rate, name=f"{name}_enc1_dropout")(x)  # (B, W/2, F)
    x = layers.Conv1D(2 * filters, 7, strides=2, padding="same", activation="relu", name=f"{name}_enc2_conv")(x)
    x = layers.Dropout(dropout_rate, name=f"{name}_enc2_dropout")(x)  # (B, W/4, 2F)
    x = layers.Conv1D(latent_dim, 1, activation="relu", name=f"{name}_bottleneck")(x)  # (B, W/4, L)
    x = layers.Conv1DTranspose(2 * filters, 7, strides=2, padding="same", activation="relu",
                               name=f"{name}_dec1_conv")(x)  # (B, W/2, 2F)
    x = layers.Conv1DTranspose(filters, 7, strides=2, padding="same", activation="relu",
                               name=f"{name}_dec2_conv")(x)  # (B, W, F)
    x = layers.Conv1D(1, 7, padding="same", dtype="float32", name=f"{name}_output_conv")(x)  # (B, W, 1)
    outputs = layers.Reshape((window_length,), name="reconstruction")(x)
    return keras.Model(windows, outputs, name=name)


@register(kind="series")
def lstm_autoencoder(window_length=64, units=32, dropout_rate=0.0, name="lstm_autoencoder"):
    """An LSTM encoder-decoder autoencoder: (B, W) windows → (B, W) reconstructions.

    Args:
        window_length: int. Steps per window. Defaults to 64.
        units: int. Width of the encoder and decoder LSTMs. Defaults to 32.
        dropout_rate: float. Dropout on the code. Defaults to 0.0.
        name: str. The model name. Defaults to "lstm_autoencoder".
    """
    windows, x = _window_input(window_length)
    code = layers.LSTM(units, name=f"{name}_encoder")(x)  # (B, U): the whole window in one state
    code = layers.Dropout(dropout_rate, name=f"{name}_code_dropout")(code)
    x = layers.RepeatVector(window_length, name=f"{name}_repeat")(code)  # (B, W, U)
    x = layers.LSTM(units, return_sequences=True, name=f"{name}_decoder")(x)  # (B, W, U)
    x = layers.Dense(1, dtype="float32", name=f"{name}_output")(x)  # (B, W, 1)
    outputs = layers.Reshape((window_length,), name="reconstruction")(x)
    return keras.Model(windows, outputs, name=name)


@register(kind="series")
def conv_forecaster(window_length=64, horizon=1, filters=32, num_blocks=4, dropout_rate=0.0, name="conv_forecaster"):
    """A causal dilated Conv1D forecaster: (B, W) past values → (B, horizon) next values.

    Block i is a causal convolution (kernel 3, dilation 2^i) with a residual connection, so four
    blocks see the last 31 steps at the window's end; the last step's features predict the next
    `horizon` values.

    Args:
        window_length: int. Steps of history per window. Defaults to 64.
        horizon: int. Values predicted after the window. Defaults to 1.
        filters: int. Channels of every block. Defaults to 32.
        num_blocks: int. Dilated blocks (dilations 1, 2, 4, ...). Defaults to 4.
        dropout_rate: float. Dropout in every block. Defaults to 0.0.
        name: str. The model name. Defaults to "conv_forecaster".
    """
    windows, x = _window_input(window_length)
    x = layers.Conv1D(filters, 1, name=f"{name}_stem")(x)  # (B, W, F)
    for index in range(num_blocks):
        y = layers.Conv1D(filters, 3, padding="causal", dilation_rate=2 ** index, activation="relu",
                          name=f"{name}_block{index}_conv")(x)
        y = layers.Dropout(dropout_rate, name=f"{name}_block{index}_dropout")(y)
        x = layers.Add(name=f"{name}_block{index}_add")([x, y])
    last = layers.Cropping1D((window_length - 1, 0), name=f"{name}_last_step")(x)  # (B, 1, F)
    last = layers.Flatten(name=f"{name}_last_flat")(last)  # (B, F)
    # Long-range context beside the receptive field: the window's mean level, through a Dense.
    level = layers.GlobalAveragePooling1D(name=f"{name}_pool")(x)
    x = layers.Concatenate(name=f"{name}_features")([last, level])
    x = layers.Dense(filters, activation="relu", name=f"{name}_head")(x)
    outputs = layers.Dense(horizon, dtype="float32", name="forecast")(x)  # (B, H)
    return keras.Model(windows, outputs, name=name)
