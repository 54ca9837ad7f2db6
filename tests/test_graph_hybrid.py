"""Graph property hybrid: the fingerprint ridge folded into the model as a fixed linear head, the
network's residual on top with a validation-chosen weight, and the ensemble spread (`std`) of the
SavedModel."""

import numpy as np
import pytest
import tensorflow as tf

from tasks import graph_property as gp
from tasks.core.runs import Run
from tasks.data import molecules

# A small MPNN on the demo molecules: seconds.
TINY = {"epochs": 1, "batch_size": 32, "units": 16, "num_steps": 2, "verbose": 0}


def esol_config(shared_data, tmp_path, **overrides):
    return gp.Config(data=str(shared_data / "esol"), targets="measured", runs_dir=str(tmp_path / "runs"),
                     export_dir=str(tmp_path / "saved_models"), **overrides)


def serving_outputs(version, info, smiles):
    """The reloaded SavedModel's outputs on SMILES, featurized as `predict` does."""
    graphs, names, _ = molecules.featurize_smiles(smiles)
    batch = molecules.union(graphs, gp.graph_features(names, info))
    signature = tf.saved_model.load(str(version)).signatures["serving_default"]
    return {key: value.numpy() for key, value in signature(**{k: tf.constant(v) for k, v in batch.items()}).items()}


def test_hybrid_with_the_residual_zeroed_is_the_baseline(shared_data, tmp_path):
    config = esol_config(shared_data, tmp_path, units=16, num_steps=1, verbose=0)
    data = gp.load_data(config)
    model = gp.build_model(config, data.info)  # untrained: a random residual
    baseline = gp.baseline(config, data)
    gp.set_blend(model, 0.0)
    zeroed = gp.evaluate(model, data, config)
    assert zeroed["rmse"] == pytest.approx(baseline["rmse"], abs=1e-4)
    assert zeroed["mae"] == pytest.approx(baseline["mae"], abs=1e-4)
    gp.set_blend(model, 1.0)  # the control: the random residual moves every prediction
    assert abs(gp.evaluate(model, data, config)["rmse"] - baseline["rmse"]) > 1e-3


def test_residual_blend_trains_on_cross_fitted_targets(shared_data, tmp_path):
    config = esol_config(shared_data, tmp_path, units=16, num_steps=1, verbose=0, blend="residual")
    data = gp.load_data(config)
    train_targets = np.concatenate([targets.numpy() for _, targets in data.train])
    test_targets = np.concatenate([targets.numpy() for _, targets in data.test])
    np.testing.assert_array_equal(test_targets, data.sets["test"].targets)  # evaluation sees true targets
    # The training targets carry in-sample minus out-of-fold ridge values: moved, but not far.
    shift = np.sort(train_targets[:, 0]) - np.sort(data.sets["train"].targets[:, 0])
    assert np.abs(shift).max() > 1e-3
    assert np.abs(shift).mean() < 0.5 * np.std(data.sets["train"].targets)


@pytest.mark.slow  # three ESOL trainings of about 40 s each on two shared cores
def test_trained_hybrid_on_esol_is_not_worse_than_the_baseline(shared_data, tmp_path):
    """ESOL, random 80/10/10 (the split follows the seed), the default convex hybrid, MPNN with 32
    units, 12 epochs, seeds 0, 1, 2. Test RMSE measured: hybrid 1.025, 0.942, 0.933 against the
    Morgan + ridge baseline 1.274, 1.236, 1.252 (gains 0.25, 0.29, 0.32). The bar: never worse than
    its seed's baseline by more than 0.02, and better by at least 0.05 on average."""
    gains = []
    for seed in (0, 1, 2):
        config = esol_config(shared_data, tmp_path / str(seed), units=32, epochs=12, seed=seed, verbose=0)
        gp.train(config)
        record = Run.for_config("graph_property", config).read_metrics()
        hybrid, baseline = record["metrics"]["rmse"], record["baseline"]["rmse"]
        assert hybrid <= baseline + 0.02, (seed, hybrid, baseline)
        gains.append(baseline - hybrid)
    assert np.mean(gains) >= 0.05, gains


@pytest.mark.slow  # trains two networks and exports, 15 s on two cores
def test_savedmodel_std_is_positive_for_an_ensemble_of_two(tmp_path):
    # No validation split: the residual weight stays 1, so the two members' networks differ.
    config = gp.Config(runs_dir=str(tmp_path / "runs"), export_dir=str(tmp_path / "saved_models"),
                       ensemble=2, validation_fraction=0.0, **TINY)
    gp.train(config)
    version = tmp_path / "saved_models" / "graph_property" / "1"
    info = gp.load_data(config).info
    out = serving_outputs(version, info, ["CCO", "c1ccccc1O", "CC(=O)Nc1ccc(O)cc1"])
    assert out["std"].shape == out["predictions"].shape == (3, 1)
    assert np.all(out["std"] > 0)


@pytest.mark.slow  # trains a network and exports, 11 s on two cores
def test_savedmodel_std_is_zero_for_one_network(tmp_path):
    config = gp.Config(runs_dir=str(tmp_path / "runs"), export_dir=str(tmp_path / "saved_models"), **TINY)
    gp.train(config)
    version = tmp_path / "saved_models" / "graph_property" / "1"
    out = serving_outputs(version, gp.load_data(config).info, ["CCO", "c1ccccc1O"])
    assert out["std"].shape == (2, 1)
    np.testing.assert_array_equal(out["std"], 0.0)
