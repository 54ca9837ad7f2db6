"""Convolutional variational autoencoder (Kingma & Welling, 2014).

Pixels in, pixels out: the model takes and returns float pixels in [0, 255]; inside, images are
in [0, 1] and the decoder gives Bernoulli logits per pixel.

- Encoder: stride-2 3x3 convolutions with ReLU → flatten → dense → (mean, log-variance) (B, L).
- Reparameterization: z = mean + exp(log_variance / 2) * eps, eps ~ N(0, I).
- Decoder: z → dense → (h, w, C0) → stride-2 `Conv2DTranspose` blocks with ReLU → logits (B, H, W, C).
- Loss: the negative ELBO per image, in nats: the Bernoulli cross-entropy of the pixels summed
  over the image (reconstruction) + KL(q(z|x) || N(0, I)) (closed form).
- `VAE` is a `keras.Model` with custom `train_step` / `test_step`; train it with `fit` on
  `(pixels, anything)` batches.

Reference:
- [Auto-Encoding Variational Bayes](https://arxiv.org/abs/1312.6114)
"""

import keras
import tensorflow as tf
from keras import layers

from applications.dcgan import num_upsamplings
from applications.registry import register


def Encoder(image_shape, latent_dim, width, name="encoder"):
    """Images (B, H, W, C) in [0, 1] → (mean, log_variance), each (B, latent_dim)."""
    steps, _ = num_upsamplings(*image_shape[:2])
    images = keras.Input(image_shape, name="image")
    x = images
    for index in range(steps):
        x = layers.Conv2D(width * 2**index, 3, strides=2, padding="same", activation="relu",
                          name=f"{name}_conv{index}")(x)
    x = layers.Flatten(name=f"{name}_flatten")(x)
    x = layers.Dense(16 * width, activation="relu", name=f"{name}_dense")(x)
    mean = layers.Dense(latent_dim, dtype="float32", name=f"{name}_mean")(x)
    log_variance = layers.Dense(latent_dim, dtype="float32", name=f"{name}_log_variance")(x)
    return keras.Model(images, [mean, log_variance], name=name)


def Decoder(image_shape, latent_dim, width, name="decoder"):
    """Latent (B, latent_dim) → Bernoulli logits (B, H, W, C) of the pixels in [0, 1]."""
    height, image_width, channels = image_shape
    steps, (start_height, start_width) = num_upsamplings(height, image_width)
    start_channels = width * 2 ** (steps - 1)
    latent = keras.Input((latent_dim,), name="latent")
    x = layers.Dense(16 * width, activation="relu", name=f"{name}_dense")(latent)
    x = layers.Dense(start_height * start_width * start_channels, activation="relu", name=f"{name}_project")(x)
    x = layers.Reshape((start_height, start_width, start_channels), name=f"{name}_reshape")(x)
    for index in range(steps - 1):
        x = layers.Conv2DTranspose(start_channels // 2 ** (index + 1), 3, strides=2, padding="same",
                                   activation="relu", name=f"{name}_up{index}_deconv")(x)
    logits = layers.Conv2DTranspose(channels, 3, strides=2, padding="same", dtype="float32", name=f"{name}_logits")(x)
    return keras.Model(latent, logits, name=name)


@keras.saving.register_keras_serializable(package="applications")
class VAE(keras.Model):
    """An encoder and a decoder trained on the negative ELBO with `fit`.

    Calling the model reconstructs: pixels (B, H, W, C) in [0, 255] → the decoder's mean image
    of the encoder's mean latent, in [0, 255].

    Args:
        encoder: keras.Model. From `Encoder`.
        decoder: keras.Model. From `Decoder`.
        latent_dim: int. Size of the latent vector.
        seed: int. Seed of the reparameterization noise in training. Defaults to 0.
    """

    def __init__(self, encoder, decoder, latent_dim, seed=0, **kwargs):
        super().__init__(**kwargs)
        # === Layers ===
        self.encoder = encoder
        self.decoder = decoder
        # === Config ===
        self.latent_dim = latent_dim
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {name: keras.metrics.Mean(name=name) for name in ["loss", "reconstruction", "kl"]}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def encode(self, pixels, training=False):
        """Pixels in [0, 255] → (mean, log_variance) of q(z | x)."""
        return self.encoder(tf.cast(pixels, tf.float32) / 255.0, training=training)

    def decode(self, latent, training=False):
        """Latent (B, L) → the mean image, pixels in [0, 255]."""
        return tf.sigmoid(self.decoder(latent, training=training)) * 255.0

    def call(self, pixels, training=False):
        mean, _ = self.encode(pixels, training=training)
        return self.decode(mean, training=training)

    def negative_elbo(self, pixels, training):
        """Per-image (negative ELBO, reconstruction, KL) in nats, one latent sample each."""
        targets = tf.cast(pixels, tf.float32) / 255.0
        mean, log_variance = self.encode(pixels, training=training)
        noise = keras.random.normal(tf.shape(mean), seed=self.seed_generator)
        latent = mean + tf.exp(0.5 * log_variance) * noise
        logits = self.decoder(latent, training=training)
        reconstruction = tf.reduce_sum(
            tf.nn.sigmoid_cross_entropy_with_logits(targets, logits), axis=[1, 2, 3]
        )  # (B,)
        kl = -0.5 * tf.reduce_sum(1.0 + log_variance - tf.square(mean) - tf.exp(log_variance), axis=-1)  # (B,)
        return reconstruction + kl, reconstruction, kl

    def _update(self, loss, reconstruction, kl):
        for name, value in (("loss", loss), ("reconstruction", reconstruction), ("kl", kl)):
            self.trackers[name].update_state(tf.reduce_mean(value))
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, data):
        pixels = data[0] if isinstance(data, (tuple, list)) else data
        with tf.GradientTape() as tape:
            loss, reconstruction, kl = self.negative_elbo(pixels, training=True)
            mean_loss = tf.reduce_mean(loss)
        variables = self.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(mean_loss, variables), variables))
        return self._update(loss, reconstruction, kl)

    def test_step(self, data):
        pixels = data[0] if isinstance(data, (tuple, list)) else data
        return self._update(*self.negative_elbo(pixels, training=False))

    def get_config(self):
        return {
            **super().get_config(),
            "encoder": keras.saving.serialize_keras_object(self.encoder),
            "decoder": keras.saving.serialize_keras_object(self.decoder),
            "latent_dim": self.latent_dim,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["encoder"] = keras.saving.deserialize_keras_object(config["encoder"])
        config["decoder"] = keras.saving.deserialize_keras_object(config["decoder"])
        return cls(**config)


@register(kind="generator")
def vae(input_shape=(28, 28, 1), latent_dim=16, width=32, name="vae"):
    """A convolutional VAE with a Bernoulli decoder.

    Args:
        input_shape: tuple. (height, width, channels) of the images; sides even and >= 6.
        latent_dim: int. Size of the latent vector. Defaults to 16.
        width: int. Filters of the first encoder convolution (doubled per stride-2 step; the
            decoder mirrors them). Defaults to 32.
        name: str. The model name. Defaults to "vae".
    """
    model = VAE(
        Encoder(input_shape, latent_dim, width, name="encoder"),
        Decoder(input_shape, latent_dim, width, name="decoder"),
        latent_dim=latent_dim,
        name=name,
    )
    model(keras.ops.zeros((1, *input_shape)))  # builds the model
    return model
