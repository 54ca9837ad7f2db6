"""Sentiment: splits and folds, tokens, metrics and baselines, pretraining, export and predict, bad input, MR polarity."""

import dataclasses
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import tasks.core.training  # noqa: F401  (registers LearningRateCurve for load_model)
from tasks import sentiment as st
from tasks.core import cli
from tasks.core import export
from tasks.core import runner
from tasks.core.errors import UserError
from tasks.core.runs import Run
from tasks.data import text as text_readers
from tests import helpers
from tests.conftest import REPO
from tests.helpers import assert_one_line_error

# A small TextCNN on the demo sentences: seconds, enough to exercise every verb.
TINY = {"epochs": 3, "embed_dim": 32, "sequence_length": 24, "learning_rate": 3e-3, "verbose": 0}


def tiny_config(tmp_path, **overrides):
    return st.Config(runs_dir=str(tmp_path / "runs"), export_dir=str(tmp_path / "saved_models"),
                     **{**TINY, **overrides})


def write(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8"))
    return path


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory):
    """One training run on the demo sentences (in process) and its export."""
    workdir = tmp_path_factory.mktemp("sentiment")
    config = tiny_config(workdir)
    model = st.train(config)
    return workdir, config, model


# === Splits, folds and tokens ===


def test_folds_are_stratified_disjoint_and_cover_everything():
    labels = np.array([0] * 30 + [1] * 20)
    folds = st.fold_of(labels, 5, seed=0)
    for fold in range(5):
        members = labels[folds == fold]
        assert len(members) == 10 and (members == 0).sum() == 6  # every fold keeps the 60/40 mix
    assert not np.array_equal(folds, st.fold_of(labels, 5, seed=1))


def test_make_splits_holds_out_the_fold_then_a_validation_share():
    found = text_readers.demo_sentences(num_per_class=50)
    config = st.Config(folds=5, fold=2, validation_fraction=0.1)
    splits = st.make_splits(found, config)
    texts = found.splits["train"][0]
    expected_test = {texts[i] for i in np.flatnonzero(st.fold_of(
        [found.class_names.index(label) for label in found.splits["train"][1]], 5, 0) == 2)}
    assert set(splits["test"][0]) == expected_test and len(splits["test"][0]) == 20
    assert len(splits["validation"][0]) == 8 and len(splits["train"][0]) == 72
    assert not set(splits["train"][0]) & set(splits["test"][0])
    with pytest.raises(UserError, match="--fold in 0..4"):
        st.make_splits(found, st.Config(folds=5, fold=5))


def test_vocabulary_comes_from_the_training_split_and_long_sentences_are_truncated():
    config = st.Config(sequence_length=6, vocabulary_size=50)
    info = st.learn_vocabulary(config, ["A great film!", "a dull film", "great"])
    assert info["vocabulary"][:3] == ["[PAD]", "[UNK]", "[MASK]"] and "!" in info["vocabulary"]
    # Deterministic (frequency, then the token breaks ties).
    assert st.learn_vocabulary(config, ["great", "a dull film", "A great film!"]) == info
    tokenizer = st.Tokenizer(info)
    ids, counts = tokenizer.numpy(["great FILM", "unseen words", "great " * 10, ""])
    vocabulary = info["vocabulary"]
    assert [vocabulary[i] for i in ids[0, :2]] == ["great", "film"] and ids[0, 2:].tolist() == [0] * 4
    assert ids[1, :2].tolist() == [1, 1]  # words not in the training split: [UNK]
    assert counts.tolist() == [2, 2, 10, 0] and ids[2].tolist() == [vocabulary.index("great")] * 6
    assert ids.shape == (4, 6) and ids[3].tolist() == [0] * 6


