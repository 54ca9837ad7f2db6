"""The shared sequence-to-sequence core: pair readers, tokenizers, splits and filters, metrics, decoding."""

import csv
import gzip
import zipfile

import numpy as np
import pytest
import tensorflow as tf

from tasks.families import seq2seq
from tasks import summarization
from tasks import translation
from tasks.core.errors import UserError
from tasks.data import pairs as pair_readers
from tasks.data import tokenizers
from tasks.metrics import text as text_metrics

# === Readers ===


def write_gz(path, lines):
    with gzip.open(path, "wt", encoding="utf-8") as stream:
        stream.write("\n".join(lines) + "\n")


def test_parallel_folder_reads_gz_and_translate_folder_layouts(tmp_path):
    write_gz(tmp_path / "train.de.gz", ["ein Hund", "zwei Katzen"])
    write_gz(tmp_path / "train.en.gz", ["a dog", "two cats"])
    (tmp_path / "val.de").write_text("ein Haus\n")
    (tmp_path / "val.en").write_text("a house\n")
    write_gz(tmp_path / "test_2016_flickr.de.gz", ["rot"])
    write_gz(tmp_path / "test_2016_flickr.en.gz", ["red"])
    splits = pair_readers.read_translation(str(tmp_path), "de", "en")
    assert splits["train"].sources == ["ein Hund", "zwei Katzen"] and splits["train"].targets == ["a dog", "two cats"]
    assert splits["validation"].targets == ["a house"] and splits["test"].sources == ["rot"]
    reverse = pair_readers.read_translation(str(tmp_path), "en", "de")
    assert reverse["train"].sources == ["a dog", "two cats"]
    folder = tmp_path / "tfds_layout"
    folder.mkdir()
    (folder / "fr.train.txt").write_text("un\ndeux\n")
    (folder / "en.train.txt").write_text("one\ntwo\n")
    assert pair_readers.read_translation(str(folder), "fr", "en")["train"].targets == ["one", "two"]


def test_parallel_folder_errors_name_the_files(tmp_path):
    write_gz(tmp_path / "train.de.gz", ["a", "b", "c"])
    write_gz(tmp_path / "train.en.gz", ["a", "b"])
    with pytest.raises(UserError, match="train.de.gz has 3 lines but train.en.gz has 2"):
        pair_readers.read_translation(str(tmp_path), "de", "en")
    with pytest.raises(UserError, match="pass --source-lang and --target-lang"):
        pair_readers.read_translation(str(tmp_path))
    with pytest.raises(UserError, match="--target-lang fr: .* has no fr files"):
        pair_readers.read_translation(str(tmp_path), "de", "fr")


def test_empty_pairs_are_an_error_or_skipped_and_counted(tmp_path):
    (tmp_path / "train.de").write_text("eins\n\ndrei\n")
    (tmp_path / "train.en").write_text("one\ntwo\nthree\n")
    with pytest.raises(UserError, match="pair 2 has an empty source.*--skip-bad"):
        pair_readers.read_translation(str(tmp_path), "de", "en")
    pairs = pair_readers.read_translation(str(tmp_path), "de", "en", skip_bad=True)["train"]
    assert pairs.sources == ["eins", "drei"] and pairs.skipped == 1


def test_tsv_pairs_in_the_anki_layout(tmp_path):
    path = tmp_path / "spa.txt"
    path.write_text("Go.\tVe.\tCC-BY 2.0 (France) Attribution: tatoeba.org\nHi.\tHola.\tCC-BY\n")
    pairs = pair_readers.read_translation(str(path))["all"]
    assert pairs.sources == ["Go.", "Hi."] and pairs.targets == ["Ve.", "Hola."]
    assert pair_readers.read_translation(str(path), reverse=True)["all"].sources == ["Ve.", "Hola."]
    path.write_text("Go.\tVe.\nno tab here\n")
    with pytest.raises(UserError, match=r"spa.txt:2: expected source<TAB>target"):
        pair_readers.read_translation(str(path))
    assert pair_readers.read_translation(str(path), skip_bad=True)["all"].skipped == 1


