"""DCGAN (Radford et al., 2016), its class-conditional variant, and a classifier of the same family.

Pixels in, pixels out: every model here takes and returns float pixels in [0, 255]; the networks
inside work on [-1, 1] (the generator ends in tanh).

- Generator: latent (B, L) → Dense → (h, w, C0) → `Conv2DTranspose` blocks (stride 2, batch norm,
  ReLU), halving the channels each time → `Conv2DTranspose` to the image channels, tanh.
- Discriminator: strided 4x4 convolutions with LeakyReLU(0.2), batch norm on all but the first,
  no pooling, no dense hidden layers (the DCGAN guidelines) → one real/fake logit.
- Conditional (AC-GAN, Odena et al., 2017): the generator also takes a class id (its embedding is
  concatenated to the latent); the discriminator has a second head of class logits, trained on
  real images, and the generator is trained to make its samples classified as the requested class.
- `GAN` is a `keras.Model` with a custom `train_step`: one discriminator step, then one generator
  step (non-saturating loss) per batch; train it with `fit` on `(pixels, class_ids)` batches.
- `dcgan_classifier` is the discriminator's convolutional stack with a class head, under the
  image-classifier contract of the registry: a small, fast classifier (the DCGAN paper reuses its
  discriminator's features for classification).

References:
- [Unsupervised Representation Learning with Deep Convolutional GANs](https://arxiv.org/abs/1511.06434)
- [Conditional Image Synthesis with Auxiliary Classifier GANs](https://arxiv.org/abs/1610.09585)
"""

import keras
import tensorflow as tf
from keras import layers

from applications.registry import register

MAX_UPSAMPLINGS = 4  # 4x4 → 64x64 at most; larger images start from a larger grid
LEAKY_SLOPE = 0.2
BATCH_NORM_MOMENTUM = 0.9  # moving statistics that keep up with a generator that changes fast


def num_upsamplings(height, width):
    """How many stride-2 steps lead from a small start grid (sides >= 3) to (height, width).

    Returns:
        `(steps, (start_height, start_width))`, e.g. 28x28 → (2, (7, 7)), 32x32 → (3, (4, 4)).
    """
    steps = 0
    while (
        steps < MAX_UPSAMPLINGS and height % 2 == 0 and width % 2 == 0 and height // 2 >= 3 and width // 2 >= 3
    ):
        height, width, steps = height // 2, width // 2, steps + 1
    if steps == 0:
        raise ValueError(
            f"image sides must be even and at least 6 for the stride-2 networks. "
            f"Received: input_shape=({height}, {width}, ...)"
        )
    return steps, (height, width)


def to_unit(pixels):
    """[0, 255] → [-1, 1]."""
    return pixels / 127.5 - 1.0


def to_pixels(unit):
    """[-1, 1] → [0, 255]."""
    return (unit + 1.0) * 127.5


# === Networks ===


def strided_stack(x, width, steps, name):
    """`steps` strided 4x4 convolutions with LeakyReLU, batch norm after the first: (B, H, W, C) → (B, h, w, F)."""
    for index in range(steps):
        filters = width * 2**index
        # No biases: a bias before LeakyReLU trips a grappler remapper error log; BN has its own offset.
        x = layers.Conv2D(filters, 4, strides=2, padding="same", use_bias=False, name=f"{name}_conv{index}")(x)
        if index > 0:
            x = layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name=f"{name}_bn{index}")(x)
        x = layers.LeakyReLU(LEAKY_SLOPE, name=f"{name}_lrelu{index}")(x)
    return x


