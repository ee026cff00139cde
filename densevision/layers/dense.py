"""Dense blocks, transitions down and up: the parts of the FC-DenseNet ("Tiramisu", Jégou et al. 2017).

Functional helpers that wire built-in Keras layers (BatchNormalization, Conv2D, Dropout, MaxPooling2D,
Conv2DTranspose, Concatenate), so models built from them save and load without custom layers.

Facts from the paper: a *layer* is BN -> ReLU -> 3x3 conv with ``growth_rate`` filters -> dropout 0.2; each
layer sees the concatenation of the block input and all earlier layers' outputs; a *transition down* is
BN -> ReLU -> 1x1 conv keeping the channel count -> dropout -> 2x2 max pool; a *transition up* is a 3x3
transposed convolution with stride 2 applied only to the new feature maps of the block below, then
concatenated with the skip connection of the same resolution.

:class:`MemoryEfficientModel` runs the same graph with Pleiss et al.'s memory-efficient dense layers
("Memory-Efficient Implementation of DenseNets", 2017): in training, the concatenation, batch norm and ReLU in
front of each convolution are recomputed in the backward pass instead of kept.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops, tree
from keras.src.models.functional import Functional  # no public name: the class Keras builds Model(inputs, outputs) as

from densevision.layers.padding import CropLike

#: Keras ``momentum`` is the weight of the *old* running average. The reference FC-DenseNet (Lasagne,
#: ``alpha=0.1`` on the new batch) and PyTorch (``momentum=0.1``) both correspond to Keras 0.9; Keras' own
#: default 0.99 averages over ~10x more steps and left inference-mode statistics badly stale in short
#: trainings here (see FACTS.md, "Batch-norm statistics").
DEFAULT_BN_MOMENTUM = 0.9
#: Lasagne's BatchNormLayer epsilon, used by the reference code.
DEFAULT_BN_EPSILON = 1e-4


def concat(tensors: list, name: str):
    """Channel concatenation that also accepts a single tensor (returned unchanged)."""
    if len(tensors) == 1:
        return tensors[0]
    return keras.layers.Concatenate(axis=-1, name=name)(tensors)


def bn_relu_conv(
    x,
    filters: int,
    kernel_size: int,
    *,
    dropout: float,
    bn_momentum: float = DEFAULT_BN_MOMENTUM,
    bn_epsilon: float = DEFAULT_BN_EPSILON,
    bn_synchronized: bool = False,
    dilation_rate: int = 1,
    name: str,
):
    """BN -> ReLU -> conv (``kernel_size``, 'same', with bias) -> dropout: ``(B, H, W, C) -> (B, H, W, filters)``."""
    # synchronized: batch statistics over all replicas (the global batch), for small per-GPU batches
    x = keras.layers.BatchNormalization(
        momentum=bn_momentum, epsilon=bn_epsilon, synchronized=bn_synchronized, name=f"{name}_bn"
    )(x)
    x = keras.layers.Activation("relu", name=f"{name}_relu")(x)
    x = keras.layers.Conv2D(
        filters,
        kernel_size,
        padding="same",
        dilation_rate=dilation_rate,
        kernel_initializer="he_uniform",
        name=f"{name}_conv",
    )(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name=f"{name}_drop")(x)
    return x


def dense_block(
    x,
    num_layers: int,
    growth_rate: int,
    *,
    dropout: float,
    bn_momentum: float = DEFAULT_BN_MOMENTUM,
    bn_epsilon: float = DEFAULT_BN_EPSILON,
    bn_synchronized: bool = False,
    name: str,
):
    """A dense block of ``num_layers`` BN-ReLU-3x3 conv layers, each fed with everything before it.

    Args:
        x: ``(B, H, W, m)`` block input.
        num_layers: number of layers (each adds ``growth_rate`` maps).

    Returns:
        ``(stack, new_maps)``: ``stack`` ``(B, H, W, m + num_layers * growth_rate)`` is the input concatenated
        with every layer's output (what the down path passes on); ``new_maps`` ``(B, H, W, num_layers *
        growth_rate)`` holds only the layers' outputs (what the bottleneck and the up path pass on).
    """
    if num_layers < 1 or growth_rate < 1:
        raise ValueError(f"dense block {name!r}: num_layers and growth_rate must be >= 1, got {num_layers}, {growth_rate}")
    stack = x
    new_maps = []
    for index in range(num_layers):
        layer_name = f"{name}_layer{index + 1}"
        out = bn_relu_conv(
            stack, growth_rate, 3, dropout=dropout, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon,
            bn_synchronized=bn_synchronized, name=layer_name,
        )
        new_maps.append(out)
        stack = keras.layers.Concatenate(axis=-1, name=f"{layer_name}_concat")([stack, out])
    return stack, concat(new_maps, name=f"{name}_new_maps")


def transition_down(
    x,
    *,
    dropout: float,
    bn_momentum: float = DEFAULT_BN_MOMENTUM,
    bn_epsilon: float = DEFAULT_BN_EPSILON,
    bn_synchronized: bool = False,
    name: str,
):
    """BN -> ReLU -> 1x1 conv (same channels) -> dropout -> 2x2 max pool: ``(B, H, W, m) -> (B, H/2, W/2, m)``."""
    channels = x.shape[-1]
    x = bn_relu_conv(x, channels, 1, dropout=dropout, bn_momentum=bn_momentum, bn_epsilon=bn_epsilon,
                     bn_synchronized=bn_synchronized, name=name)
    return keras.layers.MaxPooling2D(pool_size=2, strides=2, name=f"{name}_pool")(x)


def transition_up(new_maps, skip, filters: int, *, stride: int = 2, name: str):
    """3x3 transposed conv of the block's new maps, cropped to and concatenated with the skip connection.

    Args:
        new_maps: ``(B, h, w, n)`` new feature maps of the block below (not its input).
        skip: ``(B, H, W, s)`` skip connection, ``H <= stride * h``.
        filters: transposed-conv filters (FC-DenseNet: the number of maps in ``new_maps``).
        stride: 2 to double the resolution; 1 where both are at the same resolution (dilated backbones).

    Returns:
        ``(B, H, W, filters + s)``: ``[upsampled, skip]`` concatenated.
    """
    up = keras.layers.Conv2DTranspose(
        filters, 3, strides=stride, padding="same", kernel_initializer="he_uniform", name=f"{name}_deconv"
    )(new_maps)
    # With inputs padded to the network stride the sizes already agree; cropping keeps odd sizes working.
    up = CropLike(name=f"{name}_crop")([up, skip])
    return keras.layers.Concatenate(axis=-1, name=f"{name}_concat")([up, skip])


# ------------------------------------------------------------------------------ memory-efficient execution


class _Pieces:
    """A channel concatenation not yet made: its parts ``(B, H, W, c_i)``, concatenated only where needed.

    Deliberately no sequence type, so ``tree`` treats it as one value while the graph runs.
    """

    def __init__(self, parts):
        self.parts = tuple(parts)
        self._joined = None

    def join(self):
        """The concatenation ``(B, H, W, sum c_i)``, made once."""
        if self._joined is None:
            self._joined = self.parts[0] if len(self.parts) == 1 else ops.concatenate(list(self.parts), axis=-1)
        return self._joined


def _parts(value) -> tuple:
    return value.parts if isinstance(value, _Pieces) else (value,)


def _join_all(structure):
    return tree.map_structure(lambda v: v.join() if isinstance(v, _Pieces) else v, structure)


def _batch_norm_without_update(bn: keras.layers.BatchNormalization, x):
    """``bn(x, training=True)`` without touching the moving statistics: the same operations as Keras 3.15's
    ``BatchNormalization.call`` (no mask, no renorm), for the recomputation in the backward pass."""
    x = ops.cast(x, keras.backend.result_type(x.dtype, "float32"))
    mean, variance = bn._moments(x, None)  # the layer's own reduction (synchronized across replicas if asked)
    gamma = ops.cast(bn.gamma, x.dtype) if bn.scale else None
    beta = ops.cast(bn.beta, x.dtype) if bn.center else None
    out = ops.batch_normalization(x, mean, variance, axis=bn.axis, offset=beta, scale=gamma, epsilon=bn.epsilon)
    return ops.cast(out, bn.compute_dtype)


def recomputed_bn_relu_conv(bn, relu, conv, parts):
    """``conv(relu(bn(concat(parts))))`` in training mode, keeping only ``parts`` and the result for the backward pass.

    The forward pass calls the layers themselves (the batch-norm moving statistics are updated there, once); the
    backward pass recomputes the concatenation, batch norm (batch statistics, no update) and ReLU and
    differentiates through them, so the gradients are those of the plain graph.

    Args:
        bn, relu, conv: a trainable ``BatchNormalization``, an ``Activation("relu")`` and a ``Conv2D``.
        parts: tensors ``(B, H, W, c_i)`` whose channel concatenation feeds ``bn``.

    Returns:
        ``(B, H, W, conv.filters)``.
    """
    calls = []

    def run(*inputs):
        # tf.recompute_grad runs this first for the forward pass, then again inside the gradient: only the
        # first run may update the moving statistics (they must move once per training step)
        first = not calls
        calls.append(True)
        x = inputs[0] if len(inputs) == 1 else ops.concatenate(list(inputs), axis=-1)
        x = bn(x, training=True) if first else _batch_norm_without_update(bn, x)
        return conv(relu(x))

    # tf.recompute_grad keeps the forward pass off the tape and makes the recomputation wait for the incoming
    # gradient, so nothing inside the segment stays alive between the forward and the backward pass
    return tf.recompute_grad(run)(*parts)


def _is_relu(layer) -> bool:
    return isinstance(layer, keras.layers.Activation) and layer.get_config()["activation"] == "relu"


def _is_channel_concat(layer) -> bool:
    return isinstance(layer, keras.layers.Concatenate) and layer.axis == -1


@keras.saving.register_keras_serializable(package="densevision")
class MemoryEfficientModel(Functional):
    """A functional model whose BN -> ReLU -> conv layers are recomputed in the backward pass when training.

    Built like ``keras.Model(inputs, outputs)``, from the same layers, so weights, layer names and checkpoints
    are those of the plain model (``model.set_weights`` / ``load_weights`` work either way). In training,
    channel concatenations (``Concatenate(axis=-1)``) are not made until something other than such a segment
    needs them, and every ``BatchNormalization`` -> ``Activation("relu")`` -> ``Conv2D`` chain (each output used
    once) runs through :func:`recomputed_bn_relu_conv`: only the concatenated parts and the convolution's output
    stay in memory, so a dense block keeps ``O(L)`` instead of ``O(L^2)`` maps. Inference runs the plain graph.
    Dropout after the convolution stays outside the recomputed segment (its mask is drawn once).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._segments = None

    def _find_segments(self) -> dict:
        """``{id(bn node): (relu node, conv node)}`` for each BN -> ReLU -> conv chain of single-use outputs.

        Nodes, not layers: layers stored in a model attribute would be tracked as extra sublayers.
        """
        nodes = [node for depth_nodes in self._nodes_by_depth.values() for node in depth_nodes]
        consumers = {}
        for node in nodes:
            for tensor in node.input_tensors:
                consumers.setdefault(id(tensor), []).append(node)

        def only_consumer(node):
            if len(node.outputs) != 1:
                return None
            users = consumers.get(id(node.outputs[0]), [])
            return users[0] if len(users) == 1 and len(users[0].input_tensors) == 1 else None

        output_ids = {id(tensor) for tensor in self.outputs}  # by identity: == on KerasTensors is an op
        segments = {}
        for node in nodes:
            bn = node.operation
            if not (isinstance(bn, keras.layers.BatchNormalization) and bn.axis in (-1, len(node.outputs[0].shape) - 1)
                    and not bn.renorm and node.arguments.kwargs.get("mask") is None):
                continue
            relu_node = only_consumer(node)
            conv_node = relu_node and only_consumer(relu_node)
            if conv_node is None or {id(node.outputs[0]), id(relu_node.outputs[0])} & output_ids:
                continue
            if _is_relu(relu_node.operation) and isinstance(conv_node.operation, keras.layers.Conv2D):
                segments[id(node)] = (relu_node, conv_node)
        return segments

    def call(self, inputs, training=None, mask=None, **kwargs):
        if not training or mask is not None:
            return super().call(inputs, training=training, mask=mask, **kwargs)
        if self._segments is None:
            self._segments = self._find_segments()
        values = dict(zip((id(x) for x in self.inputs), tree.flatten(self._standardize_inputs(inputs))))
        # the loop of keras' Function._run_through_graph, with concatenations deferred and segments recomputed
        for depth in sorted(self._nodes_by_depth, reverse=True):
            for node in self._nodes_by_depth[depth]:
                if not node.operation or node.is_input:
                    continue
                if any(id(x) not in values for x in node.input_tensors):
                    continue  # inside a recomputed segment (or unreachable): produced elsewhere
                args, call_kwargs = node.arguments.fill_in(values)
                layer = node.operation
                segment = self._segments.get(id(node)) if layer.trainable else None
                if segment is not None:
                    relu_node, conv_node = segment
                    values[id(conv_node.outputs[0])] = recomputed_bn_relu_conv(
                        layer, relu_node.operation, conv_node.operation, _parts(args[0]))
                    continue
                if _is_channel_concat(layer) and not call_kwargs:
                    values[id(node.outputs[0])] = _Pieces(part for value in args[0] for part in _parts(value))
                    continue
                if "training" in getattr(layer, "_call_context_args", {}):
                    call_kwargs["training"] = training
                outputs = layer(*_join_all(args), **_join_all(call_kwargs))
                for x, y in zip(node.outputs, tree.flatten(outputs)):
                    values[id(x)] = y
        outputs = [_join_all(values[id(x)]) for x in self.outputs]
        return tree.pack_sequence_as(self._outputs_struct, outputs)
