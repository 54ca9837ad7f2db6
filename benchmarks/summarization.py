"""Benchmark of the summarization task on BBC News: test ROUGE beside lead-3 (and lead-k), speed.

Usage:
    python benchmarks/summarization.py                                # the extractive default, ~2-4 min
    python benchmarks/summarization.py --model transformer_seq2seq --epochs 4      # abstractive, ~8 min
    python benchmarks/summarization.py --model transformer_seq2seq --epochs 40 --num-layers 3 \
        --embed-dim 256 --max-source-length 512 --max-target-length 256            # the long abstractive run

In one process: `tasks.summarization.train` on the BBC zip (train 1,335 / valid 445 / test 445,
read in place) with the recipe — tf.data, callbacks, evaluation beside lead-3 on the test split
(`--test-limit` first documents, 0: all), export with its fresh-process check — then the numbers
from its `metrics.json`: ROUGE-1/2/L/Lsum (rouge-score, stemmed) against lead-3 and the issue's
goal (ROUGE-2 ≥ lead-3 + 5). The extractive model also reports lead-k (the first k sentences, k
the model's summary length) and documents/s; an abstractive one training tokens/s and decoding
documents/s greedy and beam.

Prints a Markdown section for BENCHMARKS.md on stdout (progress on stderr).
"""

import argparse
import datetime
import os
import pathlib
import sys
import tempfile

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402

from benchmarks.classification import log  # noqa: E402
from benchmarks.classification import machine  # noqa: E402
from benchmarks.translation import add_model_flags  # noqa: E402
from benchmarks.translation import default_data  # noqa: E402
from benchmarks.translation import recipe_fields  # noqa: E402
from benchmarks.translation import run_task  # noqa: E402
from benchmarks.translation import speed_rows  # noqa: E402
from tasks import summarization  # noqa: E402

GOAL_OVER_LEAD3 = 5.0  # ROUGE-2 points
KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(pathlib.Path(default_data("bbc_news_summary")) / "train_val_test_split.zip"))
    add_model_flags(parser, epochs=3, beam_width=2)
    parser.add_argument("--max-source-length", type=int, default=256)
    parser.add_argument("--max-target-length", type=int, default=128)
    parser.add_argument("--summary-sentences", type=int, default=0, help="Extractive: 0 chooses on validation.")
    parser.set_defaults(batch_size=16, model="extractive_summarizer")
    args = parser.parse_args(argv)
    extractive = args.model == "extractive_summarizer"
    keras.utils.set_random_seed(0)
    host = machine()
    with tempfile.TemporaryDirectory() as scratch:
        workdir = pathlib.Path(scratch)
        fields = recipe_fields(args, workdir)
        if extractive:
            fields.update(num_layers=0, num_heads=0, embed_dim=0 if args.embed_dim == 128 else args.embed_dim,
                          summary_sentences=args.summary_sentences)
        config = summarization.Config(
            data=args.data, max_source_length=args.max_source_length, max_target_length=args.max_target_length, **fields
        )
        log(f"training {args.model} for {args.epochs} epochs on {args.data}")
        record, info, model, wall = run_task(summarization, config, workdir)
    metrics, lead3 = record["metrics"], record["baseline"]
    beam = args.beam_width if not extractive else 1
    command = "python benchmarks/summarization.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"## Summarization (BBC News Summary, test split)\n\n`{command}` — {datetime.date.today().isoformat()}, "
          f"{host['nproc']} CPUs ({host['cpu']}), load average {host['load_average_1min']} at the start and "
          f"{os.getloadavg()[0]:.1f} at the end (shared machine)\n")
    if extractive:
        k = metrics["summary_sentences"]
        print(f"{args.model} ({model.count_params():,} parameters), words hashed into {info['hash_buckets']:,} ids, "
              f"documents read as {info['max_sentences']} sentences × {info['max_sentence_tokens']} words, "
              f"{info['num_train']:,} training documents ({info['positive_fraction']:.0%} of their sentences "
              f"labelled as in the summary), {args.epochs} epochs, batch {args.batch_size}; summary length "
              f"k = {k} sentences (chosen on validation unless given); {wall:.0f} s wall for the whole run "
              f"(training {record['train_seconds']:.0f} s).\n")
        print(f"| ROUGE (F, ×100) | model, top {k} | lead-{k} | lead-3 |\n|---|---|---|---|")
        for key in KEYS:
            print(f"| {key} | {metrics[key]:.2f} | {metrics[f'lead_k_{key}']:.2f} | {lead3[key]:.2f} |")
    else:
        print(f"{args.model} ({model.count_params():,} parameters), SentencePiece {info['source_vocabulary_size']} "
              f"shared, {info['num_train']:,} training pairs, documents cut to {args.max_source_length} tokens, "
              f"summaries to {args.max_target_length}, {args.epochs} epochs, batch {args.batch_size}, "
              f"{wall:.0f} s wall for the whole run (training {record['train_seconds']:.0f} s).\n")
        print("| ROUGE (F, ×100) | model, greedy | " + (f"model, beam {beam} | " if beam > 1 else "") + "lead-3 |")
        print("|---|---|" + ("---|" if beam > 1 else "") + "---|")
        for key in KEYS:
            beam_cell = f" {metrics[f'{key}_beam{beam}']:.2f} |" if beam > 1 else ""
            print(f"| {key} | {metrics[key]:.2f} |{beam_cell} {lead3[key]:.2f} |")
    best = max(metrics["rouge2"], metrics.get(f"rouge2_beam{beam}", 0.0))
    goal = lead3["rouge2"] + GOAL_OVER_LEAD3
    print(f"\nGoal ROUGE-2 ≥ lead-3 + {GOAL_OVER_LEAD3:.0f} = {goal:.2f}: "
          f"{'met' if best >= goal else 'not met'} (best {best:.2f}).\n")
    print("| measure | value |\n|---|---|")
    if extractive:
        print(f"| training | {record['examples_per_second']:,.1f} documents/s "
              f"({record['examples_per_cpu_second']:,.1f} per CPU-second) |")
        print(f"| summarizing (in the graph: split, hash, score, select) | "
              f"{metrics['documents_per_second']:,.1f} documents/s |")
    else:
        for row in speed_rows(record, info, beam):
            print(row.replace("sentences/s", "documents/s"))
    print(f"| test documents | {metrics['test_pairs']} |")
    return record


if __name__ == "__main__":
    main()
