"""Summarization: a learned extractive model (default) and subword encoder–decoders, against lead-3.

Usage:
    python -m tasks.summarization train                                 # demo: made-up reports → one line
    python -m tasks.summarization train --data bbc_news_summary/train_val_test_split.zip --epochs 3
    python -m tasks.summarization train --data bbc_news_summary/train_val_test_split.zip \
        --model transformer_seq2seq --epochs 20 --max-source-length 384 --max-target-length 192
    python -m tasks.summarization train --data bbc_news_summary_mini   # article/ + summary/
    python -m tasks.summarization train --data news.csv --document-column text --summary-column abstract
    python -m tasks.summarization train --data tfds:cnn_dailymail --model gru_attention
    python -m tasks.summarization evaluate                               # the same flags find the run
    python -m tasks.summarization predict article.txt "Full text of a report ..." --sentences 4

Data (`tasks.data.pairs`): CSV with document and summary columns (named by the flags or found:
`document,summary`, CNN/DailyMail's `article,highlights`, …; a file, a folder of train/valid/test
CSVs, or a zip of them read in place: the BBC News Summary set), JSON lines with the same keys,
folders of article and summary files with the same names, `tfds:cnn_dailymail`, or `demo`. A source without
splits is split 80/10/10 (`--validation-fraction` each, seeded).

Models:
- `extractive_summarizer` (default; `tasks.families.extractive`): documents split into sentences and
  hashed words inside the graph (`--max-sentences` × `--max-sentence-tokens`, `--hash-buckets`);
  one logit per sentence; labels: the sentences found in the reference; the summary is the top
  `--summary-sentences` sentences in document order (0: the k in 1-15 best on validation).
- `transformer_seq2seq`, `gru_attention`, `lstm_attention` (`tasks.families.seq2seq`): one SentencePiece
  BPE model for documents and summaries; documents longer than `--max-source-length` tokens are
  truncated (the lead is kept); summaries longer than `--max-target-length` are truncated for
  training by default (`--over-length`), never for scoring; token cross-entropy (teacher forcing);
  greedy and beam decoding.

Metrics: ROUGE-1/2/L/Lsum F-measure (rouge-score, Porter stemming), x100 (extractive: also lead-k
at the model's length; abstractive: greedy and beam). Baseline: lead-3, the first three sentences
of the body (a title line followed by a blank line is not part of the body).

The SavedModel's `serving_default` summarizes `text` (B,) → `summary` and `truncated`. Extractive:
`select` takes `sentences` (int32) too. Abstractive: `serving_default` is greedy; `beam` takes
`beam_width`, `length_penalty` and `max_length` too.
"""

import dataclasses
import sys

from tasks.families import extractive
from tasks.families import seq2seq
from tasks.core import cli
from tasks.core import export
from tasks.core import runner
from tasks.core.config import model_option
from tasks.core.config import option
from tasks.core.errors import UserError
from tasks.data import pairs as pair_readers
from tasks.metrics import text as text_metrics

KIND = ("extractive", "seq2seq")  # the applications registry kind(s) --model names

OUTPUT = "summary"
LEAD_SENTENCES = 3


@dataclasses.dataclass
class Config(seq2seq.Seq2SeqConfig):
    model: str = model_option(
        "extractive_summarizer", KIND, " (the extractive one scores the document's sentences)"
    )
    document_column: str = option("", "CSV column / JSON key of the documents, or TFDS feature (empty: detect "
                                      "document, article, text...).")
    summary_column: str = option("", "CSV column / JSON key of the summaries, or TFDS feature (empty: detect "
                                     "summary, highlights, abstract...).")
    num_layers: int = option(0, "Encoder (and decoder) blocks, Transformer (0: 2).", minimum=0)
    embed_dim: int = option(0, "Embedding width (0: 128 for the Transformer, the builder's default otherwise).", minimum=0)
    epochs: int = option(4, "Passes over the training split.", minimum=1)
    batch_size: int = option(32, "Global batch size (split across replicas).", minimum=1)
    learning_rate: float = option(2e-3, "Peak learning rate.", minimum=0.0)
    warmup_epochs: float = option(0.2, "Linear warmup before the schedule.", minimum=0.0)
    vocabulary_size: int = option(
        4000, "SentencePiece vocabulary (shared); lowered to what the text supports.", minimum=16
    )
    max_source_length: int = option(256, "Document tokens the model reads; longer ones are truncated (counted).", minimum=1)
    max_target_length: int = option(128, "Summary tokens the model writes, the end token included.", minimum=2)
    over_length: str = option(
        "truncate", "Training pairs with a summary over --max-target-length.", choices=["drop", "truncate", "error"]
    )
    beam_width: int = option(2, "Beam width of the beam evaluation (1: greedy only).", minimum=1, identity=False)
    max_sentences: int = option(50, "Extractive: sentences of a document read; later ones are not (counted).", minimum=1)
    max_sentence_tokens: int = option(32, "Extractive: words of a sentence read.", minimum=1)
    hash_buckets: int = option(32768, "Extractive: words are hashed into this many ids (no vocabulary).", minimum=16)
    summary_sentences: int = option(
        0, "Extractive: sentences in a summary (0: the best of 1-15 on the validation split).", minimum=0
    )


