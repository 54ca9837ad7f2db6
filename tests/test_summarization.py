"""Summarization: lead-3, the extractive model's sentences and labels, tiny demo runs of the extractive
and abstractive models and their exports, bad input, and BBC News end to end (extractive).

Learning bars (ROUGE-2 F x100; k: the sentences the model picks, chosen on validation; lead-k: the
first k sentences; untrained: the same network built and never fitted, same k, same test split):

| test | bar | trained (seeds 0, 1, 2) | untrained (seeds 0, 1, 2) |
|---|---|---|---|
| demo (fast lane) | lead-k + 20 = 29.4, 38.1, 35.9 | 56.5, 55.9, 56.2 (k = 1) | 10.9, 20.3, 14.3 |
| BBC News subset | lead-k + 3 = 53.7, 53.7, 56.0 | 58.8, 58.5, 59.7 (k = 11, 11, 13) | 45.0, 50.6, 53.6 |
"""

import csv
import io
import json
import os
import subprocess
import sys
import zipfile

import keras
import numpy as np
import pytest
import tensorflow as tf

import applications
from tasks.families import extractive

from tasks.families import seq2seq
from tasks import summarization as sm
from tasks.core.errors import UserError
from tasks.data import pairs as pair_readers
from tasks.metrics import text as text_metrics
from tests import helpers

# A tiny Transformer on 400 demo reports: enough to exercise every verb of the abstractive path.
TINY = {"model": "transformer_seq2seq", "epochs": 1, "batch_size": 64, "num_layers": 1, "embed_dim": 32,
        "num_heads": 2, "vocabulary_size": 300, "train_limit": 400,
        "max_source_length": 80, "max_target_length": 24, "test_limit": 8, "beam_width": 2, "verbose": 2}


# A tiny extractive model on the demo reports.
TINY_EXTRACTIVE = {"epochs": 1, "batch_size": 64, "embed_dim": 16, "units": 16, "max_sentences": 12,
                   "max_sentence_tokens": 12, "hash_buckets": 1024, "test_limit": 40, "run_name": "demo", "verbose": 2}

# Reads an extractive SavedModel in a fresh interpreter and prints both signatures' outputs.
RELOAD_EXTRACTIVE = (
    "import sys, json, tensorflow as tf\n"
    "m = tf.saved_model.load(sys.argv[1]); texts = tf.constant(json.loads(sys.argv[2]))\n"
    "d = m.signatures['serving_default'](text=texts)\n"
    "s = m.signatures['select'](text=texts, sentences=tf.constant(int(sys.argv[3])))\n"
    "out = lambda r: [t.decode() for t in r['summary'].numpy()]\n"
    "print(json.dumps({'default': out(d), 'select': out(s), 'truncated': d['truncated'].numpy().tolist()}))\n"
)


