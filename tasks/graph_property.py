"""Graph property prediction: MPNN, GIN and GCN on molecules (SMILES) and TU graphs, against fingerprints.

Usage:
    python -m tasks.graph_property train                                   # demo: generated molecules → Crippen logP
    python -m tasks.graph_property train --data esol --targets measured --epochs 60
    python -m tasks.graph_property train --data bbbp --split scaffold --model mpnn
    python -m tasks.graph_property train --data mutag --model gin --folds 10
    python -m tasks.graph_property train --data tox21.csv --targets NR-AR,NR-AhR,SR-p53   # multi-task, gaps allowed
    python -m tasks.graph_property evaluate                                # the same flags find the run
    python -m tasks.graph_property predict "CCO" "c1ccccc1O" "[Na+].[O-]C(=O)c1ccccc1"
    python -m tasks.graph_property predict molecules.csv                   # a CSV with a smiles column, or .smi

Data (`tasks.data.molecules`): a SMILES CSV or an SDF file (`.sdf`, `.sdf.gz`; properties are the
targets), a folder holding one of them, a TU folder (`<NAME>_A.txt`, ...), or `demo`. Molecules are
featurized with RDKit (atoms: element, degree, formal charge, hybridization, aromaticity, hydrogens,
ring; bonds: type, conjugation, ring, stereo); salts keep their largest fragment. Each batch is one
disjoint graph (no padding).
Targets: regression (one or more columns), binary classification (0/1 columns; several columns
are multi-task with missing labels masked), or a TU dataset's graph classes. Splits: random or
scaffold (Bemis–Murcko) 80/10/10, or stratified K-fold (`--folds K`, all folds or `--fold i`).
Model: a graph builder of the applications registry (mpnn, gin, gcn). Loss: MSE on standardized
targets or cross-entropy, missing labels masked. Metrics: RMSE, MAE, R² / ROC-AUC, PR-AUC,
accuracy. Baselines: the mean (majority) predictor and Morgan fingerprints (radius 2, 2048 bits;
TU graphs: node-label and labelled-edge counts) with ridge / logistic regression, whose strength
is chosen on the validation split.
"""

import dataclasses
import pathlib
import sys
import warnings

import keras
import numpy as np
import tensorflow as tf

import applications
from tasks.core import cli
from tasks.core import pipeline
from tasks.core import export
from tasks.core import plots
from tasks.core import runner
from tasks.core import training
from tasks.core.config import TrainConfig
from tasks.core.config import float32_only
from tasks.core.config import model_option
from tasks.core.config import option
from tasks.core.errors import UserError
from tasks.data import molecules

KIND = "graph"  # the applications registry kind(s) --model names

FINGERPRINT_BITS = 2048
FINGERPRINT_RADIUS = 2
PREDICT_BATCH = 256  # molecules per signature call in `predict`
BLEND_GRID = np.linspace(0.0, 1.0, 11)  # network weights the validation split chooses from
CROSS_FIT_FOLDS = 5
# A class absent from (or alone in) the training split: the linear head's fixed logit for it.
LOGIT_LIMIT = 15.0


@dataclasses.dataclass
class Config(TrainConfig):
    epochs: int = option(25, "Passes over the training split.", minimum=1)
    batch_size: int = option(32, "Graphs per batch (one disjoint union).", minimum=1)
    weight_decay: float = option(0.0, "Decoupled weight decay (0: off).", minimum=0.0)
    # No tflite: the converted MPNN fails in the interpreter once a batch has another node count
    # (PACK: inputs of different shapes), so only ONNX is offered beside the SavedModel.
    export_format: str = option("saved_model", "Extra export format written beside the SavedModel.",
                                choices=["saved_model", "onnx"], identity=False, aliases=("--format",))
    precision: str = float32_only()  # bfloat16 message passing moves predictions by 1e-3
    model: str = model_option("mpnn", KIND)
    targets: str = option("", "Target column(s) of a SMILES CSV or properties of an SDF file, comma-separated "
                              "(default: the one non-SMILES column, the one property).")
    smiles_column: str = option("", "The SMILES column of a CSV (default: the one named smiles).")
    task_type: str = option("auto", "Regression or classification (auto: 0/1 targets classify).",
                            choices=["auto", "regression", "classification"])
    split: str = option("random", "Hold-out split (when --folds is 0).", choices=["random", "scaffold"])
    test_fraction: float = option(0.1, "Share of all graphs in the test split.", minimum=0.0)
    validation_fraction: float = option(0.1, "Share of all graphs (K-fold: of the training folds) for validation.",
                                        minimum=0.0)
    folds: int = option(0, "K-fold cross-validation, stratified for classes (0: a hold-out split).", minimum=0)
    fold: int = option(-1, "The one fold to run with --folds (-1: every fold, then mean and std).", minimum=-1)
    units: int = option(0, "Width of the node states (0: the builder's default, 64).", minimum=0)
    num_steps: int = option(0, "Message-passing steps / layers (0: the builder's default).", minimum=0)
    readout: str = option("set2set", "Graph readout of mpnn.", choices=["set2set", "sum", "mean"])
    dropout_rate: float = option(-1.0, "Dropout before the output layer (-1: the builder's default).", minimum=-1.0)
    largest_fragment: bool = option(True, "Keep the largest fragment of salts / mixtures (else: all fragments).")
    ensemble: int = option(1, "Members of a deep ensemble: N networks (weights seeded seed..seed+N-1, the same "
                              "split) whose outputs are averaged; the run and the export hold the average.", minimum=1)
    descriptors: bool = option(False, "Add RDKit's 2D descriptors of each molecule beside the learned readout "
                                      "(and to the fingerprint baseline).")
    hybrid: bool = option(True, "The fingerprint baseline's fitted ridge / logistic regression as a fixed linear "
                                "head inside the model, blended with the network by a weight in [0, 1] chosen on "
                                "the validation split (0: the baseline exactly).")
    blend: str = option("convex", "How the hybrid blends: convex ((1 - w) baseline + w network, the network trained "
                                  "alone) or residual (baseline + w network, the network trained on the residual).",
                        choices=["convex", "residual"])


