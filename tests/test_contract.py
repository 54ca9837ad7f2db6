"""The contract every task and every registered builder keeps: what DESIGN.md promises of each
task module (verbs, Config, kind) and of the registry (one kind per builder), tested over
`tasks.TASKS` and `applications.names()`, so a new task or builder is covered on its own."""

import dataclasses
import importlib
import inspect

import keras
import numpy as np
import pytest

import applications
import tasks
from applications import registry
from tasks.core import cli
from tests.helpers import assert_one_line_error
from tests.helpers import run_in_process

STORY = ("Config", "load_data", "build_model", "baseline", "evaluate", "serving", "predict", "train")
# For each kind a task trains, a registered builder of another kind.
WRONG = {
    "classifier": "unet",
    "segmenter": "resnet20",
    "detector": "darknet_tiny",
    "generator": "resnet20",
    "sentence_classifier": "gpt",
    "seq2seq": "text_cnn",
    "extractive": "unet",
    "language_model": "transformer_seq2seq",
    "series": "mpnn",
    "graph": "vae",
}


def module_of(task):
    return importlib.import_module(f"tasks.{task}")


def kinds_of(module):
    return (module.KIND,) if isinstance(module.KIND, str) else tuple(module.KIND)


@pytest.mark.parametrize("task", tasks.TASKS)
def test_task_module_tells_the_whole_story(task):
    module = module_of(task)
    for name in STORY:
        assert callable(getattr(module, name, None)), f"tasks.{task}.{name}"
    assert dataclasses.is_dataclass(module.Config)
    assert "cli.main(sys.modules[__name__])" in open(module.__file__).read()  # `python -m tasks.<task>`
    loader = inspect.signature(module.load_data).parameters  # one calling convention for the runner
    assert list(loader) == ["config", "saved"] and loader["saved"].default is None, f"tasks.{task}.load_data"


@pytest.mark.parametrize("task", tasks.TASKS)
def test_task_default_model_is_of_its_kind(task):
    module = module_of(task)
    assert applications.kind_of(module.Config().model) in kinds_of(module)


