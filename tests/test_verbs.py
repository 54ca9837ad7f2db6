"""The verbs against what they read, for every task: `evaluate` repeats the metrics.json of the run
it finds, and `predict` prints what the exported SavedModel answers when its signature is called
directly (plain `tf.saved_model.load`) on the same inputs.

A task's verb is tested once in the suite: here, or in the task's own module where that module
already trains a run for it. `test_every_task_has_its_evaluate_checked` and
`test_every_task_has_its_predict_checked` run over `tasks.TASKS`, so a new task must be added to
one side or the other:

| task | evaluate == metrics.json | predict == the SavedModel |
|---|---|---|
| classification | test_classification.py | test_classification.py |
| detection | here | here |
| segmentation | here | here |
| image_generation | test_image_generation.py (FID with a given classifier) | here |
| sentiment | test_sentiment.py | here |
| summarization | test_summarization.py (extractive) | here (extractive) |
| translation | here (slow) | here (slow) |
| text_generation | here | here |
| anomaly_detection | here | test_predict.py |
| graph_property | here | test_graph_property.py (against the Keras model) |

Each task evaluated here trains its demo for one epoch at tiny settings, in process, once; its
predict check runs on that run's export. A task checked here for predict only exports its
untrained demo network (`tests.test_export_formats.export_task`): predict's plumbing does not
depend on the weights. Two guards show the comparisons fail: `evaluate` of a perturbed model,
and `predict` of another export version than the one called directly.
"""

import dataclasses
import functools
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from unittest import mock

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import tasks
from tasks.core import export
from tasks.core import runner
from tasks.core.runs import Run
from tests.conftest import REPO
from tests.helpers import run_cli
from tests.helpers import run_in_process
from tests.test_export_formats import built
from tests.test_export_formats import export_task
from tests.test_export_formats import reload_in_this_process

# Where another module checks the verb for a task (file, test function).
EVALUATED_ELSEWHERE = {
    "classification": ("test_classification.py", "test_evaluate_finds_the_run_and_repeats_its_metrics"),
    "image_generation": ("test_image_generation.py", "test_evaluate_with_a_given_classifier_run_and_export"),
    "sentiment": ("test_sentiment.py", "test_evaluate_keeps_the_runs_vocabulary_and_reproduces_its_metrics"),
    "summarization": ("test_summarization.py", "test_extractive_evaluate_reproduces_the_runs_metrics"),
}
PREDICTED_ELSEWHERE = {
    "classification": ("test_classification.py", "test_predict_prints_the_saved_models_labels_and_draws"),
    "anomaly_detection": ("test_predict.py", "test_the_savedmodel_and_predict_flag_the_same_rows"),
    "graph_property": ("test_graph_property.py", "test_predict_featurizes_smiles_like_training_and_matches_keras"),
}
# One epoch of each demo at these settings (every other field at its default).
TINY = {
    "detection": {"image_size": 64, "max_detections": 10, "score_threshold": 0.0},
    "segmentation": {"width": 8, "depth": 2},
    "translation": {"num_layers": 1, "embed_dim": 32, "num_heads": 2, "vocabulary_size": 300, "max_source_length": 24,
                    "max_target_length": 16, "train_limit": 400, "test_limit": 16, "beam_width": 2},
    "text_generation": {"steps_per_epoch": 8, "batch_size": 16, "sequence_length": 32, "num_layers": 1,
                        "embed_dim": 32, "num_heads": 2, "sample_length": 20},
    # The network in the score (the default recipe is statistics only) and alone (no fingerprint
    # blend): evaluate then depends on the saved model, as the guard below needs.
    "anomaly_detection": {"window_length": 32, "filters": 8, "max_plots": 0, "network_score": True},
    "graph_property": {"units": 16, "num_steps": 2, "hybrid": False},
}
# The untrained exports of the tasks checked here for predict only.
UNTRAINED = {
    "image_generation": {},
    "sentiment": {"embed_dim": 16, "sequence_length": 24},
    "summarization": {"model": "extractive_summarizer", "embed_dim": 16, "units": 16, "max_sentences": 12,
                      "max_sentence_tokens": 12, "hash_buckets": 1024},
}
# Encoder-decoder demo: training and tracing greedy and beam decoding take 30-50 s on two shared
# cores, and its predict check runs in fresh processes.
SLOW = {"translation"}
EVALUATED = [task for task in tasks.TASKS if task in TINY]
PREDICTED = ["detection", "segmentation", "image_generation", "sentiment", "summarization", "translation",
             "text_generation"]


