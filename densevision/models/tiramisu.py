"""FC-DenseNet ("The One Hundred Layers Tiramisu", Jégou et al. 2017) and a Tiramisu-style dense decoder on
any backbone.

Registered models (``MODELS``): ``fc_densenet`` (general), ``fc_densenet56``, ``fc_densenet67``,
``fc_densenet103`` and ``tiramisu`` (dense up-sampling decoder on a registered backbone's P1..P5).
All take float32 RGB ``[0, 255]`` images ``(B, H, W, 3)`` of any size and return float32 logits
``(B, H, W, num_classes)``.
"""

from __future__ import annotations

from typing import Literal, Optional

import keras

from densevision.backbones.api import build_backbone, feature_strides, freeze_backbone
from densevision.layers.dense import (
    DEFAULT_BN_MOMENTUM,
    MemoryEfficientModel,
    dense_block,
    transition_down,
    transition_up,
)
from densevision.layers.padding import CropLike, PadToMultiple
from densevision.layers.preprocessing import Preprocess
from densevision.registry import MODELS


def _check_positive(name: str, value) -> list[int]:
    """``value`` as a list if it is a non-empty list/tuple of positive ints, else a ValueError naming ``name``."""
    values = list(value) if isinstance(value, (list, tuple)) else None
    if not values or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values
    ):
        raise ValueError(f"{name}: expected a non-empty list of positive ints, got {value!r}")
    return values


def _check_common(num_classes: int, growth_rate: int, dropout: float, bn_momentum: float) -> None:
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
    if not isinstance(growth_rate, int) or growth_rate < 1:
        raise ValueError(f"growth_rate: expected a positive int, got {growth_rate!r}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout: expected a rate in [0, 1), got {dropout!r}")
    if not 0.0 <= bn_momentum < 1.0:
        raise ValueError(f"bn_momentum: expected a value in [0, 1), got {bn_momentum!r}")


#: ``classifier_init`` choices: the classifier's kernel initialiser (its bias starts at zero either way)
ClassifierInit = Literal["he_uniform", "zeros"]


def logits_layer(x, num_classes: int, name: str = "logits", kernel_initializer: ClassifierInit = "he_uniform"):
    """1x1 conv to ``num_classes`` logits, kept in float32 under mixed precision: ``(B, h, w, C) -> (B, h, w, K)``.

    ``kernel_initializer="zeros"`` starts every pixel at uniform class probabilities (all logits 0); the kernel
    still learns from the first step, as its inputs are not zero.
    """
    return keras.layers.Conv2D(num_classes, 1, dtype="float32", kernel_initializer=kernel_initializer, name=name)(x)


def _model(inputs, outputs, name: str, memory_efficient: bool) -> keras.Model:
    """``keras.Model(inputs, outputs)``, or the same graph as a :class:`MemoryEfficientModel`."""
    model_class = MemoryEfficientModel if memory_efficient else keras.Model
    return model_class(inputs, outputs, name=name)


