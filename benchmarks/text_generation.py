"""Benchmark of the text-generation task on tiny Shakespeare: char-level loss in a time budget, tokens/s.

Usage:
    python benchmarks/text_generation.py --minutes 60                     # the goal: <= 1.50 nats/char
    python benchmarks/text_generation.py --minutes 3                      # checks the script, not a result
    python benchmarks/text_generation.py --minutes 20 --embed-dim 128 --num-layers 3
    python benchmarks/text_generation.py --minutes 57 --model lstm_lm --num-layers 2 --units 512 \
        --embed-dim 128 --dropout-rate 0.25                              # the run in BENCHMARKS.md

In one process:

1. Costs: the recipe's compiled model (`tasks.text_generation.build_model`) runs `fit` on the
   task's pipeline (10 timed batches after warm-up) and one validation pass; the budget
   (`--minutes`, minus a reserve for the final evaluation and export) over an epoch's cost
   (`--steps-per-epoch` batches and a validation pass) gives the number of epochs, so the
   cosine schedule spans the whole budget.
2. Training: `tasks.text_generation.train` with that recipe: the package's pipeline, callbacks,
   evaluation beside the n-gram baselines, and export. Validation is the last 10 % of the text.
3. Generation: the trained model, greedy, `--generate-tokens` new tokens after a 64-character
   prompt, compiled with `tf.function`, best of 3, with the KV cache and without it (each step
   re-runs the last `sequence_length` tokens).

Prints a Markdown section for BENCHMARKS.md on stdout (progress on stderr); `--output-json`
writes the numbers.
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from tasks import text_generation as tg  # noqa: E402
from tasks.core import training  # noqa: E402

GOAL_NATS_PER_CHAR = 1.50
RESERVE_SECONDS = 90  # the final evaluation, baselines, export and its fresh-process check


def log(message):
    print(message, file=sys.stderr, flush=True)


def default_data():
    shared = os.environ.get("APPLIED_DL_DATA")
    root = pathlib.Path(shared) if shared else REPO.parent / "shared" / "data"
    return str(root / "tiny_shakespeare" / "input.txt")


def recipe(args, workdir, epochs):
    return tg.Config(
        data=args.data, model=args.model, epochs=epochs, steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size, sequence_length=args.sequence_length, num_layers=args.num_layers,
        embed_dim=args.embed_dim, dropout_rate=args.dropout_rate,
        # Each size flag reaches only the model it belongs to (0: the builder's default).
        num_heads=args.num_heads if args.model == "gpt" else 0, units=args.units if args.model == "lstm_lm" else 0,
        learning_rate=args.learning_rate, warmup_epochs=min(1.0, epochs / 10), sample_length=0,
        runs_dir=str(workdir / "runs"), export_dir=str(workdir / "saved_models"), verbose=2,
    )


def epoch_costs(config):
    """(seconds per training batch, seconds per validation pass) of the recipe, through `fit`.

    Timed the way training runs: `model.fit` on the task's own pipeline (random windows cut on
    the fly), after a first fit that traces, and one full `evaluate` of the validation split,
    which `fit` runs after every epoch.
    """

    class BatchClock(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            times.append(time.perf_counter())

    training.setup(config)
    data = tg.load_data(config)
    model = tg.build_model(config, data.info)
    model.fit(data.train, epochs=1, steps_per_epoch=2, verbose=0)  # traces the train step
    times = []
    model.fit(data.train, epochs=1, steps_per_epoch=12, verbose=0, callbacks=[BatchClock()])
    step = (times[-1] - times[1]) / (len(times) - 2)  # batches 3..12: steady state
    model.evaluate(data.validation, verbose=0)  # traces the test step
    started = time.perf_counter()
    model.evaluate(data.validation, verbose=0)
    return step, time.perf_counter() - started


def generation_speed(model, info, num_tokens, use_cache):
    """Greedy tokens per second after a 64-character prompt, compiled, best of 3."""
    codec = tg.codec_for(info)
    ids = tg.prompt_ids(codec, tf.constant("First Citizen:\nBefore we proceed any further, hear me speak.\n"[:64]), info)

    @tf.function
    def generate(ids):
        return tg.generate_ids(model, ids, num_tokens, top_k=1, context_length=info["sequence_length"],
                               use_cache=use_cache)

    generate(ids)  # trace
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        generate(ids).numpy()
        best = min(best, time.perf_counter() - started)
    return num_tokens / best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=default_data())
    parser.add_argument("--model", default="gpt", choices=["gpt", "lstm_lm"])
    parser.add_argument("--minutes", type=float, default=60.0, help="Training budget, including evaluation.")
    parser.add_argument("--sequence-length", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--num-layers", type=int, default=4)
    parser.add_argument("--embed-dim", type=int, default=192)
    parser.add_argument("--num-heads", type=int, default=6, help="GPT only.")
    parser.add_argument("--units", type=int, default=512, help="LSTM width, lstm_lm only.")
    parser.add_argument("--dropout-rate", type=float, default=0.1)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--steps-per-epoch", type=int, default=200)
    parser.add_argument("--generate-tokens", type=int, default=256)
    parser.add_argument("--output-json", default=None)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as scratch:
        workdir = pathlib.Path(scratch)
        began = time.perf_counter()  # the budget covers measuring the costs too
        seconds, validation = epoch_costs(recipe(args, workdir, 1))
        budget = max(args.minutes * 60 - RESERVE_SECONDS - (time.perf_counter() - began), 30)
        total_steps = max(int(budget / seconds), 1)
        args.steps_per_epoch = min(args.steps_per_epoch, total_steps)  # short budgets: shorter epochs
        epochs = max(1, int(budget // (args.steps_per_epoch * seconds + validation)))
        config = recipe(args, workdir, epochs)
        log(f"{seconds:.3f} s/step, {validation:.1f} s/validation → {epochs} epochs of "
            f"{args.steps_per_epoch} steps in {args.minutes} min")
        started = time.perf_counter()
        model = tg.train(config)
        wall = time.perf_counter() - started
        total = time.perf_counter() - began
        (run,) = (workdir / "runs" / "text_generation").iterdir()
        record = json.loads((run / "metrics.json").read_text())
        info = json.loads((run / "info.json").read_text())
        log("measuring generation speed")
        cached = generation_speed(model, info, args.generate_tokens, use_cache=True)
        uncached = generation_speed(model, info, args.generate_tokens, use_cache=False)

    metrics, base = record["metrics"], record["baseline"]
    numbers = {
        "date": datetime.date.today().isoformat(),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs",
        "model": args.model,
        "minutes_budget": args.minutes,
        "wall_seconds": round(wall, 1),
        "total_seconds": round(total, 1),
        "epochs": epochs,
        "steps": epochs * args.steps_per_epoch,
        "parameters": int(model.count_params()),
        "validation_nats_per_char": metrics["nats_per_char"],
        "validation_bits_per_char": metrics["bits_per_char"],
        "bigram_nats_per_char": base["nats_per_char"],
        "unigram_nats_per_char": base["unigram"]["nats_per_char"],
        "train_tokens_per_second": round(record["examples_per_second"] * args.sequence_length, 1),
        "generate_tokens_per_second_cache": round(cached, 1),
        "generate_tokens_per_second_no_cache": round(uncached, 1),
        "goal_met": metrics["nats_per_char"] <= GOAL_NATS_PER_CHAR,
    }
    command = "python benchmarks/text_generation.py " + " ".join(argv if argv is not None else sys.argv[1:])
    print(f"## Text generation (tiny Shakespeare, characters)\n\n`{command}` — {numbers['date']}, {numbers['machine']}\n")
    size = (f"GPT {args.num_layers}×{args.embed_dim}" if args.model == "gpt"
            else f"LSTM LM {args.num_layers}×{args.units}, embedding {args.embed_dim}")
    print(f"{size} ({numbers['parameters']:,} parameters), dropout {args.dropout_rate}, context "
          f"{args.sequence_length}, batch {args.batch_size}, {numbers['steps']} steps in {numbers['wall_seconds']} s "
          f"({numbers['total_seconds']} s with measuring the step cost first).\n")
    print("| measure | value |\n|---|---|")
    print(f"| validation loss (last 10 %) | **{metrics['nats_per_char']:.3f} nats/char** "
          f"({metrics['bits_per_char']:.3f} bits/char; goal ≤ {GOAL_NATS_PER_CHAR} in 60 min: "
          f"{'met' if numbers['goal_met'] else 'not met'}) |")
    print(f"| bigram / unigram baseline | {base['nats_per_char']:.3f} / {base['unigram']['nats_per_char']:.3f} nats/char |")
    print(f"| training | {numbers['train_tokens_per_second']:,.0f} tokens/s |")
    cache = "KV cache" if args.model == "gpt" else "recurrent state carried"
    print(f"| greedy generation, {cache} | {cached:,.1f} tokens/s |")
    print(f"| greedy generation, no cache (window of {args.sequence_length}) | {uncached:,.1f} tokens/s |")
    if args.output_json:
        pathlib.Path(args.output_json).write_text(json.dumps(numbers, indent=2) + "\n")
    return numbers


if __name__ == "__main__":
    keras.utils.set_random_seed(0)
    main()
