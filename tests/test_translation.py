"""Translation: a tiny demo run and its export, bad input, and Multi30k de→en end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from tasks import seq2seq
from tasks import translation as tr
from tasks.core import cli
from tasks.core.errors import UserError
from tests import helpers
from tests.helpers import assert_one_line_error

# A tiny Transformer on the demo dates: seconds, enough to exercise every verb.
TINY = {"epochs": 1, "batch_size": 64, "num_layers": 1, "embed_dim": 32, "num_heads": 2, "vocabulary_size": 300,
        "max_source_length": 24, "max_target_length": 16, "test_limit": 40, "beam_width": 2, "verbose": 2}

# Reads a SavedModel in a fresh interpreter (as a server would) and prints both signatures' outputs.
RELOAD = (
    "import sys, json, tensorflow as tf, tensorflow_text\n"
    "m = tf.saved_model.load(sys.argv[1]); texts = tf.constant(json.loads(sys.argv[2]))\n"
    "g = m.signatures['serving_default'](text=texts)\n"
    "b = m.signatures['beam'](text=texts, beam_width=tf.constant(int(sys.argv[3])),"
    " length_penalty=tf.constant(0.6), max_length=tf.constant(int(sys.argv[4])))\n"
    "out = lambda r: [t.decode() for t in r[sys.argv[5]].numpy()]\n"
    "print(json.dumps({'greedy': out(g), 'beam': out(b), 'truncated': g['truncated'].numpy().tolist()}))\n"
)


def reload_outputs(version, texts, beam_width, max_length, output):
    result = subprocess.run(
        [sys.executable, "-c", RELOAD, str(version), json.dumps(texts), str(beam_width), str(max_length), output],
        capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory):
    """One training run on the demo dates (in process) and its export."""
    workdir = tmp_path_factory.mktemp("translation")
    config = tr.Config(runs_dir=str(workdir / "runs"), export_dir=str(workdir / "saved_models"), **TINY)
    model = tr.train(config)
    return workdir, config, model


def test_train_writes_metrics_beside_copy_source_plots_and_an_export(demo_export):
    workdir, config, _ = demo_export
    (run,) = (workdir / "runs" / "translation").iterdir()
    record = json.loads((run / "metrics.json").read_text())
    assert record["baseline"]["name"] == "copy the source"
    for key in ("bleu", "chrf", "bleu_beam2", "chrf_beam2", "greedy_sentences_per_second"):
        assert key in record["metrics"]
    assert record["metrics"]["test_pairs"] == 40
    assert 0 <= record["metrics"]["bleu"] <= 100 and 0 <= record["metrics"]["chrf"] <= 100
    assert (run / "plots" / "attention_1.png").stat().st_size > 1000
    info = json.loads((run / "info.json").read_text())
    assert info["num_train"] == 4800 and info["shared_vocabulary"]  # 6000 demo pairs, 80 %
    version = workdir / "saved_models" / "translation" / "1"
    assert (version / "saved_model.pb").is_file() and (version / "assets" / "info.json").is_file()


def test_export_in_a_fresh_process_matches_the_in_process_decoder(demo_export):
    workdir, _, model = demo_export
    info = json.loads((workdir / "saved_models" / "translation" / "1" / "assets" / "info.json").read_text())
    texts = ["the third of may, two thousand and one", "Jan 5 1999", "", "MARCH 12, 1961"]
    greedy = seq2seq.generate_texts(model, info, texts)
    beam = seq2seq.generate_texts(model, info, texts, beam_width=3, length_penalty=0.6)
    reloaded = reload_outputs(workdir / "saved_models" / "translation" / "1", texts, 3, 16, "translation")
    assert reloaded["greedy"] == greedy and reloaded["beam"] == beam
    assert greedy[2] == "" and reloaded["truncated"] == [False] * 4


def test_predict_warns_about_unseen_characters_and_truncation(demo_export, capsys):
    workdir, _, _ = demo_export
    model_dir = str(workdir / "saved_models" / "translation")
    long_input = " ".join(["the third of march, nineteen ninety-seven"] * 5)
    tr.predict(["Jan 5 1999 ж€", long_input], model_dir)
    captured = capsys.readouterr()
    warnings = [line for line in captured.err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 2
    assert "input 1: characters never seen in training, skipped: 'ж', '€'" in warnings[0]
    assert "input 2:" in warnings[1] and "truncated to the model's maximum of 24" in warnings[1]
    assert len(captured.out.strip().splitlines()) == 2


@pytest.mark.parametrize(
    "flags, words",
    [
        (["--beam-width", "0"], ["--beam-width must be >= 1", "Received: 0"]),
        (["--max-length", "99"], ["--max-length must be between 1 and the model's maximum 16"]),
        (["--length-penalty", "-1"], ["--length-penalty must be >= 0"]),
    ],
)
def test_bad_decoding_settings_are_one_line_errors(demo_export, flags, words, capsys):
    workdir, _, _ = demo_export
    with pytest.raises(SystemExit) as exit_info:
        cli.main(tr, ["predict", "--model", str(workdir / "saved_models" / "translation"), "Jan 5 1999", *flags])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: ")
    for word in words:
        assert word in error[0]


def test_empty_input_is_an_error_naming_it(demo_export):
    workdir, _, _ = demo_export
    with pytest.raises(UserError, match="input 2 is empty"):
        tr.predict(["Jan 5 1999", "  "], str(workdir / "saved_models" / "translation"))


def test_the_saved_model_refuses_a_beam_width_of_zero_with_a_message(demo_export):
    workdir, _, _ = demo_export
    loaded = tf.saved_model.load(str(workdir / "saved_models" / "translation" / "1"))
    with pytest.raises(tf.errors.InvalidArgumentError, match="beam_width must be >= 1"):
        loaded.signatures["beam"](text=tf.constant(["Jan 5 1999"]), beam_width=tf.constant(0),
                                  length_penalty=tf.constant(0.6), max_length=tf.constant(10))


def test_bad_data_fails_before_anything_is_written(tmp_path):
    (tmp_path / "pairs").mkdir()
    (tmp_path / "pairs" / "train.de").write_text("a\nb\n")
    (tmp_path / "pairs" / "train.en").write_text("a\n")
    config = tr.Config(data=str(tmp_path / "pairs"), source_lang="de", target_lang="en",
                       runs_dir=str(tmp_path / "runs"), verbose=0)
    with pytest.raises(UserError, match="train.de has 2 lines but train.en has 1"):
        tr.train(config)
    with pytest.raises(UserError, match="--model: Model 'nope' is never registered"):
        tr.train(tr.Config(model="nope", runs_dir=str(tmp_path / "runs"), verbose=0, **{
            key: value for key, value in TINY.items() if key != "verbose"}))
    assert not (tmp_path / "runs").exists()


@pytest.mark.subprocess
def test_cli_predict_in_a_fresh_process_and_its_one_line_errors(demo_export):
    workdir, _, _ = demo_export
    model_dir = workdir / "saved_models" / "translation"
    result = helpers.run_cli("translation", "predict", "--model", model_dir, "--beam-width", "2", "Jan 5 1999",
                             cwd=workdir)
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.stdout.strip().splitlines()) == 1
    result = helpers.run_cli("translation", "predict", "--model", model_dir, "", cwd=workdir)
    assert_one_line_error(result, "input 1 is empty")


@pytest.mark.slow
def test_multi30k_de_en_beats_copying_the_source_and_the_export_matches(shared_data, tmp_path):
    config = tr.Config(
        data=str(shared_data / "multi30k"), source_lang="de", target_lang="en", epochs=1, batch_size=64,
        num_layers=2, embed_dim=128, num_heads=4, vocabulary_size=4000, max_source_length=48,
        max_target_length=48, learning_rate=2e-3, warmup_epochs=0.1, dropout_rate=0.1, test_limit=300,
        beam_width=1, runs_dir=str(tmp_path / "runs"), export_dir=str(tmp_path / "saved_models"), verbose=2,
    )
    model = tr.train(config)
    (run,) = (tmp_path / "runs" / "translation").iterdir()
    record = json.loads((run / "metrics.json").read_text())
    info = json.loads((run / "info.json").read_text())
    assert info["num_train"] > 28_500 and info["num_test"] == 300
    assert record["baseline"]["bleu"] < 2.0  # German copied as English: names and numbers only
    # One epoch of a 2-layer Transformer: clearly above copying (measured: BLEU 7.86 vs 0.46,
    # chrF 23.2 vs 17.5 on these 300 sentences).
    assert record["metrics"]["bleu"] > record["baseline"]["bleu"] + 5.0
    assert record["metrics"]["chrf"] > record["baseline"]["chrf"] + 4.0
    sentences = [line.split("source:    ", 1)[1] for line in (run / "samples.txt").read_text().splitlines()
                 if line.startswith("source:")][:16]
    greedy = seq2seq.generate_texts(model, info, sentences)
    beam = seq2seq.generate_texts(model, info, sentences, beam_width=3, length_penalty=0.6)
    reloaded = reload_outputs(tmp_path / "saved_models" / "translation" / "1", sentences, 3, 48, "translation")
    assert reloaded["greedy"] == greedy and reloaded["beam"] == beam
    assert np.mean([len(text) > 0 for text in greedy]) == 1.0
