"""Fully convolutional classifiers: ``Flatten``/global-pooling + ``Dense`` heads rewritten as convolutions.

A classifier trained on ``S x S`` crops answers one question per image. Rewritten so its dense layers slide,
it answers the same question for every ``S x S`` window of a larger image in one pass, sharing the trunk's work
between overlapping windows (CS231n: VGG16 on a 384x384 image gives a 6x6 map of 224x224-window scores at
stride 32). The rewrite is exact: every cell is the original head applied to the corresponding window of the
trunk's feature map. It equals the original model on the image crop itself when the trunk has no zero padding;
with ``padding="same"`` convolutions (VGG, ResNet) the features near a crop's border differ from the features
of the same pixels inside the larger image, so crops and windows differ there (measured in docs/sliding.md).

Rewriting rules (the graph is replayed layer by layer, nested sub-models included, on an input of shape
``(None, None, C)``; layers are copied, never shared with the original):

- ``Flatten`` of an ``(h, w, c)`` map + ``Dense`` -> :class:`WindowDense`: the Dense applied to every
  ``(h, w)`` window, stride 1 (a ``(h, w)`` valid convolution computed as patch extraction + one matmul; the
  Dense kernel is used unchanged because patches are flattened in ``Flatten``'s (row, column, channel) order).
- ``Dense`` on a per-window vector -> ``Conv2D`` 1x1 (kernel reshaped to ``(1, 1, in, out)``).
- ``GlobalAveragePooling2D`` over an ``(h, w)`` map -> an ``(h, w)`` stride-1 average, placed after the
  following linear layers (1x1 convolutions without activation, dropout, batch-norm), which commute with it.
- ``GlobalMaxPooling2D`` -> an ``(h, w)`` stride-1 max pool.
- Elementwise and channel-axis layers (activations, softmax over channels, dropout, normalisation over the last
  axis, merges of per-window vectors) are copied.

Anything else acting on the flattened or pooled vector raises :class:`ConversionError` naming the layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import keras
import tensorflow as tf

from densevision.backbones.weights import flat_layers
from densevision.errors import DensevisionError
from densevision.sizes import as_pair


class ConversionError(DensevisionError, ValueError):
    """A model (or one of its layers) that cannot be rewritten as an exactly equivalent convolution."""


# ------------------------------------------------------------------------------------------------- layers


@keras.saving.register_keras_serializable(package="densevision")
class WindowDense(keras.layers.Layer):
    """A ``Dense`` layer applied to every ``window`` of a feature map at stride 1 (valid).

    Equivalent to ``Conv2D(units, window, padding="valid")`` with the kernel reshaped to ``(h, w, C, units)``,
    but computed as patch extraction + one matmul, which on CPU is about 3x faster for VGG16's fc6 (a 7x7x512
    -> 4096 convolution: oneDNN's direct convolution is poor for such huge kernels). The kernel keeps the
    original ``Dense`` layout ``(h * w * C, units)`` in ``Flatten`` order (row, column, channel), so the
    weights of a ``Flatten -> Dense`` head load unchanged.

    Input ``(B, H, W, C)`` -> output ``(B, H - h + 1, W - w + 1, units)``.
    """

    def __init__(self, units: int, window, activation=None, use_bias: bool = True,
                 kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.units = int(units)
        self.window = as_pair(window, f"WindowDense {self.name!r}: window")
        self.activation = keras.activations.get(activation)
        self.use_bias = bool(use_bias)
        self.input_spec = keras.layers.InputSpec(ndim=4)

    def build(self, input_shape):
        channels = input_shape[-1]
        if channels is None:
            raise ValueError(f"WindowDense {self.name!r}: the channel axis must be known, got {input_shape}")
        self.input_spec = keras.layers.InputSpec(ndim=4, axes={-1: channels})
        height, width = self.window
        self.kernel = self.add_weight(
            name="kernel", shape=(height * width * channels, self.units), initializer=self.kernel_initializer
        )
        self.bias = self.add_weight(name="bias", shape=(self.units,), initializer="zeros") if self.use_bias else None

    def call(self, inputs):
        height, width = self.window
        if (height, width) == (1, 1):
            patches = inputs
        else:
            # (B, H', W', h * w * C), flattened (row, column, channel) exactly like Flatten on each window
            patches = tf.image.extract_patches(
                inputs, sizes=[1, height, width, 1], strides=[1, 1, 1, 1], rates=[1, 1, 1, 1], padding="VALID"
            )
        shape = tf.shape(patches)
        flat = tf.reshape(patches, (-1, patches.shape[-1]))
        outputs = tf.matmul(flat, tf.cast(self.kernel, flat.dtype))
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, tf.cast(self.bias, outputs.dtype))
        outputs = tf.reshape(outputs, tf.concat([shape[:3], [self.units]], axis=0))
        return self.activation(outputs)

    def compute_output_shape(self, input_shape):
        batch, rows, cols, _ = input_shape
        height, width = self.window
        rows = None if rows is None else rows - height + 1
        cols = None if cols is None else cols - width + 1
        return (batch, rows, cols, self.units)

    def get_config(self):
        config = super().get_config()
        config.update(
            units=self.units,
            window=list(self.window),
            activation=keras.activations.serialize(self.activation),
            use_bias=self.use_bias,
            kernel_initializer=keras.initializers.serialize(self.kernel_initializer),
        )
        return config


@keras.saving.register_keras_serializable(package="densevision")
class RowBandConv2D(keras.layers.Conv2D):
    """``Conv2D`` (stride 1) that convolves ``bands`` horizontal strips of each image as one batch.

    Same weights, same numbers as the ``Conv2D`` it replaces: each strip carries the rows its kernel needs
    from its neighbours (a halo of ``kernel - 1`` rows), so nothing changes but the batch shape. oneDNN's
    convolutions on CPU are markedly slower per output pixel on one large image than on a batch of small ones
    (VGG16's 48x48x512 layers: 0.16 s at batch 1 against 0.09 s as 4 strips), so splitting makes a single
    forward pass over a large image cheaper. Input ``(B, H, W, C)`` -> ``(B, H', W', filters)`` as ``Conv2D``.
    """

    def __init__(self, *args, bands: int = 2, **kwargs):
        super().__init__(*args, **kwargs)
        self.bands = int(bands)
        if self.bands < 1:
            raise ValueError(f"RowBandConv2D {self.name!r}: bands must be >= 1, got {bands}")
        if tuple(self.strides) != (1, 1) or self.data_format != "channels_last" or self.groups != 1:
            raise ValueError(
                f"RowBandConv2D {self.name!r}: needs strides (1, 1), groups 1 and channels_last, got "
                f"strides={self.strides}, groups={self.groups}, data_format={self.data_format!r}"
            )

    def call(self, inputs):
        if self.bands == 1:
            return super().call(inputs)
        kernel_rows = (self.kernel_size[0] - 1) * self.dilation_rate[0] + 1
        kernel_cols = (self.kernel_size[1] - 1) * self.dilation_rate[1] + 1
        if self.padding == "same":  # TensorFlow's SAME: the extra row/column goes at the bottom/right
            pad_top, pad_left = (kernel_rows - 1) // 2, (kernel_cols - 1) // 2
            pad_bottom, pad_right = kernel_rows - 1 - pad_top, kernel_cols - 1 - pad_left
        else:
            pad_top = pad_left = pad_bottom = pad_right = 0
        shape = tf.shape(inputs)
        batch, rows = shape[0], shape[1]
        out_rows = rows + pad_top + pad_bottom - kernel_rows + 1
        band_rows = (out_rows + self.bands - 1) // self.bands
        # pad the bottom so every strip is full; the surplus output rows are cropped below
        extra = band_rows * self.bands - out_rows
        padded = tf.pad(inputs, [[0, 0], [pad_top, pad_bottom + extra], [pad_left, pad_right], [0, 0]])
        strips = tf.stack(
            [padded[:, i * band_rows : i * band_rows + band_rows + kernel_rows - 1] for i in range(self.bands)],
            axis=1,
        )  # (B, bands, band_rows + halo, W + pad, C)
        strip_shape = tf.shape(strips)
        strips = tf.reshape(strips, tf.concat([[batch * self.bands], strip_shape[2:]], axis=0))
        outputs = tf.nn.convolution(
            strips, tf.cast(self.kernel, strips.dtype), strides=1, padding="VALID", dilations=self.dilation_rate
        )
        out_shape = tf.shape(outputs)
        outputs = tf.reshape(outputs, tf.concat([[batch, self.bands * band_rows], out_shape[2:]], axis=0))
        outputs = outputs[:, :out_rows]
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, tf.cast(self.bias, outputs.dtype))
        if self.activation is not None:
            outputs = self.activation(outputs)
        return outputs

    def get_config(self):
        config = super().get_config()
        config["bands"] = self.bands
        return config


# ------------------------------------------------------------------------------------------------ rewrite

#: layers that act elementwise or along the channel (last) axis only, so they work per window unchanged
_PER_POSITION_LAYERS = (
    keras.layers.Activation,
    keras.layers.ReLU,
    keras.layers.LeakyReLU,
    keras.layers.ELU,
    keras.layers.Dropout,
    keras.layers.GaussianDropout,
    keras.layers.GaussianNoise,
    keras.layers.AlphaDropout,
    keras.layers.Identity,
)
#: merges that are exact on per-window vectors when every input is one
_MERGE_LAYERS = (
    keras.layers.Add,
    keras.layers.Subtract,
    keras.layers.Multiply,
    keras.layers.Average,
    keras.layers.Maximum,
    keras.layers.Minimum,
    keras.layers.Concatenate,
)
#: layers that commute with a spatial average (identity at inference)
_COMMUTE_WITH_AVERAGE = (
    keras.layers.Dropout,
    keras.layers.GaussianDropout,
    keras.layers.AlphaDropout,
    keras.layers.Identity,
)

_SPATIAL, _WINDOW, _VECTOR, _POOLED = "spatial", "window", "vector", "pooled"


@dataclass
class _State:
    """What a rewritten tensor means relative to the original tensor at the same place in the graph."""

    kind: str  # _SPATIAL: same map; _WINDOW: original was Flatten of (h, w) windows; _VECTOR: one vector per
    # window position; _POOLED: original was the (h, w) global average of this map (average still to apply)
    window: tuple[int, int] = (1, 1)
    pooled_by: str = ""  # name of the global-average layer whose average is pending


def _describe(layer) -> str:
    return f"layer {layer.name!r} ({type(layer).__name__})"


def _original_input_shape(layer) -> tuple:
    try:
        return tuple(layer.input.shape)
    except (AttributeError, ValueError) as err:
        raise ConversionError(f"{_describe(layer)}: cannot read its input shape in the original model: {err}") from None


def _copy_layer(layer, new_class=None, **overrides):
    """A fresh layer with ``layer``'s config (plus ``overrides``), without weights yet."""
    config = layer.get_config()
    config.update(overrides)
    return (new_class or type(layer)).from_config(config)


class _Rewriter:
    """Replays a Keras graph on new tensors, turning the classifier head into sliding-window layers."""

    def __init__(self, conv_bands: Optional[dict] = None):
        self.states: dict[int, _State] = {}
        self.keep_alive: list = []  # tensors whose ids key self.states
        self.weight_copies: list[tuple[Any, Any]] = []  # (new layer, original layer or weights list)
        self.conv_bands = conv_bands or {}
        self.used_names: set[str] = set()
        self.averages_made: set[str] = set()

    # -- bookkeeping
    def state(self, tensor) -> _State:
        return self.states.get(id(tensor), _State(_SPATIAL))

    def mark(self, tensors, state: _State):
        for tensor in keras.tree.flatten(tensors):
            self.states[id(tensor)] = state
            self.keep_alive.append(tensor)

    def unique_name(self, name: str) -> str:
        candidate, index = name, 1
        while candidate in self.used_names:
            candidate, index = f"{name}_{index}", index + 1
        self.used_names.add(candidate)
        return candidate

    def call_copy(self, layer, new_layer, args, kwargs, weights=None):
        try:
            outputs = new_layer(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - e.g. a Reshape to fixed sizes meets (None, None) maps
            raise ConversionError(
                f"{_describe(layer)} fails on inputs of any size "
                f"{[tuple(a.shape) for a in args if hasattr(a, 'shape')]}: {str(error).splitlines()[0]}"
            ) from error
        self.weight_copies.append((new_layer, layer.get_weights() if weights is None else weights))
        return outputs

    # -- graph replay
    def run_model(self, model, inputs):
        """Replay ``model``'s graph (nested models recursively) on ``inputs``; returns the new outputs."""
        if isinstance(model, keras.Sequential):
            outputs = inputs
            for layer in model.layers:
                if isinstance(layer, keras.layers.InputLayer):
                    continue
                outputs = self.operation(layer)(outputs)
            return outputs
        if not hasattr(model, "_run_through_graph"):
            raise ConversionError(
                f"model {model.name!r} ({type(model).__name__}) is a subclassed model: its graph cannot be read; "
                "build it with the functional or Sequential API"
            )
        # Function._run_through_graph is the replay Keras itself uses in Functional.call (stable since Keras
        # 3.0); it hands us each operation with its (rewritten) inputs.
        return model._run_through_graph(inputs, operation_fn=self.operation)

    def operation(self, op):
        def call(*args, **kwargs):
            kwargs.pop("training", None)  # the converted model decides its own mode
            if isinstance(op, keras.Model):
                return self.run_model(op, args[0] if len(args) == 1 else list(args))
            if not isinstance(op, keras.layers.Layer):
                return self.plain_operation(op, args, kwargs)
            return self.layer(op, args, kwargs)

        return call

    def plain_operation(self, op, args, kwargs):
        """A stateless keras.ops node (``x + y`` in a functional graph): fine on feature maps only."""
        tensors = [t for t in keras.tree.flatten((args, kwargs)) if hasattr(t, "shape")]
        if any(self.state(t).kind != _SPATIAL for t in tensors):
            raise ConversionError(
                f"operation {getattr(op, 'name', op)!r} ({type(op).__name__}) acts on the classifier's "
                "flattened/pooled vector; only layers can be converted there"
            )
        outputs = op(*args, **kwargs)
        self.mark(outputs, _State(_SPATIAL))
        return outputs

    def layer(self, layer, args, kwargs, name=None):
        tensors = [t for t in keras.tree.flatten(args) if hasattr(t, "shape")]
        states = [self.state(t) for t in tensors]
        kinds = {s.kind for s in states}
        name = name or self.unique_name(layer.name)

        if kinds == {_SPATIAL}:
            return self.spatial_layer(layer, name, args, kwargs)

        if len(kinds) > 1:
            raise ConversionError(
                f"{_describe(layer)} mixes feature maps and classifier vectors "
                f"({', '.join(sorted(kinds))}); cannot slide it exactly"
            )
        kind = kinds.pop()
        state = states[0]

        if kind == _POOLED:
            # an inference-mode batch-norm over features is affine per channel: it commutes with averaging
            if isinstance(layer, _COMMUTE_WITH_AVERAGE) or (
                isinstance(layer, keras.layers.BatchNormalization) and layer.axis in (-1, 1)
            ):
                outputs = self.call_copy(layer, _copy_layer(layer, name=name), args, kwargs)
                self.mark(outputs, state)
                return outputs
            if isinstance(layer, keras.layers.Dense) and layer.activation in (keras.activations.linear, None):
                outputs = self.dense_as_conv(layer, name, args, kwargs, window=(1, 1))
                self.mark(outputs, state)
                return outputs
            # a nonlinear step: apply the pending average first, then treat the result as per-window vectors
            averaged = self.apply_average(tensors[0], state)
            return self.layer(layer, (averaged, *args[1:]), kwargs, name=name)

        if kind == _WINDOW:
            if isinstance(layer, keras.layers.Dense):
                outputs = self.dense_as_conv(layer, name, args, kwargs, window=state.window)
                self.mark(outputs, _State(_VECTOR))
                return outputs
            if isinstance(layer, _PER_POSITION_LAYERS):  # elementwise: order of flattening is irrelevant
                outputs = self.call_copy(layer, _copy_layer(layer, name=name), args, kwargs)
                self.mark(outputs, state)
                return outputs
            raise ConversionError(
                f"{_describe(layer)} follows a Flatten: only Dense and elementwise layers can slide exactly "
                "over the flattened window"
            )

        # kind == _VECTOR: one vector per window position, channels last
        if isinstance(layer, keras.layers.Dense):
            outputs = self.dense_as_conv(layer, name, args, kwargs, window=(1, 1))
        elif isinstance(layer, keras.layers.Softmax):
            if layer.axis not in (-1, [-1], (-1,), 1, [1], (1,)):
                raise ConversionError(f"{_describe(layer)}: softmax over axis {layer.axis}, expected the class axis")
            outputs = self.call_copy(layer, _copy_layer(layer, name=name, axis=-1), args, kwargs)
        elif isinstance(layer, _PER_POSITION_LAYERS) or isinstance(layer, _MERGE_LAYERS):
            overrides = {"axis": -1} if isinstance(layer, keras.layers.Concatenate) else {}
            if isinstance(layer, keras.layers.Concatenate) and layer.axis not in (-1, 1):
                raise ConversionError(f"{_describe(layer)}: concatenates along axis {layer.axis} of a vector")
            outputs = self.call_copy(layer, _copy_layer(layer, name=name, **overrides), args, kwargs)
        elif isinstance(layer, (keras.layers.BatchNormalization, keras.layers.LayerNormalization)):
            axis = layer.axis if isinstance(layer.axis, int) else (list(layer.axis) if len(layer.axis) == 1 else None)
            axis = axis[0] if isinstance(axis, list) else axis
            if axis not in (-1, 1):
                raise ConversionError(f"{_describe(layer)}: normalises over axis {layer.axis}, expected the features")
            outputs = self.call_copy(layer, _copy_layer(layer, name=name, axis=-1), args, kwargs)
        else:
            raise ConversionError(
                f"{_describe(layer)} acts on the classifier's vector; cannot rewrite it as an exact convolution "
                "(supported there: Dense, activations, softmax, dropout, normalisation over features, merges)"
            )
        self.mark(outputs, _State(_VECTOR))
        return outputs

    def spatial_layer(self, layer, name, args, kwargs):
        """A layer on ordinary feature maps: copied, except the ones that end the spatial part."""
        if isinstance(layer, keras.layers.Flatten):
            shape = _original_input_shape(layer)
            if len(shape) != 4 or any(v is None for v in shape[1:]):
                raise ConversionError(
                    f"{_describe(layer)} flattens a map of shape {shape}: the classifier needs a fixed input size "
                    "(build it with input_shape=(H, W, C)) so the window the Dense layers see is known"
                )
            if getattr(layer, "data_format", "channels_last") != "channels_last":
                raise ConversionError(f"{_describe(layer)}: only channels_last is supported")
            outputs = args[0]  # the map itself: the next Dense reads its windows
            self.mark(outputs, _State(_WINDOW, window=(shape[1], shape[2])))
            return outputs
        if isinstance(layer, (keras.layers.GlobalAveragePooling2D, keras.layers.GlobalMaxPooling2D)):
            shape = _original_input_shape(layer)
            if layer.data_format != "channels_last":
                raise ConversionError(f"{_describe(layer)}: only channels_last is supported")
            if any(v is None for v in shape[1:3]):
                raise ConversionError(
                    f"{_describe(layer)} pools a map of shape {shape}: the pooling window is unknown; build the "
                    "classifier with a fixed input_shape=(H, W, C)"
                )
            window = (shape[1], shape[2])
            if isinstance(layer, keras.layers.GlobalMaxPooling2D):
                pool = keras.layers.MaxPooling2D(pool_size=window, strides=1, padding="valid", name=name)
                outputs = pool(args[0])
                self.mark(outputs, _State(_SPATIAL if layer.keepdims else _VECTOR))
                return outputs
            if layer.keepdims:
                pool = keras.layers.AveragePooling2D(pool_size=window, strides=1, padding="valid", name=name)
                outputs = pool(args[0])
                self.mark(outputs, _State(_SPATIAL))
                return outputs
            outputs = args[0]
            self.mark(outputs, _State(_POOLED, window=window, pooled_by=name))
            return outputs
        if isinstance(layer, keras.layers.Conv2D) and name in self.conv_bands and self.conv_bands[name] > 1:
            new_layer = _copy_layer(layer, RowBandConv2D, name=name, bands=self.conv_bands[name])
            outputs = self.call_copy(layer, new_layer, args, kwargs)
        else:
            outputs = self.call_copy(layer, _copy_layer(layer, name=name), args, kwargs)
        self.mark(outputs, _State(_SPATIAL))
        return outputs

    def dense_as_conv(self, layer, name, args, kwargs, window):
        kernel, *bias = layer.get_weights()
        # zeros: the Dense weights overwrite them at once (random init of VGG16's fc6 alone takes seconds)
        common = dict(activation=keras.activations.serialize(layer.activation), use_bias=layer.use_bias,
                      name=name, dtype=layer.dtype_policy, kernel_initializer="zeros")
        if window == (1, 1):
            new_layer = keras.layers.Conv2D(layer.units, 1, **common)
            weights = [kernel.reshape(1, 1, *kernel.shape), *bias]
        else:
            new_layer = WindowDense(layer.units, window, **common)
            weights = [kernel, *bias]
        return self.call_copy(layer, new_layer, args, kwargs, weights=weights)

    def apply_average(self, tensor, state: _State):
        # named after the global pooling it replaces (its name was reserved when that layer was met)
        name = state.pooled_by if state.pooled_by not in self.averages_made else self.unique_name(state.pooled_by)
        self.averages_made.add(name)
        pool = keras.layers.AveragePooling2D(pool_size=state.window, strides=1, padding="valid", name=name)
        outputs = pool(tensor)
        self.mark(outputs, _State(_VECTOR))
        return outputs

    def finish(self, outputs):
        """Resolve pending averages at the model outputs; refuse a bare Flatten output."""
        finished = []
        for tensor in keras.tree.flatten(outputs):
            state = self.state(tensor)
            if state.kind == _POOLED:
                tensor = self.apply_average(tensor, state)
            elif state.kind == _WINDOW:
                raise ConversionError("the model ends in a Flatten: there is no classifier head to slide")
            finished.append(tensor)
        return keras.tree.pack_sequence_as(outputs, finished)


def default_conv_bands(model) -> dict[str, int]:
    """Row-strip counts for :class:`RowBandConv2D` that measured fastest for one large image on a 2-core CPU.

    Deep stride-1 convolutions (from the third downsampling on, >= 256 channels) run as 4 strips; earlier layers,
    whose large maps already keep oneDNN busy, stay whole. Keys are the layer names of ``model``.
    """
    bands = {}
    for layer in flat_layers(model):
        if (
            isinstance(layer, keras.layers.Conv2D)
            and type(layer) in (keras.layers.Conv2D, RowBandConv2D)
            and tuple(layer.strides) == (1, 1)
            and layer.groups == 1
            and layer.data_format == "channels_last"
            and layer.filters >= 256
            and max(layer.kernel_size) > 1
        ):
            bands[layer.name] = 4
    return bands


def to_fully_convolutional(model: keras.Model, conv_bands: Optional[dict[str, int] | str] = None) -> keras.Model:
    """Rewrite a ``Flatten``/global-pooling + ``Dense`` classifier so it slides over images of any size.

    Args:
        model: a functional or Sequential Keras classifier with a fixed input size ``(S_h, S_w, C)``
            (e.g. ``keras.applications.VGG16(include_top=True, weights=None)``, or
            :func:`densevision.models.classifier.build_classifier`); nested sub-models (a backbone inside the
            classifier) are flattened into the new graph.
        conv_bands: optional speed-up for single large images on CPU: ``{"layer name": strips}`` or ``"auto"``
            (:func:`default_conv_bands`) runs those stride-1 ``Conv2D`` layers as :class:`RowBandConv2D`
            (same weights, same numbers). ``None``: plain copies.

    Returns:
        A new ``keras.Model`` (weights copied) with input ``(B, H, W, C)`` for any ``H, W >= S`` and output
        ``(B, H', W', K)``: cell ``(i, j)`` is the original head on the window of the trunk's feature map
        at ``(i, j)``, i.e. on the ``S``-pixel window at ``(i * stride, j * stride)`` of the image
        (``stride``: the trunk's total stride, 32 for VGG16). At ``H, W = S`` the output is ``(B, 1, 1, K)``
        and equals the original model. Softmax, if the model has one, stays (over the class axis).

    Raises:
        ConversionError: naming the first layer that has no exact convolutional form.
    """
    if not isinstance(model, keras.Model):
        raise ConversionError(f"expected a keras.Model, got {type(model).__name__}")
    if not model.built or not getattr(model, "inputs", None):
        raise ConversionError(f"model {model.name!r} is not built; build it with a fixed input shape first")
    if len(model.inputs) != 1:
        raise ConversionError(f"model {model.name!r} has {len(model.inputs)} inputs; expected one image input")
    input_shape = tuple(model.inputs[0].shape)
    if len(input_shape) != 4:
        raise ConversionError(f"model {model.name!r}: expected an image input (B, H, W, C), got {input_shape}")
    if conv_bands == "auto":
        conv_bands = default_conv_bands(model)
    elif isinstance(conv_bands, str):
        raise ValueError(f"conv_bands: expected None, 'auto' or a dict of layer name -> strips, got {conv_bands!r}")

    rewriter = _Rewriter(conv_bands)
    new_input = keras.Input((None, None, input_shape[-1]), dtype=model.inputs[0].dtype)
    outputs = rewriter.finish(rewriter.run_model(model, new_input))
    converted = keras.Model(new_input, outputs, name=f"{model.name}_fully_convolutional")
    for new_layer, weights in rewriter.weight_copies:
        if weights:
            new_layer.set_weights(weights)
    return converted
