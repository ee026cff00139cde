"""The layer table: per-layer output shape, parameters, multiply-adds, activations, receptive field and jump.

:func:`layer_table` walks a functional Keras model's graph in topological order, recursing into nested models,
and propagates shapes symbolically (``compute_output_spec``: nothing is built or run), so a model whose input is
``(None, None, 3)`` gets its table at any concrete size. Every convolution, pooling, padding and upsampling size
comes from :mod:`densevision.analysis.arithmetic` and is checked against Keras' own answer. What each figure counts is
explained in ``docs/layer_table.md``.
"""

from __future__ import annotations

import math
import numbers
import os
import warnings
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, Optional, Sequence

import keras
from keras import tree

from densevision.analysis import arithmetic
from densevision.backbones.api import build_backbone  # importing it registers the backbone families
from densevision.errors import UsageError
from densevision.models import build_model
from densevision.models.classifier import build_classifier
from densevision.recipes import builtin_recipe_names, load_recipe
from densevision.registry import BACKBONES, UnknownNameError, did_you_mean

DEFAULT_INPUT_SHAPE = (224, 224, 3)
BYTES_PER_VALUE = 4  # float32 activations

L = keras.layers
_CONVS = (L.Conv1D, L.Conv2D, L.Conv3D)
_CONV_TRANSPOSES = (L.Conv1DTranspose, L.Conv2DTranspose, L.Conv3DTranspose)
_DEPTHWISE = (L.DepthwiseConv1D, L.DepthwiseConv2D)
_SEPARABLE = (L.SeparableConv1D, L.SeparableConv2D)
_POOLS = (
    L.MaxPooling1D, L.MaxPooling2D, L.MaxPooling3D, L.AveragePooling1D, L.AveragePooling2D, L.AveragePooling3D
)
_GLOBAL_POOLS = (
    L.GlobalMaxPooling1D, L.GlobalMaxPooling2D, L.GlobalMaxPooling3D,
    L.GlobalAveragePooling1D, L.GlobalAveragePooling2D, L.GlobalAveragePooling3D,
)
# Layers with weights whose multiply-adds are 0 by convention (elementwise scale/shift, lookups): no warning.
_ZERO_MAC_WEIGHTED = (
    L.BatchNormalization, L.LayerNormalization, L.GroupNormalization, L.Normalization, L.PReLU, L.Embedding,
)
# Upsampling interpolation -> taps per output along an axis (bilinear reads 2 neighbours, bicubic 4).
_INTERPOLATION_TAPS = {"nearest": 1, "bilinear": 2, "bicubic": 4, "lanczos3": 6, "lanczos5": 10}


@dataclass(frozen=True)
class _Field:
    """Which input pixels a tensor's units see: one :class:`~densevision.analysis.arithmetic.AxisField` per spatial axis
    ``(rows, cols)``. ``grid`` is the ``(H, W)`` a Flatten folded into the feature axis: a Dense on it sees the
    whole grid."""

    axes: tuple
    grid: Optional[tuple] = None


_IMAGE_FIELD = _Field(axes=(arithmetic.AxisField(), arithmetic.AxisField()))


class _Walk:
    """State of one table computation: rows so far and the layers whose parameters were already counted."""

    def __init__(self):
        self.rows: list[dict[str, Any]] = []
        self.counted_layers: set[int] = set()
        self.warned: set[str] = set()


