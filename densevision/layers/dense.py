"""Dense blocks, transitions down and up: the parts of the FC-DenseNet ("Tiramisu", Jégou et al. 2017).

Functional helpers that wire built-in Keras layers (BatchNormalization, Conv2D, Dropout, MaxPooling2D,
Conv2DTranspose, Concatenate), so models built from them save and load without custom layers.

Facts from the paper: a *layer* is BN -> ReLU -> 3x3 conv with ``growth_rate`` filters -> dropout 0.2; each
layer sees the concatenation of the block input and all earlier layers' outputs; a *transition down* is
BN -> ReLU -> 1x1 conv keeping the channel count -> dropout -> 2x2 max pool; a *transition up* is a 3x3
transposed convolution with stride 2 applied only to the new feature maps of the block below, then
concatenated with the skip connection of the same resolution.
"""

from __future__ import annotations

import keras

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