def test_ngram_bags_hold_word_and_character_ngrams_of_the_kept_words():
    config = st.Config(tokenizer="ngrams", sequence_length=3, vocabulary_size=10_000)
    info = st.learn_vocabulary(config, ["A great film!", "a dull film"])
    vocabulary = info["vocabulary"]
    assert vocabulary[:3] == ["[PAD]", "[UNK]", "[MASK]"] and {"a great film", "great film", "dull"} <= set(vocabulary)
    assert "!" not in vocabulary and "film !" not in vocabulary  # the 4th word is cut before n-grams are formed
    assert st.CHAR_MARK + "t f" in vocabulary and "t f" not in vocabulary  # characters span words; marked apart
    ids, counts = st.Tokenizer(info).numpy(["great FILM", "zzz", "a great film ! and more"])
    assert counts.tolist() == [2, 1, 6]  # words, before truncation
    text = "great film"
    chars = {st.CHAR_MARK + text[i:i + n] for n in st.CHAR_NGRAMS for i in range(len(text) - n + 1)}
    assert [vocabulary[i] for i in ids[0] if i] == ["great", "film", "great film"] + sorted(
        chars, key=lambda gram: (len(gram), text.index(gram[1:])))
    assert sorted(ids[1][ids[1] > 0].tolist()) == [1, 1]  # the word zzz and the characters zzz: unknown
    assert ids.shape[1] == max(int((row > 0).sum()) for row in ids)  # padded to the longest bag, no further
    # A capped vocabulary keeps the n-grams in most sentences (ties by the n-gram).
    capped = st.learn_vocabulary(dataclasses.replace(config, vocabulary_size=8), ["A great film!", "a dull film"])
    assert capped["vocabulary"] == vocabulary[:8]
    # The default (0) keeps every n-gram; words and pieces default to 20,000.
    every = st.learn_vocabulary(dataclasses.replace(config, vocabulary_size=0), ["A great film!", "a dull film"])
    assert every["vocabulary"] == vocabulary
    assert st.vocabulary_limit(st.Config()) == st.vocabulary_limit(st.Config(tokenizer="wordpiece")) == 20000
    assert st.vocabulary_limit(st.Config(tokenizer="ngrams")) is None


def test_wordpiece_vocabulary_splits_unseen_words_into_pieces():
    texts = text_readers.demo_sentences(num_per_class=200).splits["train"][0]
    info = st.learn_vocabulary(st.Config(tokenizer="wordpiece", vocabulary_size=200, sequence_length=16), texts)
    assert info["vocabulary"][:3] == ["[PAD]", "[UNK]", "[MASK]"] and len(info["vocabulary"]) <= 200
    ids, counts = st.Tokenizer(info).numpy(["the moviesoundtrack was charming"])
    assert counts[0] > 4 and 1 not in ids[0, :counts[0]]  # an unseen compound word becomes known pieces


def test_load_data_states_truncation_and_refuses_empty_lines(tmp_path, capsys):
    write(tmp_path / "mr" / "rt.pos", "good fun\n" * 20 + " ".join(["great"] * 5000) + "\n")
    write(tmp_path / "mr" / "rt.neg", "dull mess\n" * 20)
    data = st.load_data(st.Config(data=str(tmp_path / "mr"), sequence_length=8, test_fraction=0.2, verbose=1))
    truncated = data.info["truncated"]
    assert sum(truncated.values()) == 1 and data.train_ids.shape[1] == 8
    # The note names training sentences only: it is printed exactly when the long one landed in train.
    assert ("truncated to their first 8 tokens" in capsys.readouterr().out) == bool(truncated["train"])
    write(tmp_path / "gaps" / "rt.pos", "good\n\nfun\n" * 5)
    write(tmp_path / "gaps" / "rt.neg", "bad\n" * 10)
    with pytest.raises(UserError, match=r"rt.pos line 2: empty text"):
        st.load_data(st.Config(data=str(tmp_path / "gaps")))
    data = st.load_data(st.Config(data=str(tmp_path / "gaps"), skip_bad=True, verbose=0))
    assert len(data.info["skipped"]) == 5 and data.info["num_train"] + data.info["num_validation"] + data.info["num_test"] == 20


# === Metrics and baselines ===