def layer_table(model: keras.Model, input_shape: Optional[Sequence] = None) -> dict[str, Any]:
    """Per-layer figures of a functional (or Sequential) Keras model, for one example.

    Args:
        model: a functional ``keras.Model`` or a built ``keras.Sequential``; nested models are expanded
            (their rows are named ``outer/inner``).
        input_shape: ``(H, W, C)`` without the batch axis (a list of them for a multi-input model). ``None``:
            the model's own input shape, with unknown axes taken from ``(224, 224, 3)``. It must agree with
            every axis the model fixes.

    Returns:
        ``{"layers": [{"name", "type", "output_shape", "params", "macs", "activations", "receptive_field",
        "jump"}, ...], "totals": {"params", "macs", "activations"}}`` (plain JSON types). ``output_shape`` has no
        batch axis; ``receptive_field``/``jump`` are in input pixels (an int when rows and columns agree, else
        ``[rows, cols]``; ``None`` for tensors without two spatial axes). A layer called twice gets two rows,
        its parameters counted on the first. Totals sum the rows; activations leave out the input.

    Raises:
        ValueError: a subclassed model, an input shape the model does not accept, or a layer whose output
            shape cannot be computed (the message names the layer).
    """
    graph = _graph_of(model)
    if graph is None:
        raise ValueError(
            f"layer_table needs a functional keras.Model or a built Sequential; {model.name!r} is a subclassed "
            f"{type(model).__name__} whose graph is not recorded"
        )
    shapes = _input_shapes(graph, model.name, input_shape)
    walk = _Walk()
    in_specs, in_fields = [], []
    for tensor, shape in zip(graph.inputs, shapes):
        spec = keras.KerasTensor((None, *shape), dtype=tensor.dtype)
        field = _IMAGE_FIELD if len(shape) == 3 else None
        layer = tensor._keras_history.operation
        walk.rows.append(_row(getattr(layer, "name", "input"), "InputLayer", [spec], 0, 0, field))
        in_specs.append(spec)
        in_fields.append(field)
    _walk_graph(graph, in_specs, in_fields, "", walk)
    rows = walk.rows
    totals = {
        "params": sum(r["params"] for r in rows),
        "macs": sum(r["macs"] for r in rows),
        "activations": sum(r["activations"] for r in rows if r["type"] != "InputLayer"),
    }
    return {"layers": rows, "totals": totals}


def format_table(table: dict[str, Any]) -> str:
    """Plain-text rendering of :func:`layer_table`'s result, one line per layer plus totals (as CS231n's VGG table).

    Columns: output shape, activation values and their float32 memory, parameters, multiply-adds, receptive
    field and jump.
    """
    header = ("layer", "type", "output shape", "activations", "memory", "params", "MACs", "RF", "jump")
    lines = [header]
    for row in table["layers"]:
        lines.append((
            row["name"],
            row["type"],
            _shape_text(row["output_shape"]),
            f"{row['activations']:,}",
            _bytes_text(row["activations"] * BYTES_PER_VALUE),
            f"{row['params']:,}",
            f"{row['macs']:,}",
            _field_text(row["receptive_field"]),
            _field_text(row["jump"]),
        ))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    left = {0, 1, 2}
    text = [
        "  ".join(str(v).ljust(w) if i in left else str(v).rjust(w) for i, (v, w) in enumerate(zip(line, widths)))
        for line in lines
    ]
    text.insert(1, "-" * len(text[0]))
    totals = table["totals"]
    input_values = sum(r["activations"] for r in table["layers"] if r["type"] == "InputLayer")
    memory = totals["activations"] * BYTES_PER_VALUE
    text += [
        "-" * len(text[0]),
        f"TOTAL params:        {totals['params']:,} ({_compact(totals['params'])})",
        f"TOTAL multiply-adds: {totals['macs']:,} ({_compact(totals['macs'])})",
        f"TOTAL activations:   {totals['activations']:,} values ({_compact(totals['activations'])}) x "
        f"{BYTES_PER_VALUE} bytes = {_bytes_text(memory)} per example, forward pass, input's {input_values:,} "
        f"values not counted",
    ]
    return "\n".join(text)


