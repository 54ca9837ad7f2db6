"""Tests for the image-classifier builders in `applications` and for the registry.

Tiny and wide: every registered classifier is built, predicted on arrays and `tf.data`,
trained for one step, rebuilt from its config and round-tripped through a `.keras` file at
32x32x3; built and run on 28x28x1; and one member per family on 96x96x3. Known parameter
counts pin the architectures.
"""

import inspect

import keras
import numpy as np
import pytest

import applications
from applications import registry
from tests import helpers

# The modules whose builders follow the image-classifier contract (image in, (B, classes) out).
CLASSIFIER_MODULES = (
    "applications.alexnet",
    "applications.vgg",
    "applications.inception",
    "applications.resnet",
    "applications.densenet",
    "applications.xception",
)
CLASSIFIERS = [
    name for name in applications.names() if applications.get(name).__module__ in CLASSIFIER_MODULES
]
# The deepest members of each family (3-13 s each through the tests below on two cores) run in the
# slow lane; a shallower member of every family keeps the contract in the fast lane.
DEEP = {"densenet121", "densenet_bc100", "inception_v1", "xception", "resnet34", "resnet50", "resnet50_v2", "resnet56",
        "resnet56_v2"}
CLASSIFIER_PARAMS = [pytest.param(name, marks=pytest.mark.slow) if name in DEEP else name for name in CLASSIFIERS]
CONTRACT_ARGUMENTS = ["input_shape", "num_classes", "classifier_activation", "dropout_rate", "name"]
NUM_CLASSES = 5
BATCH_SIZE = 2


