"""The job every task runs, written once: data → model → fit → evaluate + baseline → export.

A task module provides `Config`, `load_data`, `build_model`, `baseline`, `evaluate`, `serving`
(and `predict`); `train(config)` in the module is `runner.train(<module>, config)`.
"""

import dataclasses
import json
import numbers

import keras
import numpy as np
import tensorflow as tf

from tasks.core import config as config_lib
from tasks.core import distributed
from tasks.core import export as export_lib
from tasks.core import plots
from tasks.core import training
from tasks.core.errors import ClusterLost
from tasks.core.errors import UserError
from tasks.core.runs import Run
from tasks.core.runs import write_atomic


def task_name(module):
    """`classification` for tasks.classification, also when it runs as `python -m` (`__main__`)."""
    spec = getattr(module, "__spec__", None)
    return (spec.name if spec else module.__name__).rsplit(".", 1)[-1]


def train(module, config, fresh=False, export_model=True, member=0, baseline=None):
    """Trains, evaluates beside the baseline, writes the run and the export; returns the model.

    `export_model=False` stops after `metrics.json` (one fold of a K-fold run estimates, it does
    not ship). A config with `ensemble` > 1 trains an ensemble (`train_ensemble`); `member` is
    the index of one member, whose weights start from seed + member (the data, its split and
    order, keep the config's seed), and `baseline` the ensemble's, measured once for all members.

    With `--strategy multi_worker` every worker runs this; the chief alone keeps the run folder,
    evaluates and exports (the others write to a scratch folder they remove).
    """
    config_lib.validate(config)
    training.model_builder(config.model, module.KIND)  # a wrong kind of --model fails before anything runs
    if getattr(config, "ensemble", 1) > 1:
        return train_ensemble(module, config, fresh=fresh, export_model=export_model)
    task = task_name(module)
    cluster = distributed.Cluster(training.setup(config, seed=config.seed + member))
    run = cluster.run_folder(Run.for_config(task, config))
    if cluster.agree(run.complete and (run.exported or not export_model) and not fresh):
        say(config, f"Run {run.path} is already complete; pass --fresh to train it again.")
        if not cluster.chief:
            cluster.leave()
            return None
        report(run.read_metrics(), config)
        return keras.saving.load_model(run.model_file)
    if not cluster.multi_worker and not fresh and run.model_file.is_file():
        return complete_run(module, config, run, export_model, baseline)
    work = cluster.global_batch(config)
    # Bad data or a bad model name fails here, before anything is written.
    data = load_data(module, work, None if fresh else run)
    with cluster.strategy.scope():
        model = module.build_model(work, data.info)
    run.start(config, fresh=fresh)
    write_atomic(run.path / "info.json", json.dumps(data.info, indent=2) + "\n")
    extra = module.callbacks(work, data, run) if hasattr(module, "callbacks") else ()
    try:
        stats = training.fit(model, data, work, run, extra_callbacks=extra)
    except tf.errors.OpError as error:
        if not cluster.multi_worker:
            raise
        raise ClusterLost(
            f"lost the cluster ({type(error).__name__}); rerun every worker with the same command "
            "to resume from the last backup."
        ) from None
    if not cluster.hand_over(model, lambda text: say(config, text)):
        return model
    run.save_model(model, stats)
    if cluster.multi_worker:
        # Evaluation and export run on the chief alone, on a plain copy outside the strategy.
        model = keras.saving.load_model(run.model_file)
    measure(module, model, data, config, run, stats, baseline=baseline)
    return deliver(module, model, data.info, config, run, export_model)


def complete_run(module, config, run, export_model=True, baseline=None):
    """A trained run whose evaluation or export did not finish (a crash, a kill): the missing
    steps, without training again."""
    say(config, f"Run {run.path} is trained; completing its evaluation and export.")
    model = keras.saving.load_model(run.model_file)
    if not run.metrics_file.is_file():
        data = load_data(module, config, run)
        measure(module, model, data, config, run, run.saved_stats(), baseline=baseline)
    return deliver(module, model, run.saved_info(), config, run, export_model)


def deliver(module, model, info, config, run, export_model=True):
    """The end of a run after metrics.json: the export, then the pictures (best-effort)."""
    if export_model and not run.exported:
        path = export(module, model, info, config, run)
        say(config, f"Exported {path}")
    with plots.best_effort(run.plots_dir / "training_curves.png") as path:
        plots.training_curves(training.history_rows(run), path)
    return model