def params(names, *marks):
    """`names` as parameters, the SLOW ones marked slow (and with `marks`)."""
    return [pytest.param(task, marks=[pytest.mark.slow, *marks] if task in SLOW else []) for task in names]


def module_of(task):
    return importlib.import_module(f"tasks.{task}")


# === Coverage over every task ===


def defines_test(file, name):
    return re.search(rf"^def {name}\(", (REPO / "tests" / file).read_text(), re.MULTILINE) is not None


@pytest.mark.parametrize("task", tasks.TASKS)
def test_every_task_has_its_evaluate_checked(task):
    assert (task in EVALUATED) != (task in EVALUATED_ELSEWHERE), task
    if task in EVALUATED_ELSEWHERE:
        assert defines_test(*EVALUATED_ELSEWHERE[task]), EVALUATED_ELSEWHERE[task]


@pytest.mark.parametrize("task", tasks.TASKS)
def test_every_task_has_its_predict_checked(task):
    assert (task in PREDICTED) != (task in PREDICTED_ELSEWHERE), task
    if task in PREDICTED_ELSEWHERE:
        assert defines_test(*PREDICTED_ELSEWHERE[task]), PREDICTED_ELSEWHERE[task]


# === One run or export per task, made on first use ===


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("verbs")


@functools.lru_cache(maxsize=None)
def trained(task, root):
    """(config, run folder) of the task's demo trained for one epoch and exported under `root`."""
    module = module_of(task)
    folder = root / task
    config = module.Config(epochs=1, verbose=0, run_name="verbs", runs_dir=str(folder / "runs"),
                           export_dir=str(folder / "saved_models"), **TINY[task])
    with mock.patch.object(export, "_fresh_process", reload_in_this_process):
        module.train(config)
    return config, folder / "runs" / task / "verbs"


def export_root(task, root):
    """The export root `predict` reads for `task`: of its trained run, or of its untrained network."""
    if task in TINY:
        trained(task, root)
        return root / task / "saved_models" / task
    with mock.patch.object(export, "_fresh_process", reload_in_this_process):
        path, *_ = export_task(task, "saved_model", root / task, **UNTRAINED[task])
    return path.parent


# === evaluate ===

def printed_report(stdout):
    """{key: {"value": number, column: number}} of the metric lines `evaluate` printed: two spaces,
    the key and its value, then a name and a number per baseline (`baseline 0.5   unigram 0.4`)."""
    found = {}
    for line in stdout.splitlines():
        tokens = line.split()
        if not line.startswith("  ") or len(tokens) < 2 or len(tokens) % 2:
            continue
        try:
            values = [float(token) for token in tokens[1::2]]
        except ValueError:
            continue  # not a metric line
        found[tokens[0]] = dict(zip(["value", *tokens[2::2]], values))
    return found


def timing(key):
    """A speed measured while evaluating (`beam_sentences_per_second`): no run repeats it."""
    return "per_second" in key or key.endswith("seconds")


def numbers(record):
    """{dotted key: number} of every number in a nested dict (counts and floats, not booleans or timings)."""
    flat = {}
    for key, value in record.items():
        if isinstance(value, dict):
            flat.update({f"{key}.{inner}": number for inner, number in numbers(value).items()})
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and not timing(key):
            flat[key] = float(value)
    return flat


