"""Graph property prediction: metrics and loss, the task end to end on demo data, export and
predict, bad input, and the real data: ESOL regression beating the fingerprint ridge beside an
untrained control, MUTAG's K-fold bookkeeping and rebuilt molecules (no learning claim)."""

import json

import keras
import numpy as np
import pytest
import tensorflow as tf

import tasks.core.training  # noqa: F401  (registers LearningRateCurve for load_model)
from tasks import graph_property as gp
from tasks.core.errors import UserError
from tasks.data import molecules
from tests import helpers
from tests.helpers import assert_one_line_error
from tests.test_molecules_data import write_tu

# A small MPNN on the demo molecules: seconds, enough to exercise every verb.
TINY = {"epochs": 2, "batch_size": 32, "units": 16, "num_steps": 2, "verbose": 2}


def tiny_config(tmp_path, **overrides):
    return gp.Config(runs_dir=str(tmp_path / "runs"), export_dir=str(tmp_path / "saved_models"),
                     **{**TINY, **overrides})


@pytest.fixture(scope="module")
def demo_export(tmp_path_factory):
    """One small training run on the demo molecules (in process) and its export."""
    workdir = tmp_path_factory.mktemp("graph_property")
    config = tiny_config(workdir)
    model = gp.train(config)
    return workdir, config, model


def regression_csv(path, num_molecules=120):
    """Demo molecules with their Crippen logP: the demo's task on a fifth of its molecules."""
    graph_set = molecules.demo_molecules(num_molecules=num_molecules, seed=5)
    lines = ["smiles,logp"] + [f"{smiles},{value:.4f}" for smiles, value in zip(graph_set.names, graph_set.targets[:, 0])]
    path.write_text("\n".join(lines) + "\n")
    return path


def untrained_metrics(config):
    """The test metrics of the model `config` builds, on the split it trains on, without a training
    step; a hybrid's blend weight is chosen on the validation split as training would."""
    from tasks.core import runner
    from tasks.core import training

    training.setup(config)
    data = runner.load_data(gp, config)
    model = gp.build_model(config, data.info)
    if data.info.get("linear_head"):
        gp.choose_blend(model, data)
    return gp.evaluate(model, data, config)


def classification_csv(path, num_molecules=120):
    """Demo molecules with two 0/1 tasks: logP > 2, and ring-free (missing for every third row)."""
    graph_set = molecules.demo_molecules(num_molecules=num_molecules, seed=5)
    lines = ["smiles,lipophilic,acyclic"]
    for number, (smiles, value) in enumerate(zip(graph_set.names, graph_set.targets[:, 0])):
        acyclic = "" if number % 3 == 0 else str(int("1" not in smiles))
        lines.append(f"{smiles},{int(value > 2)},{acyclic}")
    path.write_text("\n".join(lines) + "\n")
    return path


# === Metrics and loss ===


def test_scores_match_scikit_learn_on_observed_labels():
    from sklearn import metrics

    rng = np.random.default_rng(0)
    truth = rng.normal(size=(50, 2)).astype(np.float32)
    guess = truth + rng.normal(scale=0.3, size=truth.shape)
    truth[::7, 1] = np.nan
    result = gp.scores("regression", truth, guess)
    observed = ~np.isnan(truth[:, 1])
    rmse = [metrics.root_mean_squared_error(truth[:, 0], guess[:, 0]),
            metrics.root_mean_squared_error(truth[observed, 1], guess[observed, 1])]
    assert result["rmse"] == pytest.approx(np.mean(rmse), rel=1e-6)
    assert result["per_target"][1]["mae"] == pytest.approx(
        metrics.mean_absolute_error(truth[observed, 1], guess[observed, 1]), rel=1e-6)
    assert result["r2"] == pytest.approx(np.mean([metrics.r2_score(truth[:, 0], guess[:, 0]),
                                                  metrics.r2_score(truth[observed, 1], guess[observed, 1])]),
                                         rel=1e-6)
    labels = (rng.random((60, 1)) > 0.4).astype(np.float32)
    probabilities = np.clip(labels * 0.3 + rng.random((60, 1)) * 0.7, 0, 1)
    result = gp.scores("binary", labels, probabilities)
    assert result["roc_auc"] == pytest.approx(metrics.roc_auc_score(labels[:, 0], probabilities[:, 0]))
    assert result["pr_auc"] == pytest.approx(metrics.average_precision_score(labels[:, 0], probabilities[:, 0]))
    assert result["accuracy"] == pytest.approx(metrics.accuracy_score(labels[:, 0], probabilities[:, 0] >= 0.5))