def write_csv(path, rows, columns=("id", "document", "summary")):
    with open(path, "w", newline="", encoding="utf-8") as stream:
        writer = csv.writer(stream)
        writer.writerow(columns)
        writer.writerows(rows)


def test_summarization_csv_zip_and_folder_pairs(tmp_path):
    write_csv(tmp_path / "train.csv", [(0, "title\n\nfirst. second.", "first."), (1, "a, \"quoted\" text.", "text.")])
    write_csv(tmp_path / "valid.csv", [(2, "doc two.", "two.")])
    write_csv(tmp_path / "test.csv", [(3, "doc three.", "three.")])
    with zipfile.ZipFile(tmp_path / "set.zip", "w") as archive:
        for name in ("train.csv", "valid.csv", "test.csv"):
            archive.write(tmp_path / name, f"Data/{name}")
    for data in (tmp_path / "set.zip", tmp_path):
        splits = pair_readers.read_summarization(str(data))
        assert sorted(splits) == ["test", "train", "validation"]
        assert splits["train"].sources[0] == "title\n\nfirst. second." and splits["train"].targets[1] == "text."
    with pytest.raises(UserError, match="no column 'abstract' \\(--summary-column\\)"):
        pair_readers.read_summarization(str(tmp_path / "train.csv"), summary_column="abstract")
    corpus = tmp_path / "corpus"
    for kind, text in (("article", "Title\n\nBody one.\nBody two."), ("summary", "Body two.")):
        (corpus / kind / "sport").mkdir(parents=True)
        (corpus / kind / "sport" / "001.txt").write_text(text)
    (corpus / "article" / "sport" / "002.txt").write_text("orphan")
    with pytest.raises(UserError, match="002.txt: no summary file"):
        pair_readers.read_summarization(str(corpus))
    pairs = pair_readers.read_summarization(str(corpus), skip_bad=True)["all"]
    assert pairs.targets == ["Body two."] and pairs.skipped == 1


def test_sentences_and_lead_three():
    text = 'Title line\n\nFirst one. "Quoted second!" said he. third glued.fourth part? Fifth.'
    assert pair_readers.split_sentences(summarization.body(text)) == [
        "First one.", '"Quoted second!"', "said he.", "third glued.", "fourth part?", "Fifth.",
    ]
    assert summarization.body("A sentence.\n\nAnother.") == "A sentence.\n\nAnother."  # no title line
    assert summarization.lead("t\n\nA b. C d. E f. G h.") == "A b.\nC d.\nE f."


def test_demo_dates_are_valid_iso_dates():
    import datetime

    sources, targets = pair_readers.demo_dates(200, seed=1)
    assert len(set(sources)) > 190
    for target in targets:
        assert datetime.date.fromisoformat(target).isoformat() == target
    assert pair_readers.date_phrase(datetime.date(1997, 3, 3), 0) == "the third of march, nineteen ninety-seven"
    assert pair_readers.date_phrase(datetime.date(2004, 6, 21), 1) == "june twenty-first two thousand and four"


# === Tokenizers ===