def reload_extractive(version, texts, sentences):
    result = subprocess.run(
        [sys.executable, "-c", RELOAD_EXTRACTIVE, str(version), json.dumps(texts), str(sentences)],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def export_outputs(version, texts, sentences):
    """What `reload_extractive` prints, from the SavedModel loaded in this process."""
    loaded = tf.saved_model.load(str(version))
    text = tf.constant(texts)
    default = loaded.signatures["serving_default"](text=text)
    chosen = loaded.signatures["select"](text=text, sentences=tf.constant(sentences))
    decode = lambda outputs: [summary.decode() for summary in outputs["summary"].numpy()]  # noqa: E731
    return {"default": decode(default), "select": decode(chosen), "truncated": default["truncated"].numpy().tolist()}


def untrained_metrics(config, run):
    """The test metrics of the run's network built and never fitted: same split, same k (`info.json`)."""
    info = json.loads((run / "info.json").read_text())
    keras.utils.set_random_seed(config.seed)
    data = sm.load_data(config)
    data.info["summary_sentences"] = info["summary_sentences"]
    return sm.evaluate(sm.build_model(config, data.info), data, config)


def run_record(workdir):
    (run,) = (workdir / "runs" / "summarization").iterdir()
    return run, json.loads((run / "metrics.json").read_text())


@pytest.fixture(scope="module")
def extractive_export(tmp_path_factory):
    """One training run of the extractive default on the demo reports, and its export: shared by the
    learning bar, evaluate, predict, export and bad-input tests."""
    workdir = tmp_path_factory.mktemp("extractive")
    config = sm.Config(runs_dir=str(workdir / "runs"), export_dir=str(workdir / "saved_models"), **TINY_EXTRACTIVE)
    model = sm.train(config)
    return workdir, config, model


def test_graph_sentences_split_like_the_reader_and_hash_words():
    text = ('Title line\n\nProfits rose 76%. "Sales rose," he said! Is it so? AOL lost users.glued on\r\nLast one')
    (sentences,) = extractive.split_sentences(tf.constant([text])).to_list()
    assert [s.decode() for s in sentences] == [
        "Title line", "Profits rose 76%.", '"Sales rose," he said!', "Is it so?", "AOL lost users.", "glued on", "Last one"]
    assert [s.decode() for s in sentences] == pair_readers.split_sentences(text)  # lead-3's splitter (Python re)
    info = {"hash_buckets": 50, "max_sentences": 3, "max_sentence_tokens": 4}
    tokens, padded, counts = (t.numpy() for t in extractive.featurize(tf.constant([text, ""]), info))
    assert tokens.shape == (2, 3, 4) and counts.tolist() == [7, 0]
    assert (tokens[0, 0, :2] > 0).all() and (tokens[0, 0, 2:] == 0).all() and (tokens[1] == 0).all()
    assert tokens.max() < 50 and padded[0, 1] == b"Profits rose 76%." and padded[1, 0] == b""
    # Case and punctuation do not change a word's id.
    same, _, _ = extractive.featurize(tf.constant(["PROFITS, rose"]), info)
    assert same.numpy()[0, 0, :2].tolist() == tokens[0, 1, :2].tolist()


def test_the_graph_splitter_and_lead_3s_agree_on_every_bbc_article(shared_data):
    # Two implementations of one rule (RE2 in the graph has no lookbehind; lead-3 runs in Python):
    # the extractive model must choose among the sentences lead-3 counts.
    pairs = pair_readers.read_summarization(str(shared_data / "bbc_news_summary_mini" / "corpus"))
    bodies = [sm.body(document) for split in pairs.values() for document in split.sources]
    assert len(bodies) >= 100
    in_graph = extractive.split_sentences(tf.constant(bodies)).to_list()
    for body, sentences in zip(bodies, in_graph):
        assert [sentence.decode() for sentence in sentences] == pair_readers.split_sentences(body), body[:80]


def test_labels_mark_the_summary_sentences_else_the_closest_one():
    sentences = ["Profits rose 76%.", "Sales rose 2%.", "AOL lost users.", "Google gained."]
    summary = 'sales rose 2%."aol lost users.'  # BBC style: lower-cased, glued sentences
    assert extractive.labels_of(sentences, summary).tolist() == [0, 1, 1, 0]
    assert extractive.labels_of(sentences, "google made gains").tolist() == [0, 0, 0, 1]


def test_select_keeps_the_best_k_in_document_order():
    logits = tf.constant([[0.1, 3.0, -1.0, 2.0], [5.0, 0.0, 9.0, 9.0]])
    sentences = tf.constant([["a.", "b.", "c.", "d."], ["e.", "f.", "", ""]])
    out = extractive.select(logits, sentences, tf.constant([4, 2]), 2, 4).numpy().tolist()
    assert out == [b"b.\nd.", b"e.\nf."]  # row 2: padded sentences never win


def test_extractive_builder_fits_and_round_trips(tmp_path):
    model = applications.get("extractive_summarizer")(100, max_sentences=5, max_sentence_tokens=6, embed_dim=8, units=8)
    tokens = np.random.default_rng(0).integers(1, 100, (4, 5, 6)).astype("int32")
    tokens[:, 3:] = 0
    logits = model.predict(tokens, verbose=0)
    assert logits.shape == (4, 5) and (logits[:, 3:] <= -1e3).all()
    model.compile("adam", extractive.sentence_loss)
    model.fit(tokens, np.ones((4, 5), "float32"), sample_weight=(tokens != 0).any(-1).astype("float32"), verbose=0)
    model.save(tmp_path / "m.keras")
    np.testing.assert_allclose(keras.saving.load_model(tmp_path / "m.keras").predict(tokens, verbose=0),
                               model.predict(tokens, verbose=0), atol=1e-5)


# The demo's reference names who met whom, one sentence placed anywhere in the report: the learned
# model finds it, position alone (lead-k) and an untrained network rarely do.
DEMO_OVER_LEAD_K = 20.0


def test_extractive_demo_beats_lead_k_by_a_margin_its_untrained_control_does_not(extractive_export):
    """Fast-lane learning bar: ROUGE-2 >= lead-k + 20 at the model's own k, on the 40 demo test reports.

    Measured (seeds 0, 1, 2; k = 1): trained 56.5, 55.9, 56.2; lead-k 9.4, 18.1, 15.9 (bars 29.4, 38.1,
    35.9); untrained 10.9, 20.3, 14.3. 16-25 s with the shared demo run it starts, 2 s of it the control.
    """
    workdir, config, _ = extractive_export
    run, record = run_record(workdir)
    trained = record["metrics"]
    untrained = untrained_metrics(config, run)
    assert untrained["summary_sentences"] == trained["summary_sentences"]
    bar = trained["lead_k_rouge2"] + DEMO_OVER_LEAD_K
    assert trained["rouge2"] >= bar > untrained["rouge2"], (trained["rouge2"], bar, untrained["rouge2"])


def test_extractive_demo_run_records_its_length(extractive_export):
    workdir, _, _ = extractive_export
    run, record = run_record(workdir)
    assert record["config"]["model"] == "extractive_summarizer" and record["baseline"]["name"] == "lead-3"
    assert record["metrics"]["test_pairs"] == 40 and 1 <= record["metrics"]["summary_sentences"] <= 15
    info = json.loads((run / "info.json").read_text())
    assert info["summary_sentences"] == record["metrics"]["summary_sentences"]  # saved for `export`


def test_extractive_evaluate_reproduces_the_runs_metrics(extractive_export, capsys):
    workdir, _, _ = extractive_export
    run, record = run_record(workdir)
    result = helpers.run_in_process(sm, capsys, workdir, "evaluate", "--runs-dir", workdir / "runs", "--run-name", "demo")
    assert result.returncode == 0, result.stderr[-2000:]
    again = json.loads((run / "metrics.json").read_text())
    for key in ("rouge2", "rougeL", "lead_k_rouge2", "summary_sentences", "test_pairs"):
        assert again["metrics"][key] == pytest.approx(record["metrics"][key]), key
    assert again["baseline"] == record["baseline"]


def test_extractive_export_reloads_the_same_in_a_fresh_process(extractive_export):
    workdir, _, model = extractive_export
    run, _ = run_record(workdir)
    info = json.loads((run / "info.json").read_text())
    version = workdir / "saved_models" / "summarization" / "1"
    texts = ["The mayor travelled to york on monday. Crowds gathered outside. There the mayor met the police.",
             "One. Two. Three. " * 6, ""]
    reloaded = reload_extractive(version, texts, 2)
    assert reloaded["default"] == extractive.summarize_texts(model, info, texts)
    assert reloaded["select"] == extractive.summarize_texts(model, info, texts, k=2)
    assert reloaded["truncated"] == [False, True, False] and reloaded["default"][2] == ""
    assert all(line in texts[0] for line in reloaded["default"][0].split("\n"))  # sentences of the input


def test_extractive_predict_reads_whole_files(extractive_export, tmp_path, capsys):
    workdir, _, _ = extractive_export
    document = "The mayor travelled to york on monday. Crowds gathered outside. There the mayor met the police."
    path = tmp_path / "report.txt"
    path.write_text(document + "\n" + document + "\n")
    capsys.readouterr()
    (summary,) = sm.predict([str(path)], str(workdir / "saved_models" / "summarization"), sentences=1)
    assert capsys.readouterr().out.strip() == summary.strip() and "\n" not in summary


def test_extractive_bad_inputs(extractive_export, capsys):
    workdir, _, _ = extractive_export
    model_dir = str(workdir / "saved_models" / "summarization")
    with pytest.raises(UserError, match="input 1 is empty"):
        sm.predict([" "], model_dir)
    with pytest.raises(UserError, match="--beam-width applies to abstractive models"):
        sm.predict(["The mayor met the police."], model_dir, beam_width=0)
    result = helpers.run_in_process(sm, capsys, workdir, "predict", "--model", model_dir, "--sentences", "-1",
                                    "The mayor met the police.")
    helpers.assert_one_line_error(result, "--sentences must be >= 0")
    sm.predict(["One. Two. Three. " * 6], model_dir)
    assert "warning: input 1: more than 12 sentences; only the first 12 are read" in capsys.readouterr().err
    loaded = tf.saved_model.load(str(workdir / "saved_models" / "summarization" / "1"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="sentences must be >= 1"):
        loaded.signatures["select"](text=tf.constant(["A b."]), sentences=tf.constant(0))


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory):
    """One abstractive training run on demo reports and its export, shared by the abstractive tests."""
    workdir = tmp_path_factory.mktemp("summarization")
    config = sm.Config(runs_dir=str(workdir / "runs"), export_dir=str(workdir / "saved_models"), **TINY)
    model = sm.train(config)
    return workdir, config, model


DOCUMENT = ("The mayor travelled to york on monday. Crowds gathered outside. There the mayor met the police. "
            "The meeting was about rail fares.")


def test_lead_three_skips_the_title_and_scores_like_the_model():
    document = "Profits up at TimeWarner\n\nProfits rose 76%. Sales rose 2%. AOL lost users. Google gained."
    assert sm.lead(document) == "Profits rose 76%.\nSales rose 2%.\nAOL lost users."
    data = type("Data", (), {"test_sources": [document], "test_references": ["Sales rose 2%. AOL lost users."]})
    result = sm.baseline(sm.Config(), data)
    assert result["name"] == "lead-3"
    assert result["rouge2"] == pytest.approx(text_metrics.rouge([sm.lead(document)], data.test_references)["rouge2"])
    assert 0 < result["rougeL"] < 100


@pytest.mark.slow  # the abstractive demo (a second summarization training, 20 s on two cores); the extractive default keeps the fast lane's proof
def test_train_writes_rouge_beside_lead_three_plots_and_an_export(demo_export):
    workdir, _, _ = demo_export
    (run,) = (workdir / "runs" / "summarization").iterdir()
    record = json.loads((run / "metrics.json").read_text())
    assert record["baseline"]["name"] == "lead-3"
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum", "rougeL_beam2", "beam_sentences_per_second"):
        assert key in record["metrics"]
    assert record["metrics"]["test_pairs"] == 8
    assert (run / "plots" / "attention_1.png").stat().st_size > 1000
    assert (workdir / "saved_models" / "summarization" / "1" / "saved_model.pb").is_file()


@pytest.mark.slow  # the abstractive demo (a second summarization training, 20 s on two cores); the extractive default keeps the fast lane's proof
def test_abstractive_export_matches_the_model(demo_export):
    workdir, _, model = demo_export
    version = workdir / "saved_models" / "summarization" / "1"
    info = json.loads((version / "assets" / "info.json").read_text())
    texts = [DOCUMENT, "Security was tight.\nThe bishop met young voters."]
    loaded = tf.saved_model.load(str(version))
    greedy = loaded.signatures["serving_default"](text=tf.constant(texts))
    beam = loaded.signatures["beam"](text=tf.constant(texts), beam_width=tf.constant(2),
                                     length_penalty=tf.constant(0.6), max_length=tf.constant(24))
    decode = lambda outputs: [summary.decode() for summary in outputs["summary"].numpy()]  # noqa: E731
    assert decode(greedy) == seq2seq.generate_texts(model, info, texts)
    assert decode(beam) == seq2seq.generate_texts(model, info, texts, beam_width=2)


@pytest.mark.slow  # the abstractive demo (a second summarization training, 20 s on two cores); the extractive default keeps the fast lane's proof
def test_abstractive_predict_reads_whole_files(demo_export, tmp_path, capsys):
    workdir, _, _ = demo_export
    path = tmp_path / "report.txt"
    path.write_text(DOCUMENT + "\n" + DOCUMENT + "\n")  # one document over two lines
    capsys.readouterr()
    (summary,) = sm.predict([str(path)], str(workdir / "saved_models" / "summarization"))
    assert capsys.readouterr().out.strip() == summary.strip()


@pytest.mark.slow  # the abstractive demo (a second summarization training, 20 s on two cores); the extractive default keeps the fast lane's proof
def test_bad_inputs_are_one_line_errors_or_warnings(demo_export, capsys):
    workdir, _, _ = demo_export
    model_dir = str(workdir / "saved_models" / "summarization")
    with pytest.raises(UserError, match="input 1 is empty"):
        sm.predict([""], model_dir)
    with pytest.raises(UserError, match="--beam-width must be >= 1"):
        sm.predict(["The mayor met the police."], model_dir, beam_width=0)
    sm.predict(["Der Bürgermeister traf die Polizei.", "The mayor met the police. " * 30], model_dir)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert any("input 1: characters never seen in training, skipped: 'ü'" in line for line in warnings)
    assert any("input 2:" in line and "truncated to the model's maximum of 80" in line for line in warnings)


@pytest.mark.slow  # the abstractive demo (a second summarization training, 20 s on two cores); the extractive default keeps the fast lane's proof
def test_sentences_flag_is_refused_by_an_abstractive_export(demo_export, capsys):
    workdir, _, _ = demo_export
    result = helpers.run_in_process(sm, capsys, workdir, "predict", "--model", workdir / "saved_models" / "summarization",
                                    "--sentences", "2", "The mayor met the police.")
    helpers.assert_one_line_error(result, "--sentences applies to extractive models")


# The learned model's sentences must beat the first k at the same k by this many ROUGE-2 points.
BBC_OVER_LEAD_K = 3.0


def bbc_subset(shared_data, folder, counts):
    """The first `counts[split]` rows of each BBC News split, as a folder of CSVs (`document,summary`)."""
    folder.mkdir()
    with zipfile.ZipFile(shared_data / "bbc_news_summary" / "train_val_test_split.zip") as archive:
        for split, count in counts.items():
            rows = csv.DictReader(io.TextIOWrapper(archive.open(f"{split}.csv"), "utf-8-sig", newline=""))
            with open(folder / f"{split}.csv", "w", newline="", encoding="utf-8") as stream:
                writer = csv.writer(stream)
                writer.writerow(["document", "summary"])
                writer.writerows([row["document"], row["summary"]] for _, row in zip(range(count), rows))
    return folder


@pytest.mark.slow  # real BBC News training, about 30 s; the demo bar keeps the fast lane's proof
def test_bbc_news_extractive_beats_lead_k_by_a_margin_its_untrained_control_does_not(shared_data, tmp_path):
    """BBC News: 600 training articles, 2 epochs, k chosen on 40 validation articles, 60 test articles.

    Bar: ROUGE-2 >= lead-k + 3 at the model's own k. Measured (seeds 0, 1, 2): k = 11, 11, 13; trained
    58.8, 58.5, 59.7; lead-k 50.7, 50.7, 53.0 (bars 53.7, 53.7, 56.0); untrained 45.0, 50.6, 53.6
    (lead-3: 36.1). 32-41 s on a busy two-core host, 4-5 s of it the control.
    """
    data = bbc_subset(shared_data, tmp_path / "bbc", {"train": 600, "valid": 40, "test": 60})
    config = sm.Config(data=str(data), epochs=2, batch_size=16, runs_dir=str(tmp_path / "runs"),
                       export_dir=str(tmp_path / "saved_models"), verbose=2)
    assert config.model == "extractive_summarizer"  # the default
    model = sm.train(config)
    run, record = run_record(tmp_path)
    trained = record["metrics"]
    assert trained["test_pairs"] == 60 and record["baseline"]["rougeL"] > 25
    untrained = untrained_metrics(config, run)
    assert untrained["summary_sentences"] == trained["summary_sentences"]
    bar = trained["lead_k_rouge2"] + BBC_OVER_LEAD_K
    assert trained["rouge2"] >= bar > untrained["rouge2"], (trained["rouge2"], bar, untrained["rouge2"])
    # The export summarizes like the model (in process; the fresh-process reload is the demo's).
    info = json.loads((run / "info.json").read_text())
    documents = pair_readers.read_summarization(config.data)["test"].sources[:4]
    exported = export_outputs(tmp_path / "saved_models" / "summarization" / "1", documents, 3)
    assert exported["default"] == extractive.summarize_texts(model, info, documents)
    assert exported["select"] == extractive.summarize_texts(model, info, documents, k=3)
    assert all(1 <= len(summary.split("\n")) <= info["summary_sentences"] for summary in exported["default"])