@pytest.mark.parametrize("task", tasks.TASKS)
def test_task_help_lists_the_builders_of_its_kind(task, capsys):
    module = module_of(task)
    with pytest.raises(SystemExit):
        cli.main(module, ["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps help lines
    for name in applications.names(kinds_of(module)):
        assert name in text, name


@pytest.mark.parametrize("task", tasks.TASKS)
def test_wrong_kind_of_model_is_one_line_and_writes_nothing(task, tmp_path, capsys):
    module = module_of(task)
    wrong = WRONG[kinds_of(module)[0]]
    assert applications.kind_of(wrong) not in kinds_of(module)
    result = run_in_process(module, capsys, tmp_path, "train", "--model", wrong)
    assert_one_line_error(result, f"--model {wrong}", registry.KINDS[applications.kind_of(wrong)],
                          applications.names(kinds_of(module))[0])
    assert not (tmp_path / "runs").exists() and not (tmp_path / "saved_models").exists()


def test_every_builder_has_one_known_kind():
    assert set(registry._KINDS) == set(applications.names())
    assert set(registry._KINDS.values()) <= set(registry.KINDS)
    partition = sorted(name for kind in registry.KINDS for name in applications.names(kind))
    assert partition == applications.names()


def test_every_kind_a_task_names_exists_and_every_kind_has_a_task():
    named = {kind for task in tasks.TASKS for kind in kinds_of(module_of(task))}
    assert named == set(registry.KINDS)


# === Every builder overfits one batch ===
#
# The first check of a network: on one small fixed batch, Adam drives its training loss down. A
# builder whose gradient is cut, whose output ignores its input or whose loss is wired wrong stays
# near its untrained loss, the control: the first step's loss, computed before any update. Steps
# run until the loss is at most OVERFIT_FACTOR times that control, or OVERFIT_STEPS have run.

OVERFIT_FACTOR = 0.5
# Measured, seeds 0 / 1 / 2, steps to halve the loss: 2-13 for every classifier, segmenter and
# detector but AlexNet (23 / 21 / 23; no batch norm); 11-27 for the recurrent and attention networks
# (lstm_lm 24 / 27 / 25); 2-3 for a GAN's discriminator, 12-15 for its generator; 44 / 49 / 51 for
# the VAE (its budget in STEPS). The blind classifier below ends its 32 steps at 0.92 of its first.
OVERFIT_STEPS = 32
BATCH = 8  # examples in the one batch (2 for the 64 px segmenters and detectors)


# Adam's rate where 1e-2 is too slow (or, for AlexNet without batch norm, too fast) for OVERFIT_STEPS.
RATES = {"airbench": 3e-2, "alexnet": 1e-3, "yolo_v2": 3e-2, "dcgan": 5e-2, "conditional_dcgan": 5e-2,
         "nb_ngrams": 3e-2, "gru_attention": 3e-2, "lstm_attention": 3e-2, "lstm_lm": 3e-2, "lstm_autoencoder": 3e-2}
# Steps where OVERFIT_STEPS are too few: the VAE's ELBO memorizes 8 binary images slowly (and cheaply).
STEPS = {"vae": 80}


def adam(name):
    return keras.optimizers.Adam(RATES.get(name, 1e-2))


def sparse_logits():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def random_labels(num_classes, shape=(BATCH,)):
    return np.random.default_rng(1).integers(0, num_classes, shape)


def noise(shape):
    return np.random.default_rng(0).normal(size=(BATCH, *shape)).astype("float32")


def classifier_batch(name):
    small = {"inception_v1": {"width_multiplier": 0.25}, "xception": {"num_middle_blocks": 1},
             "airbench": {"widths": (8, 16, 16)}, "darknet_tiny": {"width": 4}, "dcgan_classifier": {"width": 8}}
    model = applications.get(name)(input_shape=(8, 8, 1), num_classes=4, **small.get(name, {}))
    model.compile(optimizer=adam(name), loss="sparse_categorical_crossentropy")
    return [(model, noise((8, 8, 1)), random_labels(4), "loss")]


def segmenter_batch(name):
    small = {"unet": {"width": 8, "depth": 2}, "fcn32s": {"backbone": "mini_xception", "head_filters": 0},
             "fcn16s": {"backbone": "mini_xception", "head_filters": 0},
             "fcn8s": {"backbone": "mini_xception", "head_filters": 0}}
    model = applications.get(name)(input_shape=(64, 64, 3), num_classes=3, **small[name])
    model.compile(optimizer=adam(name), loss=sparse_logits())
    quadrants = random_labels(3, (2, 2, 2)).repeat(32, axis=1).repeat(32, axis=2)  # (2, 64, 64): what stride 32 can draw
    return [(model, noise((64, 64, 3))[:2], quadrants, "loss")]


def detector_batch(name):
    from applications import rpn
    from applications import yolo
    from tests.test_applications_detection import ground_truth

    small = {"yolo_v2": (yolo, {"anchors": [[0.2, 0.3], [0.4, 0.4]], "stride": 16, "head_filters": 16}),
             "faster_rcnn": (rpn, {"anchor_sizes": [0.2, 0.4], "stride": 8, "head_units": 32, "train_proposals": 16,
                                   "rpn_filters": 16})}
    module, kwargs = small[name]
    model = applications.get(name)(input_shape=(64, 64, 3), num_classes=3, **kwargs)
    model.compile(optimizer=adam(name), loss=module.losses(model))
    boxes = ground_truth()
    return [(model, noise((64, 64, 3))[:2], {key: boxes for key in module.OUTPUTS} if module.OUTPUTS else boxes, "loss")]


def generator_batch(name):
    # A GAN's summed loss is a game, not a descent: each player overfits against the other held
    # still (its rate 0), the discriminator separating the batch from the samples, the generator
    # fooling that discriminator. The VAE's negative ELBO falls on binary pixels (its floor is 0).
    extra = {"conditional_dcgan": {"num_classes": 3}}.get(name, {})
    pixels = 255.0 * np.random.default_rng(0).integers(0, 2, (BATCH, 8, 8, 1)).astype("float32")
    trials = []
    for player in ("d_loss", "g_loss"):
        model = applications.get(name)(input_shape=(8, 8, 1), latent_dim=4, width=8, **extra)
        if not hasattr(model, "discriminator"):
            model.compile(optimizer=adam(name))
            return [(model, pixels, random_labels(3), "loss")]
        rates = (RATES.get(name, 1e-2), 0.0) if player == "d_loss" else (0.0, RATES.get(name, 1e-2))
        model.compile(optimizer=keras.optimizers.Adam(rates[1]),
                      discriminator_optimizer=keras.optimizers.Adam(rates[0]))
        trials.append((model, pixels, random_labels(3), player))
    return trials


def sentence_classifier_batch(name):
    from tests.test_applications_sentiment import SMALL
    from tests.test_applications_sentiment import token_ids

    model = applications.get(name)(40, 12, 3, **{**SMALL[name], "dropout_rate": 0.0})
    model.compile(optimizer=adam(name), loss=sparse_logits())
    return [(model, token_ids(BATCH), random_labels(3), "loss")]


def seq2seq_batch(name):
    from tests.test_applications_rnn_attention import SMALL
    from tests.test_applications_rnn_attention import SOURCE_VOCABULARY
    from tests.test_applications_rnn_attention import TARGET_VOCABULARY

    model = applications.get(name)(SOURCE_VOCABULARY, TARGET_VOCABULARY, **{**SMALL[name], "dropout_rate": 0.0})
    model.compile(optimizer=adam(name), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True, ignore_class=0))
    rng = np.random.default_rng(0)
    source = rng.integers(1, SOURCE_VOCABULARY, (BATCH, 6)).astype("int32")
    target = rng.integers(1, TARGET_VOCABULARY, (BATCH, 5)).astype("int32")
    return [(model, {"source": source, "target_in": target[:, :-1]}, target[:, 1:], "loss")]


def extractive_batch(name):
    from tasks.families import extractive

    model = applications.get(name)(50, max_sentences=6, max_sentence_tokens=8, embed_dim=16, units=16, dropout_rate=0.0)
    model.compile(optimizer=adam(name), loss=extractive.sentence_loss)
    tokens = np.random.default_rng(0).integers(1, 50, (BATCH, 6, 8)).astype("int32")
    return [(model, tokens, random_labels(2, (BATCH, 6)).astype("float32"), "loss")]


def language_model_batch(name):
    from tests.test_applications_text import SMALL
    from tests.test_applications_text import VOCABULARY_SIZE
    from tests.test_applications_text import tokens

    model = applications.get(name)(VOCABULARY_SIZE, 16, **{**SMALL[name], "dropout_rate": 0.0})
    model.compile(optimizer=adam(name), loss=sparse_logits())
    x = tokens(BATCH, 13)
    return [(model, x[:, :-1], x[:, 1:], "loss")]


def series_batch(name):
    small = {"conv_autoencoder": {"filters": 8, "latent_dim": 4}, "lstm_autoencoder": {"units": 16},
             "conv_forecaster": {"filters": 8, "num_blocks": 3}}
    model = applications.get(name)(window_length=8, **small[name])
    model.compile(optimizer=adam(name), loss="mse")
    steps = np.arange(9)
    series = np.sin(steps[None] / 3.0 + np.random.default_rng(0).uniform(0, 6, (BATCH, 1))).astype("float32")
    x = series[:, :8]
    return [(model, x, x if name != "conv_forecaster" else series[:, 8:], "loss")]


def graph_batch(name):
    from tasks.data import molecules

    graph_set = molecules.demo_molecules(num_molecules=BATCH, seed=1)
    small = {"mpnn": {"units": 16, "num_steps": 2}, "gin": {"units": 16, "num_layers": 2, "dropout_rate": 0.0},
             "gcn": {"units": 16}}
    model = applications.get(name)(graph_set.num_node_features, graph_set.num_edge_features, 1, **small[name])
    model.compile(optimizer=adam(name), loss="mse")
    targets = np.random.default_rng(1).normal(size=(BATCH, 1)).astype("float32")
    return [(model, molecules.union(graph_set.graphs), targets, "loss")]


ONE_BATCH = {
    "classifier": classifier_batch,
    "segmenter": segmenter_batch,
    "detector": detector_batch,
    "generator": generator_batch,
    "sentence_classifier": sentence_classifier_batch,
    "seq2seq": seq2seq_batch,
    "extractive": extractive_batch,
    "language_model": language_model_batch,
    "series": series_batch,
    "graph": graph_batch,
}
# Deep networks: building them and their few eager steps take 3-8 s on two idle cores (the rest 3 s at most).
OVERFIT_SLOW = {"densenet121", "densenet_bc100", "inception_v1", "resnet34", "resnet50", "resnet56", "resnet56_v2"}


def overfit_losses(name):
    """For each trial of `name`, the training losses of Adam steps on one fixed batch (each before its
    step's update: the first is the untrained control), until the loss is at most OVERFIT_FACTOR
    times the first or the step budget is spent."""
    keras.utils.set_random_seed(0)
    trials = ONE_BATCH[applications.kind_of(name)](name)
    found = []
    for model, x, y, key in trials:
        model.run_eagerly = True  # tracing a train step costs more than these few steps
        losses = [float(model.train_on_batch(x, y, return_dict=True)[key])]
        while len(losses) < STEPS.get(name, OVERFIT_STEPS) and losses[-1] > OVERFIT_FACTOR * losses[0]:
            losses.append(float(model.train_on_batch(x, y, return_dict=True)[key]))
        found.append(losses)
    return found


def test_every_kind_has_a_batch_to_overfit():
    assert set(ONE_BATCH) == set(registry.KINDS)


@pytest.mark.parametrize("name", [
    pytest.param(name, marks=[pytest.mark.slow] if name in OVERFIT_SLOW else []) for name in applications.names()])
def test_every_builder_overfits_one_batch(name):
    for losses in overfit_losses(name):
        assert np.isfinite(losses).all() and losses[-1] <= OVERFIT_FACTOR * losses[0], losses


def test_a_builder_whose_output_ignores_its_input_does_not_overfit(monkeypatch):
    """The guard of the test above: a classifier that zeroes its input learns only its bias (the
    labels' frequencies), which cannot halve the loss."""
    monkeypatch.setattr(registry, "_BUILDERS", dict(registry._BUILDERS))
    monkeypatch.setattr(registry, "_KINDS", dict(registry._KINDS))

    @registry.register(kind="classifier")
    def blind_classifier(input_shape=(8, 8, 1), num_classes=4):
        inputs = keras.Input(input_shape)
        x = keras.layers.Flatten()(keras.layers.Rescaling(0.0)(inputs))
        return keras.Model(inputs, keras.layers.Dense(num_classes, activation="softmax")(x))

    (losses,) = overfit_losses("blind_classifier")
    assert len(losses) == OVERFIT_STEPS and losses[-1] > OVERFIT_FACTOR * losses[0]