def resolve_model(spec: str, input_shape: Sequence[int] = DEFAULT_INPUT_SHAPE, include_top: bool = False,
                  overrides: Sequence[str] = (), demo: bool = False):
    """The model a command line names: a backbone name (``vgg16``), a recipe path (``*.yaml``) or a built-in
    recipe's name (``tiramisu56_camvid``).

    Args:
        spec: backbone name, path to a recipe YAML file, or built-in recipe name.
        overrides, demo: a recipe's ``--set`` values and demo settings (as ``load_recipe`` takes them).
        input_shape: ``(H, W, C)`` the backbone/classifier is built at.
        include_top: build the ImageNet-shaped classifier (``build_classifier``, 1000 classes) instead of the
            backbone's feature maps (names only).

    Raises:
        densevision.RecipeError: the recipe cannot be loaded or validated.
        densevision.registry.UnknownNameError: no backbone of that name (did-you-mean in the message).
        ValueError: ``include_top`` with a recipe.
        UsageError: ``overrides`` or ``demo`` with a backbone name.
    """
    input_shape = tuple(int(v) for v in input_shape)
    if spec.endswith((".yaml", ".yml")) or os.path.isfile(spec) or spec in builtin_recipe_names():
        if include_top:
            raise ValueError(f"--include-top applies to backbone names, not to the recipe {spec!r}")
        recipe = load_recipe(spec, list(overrides), demo=demo)  # recipe errors first, before any model code
        return build_model(recipe)

    if overrides or demo:
        raise UsageError(f"--set and --demo change a recipe; {spec!r} is a backbone name")
    if spec not in BACKBONES:
        raise UnknownNameError(
            f"unknown model {spec!r}{did_you_mean(spec, BACKBONES.names())}; give a backbone name "
            f"({', '.join(BACKBONES.names())}) or the path of a recipe .yaml file"
        )
    if include_top:
        return build_classifier(backbone=spec, num_classes=1000, input_shape=input_shape)
    return build_backbone(spec, input_shape=input_shape)


# ----------------------------------------------------------------------------------------------- graph walking


def _graph_of(model):
    """The object holding the node graph: the model itself (functional) or a Sequential's inner functional."""
    if hasattr(model, "_nodes_by_depth") and hasattr(model, "inputs"):
        return model
    if isinstance(model, keras.Sequential):
        functional = getattr(model, "_functional", None)
        if functional is None:
            raise ValueError(
                f"Sequential model {model.name!r} is not built: give it a keras.Input or call build(input_shape)"
            )
        return functional
    return None


def _input_shapes(graph, model_name: str, input_shape) -> list[tuple]:
    """One concrete shape (no batch axis) per model input, checked against the axes the model fixes."""
    model_shapes = [tuple(t.shape[1:]) for t in graph.inputs]
    if input_shape is None:
        given = [None] * len(model_shapes)
    elif len(model_shapes) == 1 and input_shape and not isinstance(input_shape[0], (list, tuple)):
        given = [tuple(input_shape)]
    else:
        given = [tuple(s) if s is not None else None for s in input_shape]
    if len(given) != len(model_shapes):
        raise ValueError(
            f"model {model_name!r} has {len(model_shapes)} inputs {model_shapes}; input_shape={input_shape!r} "
            f"gives {len(given)}"
        )
    shapes = []
    for index, (fixed, wanted) in enumerate(zip(model_shapes, given)):
        if wanted is None:
            default = DEFAULT_INPUT_SHAPE if len(fixed) == len(DEFAULT_INPUT_SHAPE) else (None,) * len(fixed)
            wanted = tuple(f if f is not None else d for f, d in zip(fixed, default))
        if len(wanted) != len(fixed) or any(
            w is None or isinstance(w, bool) or not isinstance(w, numbers.Integral) or w < 1 for w in wanted
        ):
            raise ValueError(
                f"input_shape {wanted!r} for input {index} of model {model_name!r}: expected {len(fixed)} positive "
                f"integers without the batch axis, like {tuple(f or 224 for f in fixed)}"
            )
        clash = [i for i, (f, w) in enumerate(zip(fixed, wanted)) if f is not None and f != w]
        if clash:
            raise ValueError(
                f"input_shape {wanted} disagrees with input {index} of model {model_name!r}, which fixes "
                f"{fixed} (axis {clash[0]}); build the model with an input of None axes to tabulate other sizes"
            )
        shapes.append(tuple(int(w) for w in wanted))
    return shapes