@dataclasses.dataclass
class GraphData(pipeline.Data):
    """`Data` plus the graph sets of each split (baselines and plots read them)."""

    sets: dict = None


# === Data ===


def read_source(config):
    """The config's graphs as a `molecules.GraphSet`."""
    return molecules.read(config.data, config.targets.split(","), config.smiles_column, config.largest_fragment,
                          config.skip_bad, seed=config.seed, verbose=bool(config.verbose))


def task_kind(graph_set, config):
    """`regression`, `binary` (one or more 0/1 targets) or `multiclass` (TU graphs, > 2 classes)."""
    if not graph_set.smiles:
        if config.task_type == "regression":
            raise UserError("--task-type regression: a TU folder's graph labels are classes.")
        return "binary" if len(graph_set.node_vocabulary["graph"]) == 2 else "multiclass"
    observed = graph_set.targets[~np.isnan(graph_set.targets)]
    zero_one = bool(np.isin(observed, (0.0, 1.0)).all())
    if config.task_type == "classification" and not zero_one:
        raise UserError(f"--task-type classification needs 0/1 targets; {', '.join(graph_set.target_names)} "
                        f"hold other values (e.g. {observed[~np.isin(observed, (0.0, 1.0))][0]:g}).")
    if config.task_type == "auto":
        return "binary" if zero_one else "regression"
    return "binary" if config.task_type == "classification" else "regression"


def split_indices(graph_set, kind, config):
    """`(train, validation, test)` index arrays of the configured split."""
    count = len(graph_set)
    classes = graph_set.targets[:, 0] if kind != "regression" and graph_set.targets.shape[1] == 1 else None
    if config.folds > 1:
        if config.fold >= config.folds:
            raise UserError(f"--fold {config.fold} must be below --folds {config.folds} (0..{config.folds - 1}).")
        if config.fold < 0:
            raise UserError("--fold -1 means every fold: call train(), not load_data(), for a whole K-fold run.")
        rest, test = molecules.kfold_split(graph_set.targets, config.folds, config.fold, config.seed,
                                           stratify=classes is not None)
        labels = classes[rest] if classes is not None else np.zeros(len(rest))
        keep, held = pipeline.split_indices(labels, config.validation_fraction, config.seed + 1,
                                            stratify=classes is not None)
        return rest[keep], rest[held], test
    if config.folds == 1:
        raise UserError("--folds 1 is not cross-validation; use 0 (a hold-out split) or >= 2.")
    if config.validation_fraction + config.test_fraction >= 1.0:
        raise UserError(f"--validation-fraction + --test-fraction must be below 1 (now "
                        f"{config.validation_fraction} + {config.test_fraction}).")
    if config.split == "scaffold":
        if not graph_set.smiles:
            raise UserError("--split scaffold needs molecules (SMILES); TU graphs have no scaffolds.")
        return molecules.scaffold_split(graph_set.names, config.validation_fraction, config.test_fraction)
    return molecules.random_split(count, config.validation_fraction, config.test_fraction, config.seed)


def descriptor_smiles(graph_set, source):
    """The SMILES whose RDKit descriptors describe each graph: the molecules themselves, or a TU
    folder's graphs rebuilt as molecules from its label names (None for a graph RDKit rejects)."""
    if graph_set.smiles:
        return graph_set.names
    if graph_set.molecules is None:
        raise UserError(f"--descriptors needs molecules: {source} is a TU folder whose README.txt does not name "
                        "its node labels as elements and its edge labels as bond types.")
    return graph_set.molecules


