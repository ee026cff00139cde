"""The stacked hourglass network for human pose (Newell, Yang & Deng, "Stacked Hourglass Networks for Human Pose
Estimation", ECCV 2016), as in the original Torch code (``umich-vl/pose-hg-train``, ``src/models/hg.lua``).

Registered model (``MODELS``): ``stacked_hourglass``. Images ``(B, H, W, 3)`` float32 RGB in [0, 255] ->
a list of ``num_stacks`` float32 heatmap tensors ``(B, H/4, W/4, J)``, one per stack (intermediate supervision);
the last is the prediction.

Layout (``F = num_features``, every residual is :func:`densevision.layers.residual.residual`):

- stem: 7x7/2 conv (64) - BN - ReLU, residual(128), 2x2 max pool, residual(128), residual(F): stride 4;
- per stack: an hourglass of ``depth`` levels (each level: a residual on the upper branch; max pool, residual,
  the next level (or a residual at the bottom), residual, nearest 2x up-sampling on the lower branch; the
  branches added), a residual, the "linear layer" 1x1 conv (F) - BN - ReLU, and a 1x1 conv to the J heatmaps;
- between stacks: the stack's input + 1x1 conv (F) of the linear layer's output + 1x1 conv (F) of the heatmaps.

Sizes: H and W must be multiples of 4 (the stem). The original needs multiples of ``4 * 2 ** depth`` (64); here a
level whose map has an odd size pools with padding (``ceil``) and crops its up-sampled branch back, so any
multiple of 4 works (COCO's 256x192 and 128x96 included). For multiples of 64 this is exactly the original
network (the crops cut nothing).

Parameters at F = 256, J = 16, depth 4 (trainable = Torch's count, BN scale and offset included, running
statistics not): 1 stack 3,426,448; 2 stacks 6,570,400; 4 stacks 12,858,304; 8 stacks 25,434,112.
"""

from __future__ import annotations

from typing import Literal, Optional

import keras

from densevision.backbones.api import build_backbone  # importing it registers every backbone family
from densevision.layers.padding import CropLike
from densevision.layers.preprocessing import Preprocess
from densevision.layers.residual import (
    DEFAULT_BN_EPSILON, DEFAULT_BN_MOMENTUM, INITIALIZERS, batch_norm, conv, residual,
)
from densevision.registry import MODELS

#: Network stride: the heatmaps are ``(H / 4, W / 4)``.
OUTPUT_STRIDE = 4
STEM_FILTERS = 64
STEM_RESIDUAL_FILTERS = 128


def _check_int(key: str, value, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"stacked_hourglass: {key} must be an int >= {minimum}, got {value!r}")


def check_input_shape(input_shape) -> tuple:
    """``input_shape`` as a tuple ``(H, W, 3)`` (H, W None or multiples of 4), else a ValueError saying why."""
    shape = tuple(input_shape) if isinstance(input_shape, (list, tuple)) else None
    if shape is None or len(shape) != 3 or shape[2] != 3:
        raise ValueError(f"stacked_hourglass: input_shape must be (H, W, 3), got {input_shape!r}")
    for axis, size in zip(("height", "width"), shape[:2]):
        if size is None:
            continue
        if isinstance(size, bool) or not isinstance(size, int) or size < OUTPUT_STRIDE or size % OUTPUT_STRIDE:
            raise ValueError(
                f"stacked_hourglass: input {axis} {size!r} (input_shape {shape}) must be a positive multiple of "
                f"{OUTPUT_STRIDE}, the network's stride, so the heatmaps are exactly (H/4, W/4)"
            )
    return shape