def _walk_graph(graph, in_specs: list, in_fields: list, prefix: str, walk: _Walk) -> tuple[list, list]:
    """Propagate specs and fields through ``graph``'s nodes in topological order; return its outputs'."""
    specs = {id(t): s for t, s in zip(graph.inputs, in_specs)}
    fields = {id(t): f for t, f in zip(graph.inputs, in_fields)}
    # Keras' own evaluation order (Function._run_through_graph): deepest nodes first.
    for depth in sorted(graph._nodes_by_depth, reverse=True):
        for node in graph._nodes_by_depth[depth]:
            if node.is_input or not node.operation:
                continue
            if any(id(t) not in specs for t in node.input_tensors):
                continue  # a node of another model sharing this layer
            operation = node.operation
            name = prefix + operation.name
            node_specs = [specs[id(t)] for t in node.input_tensors]
            node_fields = [fields[id(t)] for t in node.input_tensors]
            inner = _graph_of(operation) if isinstance(operation, keras.Model) else None
            if inner is not None:
                args, kwargs = node.arguments.fill_in(specs)
                field_args, field_kwargs = node.arguments.fill_in(fields)
                key = "inputs" if "inputs" in kwargs else None
                inner_specs = tree.flatten(kwargs[key] if key else args[0])
                inner_fields = _flatten_fields(field_kwargs[key] if key else field_args[0])
                out_specs, out_fields = _walk_graph(inner, inner_specs, inner_fields, name + "/", walk)
            else:
                args, kwargs = node.arguments.fill_in(specs)
                try:
                    out_specs = tree.flatten(operation.compute_output_spec(*args, **kwargs))
                except Exception as error:  # noqa: BLE001 - re-raised with the layer named
                    raise ValueError(
                        f"layer {name!r} ({type(operation).__name__}): cannot compute its output shape for input "
                        f"shapes {[tuple(s.shape) for s in node_specs]}: {error}"
                    ) from error
                out_specs, out_fields = _tabulate(operation, name, node_specs, node_fields, out_specs, walk)
            for tensor, spec, field in zip(node.outputs, out_specs, out_fields):
                specs[id(tensor)] = spec
                fields[id(tensor)] = field
    return [specs[id(t)] for t in graph.outputs], [fields[id(t)] for t in graph.outputs]


def _flatten_fields(structure) -> list:
    """Flatten a structure of fields (or ``None``s) the way ``keras.tree.flatten`` flattens the matching tensors."""
    if isinstance(structure, _Field) or structure is None:
        return [structure]
    if isinstance(structure, dict):
        return [f for key in sorted(structure) for f in _flatten_fields(structure[key])]
    return [f for item in structure for f in _flatten_fields(item)]


# ------------------------------------------------------------------------------------------ per-layer figures