def Generator(image_shape, latent_dim, width, num_classes=0, name="generator"):
    """Latent (B, L) [and class ids (B,)] → images (B, H, W, C) in [-1, 1].

    Args:
        image_shape: tuple. (height, width, channels) of the images.
        latent_dim: int. Size of the latent vector.
        width: int. Channels of the last hidden block (doubled per block towards the start).
        num_classes: int. 0: unconditional; else the number of class ids it is conditioned on.
        name: str. The model name. Defaults to "generator".
    """
    height, image_width, channels = image_shape
    steps, (start_height, start_width) = num_upsamplings(height, image_width)
    start_channels = width * 2 ** (steps - 1)
    latent = keras.Input((latent_dim,), name="latent")
    inputs = [latent]
    x = latent
    if num_classes:
        class_id = keras.Input((), dtype="int32", name="class_id")
        inputs.append(class_id)
        embedded = layers.Embedding(num_classes, latent_dim, name=f"{name}_class_embedding")(class_id)  # (B, L)
        x = layers.Concatenate(name=f"{name}_condition")([latent, embedded])  # (B, 2L)
    x = layers.Dense(start_height * start_width * start_channels, use_bias=False, name=f"{name}_project")(x)
    x = layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name=f"{name}_project_bn")(x)
    x = layers.ReLU(name=f"{name}_project_relu")(x)
    x = layers.Reshape((start_height, start_width, start_channels), name=f"{name}_reshape")(x)
    for index in range(steps - 1):
        filters = start_channels // 2 ** (index + 1)
        x = layers.Conv2DTranspose(
            filters, 4, strides=2, padding="same", use_bias=False, name=f"{name}_up{index}_deconv"
        )(x)
        x = layers.BatchNormalization(momentum=BATCH_NORM_MOMENTUM, name=f"{name}_up{index}_bn")(x)
        x = layers.ReLU(name=f"{name}_up{index}_relu")(x)
    images = layers.Conv2DTranspose(
        channels, 4, strides=2, padding="same", activation="tanh", dtype="float32", name=f"{name}_image"
    )(x)
    return keras.Model(inputs if num_classes else latent, images, name=name)


def Discriminator(image_shape, width, num_classes=0, projection=True, name="discriminator"):
    """Images (B, H, W, C) in [-1, 1] [and class ids (B,)] → real/fake logit (B, 1) [and class logits (B, K)].

    Conditional (num_classes > 0): a head of class logits (AC-GAN) and, with `projection`, the
    class id as a second input whose embedding is projected onto the features (Miyato &
    Koyama, 2018): the real/fake logit is judged for the requested class, which keeps samples
    of one class diverse where the class head alone pulls them to one prototype.

    Args:
        image_shape: tuple. (height, width, channels) of the images.
        width: int. Filters of the first convolution (doubled per stride-2 step).
        num_classes: int. 0: one output; else also class logits. Defaults to 0.
        projection: bool. Conditional only: also take the class id (projection). Defaults to True.
        name: str. The model name. Defaults to "discriminator".
    """
    steps, _ = num_upsamplings(*image_shape[:2])
    images = keras.Input(image_shape, name="image")
    x = strided_stack(images, width, steps, name)
    x = layers.Flatten(name=f"{name}_flatten")(x)  # (B, F)
    real = layers.Dense(1, dtype="float32", name=f"{name}_real_logit")(x)
    if not num_classes:
        return keras.Model(images, real, name=name)
    classes = layers.Dense(num_classes, dtype="float32", name=f"{name}_class_logits")(x)
    if not projection:
        return keras.Model(images, [real, classes], name=name)
    class_id = keras.Input((), dtype="int32", name="class_id")
    embedded = layers.Embedding(num_classes, x.shape[-1], name=f"{name}_class_embedding")(class_id)  # (B, F)
    projected = layers.Dot(axes=1, name=f"{name}_projection")([embedded, x])  # (B, 1)
    real = layers.Add(dtype="float32", name=f"{name}_conditional_logit")([real, projected])
    return keras.Model([images, class_id], [real, classes], name=name)


# === The GAN and its training step ===