def test_metrics_match_hand_computed_values():
    labels = np.array([0, 0, 1, 1, 1])
    p1 = np.array([0.2, 0.6, 0.7, 0.4, 0.9])
    result = st.classification_metrics(labels, np.stack([1 - p1, p1], axis=1), 2)
    assert result["accuracy"] == pytest.approx(0.6)  # predicted 0, 1, 1, 0, 1
    # Class 0: P = 1/2, R = 1/2 → F1 0.5; class 1: P = 2/3, R = 2/3 → F1 2/3.
    assert result["macro_f1"] == pytest.approx((0.5 + 2 / 3) / 2)
    # ROC-AUC: share of (positive, negative) pairs ranked right: (2 + 1 + 2) / 6.
    assert result["roc_auc"] == pytest.approx(5 / 6)
    assert result["loss"] == pytest.approx(-np.mean(np.log([0.8, 0.4, 0.7, 0.4, 0.9])))


def test_tfidf_baseline_learns_word_pairs():
    train = ["not good", "not good at all", "good", "really good", "not bad", "bad", "really bad", "not bad at all"]
    labels = np.array([0, 0, 1, 1, 1, 0, 0, 1])
    probabilities, classes = st.tfidf_logistic_regression(train * 5, np.tile(labels, 5), ["not good", "good"])
    assert classes.tolist() == [0, 1] and probabilities[0, 1] < 0.5 < probabilities[1, 1]


# === The task end to end on the demo sentences ===


def test_train_writes_metrics_beside_both_baselines_and_an_export(demo_export):
    workdir, _, _ = demo_export
    (run,) = (workdir / "runs" / "sentiment").iterdir()
    record = json.loads((run / "metrics.json").read_text())
    for key in ("accuracy", "macro_f1", "roc_auc"):
        assert key in record["metrics"] and key in record["baseline"] and key in record["baseline"]["majority"]
    assert record["baseline"]["name"].startswith("TF-IDF") and record["baseline"]["majority"]["accuracy"] == 0.5
    assert record["metrics"]["accuracy"] > 0.8  # the demo grammar is easy
    assert (run / "plots" / "confusion_matrix.png").is_file()
    version = workdir / "saved_models" / "sentiment" / "1"
    assert (version / "assets" / "labels.txt").read_text() == "neg\npos\n"


def test_the_printed_baseline_columns_are_labelled(demo_export, capsys):
    workdir, config, _ = demo_export
    (run,) = (workdir / "runs" / "sentiment").iterdir()
    record = json.loads((run / "metrics.json").read_text())
    runner.report(record, dataclasses.replace(config, verbose=1))
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].endswith("(baseline: TF-IDF (1-2 grams) + logistic regression)")
    accuracy = next(line.split() for line in lines if line.split()[0] == "accuracy")
    assert accuracy[2::2] == ["baseline", "majority"]
    assert float(accuracy[5]) == record["baseline"]["majority"]["accuracy"] == 0.5


def test_cross_validation_folds_are_runs_named_after_the_summary_run(tmp_path, monkeypatch):
    config = tiny_config(tmp_path, folds=3)
    names = []

    def fold_run(module, fold_config, fresh=False):  # records where the fold would train
        names.append(Run.for_config("sentiment", fold_config).path.name)
        return {"metrics": {"accuracy": 0.9}, "baseline": {"accuracy": 0.8, "name": "TF-IDF"}}

    monkeypatch.setattr(runner, "train_fold", fold_run)
    st.train(config)
    summary_run = Run.for_config("sentiment", config).path
    assert names == [f"{summary_run.name}-fold{fold}" for fold in range(3)]
    assert (summary_run / "cv.json").is_file()