def _tabulate(layer, name: str, in_specs: list, in_fields: list, out_specs: list, walk: _Walk):
    """Append ``layer``'s row; return its output specs and fields."""
    field = _merge_fields(name, in_fields, walk)
    x = in_specs[0].shape if in_specs else None
    y = out_specs[0].shape
    macs = 0
    expected_spatial = None  # sizes from densevision.analysis.arithmetic, checked against Keras below

    if isinstance(layer, _CONV_TRANSPOSES):
        axes = _spatial_axes(layer, len(x))
        expected_spatial = [
            arithmetic.transposed_conv_output_size(
                x[a], k, s, layer.padding, None if layer.output_padding is None else layer.output_padding[i], d
            )
            for i, (a, k, s, d) in enumerate(zip(axes, layer.kernel_size, layer.strides, layer.dilation_rate))
        ]
        macs = math.prod(x[a] for a in axes) * _channels(layer, x) * math.prod(layer.kernel_size) * layer.filters
        field = _slide(field, lambda axis, i: axis.transposed(
            layer.kernel_size[i], layer.strides[i], layer.dilation_rate[i],
            _transposed_pad_before(layer, x[axes[i]], expected_spatial[i], i),
        ))
    elif isinstance(layer, (*_CONVS, *_DEPTHWISE, *_SEPARABLE, *_POOLS)):
        axes = _spatial_axes(layer, len(x))
        is_pool = isinstance(layer, _POOLS)
        kernel = layer.pool_size if is_pool else layer.kernel_size
        dilation = (1,) * len(axes) if is_pool else layer.dilation_rate
        padding = "same" if layer.padding == "causal" else layer.padding  # causal keeps ceil(W/S) like same
        expected_spatial = [
            arithmetic.keras_conv_output_size(x[a], k, s, padding, d)
            for a, k, s, d in zip(axes, kernel, layer.strides, dilation)
        ]
        if not is_pool:
            positions = math.prod(expected_spatial)
            taps = math.prod(kernel)
            c_in = _channels(layer, x)
            if isinstance(layer, _CONVS):
                macs = positions * layer.filters * taps * c_in // layer.groups
            else:
                depthwise_out = c_in * layer.depth_multiplier
                macs = positions * depthwise_out * taps
                if isinstance(layer, _SEPARABLE):
                    macs += positions * depthwise_out * layer.filters
        field = _slide(field, lambda axis, i: axis.conv(
            kernel[i], layer.strides[i], dilation[i],
            arithmetic.same_padding_before(x[axes[i]], kernel[i], layer.strides[i], dilation[i])
            if padding == "same" else 0,
        ))
    elif isinstance(layer, _GLOBAL_POOLS):
        # Sees the whole map at once: a kernel of the map's size, stride 1 (as in a fully convolutional net).
        axes = _spatial_axes(layer, len(x))
        field = _slide(field, lambda axis, i: axis.whole(x[axes[i]]))
    elif isinstance(layer, (L.ZeroPadding2D, L.Cropping2D)):
        axes = _spatial_axes(layer, len(x))
        sign = 1 if isinstance(layer, L.ZeroPadding2D) else -1
        amounts = layer.padding if sign > 0 else layer.cropping
        expected_spatial = [x[a] + sign * sum(amount) for a, amount in zip(axes, amounts)]
        field = _slide(field, lambda axis, i: axis.conv(1, pad_before=sign * amounts[i][0]))
    elif isinstance(layer, L.UpSampling2D):
        axes = _spatial_axes(layer, len(x))
        expected_spatial = [x[a] * s for a, s in zip(axes, layer.size)]
        taps = _INTERPOLATION_TAPS.get(layer.interpolation, 2)
        field = _slide(field, lambda axis, i: axis.resize(x[axes[i]], expected_spatial[i], taps))
    elif isinstance(layer, L.Resizing):
        axes = _spatial_axes(layer, len(x))
        taps = _INTERPOLATION_TAPS.get(layer.interpolation, 2)
        field = _slide(field, lambda axis, i: axis.resize(x[axes[i]], y[axes[i]], taps))
    elif isinstance(layer, L.Dense):
        macs = math.prod(x[1:]) * layer.units
        if field is not None and field.grid is not None:
            # Dense on a flattened (H, W, C) map is an HxW convolution without padding, stride 1.
            grid = field.grid
            field = _slide(replace(field, grid=None), lambda axis, i: axis.whole(grid[i]))
    elif isinstance(layer, L.Flatten) and field is not None and len(x) == 4:
        axes = _spatial_axes(layer, len(x))
        field = replace(field, grid=tuple(x[a] for a in axes))
    elif _params(layer) and not isinstance(layer, _ZERO_MAC_WEIGHTED):
        key = type(layer).__name__
        if key not in walk.warned:
            walk.warned.add(key)
            warnings.warn(
                f"layer_table: multiply-adds of layer {name!r} ({key}, {_params(layer):,} parameters) are not "
                f"known; counted as 0",
                stacklevel=3,
            )

    if expected_spatial is not None:
        keras_spatial = [y[a] for a in _spatial_axes(layer, len(y))]
        if list(expected_spatial) != keras_spatial:
            raise RuntimeError(
                f"layer {name!r} ({type(layer).__name__}): densevision.analysis.arithmetic gives spatial size "
                f"{expected_spatial}, Keras {keras_spatial} for input {tuple(x)}"
            )
    if field is not None and len(y) not in (2, 4):
        field = None  # neither a map nor a vector any more (e.g. reshaped to a sequence)
    params = 0
    if id(layer) not in walk.counted_layers:
        walk.counted_layers.add(id(layer))
        params = _params(layer)
    walk.rows.append(_row(name, type(layer).__name__, out_specs, params, macs, field))
    return out_specs, [field] * len(out_specs)