def hourglass_module(x, depth: int, filters: int, *, num_modules: int, name: str, **residual_options):
    """One hourglass of ``depth`` levels, recursive as in the Torch code: ``(B, h, w, F) -> (B, h, w, F)``.

    Layer names: ``{name}{level}_...`` with level ``depth`` outermost (``stack1_hg4_up1_conv1``, ...).
    """
    level = f"{name}{depth}"

    def residuals(y, part: str):
        for index in range(1, num_modules + 1):
            y = residual(y, filters, name=f"{level}_{part}{index}", **residual_options)
        return y

    upper = residuals(x, "up")
    # "same": an odd map pools to ceil(h / 2) cells; the crop below cuts the up-sampled extra row/column
    lower = keras.layers.MaxPooling2D(2, padding="same", name=f"{level}_pool")(x)
    lower = residuals(lower, "down")
    if depth > 1:
        lower = hourglass_module(lower, depth - 1, filters, num_modules=num_modules, name=name, **residual_options)
    else:
        lower = residuals(lower, "bottom")
    lower = residuals(lower, "low")
    lower = keras.layers.UpSampling2D(2, interpolation="nearest", name=f"{level}_upsample")(lower)
    lower = CropLike(name=f"{level}_crop")([lower, upper])
    return keras.layers.Add(name=f"{level}_add")([upper, lower])