# === Data ===


def load_data(config, saved=None):
    """(document, summary) pairs from `--data`, tokenized and batched by the shared core; `saved`
    (the run's info, when it exists) keeps its tokenizers."""
    splits = pair_readers.read_summarization(
        config.data, config.document_column, config.summary_column, config.skip_bad, config.seed,
        verbose=config.verbose,
    )
    if extractive.is_extractive(config):
        return extractive.load_data(config, splits)
    return seq2seq.load_data(config, splits, saved)


# === Model ===


def build_model(config, info):
    if extractive.is_extractive(info):
        return extractive.build_model(config, info)
    if config.model == "transformer_seq2seq":  # this task's Transformer: 2 blocks x 128
        config = dataclasses.replace(config, num_layers=config.num_layers or 2, embed_dim=config.embed_dim or 128)
    return seq2seq.build_model(config, info)


def callbacks(config, data, run):
    """Extractive: choose the summary length on the validation split once trained."""
    if extractive.is_extractive(data.info):
        return [extractive.ChooseK(data, run, text_metrics.rouge, config.verbose)]
    return []


# === Baseline and evaluation ===


def body(document):
    """The document without a leading title line (a first line followed by a blank line)."""
    lines = document.strip().split("\n")
    if len(lines) > 2 and lines[1].strip() == "" and not lines[0].rstrip().endswith((".", "!", "?")):
        return "\n".join(lines[2:])
    return document


def lead(document, count=LEAD_SENTENCES):
    """The first `count` sentences of the body, one a line."""
    return "\n".join(pair_readers.split_sentences(body(document))[:count])


def baseline(config, data):
    """Lead-3: the first three sentences of each test document, scored like the model."""
    result = text_metrics.rouge([lead(document) for document in data.test_sources], data.test_references)
    result["name"] = "lead-3"
    return result


def evaluate(model, data, config, plots_dir=None):
    """ROUGE-1/2/L/Lsum (rouge-score, stemmed) of greedy and beam summaries of the test split."""
    if extractive.is_extractive(data.info):
        return extractive.evaluate(model, data, config, plots_dir, text_metrics.rouge)
    return seq2seq.evaluate(model, data, config, plots_dir, text_metrics.rouge)


# === Export and predict ===


def serving(model, info):
    if extractive.is_extractive(info):
        return extractive.serving(model, info, OUTPUT)
    return seq2seq.serving(model, info, OUTPUT)


def predict_flags(parser):
    seq2seq.predict_flags(parser)
    parser.add_argument("--sentences", type=int, default=0,
                        help="Extractive models: sentences per summary (0: the model's own choice).")


def predict(inputs, model_path, output_dir="predictions", beam_width=1, length_penalty=0.6, max_length=0, sentences=0):
    """Prints the summary of each string, or of each file's whole text."""
    loaded = export.load(model_path)
    if extractive.is_extractive(loaded.info):
        return extractive.predict(inputs, loaded, OUTPUT, beam_width, max_length, sentences)
    if sentences:
        raise UserError(f"--sentences applies to extractive models; {loaded.path} is abstractive.")
    return seq2seq.predict(inputs, loaded, OUTPUT, beam_width, length_penalty, max_length, split_lines=False)


# === Train ===


def train(config, fresh=False):
    """The whole job: data → model → fit → evaluate + baseline → export. Returns the model."""
    return runner.train(sys.modules[__name__], config, fresh=fresh)


if __name__ == "__main__":
    cli.main(sys.modules[__name__])