def test_evaluate_keeps_the_runs_vocabulary_and_reproduces_its_metrics(demo_export, monkeypatch):
    workdir, config, _ = demo_export
    (run,) = (workdir / "runs" / "sentiment").iterdir()
    trained = json.loads((run / "metrics.json").read_text())["metrics"]

    def relearn(*args, **kwargs):
        raise AssertionError("evaluate learned the vocabulary again")

    monkeypatch.setattr(st, "learn_vocabulary", relearn)
    flags = ["--runs-dir", config.runs_dir, "--export-dir", config.export_dir, "--epochs", "3", "--embed-dim", "32",
             "--sequence-length", "24", "--learning-rate", "3e-3", "--verbose", "0"]
    assert cli.main(st, ["evaluate", *flags]) == 0
    evaluated = json.loads((run / "metrics.json").read_text())["metrics"]
    assert evaluated["accuracy"] == pytest.approx(trained["accuracy"], abs=1e-6)


def test_the_signature_returns_probabilities_labels_and_truncation(demo_export):
    workdir, _, model = demo_export
    _, classify, info = st.load_exported(workdir / "saved_models" / "sentiment")
    sentences = ["the plot was truly wonderful", "the acting was awful", "", "dull " * 100]
    out = classify(sentences=tf.constant(sentences))
    probabilities = out["probabilities"].numpy()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert [label.decode() for label in out["label"].numpy()[:2]] == ["pos", "neg"]
    assert out["truncated"].numpy().tolist() == [False, False, False, True]
    assert out["num_tokens"].numpy().tolist() == [5, 4, 0, 100]
    ids, _ = st.Tokenizer(info)(tf.constant(sentences))
    expected = tf.nn.softmax(model(ids, training=False)).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=1e-5)  # the export is the Keras model


def test_predict_reads_sentences_and_files_and_states_what_it_skips(demo_export, tmp_path, capsys):
    workdir, _, _ = demo_export
    lines = write(tmp_path / "reviews.txt", "the cast was brilliant\n\nthe script is dull\n" + "boring " * 200 + "\n")
    st.predict(["the ending was not boring", str(lines)], workdir / "saved_models" / "sentiment")
    captured = capsys.readouterr()
    rows = [line.split("\t") for line in captured.out.strip().splitlines()]
    assert len(rows) == 4 and rows[0][2] == "the ending was not boring" and rows[2][2] == "the script is dull"
    assert rows[1][0] == "pos" and rows[2][0] == "neg"
    assert "skipped 1 empty line(s)" in captured.err
    assert "1 sentence(s) longer than 24 tokens were truncated to their first 24 tokens" in captured.err


@pytest.mark.parametrize(
    "inputs, words",
    [
        (["missing_reviews.txt"], ["missing_reviews.txt: no such file"]),
        (["good film", "  "], ["input 2 is an empty sentence"]),
    ],
)
def test_predict_bad_inputs_are_one_line_errors(demo_export, inputs, words, capsys):
    workdir, _, _ = demo_export
    with pytest.raises(SystemExit) as raised:
        cli.main(st, ["predict", "--model", str(workdir / "saved_models" / "sentiment"), *inputs])
    assert raised.value.code == 2
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("error:")]
    assert len(err) == 1 and all(word in err[0] for word in words), err


