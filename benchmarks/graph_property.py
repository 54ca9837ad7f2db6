"""Benchmark of the graph-property task: ESOL RMSE, BBBP scaffold ROC-AUC, MUTAG 10-fold accuracy, molecules/s.

Usage:
    python benchmarks/graph_property.py                              # all three, the recipes below
    python benchmarks/graph_property.py --only esol --esol-epochs 150
    python benchmarks/graph_property.py --only mutag --ensemble 1            # one network per fold
    python benchmarks/graph_property.py --esol-epochs 2 --bbbp-epochs 1 --mutag-folds 2 --mutag-epochs 2 --ensemble 2   # script check
    python benchmarks/graph_property.py --protocol lodo                      # the default recipe, leave one dataset out
    python benchmarks/graph_property.py --protocol lodo --lodo-epochs 2      # script check

Each dataset runs through `tasks.graph_property.train` (the package's pipeline, callbacks,
baselines and, for the hold-out splits, export):

1. ESOL (`../shared/data/esol`), random 80/10/10: test RMSE against the mean predictor and
   Morgan fingerprints + RDKit descriptors + ridge. Goal ≤ 0.55 (MoleculeNet's MPNN: 0.58).
2. BBBP (`../shared/data/bbbp`), deterministic scaffold 80/10/10 (largest scaffold groups train):
   test ROC-AUC against the positive rate and fingerprints + descriptors + logistic regression.
   Goal ≥ 0.75.
   Both: an ensemble (`--ensemble`; ESOL 10, BBBP 5) of MPNNs with RDKit descriptors beside the readout
   (`--descriptors`), each member kept at its best validation epoch (`--patience` = the epochs:
   early stopping that never stops, restoring the best weights); RECIPES has the rest.
3. MUTAG (`../shared/data/mutag`), stratified 10-fold, an ensemble of 5 GINs (32 units) per fold
   with the RDKit descriptors of the graphs rebuilt as molecules (README.txt names the labels):
   mean test accuracy of the final models (no validation split, no epoch picked on the test
   folds) against the majority class and label-count fingerprints + descriptors + logistic
   regression. Goal ≥ 90 % (GIN paper: 89.4 %).

Speed: training molecules/s (median epoch, from metrics.json) and inference molecules/s of the
Keras model on the test split's disjoint-union batches (batch 256, after one warm-up pass).

`--protocol lodo` measures the task's default recipe (`gp.Config()` defaults: one MPNN, the
hybrid with the fingerprint ridge / logistic head, no descriptors) on each set with one seed:
ESOL random, BBBP scaffold, MUTAG a random 70/10/20 hold-out (38 test graphs). Per set it
trains the network alone (`--no-hybrid`) and the hybrid under each blend of LODO_RULES
(`--blend`). The blend of each held-out set is the one with the best mean gain over the baseline
on the other two sets (relative RMSE reduction, ROC-AUC difference); the held-out set's number is
reported under that blend.

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

from tasks import graph_property as gp  # noqa: E402
from tasks.core.runs import Run  # noqa: E402
from tasks.data import molecules  # noqa: E402

# Each dataset's recipe (gp.Config fields). ESOL and BBBP: hybrid MPNNs (learned readout + RDKit
# descriptors), each member kept at its best validation epoch; MUTAG: hybrid GIN-0 with edge labels
# (descriptors of the TU graphs rebuilt as molecules), final-epoch models, no validation split.
RECIPES = {
    "esol": {"targets": "measured", "model": "mpnn", "units": 128, "dropout_rate": 0.3, "weight_decay": 0.01,
             "descriptors": True, "ensemble": 10, "epochs": 100},
    "bbbp": {"split": "scaffold", "model": "mpnn", "units": 64, "dropout_rate": 0.2, "weight_decay": 0.01,
             "descriptors": True, "ensemble": 5, "epochs": 40},
    "mutag": {"model": "gin", "folds": 10, "units": 32, "batch_size": 32, "learning_rate": 1e-2,
              "validation_fraction": 0.0, "descriptors": True, "ensemble": 5, "epochs": 100},
}
GOALS = {"esol": ("rmse", 0.55, "≤"), "bbbp": ("roc_auc", 0.75, "≥"), "mutag": ("accuracy", 0.90, "≥")}


def log(message):
    print(message, file=sys.stderr, flush=True)


def shared_data():
    shared = os.environ.get("APPLIED_DL_DATA")
    return pathlib.Path(shared) if shared else REPO.parent / "shared" / "data"


def inference_speed(model, graph_set, batch_size=256):
    """Molecules per second of the Keras model on disjoint-union batches (compiled, after a warm-up)."""
    dataset = molecules.make_dataset(graph_set, batch_size)
    forward = tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True)
    batches = [inputs for inputs, _ in dataset]
    for inputs in batches:
        forward(inputs)
    started = time.perf_counter()
    for inputs in batches:
        forward(inputs).numpy()
    return len(graph_set) / (time.perf_counter() - started)


def run_holdout(name, config):
    started = time.perf_counter()
    model = gp.train(config)
    wall = time.perf_counter() - started
    record = Run.for_config("graph_property", config).read_metrics()  # the ensemble's run, not its members'

    data = gp.load_data(config)
    return {
        "name": name, "wall_seconds": round(wall, 1), "metrics": record["metrics"], "baseline": record["baseline"],
        "train_molecules_per_second": record["examples_per_second"],
        "train_molecules_per_cpu_second": record.get("examples_per_cpu_second"),
        "inference_molecules_per_second": round(inference_speed(model, data.sets["test"]), 1),
        "epochs": record["epochs"], "parameters": int(model.count_params()),
        "sizes": (data.info["num_train"], data.info["num_validation"], data.info["num_test"]),
    }


def run_folds(config):
    started = time.perf_counter()
    summary = gp.train(config)  # cv.json: mean and std over the folds
    wall = time.perf_counter() - started
    metrics = {key: value["mean"] for key, value in summary["metrics"].items()}
    metrics.update({f"{key}_std": value["std"] for key, value in summary["metrics"].items()})
    baseline = {key: value["mean"] for key, value in summary["baseline"].items() if "mean" in value}
    baseline["mean_predictor"] = {key: value["mean"] for key, value in summary["baseline"]["mean_predictor"].items()}
    return {
        "name": "mutag", "wall_seconds": round(wall, 1), "metrics": metrics, "baseline": baseline,
        "per_fold_accuracy": [fold["metrics"]["accuracy"] for fold in summary["per_fold"]],
        "train_molecules_per_second": summary["examples_per_second"], "epochs": config.epochs * config.ensemble,
        "parameters": summary["parameters"],
    }


# The knob the leave-one-dataset-out protocol chooses: the hybrid's blend (`--blend`), each with
# its network weight chosen on the validation split.
LODO_RULES = ("convex", "residual")
LODO_SETS = {
    "esol": ({"targets": "measured"}, "rmse", "random 80/10/10"),
    "bbbp": ({"split": "scaffold"}, "roc_auc", "scaffold 80/10/10"),
    "mutag": ({"test_fraction": 0.2}, "roc_auc", "random 70/10/20"),
}


def gain(metric, value, base):
    """Improvement over the baseline, larger is better: relative RMSE reduction, or AUC difference."""
    return (base - value) / base if metric == "rmse" else value - base


def run_lodo(root, scratch, epochs, seed):
    """Network alone, baseline and the hybrid under each blend, per set; then the held-out choice."""
    rows = {}
    for name, (changes, metric, split) in LODO_SETS.items():
        def config(**more):
            return gp.Config(data=str(root / name), runs_dir=f"{scratch}/{name}/runs", verbose=2, seed=seed,
                             export_dir=f"{scratch}/{name}/saved_models", epochs=epochs, **changes, **more)

        def score(**more):
            started = time.perf_counter()
            gp.train(config(**more))
            record = Run.for_config("graph_property", config(**more)).read_metrics()
            return record["metrics"][metric], record["baseline"][metric], time.perf_counter() - started

        log(f"LODO {name}: the network alone")
        network, base, _ = score(hybrid=False)
        by_rule, weights, walls = {}, {}, {}
        for rule in LODO_RULES:
            log(f"LODO {name}: the {rule} hybrid")
            by_rule[rule], _, walls[rule] = score(blend=rule)
            model = keras.saving.load_model(Run.for_config("graph_property", config(blend=rule)).model_file)
            weights[rule] = float(gp.blend_layer(model).weight.numpy())
        rows[name] = {"metric": metric, "split": split, "network": network, "baseline": base, "rules": by_rule,
                      "weights": weights, "wall_seconds": {rule: round(value, 1) for rule, value in walls.items()}}
    for name, row in rows.items():
        others = [other for other in rows if other != name]
        row["rule"] = max(LODO_RULES, key=lambda rule: sum(
            gain(rows[o]["metric"], rows[o]["rules"][rule], rows[o]["baseline"]) for o in others))
        row["hybrid"] = row["rules"][row["rule"]]
        row["gap"] = row["hybrid"] - row["baseline"]
    return rows


def print_lodo(rows, command, date, machine, epochs):
    print(f"## Graph property: leave one dataset out (`{command.strip()}`, {date})\n\n{machine}; "
          f"the default recipe, {epochs} epochs, one seed.\n")
    print("| held-out set (split) | metric | network alone | baseline | hybrid (blend chosen on the other two) | "
          "gap (hybrid − baseline) | hybrid by blend (validation network weight) |")
    print("|---|---|---|---|---|---|---|")
    for name, row in rows.items():
        rules = ", ".join(f"{rule} {value:.3f} (w {row['weights'][rule]:.1f})" for rule, value in row["rules"].items())
        print(f"| {name.upper()} ({row['split']}) | {row['metric']} | {row['network']:.3f} | {row['baseline']:.3f} | "
              f"**{row['hybrid']:.3f}** ({row['rule']}) | {row['gap']:+.3f} | {rules} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=str(shared_data()))
    parser.add_argument("--only", default="esol,bbbp,mutag", help="Comma-separated subset of esol,bbbp,mutag.")
    parser.add_argument("--esol-epochs", type=int, default=RECIPES["esol"]["epochs"])
    parser.add_argument("--bbbp-epochs", type=int, default=RECIPES["bbbp"]["epochs"])
    parser.add_argument("--mutag-epochs", type=int, default=RECIPES["mutag"]["epochs"])
    parser.add_argument("--mutag-folds", type=int, default=RECIPES["mutag"]["folds"])
    parser.add_argument("--ensemble", type=int, default=0, help="Members of every ensemble (0: each recipe's: ESOL 10, BBBP and MUTAG 5).")
    parser.add_argument("--no-descriptors", action="store_true", help="Graphs only: no RDKit descriptors.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output-json", default=None)
    parser.add_argument("--protocol", default="recipes", choices=["recipes", "lodo"],
                        help="recipes: each dataset's benchmark recipe; lodo: the default recipe, leave one dataset out.")
    parser.add_argument("--lodo-epochs", type=int, default=gp.Config().epochs)
    args = parser.parse_args(argv)
    root = pathlib.Path(args.data_root)
    results = {}
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    command = "python benchmarks/graph_property.py " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.protocol == "lodo":
        with tempfile.TemporaryDirectory() as scratch:
            results = run_lodo(root, scratch, args.lodo_epochs, args.seed)
        print_lodo(results, command, date, machine, args.lodo_epochs)
        if args.output_json:
            pathlib.Path(args.output_json).write_text(json.dumps(results, indent=2) + "\n")
        return results
    with tempfile.TemporaryDirectory() as scratch:
        def config(name, **changes):
            recipe = {**RECIPES[name], **changes}
            if args.ensemble:
                recipe["ensemble"] = args.ensemble
            if recipe.get("descriptors") and args.no_descriptors:
                recipe["descriptors"] = False
            if name != "mutag":
                recipe["patience"] = recipe["epochs"]  # never stops early; restores the best validation epoch
            return gp.Config(data=str(root / name), runs_dir=f"{scratch}/{name}/runs", verbose=2, seed=args.seed,
                             export_dir=f"{scratch}/{name}/saved_models", **recipe)

        only = args.only.split(",")
        if "esol" in only:
            log("ESOL: MPNN, random 80/10/10")
            results["esol"] = run_holdout("esol", config("esol", epochs=args.esol_epochs))
        if "bbbp" in only:
            log("BBBP: MPNN, scaffold 80/10/10")
            results["bbbp"] = run_holdout("bbbp", config("bbbp", epochs=args.bbbp_epochs))
        if "mutag" in only:
            log(f"MUTAG: GIN, {args.mutag_folds}-fold")
            results["mutag"] = run_folds(config("mutag", epochs=args.mutag_epochs, folds=args.mutag_folds))

    print(f"## Graph property prediction (`{command.strip()}`, {date})\n\n{machine}.\n")
    print("| dataset (split, model) | metric | result | goal | fingerprint baseline | mean / majority | "
          "train molecules/s | inference molecules/s | wall |")
    print("|---|---|---|---|---|---|---|---|---|")
    labels = {name: f"{name.upper()} ({split}, {RECIPES[name]['model']}, "
                    f"ensemble of {args.ensemble or RECIPES[name]['ensemble']})"
              for name, split in (("esol", "random 80/10/10"), ("bbbp", "scaffold 80/10/10"),
                                  ("mutag", f"{args.mutag_folds}-fold"))}
    for name, result in results.items():
        key, goal, sense = GOALS[name]
        value = result["metrics"][key]
        met = value <= goal if sense == "≤" else value >= goal
        spread = f" ± {result['metrics'][key + '_std']:.3f}" if key + "_std" in result["metrics"] else ""
        base = result["baseline"]
        result["goal_met"] = bool(met)
        print(f"| {labels[name]} | {key} | **{value:.3f}**{spread} | {sense} {goal} ({'met' if met else 'not met'}) | "
              f"{base[key]:.3f} | {base['mean_predictor'][key]:.3f} | {result['train_molecules_per_second']:,.0f} | "
              f"{result.get('inference_molecules_per_second', float('nan')):,.0f} | {result['wall_seconds']:.0f} s |")
    for name, result in results.items():
        others = ", ".join(f"{key} {value:.3f}" for key, value in result["metrics"].items()
                           if isinstance(value, float) and not key.endswith("_std"))
        members = args.ensemble or RECIPES[name]["ensemble"]
        print(f"\n- {name}: {others}; {result['epochs']} epochs in all ({members} members; K-fold: per fold), "
              f"{result['parameters']:,} parameters (all members).")
        if "per_fold_accuracy" in result:
            print(f"  Per fold: {', '.join(f'{value:.3f}' for value in result['per_fold_accuracy'])}.")
    if args.output_json:
        pathlib.Path(args.output_json).write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    keras.utils.set_random_seed(0)
    main()