def load_data(config, saved=None):
    """Train / validation / test disjoint-union batches, their graph sets and the facts the model needs."""
    graph_set = read_source(config)
    num_descriptors = 0
    if config.descriptors:
        graph_set.features, names = molecules.descriptors(descriptor_smiles(graph_set, config.data))
        num_descriptors = len(names)
    if config.hybrid:  # the linear head's fingerprints travel after the descriptors: (G, D + P)
        prints = fingerprints(graph_set)
        graph_set.features = prints if graph_set.features is None else np.concatenate([graph_set.features, prints], 1)
    kind = task_kind(graph_set, config)
    train_ids, validation_ids, test_ids = split_indices(graph_set, kind, config)
    if len(train_ids) == 0 or len(test_ids) == 0:
        raise UserError(f"--data {config.data}: {len(graph_set)} graphs are too few for train and test splits.")
    sets = {"train": graph_set.take(train_ids), "validation": graph_set.take(validation_ids),
            "test": graph_set.take(test_ids)}
    train_targets = sets["train"].targets
    for column, name in enumerate(graph_set.target_names):
        if np.all(np.isnan(train_targets[:, column])):
            raise UserError(f"target {name!r} has no value in the training split; drop it from --targets.")
    info = {
        "kind": kind,
        "target_names": graph_set.target_names,
        "num_outputs": len(graph_set.node_vocabulary["graph"]) if kind == "multiclass" else len(graph_set.target_names),
        "num_node_features": graph_set.num_node_features,
        "num_edge_features": graph_set.num_edge_features,
        "featurizer": molecules.FEATURIZER if graph_set.smiles else "tu",
        "largest_fragment": config.largest_fragment,
        "split": f"{config.folds}-fold, fold {config.fold}" if config.folds > 1 else config.split,
        "num_train": len(train_ids),  # graphs per epoch
        "num_validation": len(validation_ids),
        "num_test": len(test_ids),
        "notes": graph_set.notes,
    }
    if not graph_set.smiles:
        info["tu_vocabulary"] = graph_set.node_vocabulary
        info["class_names"] = [str(value) for value in graph_set.node_vocabulary["graph"]]
        if graph_set.label_names:
            info["tu_label_names"] = graph_set.label_names
    if config.descriptors:
        train_features = sets["train"].features[:, :num_descriptors]
        info["descriptor_names"] = names
        info["graph_feature_stats"] = [train_features.mean(axis=0).tolist(), train_features.std(axis=0).tolist()]
    if kind == "regression":
        info["target_mean"] = np.nanmean(train_targets, axis=0).tolist()
        info["target_std"] = np.maximum(np.nanstd(train_targets, axis=0), 1e-6).tolist()
    else:
        info["positive_rate"] = np.nanmean(train_targets, axis=0).tolist() if kind == "binary" else None
    train_set = sets["train"]
    if config.hybrid:
        kernel, bias, offsets = linear_head(kind, sets, info, cross_fit=config.blend == "residual")
        info["fingerprint_width"] = int(graph_set.features.shape[1] - num_descriptors)
        info["linear_head"] = {"kernel": kernel.tolist(), "bias": bias.tolist(), "mode": config.blend}
        train_set = dataclasses.replace(train_set, targets=train_set.targets + offsets)
    missing = int(np.isnan(graph_set.targets).sum())
    if missing:
        info["notes"]["missing_labels"] = missing
    if config.verbose:
        removed = graph_set.notes.get("fragments_removed", 0)
        if removed:
            print(f"Kept the largest fragment of {removed} multi-fragment molecules (salts / mixtures).")
        skipped = {key: value for key, value in graph_set.notes.items() if key.startswith("skipped_")}
        if skipped:
            print(f"Skipped bad rows / records (--skip-bad): {skipped}")
        rejected = graph_set.notes.get("not_molecules", {}) if config.descriptors else {}
        if rejected:
            first = next(iter(rejected.items()))
            print(f"note: RDKit rejects {len(rejected)} TU graph(s) as molecules (e.g. {first[0]}: {first[1]}); "
                  "their descriptors are 0.")
    return GraphData(
        train=molecules.make_dataset(train_set, config.batch_size, shuffle=True, seed=config.seed),
        validation=molecules.make_dataset(sets["validation"], config.batch_size) if len(validation_ids) else None,
        test=molecules.make_dataset(sets["test"], config.batch_size),
        info=info,
        sets=sets,
    )


# === Model and loss ===


@keras.saving.register_keras_serializable(package="graph_property")
class MaskedLoss(keras.losses.Loss):
    """Mean loss over the observed labels only (NaN targets count nowhere).

    Args:
        kind: str. "regression" (squared error in units of `scale`), "binary" (cross-entropy on
            logits, one per target) or "multiclass" (sparse cross-entropy on logits).
        scale: list of float or None. Per-target divisor of the regression error (the training
            standard deviations), so every target weighs the same.
    """

    def __init__(self, kind="regression", scale=None, name="masked_loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.kind = kind
        self.scale = None if scale is None else [float(value) for value in scale]

    def call(self, y_true, y_pred):
        y_true = tf.cast(y_true, tf.float32)
        y_pred = tf.cast(y_pred, tf.float32)
        if self.kind == "multiclass":
            labels = tf.cast(y_true[:, 0], tf.int32)
            return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, y_pred))
        observed = ~tf.math.is_nan(y_true)  # (B, T)
        target = tf.where(observed, y_true, tf.zeros_like(y_true))
        if self.kind == "binary":
            losses = tf.nn.sigmoid_cross_entropy_with_logits(target, y_pred)
        else:
            scale = tf.constant(self.scale, tf.float32) if self.scale else 1.0
            losses = tf.square((y_pred - target) / scale)
        losses = tf.where(observed, losses, tf.zeros_like(losses))
        return tf.reduce_sum(losses) / tf.maximum(tf.reduce_sum(tf.cast(observed, tf.float32)), 1.0)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "scale": self.scale}


def builder_arguments(config, builder, info):
    """The builder's keyword arguments from the config (0 / -1: the builder's own default)."""
    accepted = applications.arguments(builder)
    wanted = {}
    if config.units:
        wanted["units"] = config.units
    if config.num_steps:
        wanted["num_steps" if "num_steps" in accepted else "num_layers"] = config.num_steps
    if config.dropout_rate >= 0:
        wanted["dropout_rate"] = config.dropout_rate
    if "readout" in accepted:
        wanted["readout"] = config.readout
    if info["kind"] == "regression":  # a residual hybrid's network adds to the baseline: centred at 0
        residual = info.get("linear_head", {}).get("mode") == "residual"
        offset = [0.0] * len(info["target_mean"]) if residual else info["target_mean"]
        wanted.update(output_scale=info["target_std"], output_offset=offset)
    if info.get("graph_feature_stats"):
        wanted["graph_feature_stats"] = info["graph_feature_stats"]
    return wanted


def build_model(config, info):
    """A registry graph network, compiled with the masked loss and the config's optimizer."""
    builder = training.model_builder(config.model, KIND)
    model = training.build_network(builder, config, info["num_node_features"], info["num_edge_features"],
                                   info["num_outputs"], **builder_arguments(config, builder, info))
    if info.get("linear_head"):
        head = info["linear_head"]
        model = applications.mpnn.residual_hybrid(model, np.array(head["kernel"]), np.array(head["bias"]),
                                                  info.get("graph_feature_stats"), mode=head.get("mode", "residual"),
                                                  name=f"{config.model}_hybrid")
    # Outputs are in target units; errors divided by the training std weigh every target the same.
    scale = info["target_std"] if info["kind"] == "regression" else None
    return training.compile(model, config, info, loss=MaskedLoss(info["kind"], scale))