def differences(record, stdout, again):
    """What `evaluate` printed (`stdout`) and wrote (`again`) that differs from the run's `record`."""
    found = []
    want = numbers({"metrics": record["metrics"], "baseline": record["baseline"]})
    got = numbers({"metrics": again["metrics"], "baseline": again["baseline"]})
    if set(want) != set(got):
        found.append(f"keys {sorted(set(want) ^ set(got))}")
    for key in sorted(set(want) & set(got)):
        if not (np.isnan(want[key]) and np.isnan(got[key])) and got[key] != pytest.approx(want[key], rel=1e-5, abs=1e-6):
            found.append(f"metrics.json {key}: {got[key]} != {want[key]}")
    printed = printed_report(stdout)
    for key, value in record["metrics"].items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or timing(key):
            continue
        if key not in printed:
            found.append(f"printed: no line for {key}")
            continue
        columns = printed[key]
        if columns["value"] != pytest.approx(value, abs=1.5e-4):  # printed with 4 decimals
            found.append(f"printed {key}: {columns['value']} != {value}")
        if isinstance(record["baseline"].get(key), (int, float)) and "baseline" not in columns:
            found.append(f"printed {key}: no baseline column")
        for column, shown in columns.items():
            if column == "value":
                continue
            expected = record["baseline"] if column == "baseline" else record["baseline"].get(column)
            expected = expected.get(key) if isinstance(expected, dict) else None
            if not isinstance(expected, (int, float)) or shown != pytest.approx(expected, abs=1.5e-4):
                found.append(f"printed {column} {key}: {shown} != {expected}")
    return found


def evaluate_verb(task, config, capsys, runs_dir):
    """`python -m tasks.<task> evaluate --runs-dir RUNS --run-name verbs --verbose 1`, in process."""
    result = run_in_process(module_of(task), capsys, runs_dir.parent, "evaluate", "--runs-dir", runs_dir,
                            "--run-name", config.run_name, "--verbose", "1")
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("task", params(EVALUATED))
def test_evaluate_repeats_the_runs_metrics(task, workdir, capsys):
    config, run = trained(task, workdir)
    record = json.loads((run / "metrics.json").read_text())
    stdout = evaluate_verb(task, config, capsys, run.parent.parent)
    again = json.loads((run / "metrics.json").read_text())
    assert printed_report(stdout), stdout[-2000:]
    assert differences(record, stdout, again) == []


def test_evaluate_of_a_perturbed_model_is_caught(workdir, tmp_path, capsys, monkeypatch):
    """The guard of the test above: a run whose saved model is not the one metrics.json measured."""
    config, run = trained("text_generation", workdir)
    runs_dir = tmp_path / "runs"
    shutil.copytree(run.parent.parent, runs_dir)  # the shared run stays as it was
    record = json.loads((run / "metrics.json").read_text())
    load_run = runner.load_run

    def perturbed(module, config):
        found, model, info = load_run(module, config)
        for variable in model.trainable_variables:
            variable.assign(variable + np.random.default_rng(0).normal(0.0, 0.5, variable.shape))
        return found, model, info

    monkeypatch.setattr(runner, "load_run", perturbed)
    stdout = evaluate_verb("text_generation", config, capsys, runs_dir)
    again = json.loads((runs_dir / "text_generation" / config.run_name / "metrics.json").read_text())
    found = differences(record, stdout, again)
    assert any(line.startswith("metrics.json metrics.") for line in found), found
    assert any(line.startswith("printed ") for line in found), found


# === predict ===


def signatures(version):
    """The signatures of the SavedModel in `version`, loaded as a server would."""
    import tensorflow_text  # noqa: F401  (the WordPiece and SentencePiece ops of the text exports)

    return tf.saved_model.load(str(version)).signatures