def test_sentencepiece_round_trips_and_reports_unseen_characters():
    texts = ["Ein Mann fährt Fahrrad.", "Zwei Hunde spielen im Schnee.", "line one\nline two"] * 30
    proto = tokenizers.learn_sentencepiece(texts, 80, special_tokens=True)
    # Deterministic: `evaluate` re-learns the model from the same training split.
    assert tokenizers.learn_sentencepiece(texts, 80, special_tokens=True) == proto
    codec = tokenizers.SentencePieceCodec(proto)
    assert codec.tokenizer.token_to_id("</s>") == tokenizers.END_ID
    rows = codec.encode_texts(["Zwei Männer fahren.", "line two\nline one"])
    assert codec.decode_texts(rows) == ["Zwei Männer fahren.", "line two\nline one"]
    graph = codec.decode_batch(codec.encode_batch(tf.constant(["Ein Hund im Schnee."])))
    assert graph.numpy()[0].decode() == "Ein Hund im Schnee."
    assert codec.unknown_characters("Ein Hund ж€ Mann") == ["ж", "€"]
    assert codec.decode_texts(codec.encode_texts(["Ein ж Hund"])) == ["Ein  Hund"]  # skipped, not garbled
    # Dense rows stop at the end token; special tokens never reach the text.
    ids = codec.encode_texts(["Ein Hund"])[0]
    dense = tf.constant([np.concatenate([ids, [tokenizers.END_ID], ids]).tolist()], tf.int32)
    assert codec.decode_batch(dense).numpy()[0].decode() == "Ein Hund"


# === Splits and filters ===


def test_one_collection_is_carved_into_three_seeded_splits():
    pairs = pair_readers.Pairs([f"s{i}" for i in range(100)], [f"t{i}" for i in range(100)], skipped=2)
    config = translation.Config(validation_fraction=0.1, seed=3)
    splits = seq2seq.complete_splits({"all": pairs}, config)
    assert [len(splits[name]) for name in ("train", "validation", "test")] == [80, 10, 10]
    assert set(splits["train"].sources).isdisjoint(splits["test"].sources)
    assert splits["train"].skipped == 2
    again = seq2seq.complete_splits({"all": pairs}, config)
    assert again["test"].sources == splits["test"].sources
    with pytest.raises(UserError, match="too few"):
        seq2seq.complete_splits({"all": pair_readers.Pairs(["a"], ["b"])}, config)


@pytest.fixture(scope="module")
def date_codec():
    sources, targets = pair_readers.demo_dates(500)
    return tokenizers.SentencePieceCodec(tokenizers.learn_sentencepiece(sources + targets, 200, special_tokens=True))


def test_over_length_pairs_are_dropped_truncated_or_an_error(date_codec):
    pairs = pair_readers.Pairs(["the third of march, nineteen ninety-seven", "Mar 3 1997"],
                           ["1997-03-03 and a much longer target text than allowed", "1997-03-03"])
    config = translation.Config(max_source_length=4, max_target_length=12, over_length="drop")
    (source, target_in, target_out), counts = seq2seq.encode_pairs(pairs, date_codec, date_codec, config, "train")
    assert counts["targets_dropped"] == 1 and counts["sources_truncated"] >= 1 and source.shape == (1, 4)
    assert target_in[0, 0] == tokenizers.START_ID
    row = target_out[0][target_out[0] != 0]
    assert row[-1] == tokenizers.END_ID and np.array_equal(target_in[0, 1:len(row)], row[:-1])
    config = translation.Config(max_source_length=4, max_target_length=12, over_length="truncate")
    (_, _, target_out), counts = seq2seq.encode_pairs(pairs, date_codec, date_codec, config, "train")
    assert len(target_out) == 2 and counts["targets_over_length"] == 1 and target_out[0, -1] == tokenizers.END_ID
    config = translation.Config(max_source_length=4, max_target_length=12, over_length="error")
    with pytest.raises(UserError, match="1 train targets are longer than --max-target-length 12"):
        seq2seq.encode_pairs(pairs, date_codec, date_codec, config, "train")


# === Metrics against their reference tools ===


def test_bleu_and_chrf_are_sacrebleu():
    import sacrebleu

    hypotheses = ["A man rides a bike.", "Two dogs play in snow.", "hello"]
    references = ["A man is riding a bike.", "Two dogs are playing in the snow.", "hello there"]
    assert text_metrics.bleu(hypotheses, references) == pytest.approx(
        sacrebleu.corpus_bleu(hypotheses, [references]).score)
    assert text_metrics.chrf(hypotheses, references) == pytest.approx(
        sacrebleu.corpus_chrf(hypotheses, [references]).score)
    assert text_metrics.bleu(references, references) == pytest.approx(100.0)
    with pytest.raises(ValueError, match="One reference per hypothesis"):
        text_metrics.bleu(hypotheses, references[:2])