def random_batch(input_shape, batch_size=BATCH_SIZE, seed=0):
    """Normal-noise images (B, H, W, C) float32 and integer labels (B,)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch_size, *input_shape)).astype("float32")
    y = rng.integers(0, NUM_CLASSES, size=(batch_size,))
    return x, y


def trainable_parameters(model):
    return sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)


# === Every classifier ===


def test_classifiers_are_registered():
    expected = {
        "alexnet", "vgg11", "vgg16", "inception_v1",
        "resnet20", "resnet56", "resnet20_v2", "resnet56_v2",
        "resnet18", "resnet34", "resnet50", "resnet50_v2",
        "densenet40", "densenet_bc100", "densenet121", "xception", "mini_xception",
    }
    assert expected <= set(CLASSIFIERS)


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_builder_signature(name):
    builder = applications.get(name)
    parameters = inspect.signature(builder).parameters
    assert list(parameters)[:5] == CONTRACT_ARGUMENTS
    assert parameters["name"].default == name
    assert "Args:" in builder.__doc__ and "num_classes: int." in builder.__doc__


@pytest.mark.parametrize("name", CLASSIFIER_PARAMS)
def test_classifier(name, tmp_path):
    keras.utils.set_random_seed(0)
    model = applications.get(name)(input_shape=(32, 32, 3), num_classes=NUM_CLASSES)
    assert model.name == name
    x, y = random_batch((32, 32, 3))
    helpers.run_classifier_test(model, x, y)
    helpers.keras_round_trip(model, x, tmp_path)


@pytest.mark.parametrize("shape", [(28, 28, 1), (8, 8, 1)], ids=["mnist", "digits"])
@pytest.mark.parametrize("name", CLASSIFIER_PARAMS)
def test_small_grey_images(name, shape):
    # MNIST-sized and the 8x8 demo digits: no builder may pool a grid down to zero.
    model = applications.get(name)(input_shape=shape, num_classes=NUM_CLASSES)
    x, _ = random_batch(shape)
    helpers.check_class_outputs(model(x, training=False), BATCH_SIZE, NUM_CLASSES)


# One member per family at 96x96x3: the ImageNet stems and heads.
LARGE_INPUT_BUILDERS = [
    ("alexnet", {}),
    ("vgg11", {}),
    ("inception_v1", {"width_multiplier": 0.25}),
    ("resnet18", {}),
    ("densenet40", {}),
    ("xception", {"num_middle_blocks": 1}),
]


@pytest.mark.parametrize("name, kwargs", LARGE_INPUT_BUILDERS)
def test_large_images(name, kwargs):
    model = applications.get(name)(input_shape=(96, 96, 3), num_classes=NUM_CLASSES, **kwargs)
    x, _ = random_batch((96, 96, 3))
    helpers.check_class_outputs(model.predict(x, verbose=0), BATCH_SIZE, NUM_CLASSES)


def test_stem_follows_input_size():
    small = applications.get("resnet18")(input_shape=(32, 32, 3))
    large = applications.get("resnet18")(input_shape=(64, 64, 3))
    assert small.get_layer("stem_conv").kernel_size == (3, 3)
    assert large.get_layer("stem_conv").kernel_size == (7, 7)
    assert "stem_pool" not in [layer.name for layer in small.layers]
    # 32 px keeps full resolution into stage 1; 64 px is down to 16 px (stride 4).
    assert small.get_layer("stage1_block1_out").output.shape[1] == 32
    assert large.get_layer("stage1_block1_out").output.shape[1] == 16


# === Outputs: probabilities, logits, float32 under mixed precision ===

FAMILY_MEMBERS = ["alexnet", "vgg11", "inception_v1", "resnet20_v2", "densenet40", "mini_xception"]


@pytest.mark.parametrize("name", FAMILY_MEMBERS)
def test_classifier_activation(name):
    x, _ = random_batch((32, 32, 3))
    builder = applications.get(name)
    probabilities = builder(num_classes=NUM_CLASSES)(x, training=False)
    np.testing.assert_allclose(np.sum(probabilities, axis=-1), 1.0, atol=1e-5)
    logits_model = builder(num_classes=NUM_CLASSES, classifier_activation=None)
    assert logits_model.get_layer("predictions").activation is keras.activations.linear
    logits = np.asarray(logits_model(x, training=False))
    assert not np.allclose(np.sum(logits, axis=-1), 1.0)


@pytest.fixture
def mixed_bfloat16():
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


@pytest.mark.parametrize("name", FAMILY_MEMBERS)
def test_mixed_precision_outputs_float32(name, mixed_bfloat16):
    model = applications.get(name)(num_classes=NUM_CLASSES)
    # The body computes in bfloat16 (layers[1] is the first conv); only the classifier is float32.
    assert model.layers[1].compute_dtype == "bfloat16"
    assert model.get_layer("predictions").compute_dtype == "float32"
    assert model.output.dtype == "float32"
    x, _ = random_batch((32, 32, 3))
    helpers.check_class_outputs(model(x, training=False), BATCH_SIZE, NUM_CLASSES)


def test_dropout_rate_adds_dropout():
    model = applications.get("resnet20")(dropout_rate=0.3)
    assert model.get_layer("head_dropout").rate == 0.3
    assert "head_dropout" not in [layer.name for layer in applications.get("resnet20")().layers]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"input_shape": (32, 32)},
        {"input_shape": (None, None, 3)},
        {"num_classes": 0},
        {"dropout_rate": 1.0},
    ],
)
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError, match="Received"):
        applications.get("resnet20")(**kwargs)


# === Parameter counts against the papers and reference implementations ===

# (name, input size, classes, trainable parameters, where the number comes from). Papers
# round: "0.8M" allows 0.75M-0.85M, so the tolerance is half a unit of the last digit, and
# at least 2% (batch-norm and bias conventions differ between implementations).
KNOWN_PARAMETER_COUNTS = [
    ("resnet20", 32, 10, "0.27M", "He et al. 2015, Table 6"),
    ("resnet56", 32, 10, "0.85M", "He et al. 2015, Table 6"),
    ("densenet40", 32, 10, "1.0M", "Huang et al. 2016, Table 2"),
    ("densenet_bc100", 32, 10, "0.8M", "Huang et al. 2016, Table 2"),
    ("resnet18", 224, 1000, "11.69M", "torchvision resnet18: 11,689,512"),
    ("resnet50", 224, 1000, "25.56M", "torchvision resnet50: 25,557,032"),
    ("densenet121", 224, 1000, "7.98M", "torchvision densenet121: 7,978,856"),
    ("xception", 299, 1000, "22.91M", "keras.applications.Xception: 22,910,480 in all"),
    ("alexnet", 224, 1000, "61.10M", "torchvision alexnet: 61,100,840"),
]


def parse_millions(text):
    """Parses "0.8M" into (800000.0, 50000.0): the value and half a unit of its last digit."""
    digits = text.rstrip("M")
    decimals = len(digits.partition(".")[2])
    return float(digits) * 1e6, 0.5 * 10.0**-decimals * 1e6


@pytest.mark.parametrize("name, size, num_classes, expected, source", KNOWN_PARAMETER_COUNTS)
def test_parameter_count(name, size, num_classes, expected, source):
    model = applications.get(name)(input_shape=(size, size, 3), num_classes=num_classes)
    value, rounding = parse_millions(expected)
    tolerance = max(rounding, 0.02 * value)
    assert trainable_parameters(model) == pytest.approx(value, abs=tolerance), source


# === Registry ===


def test_registry_refuses_duplicates(monkeypatch):
    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))
    monkeypatch.setattr(registry, "_KINDS", dict(registry._KINDS))

    def resnet20():
        pass

    with pytest.raises(ValueError, match="already registered"):
        registry.register(kind="classifier")(resnet20)

    def tiny_test_builder():
        pass

    assert registry.register(kind="graph")(tiny_test_builder) is tiny_test_builder
    assert "tiny_test_builder" in registry.names("graph")
    assert "tiny_test_builder" not in registry.names("classifier")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(kind="graph")(tiny_test_builder)


def test_registry_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="Unknown builder kind 'painter'"):
        registry.register(kind="painter")


def test_registry_miss_lists_names():
    with pytest.raises(ValueError, match="nope") as error:
        applications.get("nope")
    for name in ("resnet20", "densenet121", "mini_xception"):
        assert name in str(error.value)


def test_names_sorted():
    assert applications.names() == sorted(applications.names())