def predict_verb(task, capsys, workdir, root, *args):
    result = run_in_process(module_of(task), capsys, workdir, "predict", "--model", root, "--output", "out", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def scene(tmp_path):
    from tasks.data import boxes

    path = tmp_path / "scene.png"
    Image.fromarray(boxes.demo_scenes(num_train=1, num_test=1, seed=3).splits["test"].images[0]).save(path)
    return path


def detection_answers(root, version, tmp_path, capsys):
    picture = scene(tmp_path)
    lines = predict_verb("detection", capsys, tmp_path, root, "--min-score", "0", picture).splitlines()
    header, rows = lines[0].split("\t"), [line.strip().split("\t") for line in lines[1:]]
    printed = [(header[0], header[1], int(header[2].split()[0]))]
    printed += [(name, float(score), *map(float, box.split(","))) for name, score, box in rows]
    out = signatures(version)["serving_default"](image_bytes=tf.constant([picture.read_bytes()]))
    count = int(out["num_detections"][0])
    direct = [(str(picture), "128x128", count)]
    for name, score, box in zip(out["class_names"].numpy()[0, :count], out["scores"].numpy()[0, :count],
                                out["boxes"].numpy()[0, :count]):
        direct.append((name.decode(), float(score), *map(float, box)))
    return printed, direct, {float: 5e-4 + 0.5}  # scores to 3 decimals, boxes to whole pixels


def segmentation_answers(root, version, tmp_path, capsys):
    from tasks.data import masks

    picture = tmp_path / "shapes.png"
    Image.fromarray(masks.demo_shapes(num_train=1, num_test=1, size=80).splits["test"].images[0]).save(picture)
    (line,) = predict_verb("segmentation", capsys, tmp_path, root, picture).splitlines()
    name, size, shares = line.split("\t")
    mask = np.asarray(Image.open(tmp_path / "out" / "shapes_mask.png"))  # palette indices: class ids
    printed = [(name, size, shares), mask.ravel().tolist()]
    loaded = tf.saved_model.load(str(version))
    out = loaded.signatures["serving_default"](image_bytes=tf.constant([picture.read_bytes()]))
    height, width = int(out["height"][0]), int(out["width"][0])
    class_map = out["class_map"].numpy()[0, :height, :width]
    names = (version / "assets" / "labels.txt").read_text().split()
    fractions = np.bincount(class_map.ravel(), minlength=len(names)) / class_map.size
    listed = ", ".join(f"{names[i]} {share:.1%}" for i, share in enumerate(fractions) if share > 0)
    return printed, [(str(picture), f"{width}x{height}", listed), class_map.ravel().tolist()], {}


def image_generation_answers(root, version, tmp_path, capsys):
    from tasks import image_generation

    predict_verb("image_generation", capsys, tmp_path, root, "all", "--num-images", "2", "--seed", "1")
    grid = np.asarray(Image.open(tmp_path / "out" / "samples_all.png"))
    info = json.loads((version / "assets" / "info.json").read_text())
    num_classes = len(info["class_names"])
    out = signatures(version)["sample"](num_images=tf.constant(2 * num_classes), seed=tf.constant(1),
                                       class_id=tf.constant(-1))
    mosaic = image_generation.tile(out["images"].numpy(), num_classes, image_generation.display_scale(info["image_shape"]))
    return grid.ravel().tolist(), mosaic[..., 0].ravel().tolist(), {}


def sentiment_answers(root, version, tmp_path, capsys):
    sentences = ["the cast was brilliant", "the script is dull and the ending drags"]
    rows = [line.split("\t") for line in predict_verb("sentiment", capsys, tmp_path, root, *sentences).splitlines()]
    out = signatures(version)["serving_default"](sentences=tf.constant(sentences))
    direct = [(label.decode(), float(score), sentence)
              for label, score, sentence in zip(out["label"].numpy(), out["score"].numpy(), sentences)]
    return [(label, float(score), sentence) for label, score, sentence in rows], direct, {float: 5e-5}


def summarization_answers(root, version, tmp_path, capsys):
    document = ("The mayor travelled to york on monday. Crowds gathered outside the hall. "
                "There the mayor met the police. The meeting ended late in the evening.")
    printed = predict_verb("summarization", capsys, tmp_path, root, "--sentences", "2", document).strip()
    out = signatures(version)["select"](text=tf.constant([document]), sentences=tf.constant(2))
    return printed, out["summary"].numpy()[0].decode(), {}


# Translation exports of one process share their SentencePiece resource, and a collected one takes
# it from the others: the translation checks each run in a fresh process, as a user runs them.
TRANSLATE = (
    "import json, sys, tensorflow as tf, tensorflow_text\n"
    "loaded = tf.saved_model.load(sys.argv[1]).signatures; texts = tf.constant(json.loads(sys.argv[2]))\n"
    "greedy = loaded['serving_default'](text=texts)['translation'].numpy()\n"
    "beam = loaded['beam'](text=texts, beam_width=tf.constant(2), length_penalty=tf.constant(0.6),\n"
    "                      max_length=tf.constant(16))['translation'].numpy()\n"
    "print(json.dumps([[text.decode() for text in greedy], [text.decode() for text in beam]]))\n"
)


def translation_answers(root, version, tmp_path, capsys):
    texts = ["Jan 5 1999", "the third of march, nineteen ninety-seven"]
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    direct = subprocess.run([sys.executable, "-c", TRANSLATE, str(version), json.dumps(texts)], capture_output=True,
                            text=True, env=environment, check=True)
    printed = []
    for flags in ([], ["--beam-width", "2"]):
        result = run_cli("translation", "predict", "--model", root, *flags, *texts, cwd=tmp_path)
        assert result.returncode == 0, result.stderr[-3000:]
        printed.append(result.stdout.splitlines())
    outputs = json.loads(direct.stdout.strip().splitlines()[-1])
    return printed, [[f"input {number}\t{text}" for number, text in enumerate(texts, 1)] for texts in outputs], {}


def text_generation_answers(root, version, tmp_path, capsys):
    prompts = ["The king", "O"]
    stdout = predict_verb("text_generation", capsys, tmp_path, root, "--max-new-tokens", "12", "--temperature", "0.9",
                          "--top-k", "5", "--seed", "3", *prompts)
    printed = [block.split("\n", 1)[1].rstrip("\n") for block in stdout.split("=== prompt ")[1:]]
    generate = signatures(version)["serving_default"]
    direct = [generate(prompt=tf.constant([prompt]), max_new_tokens=tf.constant(12), temperature=tf.constant(0.9),
                       top_k=tf.constant(5), top_p=tf.constant(1.0), seed=tf.constant(3))["text"].numpy()[0].decode()
              for prompt in prompts]
    return printed, direct, {}


ANSWERS = {
    "detection": detection_answers,
    "segmentation": segmentation_answers,
    "image_generation": image_generation_answers,
    "sentiment": sentiment_answers,
    "summarization": summarization_answers,
    "translation": translation_answers,
    "text_generation": text_generation_answers,
}


def assert_same(printed, direct, tolerance):
    """Equal structures; floats within `tolerance[float]` (what printing rounds away), the rest exactly."""
    if isinstance(direct, float):
        assert printed == pytest.approx(direct, abs=tolerance.get(float, 0.0))
    elif isinstance(direct, (list, tuple)):
        assert len(printed) == len(direct), (printed, direct)
        for one, other in zip(printed, direct):
            assert_same(one, other, tolerance)
    else:
        assert printed == direct


def test_every_predicted_task_has_its_answers_and_its_export():
    assert set(ANSWERS) == set(PREDICTED)
    assert all((task in TINY) != (task in UNTRAINED) for task in PREDICTED)


@pytest.mark.parametrize("task", params(PREDICTED, pytest.mark.subprocess))
def test_predict_prints_the_saved_models_answers(task, workdir, tmp_path, capsys):
    root = export_root(task, workdir)
    printed, direct, tolerance = ANSWERS[task](root, export.resolve(root), tmp_path, capsys)
    assert printed and direct
    assert_same(printed, direct, tolerance)


def test_predict_of_another_version_is_caught(tmp_path, capsys):
    """The guard of the test above: predict runs the newest export, here the same network with
    perturbed weights, while the direct call runs the first."""
    with mock.patch.object(export, "_fresh_process", reload_in_this_process):
        first, module, model, info = export_task("sentiment", "saved_model", tmp_path, **UNTRAINED["sentiment"])
        _, config, _, _ = built("sentiment", **UNTRAINED["sentiment"])
        weights = [variable.numpy() for variable in model.trainable_variables]
        (tmp_path / "perturbed").mkdir()
        try:
            for variable in model.trainable_variables:
                variable.assign(variable + np.random.default_rng(0).normal(0.0, 0.5, variable.shape))
            newer = runner.export(module, model, info, dataclasses.replace(config, export_dir=str(tmp_path / "saved_models")),
                                  Run("sentiment", tmp_path / "perturbed"))
        finally:
            for variable, value in zip(model.trainable_variables, weights):
                variable.assign(value)
    assert export.resolve(first.parent) == newer != first
    printed, direct, tolerance = sentiment_answers(first.parent, first, tmp_path, capsys)
    with pytest.raises(AssertionError):
        assert_same(printed, direct, tolerance)