def test_rouge_is_rouge_score_with_stemming():
    from rouge_score import rouge_scorer

    hypotheses = ["the cats were running home", "profits rose"]
    references = ["the cat runs home quickly", "quarterly profits rose sharply"]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    expected = np.mean([scorer.score(r, h)["rouge1"].fmeasure for h, r in zip(hypotheses, references)])
    scores = text_metrics.rouge(hypotheses, references)
    assert scores["rouge1"] == pytest.approx(100 * expected)
    # By hand, first pair with stemming: the, cat, run, home match → P = R = 4/5.
    assert scorer.score(references[0], hypotheses[0])["rouge1"].fmeasure == pytest.approx(0.8)


# === Decoding ===


class _TableModel:
    """A fake encoder-decoder whose next-token probabilities depend only on the last token."""

    def __init__(self, table):
        self.table = tf.constant(np.log(np.asarray(table, np.float32) + 1e-9))

    def get_layer(self, name):
        if name == "encoder":
            return lambda source, training=False: tf.cast(source, tf.float32)[:, :, None]
        return self._decoder

    def _decoder(self, inputs, training=False):
        tokens = inputs[0]
        logits = tf.gather(self.table, tokens)  # (N, t, V)
        return logits, tf.zeros(tf.shape(tokens))


# Ids: 0 pad, 1 unk, 2 start, 3 end, 4 "a", 5 "b". Greedy takes "a" (0.6) and then never ends
# with much probability; beam search finds "b </s>" (0.4 x 0.9 = 0.36 > 0.6 x 0.33).
TABLE = np.zeros((6, 6))
TABLE[2, [4, 5]] = [0.6, 0.4]
TABLE[4, [3, 4, 5]] = [0.32, 0.36, 0.32]
TABLE[5, [3, 4, 5]] = [0.9, 0.05, 0.05]
TABLE[3, 3] = TABLE[0, 3] = 1.0


def test_greedy_and_beam_search_on_a_known_distribution():
    model = _TableModel(TABLE)
    source = tf.constant([[7, 8], [9, 0]], tf.int32)
    greedy = seq2seq.greedy_search(model, source, 4).numpy()
    np.testing.assert_array_equal(greedy, [[4, 4, 4, 4], [4, 4, 4, 4]])
    beam = seq2seq.beam_search(model, source, 4, 2, 0.0).numpy()
    np.testing.assert_array_equal(beam[:, :2], [[5, 3], [5, 3]])
    assert (beam[:, 2:] == 0).all()  # finished beams carry padding
    np.testing.assert_array_equal(seq2seq.beam_search(model, source, 4, 1, 0.0).numpy(), greedy)
    # Max length 1: neither search may write more than one token.
    assert seq2seq.greedy_search(model, source, 1).shape[1] == 1
    assert seq2seq.beam_search(model, source, 1, 3, 0.6).shape[1] == 1


def test_length_penalty_favors_longer_finished_beams():
    # Start: "a" 0.5 then end 1.0 (length 2), or "b" 0.5 → "b" 0.9 → end (length 3, p 0.45).
    table = np.zeros((6, 6))
    table[2, [4, 5]] = [0.5, 0.5]
    table[4, 3] = 1.0
    table[5, [5, 3]] = [0.9, 0.1]
    table[3, 3] = table[0, 3] = 1.0
    table = table.copy()
    model = _TableModel(table)
    source = tf.constant([[7]], tf.int32)
    # "b b" continues: after the second b the table row 5 again says b 0.9; cap at 3 tokens.
    short = seq2seq.beam_search(model, source, 3, 2, 0.0).numpy()[0]
    long = seq2seq.beam_search(model, source, 3, 2, 5.0).numpy()[0]
    assert short[0] == 4 and long[0] == 5