def callbacks(config, data, run):
    """A hybrid's `BlendChoice`, run after the standard callbacks (best weights restored first)."""
    return [BlendChoice(data, verbose=config.verbose)] if data.info.get("linear_head") else []


class BlendChoice(keras.callbacks.Callback):
    """At the end of training, sets a hybrid's network weight (its `blend` layer) to the value of
    BLEND_GRID with the lowest validation loss (ties: the smaller weight, nearer the baseline).
    Without a validation split the weight stays 1."""

    def __init__(self, data, verbose=0):
        super().__init__()
        self.data = data
        self.verbose = verbose

    def on_train_end(self, logs=None):
        weight = choose_blend(self.model, self.data)
        if self.verbose and weight is not None:
            print(f"Hybrid: network weight {weight:.1f} (chosen on the validation split; 0 = the baseline)")


def blend_layer(model):
    return model.get_layer("blend")


def set_blend(model, weight):
    layer = blend_layer(model)
    layer.weight.assign(float(weight))


def choose_blend(model, data):
    """Sets and returns the validation-chosen residual weight of a hybrid (None without a validation split)."""
    if data.validation is None:
        return None
    kind, truth = data.info["kind"], data.sets["validation"].targets
    set_blend(model, 0.0)
    base = predict_split(model, data.validation)
    set_blend(model, 1.0)
    step = predict_split(model, data.validation) - base  # both blends are linear in the weight
    losses = [validation_loss(kind, truth, base + weight * step, data.info) for weight in BLEND_GRID]
    weight = float(BLEND_GRID[int(np.argmin(np.round(losses, 10)))])
    set_blend(model, weight)
    return weight


def validation_loss(kind, targets, raw, info):
    """The training loss on numpy arrays: squared error in target standard deviations, or cross-entropy."""
    if kind == "multiclass":
        shifted = raw - raw.max(axis=1, keepdims=True)
        log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        return float(-np.mean(log_probabilities[np.arange(len(raw)), targets[:, 0].astype(np.int64)]))
    observed = ~np.isnan(targets)
    truth = np.where(observed, targets, 0.0)
    if kind == "regression":
        losses = ((raw - truth) / np.asarray(info["target_std"])) ** 2
    else:  # the numerically stable sigmoid cross-entropy on logits
        losses = np.maximum(raw, 0) - raw * truth + np.log1p(np.exp(-np.abs(raw)))
    return float(np.sum(losses * observed) / max(observed.sum(), 1))


# === Metrics and baselines ===


def scores(kind, targets, predicted):
    """The field's metrics on observed labels, averaged over targets (and per target when T > 1).

    Args:
        kind: str. regression, binary or multiclass.
        targets: (G, T) float with NaN for missing labels (multiclass: (G, 1) class ids).
        predicted: (G, T) values or probabilities (multiclass: (G, K) probabilities).
    """
    from sklearn import metrics

    if kind == "multiclass":
        labels = targets[:, 0].astype(np.int64)
        result = {"accuracy": float(np.mean(np.argmax(predicted, axis=1) == labels))}
        present = np.unique(labels)
        if len(present) > 1:
            probabilities = predicted[:, present] / predicted[:, present].sum(axis=1, keepdims=True)
            result["roc_auc"] = float(metrics.roc_auc_score(labels, probabilities if len(present) > 2 else
                                                            probabilities[:, 1], multi_class="ovr"))
        return result
    per_target = []
    for column in range(targets.shape[1]):
        observed = ~np.isnan(targets[:, column])
        truth, guess = targets[observed, column], predicted[observed, column]
        if kind == "regression":
            one = {
                "rmse": float(np.sqrt(np.mean((truth - guess) ** 2))),
                "mae": float(np.mean(np.abs(truth - guess))),
                "r2": float(metrics.r2_score(truth, guess)) if len(truth) > 1 else float("nan"),
            }
        else:
            one = {"accuracy": float(np.mean((guess >= 0.5) == (truth == 1)))}
            if len(np.unique(truth)) == 2:  # AUCs are undefined when the split holds one class
                one["roc_auc"] = float(metrics.roc_auc_score(truth, guess))
                one["pr_auc"] = float(metrics.average_precision_score(truth, guess))
        per_target.append(one)
    keys = ["rmse", "mae", "r2"] if kind == "regression" else ["roc_auc", "pr_auc", "accuracy"]
    result = {key: float(np.nanmean([one.get(key, np.nan) for one in per_target])) for key in keys
              if any(key in one for one in per_target)}
    if len(per_target) > 1:
        result["per_target"] = per_target
    return result


def classical_features(graph_set, stats=None):
    """`fingerprints`, then the graph-level descriptors scaled as the network scales them, with
    `stats` = info["graph_feature_stats"] (the training split's mean and std), when the set has them.
    A hybrid run's sets carry the fingerprints after the descriptors in `features`; they are reused."""
    num_descriptors = len(stats[0]) if stats else 0
    features = graph_set.features
    x = features[:, num_descriptors:] if features is not None and features.shape[1] > num_descriptors else (
        fingerprints(graph_set))
    if not num_descriptors:
        return x
    scale, offset = applications.mpnn.graph_feature_scaling(stats)
    limit = applications.mpnn.GRAPH_FEATURE_CLIP
    scaled = np.clip(features[:, :num_descriptors] * np.asarray(scale) + np.asarray(offset), -limit, limit)
    return np.concatenate([x, scaled], axis=1).astype(np.float32)