@MODELS.register("stacked_hourglass")
def stacked_hourglass(
    num_stacks: int = 2,
    num_features: int = 256,
    num_joints: int = 16,
    depth: int = 4,
    num_modules: int = 1,
    input_shape: tuple[Optional[int], Optional[int], int] = (None, None, 3),
    backbone: Optional[str] = None,
    weights: Optional[str] = None,
    zero_init_heads: bool = True,
    initializer: Literal["torch", "he_uniform"] = "torch",
    bn_momentum: float = DEFAULT_BN_MOMENTUM,
    bn_epsilon: float = DEFAULT_BN_EPSILON,
    synchronized_bn: bool = False,
    name: str = "stacked_hourglass",
) -> keras.Model:
    """Stacked hourglass: images ``(B, H, W, 3)`` RGB [0, 255] -> list of ``num_stacks`` ``(B, H/4, W/4, J)``.

    Args:
        num_stacks: hourglasses in sequence, each supervised (the paper: 8; 2 for quick runs).
        num_features: F, the channels through the hourglasses (256). Even.
        num_joints: J, heatmaps per stack.
        depth: levels (2x poolings) per hourglass (4: 64x64 heatmaps down to 4x4).
        num_modules: residual modules at each place of the hourglass and after it (the Torch code's
            ``nModules``, 1).
        input_shape: ``(H, W, 3)``; None for any size. H and W must be multiples of 4 (checked here when given;
            an unknown size that is not gives ``ceil(H / 4) x ceil(W / 4)`` heatmaps).
        backbone: a registered backbone name (``resnet50``, ...) whose stride-4 feature P2, through one residual
            to F channels, replaces the stem; None for the original stem.
        weights: the backbone's weights (None, ``"imagenet"`` or a file path); only with ``backbone``.
        zero_init_heads: each stack's heatmap conv starts at zero (kernel and bias), so every initial output is
            exactly 0 and the loss starts at that of an all-zero prediction. A plain-initialised 2-stack model
            spent a 600-step CPU run shrinking its random initial outputs and never beat the all-zero loss;
            zero heads (with Adam and sigma 2) learned. False: the original initialisation.
        initializer: ``"torch"`` (the original code's: Torch7's default, uniform +-1/sqrt(fan_in) kernels and
            biases) or ``"he_uniform"`` (zero biases), for every conv the model builds (not the backbone's).
        bn_momentum, bn_epsilon: BatchNormalization settings; the defaults are Torch's (momentum 0.1 on the new
            batch = Keras 0.9, epsilon 1e-5).
        synchronized_bn: batch statistics over all replicas under tf.distribute.
        name: the Keras model's name.

    Returns:
        ``keras.Model`` with outputs ``[stack1_heatmaps, ..., stack{S}_heatmaps]``, each float32
        ``(B, H/4, W/4, num_joints)`` even under mixed precision; calling it returns a list, one-element for
        one stack.
    """
    for key, value, minimum in (("num_stacks", num_stacks, 1), ("num_features", num_features, 2),
                                ("num_joints", num_joints, 1), ("depth", depth, 1),
                                ("num_modules", num_modules, 1)):
        _check_int(key, value, minimum)
    if num_features % 2:
        raise ValueError(f"stacked_hourglass: num_features must be even (the residual halves it), got {num_features}")
    if initializer not in INITIALIZERS:
        raise ValueError(
            f"stacked_hourglass: initializer must be one of {', '.join(INITIALIZERS)}, got {initializer!r}"
        )
    if not 0.0 <= bn_momentum < 1.0:
        raise ValueError(f"stacked_hourglass: bn_momentum must be in [0, 1), got {bn_momentum!r}")
    if weights is not None and backbone is None:
        raise ValueError(f"stacked_hourglass: weights={weights!r} needs a backbone (the original stem has none)")
    input_shape = check_input_shape(input_shape)
    residual_options = dict(
        bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, bn_synchronized=synchronized_bn, initializer=initializer
    )
    bn_options = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, bn_synchronized=synchronized_bn)

    images = keras.Input(input_shape, name="image")
    if backbone is None:
        # Trained from scratch: any fixed standardisation works (the original fed [0, 1]); the ImageNet mean/std
        # keeps the first conv's inputs near zero mean and unit variance.
        x = Preprocess("torch", name="preprocess")(images)
        # Torch pads the 7x7/2 conv by 3 on every side (Keras' "same" would pad 2 before, 3 after)
        x = keras.layers.ZeroPadding2D(3, name="stem_pad")(x)
        x = conv(x, STEM_FILTERS, 7, strides=2, padding="valid", name="stem_conv", initializer=initializer)
        x = batch_norm(x, name="stem_bn", **bn_options)
        x = keras.layers.Activation("relu", name="stem_relu")(x)
        x = residual(x, STEM_RESIDUAL_FILTERS, name="stem_res1", **residual_options)
        x = keras.layers.MaxPooling2D(2, padding="same", name="stem_pool")(x)
        x = residual(x, STEM_RESIDUAL_FILTERS, name="stem_res2", **residual_options)
        x = residual(x, num_features, name="stem_res3", **residual_options)
    else:
        full = build_backbone(backbone, weights=weights, input_shape=input_shape)
        # Only P2 (stride 4) is used: a sub-model stops the backbone there, so P3..P5 are neither run nor counted.
        stride4 = keras.Model(full.input, full.output["P2"], name=f"{backbone}_p2")
        x = residual(stride4(images), num_features, name="stem_res3", **residual_options)

    outputs = []
    for stack in range(1, num_stacks + 1):
        prefix = f"stack{stack}"
        y = hourglass_module(x, depth, num_features, num_modules=num_modules, name=f"{prefix}_hg", **residual_options)
        for index in range(1, num_modules + 1):
            y = residual(y, num_features, name=f"{prefix}_res{index}", **residual_options)
        # the Torch code's "linear layer": 1x1 conv - BN - ReLU
        y = conv(y, num_features, 1, name=f"{prefix}_lin_conv", initializer=initializer)
        y = batch_norm(y, name=f"{prefix}_lin_bn", **bn_options)
        y = keras.layers.Activation("relu", name=f"{prefix}_lin_relu")(y)
        if zero_init_heads:
            heatmaps = keras.layers.Conv2D(
                num_joints, 1, kernel_initializer="zeros", bias_initializer="zeros", name=f"{prefix}_heatmap_conv"
            )(y)
        else:
            heatmaps = conv(y, num_joints, 1, name=f"{prefix}_heatmap_conv", initializer=initializer)
        outputs.append(keras.layers.Activation("linear", dtype="float32", name=f"{prefix}_heatmaps")(heatmaps))
        if stack < num_stacks:
            # predictions and features re-mapped to F channels and added to this stack's input
            features_back = conv(y, num_features, 1, name=f"{prefix}_remap_features", initializer=initializer)
            heatmaps_back = conv(heatmaps, num_features, 1, name=f"{prefix}_remap_heatmaps", initializer=initializer)
            x = keras.layers.Add(name=f"{prefix}_next_input")([x, features_back, heatmaps_back])
    # Keras returns a bare tensor for a one-output model (Functional unpacks one-element lists); the nested list
    # makes a 1-stack model return a one-element list too, so ``outputs[-1]`` is always the prediction.
    return keras.Model(images, outputs if num_stacks > 1 else [outputs], name=name)


__all__ = ["stacked_hourglass", "hourglass_module", "check_input_shape", "OUTPUT_STRIDE"]