def train_ensemble(module, config, fresh=False, export_model=True):
    """`--ensemble N`: N members trained as runs of their own (`<run>-member<i>`, resumable, not
    exported), averaged into one model that is evaluated, written and exported as this run."""
    task = task_name(module)
    if config.strategy == "multi_worker":
        raise UserError("--ensemble trains its members one after another; it does not combine with "
                        "--strategy multi_worker.")
    run = Run.for_config(task, config)
    if run.complete and (run.exported or not export_model) and not fresh:
        say(config, f"Run {run.path} is already complete; pass --fresh to train it again.")
        report(run.read_metrics(), config)
        return keras.saving.load_model(run.model_file)
    data = load_data(module, config)  # fails on bad data before any member starts
    baseline = module.baseline(config, data)  # the members' split: measured once for all
    members, records = [], []
    for index in range(config.ensemble):
        member_config = dataclasses.replace(config, ensemble=1, run_name=f"{run.path.name}-member{index + 1}")
        say(config, f"\n=== ensemble member {index + 1} of {config.ensemble} ===")
        members.append(train(module, member_config, fresh=fresh, export_model=False, member=index,
                             baseline=baseline))
        records.append(Run.for_config(task, member_config).read_metrics())
    model = training.average_models(members)
    run.start(config, fresh=fresh)
    write_atomic(run.path / "info.json", json.dumps(data.info, indent=2) + "\n")
    model.save(run.model_file)
    seconds = sum(record.get("train_seconds") or 0.0 for record in records)
    stats = {"train_seconds": round(seconds, 2), "epochs": sum(record.get("epochs") or 0 for record in records)}
    for key in ("examples_per_second", "examples_per_cpu_second"):  # the members', one after another
        rates = [record.get(key) for record in records if record.get(key)]
        stats[key] = round(float(len(rates) / sum(1.0 / rate for rate in rates)), 1) if rates else None
    say(config, f"\n=== the ensemble: the mean of {config.ensemble} members' outputs ===")
    measure(module, model, data, config, run, stats, baseline=baseline)
    if export_model:
        path = export(module, model, data.info, config, run)
        say(config, f"Exported {path}")
    return model


def train_fold(module, config, fresh=False):
    """One fold (`config.fold`) of a K-fold run: the job without the export (a fold estimates, it
    does not ship); returns the fold's metrics.json record."""
    train(module, config, fresh=fresh, export_model=False)
    return Run.for_config(task_name(module), config).read_metrics()


def cross_validate(module, config, fresh=False):
    """`--folds K` with `--fold -1`: every fold trained as a run of its own (`<run>-fold<i>`,
    resumable, not exported); writes `cv.json` into this run's folder — each fold's metrics and
    baseline, and over the folds the mean and std of every number (nested baselines alike) — and
    returns it."""
    task = task_name(module)
    run = Run.for_config(task, config)
    records = []
    for fold in range(config.folds):
        fold_config = dataclasses.replace(config, fold=fold, run_name=f"{run.path.name}-fold{fold}")
        say(config, f"\n=== fold {fold + 1} of {config.folds}: {run.path.name}-fold{fold} ===")
        records.append(train_fold(module, fold_config, fresh=fresh))
        keras.backend.clear_session()
    summary = {
        "task": task, "data": config.data, "folds": config.folds,
        "metrics": fold_statistics([record["metrics"] for record in records]),
        "baseline": fold_statistics([record["baseline"] for record in records]),
        "per_fold": [{"metrics": record["metrics"], "baseline": record["baseline"]} for record in records],
        "train_seconds": float(sum(record.get("train_seconds") or 0 for record in records)),
        "examples_per_second": float(np.median([record.get("examples_per_second") or 0 for record in records])),
        "parameters": records[-1].get("parameters"),
        "config": config_lib.to_dict(config),
    }
    run.path.mkdir(parents=True, exist_ok=True)
    write_atomic(run.path / "cv.json", json.dumps(summary, indent=2) + "\n")
    if config.verbose:
        named = f"; baseline: {records[0]['baseline']['name']}" if records[0]["baseline"].get("name") else ""
        print(f"\n{task} on {config.data} — {config.folds}-fold cross-validation (mean ± std over folds{named})")
        nested = {name: part for name, part in summary["baseline"].items() if "mean" not in part}
        for key, value in summary["metrics"].items():
            base = summary["baseline"].get(key)
            beside = f"   baseline {base['mean']:.4f} ± {base['std']:.4f}" if base and "mean" in base else ""
            beside += "".join(f"   {name} {part[key]['mean']:.4f}" for name, part in nested.items() if key in part)
            if all(isinstance(fold["metrics"].get(key), int) for fold in summary["per_fold"]):  # counts
                print(f"  {key:<24} {value['mean']:g} ± {value['std']:g}")
                continue
            print(f"  {key:<24} {value['mean']:.4f} ± {value['std']:.4f}{beside}")
        print(f"Wrote {run.path / 'cv.json'}; no export for a K-fold run (train one fold with --fold i to export).")
    return summary