def _merge_fields(name: str, fields: list, walk: _Walk) -> Optional[_Field]:
    """Field of a layer reading several tensors unit by unit (Add, Concatenate): the union of their fields."""
    known = [f for f in fields if f is not None]
    if len(known) <= 1:
        return known[0] if known else None
    try:
        axes = known[0].axes
        for other in known[1:]:
            axes = tuple(a.union(b) for a, b in zip(axes, other.axes))
        return _Field(axes=axes, grid=known[0].grid)
    except ValueError as error:  # different jumps: the maps' units do not line up
        if name not in walk.warned:
            walk.warned.add(name)
            warnings.warn(f"layer_table: layer {name!r}: {error}; reporting the largest field", stacklevel=4)
        return max(known, key=lambda f: [a.rf for a in f.axes])


def _slide(field: Optional[_Field], step) -> Optional[_Field]:
    """Apply ``step(axis_field, axis_index)`` to both spatial axes of a 2-D field (other ranks carry none)."""
    if field is None:
        return None
    return _Field(axes=tuple(step(axis, i) for i, axis in enumerate(field.axes)))


def _transposed_pad_before(layer, in_size: int, out_size: int, index: int) -> int:
    """Rows TensorFlow's transposed convolution crops before its first output (the gradient of a conv from
    ``out_size`` to ``in_size``: ``"same"`` pads ``max((W_in - 1) * S + F_eff - W_out, 0) // 2``)."""
    if layer.padding != "same":
        return 0
    span = arithmetic.effective_kernel_size(layer.kernel_size[index], layer.dilation_rate[index])
    return max((in_size - 1) * layer.strides[index] + span - out_size, 0) // 2


def _spatial_axes(layer, rank: int) -> list[int]:
    """Axes (batch included) of a layer's spatial dimensions under its data format."""
    if getattr(layer, "data_format", "channels_last") == "channels_first":
        return list(range(2, rank))
    return list(range(1, rank - 1))


def _channels(layer, shape) -> int:
    return shape[1] if getattr(layer, "data_format", "channels_last") == "channels_first" else shape[-1]


def _params(layer) -> int:
    return int(layer.count_params()) if isinstance(layer, keras.layers.Layer) and layer.built else 0


def _exact(value):
    """An int when a Fraction is whole, a float otherwise (JSON-friendly)."""
    value = Fraction(value)
    return int(value) if value.denominator == 1 else float(value)


def _row(name: str, kind: str, out_specs: list, params: int, macs: int, field: Optional[_Field]) -> dict[str, Any]:
    shapes = [[int(v) for v in spec.shape[1:]] for spec in out_specs]

    def axis_pair(values):
        values = [_exact(v) for v in values]
        return values[0] if values[0] == values[1] else values

    return {
        "name": name,
        "type": kind,
        "output_shape": shapes[0] if len(shapes) == 1 else shapes,
        "params": int(params),
        "macs": int(macs),
        "activations": int(sum(math.prod(s) for s in shapes)),
        "receptive_field": None if field is None else axis_pair([a.rf for a in field.axes]),
        "jump": None if field is None else axis_pair([a.jump for a in field.axes]),
    }


# ----------------------------------------------------------------------------------------------- text helpers


def _shape_text(shape) -> str:
    if shape and isinstance(shape[0], list):
        return ", ".join(_shape_text(s) for s in shape)
    return "x".join(str(v) for v in shape)


def _field_text(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "x".join(_field_text(v) for v in value)
    return str(value) if isinstance(value, int) else f"{value:.3g}"


def _compact(value: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:.2f}{suffix}"
    return str(value)


def _bytes_text(count: int) -> str:
    for scale, suffix in ((1e9, "GB"), (1e6, "MB"), (1e3, "KB")):
        if count >= scale:
            return f"{count / scale:.1f} {suffix}"
    return f"{count} B"


__all__ = ["layer_table", "format_table", "resolve_model", "DEFAULT_INPUT_SHAPE"]
