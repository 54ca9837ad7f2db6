"""Benchmark of multi-worker training: examples/s with 1 vs 2 local workers, loss curves overlaid.

Usage:
    python benchmarks/distributed.py                       # MNIST (../shared/data/mnist), 3 epochs
    python benchmarks/distributed.py --epochs 1 --data demo

Both runs are `python -m tasks.classification train` with the same model, data, seed and global
batch (`--batch-size` 64 on one worker; 32 per worker on two), in one invocation of this script:

1. One worker: `--strategy default` (Keras `fit`).
2. Two workers on 127.0.0.1: `--strategy multi_worker` (the spine's `strategy.run` loop), each
   with its half of every global batch.

On this 2-core machine two workers share the same cores, so no speed-up is expected: the ratio
shows the cost of the collective ops (one all-reduce of the gradients per step) and of running
two TensorFlow runtimes side by side. Prints a Markdown section for BENCHMARKS.md and writes the
overlaid loss curves to `benchmarks/results/distributed_loss.png`.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.classification import log  # noqa: E402
from benchmarks.classification import machine  # noqa: E402
from tasks.core.distributed import free_local_ports  # noqa: E402


def default_data():
    shared = os.environ.get("APPLIED_DL_DATA")
    return str((pathlib.Path(shared) if shared else REPO.parent / "shared" / "data") / "mnist")


def launch(args, workdir, num_workers):
    """Trains with `num_workers` processes; returns (wall seconds, the chief's metrics.json, history)."""
    per_worker = args.batch_size // num_workers
    common = [
        "--data", args.data, "--model", args.model, "--epochs", str(args.epochs),
        "--batch-size", str(per_worker), "--learning-rate", str(args.learning_rate),
        "--run-name", f"workers{num_workers}", "--runs-dir", str(workdir / "runs"),
        "--export-dir", str(workdir / "saved_models"), "--verbose", "2",
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    commands = []
    if num_workers == 1:
        commands.append(([sys.executable, "-m", "tasks.classification", "train", *common], env))
    else:
        workers = [f"127.0.0.1:{port}" for port in free_local_ports(num_workers)]
        for index in range(num_workers):
            tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
            commands.append((
                [sys.executable, "-m", "tasks.classification", "train", *common, "--strategy", "multi_worker"],
                {**env, "TF_CONFIG": json.dumps(tf_config)},
            ))
    started = time.perf_counter()
    processes = [
        subprocess.Popen(command, env=command_env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True)
        for command, command_env in commands
    ]
    for process in processes:
        _, stderr = process.communicate()
        if process.returncode:
            raise SystemExit(f"training with {num_workers} workers failed:\n{stderr[-3000:]}")
    seconds = time.perf_counter() - started
    run = workdir / "runs" / "classification" / f"workers{num_workers}"
    metrics = json.loads((run / "metrics.json").read_text())
    lines = (run / "history.csv").read_text().strip().splitlines()
    header = lines[0].split(",")
    history = [dict(zip(header, line.split(","))) for line in lines[1:] if not line.startswith("epoch")]
    return seconds, metrics, [float(row["loss"]) for row in history]


def plot(curves, path):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    figure, axis = plt.subplots(figsize=(5, 3.5))
    for label, losses in curves.items():
        axis.plot(range(1, len(losses) + 1), losses, marker="o", label=label)
    axis.set_xlabel("epoch")
    axis.set_ylabel("training loss")
    axis.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=default_data())
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64, help="Global batch size.")
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    args = parser.parse_args(argv)
    results = {}
    with tempfile.TemporaryDirectory() as workdir:
        for workers in (1, 2):
            log(f"training with {workers} worker(s)")
            results[workers] = launch(args, pathlib.Path(workdir), workers)
    curves = {f"{w} worker{'s' if w > 1 else ''}": losses for w, (_, _, losses) in results.items()}
    plot(curves, REPO / "benchmarks" / "results" / "distributed_loss.png")
    rate = {w: m["examples_per_second"] for w, (_, m, _) in results.items()}
    facts = machine()
    print(f"## Multi-worker training — {facts['nproc']} cores ({facts['cpu']}), TF {facts['tensorflow']}, "
          f"Keras {facts['keras']}, load {facts['load_average_1min']} at the start\n")
    print(f"`python benchmarks/distributed.py` — classification, {args.model} on `{pathlib.Path(args.data).name}`, "
          f"{args.epochs} epochs, global batch {args.batch_size}, one run of each in one invocation.\n")
    print("| workers | strategy | examples/s | wall (s, whole command) | test accuracy | loss by epoch |")
    print("|---|---|---|---|---|---|")
    for workers, (seconds, metrics, losses) in results.items():
        strategy = "default (`fit`)" if workers == 1 else "multi_worker (`strategy.run` loop)"
        curve = ", ".join(f"{loss:.4f}" for loss in losses)
        print(f"| {workers} | {strategy} | {rate[workers]:.1f} | {seconds:.0f} | "
              f"{metrics['metrics']['accuracy']:.4f} | {curve} |")
    print(f"\nTwo workers ÷ one worker, examples/s: **{rate[2] / rate[1]:.2f}** (both on the same 2 cores). "
          "Loss curves overlaid: `benchmarks/results/distributed_loss.png`.")


if __name__ == "__main__":
    main()
