"""The bottleneck residual module of the stacked hourglass (Newell et al., ECCV 2016), as in the original Torch
code (``umich-vl/pose-hg-train``, ``src/models/layers/Residual.lua``).

Main branch: BN -> ReLU -> 1x1 conv (out/2) -> BN -> ReLU -> 3x3 conv (out/2) -> BN -> ReLU -> 1x1 conv (out);
skip branch: the identity, or a 1x1 conv when the channel counts differ; the two are added. Every conv has a
bias (Torch's ``SpatialConvolution`` always does). Functional helpers wiring built-in Keras layers only, so models
built from them save and load without custom layers.
"""

from __future__ import annotations

import math

import keras

#: Keras ``momentum`` weighs the *old* running average: Torch's ``SpatialBatchNormalization`` (momentum 0.1 on the
#: new batch) is Keras 0.9. Keras' default 0.99 left inference statistics stale in short CPU trainings (FACTS).
DEFAULT_BN_MOMENTUM = 0.9
#: Torch's ``SpatialBatchNormalization`` epsilon.
DEFAULT_BN_EPSILON = 1e-5

INITIALIZERS = ("torch", "he_uniform")


def conv_initializers(fan_in: int, initializer: str = "torch"):
    """``(kernel_initializer, bias_initializer)`` for a conv with ``fan_in = k * k * C_in`` inputs per output.

    ``"torch"``: Torch7's default ``SpatialConvolution:reset()``, used unchanged by the original hourglass code:
    kernel and bias uniform in ``[-1 / sqrt(fan_in), 1 / sqrt(fan_in)]``. ``"he_uniform"``: Keras' He uniform
    kernels, zero biases.
    """
    if initializer == "torch":
        limit = 1.0 / math.sqrt(fan_in)
        return keras.initializers.RandomUniform(-limit, limit), keras.initializers.RandomUniform(-limit, limit)
    if initializer == "he_uniform":
        return "he_uniform", "zeros"
    raise ValueError(f"initializer: expected one of {', '.join(INITIALIZERS)}, got {initializer!r}")


def conv(x, filters: int, kernel_size: int, *, name: str, strides: int = 1, padding: str = "same",
         initializer: str = "torch"):
    """Conv2D with bias, initialised per :func:`conv_initializers`: ``(B, H, W, C) -> (B, H/s, W/s, filters)``."""
    fan_in = kernel_size * kernel_size * int(x.shape[-1])
    kernel_init, bias_init = conv_initializers(fan_in, initializer)
    return keras.layers.Conv2D(
        filters, kernel_size, strides=strides, padding=padding, kernel_initializer=kernel_init,
        bias_initializer=bias_init, name=name,
    )(x)


def batch_norm(x, *, name: str, bn_momentum: float = DEFAULT_BN_MOMENTUM, bn_epsilon: float = DEFAULT_BN_EPSILON,
               bn_synchronized: bool = False):
    """BatchNormalization with Torch's momentum and epsilon by default: ``(B, H, W, C) -> (B, H, W, C)``."""
    return keras.layers.BatchNormalization(
        momentum=bn_momentum, epsilon=bn_epsilon, synchronized=bn_synchronized, name=name
    )(x)


def residual(
    x,
    filters: int,
    *,
    name: str,
    bn_momentum: float = DEFAULT_BN_MOMENTUM,
    bn_epsilon: float = DEFAULT_BN_EPSILON,
    bn_synchronized: bool = False,
    initializer: str = "torch",
):
    """Pre-activation bottleneck residual module: ``(B, H, W, C) -> (B, H, W, filters)``.

    Args:
        x: a Keras tensor with a known channel count.
        filters: output channels (even: the bottleneck has ``filters // 2``).
        name: prefix of the module's layer names (``{name}_bn1``, ``{name}_conv1``, ..., ``{name}_skip``,
            ``{name}_add``).
        bn_momentum, bn_epsilon: BatchNormalization settings (Torch's by default).
        bn_synchronized: batch statistics over all replicas under tf.distribute.
        initializer: ``"torch"`` (the original code's) or ``"he_uniform"``, see :func:`conv_initializers`.

    Parameters: ``BN(C) + conv1x1(C, F/2) + BN(F/2) + conv3x3(F/2, F/2) + BN(F/2) + conv1x1(F/2, F)``, plus
    ``conv1x1(C, F)`` when ``C != F``; 214,528 trainable at ``C = F = 256``.
    """
    if isinstance(filters, bool) or not isinstance(filters, int) or filters < 2 or filters % 2:
        raise ValueError(f"residual {name!r}: filters must be an even int >= 2, got {filters!r}")
    in_channels = x.shape[-1]
    if in_channels is None:
        raise ValueError(f"residual {name!r}: the input's channel count must be known, got shape {x.shape}")
    bn = dict(bn_momentum=bn_momentum, bn_epsilon=bn_epsilon, bn_synchronized=bn_synchronized)
    half = filters // 2

    y = x
    for index, (width, kernel) in enumerate(((half, 1), (half, 3), (filters, 1)), start=1):
        y = batch_norm(y, name=f"{name}_bn{index}", **bn)
        y = keras.layers.Activation("relu", name=f"{name}_relu{index}")(y)
        y = conv(y, width, kernel, name=f"{name}_conv{index}", initializer=initializer)

    # The original adds a skip convolution only when the widths differ (one PyTorch port always builds one,
    # unused, which is why it counts ~32.8M parameters for 8 stacks instead of 25.4M).
    skip = x if in_channels == filters else conv(x, filters, 1, name=f"{name}_skip", initializer=initializer)
    return keras.layers.Add(name=f"{name}_add")([y, skip])


__all__ = ["residual", "conv", "batch_norm", "conv_initializers", "DEFAULT_BN_MOMENTUM", "DEFAULT_BN_EPSILON"]