def test_predict_refuses_non_utf8_input_files(demo_export, tmp_path):
    workdir, _, _ = demo_export
    path = write(tmp_path / "latin.txt", "a caf\xe9 film\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"latin.txt: byte 0xe9 at offset 5 is not valid utf-8"):
        st.predict([str(path)], workdir / "saved_models" / "sentiment")


# === Bad data and settings fail before anything is written ===


@pytest.mark.parametrize(
    "content, overrides, message",
    [
        ("text,label\ngood,pos\nfine,pos\nnice,pos\n", {}, r"single class \('pos'\)"),
        ("text,label\ngood,pos\nbad,neg\nhmm,meh\n", {"class_names": "neg,pos"}, r"line 4: unknown label 'meh'"),
        (b"text,label\ngood,pos\nbad \xe9,neg\n", {}, r"byte 0xe9 at offset 24 is not valid utf-8"),
        ("text,label\ngood,pos\nbad,neg\n", {"model": "resnet20"}, "not a sentence classifier"),
        ("text,label\ngood,pos\nbad,neg\n", {"pretrain_epochs": 1}, "--pretrain-epochs applies to the BERT models"),
        ("text,label\ngood,pos\nbad,neg\n", {"model": "nb_ngrams"}, "reads a bag of n-grams: add --tokenizer ngrams"),
        ("text,label\ngood,pos\nbad,neg\n", {"tokenizer": "ngrams"}, "--model text_cnn needs --tokenizer word"),
        ("text,label\ngood,pos\nbad,neg\n", {"fold": 1}, "--fold needs --folds"),
        ("text,label\ngood,pos\nbad,neg\n", {"vocabulary_size": 5}, r"--vocabulary-size 5 is too small: use 0"),
    ],
)
def test_bad_data_and_settings_fail_before_training(tmp_path, content, overrides, message):
    path = write(tmp_path / "data.csv", content)
    with pytest.raises(UserError, match=message):
        st.train(tiny_config(tmp_path, data=str(path), **overrides))
    assert not (tmp_path / "runs").exists()


@pytest.mark.subprocess
def test_cli_non_utf8_data_and_a_missing_file_are_one_line_errors(tmp_path):
    write(tmp_path / "mr" / "rt-polarity.pos", "a charming caf\xe9 \x85 comedy\n".encode("latin-1"))
    write(tmp_path / "mr" / "rt-polarity.neg", "a dull mess\n")
    result = helpers.run_cli("sentiment", "train", "--data", tmp_path / "mr", cwd=tmp_path)
    assert_one_line_error(result, "rt-polarity.pos", "offset 14", "--encoding latin-1")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "saved_models").exists()


# === Pretraining, cross-validation and WordPiece export ===


@pytest.mark.slow  # a BERT pretraining epoch and a fine-tune, 13 s on two cores
def test_masked_lm_pretraining_moves_the_classifiers_encoder(tmp_path):
    config = tiny_config(tmp_path, model="bert_tiny", embed_dim=32, num_heads=2, pretrain_epochs=1, batch_size=128)
    data = st.load_data(config)
    model = st.build_model(config, data.info)
    encoder = model.get_layer("bert_encoder")
    before = [np.array(weight) for weight in encoder.weights]
    (callback,) = st.callbacks(config, data, Run.for_config("sentiment", config).start(config))
    callback.set_model(model)
    callback.on_train_begin()
    assert callback.history["loss"][0] > 0 and any((tmp_path / "runs").rglob("pretraining.csv"))
    assert any(not np.array_equal(old, np.array(new)) for old, new in zip(before, encoder.weights))


@pytest.mark.slow  # one training per fold, 11 s on two cores
def test_cross_validation_trains_every_fold_and_writes_the_summary(tmp_path):
    config = tiny_config(tmp_path, folds=2, epochs=1, embed_dim=8)
    summary = st.train(config)
    assert len(summary["per_fold"]) == 2 and summary["folds"] == 2
    for key in ("accuracy", "macro_f1", "roc_auc"):
        values = [fold["metrics"][key] for fold in summary["per_fold"]]
        assert summary["metrics"][key]["mean"] == pytest.approx(np.mean(values))
    (cv_file,) = (tmp_path / "runs" / "sentiment").rglob("cv.json")
    written = json.loads(cv_file.read_text())
    assert written == summary and written["baseline"]["accuracy"]["mean"] > 0.5
    assert written["baseline"]["majority"]["accuracy"]["mean"] == pytest.approx(0.5, abs=0.05)
    assert not (tmp_path / "saved_models").exists()  # cross-validation measures; it does not export