def fold_statistics(dicts):
    """`{key: {"mean", "std"}}` over folds for every number in `dicts` (nested dicts in kind); a
    fold without the number (a target with no test label) counts nowhere."""
    summary = {}
    for key, value in dicts[0].items():
        if isinstance(value, dict):
            summary[key] = fold_statistics([entry.get(key) or {} for entry in dicts])
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            values = np.array([entry.get(key, np.nan) if isinstance(entry.get(key), (int, float)) else np.nan
                               for entry in dicts], np.float64)
            summary[key] = {"mean": float(np.nanmean(values)), "std": float(np.nanstd(values))}
    return summary


def measure(module, model, data, config, run, stats=None, baseline=None):
    """Evaluates the model and the baseline (unless given) on the test split; writes and prints metrics.json."""
    record = {
        "task": task_name(module),
        "data": config.data,
        "metrics": module.evaluate(model, data, config, run.plots_dir),
        "baseline": module.baseline(config, data) if baseline is None else baseline,
        "parameters": int(model.count_params()),
    }
    previous = run.read_metrics() if run.metrics_file.is_file() else {}
    for key in ("train_seconds", "examples_per_second", "examples_per_cpu_second", "epochs"):
        record[key] = (stats or previous).get(key)
    record["config"] = config_lib.to_dict(config)
    run.write_metrics(record)
    report(record, config, training=stats is not None)
    return record


# What the SavedModel writer and the ONNX/TFLite converters print, kept in the run folder (the
# terminal shows one line; a failed export's error names this file).
EXPORT_LOG = "export.log"


def export(module, model, info, config, run):
    """Writes `saved_models/<task>/<N>/` from the task's serving endpoints."""
    assets = {
        "config.yaml": config_lib.to_yaml(config),
        "info.json": json.dumps(info, indent=2) + "\n",
    }
    if info.get("class_names"):
        assets["labels.txt"] = "\n".join(info["class_names"]) + "\n"
    if run.metrics_file.is_file():
        assets["metrics.json"] = run.metrics_file.read_text()
    path = export_lib.write(
        task_name(module),
        model,
        module.serving(model, info),
        assets,
        export_dir=config.export_dir,
        extra_format=config.export_format,
        network=module.network(model, info) if hasattr(module, "network") else None,
        log_file=run.path / EXPORT_LOG,
    )
    run.record_export(path)
    if config.export_format in export_lib.CONVERTERS:
        extra = json.loads((path / "assets" / "check.json").read_text())[config.export_format]
        say(config, f"Wrote {path / extra['file']} (checked with {extra['loaded_with']}: largest "
                    f"|difference| from Keras {extra['max_abs_difference']:.2g}, tolerance {extra['tolerance']:.2g})")
    return path


def load_data(module, config, run=None):
    """`module.load_data(config, saved=...)` with the info of `run` (None for a new or --fresh run):
    a task that learns from its training split (a vocabulary, a tokenizer) keeps what that run
    learned, so a resumed run and `evaluate` see the same token ids as the model."""
    return module.load_data(config, saved=run.saved_info() if run is not None else None)


def load_run(module, config):
    """The finished run's model and saved facts, for `evaluate` and `export`."""
    run = Run.for_config(task_name(module), config)
    model = keras.saving.load_model(run.require_model())
    info = json.loads((run.path / "info.json").read_text())
    return run, model, info


def report(record, config, training=True):
    """Prints each metric beside its baselines, one line each (counts as integers): the heading
    names the baseline, and a nested baseline scored on the same metric (sentiment's `majority`,
    text generation's `unigram`) is a column of its own; `training` adds the training throughput
    (not for `evaluate`, which trains nothing)."""
    if not config.verbose:
        return
    metrics, baseline = record["metrics"], record["baseline"]
    numeric = [key for key, value in metrics.items() if _is_number(value)]
    nested = {name: part for name, part in baseline.items()
              if isinstance(part, dict) and any(_is_number(part.get(key)) for key in numeric)}
    named = f" (baseline: {baseline['name']})" if baseline.get("name") else ""
    print(f"\n{record['task']} on {record['data']} — test split{named}")
    for key in numeric:
        beside = f"   baseline {_number(baseline[key])}" if _is_number(baseline.get(key)) else ""
        beside += "".join(f"   {name} {_number(part[key])}" for name, part in nested.items() if _is_number(part.get(key)))
        print(f"  {key:<24} {_number(metrics[key])}{beside}")
    if training and record.get("examples_per_second"):
        print(f"  {'train examples/s':<24} {record['examples_per_second']:.1f}")


def _is_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _number(value):
    return f"{int(value):d}" if isinstance(value, numbers.Integral) else f"{value:.4f}"


def say(config, message):
    if config.verbose:
        print(message)
