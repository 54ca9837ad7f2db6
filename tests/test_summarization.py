"""Summarization: lead-3, the extractive model's sentences and labels, tiny demo runs of the extractive
and abstractive models and their exports, bad input, and BBC News end to end (extractive)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import applications
from tasks import extractive

from tasks import seq2seq
from tasks import summarization as sm
from tasks.core.errors import UserError
from tasks.data import parallel
from tasks.metrics import text as text_metrics
from tests.test_translation import reload_outputs

# A tiny Transformer on the demo reports: seconds, enough to exercise every verb.
TINY = {"model": "transformer_seq2seq", "epochs": 1, "batch_size": 64, "num_layers": 1, "embed_dim": 32,
        "num_heads": 2, "vocabulary_size": 300,
        "max_source_length": 80, "max_target_length": 24, "test_limit": 24, "beam_width": 2, "verbose": 2}


# A tiny extractive model on the demo reports.
TINY_EXTRACTIVE = {"epochs": 1, "batch_size": 64, "embed_dim": 16, "units": 16, "max_sentences": 12,
                   "max_sentence_tokens": 12, "hash_buckets": 1024, "test_limit": 40, "verbose": 2}

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


@pytest.fixture(scope="module")
def extractive_export(tmp_path_factory):
    """One training run of the extractive default on the demo reports, and its export."""
    workdir = tmp_path_factory.mktemp("extractive")
    config = sm.Config(runs_dir=str(workdir / "runs"), export_dir=str(workdir / "saved_models"), **TINY_EXTRACTIVE)
    model = sm.train(config)
    return workdir, config, model


def test_graph_sentences_split_like_the_reader_and_hash_words():
    text = ('Title line\n\nProfits rose 76%. "Sales rose," he said! Is it so? AOL lost users.glued on\r\nLast one')
    (sentences,) = extractive.split_sentences(tf.constant([text])).to_list()
    assert [s.decode() for s in sentences] == [
        "Title line", "Profits rose 76%.", '"Sales rose," he said!', "Is it so?", "AOL lost users.", "glued on", "Last one"]
    assert [s.decode() for s in sentences] == parallel.split_sentences(text)  # lead-3's splitter (Python re)
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
    pairs = parallel.read_summarization(str(shared_data / "bbc_news_summary_mini" / "corpus"))
    bodies = [sm.body(document) for split in pairs.values() for document in split.sources]
    assert len(bodies) >= 100
    in_graph = extractive.split_sentences(tf.constant(bodies)).to_list()
    for body, sentences in zip(bodies, in_graph):
        assert [sentence.decode() for sentence in sentences] == parallel.split_sentences(body), body[:80]


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


def test_extractive_default_trains_exports_and_reloads_the_same(extractive_export, tmp_path, capsys):
    workdir, config, model = extractive_export
    (run,) = (workdir / "runs" / "summarization").iterdir()
    record = json.loads((run / "metrics.json").read_text())
    assert record["config"]["model"] == "extractive_summarizer" and record["baseline"]["name"] == "lead-3"
    assert record["metrics"]["test_pairs"] == 40 and 1 <= record["metrics"]["summary_sentences"] <= 15
    info = json.loads((run / "info.json").read_text())
    assert info["summary_sentences"] == record["metrics"]["summary_sentences"]  # saved for `export`
    version = workdir / "saved_models" / "summarization" / "1"
    texts = ["The mayor travelled to york on monday. Crowds gathered outside. There the mayor met the police.",
             "One. Two. Three. " * 6, ""]
    reloaded = reload_extractive(version, texts, 2)
    assert reloaded["default"] == extractive.summarize_texts(model, info, texts)
    assert reloaded["select"] == extractive.summarize_texts(model, info, texts, k=2)
    assert reloaded["truncated"] == [False, True, False] and reloaded["default"][2] == ""
    assert all(line in texts[0] for line in reloaded["default"][0].split("\n"))  # sentences of the input
    path = tmp_path / "report.txt"
    path.write_text(texts[0] + "\n" + texts[0] + "\n")
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
    with pytest.raises(UserError, match="--sentences must be >= 0"):
        sm.predict(["The mayor met the police."], model_dir, sentences=-1)
    sm.predict(["One. Two. Three. " * 6], model_dir)
    assert "warning: input 1: more than 12 sentences; only the first 12 are read" in capsys.readouterr().err
    loaded = tf.saved_model.load(str(workdir / "saved_models" / "summarization" / "1"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="sentences must be >= 1"):
        loaded.signatures["select"](text=tf.constant(["A b."]), sentences=tf.constant(0))


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory):
    """One training run on the demo reports (in process) and its export."""
    workdir = tmp_path_factory.mktemp("summarization")
    config = sm.Config(runs_dir=str(workdir / "runs"), export_dir=str(workdir / "saved_models"), **TINY)
    model = sm.train(config)
    return workdir, config, model


def test_lead_three_skips_the_title_and_scores_like_the_model():
    document = "Profits up at TimeWarner\n\nProfits rose 76%. Sales rose 2%. AOL lost users. Google gained."
    assert sm.lead(document) == "Profits rose 76%.\nSales rose 2%.\nAOL lost users."
    data = type("Data", (), {"test_sources": [document], "test_references": ["Sales rose 2%. AOL lost users."]})
    result = sm.baseline(sm.Config(), data)
    assert result["name"] == "lead-3"
    assert result["rouge2"] == pytest.approx(text_metrics.rouge([sm.lead(document)], data.test_references)["rouge2"])
    assert 0 < result["rougeL"] < 100


def test_train_writes_rouge_beside_lead_three_plots_and_an_export(demo_export):
    workdir, _, _ = demo_export
    (run,) = (workdir / "runs" / "summarization").iterdir()
    record = json.loads((run / "metrics.json").read_text())
    assert record["baseline"]["name"] == "lead-3"
    for key in ("rouge1", "rouge2", "rougeL", "rougeLsum", "rougeL_beam2", "beam_sentences_per_second"):
        assert key in record["metrics"]
    assert record["metrics"]["test_pairs"] == 24
    assert (run / "plots" / "attention_1.png").stat().st_size > 1000
    assert (workdir / "saved_models" / "summarization" / "1" / "saved_model.pb").is_file()


def test_export_matches_in_process_and_predict_reads_whole_files(demo_export, tmp_path, capsys):
    workdir, _, model = demo_export
    version = workdir / "saved_models" / "summarization" / "1"
    info = json.loads((version / "assets" / "info.json").read_text())
    document = ("The mayor travelled to york on monday. Crowds gathered outside. There the mayor met the police. "
                "The meeting was about rail fares.")
    texts = [document, "Security was tight.\nThe bishop met young voters."]
    reloaded = reload_outputs(version, texts, 2, 24, "summary")
    assert reloaded["greedy"] == seq2seq.generate_texts(model, info, texts)
    assert reloaded["beam"] == seq2seq.generate_texts(model, info, texts, beam_width=2)
    path = tmp_path / "report.txt"
    path.write_text(document + "\n" + document + "\n")  # one document over two lines
    capsys.readouterr()
    (summary,) = sm.predict([str(path)], str(workdir / "saved_models" / "summarization"))
    assert capsys.readouterr().out.strip() == summary.strip()


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


def test_sentences_flag_is_refused_by_an_abstractive_export(demo_export):
    workdir, _, _ = demo_export
    with pytest.raises(UserError, match="--sentences applies to extractive models"):
        sm.predict(["The mayor met the police."], str(workdir / "saved_models" / "summarization"), sentences=2)


# The CI margins: the learned extractive model must reach lead-3's ROUGE-L minus 3 points, and the
# issue's benchmark goal on ROUGE-2 (lead-3 + 5), and beat lead-k (its own length, by position alone).
ROUGE_L_MARGIN = 3.0
ROUGE_2_OVER_LEAD3 = 5.0


@pytest.mark.slow
def test_bbc_news_extractive_beats_lead_three_and_the_export_matches(shared_data, tmp_path):
    config = sm.Config(
        data=str(shared_data / "bbc_news_summary" / "train_val_test_split.zip"), epochs=3, batch_size=16,
        test_limit=60, runs_dir=str(tmp_path / "runs"), export_dir=str(tmp_path / "saved_models"), verbose=2,
    )
    assert config.model == "extractive_summarizer"  # the default
    model = sm.train(config)
    (run,) = (tmp_path / "runs" / "summarization").iterdir()
    record = json.loads((run / "metrics.json").read_text())
    metrics, lead3 = record["metrics"], record["baseline"]
    assert metrics["test_pairs"] == 60 and lead3["rougeL"] > 25
    # Measured (see the README): ROUGE-L 41.8 vs lead-3 33.1, ROUGE-2 62.6 vs 36.1 on these 60 documents.
    assert metrics["rougeL"] >= lead3["rougeL"] - ROUGE_L_MARGIN
    assert metrics["rouge2"] >= lead3["rouge2"] + ROUGE_2_OVER_LEAD3
    assert metrics["rouge2"] > metrics["lead_k_rouge2"]  # learned, not just the lead
    info = json.loads((run / "info.json").read_text())
    documents = parallel.read_summarization(config.data)["test"].sources[:4]
    reloaded = reload_extractive(tmp_path / "saved_models" / "summarization" / "1", documents, 3)
    assert reloaded["default"] == extractive.summarize_texts(model, info, documents)
    assert reloaded["select"] == extractive.summarize_texts(model, info, documents, k=3)
    assert all(1 <= len(summary.split("\n")) <= info["summary_sentences"] for summary in reloaded["default"])