@pytest.mark.subprocess
def test_a_wordpiece_export_needs_tensorflow_text_and_the_package_loader_imports_it(tmp_path):
    config = tiny_config(tmp_path, tokenizer="wordpiece", vocabulary_size=300)
    data = st.load_data(config)
    model = st.build_model(config, data.info)
    version = export.write("sentiment", model, st.serving(model, data.info),
                           {"info.json": json.dumps(data.info)}, export_dir=str(tmp_path / "saved_models"))
    script = (
        "import sys, tensorflow as tf\n"
        "try:\n    tf.saved_model.load(sys.argv[1]); print('loaded without tensorflow_text')\n"
        "except Exception as error:\n    print('plain load fails:', type(error).__name__)\n"
        "from tasks import sentiment\n"
        "_, classify, _ = sentiment.load_exported(sys.argv[1])\n"
        "print(classify(sentences=tf.constant(['a brilliant film']))['label'].numpy()[0].decode() in ('neg', 'pos'))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(version)], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert "plain load fails" in result.stdout and result.stdout.strip().endswith("True"), result.stderr[-2000:]


# === Real data ===


# The benchmark's recipes, and each one's stated margin against TF-IDF + LR on fold 0 (0.7741).
# TextCNN: within 3 points (measured 1.5-1.7 below; Kim's CNN-rand, 76.1 %, is also below bigram
# linear models on MR). NB n-grams: at least 1 point above (measured 0.8013, 2.7 above).
MR_RECIPES = {
    "text_cnn": (dict(model="text_cnn", embed_dim=128), -0.03),
    "nb_ngrams": (dict(model="nb_ngrams", tokenizer="ngrams"), 0.01),
}


@pytest.fixture(scope="module", params=sorted(MR_RECIPES))
def mr_run(request, shared_data, tmp_path_factory):
    """One training run of a recipe on fold 0 of MR polarity, and its export."""
    recipe, margin = MR_RECIPES[request.param]
    workdir = tmp_path_factory.mktemp(f"mr_{request.param}")
    config = st.Config(
        data=str(shared_data / "mr_polarity"), encoding="latin-1", folds=10, fold=0, epochs=3, sequence_length=56,
        runs_dir=str(workdir / "runs"), export_dir=str(workdir / "saved_models"), verbose=2, **recipe,
    )
    model = st.train(config)
    (run,) = (workdir / "runs" / "sentiment").iterdir()
    return workdir, config, model, run, margin


@pytest.mark.slow  # one MR fold training of the recipe (45-60 s on two loaded cores)
def test_mr_polarity_fold_meets_its_margin_to_tfidf_and_untrained_does_not(mr_run):
    """Bar: accuracy > max(majority + 0.2, TF-IDF + the recipe's margin) on the 1,067 test sentences of fold 0."""
    _, config, _, run, margin = mr_run
    record = json.loads((run / "metrics.json").read_text())
    info = json.loads((run / "info.json").read_text())
    assert info["num_train"] + info["num_validation"] == 9595 and info["num_test"] == 1067  # fold 0 of 10,662
    accuracy, tfidf = record["metrics"]["accuracy"], record["baseline"]["accuracy"]
    assert record["baseline"]["majority"]["accuracy"] == pytest.approx(0.5, abs=0.01)
    bar = max(record["baseline"]["majority"]["accuracy"] + 0.2, tfidf + margin)
    data = st.load_data(config)
    untrained = st.evaluate(st.build_model(config, data.info), data, config)["accuracy"]
    assert accuracy > bar > untrained, (accuracy, bar, untrained)


@pytest.mark.slow  # shares the MR fold training of the test above
def test_mr_polarity_export_gives_the_keras_probabilities(mr_run):
    _, _, model, run, _ = mr_run
    info = json.loads((run / "info.json").read_text())
    sentences = ["a gripping , beautifully acted film", "a tedious , predictable mess", "", "dull " * 80]
    ids, _ = st.Tokenizer(info)(tf.constant(sentences))
    expected = tf.nn.softmax(model(ids, training=False)).numpy()
    _, classify, _ = st.load_exported(run.parents[2] / "saved_models" / "sentiment")
    np.testing.assert_allclose(classify(sentences=tf.constant(sentences))["probabilities"].numpy(), expected, atol=1e-5)
    assert keras.saving.load_model(run / "model.keras").count_params() == model.count_params()
