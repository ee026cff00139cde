"""Backbone front door: build by name, ask for feature strides, freeze up to a stage.

A backbone maps float32 RGB images in [0, 255], ``(B, H, W, 3)``, to the dict
``{"P1": (B, H/2, W/2, C1), "P2": /4, "P3": /8, "P4": /16, "P5": /32}``; with ``output_stride`` 16 or 8 the
last stages keep their resolution instead (see :func:`feature_strides`). The feature chosen at each stride is
documented in each family module (:mod:`~densevision.backbones.vgg`, :mod:`~densevision.backbones.resnet`,
:mod:`~densevision.backbones.densenet`).
"""

from __future__ import annotations

import keras

# importing the families registers them in BACKBONES
from densevision.backbones import densenet, resnet, vgg  # noqa: F401  (importing registers them)
from densevision.backbones import common
from densevision.registry import BACKBONES

FEATURE_KEYS = common.FEATURE_KEYS


def build_backbone(
    name: str, weights=None, output_stride: int = 32, input_shape=(None, None, 3), preprocess: bool = True
) -> keras.Model:
    """Build registered backbone ``name`` (``vgg16 vgg19 resnet50 resnet101 resnet152 densenet121 densenet169
    densenet201``).

    Args:
        name: a name in ``registry.BACKBONES``; unknown names raise with a did-you-mean suggestion.
        weights: ``None`` (random), ``"imagenet"`` (keras.applications' file via Keras' cache) or a path to a
            ``.weights.h5``, ``.h5`` or ``.keras`` file (see :mod:`densevision.backbones.weights`).
        output_stride: 32, 16 or 8; the strides of P1..P5 are :func:`feature_strides` ``(name, output_stride)``.
        input_shape: ``(H, W, 3)``, ``None`` for any height/width.
        preprocess: start with the ``Preprocess`` layer matching the weights (inputs RGB [0, 255]); ``False``
            for inputs already preprocessed as ``keras.applications.<family>.preprocess_input`` does.

    Returns:
        ``keras.Model``: ``(B, H, W, 3)`` -> ``{"P1": (B, H/s1, W/s1, C1), ..., "P5": (B, H/s5, W/s5, C5)}``.
    """
    builder = BACKBONES.get(name)
    common.check_output_stride(output_stride)
    return builder(weights=weights, output_stride=output_stride, input_shape=input_shape, preprocess=preprocess)


def feature_strides(name: str, output_stride: int = 32) -> dict[str, int]:
    """Spatial stride of each feature of backbone ``name`` at ``output_stride``.

    ``{"P1": 2, "P2": 4, "P3": 8, "P4": 16, "P5": 32}`` at 32, ``P5: 16`` at 16, ``P4: 8, P5: 8`` at 8.
    """
    BACKBONES.get(name)  # unknown names fail here, clearly
    return common.feature_strides(output_stride)


def stage_of_layers(model: keras.Model) -> dict[str, int]:
    """``layer name -> stage number k`` (1..5): the first feature ``P<k>`` that the layer feeds into.

    Layers before P1 (input, preprocessing) are stage 0. ``model.layers`` is in topological order and each
    ``P<k>`` depends on ``P<k-1>``, so a stage is the run of layers up to and including P<k>'s layer.
    """
    features = model.output
    if not isinstance(features, dict) or set(features) != set(FEATURE_KEYS):
        raise ValueError(
            f"model {model.name!r} is not a densevision backbone: expected a dict output with keys "
            f"{FEATURE_KEYS}, got {type(features).__name__}"
            + (f" with keys {sorted(features)}" if isinstance(features, dict) else "")
        )
    position = {layer.name: index for index, layer in enumerate(model.layers)}
    last_index = [position[features[key]._keras_history.operation.name] for key in FEATURE_KEYS]
    stages = {}
    for layer in model.layers:
        index = position[layer.name]
        if isinstance(layer, keras.layers.InputLayer) or layer.name == "preprocess":
            stages[layer.name] = 0
            continue
        stages[layer.name] = next((k for k, last in enumerate(last_index, start=1) if index <= last), 5)
    return stages


def freeze_backbone(model: keras.Model, trainable_from: str | None) -> keras.Model:
    """Freeze a backbone up to a stage, in place; returns ``model``.

    Args:
        model: a backbone from :func:`build_backbone`.
        trainable_from: ``None``: everything trainable; ``"all"``: everything frozen (feature extraction);
            ``"P1"`` .. ``"P5"``: layers of the stages before that one frozen, that stage and later ones trainable
            (fine-tuning from a named stage on).

    Frozen BatchNormalization layers run in inference mode (moving statistics, no updates) even when the model
    is called with ``training=True``: Keras 3 does this for ``trainable=False``.
    """
    if trainable_from is not None and trainable_from != "all" and trainable_from not in FEATURE_KEYS:
        raise ValueError(
            f"freeze_backbone: trainable_from={trainable_from!r}; expected None, 'all' or one of "
            f"{', '.join(FEATURE_KEYS)}"
        )
    if trainable_from is None:
        first_trainable = 0
    elif trainable_from == "all":
        first_trainable = len(FEATURE_KEYS) + 1
    else:
        first_trainable = FEATURE_KEYS.index(trainable_from) + 1
    stages = stage_of_layers(model)
    model.trainable = True  # each layer's own flag decides below (the model flag would override them all)
    for layer in model.layers:
        layer.trainable = stages[layer.name] >= first_trainable
    if trainable_from == "all":
        model.trainable = False
    return model
