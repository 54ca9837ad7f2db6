"""Tests for the graph builders (`applications.mpnn`: mpnn, gin, gcn) on disjoint-union batches.

Each builder is built small, predicted on one batch and on `tf.data`, checked for what a graph
network must do (a graph's output does not depend on the other graphs of its batch, nor on the
order of its nodes), trained one step and round-tripped through a `.keras` file.
"""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

import applications
from applications import mpnn
from tasks.data import molecules
from tests import helpers

GRAPH_BUILDERS = [name for name in applications.names() if applications.get(name).__module__ == "applications.mpnn"]
SMALL = {"mpnn": {"units": 16, "num_steps": 2}, "gin": {"units": 16, "num_layers": 2}, "gcn": {"units": 16}}


@pytest.fixture(scope="module")
def graph_set():
    return molecules.demo_molecules(num_molecules=8, seed=1)


def build(name, graph_set, **extra):
    keras.utils.set_random_seed(0)
    return applications.get(name)(graph_set.num_node_features, graph_set.num_edge_features, 2,
                                  **SMALL[name], **extra)


def as_tensors(batch):
    return {key: tf.constant(value) for key, value in batch.items()}


def test_graph_builders_are_registered_with_documented_arguments():
    assert set(GRAPH_BUILDERS) == {"mpnn", "gin", "gcn"}
    for name in GRAPH_BUILDERS:
        builder = applications.get(name)
        assert list(inspect.signature(builder).parameters)[:3] == ["num_node_features", "num_edge_features",
                                                                   "num_outputs"]
        assert "Args:" in builder.__doc__ and "num_outputs: int." in builder.__doc__


@pytest.mark.parametrize("name", GRAPH_BUILDERS)
def test_build_predict_fit_and_round_trip(name, graph_set, tmp_path):
    model = build(name, graph_set)
    assert mpnn.supports(model)
    batch = molecules.union(graph_set.graphs)
    outputs = np.asarray(model(as_tensors(batch), training=False))
    assert outputs.shape == (8, 2) and outputs.dtype == np.float32 and np.all(np.isfinite(outputs))

    # Each graph alone gives what it gives inside the batch (the union keeps graphs apart).
    alone = np.concatenate([np.asarray(model(as_tensors(molecules.union([graph])), training=False))
                            for graph in graph_set.graphs])
    np.testing.assert_allclose(alone, outputs, rtol=1e-4, atol=1e-4)

    # Renumbering a graph's nodes changes nothing.
    graph = graph_set.graphs[3]
    order = np.random.default_rng(0).permutation(len(graph.nodes))
    inverse = np.argsort(order)
    shuffled = molecules.Graph(graph.nodes[order], graph.edges, inverse[graph.edge_index].astype(np.int32))
    np.testing.assert_allclose(np.asarray(model(as_tensors(molecules.union([shuffled])), training=False)),
                               outputs[3:4], rtol=1e-4, atol=1e-4)

    dataset = molecules.make_dataset(graph_set, batch_size=3)
    np.testing.assert_allclose(model.predict(dataset, verbose=0), outputs, rtol=1e-4, atol=1e-4)

    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss="mse", run_eagerly=True)  # one step: no tracing
    before = [np.array(weight) for weight in model.trainable_weights]
    targets = tf.data.Dataset.from_tensors((as_tensors(batch), tf.ones((8, 2))))
    history = model.fit(targets, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    changed = [not np.array_equal(a, np.array(b)) for a, b in zip(before, model.trainable_weights)]
    assert all(changed), [w.path for w, c in zip(model.trainable_weights, changed) if not c]

    helpers.keras_round_trip(model, as_tensors(batch), tmp_path)


def test_target_units_head_scales_and_shifts(graph_set):
    plain = build("gcn", graph_set)
    scaled = build("gcn", graph_set, output_scale=[2.0, 3.0], output_offset=[-1.0, 5.0])
    batch = as_tensors(molecules.union(graph_set.graphs))
    np.testing.assert_allclose(np.asarray(scaled(batch)), np.asarray(plain(batch)) * [2.0, 3.0] + [-1.0, 5.0],
                               rtol=1e-5, atol=1e-5)


def test_mpnn_readouts_and_gin_variants_build(graph_set):
    batch = as_tensors(molecules.union(graph_set.graphs))
    for extra in ({"readout": "sum"}, {"readout": "mean"}):
        assert build("mpnn", graph_set, **extra)(batch).shape == (8, 2)
    for extra in ({"use_edge_features": False}, {"learn_epsilon": True}):
        assert build("gin", graph_set, **extra)(batch).shape == (8, 2)


def test_segment_softmax_sums_to_one_per_graph():
    scores = tf.constant([1.0, 2.0, 3.0, 100.0, -100.0])
    segments = tf.constant([0, 0, 0, 1, 1])
    weights = np.asarray(mpnn.segment_softmax(scores, segments, 2))
    np.testing.assert_allclose([weights[:3].sum(), weights[3:].sum()], [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(weights[:3], np.exp([1, 2, 3]) / np.exp([1, 2, 3]).sum(), rtol=1e-6)


@pytest.mark.parametrize("name", GRAPH_BUILDERS)
def test_graph_features_join_the_readout_standardized_and_round_trip(name, graph_set, tmp_path):
    rng = np.random.default_rng(0)
    features = rng.normal(loc=50.0, scale=10.0, size=(8, 3)).astype(np.float32)
    model = build(name, graph_set, graph_feature_stats=[[50.0, 50.0, 50.0], [10.0, 10.0, 10.0]])
    assert mpnn.supports(model) and [tensor.name for tensor in model.inputs][-1] == "graph_features"
    batch = as_tensors(molecules.union(graph_set.graphs, features))
    outputs = np.asarray(model(batch, training=False))
    assert outputs.shape == (8, 2) and np.all(np.isfinite(outputs))
    # The features reach the output; beyond 5 standard deviations they are clipped.
    moved = as_tensors(molecules.union(graph_set.graphs, features + [30.0, 0.0, 0.0]))
    assert not np.allclose(np.asarray(model(moved, training=False)), outputs)
    far, farther = (as_tensors(molecules.union(graph_set.graphs, np.full((8, 3), value, np.float32)))
                    for value in (110.0, 1e4))
    np.testing.assert_allclose(np.asarray(model(far, training=False)), np.asarray(model(farther, training=False)),
                               rtol=1e-6, atol=1e-6)
    path = tmp_path / f"{name}_features.keras"
    model.save(path)
    np.testing.assert_allclose(np.asarray(keras.saving.load_model(path)(batch, training=False)), outputs,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kwargs", [{"num_outputs": 0}, {"units": 0}, {"dropout_rate": 1.0},
                                    {"output_scale": [1.0, 2.0]}, {"readout": "max"},
                                    {"graph_feature_stats": [[1.0, 2.0], [1.0]]}])
def test_bad_arguments_raise(kwargs):
    with pytest.raises(ValueError, match="Received"):
        applications.get("mpnn")(41, 10, **{"num_outputs": 1, **kwargs})