@keras.saving.register_keras_serializable(package="applications")
class GAN(keras.Model):
    """A generator and a discriminator trained against each other with `fit`.

    `fit` takes batches of `(pixels, class_ids)` (pixels float in [0, 255]); each batch makes
    one discriminator step, then one generator step, each with its own optimizer. Calling the
    model generates: latent (B, L) [, class ids (B,)] → pixels (B, H, W, C) in [0, 255].

    Args:
        generator: keras.Model. From `Generator`.
        discriminator: keras.Model. From `Discriminator` (with a class head when conditional).
        latent_dim: int. Size of the latent vector.
        num_classes: int. 0: unconditional; else the generator's number of classes.
        seed: int. Seed of the latent and class draws during training. Defaults to 0.
    """

    def __init__(self, generator, discriminator, latent_dim, num_classes=0, seed=0, **kwargs):
        super().__init__(**kwargs)
        # === Layers ===
        self.generator = generator
        self.discriminator = discriminator
        # === Config ===
        self.latent_dim = latent_dim
        self.num_classes = num_classes
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.trackers = {
            name: keras.metrics.Mean(name=name)
            for name in ["loss", "d_loss", "g_loss", "real_score", "fake_score"]
            + (["d_class_accuracy", "g_class_accuracy"] if num_classes else [])
        }

    @property
    def conditional(self):
        return bool(self.num_classes)

    def compile(self, optimizer="adam", discriminator_optimizer="adam", **kwargs):
        """`optimizer` trains the generator, `discriminator_optimizer` the discriminator."""
        super().compile(optimizer=optimizer, **kwargs)
        self.discriminator_optimizer = keras.optimizers.get(discriminator_optimizer)

    def get_compile_config(self):
        return {
            "optimizer": keras.saving.serialize_keras_object(self.optimizer),
            "discriminator_optimizer": keras.saving.serialize_keras_object(self.discriminator_optimizer),
        }

    def compile_from_config(self, config):
        self.compile(
            optimizer=keras.saving.deserialize_keras_object(config["optimizer"]),
            discriminator_optimizer=keras.saving.deserialize_keras_object(config["discriminator_optimizer"]),
        )
        # Variables to load the saved optimizer states into.
        self.optimizer.build(self.generator.trainable_variables)
        self.discriminator_optimizer.build(self.discriminator.trainable_variables)

    @property
    def metrics(self):
        return list(self.trackers.values())

    def call(self, inputs, training=False):
        return to_pixels(self.generator(inputs, training=training))

    def draw(self, batch_size):
        """Random latents (B, L) and class ids (B,) for one training step."""
        latent = keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)
        class_id = keras.random.randint((batch_size,), 0, max(self.num_classes, 1), seed=self.seed_generator, dtype="int32")
        return latent, class_id

    def generate(self, latent, class_id, training):
        inputs = [latent, class_id] if self.conditional else latent
        return self.generator(inputs, training=training)  # (B, H, W, C) in [-1, 1]

    def judge(self, images, class_id, training):
        """(real/fake logits (B,), class logits (B, K) or None) of images said to be of `class_id`."""
        takes_class = isinstance(self.discriminator.input, (list, tuple))
        outputs = self.discriminator([images, class_id] if takes_class else images, training=training)
        if self.conditional:
            real, classes = outputs
            return real[:, 0], classes
        return outputs[:, 0], None

    def train_step(self, data):
        pixels, labels = data[0], tf.cast(data[1], tf.int32)
        real_images = to_unit(tf.cast(pixels, tf.float32))
        batch_size = tf.shape(real_images)[0]
        ones, zeros = tf.ones((batch_size,)), tf.zeros((batch_size,))

        # Discriminator: real → 1, fake → 0 (+ the class of real images).
        latent, fake_labels = self.draw(batch_size)
        with tf.GradientTape() as tape:
            fake_images = self.generate(latent, fake_labels, training=True)
            real_logits, real_classes = self.judge(real_images, labels, training=True)
            fake_logits, _ = self.judge(fake_images, fake_labels, training=True)
            d_loss = tf.reduce_mean(
                tf.nn.sigmoid_cross_entropy_with_logits(ones, real_logits)
                + tf.nn.sigmoid_cross_entropy_with_logits(zeros, fake_logits)
            )
            if self.conditional:
                d_loss += tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, real_classes))
        variables = self.discriminator.trainable_variables
        self.discriminator_optimizer.apply_gradients(zip(tape.gradient(d_loss, variables), variables))

        # Generator: fakes → 1 (non-saturating) (+ classified as the requested class).
        latent, fake_labels = self.draw(batch_size)
        with tf.GradientTape() as tape:
            fake_images = self.generate(latent, fake_labels, training=True)
            logits, classes = self.judge(fake_images, fake_labels, training=True)
            g_loss = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(ones, logits))
            if self.conditional:
                g_loss += tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(fake_labels, classes))
        variables = self.generator.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(g_loss, variables), variables))

        updates = {
            "d_loss": d_loss,
            "g_loss": g_loss,
            "loss": d_loss + g_loss,  # the sum of both players' losses: a NaN watch, not a quality measure
            "real_score": tf.reduce_mean(tf.sigmoid(real_logits)),
            "fake_score": tf.reduce_mean(tf.sigmoid(fake_logits)),
        }
        if self.conditional:
            updates["d_class_accuracy"] = _accuracy(labels, real_classes)
            updates["g_class_accuracy"] = _accuracy(fake_labels, classes)
        for name, value in updates.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def get_config(self):
        return {
            **super().get_config(),
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "latent_dim": self.latent_dim,
            "num_classes": self.num_classes,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["generator"] = keras.saving.deserialize_keras_object(config["generator"])
        config["discriminator"] = keras.saving.deserialize_keras_object(config["discriminator"])
        return cls(**config)


def _accuracy(labels, logits):
    return tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=tf.int32), labels), tf.float32))