def test_masked_loss_counts_only_observed_labels():
    truth = tf.constant([[1.0, np.nan], [0.0, 1.0], [np.nan, 0.0]])
    logits = tf.constant([[2.0, 5.0], [-1.0, 0.5], [9.0, -2.0]])
    loss = float(gp.MaskedLoss("binary")(truth, logits))
    observed = [(1.0, 2.0), (0.0, -1.0), (1.0, 0.5), (0.0, -2.0)]
    expected = np.mean([np.log1p(np.exp(-x)) if y else np.log1p(np.exp(x)) for y, x in observed])
    assert loss == pytest.approx(expected, rel=1e-5)
    regression = gp.MaskedLoss("regression", scale=[2.0, 1.0])
    assert float(regression(truth, tf.constant([[3.0, 7.0], [0.0, 3.0], [0.0, 1.0]]))) == pytest.approx(
        (1.0 + 0.0 + 4.0 + 1.0) / 4)


# === The task end to end on demo data ===


def test_train_writes_metrics_beside_both_baselines_plots_and_an_export(demo_export):
    workdir, _, _ = demo_export
    (run,) = (workdir / "runs" / "graph_property").iterdir()
    record = json.loads((run / "metrics.json").read_text())
    for key in ("rmse", "mae", "r2"):
        assert key in record["metrics"] and key in record["baseline"] and key in record["baseline"]["mean_predictor"]
    assert "Morgan" in record["baseline"]["name"]
    assert record["baseline"]["rmse"] < record["baseline"]["mean_predictor"]["rmse"]
    assert record["examples_per_second"] > 0
    assert (run / "plots" / "parity.png").is_file() and (run / "plots" / "training_curves.png").is_file()
    info = json.loads((workdir / "saved_models" / "graph_property" / "1" / "assets" / "info.json").read_text())
    assert info["featurizer"] == molecules.FEATURIZER and info["target_names"] == ["Crippen logP"]
    assert info["num_train"] + info["num_validation"] + info["num_test"] == 600


def test_predict_featurizes_smiles_like_training_and_matches_keras(demo_export, capsys):
    workdir, _, model = demo_export
    smiles = ["CCO ", "[Na+].[O-]C(=O)c1ccccc1"]
    gp.predict(smiles, workdir / "saved_models" / "graph_property")
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["CCO", "O=C([O-])c1ccccc1"]
    assert "kept the largest fragment (1 removed)" in captured.err
    graphs, names, _ = molecules.featurize_smiles(smiles)
    info = json.loads((workdir / "saved_models" / "graph_property" / "1" / "assets" / "info.json").read_text())
    batch = {key: tf.constant(value) for key, value in molecules.union(graphs, gp.graph_features(names, info)).items()}
    expected = np.asarray(model(batch, training=False))[:, 0]
    printed = [float(line.split(" = ")[1]) for line in lines]
    np.testing.assert_allclose(printed, expected, atol=1e-4)


def test_predict_names_every_unparsable_smiles(demo_export):
    workdir, _, _ = demo_export
    with pytest.raises(UserError, match=r"2 input\(s\) cannot be featurized: #2 \(unparsable SMILES 'C1CC'\), "
                                         r"#3 \(empty SMILES\)"):
        gp.predict(["CCO", "C1CC", ""], workdir / "saved_models" / "graph_property")


