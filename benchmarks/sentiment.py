"""Benchmark of the sentiment task on MR polarity: K-fold CV accuracy per model beside TF-IDF + LR, sentences/s.

Usage:
    python benchmarks/sentiment.py                                  # NB n-grams and TextCNN 10 folds, the others fold 0
    python benchmarks/sentiment.py --folds 3 --models text_cnn,bert_tiny,bert_tiny_mlm   # what fit 15 min here
    python benchmarks/sentiment.py --folds 10 --other-folds 10      # the full run: every model on all 10 folds
    python benchmarks/sentiment.py --models text_cnn --folds 2      # a quick check of the script

Every model goes through the package's own path (`tasks.sentiment.train` with `--folds 10 --fold I`:
the reader with `--encoding latin-1`, the stratified folds, the training-split vocabulary, the
callbacks, the evaluation beside the majority class and TF-IDF (1-2 grams) + logistic
regression on the same fold), with `verbose=0` and nothing exported. A fold's 10 % validation
share comes out of its training 90 %. Reported per model: mean ± std over the folds run of
accuracy, macro-F1 and ROC-AUC; TF-IDF + LR on the same folds; training sentences/s (the spine's
`Throughput`: median over the epochs after the first) and wall time.

`bert_tiny + MLM` first pretrains the same encoder as a masked language model for
`--pretrain-epochs` epochs on the fold's own training sentences (no labels), then fine-tunes: the
same folds and fine-tuning recipe as `bert_tiny`, so the difference is the pretraining.

Prints a Markdown section for BENCHMARKS.md on stdout (progress on stderr).
"""

import argparse
import datetime
import os
import pathlib
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402

from benchmarks.classification import log  # noqa: E402
from benchmarks.classification import machine  # noqa: E402
from tasks import sentiment  # noqa: E402
from tasks.core import runner  # noqa: E402

GOAL = 0.80  # MR 10-fold accuracy without pretrained word vectors (the goal)
ALL_FOLDS = ("nb_ngrams", "text_cnn")  # ~15 s a fold on a quiet machine: always run on all --folds
KIM_CNN_RAND = 0.761
COMMON = dict(encoding="latin-1", sequence_length=56, verbose=0, export_format="saved_model")
RECIPES = {
    "text_cnn": ("TextCNN (Kim, widths 3/4/5 × 100, embed 128)", dict(model="text_cnn", embed_dim=128, epochs=3)),
    "nb_ngrams": ("NB-weighted bag of word 1-3- and char 3-6-grams (NBSVM's LR form)",
                  dict(model="nb_ngrams", tokenizer="ngrams", epochs=3)),
    "bigru_attention": ("BiGRU 64 + attention", dict(model="bigru_attention", epochs=3)),
    "bilstm_attention": ("BiLSTM 64 + attention", dict(model="bilstm_attention", epochs=3)),
    "bert_tiny": ("BERT-Tiny (2 × 128), WordPiece 8k", dict(model="bert_tiny", tokenizer="wordpiece",
                                                             vocabulary_size=8000, epochs=3, learning_rate=5e-4)),
    "bert_tiny_mlm": ("BERT-Tiny + masked-LM pretraining", dict(model="bert_tiny", tokenizer="wordpiece",
                                                                 vocabulary_size=8000, epochs=3, learning_rate=5e-4,
                                                                 pretrain_epochs=3)),
}


def default_data():
    shared = os.environ.get("APPLIED_DL_DATA")
    root = pathlib.Path(shared) if shared else REPO.parent / "shared" / "data"
    return str(root / "mr_polarity")


def run_model(key, data, folds, num_folds, workdir, pretrain_epochs):
    """Trains `key`'s recipe on each fold in `folds`; returns the per-fold metrics.json records."""
    _, overrides = RECIPES[key]
    if overrides.get("pretrain_epochs"):
        overrides = dict(overrides, pretrain_epochs=pretrain_epochs)
    records = []
    for fold in folds:
        config = sentiment.Config(data=data, folds=num_folds, fold=fold, runs_dir=str(workdir / "runs"),
                                  export_dir=str(workdir / "saved_models"), run_name=f"{key}-fold{fold}",
                                  **COMMON, **overrides)
        started = time.perf_counter()
        record = runner.train_fold(sentiment, config, fresh=True)
        record["wall_seconds"] = time.perf_counter() - started
        keras.backend.clear_session()
        log(f"{key} fold {fold}: accuracy {record['metrics']['accuracy']:.4f} "
            f"(TF-IDF {record['baseline']['accuracy']:.4f}) in {record['wall_seconds']:.0f} s")
        records.append(record)
    return records


