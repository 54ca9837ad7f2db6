"""Benchmark of the translation task on Multi30k de→en: test2016 BLEU, tokens/s, greedy vs beam speed.

Usage:
    python benchmarks/translation.py --epochs 1                       # ~8 min on 2 shared cores
    python benchmarks/translation.py --epochs 15 --num-layers 3 --embed-dim 256 --num-heads 8 \
        --intermediate-dim 1024 --vocabulary-size 8000 --learning-rate 1e-3   # the goal run: BLEU 38.7, 55 min
    python benchmarks/translation.py --model gru_attention --epochs 2 --embed-dim 128 --units 256

In one process: `tasks.translation.train` with the recipe (the package's whole path: SentencePiece
on the training split, tf.data, callbacks, evaluation of greedy and beam decoding on the whole
test_2016_flickr split beside copy-the-source, export with its fresh-process check), then the
numbers from its `metrics.json`:

- BLEU and chrF (sacrebleu, detokenized) greedy and beam, against the issue's goal (≥ 35).
- Training tokens/s: the spine's examples/s (median over epochs after the first; the whole epoch
  when there is one) × the mean source + target tokens per training pair.
- Decoding sentences/s on the test split, greedy and beam, batched, after tracing.

Prints a Markdown section for BENCHMARKS.md on stdout (progress on stderr).
"""

import argparse
import datetime
import json
import os
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from benchmarks.classification import log  # noqa: E402
from benchmarks.classification import machine  # noqa: E402
from tasks import translation  # noqa: E402

GOAL_BLEU = 35.0
PUBLISHED_SMALL_TRANSFORMER = 30.6  # the reference point


def default_data(name):
    shared = os.environ.get("APPLIED_DL_DATA")
    return str((pathlib.Path(shared) if shared else REPO.parent / "shared" / "data") / name)


def add_model_flags(parser, epochs, beam_width):
    """The recipe flags both seq2seq benchmarks share."""
    parser.add_argument("--model", default="transformer_seq2seq")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=2)
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--num-heads", type=int, default=4)
    parser.add_argument("--intermediate-dim", type=int, default=0, help="Transformer MLP width (0: 4 x embed).")
    parser.add_argument("--units", type=int, default=0)
    parser.add_argument("--vocabulary-size", type=int, default=4000)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--dropout-rate", type=float, default=0.1)
    parser.add_argument("--beam-width", type=int, default=beam_width)
    parser.add_argument("--test-limit", type=int, default=0, help="0: the whole test split.")


def recipe_fields(args, workdir):
    fields = dict(
        model=args.model, epochs=args.epochs, batch_size=args.batch_size, vocabulary_size=args.vocabulary_size,
        learning_rate=args.learning_rate, warmup_epochs=min(0.5, args.epochs / 10), dropout_rate=args.dropout_rate,
        beam_width=args.beam_width, test_limit=args.test_limit, runs_dir=str(workdir / "runs"),
        export_dir=str(workdir / "saved_models"), verbose=2,
    )
    if args.model == "transformer_seq2seq":
        fields.update(num_layers=args.num_layers, embed_dim=args.embed_dim, num_heads=args.num_heads,
                      intermediate_dim=args.intermediate_dim)
    else:
        fields.update(num_layers=0, embed_dim=args.embed_dim, num_heads=0, units=args.units)
    return fields


def run_task(module, config, workdir):
    """Trains through the package; returns (metrics record, info, model, wall seconds)."""
    started = time.perf_counter()
    model = module.train(config)
    wall = time.perf_counter() - started
    (run,) = (workdir / "runs" / module.__name__.rsplit(".", 1)[-1]).iterdir()
    return json.loads((run / "metrics.json").read_text()), json.loads((run / "info.json").read_text()), model, wall


def speed_rows(record, info, beam_width):
    """Markdown rows: training tokens/s and decoding sentences/s."""
    tokens = info["mean_source_tokens"] + info["mean_target_tokens"]
    metrics = record["metrics"]
    rows = [
        f"| training | {record['examples_per_second'] * tokens:,.0f} tokens/s "
        f"({record['examples_per_second']:,.1f} pairs/s × {tokens:.1f} source + target tokens; "
        f"{record['examples_per_cpu_second'] * tokens:,.0f} tokens per CPU-second) |",
        f"| decoding, greedy | {metrics['greedy_sentences_per_second']:,.1f} sentences/s |",
    ]
    if "beam_sentences_per_second" in metrics:
        rows.append(f"| decoding, beam {beam_width} | {metrics['beam_sentences_per_second']:,.1f} sentences/s |")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=default_data("multi30k"))
    add_model_flags(parser, epochs=1, beam_width=4)
    parser.add_argument("--max-length", type=int, default=48, help="Source and target tokens.")
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    host = machine()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = pathlib.Path(scratch)
        config = translation.Config(
            data=args.data, source_lang="de", target_lang="en", max_source_length=args.max_length,
            max_target_length=args.max_length, **recipe_fields(args, workdir),
        )
        log(f"training {args.model} for {args.epochs} epochs on {args.data}")
        record, info, model, wall = run_task(translation, config, workdir)
    metrics, base = record["metrics"], record["baseline"]
    beam = args.beam_width
    command = "python benchmarks/translation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"## Translation (Multi30k de→en, test2016)\n\n`{command}` — {datetime.date.today().isoformat()}, "
          f"{host['nproc']} CPUs ({host['cpu']}), load average {host['load_average_1min']} at the start and "
          f"{os.getloadavg()[0]:.1f} at the end (shared machine)\n")
    print(f"{args.model} ({model.count_params():,} parameters), SentencePiece {info['source_vocabulary_size']} "
          f"shared, {info['num_train']:,} training pairs, {args.epochs} epochs, batch {args.batch_size}, "
          f"{wall:.0f} s wall for the whole run (training {record['train_seconds']:.0f} s).\n")
    print("| measure | value |\n|---|---|")
    print(f"| test BLEU, greedy | **{metrics['bleu']:.2f}** (chrF {metrics['chrf']:.2f}) |")
    if beam > 1:
        print(f"| test BLEU, beam {beam} (α {config.length_penalty}) | **{metrics[f'bleu_beam{beam}']:.2f}** "
              f"(chrF {metrics[f'chrf_beam{beam}']:.2f}) |")
    best = max(metrics["bleu"], metrics.get(f"bleu_beam{beam}", 0.0))
    print(f"| copy-the-source baseline | {base['bleu']:.2f} BLEU (chrF {base['chrf']:.2f}) |")
    print(f"| goal | ≥ {GOAL_BLEU} BLEU (a published small Transformer: {PUBLISHED_SMALL_TRANSFORMER}): "
          f"{'met' if best >= GOAL_BLEU else 'not met'} |")
    for row in speed_rows(record, info, beam):
        print(row)
    print(f"| test sentences | {metrics['test_pairs']} |")
    return record


if __name__ == "__main__":
    main()