@pytest.mark.slow  # a second demo training with descriptors and its export, 13 s on two cores
def test_descriptors_feed_the_network_the_baseline_and_the_export(tmp_path, capsys):
    config = tiny_config(tmp_path, data=str(regression_csv(tmp_path / "logp.csv")), descriptors=True, epochs=1)
    model = gp.train(config)
    assert [tensor.name for tensor in model.inputs][-1] == "graph_features"
    (run,) = (tmp_path / "runs" / "graph_property").iterdir()
    record = json.loads((run / "metrics.json").read_text())
    assert "RDKit descriptors" in record["baseline"]["name"]
    version = tmp_path / "saved_models" / "graph_property" / "1"
    info = json.loads((version / "assets" / "info.json").read_text())
    assert info["descriptor_names"] == molecules.descriptor_names()
    mean, std = info["graph_feature_stats"]
    assert len(mean) == len(std) == len(info["descriptor_names"])
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    assert "graph_features" in signature.structured_input_signature[1]
    # predict computes the descriptors itself, as training did.
    smiles = ["CCO", "c1ccccc1O"]
    capsys.readouterr()  # drop the training log
    gp.predict(smiles, tmp_path / "saved_models" / "graph_property")
    printed = [float(line.split(" = ")[1]) for line in capsys.readouterr().out.strip().splitlines()]
    graphs, names, _ = molecules.featurize_smiles(smiles)
    batch = molecules.union(graphs, gp.graph_features(names, info))  # descriptors, then the hybrid's fingerprints
    expected = np.asarray(model({key: tf.constant(value) for key, value in batch.items()}, training=False))[:, 0]
    np.testing.assert_allclose(printed, expected, atol=1e-4)


@pytest.mark.slow  # trains an ensemble of networks, 17 s on two cores
def test_ensemble_averages_members_trained_from_different_seeds(tmp_path, capsys):
    config = tiny_config(tmp_path, data=str(regression_csv(tmp_path / "logp.csv")), ensemble=2, epochs=1,
                         validation_fraction=0.0)  # no validation split: the hybrid keeps network weight 1
    model = gp.train(config)
    runs = tmp_path / "runs" / "graph_property"
    (ensemble_run,) = [path for path in runs.iterdir() if "member" not in path.name]
    members = [keras.saving.load_model(runs / f"{ensemble_run.name}-member{index}" / "model.keras")
               for index in (1, 2)]
    test = gp.load_data(config).sets["test"]
    batch = {key: tf.constant(value) for key, value in molecules.union(test.graphs[:16], test.features[:16]).items()}
    outputs = [np.asarray(member(batch, training=False)) for member in members]
    assert not np.allclose(outputs[0], outputs[1])  # seeds 0 and 1: two different networks
    np.testing.assert_allclose(np.asarray(model(batch, training=False)), (outputs[0] + outputs[1]) / 2, atol=1e-5)
    record = json.loads((ensemble_run / "metrics.json").read_text())
    assert record["config"]["ensemble"] == 2 and record["epochs"] == 2  # one epoch per member
    for index in (1, 2):  # the same split: the same baseline numbers
        member_record = json.loads((runs / f"{ensemble_run.name}-member{index}" / "metrics.json").read_text())
        assert member_record["baseline"]["rmse"] == record["baseline"]["rmse"]
    assert [path.name for path in (tmp_path / "saved_models" / "graph_property").iterdir()] == ["1"]  # one export
    capsys.readouterr()
    gp.train(config)  # complete: nothing is trained again
    assert "already complete" in capsys.readouterr().out


@pytest.mark.slow  # a second demo training (multi-task), 17 s on two cores
def test_multi_task_classification_with_missing_labels(tmp_path):
    path = classification_csv(tmp_path / "two_tasks.csv")
    config = tiny_config(tmp_path, data=str(path), targets="lipophilic,acyclic", epochs=3, model="gin")
    data = gp.load_data(config)
    assert data.info["kind"] == "binary" and data.info["notes"]["missing_labels"] == 40
    gp.train(config)
    (run,) = (tmp_path / "runs" / "graph_property").iterdir()
    record = json.loads((run / "metrics.json").read_text())
    for key in ("roc_auc", "pr_auc", "accuracy"):
        assert key in record["metrics"] and key in record["baseline"]
    assert len(record["metrics"]["per_target"]) == 2
    assert record["baseline"]["mean_predictor"]["roc_auc"] == pytest.approx(0.5)
    assert (run / "plots" / "roc.png").is_file()
    out = tf.saved_model.load(str(tmp_path / "saved_models" / "graph_property" / "1")).signatures["serving_default"](
        **{key: tf.constant(value)
           for key, value in molecules.union(data.sets["test"].graphs[:3], data.sets["test"].features[:3]).items()})
    assert out["probabilities"].shape == (3, 2) and out["labels"].dtype == tf.int32