def build_gan(input_shape, num_classes, latent_dim, width, name, projection=True):
    model = GAN(
        Generator(input_shape, latent_dim, width, num_classes, name="generator"),
        Discriminator(input_shape, width, num_classes, projection, name="discriminator"),
        latent_dim=latent_dim,
        num_classes=num_classes,
        name=name,
    )
    latent = keras.ops.zeros((1, latent_dim))
    model(latent if not num_classes else [latent, keras.ops.zeros((1,), "int32")])  # builds the model
    return model


@register(kind="generator")
def dcgan(input_shape=(28, 28, 1), latent_dim=100, width=64, name="dcgan"):
    """An unconditional DCGAN.

    Args:
        input_shape: tuple. (height, width, channels) of the images; sides even and >= 6.
        latent_dim: int. Size of the latent vector. Defaults to 100.
        width: int. Discriminator filters at full resolution and generator filters of the
            last hidden block, doubled per stride-2 step. Defaults to 64.
        name: str. The model name. Defaults to "dcgan".
    """
    return build_gan(input_shape, 0, latent_dim, width, name)


@register(kind="generator")
def conditional_dcgan(input_shape=(28, 28, 1), num_classes=10, latent_dim=100, width=64, projection=True,
                      name="conditional_dcgan"):
    """A class-conditional DCGAN (AC-GAN): sample(latent, class id), a discriminator with a class head.

    Args:
        input_shape: tuple. (height, width, channels) of the images; sides even and >= 6.
        num_classes: int. The number of classes. Defaults to 10.
        latent_dim: int. Size of the latent vector. Defaults to 100.
        width: int. Discriminator filters at full resolution and generator filters of the
            last hidden block, doubled per stride-2 step. Defaults to 64.
        projection: bool. The discriminator also takes the class id (projection) besides its
            class head. Defaults to True.
        name: str. The model name. Defaults to "conditional_dcgan".
    """
    if num_classes < 2:
        raise ValueError(f"a conditional GAN needs at least 2 classes. Received: num_classes={num_classes}")
    return build_gan(input_shape, num_classes, latent_dim, width, name, projection)


@register(kind="classifier")
def dcgan_classifier(input_shape=(28, 28, 1), num_classes=10, classifier_activation="softmax", dropout_rate=0.0,
                     name="dcgan_classifier", width=64):
    """The DCGAN discriminator's stack as an image classifier: fast, for small images.

    A 3x3 convolution at full resolution, then per stride-2 step a strided 4x4 convolution and
    a 3x3 convolution, each with batch norm and LeakyReLU; global average pooling, dropout and a
    dense head.

    Args:
        input_shape: tuple. (height, width, channels); sides even and >= 6. Defaults to (28, 28, 1).
        num_classes: int. The number of classes. Defaults to 10.
        classifier_activation: str or None. Activation of the head (None: logits). Defaults to "softmax".
        dropout_rate: float. Dropout before the head. Defaults to 0.0.
        name: str. The model name. Defaults to "dcgan_classifier".
        width: int. Filters at full resolution (doubled per stride-2 step). Defaults to 64.
    """
    steps, _ = num_upsamplings(*input_shape[:2])
    images = keras.Input(input_shape, name="image")
    x = layers.Conv2D(width // 2, 3, padding="same", use_bias=False, name="stem_conv")(images)
    x = layers.LeakyReLU(LEAKY_SLOPE, name="stem_lrelu")(x)
    for index in range(steps):
        x = strided_stack(x, width * 2**index, 1, f"block{index}_down")
        x = layers.Conv2D(width * 2**index, 3, padding="same", use_bias=False, name=f"block{index}_conv")(x)
        x = layers.BatchNormalization(name=f"block{index}_bn")(x)
        x = layers.LeakyReLU(LEAKY_SLOPE, name=f"block{index}_lrelu")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    x = layers.Dropout(dropout_rate, name="dropout")(x)
    outputs = layers.Dense(num_classes, activation=classifier_activation, dtype="float32", name="predictions")(x)
    return keras.Model(images, outputs, name=name)