@MODELS.register("fc_densenet")
def fc_densenet(
    num_classes: int,
    blocks_down: list[int] = (4, 5, 7, 10, 12),
    bottleneck: int = 15,
    growth_rate: int = 16,
    blocks_up: Optional[list[int]] = None,
    first_filters: int = 48,
    dropout: float = 0.2,
    bn_momentum: float = DEFAULT_BN_MOMENTUM,
    synchronized_bn: bool = False,
    name: str = "fc_densenet",
    memory_efficient: bool = False,
    classifier_init: ClassifierInit = "he_uniform",
) -> keras.Model:
    """Fully convolutional DenseNet (Jégou et al. 2017): images ``(B, H, W, 3)`` -> logits ``(B, H, W, K)``.

    Down path: 3x3 conv (``first_filters``), then per entry of ``blocks_down`` a dense block (its input and new
    maps passed on, saved as skip) and a transition down. Bottleneck: a dense block of ``bottleneck`` layers.
    Up path: per entry of ``blocks_up`` (default: ``blocks_down`` reversed) a transition up of the block
    below's *new* maps only, concatenated with the skip, then a dense block; the last up block's full stack
    goes to a 1x1 conv to ``num_classes``. Inputs are padded to a multiple of ``2 ** len(blocks_down)`` and
    the logits cropped back, so any image size works.

    Args:
        num_classes: K, the number of logits per pixel.
        blocks_down: layers per dense block on the down path (the paper's 103: ``[4, 5, 7, 10, 12]``).
        bottleneck: layers in the bottleneck block (103: 15).
        growth_rate: k, feature maps added by each layer (103: 16).
        blocks_up: layers per up-path block, top to bottom; must have as many entries as ``blocks_down``.
        first_filters: filters of the first 3x3 conv (48).
        dropout: dropout after every conv of the dense blocks and transitions down (0.2).
        bn_momentum: Keras BatchNormalization momentum; 0.9 matches the reference code (see layers/dense.py).
        synchronized_bn: batch statistics over all replicas (the global batch) under tf.distribute.
        name: the Keras model's name.
        memory_efficient: recompute each dense layer's concatenation, batch norm and ReLU in the backward pass
            instead of keeping them (Pleiss et al. 2017; :class:`~densevision.layers.dense.MemoryEfficientModel`):
            the same weights and gradients, far less activation memory in training, some extra compute.
        classifier_init: the 1x1 classifier's kernel initialiser: ``"he_uniform"`` (the reference code's) or
            ``"zeros"`` (every pixel starts at uniform class probabilities).
    """
    blocks_down = _check_positive("blocks_down", blocks_down)
    blocks_up = list(reversed(blocks_down)) if blocks_up is None else _check_positive("blocks_up", blocks_up)
    if len(blocks_up) != len(blocks_down):
        raise ValueError(
            f"blocks_up: expected {len(blocks_down)} entries (one per block of blocks_down={blocks_down}), got {blocks_up}"
        )
    for key, value in (("bottleneck", bottleneck), ("first_filters", first_filters)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{key}: expected a positive int, got {value!r}")
    _check_common(num_classes, growth_rate, dropout, bn_momentum)
    block_options = dict(dropout=dropout, bn_momentum=bn_momentum, bn_synchronized=synchronized_bn)

    images = keras.Input((None, None, 3), name="image")
    x = PadToMultiple(2 ** len(blocks_down), name="pad")(images)
    # FC-DenseNet trains from scratch, so any fixed standardisation works: ImageNet mean/std ("torch" mode)
    # keeps the first convolution's inputs near zero mean and unit variance.
    x = Preprocess("torch", name="preprocess")(x)
    # Linear first conv: the first dense layer starts with its own BN-ReLU.
    x = keras.layers.Conv2D(first_filters, 3, padding="same", kernel_initializer="he_uniform", name="first_conv")(x)

    skips = []
    for index, num_layers in enumerate(blocks_down):
        x, _ = dense_block(x, num_layers, growth_rate, name=f"down{index + 1}", **block_options)
        skips.append(x)
        x = transition_down(x, name=f"td{index + 1}", **block_options)

    _, new_maps = dense_block(x, bottleneck, growth_rate, name="bottleneck", **block_options)
    layers_below = bottleneck
    for index, (num_layers, skip) in enumerate(zip(blocks_up, reversed(skips))):
        x = transition_up(new_maps, skip, growth_rate * layers_below, name=f"tu{index + 1}")
        x, new_maps = dense_block(x, num_layers, growth_rate, name=f"up{index + 1}", **block_options)
        layers_below = num_layers

    logits = logits_layer(x, num_classes, kernel_initializer=classifier_init)
    logits = CropLike(dtype="float32", name="crop")([logits, images])
    return _model(images, logits, name, memory_efficient)


def _published_variant(name: str, blocks_down: list[int], bottleneck: int, growth_rate: int, doc: str):
    """Register one of the paper's FC-DenseNets as model ``name``: :func:`fc_densenet` with its block layout fixed,
    the other options (the recipe's ``model:`` keys, checked against this signature) passed through."""

    def build(
        num_classes: int, dropout: float = 0.2, bn_momentum: float = DEFAULT_BN_MOMENTUM, synchronized_bn: bool = False,
        memory_efficient: bool = False, classifier_init: ClassifierInit = "he_uniform",
    ) -> keras.Model:
        return fc_densenet(num_classes, list(blocks_down), bottleneck, growth_rate, dropout=dropout,
                           bn_momentum=bn_momentum, synchronized_bn=synchronized_bn, name=name,
                           memory_efficient=memory_efficient, classifier_init=classifier_init)

    build.__name__ = build.__qualname__ = name
    build.__doc__ = doc
    return MODELS.register(name)(build)


fc_densenet56 = _published_variant(
    "fc_densenet56", [4] * 5, 4, 12, "FC-DenseNet56: 5 blocks of 4 layers down and up, bottleneck 4, growth 12 "
                                     "(paper: 1.5M parameters).")
fc_densenet67 = _published_variant(
    "fc_densenet67", [5] * 5, 5, 16, "FC-DenseNet67: 5 blocks of 5 layers down and up, bottleneck 5, growth 16 "
                                     "(paper: 3.5M parameters).")
fc_densenet103 = _published_variant(
    "fc_densenet103", [4, 5, 7, 10, 12], 15, 16, "FC-DenseNet103: blocks 4,5,7,10,12 | 15 | 12,10,7,5,4, growth 16 "
                                                 "(paper: 9.4M parameters).")


#: skip connections of the decoder, top (coarsest) to bottom
DECODER_SKIPS = ("P4", "P3", "P2", "P1")


@MODELS.register("tiramisu")
def tiramisu(
    num_classes: int,
    backbone: str = "densenet121",
    weights: Optional[str] = None,
    output_stride: int = 32,
    decoder_blocks: list[int] = (12, 10, 7, 5, 4),
    growth_rate: int = 16,
    freeze: Optional[str] = None,
    dropout: float = 0.2,
    bn_momentum: float = DEFAULT_BN_MOMENTUM,
    name: Optional[str] = None,
    memory_efficient: bool = False,
    classifier_init: ClassifierInit = "he_uniform",
) -> keras.Model:
    """FC-DenseNet up-sampling path on a backbone: images ``(B, H, W, 3)`` RGB [0, 255] -> logits ``(B, H, W, K)``.

    A transition up (3x3 transposed conv, ``growth_rate * decoder_blocks[0]`` filters) takes P5 to P4's
    resolution and is concatenated with P4, then a dense block of ``decoder_blocks[0]`` layers; its *new* maps
    only go on to the next transition up (``growth_rate * decoder_blocks[i - 1]`` filters), concatenated with
    P3, P2, P1 in turn; a last transition up to full resolution (no skip) is followed by a dense block of
    ``decoder_blocks[4]`` layers, and its full stack by a 1x1 conv to ``num_classes``. Where two feature maps
    share a resolution (``output_stride`` 8 or 16) the transition up has stride 1.

    Args:
        num_classes: K.
        backbone: a registered backbone name (``densenet121``, ``resnet50``, ``vgg16``, ...).
        weights: backbone weights: None, ``"imagenet"`` or a file path.
        output_stride: the backbone's output stride: 8, 16 or 32.
        decoder_blocks: layers per decoder dense block at P4, P3, P2, P1 and full resolution (5 entries; the
            default is FC-DenseNet103's up path).
        growth_rate: maps added per decoder layer.
        freeze: freeze the backbone before this stage (``freeze_backbone``), ``"all"``, or None.
        dropout: dropout after each decoder convolution.
        bn_momentum: Keras BatchNormalization momentum of the decoder (0.9, see layers/dense.py).
        name: the Keras model's name (default ``tiramisu_{backbone}``).
        memory_efficient: recompute the decoder's (and any outer-graph) BN-ReLU-conv layers and concatenations
            in the backward pass (see :func:`fc_densenet`); the backbone runs as usual.
        classifier_init: the classifier's kernel initialiser, ``"he_uniform"`` or ``"zeros"``.
    """
    decoder_blocks = _check_positive("decoder_blocks", decoder_blocks)
    if len(decoder_blocks) != len(DECODER_SKIPS) + 1:
        raise ValueError(
            f"decoder_blocks: expected {len(DECODER_SKIPS) + 1} entries (blocks at P4, P3, P2, P1 and full "
            f"resolution), got {decoder_blocks}"
        )
    _check_common(num_classes, growth_rate, dropout, bn_momentum)
    strides = feature_strides(backbone, output_stride)
    backbone_model = build_backbone(backbone, weights=weights, output_stride=output_stride)
    if freeze:
        freeze_backbone(backbone_model, freeze)
    block_options = dict(dropout=dropout, bn_momentum=bn_momentum)

    images = keras.Input((None, None, 3), name="image")
    padded = PadToMultiple(output_stride, name="pad")(images)
    features = backbone_model(padded)

    new_maps, below, filters = features["P5"], "P5", growth_rate * decoder_blocks[0]
    for index, (skip_key, num_layers) in enumerate(zip(DECODER_SKIPS, decoder_blocks)):
        x = transition_up(
            new_maps, features[skip_key], filters, stride=strides[below] // strides[skip_key], name=f"tu{index + 1}"
        )
        _, new_maps = dense_block(x, num_layers, growth_rate, name=f"up{index + 1}", **block_options)
        below, filters = skip_key, growth_rate * num_layers

    # full resolution: nothing to skip-connect, so the upsampled maps alone feed the last block
    x = keras.layers.Conv2DTranspose(
        filters, 3, strides=strides["P1"], padding="same", kernel_initializer="he_uniform", name="tu_full_deconv"
    )(new_maps)
    x, _ = dense_block(x, decoder_blocks[-1], growth_rate, name="up_full", **block_options)
    logits = logits_layer(x, num_classes, kernel_initializer=classifier_init)
    logits = CropLike(dtype="float32", name="crop")([logits, images])
    return _model(images, logits, name or f"tiramisu_{backbone}", memory_efficient)