def test_bad_settings_fail_before_anything_is_written(tmp_path):
    tu = write_tu(tmp_path / "toy")
    with pytest.raises(UserError, match="--split scaffold needs molecules"):
        gp.train(tiny_config(tmp_path, data=str(tu), split="scaffold"))
    with pytest.raises(UserError, match="--descriptors needs molecules"):
        gp.train(tiny_config(tmp_path, data=str(tu), descriptors=True))
    with pytest.raises(UserError, match="--fold 3 must be below --folds 3"):
        gp.train(tiny_config(tmp_path, data=str(tu), folds=3, fold=3))
    with pytest.raises(UserError, match="not a graph network"):
        gp.train(tiny_config(tmp_path, model="resnet20"))
    with pytest.raises(UserError, match="--task-type classification needs 0/1 targets"):
        gp.train(tiny_config(tmp_path, task_type="classification"))
    assert not (tmp_path / "runs").exists()


def test_cli_bad_smiles_and_bad_tu_counts_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "bad.csv").write_text("smiles,y\nCCO,1.0\nC1CC,2.0\nCC(C,3.0\nCCN,4.0\n")
    result = helpers.run_in_process(gp, capsys, tmp_path, "train", "--data", tmp_path / "bad.csv")
    assert_one_line_error(result, "unparsable SMILES", "line(s) 3, 4", "--skip-bad")
    write_tu(tmp_path / "tu", node_labels=[0, 1, 0, 2])
    result = helpers.run_in_process(gp, capsys, tmp_path, "train", "--data", tmp_path / "tu", "--folds", "2")
    assert_one_line_error(result, "counts disagree", "TOY_node_labels.txt has 4 lines")
    assert not (tmp_path / "runs").exists() and not (tmp_path / "saved_models").exists()


# === Real data ===


@pytest.mark.slow  # real ESOL training, 25 s on two cores; the demo bar keeps the fast lane's proof
def test_esol_beats_the_fingerprint_ridge_and_the_mean_predictor(shared_data, tmp_path):
    """ESOL (1,128 molecules, 80/10/10): the hybrid's test RMSE at most ESOL_BAR, below the fingerprint
    ridge (1.27) and the mean predictor (2.19); the same hybrid untrained (its blend weight chosen on
    the validation split, as training does: 0, the ridge exactly) is above the bar. Measured at 10
    epochs, seeds 0 / 1 / 2 (each seed its own split): RMSE 0.942 / 0.945 / 0.897 (ridge 1.274 / 1.236 /
    1.252, mean 2.19 / 2.06 / 2.11), untrained 1.274 / 1.217 / 1.252, R² 0.81 / 0.79 / 0.82; 40-67 s
    each on the loaded 2-core host (8 epochs: RMSE 0.98, 4 epochs: 1.18, seed 0).

    Trained without the export (`export_model=False`): the demo tests cover the export.
    """
    from tasks.core import runner

    config = gp.Config(data=str(shared_data / "esol"), targets="measured", epochs=ESOL_EPOCHS,
                       runs_dir=str(tmp_path / "runs"), export_dir=str(tmp_path / "saved_models"), verbose=0)
    runner.train(gp, config, export_model=False)
    (run,) = (tmp_path / "runs" / "graph_property").iterdir()
    record = json.loads((run / "metrics.json").read_text())
    info = json.loads((run / "info.json").read_text())
    assert (info["num_train"], info["num_validation"], info["num_test"]) == (902, 113, 113)  # 80/10/10 of 1,128
    metrics, baseline = record["metrics"], record["baseline"]
    assert baseline["mean_predictor"]["rmse"] > 1.8  # ESOL's spread: std of log S is ~2.1
    assert ESOL_BAR < baseline["rmse"] - 0.1 and ESOL_BAR < baseline["mean_predictor"]["rmse"]
    assert metrics["rmse"] <= ESOL_BAR < untrained_metrics(config)["rmse"]
    assert metrics["r2"] > 0.7


