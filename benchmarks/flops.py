"""Forward FLOPs of a Keras model, counted analytically from its layers (1 multiply-add = 2 FLOPs).

Usage:
    from benchmarks import flops

    flops.forward_flops(model)         # per example: 81.4e6 for resnet20 at 32x32x3
    3 * flops.forward_flops(model)     # the usual estimate of a training step (forward + 2x backward)

Counted: convolutions (plain, depthwise, separable, transposed; 1D-3D) and Dense, the layers that
hold nearly all the arithmetic of a CNN. Ignored: biases, batch norm, activations, pooling, adds,
normalization. Nested models are walked, and a layer (or model) called at several places of the
graph is counted once per call.
"""

import math

import keras

CONVOLUTIONS = (keras.layers.Conv1D, keras.layers.Conv2D, keras.layers.Conv3D)
DEPTHWISE = (keras.layers.DepthwiseConv1D, keras.layers.DepthwiseConv2D)
SEPARABLE = (keras.layers.SeparableConv1D, keras.layers.SeparableConv2D)
TRANSPOSED = (keras.layers.Conv1DTranspose, keras.layers.Conv2DTranspose, keras.layers.Conv3DTranspose)


def forward_flops(model):
    """FLOPs of one example's forward pass through `model` (a built functional or Sequential model).

    Args:
        model: keras.Model. Its layers must have been called on symbolic inputs (any functional
            model, or a Sequential model with an `Input`).

    Returns:
        An int: 2 x the multiply-adds of its convolutions and Dense layers, batch dimension excluded.
    """
    total = 0
    for layer in model.layers:
        calls = _calls(layer)
        if isinstance(layer, keras.Model):
            total += len(calls) * forward_flops(layer)
            continue
        for input_shape, output_shape in calls:
            total += layer_flops(layer, input_shape, output_shape)
    return total


def layer_flops(layer, input_shape, output_shape):
    """FLOPs of one call of `layer`, from its (batched) input and output shapes; 0 if not counted."""
    channels_last = getattr(layer, "data_format", "channels_last") == "channels_last"
    if isinstance(layer, (*CONVOLUTIONS, *DEPTHWISE, *SEPARABLE, *TRANSPOSED)):
        # (B, *spatial, C) for channels_last, (B, C, *spatial) otherwise.
        in_channels = input_shape[-1] if channels_last else input_shape[1]
        out_spatial = output_shape[1:-1] if channels_last else output_shape[2:]
        in_spatial = input_shape[1:-1] if channels_last else input_shape[2:]
        window = math.prod(layer.kernel_size)
        positions = math.prod(out_spatial)
    if isinstance(layer, CONVOLUTIONS):
        return 2 * positions * window * (in_channels // layer.groups) * layer.filters
    if isinstance(layer, DEPTHWISE):
        return 2 * positions * window * in_channels * layer.depth_multiplier
    if isinstance(layer, SEPARABLE):
        middle = in_channels * layer.depth_multiplier
        return 2 * positions * (window * middle + middle * layer.filters)
    if isinstance(layer, TRANSPOSED):
        # Every input position scatters a (window x C_in x C_out) product into the output.
        return 2 * math.prod(in_spatial) * window * in_channels * layer.filters
    if isinstance(layer, keras.layers.Dense):
        # (B, ..., D_in) -> (B, ..., units): one matrix product per leading position.
        return 2 * math.prod(input_shape[1:-1]) * input_shape[-1] * layer.units
    return 0


def _calls(layer):
    """(input_shape, output_shape) of each call of `layer` in the graphs it was called in."""
    # Keras 3 keeps one Node per call; `layer.input` / `layer.output` only answer for one call.
    calls = []
    for node in getattr(layer, "_inbound_nodes", []):
        if node.input_tensors and node.output_tensors:
            calls.append((tuple(node.input_tensors[0].shape), tuple(node.output_tensors[0].shape)))
    return calls
