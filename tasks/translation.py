"""Translation: Transformer and GRU/LSTM-attention encoder–decoders on subwords, against copying the source.

Usage:
    python -m tasks.translation train                                   # demo: written-out dates → ISO dates
    python -m tasks.translation train --data multi30k --source-lang de --target-lang en \
        --epochs 15 --num-layers 3 --embed-dim 256 --num-heads 8 --intermediate-dim 1024 \
        --vocabulary-size 8000 --learning-rate 1e-3 --warmup-epochs 0.5 --batch-size 64 \
        --max-source-length 48 --max-target-length 48            # the benchmark's recipe (BENCHMARKS.md)
    python -m tasks.translation train --data spa-eng/spa.txt --reverse   # Anki TSV: spa → eng
    python -m tasks.translation train --data spa-eng.zip --reverse       # the Anki zip as downloaded
    python -m tasks.translation train --data tfds:ted_hrlr_translate/pt_to_en --model gru_attention
    python -m tasks.translation evaluate                                 # the same flags find the run
    python -m tasks.translation predict "the third of may, two thousand and one" "Jan 5 1999"
    python -m tasks.translation predict --model saved_models/translation --beam-width 4 sentences.txt

Data (`tasks.data.pairs`): a folder of parallel files (`train.de.gz` + `train.en.gz`, Moses
`train.de` + `train.en`, …, or `de.train.txt` + `en.train.txt`), a TSV of pairs (Tatoeba/Anki
`eng<TAB>spa<TAB>…`) or the Anki `.zip` holding one, JSON lines (`{"translation": {"de": …, "en":
…}}`, a file or `train.jsonl` …), `tfds:` names, or `demo`. A source without splits is split 80/10/10 (`--validation-fraction` each, seeded).
Tokens: SentencePiece BPE learned on the training split, one shared model or one per side.
Model: `transformer_seq2seq` (default), `gru_attention`, `lstm_attention`. Loss: token
cross-entropy (teacher forcing). Metrics: BLEU and chrF by sacrebleu on the detokenized output,
greedy and beam. Baseline: the source copied as the translation (it scores on names, numbers and
shared words).

The SavedModel's `serving_default` translates `text` (B,) greedily; `beam` takes `beam_width`,
`length_penalty` and `max_length` too. Both return `translation` and `truncated` (the input was
longer than the model reads). An empty text gives ""; characters never seen in training are
skipped (predict says which).
"""

import dataclasses
import sys

from tasks.families import seq2seq
from tasks.core import cli
from tasks.core import export
from tasks.core import runner
from tasks.core.config import option
from tasks.data import pairs as pair_readers
from tasks.metrics import text as text_metrics

KIND = seq2seq.KIND  # the applications registry kind --model names

OUTPUT = "translation"


@dataclasses.dataclass
class Config(seq2seq.Seq2SeqConfig):
    source_lang: str = option("", "Source language of parallel files or TFDS features, e.g. de.")
    target_lang: str = option("", "Target language of parallel files or TFDS features, e.g. en.")
    reverse: bool = option(False, "TSV and TFDS: translate the second side into the first.")
    num_layers: int = option(2, "Encoder (and decoder) blocks, Transformer (0: builder default).", minimum=0)
    embed_dim: int = option(128, "Embedding width (0: builder default).", minimum=0)
    epochs: int = option(4, "Passes over the training split.", minimum=1)
    batch_size: int = option(32, "Global batch size (split across replicas).", minimum=1)
    learning_rate: float = option(2e-3, "Peak learning rate.", minimum=0.0)
    warmup_epochs: float = option(0.2, "Linear warmup before the schedule.", minimum=0.0)
    vocabulary_size: int = option(
        4000, "SentencePiece vocabulary (each side, or shared); lowered to what the text supports.", minimum=16
    )


# === Data ===


def load_data(config, saved=None):
    """Pairs from `--data`, tokenized and batched by the shared core; `saved` (the run's info,
    when it exists) keeps its tokenizers."""
    splits = pair_readers.read_translation(
        config.data, config.source_lang, config.target_lang, config.reverse, config.skip_bad, config.seed,
        verbose=config.verbose,
    )
    return seq2seq.load_data(config, splits, saved)


# === Model ===


def build_model(config, info):
    return seq2seq.build_model(config, info)


# === Baseline and evaluation ===


def baseline(config, data):
    """The source sentence copied as its translation, scored like the model."""
    result = text_metrics.translation_scores(data.test_sources, data.test_references)
    result["name"] = "copy the source"
    return result


def evaluate(model, data, config, plots_dir=None):
    """BLEU and chrF (sacrebleu) of greedy and beam translations of the test split."""
    return seq2seq.evaluate(model, data, config, plots_dir, text_metrics.translation_scores)


# === Export and predict ===


def serving(model, info):
    return seq2seq.serving(model, info, OUTPUT)


def predict_flags(parser):
    seq2seq.predict_flags(parser)


def predict(inputs, model_path, output_dir="predictions", beam_width=1, length_penalty=0.6, max_length=0):
    """Prints the translation of each string, or of each line of each file."""
    return seq2seq.predict(inputs, export.load(model_path), OUTPUT, beam_width, length_penalty, max_length,
                           split_lines=True)


# === Train ===


def train(config, fresh=False):
    """The whole job: data → model → fit → evaluate + baseline → export. Returns the model."""
    return runner.train(sys.modules[__name__], config, fresh=fresh)


if __name__ == "__main__":
    cli.main(sys.modules[__name__])