def fingerprints(graph_set):
    """Classical features: Morgan bit vectors (molecules) or label counts (TU graphs), (G, D)."""
    return morgan_bits(graph_set.names) if graph_set.smiles else label_counts(graph_set.graphs)


def morgan_bits(smiles_list):
    """Morgan fingerprints (radius FINGERPRINT_RADIUS, FINGERPRINT_BITS bits) of SMILES, (G, bits) float32."""
    from rdkit import Chem
    from rdkit.Chem import rdFingerprintGenerator

    generator = rdFingerprintGenerator.GetMorganGenerator(radius=FINGERPRINT_RADIUS, fpSize=FINGERPRINT_BITS)
    return np.array([generator.GetFingerprintAsNumPy(Chem.MolFromSmiles(smiles)) for smiles in smiles_list],
                    np.float32).reshape(len(smiles_list), FINGERPRINT_BITS)


def label_counts(graphs):
    """log(1 + count) of node labels and labelled edges of TU graphs (one-hot features), (G, D)."""
    rows = []
    for graph in graphs:
        # Node-label counts and (source label, edge label, target label) counts: a 1-hop WL histogram.
        sources, targets = graph.nodes[graph.edge_index[:, 0]], graph.nodes[graph.edge_index[:, 1]]
        triples = np.einsum("ei,ej,ek->ijk", sources, graph.edges, targets).ravel()
        rows.append(np.concatenate([graph.nodes.sum(axis=0), triples]))
    return np.log1p(np.array(rows, np.float32))


def classical_models(kind, train, validation, stats=None):
    """Ridge / logistic regression on `classical_features` of the training split, strength chosen
    on the validation split: one multinomial model (multiclass), else one per target (a float for a
    target with one class in training: that class's probability)."""
    from sklearn.linear_model import LogisticRegression

    x_train = classical_features(train, stats)
    x_validation = classical_features(validation, stats) if len(validation) else None
    strengths = [0.01, 0.1, 1.0, 10.0, 100.0]
    if kind == "multiclass":
        labels = train.targets[:, 0].astype(np.int64)

        def fit(c):
            return LogisticRegression(C=c, max_iter=3000).fit(x_train, labels)

        model = fit(1.0)
        if x_validation is not None and len(np.unique(labels)) > 1:
            model = max((fit(c) for c in strengths),
                        key=lambda m: m.score(x_validation, validation.targets[:, 0].astype(np.int64)))
        return [model]
    models = []
    for column in range(train.targets.shape[1]):
        rows = ~np.isnan(train.targets[:, column])
        observed = ~np.isnan(validation.targets[:, column]) if x_validation is not None else None
        if observed is not None and observed.sum() > 1:
            held_out = (x_validation[observed], validation.targets[observed, column])
        else:
            held_out = None
        models.append(_fit_one_target(kind, x_train[rows], train.targets[rows, column], held_out, strengths))
    return models


def classical_guess(kind, model, features):
    """One fitted classical model's test values (regression) or positive-class probabilities."""
    if isinstance(model, float):
        return np.full(len(features), model, np.float32)
    return model.predict(features) if kind == "regression" else model.predict_proba(features)[:, 1]


def classical_predictions(kind, train, validation, test, stats=None):
    """Ridge / logistic regression on `classical_features` (`stats`: the descriptors' training mean
    and std, when the sets have descriptors), strength chosen on the validation split."""
    models = classical_models(kind, train, validation, stats)
    x_test = classical_features(test, stats)
    if kind == "multiclass":
        model = models[0]
        probabilities = np.zeros((len(test), int(train.targets[:, 0].max()) + 1))
        probabilities[:, model.classes_] = model.predict_proba(x_test)
        return probabilities
    predicted = np.zeros(test.targets.shape, np.float32)
    for column, model in enumerate(models):
        predicted[:, column] = classical_guess(kind, model, x_test)
    return predicted


def _fit_one_target(kind, x, y, held_out, strengths):
    """Ridge (regression) or logistic regression (0/1) on one target; the strength with the best
    validation RMSE / ROC-AUC when `held_out = (x, y)` is given, else 1.0. Returns the fitted model
    (a float, the class, when training holds one class)."""
    import scipy.linalg
    from sklearn.linear_model import LogisticRegression
    from sklearn.linear_model import Ridge
    from sklearn.metrics import roc_auc_score

    if kind != "regression" and len(np.unique(y)) < 2:
        return float(y[0])  # one class in training: predict it

    def fit(strength):
        if kind == "regression":
            # Collinear fingerprint bits make the normal equations ill-conditioned; the solve is
            # still the ridge solution, so scikit-learn's LinAlgWarning says nothing to act on.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
                return Ridge(alpha=strength).fit(x, y)
        return LogisticRegression(C=1.0 / strength, max_iter=3000).fit(x, y)

    def quality(model):
        features, truth = held_out
        if kind == "regression":
            return -np.sqrt(np.mean((truth - classical_guess(kind, model, features)) ** 2))
        return roc_auc_score(truth, classical_guess(kind, model, features)) if len(np.unique(truth)) == 2 else 0.0

    return max((fit(strength) for strength in strengths), key=quality) if held_out is not None else fit(1.0)


