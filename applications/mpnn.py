"""Graph networks on disjoint-union batches: MPNN (Gilmer et al., 2017), GIN (Xu et al., 2019), GCN.

Every model takes one batch of graphs as one disjoint graph, four tensors:

    node_features (N, F) float32   every node of every graph in the batch
    edge_features (E, Fe) float32  every directed edge
    edge_index    (E, 2) int32     [source, target] node ids into the N nodes
    graph_index   (N,) int32       which graph (0..B-1) each node belongs to

and returns (B, num_outputs) float32: one row per graph. With `graph_feature_stats`, a model also
takes `graph_features` (B, D) float32, graph-level features such as molecular descriptors,
standardized inside the model and concatenated to the learned readout (Chemprop's hybrid). Message passing gathers the sources'
states with `ops.take` and sums messages into their targets with `ops.segment_sum`; readouts sum
(or attend) over each graph's nodes with the same segment ops. No padding, no adjacency matrix.

References:
- [Neural Message Passing for Quantum Chemistry](https://arxiv.org/abs/1704.01212) (MPNN: edge
  network messages, GRU update, set2set readout)
- [Order Matters: Sequence to sequence for sets](https://arxiv.org/abs/1511.06391) (set2set)
- [How Powerful are Graph Neural Networks?](https://arxiv.org/abs/1810.00826) (GIN)
- [Strategies for Pre-training Graph Neural Networks](https://arxiv.org/abs/1905.12265) (GINE:
  edge features added to the neighbours' states)
- [Semi-Supervised Classification with Graph Convolutional Networks](https://arxiv.org/abs/1609.02907) (GCN)
"""

import keras
from keras import layers
from keras import ops

from applications.registry import register

PACKAGE = "applications.mpnn"
INPUT_NAMES = ("node_features", "edge_features", "edge_index", "graph_index")


def num_graphs(graph_index):
    """B, the number of graphs of a batch: the largest graph id + 1."""
    return ops.max(graph_index) + 1


def segment_softmax(scores, segment_ids, num_segments):
    """Softmax of `scores` (N,) within each segment (numerically stable)."""
    largest = ops.segment_max(scores, segment_ids, num_segments=num_segments)  # (B,)
    exponent = ops.exp(scores - ops.take(largest, segment_ids, axis=0))
    total = ops.segment_sum(exponent, segment_ids, num_segments=num_segments)  # (B,)
    return exponent / ops.take(total, segment_ids, axis=0)


# === Layers ===