def mean_std(values):
    return f"{np.mean(values):.4f} ± {np.std(values):.4f}" if len(values) > 1 else f"{values[0]:.4f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=default_data())
    parser.add_argument("--folds", type=int, default=10, help="Folds of the first model, nb_ngrams and text_cnn.")
    parser.add_argument("--other-folds", type=int, default=1, help="Folds (0..N-1) run for the other models.")
    parser.add_argument("--models", default="nb_ngrams,text_cnn,bigru_attention,bilstm_attention,bert_tiny,bert_tiny_mlm")
    parser.add_argument("--pretrain-epochs", type=int, default=3)
    args = parser.parse_args(argv)
    keys = [key.strip() for key in args.models.split(",") if key.strip()]
    facts = machine()
    started = time.perf_counter()
    results, failed = {}, {}
    with tempfile.TemporaryDirectory() as scratch:
        for index, key in enumerate(keys):
            count = args.folds if index == 0 or key in ALL_FOLDS else min(args.other_folds, args.folds)
            try:
                results[key] = run_model(key, args.data, range(count), max(10, args.folds),
                                         pathlib.Path(scratch), args.pretrain_epochs)
            except Exception as error:  # report the others; say which recipe failed and why
                log(f"{key} failed: {type(error).__name__}: {error}")
                failed[key] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
    total = time.perf_counter() - started
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = "python benchmarks/sentiment.py" + (" " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    print(f"## Sentiment classification (`{command}`, {stamp})\n")
    print(f"MR polarity (10,662 sentences), stratified 10-fold split (seed 0), each fold's test tenth held out; "
          f"no pretrained word vectors. Machine: {facts['nproc']} × {facts['cpu']}, load average "
          f"{facts['load_average_1min']} at the start (cores shared with other jobs); TF {facts['tensorflow']}, "
          f"Keras {facts['keras']}. Total wall time {total / 60:.1f} min.\n")
    print("| model | folds | accuracy | macro-F1 | ROC-AUC | TF-IDF + LR accuracy (same folds) | majority | "
          "train sentences/s | wall time |")
    print("|---|---|---|---|---|---|---|---|---|")
    for key, records in results.items():
        metric = {name: [r["metrics"][name] for r in records] for name in ("accuracy", "macro_f1", "roc_auc")}
        tfidf = [r["baseline"]["accuracy"] for r in records]
        majority = [r["baseline"]["majority"]["accuracy"] for r in records]
        rate = np.mean([r.get("examples_per_second") or 0 for r in records])
        wall = sum(r["wall_seconds"] for r in records)
        print(f"| {RECIPES[key][0]} | {len(records)} | {mean_std(metric['accuracy'])} | {mean_std(metric['macro_f1'])} "
              f"| {mean_std(metric['roc_auc'])} | {mean_std(tfidf)} | {np.mean(majority):.4f} | {rate:,.0f} "
              f"| {wall / 60:.1f} min |")
    for key, reason in failed.items():
        print(f"| {RECIPES[key][0]} | failed: {reason} | | | | | | | |")
    complete = {key: np.mean([r["metrics"]["accuracy"] for r in records]) for key, records in results.items()
                if len(records) == args.folds}
    if not complete:
        return
    first = max(complete, key=complete.get)  # the best model run on every fold
    verdict = "reached" if complete[first] >= GOAL else "not reached"
    print(f"\nGoal: ≥ {GOAL:.0%} {args.folds}-fold accuracy without pretrained vectors — **{verdict}** "
          f"({RECIPES[first][0]}: {complete[first]:.4f} over {args.folds} folds; Kim 2014 CNN-rand {KIM_CNN_RAND:.1%}).")
    if "bert_tiny" in results and "bert_tiny_mlm" in results:
        plain = [r["metrics"]["accuracy"] for r in results["bert_tiny"]]
        pretrained = [r["metrics"]["accuracy"] for r in results["bert_tiny_mlm"]]
        shared = min(len(plain), len(pretrained))
        gain = np.mean(pretrained[:shared]) - np.mean(plain[:shared])
        print(f"Masked-LM pretraining ({args.pretrain_epochs} epochs on the fold's training sentences): "
              f"{gain * 100:+.2f} accuracy points over the same BERT-Tiny without it, on {shared} fold(s).")


if __name__ == "__main__":
    main()