def linear_head(kind, sets, info, cross_fit=True):
    """The classical baseline as the hybrid's fixed linear head: `(kernel (P + D, T), bias (T,),
    offsets (G_train, T))` over `classical_features`, giving the baseline's values (regression) or
    logits (classification).

    Regression `offsets` (with `cross_fit`, for the residual blend) = in-sample minus cross-fitted
    ridge values on the training split: added
    to the training targets, they make the network learn y − (ridge fitted without that molecule),
    the residual it will meet on new molecules (in-sample residuals of a ridge over 2,000+
    features are near zero). Classification offsets are 0.
    """
    stats = info.get("graph_feature_stats")
    models = classical_models(kind, sets["train"], sets["validation"], stats)
    x_train = classical_features(sets["train"], stats)
    width, num_outputs = x_train.shape[1], info["num_outputs"]
    kernel = np.zeros((width, num_outputs), np.float64)
    bias = np.zeros(num_outputs, np.float64)
    offsets = np.zeros(sets["train"].targets.shape, np.float32)
    if kind == "multiclass":
        model = models[0]
        bias[:] = -LOGIT_LIMIT  # classes absent from training
        if len(model.classes_) == 2:  # scikit-learn's binary form: one logit, for classes_[1]
            bias[model.classes_] = [0.0, model.intercept_[0]]
            kernel[:, model.classes_[1]] = model.coef_[0]
        else:
            bias[model.classes_] = model.intercept_
            kernel[:, model.classes_] = model.coef_.T
        return kernel, bias, offsets
    for column, model in enumerate(models):
        if isinstance(model, float):
            bias[column] = LOGIT_LIMIT if model else -LOGIT_LIMIT
            continue
        kernel[:, column] = model.coef_.reshape(-1)
        bias[column] = float(np.ravel(model.intercept_)[0])
        if kind == "regression" and cross_fit:
            offsets[:, column] = cross_fit_offsets(model, x_train, sets["train"].targets[:, column])
    return kernel, bias, offsets


def cross_fit_offsets(model, x, y):
    """In-sample minus out-of-fold values of a fitted ridge (CROSS_FIT_FOLDS folds, same strength);
    0 where `y` is missing."""
    import scipy.linalg
    from sklearn.base import clone
    from sklearn.model_selection import KFold

    rows = np.flatnonzero(~np.isnan(y))
    offsets = np.zeros(len(y), np.float32)
    if len(rows) < 2 * CROSS_FIT_FOLDS:
        return offsets
    inside = model.predict(x[rows])
    outside = np.zeros(len(rows))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", scipy.linalg.LinAlgWarning)
        for fit_rows, held_rows in KFold(CROSS_FIT_FOLDS, shuffle=True, random_state=0).split(rows):
            fold = clone(model).fit(x[rows[fit_rows]], y[rows[fit_rows]])
            outside[held_rows] = fold.predict(x[rows[held_rows]])
    offsets[rows] = inside - outside
    return offsets


def baseline(config, data):
    """Morgan fingerprints + ridge / logistic regression, and nested under `mean_predictor` the
    training mean (regression) or majority class / positive rate (classification)."""
    kind, sets = data.info["kind"], data.sets
    train, test = sets["train"].targets, sets["test"].targets
    if kind == "multiclass":
        counts = np.bincount(train[:, 0].astype(np.int64), minlength=data.info["num_outputs"])
        constant = np.tile(counts / counts.sum(), (len(test), 1))
        constant_name = "majority class"
    elif kind == "binary":
        constant = np.tile(np.nanmean(train, axis=0), (len(test), 1))  # the positive rate: AUC 0.5
        constant_name = "majority class (training positive rate as the probability)"
    else:
        constant = np.tile(np.nanmean(train, axis=0), (len(test), 1))
        constant_name = "mean predictor"
    result = scores(kind, test, classical_predictions(kind, sets["train"], sets["validation"], sets["test"],
                                                           data.info.get("graph_feature_stats")))
    result["name"] = ("Morgan fingerprint (r=2, 2048 bits)" if sets["train"].smiles else "label-count fingerprint") + (
        " and RDKit descriptors" if data.info.get("descriptor_names") else "") + (
        " + ridge" if kind == "regression" else " + logistic regression")
    result["mean_predictor"] = {**scores(kind, test, constant), "name": constant_name}
    if config.verbose:
        shown = ", ".join(f"{key} {value:.4f}" for key, value in result["mean_predictor"].items()
                          if isinstance(value, float))
        print(f"  {constant_name}: {shown}")
    return result


def predict_split(model, dataset):
    """The model's final outputs over a dataset, in order: values, or probabilities."""
    outputs = np.concatenate([np.asarray(model(inputs, training=False)) for inputs, _ in dataset])
    return outputs