@keras.saving.register_keras_serializable(package=PACKAGE)
class EdgeNetwork(layers.Layer):
    """MPNN messages: m_v = Σ_{u→v} A(e_uv) h_u, with A(e) = a (units × units) matrix from the edge.

    Args:
        units: int. The width of the node states.
        **kwargs: Passed to `keras.layers.Layer`.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        # === Layers ===
        self.matrices = layers.Dense(units * units, name="matrices")

    def build(self, input_shape):
        _, edge_shape, _ = input_shape
        self.matrices.build(edge_shape)
        self.bias = self.add_weight(shape=(self.units,), initializer="zeros", name="bias")

    def call(self, inputs):
        states, edge_features, edge_index = inputs  # (N, D), (E, Fe), (E, 2)
        matrices = ops.reshape(self.matrices(edge_features), (-1, self.units, self.units))  # (E, D, D)
        sources = ops.take(states, edge_index[:, 0], axis=0)  # (E, D)
        messages = ops.einsum("eij,ej->ei", matrices, sources) + self.bias  # (E, D)
        return ops.segment_sum(messages, edge_index[:, 1], num_segments=ops.shape(states)[0])  # (N, D)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package=PACKAGE)
class GRUUpdate(layers.Layer):
    """The MPNN vertex update h_v ← GRU(m_v, h_v), one GRU cell shared by all nodes.

    Args:
        units: int. The width of the node states.
        **kwargs: Passed to `keras.layers.Layer`.
    """

    def __init__(self, units, **kwargs):
        super().__init__(**kwargs)
        self.units = units
        # === Layers ===
        self.cell = layers.GRUCell(units, name="cell")

    def build(self, input_shape):
        messages_shape, _ = input_shape
        self.cell.build(messages_shape)

    def call(self, inputs, training=None):
        messages, states = inputs  # (N, D) each
        output, _ = self.cell(messages, [states], training=training)
        return output

    def get_config(self):
        return {**super().get_config(), "units": self.units}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Set2Set(layers.Layer):
    """set2set readout: `steps` rounds of LSTM-driven attention over each graph's nodes.

    Args:
        steps: int. Processing steps. Defaults to 3.
        **kwargs: Passed to `keras.layers.Layer`.

    Returns (B, 2 * D): the query and the attention-weighted sum of node states.
    """

    def __init__(self, steps=3, **kwargs):
        super().__init__(**kwargs)
        self.steps = steps

    def build(self, input_shape):
        states_shape, _ = input_shape
        self.units = int(states_shape[-1])
        self.cell = layers.LSTMCell(self.units, name="cell")
        self.cell.build((None, 2 * self.units))

    def call(self, inputs, training=None):
        states, graph_index = inputs  # (N, D), (N,)
        count = num_graphs(graph_index)
        query_star = ops.zeros((count, 2 * self.units), dtype=states.dtype)  # (B, 2D)
        memory = [ops.zeros((count, self.units), dtype=states.dtype)] * 2
        for _ in range(self.steps):
            query, memory = self.cell(query_star, memory, training=training)  # (B, D)
            scores = ops.sum(states * ops.take(query, graph_index, axis=0), axis=-1)  # (N,)
            attention = segment_softmax(scores, graph_index, count)
            read = ops.segment_sum(attention[:, None] * states, graph_index, num_segments=count)  # (B, D)
            query_star = ops.concatenate([query, read], axis=-1)
        return query_star

    def compute_output_shape(self, input_shape):
        return (None, 2 * int(input_shape[0][-1]))

    def get_config(self):
        return {**super().get_config(), "steps": self.steps}


@keras.saving.register_keras_serializable(package=PACKAGE)
class GraphPooling(layers.Layer):
    """Sum, mean or max of node states per graph: (N, D) → (B, D).

    Args:
        mode: str. "sum", "mean" or "max". Defaults to "sum".
        **kwargs: Passed to `keras.layers.Layer`.
    """

    def __init__(self, mode="sum", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("sum", "mean", "max"):
            raise ValueError(f"mode must be sum, mean or max. Received: mode={mode}")
        self.mode = mode

    def call(self, inputs):
        states, graph_index = inputs
        count = num_graphs(graph_index)
        if self.mode == "max":
            return ops.segment_max(states, graph_index, num_segments=count)
        total = ops.segment_sum(states, graph_index, num_segments=count)
        if self.mode == "sum":
            return total
        sizes = ops.segment_sum(ops.ones_like(states[:, :1]), graph_index, num_segments=count)
        return total / ops.maximum(sizes, 1.0)

    def compute_output_shape(self, input_shape):
        return (None, input_shape[0][-1])

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


@keras.saving.register_keras_serializable(package=PACKAGE)
class GINAggregate(layers.Layer):
    """GIN's neighbourhood sum before its MLP: (1 + ε) h_v + Σ_{u→v} ReLU(h_u + W e_uv).

    Args:
        use_edge_features: bool. Add a projection of the edge features to each message (GINE);
            False gives the original GIN sum of neighbour states. Defaults to True.
        learn_epsilon: bool. A trainable ε (GIN-ε); False keeps ε = 0 (GIN-0). Defaults to False.
        **kwargs: Passed to `keras.layers.Layer`.
    """

    def __init__(self, use_edge_features=True, learn_epsilon=False, **kwargs):
        super().__init__(**kwargs)
        self.use_edge_features = use_edge_features
        self.learn_epsilon = learn_epsilon

    def build(self, input_shape):
        states_shape, edge_shape, _ = input_shape
        if self.use_edge_features:
            self.edge_projection = layers.Dense(int(states_shape[-1]), name="edge_projection")
            self.edge_projection.build(edge_shape)
        self.epsilon = self.add_weight(shape=(), initializer="zeros", trainable=self.learn_epsilon, name="epsilon")

    def call(self, inputs):
        states, edge_features, edge_index = inputs  # (N, D), (E, Fe), (E, 2)
        messages = ops.take(states, edge_index[:, 0], axis=0)  # (E, D)
        if self.use_edge_features:
            messages = ops.relu(messages + self.edge_projection(edge_features))
        total = ops.segment_sum(messages, edge_index[:, 1], num_segments=ops.shape(states)[0])  # (N, D)
        return (1.0 + self.epsilon) * states + total

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "use_edge_features": self.use_edge_features,
                "learn_epsilon": self.learn_epsilon}


@keras.saving.register_keras_serializable(package=PACKAGE)
class GCNAggregate(layers.Layer):
    """GCN propagation Â h with Â = D^-1/2 (A + I) D^-1/2 over the batch's edges (edge features unused).

    Args:
        **kwargs: Passed to `keras.layers.Layer`.
    """

    def call(self, inputs):
        states, edge_index = inputs  # (N, D), (E, 2)
        count = ops.shape(states)[0]
        degree = 1.0 + ops.segment_sum(ops.ones_like(edge_index[:, 1], dtype=states.dtype), edge_index[:, 1],
                                       num_segments=count)  # (N,), self loop included
        norm = ops.rsqrt(degree)
        weight = ops.take(norm, edge_index[:, 0], axis=0) * ops.take(norm, edge_index[:, 1], axis=0)  # (E,)
        messages = weight[:, None] * ops.take(states, edge_index[:, 0], axis=0)
        total = ops.segment_sum(messages, edge_index[:, 1], num_segments=count)
        return total + states / degree[:, None]

    def compute_output_shape(self, input_shape):
        return input_shape[0]


@keras.saving.register_keras_serializable(package=PACKAGE)
class Affine(layers.Layer):
    """y = x * scale + offset with fixed per-output constants: regression heads predict in target
    units while the network learns standardized values.

    Args:
        scale: list of float. One per output.
        offset: list of float. One per output.
        clip: float or None. Clip the result to [-clip, clip]. Defaults to None.
        **kwargs: Passed to `keras.layers.Layer`.
    """

    def __init__(self, scale, offset, clip=None, **kwargs):
        super().__init__(**kwargs)
        self.scale = [float(value) for value in scale]
        self.offset = [float(value) for value in offset]
        self.clip = None if clip is None else float(clip)

    def call(self, inputs):
        outputs = inputs * ops.convert_to_tensor(self.scale, inputs.dtype) + ops.convert_to_tensor(self.offset, inputs.dtype)
        return outputs if self.clip is None else ops.clip(outputs, -self.clip, self.clip)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "offset": self.offset, "clip": self.clip}


# === Builders ===


# Standardized graph-level features are clipped to this many standard deviations.
GRAPH_FEATURE_CLIP = 5.0


def graph_inputs(num_node_features, num_edge_features, graph_feature_stats=None):
    """The `keras.Input`s of a disjoint-union batch, named as the export signature: the four
    graph tensors, then `graph_features` when `graph_feature_stats` is given."""
    inputs = [
        keras.Input((num_node_features,), name="node_features"),
        keras.Input((num_edge_features,), name="edge_features"),
        keras.Input((2,), dtype="int32", name="edge_index"),
        keras.Input((), dtype="int32", name="graph_index"),
    ]
    if graph_feature_stats is not None:
        inputs.append(keras.Input((len(graph_feature_stats[0]),), name="graph_features"))
    return inputs


def graph_feature_scaling(graph_feature_stats):
    """`(scale, offset)` lists that standardize graph features: x * scale + offset = (x - mean) / std
    (std floored at 1e-6), then clipped to ±GRAPH_FEATURE_CLIP (the model's layer and the classical
    baseline both use this)."""
    mean, std = (list(map(float, values)) for values in graph_feature_stats)
    scale = [1.0 / max(value, 1e-6) for value in std]
    return scale, [-m * factor for m, factor in zip(mean, scale)]


def with_graph_features(pooled, inputs, graph_feature_stats):
    """The readout (B, H), with the standardized, clipped `graph_features` input concatenated when present."""
    if graph_feature_stats is None:
        return pooled
    scale, offset = graph_feature_scaling(graph_feature_stats)
    scaled = Affine(scale, offset, clip=GRAPH_FEATURE_CLIP, name="graph_feature_scaling")(inputs[4])
    return layers.Concatenate(name="readout_and_graph_features")([pooled, scaled])


def _check(num_outputs, units, dropout_rate, output_scale, output_offset, graph_feature_stats=None):
    if num_outputs < 1:
        raise ValueError(f"num_outputs must be >= 1. Received: num_outputs={num_outputs}")
    if units < 1:
        raise ValueError(f"units must be >= 1. Received: units={units}")
    if not 0.0 <= dropout_rate < 1.0:
        raise ValueError(f"dropout_rate must be in [0, 1). Received: dropout_rate={dropout_rate}")
    for name, values in (("output_scale", output_scale), ("output_offset", output_offset)):
        if values is not None and len(values) != num_outputs:
            raise ValueError(f"{name} needs one value per output ({num_outputs}). Received: {name}={values}")
    if graph_feature_stats is not None and (len(graph_feature_stats) != 2 or not len(graph_feature_stats[0])
                                            or len(graph_feature_stats[0]) != len(graph_feature_stats[1])):
        raise ValueError("graph_feature_stats must be (mean, std), two equally long non-empty lists. "
                         f"Received: graph_feature_stats={graph_feature_stats}")


def _head(x, num_outputs, units, dropout_rate, output_scale, output_offset, name):
    """Graph vectors (B, H) → Dense-ReLU → Dropout → Dense (B, num_outputs) float32 [→ Affine]."""
    x = layers.Dense(units, activation="relu", name=f"{name}_head_dense")(x)
    if dropout_rate:
        x = layers.Dropout(dropout_rate, name=f"{name}_head_dropout")(x)
    x = layers.Dense(num_outputs, dtype="float32", name="outputs")(x)
    if output_scale is not None or output_offset is not None:
        x = Affine(output_scale or [1.0] * num_outputs, output_offset or [0.0] * num_outputs,
                   dtype="float32", name="target_units")(x)
    return x


@register(kind="graph")
def mpnn(num_node_features, num_edge_features, num_outputs=1, units=64, num_steps=3, readout="set2set",
         readout_steps=3, dropout_rate=0.0, output_scale=None, output_offset=None, graph_feature_stats=None,
         name="mpnn"):
    """MPNN (Gilmer et al.): edge-network messages, a shared GRU update, a set2set readout.

    Args:
        num_node_features: int. Features per node (F).
        num_edge_features: int. Features per edge (Fe).
        num_outputs: int. Outputs per graph (targets, or class logits). Defaults to 1.
        units: int. Width of the node states. Defaults to 64.
        num_steps: int. Message-passing steps; the edge network and the GRU are shared across
            steps. Defaults to 3.
        readout: str. "set2set", or "sum" / "mean" pooling. Defaults to "set2set".
        readout_steps: int. set2set processing steps. Defaults to 3.
        dropout_rate: float. Dropout before the output layer. Defaults to 0.0.
        output_scale: list of float or None. Multiplies the outputs (target standard deviations).
        output_offset: list of float or None. Added to the outputs (target means).
        graph_feature_stats: (mean, std) lists or None. Adds a `graph_features` input (B, D),
            standardized with these (training statistics) and concatenated to the readout.
        name: str. The model name. Defaults to "mpnn".
    """
    _check(num_outputs, units, dropout_rate, output_scale, output_offset, graph_feature_stats)
    if readout not in ("set2set", "sum", "mean"):
        raise ValueError(f"readout must be set2set, sum or mean. Received: readout={readout}")
    inputs = graph_inputs(num_node_features, num_edge_features, graph_feature_stats)
    nodes, edges, edge_index, graph_index = inputs[:4]
    states = layers.Dense(units, activation="relu", name="node_embedding")(nodes)  # (N, D)
    message = EdgeNetwork(units, name="edge_network")
    update = GRUUpdate(units, name="gru_update")
    for _ in range(num_steps):  # the same two layers each step (weights tied over time)
        states = update([message([states, edges, edge_index]), states])
    if readout == "set2set":
        pooled = Set2Set(readout_steps, name="set2set")([states, graph_index])  # (B, 2D)
    else:
        pooled = GraphPooling(readout, name=f"{readout}_readout")([states, graph_index])  # (B, D)
    pooled = with_graph_features(pooled, inputs, graph_feature_stats)
    outputs = _head(pooled, num_outputs, 2 * units, dropout_rate, output_scale, output_offset, name)
    return keras.Model(inputs, outputs, name=name)


@register(kind="graph")
def gin(num_node_features, num_edge_features, num_outputs=1, units=64, num_layers=5, dropout_rate=0.5,
        use_edge_features=True, learn_epsilon=False, output_scale=None, output_offset=None, graph_feature_stats=None,
        name="gin"):
    """GIN (Xu et al.): sum aggregation, a 2-layer MLP update per layer, sum readouts of every layer.

    Args:
        num_node_features: int. Features per node (F).
        num_edge_features: int. Features per edge (Fe).
        num_outputs: int. Outputs per graph. Defaults to 1.
        units: int. Width of the node states and MLPs. Defaults to 64.
        num_layers: int. GIN layers. Defaults to 5 (the paper's, counting the input layer).
        dropout_rate: float. Dropout on the concatenated readouts. Defaults to 0.5.
        use_edge_features: bool. Add projected edge features to the messages (GINE). Defaults to True.
        learn_epsilon: bool. GIN-ε instead of GIN-0. Defaults to False.
        output_scale: list of float or None. Multiplies the outputs (target standard deviations).
        output_offset: list of float or None. Added to the outputs (target means).
        graph_feature_stats: (mean, std) lists or None. Adds a `graph_features` input (B, D),
            standardized with these (training statistics) and concatenated to the readout.
        name: str. The model name. Defaults to "gin".
    """
    _check(num_outputs, units, dropout_rate, output_scale, output_offset, graph_feature_stats)
    inputs = graph_inputs(num_node_features, num_edge_features, graph_feature_stats)
    nodes, edges, edge_index, graph_index = inputs[:4]
    states = layers.Dense(units, name="node_embedding")(nodes)  # (N, D)
    readouts = [GraphPooling("sum", name="layer0_readout")([states, graph_index])]
    for index in range(1, num_layers + 1):
        prefix = f"layer{index}"
        x = GINAggregate(use_edge_features, learn_epsilon, name=f"{prefix}_aggregate")([states, edges, edge_index])
        x = layers.Dense(units, name=f"{prefix}_dense1")(x)
        # Momentum 0.9 (PyTorch's 0.1): small graph datasets give few steps, and Keras' 0.99 leaves the
        # moving statistics far from the data's (MUTAG 3-fold: 0.72 → 0.86 accuracy).
        x = layers.BatchNormalization(momentum=0.9, name=f"{prefix}_bn1")(x)
        x = layers.ReLU(name=f"{prefix}_relu1")(x)
        x = layers.Dense(units, name=f"{prefix}_dense2")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"{prefix}_bn2")(x)
        states = layers.ReLU(name=f"{prefix}_relu2")(x)
        readouts.append(GraphPooling("sum", name=f"{prefix}_readout")([states, graph_index]))  # (B, D)
    pooled = layers.Concatenate(name="readouts")(readouts)  # (B, (L + 1) D): every depth's view
    pooled = with_graph_features(pooled, inputs, graph_feature_stats)
    outputs = _head(pooled, num_outputs, units, dropout_rate, output_scale, output_offset, name)
    return keras.Model(inputs, outputs, name=name)


@register(kind="graph")
def gcn(num_node_features, num_edge_features, num_outputs=1, units=64, num_layers=3, dropout_rate=0.0,
        output_scale=None, output_offset=None, graph_feature_stats=None, name="gcn"):
    """GCN (Kipf & Welling): symmetric-normalized propagation, mean readout. Ignores edge features.

    Args:
        num_node_features: int. Features per node (F).
        num_edge_features: int. Features per edge (Fe); accepted for the common signature, unused.
        num_outputs: int. Outputs per graph. Defaults to 1.
        units: int. Width of the node states. Defaults to 64.
        num_layers: int. GCN layers. Defaults to 3.
        dropout_rate: float. Dropout before the output layer. Defaults to 0.0.
        output_scale: list of float or None. Multiplies the outputs (target standard deviations).
        output_offset: list of float or None. Added to the outputs (target means).
        graph_feature_stats: (mean, std) lists or None. Adds a `graph_features` input (B, D),
            standardized with these (training statistics) and concatenated to the readout.
        name: str. The model name. Defaults to "gcn".
    """
    _check(num_outputs, units, dropout_rate, output_scale, output_offset, graph_feature_stats)
    inputs = graph_inputs(num_node_features, num_edge_features, graph_feature_stats)
    nodes, _, edge_index, graph_index = inputs[:4]
    states = nodes
    for index in range(1, num_layers + 1):
        states = GCNAggregate(name=f"layer{index}_propagate")([states, edge_index])
        states = layers.Dense(units, activation="relu", name=f"layer{index}_dense")(states)
    pooled = GraphPooling("mean", name="mean_readout")([states, graph_index])
    pooled = with_graph_features(pooled, inputs, graph_feature_stats)
    outputs = _head(pooled, num_outputs, units, dropout_rate, output_scale, output_offset, name)
    return keras.Model(inputs, outputs, name=name)


@keras.saving.register_keras_serializable(package=PACKAGE)
class Columns(layers.Layer):
    """The columns `start:stop` of a (B, D) tensor (`stop` None: to the end).

    Args:
        start: int. The first column.
        stop: int or None. One past the last column. Defaults to None.
        **kwargs: Passed to `keras.layers.Layer`.
    """

    def __init__(self, start, stop=None, **kwargs):
        super().__init__(**kwargs)
        self.start = int(start)
        self.stop = None if stop is None else int(stop)

    def call(self, inputs):
        return inputs[:, self.start:self.stop]

    def compute_output_shape(self, input_shape):
        width = input_shape[-1]
        if width is not None:
            width = len(range(width)[self.start:self.stop])
        return (input_shape[0], width)

    def get_config(self):
        return {**super().get_config(), "start": self.start, "stop": self.stop}


@keras.saving.register_keras_serializable(package=PACKAGE)
class ResidualBlend(layers.Layer):
    """y = base + blend * network ("residual") or (1 - blend) * base + blend * network ("convex"),
    with `blend` a fixed scalar weight (not trained): set it after training (e.g. on a validation
    split); 0 gives `base` exactly, and "convex" with 1 the network alone.

    Args:
        blend: float. The initial weight of the network. Defaults to 1.0.
        mode: str. "residual" or "convex". Defaults to "residual".
        **kwargs: Passed to `keras.layers.Layer`.
    """

    def __init__(self, blend=1.0, mode="residual", **kwargs):
        super().__init__(**kwargs)
        if mode not in ("residual", "convex"):
            raise ValueError(f"mode must be residual or convex. Received: mode={mode}")
        self.blend = float(blend)
        self.mode = mode

    def build(self, input_shape):
        self.weight = self.add_weight(shape=(), initializer=keras.initializers.Constant(self.blend),
                                      trainable=False, name="blend")

    def call(self, inputs):
        base, network = inputs  # (B, T) each
        weight = ops.cast(self.weight, network.dtype)
        if self.mode == "convex":
            return (1.0 - weight) * base + weight * network
        return base + weight * network

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "blend": self.blend, "mode": self.mode}


def residual_hybrid(network, kernel, bias, graph_feature_stats=None, blend=1.0, mode="residual", name="hybrid"):
    """A fixed linear model over graph-level features, blended with `network`'s output: added as a
    learned residual, or mixed convexly (`ResidualBlend`).

    The model takes the four graph tensors and `graph_features` (B, D + P): D descriptors (the
    `graph_feature_stats` columns, which `network` also reads when it was built with them), then
    P fixed features such as fingerprint bits. The linear head reads [P features, the D descriptors
    standardized and clipped as `with_graph_features` does] — the layout of a classical baseline —
    with frozen weights, so with `blend` 0 the model is that baseline exactly.

    Args:
        network: keras.Model. A graph network of this module (outputs (B, T), e.g. in target units).
        kernel: array-like (P + D, T). The linear model's weights (e.g. a fitted ridge's coefficients).
        bias: array-like (T,). Its intercepts.
        graph_feature_stats: (mean, std) lists or None. The descriptors' training statistics (D = 0: None).
        blend: float. The network's weight (`ResidualBlend`). Defaults to 1.0.
        mode: str. "residual" or "convex" (`ResidualBlend`). Defaults to "residual".
        name: str. The model name. Defaults to "hybrid".
    """
    kernel = ops.convert_to_numpy(kernel).astype("float32")
    num_descriptors = len(graph_feature_stats[0]) if graph_feature_stats is not None else 0
    num_node_features, num_edge_features = int(network.inputs[0].shape[-1]), int(network.inputs[1].shape[-1])
    inputs = graph_inputs(num_node_features, num_edge_features)
    inputs.append(keras.Input((int(kernel.shape[0]),), name="graph_features"))
    fixed = Columns(num_descriptors, name="fixed_features")(inputs[4])  # (B, P)
    head_inputs = fixed
    network_inputs = inputs[:4]
    if num_descriptors:
        descriptors = Columns(0, num_descriptors, name="descriptors")(inputs[4])  # (B, D)
        scale, offset = graph_feature_scaling(graph_feature_stats)
        scaled = Affine(scale, offset, clip=GRAPH_FEATURE_CLIP, name="linear_descriptor_scaling")(descriptors)
        head_inputs = layers.Concatenate(name="linear_features")([fixed, scaled])  # (B, P + D)
        if len(network.inputs) == 5:
            network_inputs = network_inputs + [descriptors]
    head = layers.Dense(kernel.shape[1], trainable=False, dtype="float32", name="linear_head")
    base = head(head_inputs)  # (B, T)
    head.set_weights([kernel, ops.convert_to_numpy(bias).astype("float32").reshape(-1)])
    residual = network(network_inputs)  # (B, T)
    outputs = ResidualBlend(blend, mode, dtype="float32", name="blend")([base, residual])
    return keras.Model(inputs, outputs, name=name)


def supports(model):
    """Whether `model` takes the four graph inputs of this module (and optionally `graph_features`)."""
    names = [tensor.name for tensor in model.inputs]
    return names in (list(INPUT_NAMES), list(INPUT_NAMES) + ["graph_features"])