ESOL_EPOCHS, ESOL_BAR = 10, 1.1


@pytest.mark.slow  # one real MUTAG training per fold, 14 s on two cores
def test_mutag_folds_report_the_mean_and_spread_of_every_fold(shared_data, tmp_path):
    """K-fold bookkeeping on MUTAG (188 graphs): three folds, their mean and std, no export.

    No learning claim: a few epochs of GIN do not separate from MUTAG's classical baseline
    (label-count fingerprints + logistic regression, 0.842) by more than a graph or two of a fold;
    the graph-property learning claim is ESOL's, below.
    """
    config = gp.Config(data=str(shared_data / "mutag"), model="gin", folds=3, epochs=1, units=16, num_steps=2,
                       runs_dir=str(tmp_path / "runs"), export_dir=str(tmp_path / "saved_models"), verbose=0)
    returned = gp.train(config)
    (summary_file,) = (tmp_path / "runs" / "graph_property").glob("*/cv.json")
    summary = json.loads(summary_file.read_text())
    assert summary == returned and summary["folds"] == 3 and len(summary["per_fold"]) == 3
    accuracies = [fold["metrics"]["accuracy"] for fold in summary["per_fold"]]
    assert summary["metrics"]["accuracy"]["mean"] == pytest.approx(np.mean(accuracies))
    assert summary["metrics"]["accuracy"]["std"] == pytest.approx(np.std(accuracies))
    majority = summary["baseline"]["mean_predictor"]["accuracy"]["mean"]
    assert majority == pytest.approx(125 / 188, abs=0.02)  # 125 mutagenic of 188
    assert not (tmp_path / "saved_models").exists()  # a K-fold run estimates; it does not export


@pytest.mark.slow  # real MUTAG training and export, 11 s on two cores
def test_mutag_descriptors_of_the_rebuilt_molecules_reach_the_export_and_predict(shared_data, tmp_path, capsys):
    """One fold of MUTAG with RDKit descriptors of the molecules rebuilt from the TU labels: the
    baseline, the export and predict on a folder without README see the same molecules. Plumbing,
    no learning claim (see the K-fold test)."""
    config = gp.Config(data=str(shared_data / "mutag"), model="gin", folds=10, fold=0, epochs=1, units=16, num_steps=2,
                       learning_rate=1e-2, validation_fraction=0.0, descriptors=True,
                       runs_dir=str(tmp_path / "runs"), export_dir=str(tmp_path / "saved_models"), verbose=2)
    model = gp.train(config)
    printed = capsys.readouterr().out
    assert "RDKit rejects 2 TU graph(s) as molecules (e.g. graph 83" in printed  # MUTAG's two carbons of valence 5
    (run,) = (tmp_path / "runs" / "graph_property").iterdir()
    record = json.loads((run / "metrics.json").read_text())
    assert "label-count fingerprint and RDKit descriptors" in record["baseline"]["name"]
    version = tmp_path / "saved_models" / "graph_property" / "1"
    info = json.loads((version / "assets" / "info.json").read_text())
    assert info["tu_label_names"]["node"]["0"] == "C" and info["tu_label_names"]["edge"]["0"] == "aromatic"
    # predict rebuilds the molecules from the model's label names, so the folder needs no README.
    folder = tmp_path / "mutag_without_readme"
    folder.mkdir()
    for path in (shared_data / "mutag").glob("MUTAG_*.txt"):
        (folder / path.name).write_bytes(path.read_bytes())
    gp.predict([str(folder)], tmp_path / "saved_models" / "graph_property")
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 188 and lines[0].startswith("graph 1\tP(MUTAG class = 1) = ")
    assert "graph 83: not a molecule to RDKit" in captured.err
    graph_set = molecules.read_tu(shared_data / "mutag")
    batch = molecules.union(graph_set.graphs, gp.graph_features(graph_set.molecules, info, graph_set.graphs))
    logits = np.asarray(model({key: tf.constant(value) for key, value in batch.items()}, training=False))[:, 0]
    printed = [float(line.split(" = ")[-1]) for line in lines]
    np.testing.assert_allclose(printed, 1.0 / (1.0 + np.exp(-logits)), atol=1e-4)