def final_outputs(kind, raw):
    """Network outputs → values (regression) or probabilities (sigmoid / softmax)."""
    if kind == "regression":
        return raw
    if kind == "binary":
        return 1.0 / (1.0 + np.exp(-raw))
    shifted = np.exp(raw - raw.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def evaluate(model, data, config, plots_dir=None):
    """RMSE, MAE, R² (regression) or ROC-AUC, PR-AUC, accuracy on the test split; parity / ROC plots."""
    kind = data.info["kind"]
    predicted = final_outputs(kind, predict_split(model, data.test))
    targets = data.sets["test"].targets
    result = scores(kind, targets, predicted)
    if plots_dir is not None:
        plots_dir = pathlib.Path(plots_dir)
        if kind == "regression":
            with plots.best_effort(plots_dir / "parity.png") as path:
                parity_plot(targets, predicted, data.info["target_names"], path)
        elif kind == "binary":
            with plots.best_effort(plots_dir / "roc.png") as path:
                roc_plot(targets, predicted, data.info["target_names"], path)
        else:
            from sklearn.metrics import confusion_matrix

            labels = targets[:, 0].astype(np.int64)
            matrix = confusion_matrix(labels, np.argmax(predicted, axis=1), labels=range(data.info["num_outputs"]))
            with plots.best_effort(plots_dir / "confusion_matrix.png") as path:
                plots.confusion_matrix(matrix, data.info["class_names"], path)
    return result


# === Pictures ===


def parity_plot(targets, predicted, names, path, limit=4):
    """Predicted against measured for the test split (first `limit` targets), with y = x."""
    import matplotlib.pyplot as plt  # the Agg backend is set by tasks.core.plots

    count = min(targets.shape[1], limit)
    figure, axes = plt.subplots(1, count, figsize=(4.2 * count, 4), squeeze=False)
    for column, axis in enumerate(axes[0]):
        observed = ~np.isnan(targets[:, column])
        truth, guess = targets[observed, column], predicted[observed, column]
        low, high = min(truth.min(), guess.min()), max(truth.max(), guess.max())
        axis.plot([low, high], [low, high], color="grey", linewidth=1)
        axis.scatter(truth, guess, s=10, alpha=0.6)
        rmse = np.sqrt(np.mean((truth - guess) ** 2))
        axis.set_title(f"{names[column][:40]}\nRMSE {rmse:.3f}, n={len(truth)}", fontsize=9)
        axis.set_xlabel("measured")
        axis.set_ylabel("predicted")
        axis.grid(alpha=0.3)
    return plots.save(figure, path)


def roc_plot(targets, probabilities, names, path, limit=8):
    """ROC curves of the test split (first `limit` targets) with their AUC."""
    import matplotlib.pyplot as plt
    from sklearn.metrics import roc_auc_score
    from sklearn.metrics import roc_curve

    figure, axis = plt.subplots(figsize=(4.6, 4.2))
    axis.plot([0, 1], [0, 1], color="grey", linewidth=1, linestyle="--")
    for column in range(min(targets.shape[1], limit)):
        observed = ~np.isnan(targets[:, column])
        truth, score = targets[observed, column], probabilities[observed, column]
        if len(np.unique(truth)) < 2:
            continue
        false_positive, true_positive, _ = roc_curve(truth, score)
        axis.plot(false_positive, true_positive, label=f"{names[column][:24]} (AUC {roc_auc_score(truth, score):.3f})")
    axis.set_xlabel("false positive rate")
    axis.set_ylabel("true positive rate")
    axis.set_title("ROC (test)")
    axis.legend(fontsize=8, loc="lower right")
    axis.grid(alpha=0.3)
    return plots.save(figure, path)


# === Export and predict ===


def example_graphs(info):
    """Two or three small graphs with the model's feature sizes, for the export's reload check."""
    if info["featurizer"] == molecules.FEATURIZER:
        graphs, names, _ = molecules.featurize_smiles(["CCO", "c1ccccc1C(=O)O", "[NH4+]"])
        return molecules.union(graphs, graph_features(names, info))
    nodes = np.eye(3, info["num_node_features"], dtype=np.float32)
    edges = np.eye(2, info["num_edge_features"], dtype=np.float32)
    pair = molecules.Graph(nodes[:2], edges, np.array([[0, 1], [1, 0]], np.int32))
    single = molecules.Graph(nodes[2:], edges[:0], np.zeros((0, 2), np.int32))
    return molecules.union([pair, single], graph_features(["CC", "C"], info, [pair, single]))


def graph_features(smiles, info, graphs=None):
    """The graph-level features the model was trained with, (B, D + P): the molecules' descriptors
    (D), then a hybrid's fingerprints (P: Morgan bits of `smiles`, or label counts of TU `graphs`);
    None for a model with neither."""
    parts = []
    if info.get("descriptor_names"):
        parts.append(molecules.descriptors(smiles, info["descriptor_names"])[0])
    if info.get("linear_head"):
        parts.append(label_counts(graphs) if info["featurizer"] == "tu" else morgan_bits(smiles))
    return np.concatenate(parts, axis=1).astype(np.float32) if parts else None


def graph_feature_width(info):
    """D + P, the width of the `graph_features` input (0: a model without it)."""
    return len(info.get("descriptor_names") or ()) + (info.get("fingerprint_width", 0) if info.get("linear_head") else 0)


def ensemble_members(model):
    """The members of a `--ensemble` model (`training.average_models`), or [model]."""
    members = [layer for layer in model.layers if isinstance(layer, keras.Model) and layer.name.startswith("member")]
    return members if model.name == "ensemble" and members else [model]


def network(model, info):
    """What the ONNX file holds: the network, checked on `example_graphs` (its edge and graph
    indices must name real nodes and graphs, so a made-up batch would not do)."""
    example = example_graphs(info)
    return export.Network(model, [example[tensor.name] for tensor in model.inputs])


# SMILES hold `/` (double-bond stereo): only a file suffix marks an INPUT as a path.
def looks_like_path(text):
    return export.looks_like_path(text, slash=False)


def serving(model, info):
    """`serving_default`: graph tensors of a disjoint-union batch (and `graph_features` (B, D), the
    RDKit descriptors, for a model trained with --descriptors) → predictions per graph.

    Regression: `predictions` (B, T) in target units. Binary / multi-task: `probabilities` (B, T)
    and `labels` (B, T) int32 at 0.5. Multi-class: `probabilities` (B, K) and `labels` (B,) class
    ids (names in assets/labels.txt). Each also gives `std`, the spread (population standard
    deviation) of the ensemble members' predictions / probabilities: 0 for a single network.
    RDKit featurization stays outside (Python, not TF ops); a hybrid's `graph_features` also
    hold the fingerprint of its linear head (`graph_features` below).
    """
    kind = info["kind"]
    signature = [
        tf.TensorSpec([None, info["num_node_features"]], tf.float32, name="node_features"),
        tf.TensorSpec([None, info["num_edge_features"]], tf.float32, name="edge_features"),
        tf.TensorSpec([None, 2], tf.int32, name="edge_index"),
        tf.TensorSpec([None], tf.int32, name="graph_index"),
    ]
    width = graph_feature_width(info)
    if width:
        signature.append(tf.TensorSpec([None, width], tf.float32, name="graph_features"))
    members = ensemble_members(model)

    def predict_graphs(*tensors):
        inputs = {spec.name: tensor for spec, tensor in zip(signature, tensors)}
        raws = tf.stack([tf.cast(member(inputs, training=False), tf.float32) for member in members])  # (M, B, K)
        raw = tf.reduce_mean(raws, axis=0)  # the ensemble's output (its `average` layer)
        if kind == "regression":
            return {"predictions": raw, "std": tf.math.reduce_std(raws, axis=0)}
        if kind == "binary":
            probabilities = tf.sigmoid(raw)
            return {"probabilities": probabilities, "labels": tf.cast(probabilities >= 0.5, tf.int32),
                    "std": tf.math.reduce_std(tf.sigmoid(raws), axis=0)}
        probabilities = tf.nn.softmax(raw, axis=-1)
        return {"probabilities": probabilities, "labels": tf.argmax(probabilities, axis=-1, output_type=tf.int32),
                "std": tf.math.reduce_std(tf.nn.softmax(raws, axis=-1), axis=0)}

    example = example_graphs(info)
    return [export.Endpoint("serving_default", predict_graphs, signature,
                            [example[spec.name] for spec in signature])]


def read_predict_inputs(inputs, info):
    """`(graphs, names, notes, features)` from SMILES strings, SMILES files (.csv, .smi, .txt) or a
    TU folder; `features` are the descriptors of a model trained with them, else None."""
    if info["featurizer"] == "tu":
        if len(inputs) != 1 or not pathlib.Path(inputs[0]).is_dir():
            raise UserError("this model was trained on TU graphs: pass one TU folder (<NAME>_A.txt, ...) to predict.")
        graph_set = molecules.read_tu(inputs[0], vocabulary=info["tu_vocabulary"],
                                      label_names=info.get("tu_label_names"))
        smiles = descriptor_smiles(graph_set, inputs[0]) if info.get("descriptor_names") else None
        features = graph_features(smiles, info, graph_set.graphs)
        notes = [f"{graph}: not a molecule to RDKit ({problem}); its descriptors are 0"
                 for graph, problem in graph_set.notes.get("not_molecules", {}).items()] if smiles is not None else []
        return graph_set.graphs, graph_set.names, notes, features
    smiles = []
    for item in inputs:
        path = pathlib.Path(item)
        if path.suffix.lower() == ".csv" and path.is_file():
            import csv

            with open(path, newline="", encoding="utf-8-sig") as file:
                rows = list(csv.reader(file))
            header = [name.strip() for name in rows[0]] if rows else []
            column = molecules._pick_column(header, "smiles", "the SMILES column", path)
            smiles += [row[header.index(column)] for row in rows[1:] if row]
        elif path.suffix.lower() in (".smi", ".txt") and path.is_file():
            smiles += [line.split()[0] for line in path.read_text().splitlines() if line.strip()]
        else:
            smiles.append(item)
    graphs, names, removed = molecules.featurize_smiles(smiles, info.get("largest_fragment", True))
    notes = [f"{original.strip()}: kept the largest fragment ({count} removed)"
             for original, count in zip(smiles, removed) if count]
    return graphs, names, notes, graph_features(names, info)


def predict(inputs, model_path, output_dir="predictions"):
    """Featurizes the inputs like training did and prints the SavedModel's prediction for each."""
    loaded = export.load(model_path)
    info = loaded.info
    graphs, names, notes, features = read_predict_inputs(inputs, info)
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    signature = loaded.signatures["serving_default"]
    kind, target_names = info["kind"], info["target_names"]
    class_names = info.get("class_names")
    lines = []
    for start in range(0, len(graphs), PREDICT_BATCH):
        batch = molecules.union(graphs[start:start + PREDICT_BATCH],
                                None if features is None else features[start:start + PREDICT_BATCH])
        out = signature(**{key: tf.constant(value) for key, value in batch.items()})
        for row, name in enumerate(names[start:start + PREDICT_BATCH]):
            if kind == "regression":
                values = out["predictions"].numpy()[row]
                text = ", ".join(f"{target} = {value:.4f}" for target, value in zip(target_names, values))
            elif kind == "binary":
                values = out["probabilities"].numpy()[row]
                positive = f" = {class_names[1]}" if class_names else ""  # TU labels, e.g. MUTAG's -1 / 1
                text = ", ".join(f"P({target}{positive}) = {value:.4f}" for target, value in zip(target_names, values))
            else:
                probabilities = out["probabilities"].numpy()[row]
                label = int(out["labels"].numpy()[row])
                text = f"class {class_names[label] if class_names else label} (p = {probabilities[label]:.4f})"
            lines.append(f"{name}\t{text}")
    print("\n".join(lines))
    return loaded.path


# === Train ===


def train(config, fresh=False):
    """The whole job: data → model → fit → evaluate + baseline → export. Returns the model.

    With `--folds K` and `--fold -1`, trains every fold (no export: a K-fold run estimates the
    metric; export one fold with `--fold i`), writes `cv.json` and returns it (`runner.cross_validate`).
    """
    if config.folds > 1 and config.fold < 0:
        return runner.cross_validate(sys.modules[__name__], config, fresh=fresh)
    return runner.train(sys.modules[__name__], config, fresh=fresh)


if __name__ == "__main__":
    cli.main(sys.modules[__name__])
