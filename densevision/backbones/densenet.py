"""DenseNet121 / 169 / 201 (Huang et al. 2017) with keras.applications' layer names and weight shapes.

Features (timm ``features_only``: the stem activation, each dense block's output before its transition, and
the final ``bn`` + ``relu``):

====  ==============================  ======
key   layer                           stride
====  ==============================  ======
P1    conv1_relu                      2
P2    conv2_block6_concat             4
P3    conv3_block12_concat            8
P4    conv4_block{24,32,48}_concat    16
P5    relu (= include_top=False)      32
====  ==============================  ======

Output stride 16 / 8: a transition that loses its stride replaces ``AveragePooling2D(2, strides=2)`` by the
stride-1 :class:`~densevision.backbones.common.DilatedAveragePooling2D` (same name, ``pool4_pool``, no weights)
and the 3x3 convolutions of the following dense block get dilation 2 (x2 again for a later stage). This
reproduces the strided network exactly: ``P5[:, ::2, ::2]`` at output stride 16 equals P5 at 32.
The two stem paddings, unnamed in keras.applications, are named ``conv1_pad`` and ``pool1_pad`` (no weights).
Preprocessing: ``"torch"``.
"""

from __future__ import annotations

from keras import layers

from densevision.backbones.common import DilatedAveragePooling2D, feature_model, image_input
from densevision.backbones.common import stage_plans
from densevision.backbones.weights import load_backbone_weights
from densevision.registry import BACKBONES

# conv blocks in dense blocks conv2..conv5
DENSENET_BLOCKS = {"densenet121": (6, 12, 24, 16), "densenet169": (6, 12, 32, 32), "densenet201": (6, 12, 48, 32)}
GROWTH_RATE = 32
COMPRESSION = 0.5  # transitions halve the channels
BN_EPSILON = 1.001e-5


def dense_conv_block(x, dilation: int, name: str):
    """BN-ReLU-1x1 (4k) -BN-ReLU-3x3 (k, dilation) appended to the input: ``(B, H, W, C)`` -> ``(.., C + k)``."""
    y = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_0_bn")(x)
    y = layers.Activation("relu", name=f"{name}_0_relu")(y)
    y = layers.Conv2D(4 * GROWTH_RATE, 1, use_bias=False, name=f"{name}_1_conv")(y)
    y = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_1_bn")(y)
    y = layers.Activation("relu", name=f"{name}_1_relu")(y)
    y = layers.Conv2D(
        GROWTH_RATE, 3, padding="same", use_bias=False, dilation_rate=dilation, name=f"{name}_2_conv"
    )(y)
    return layers.Concatenate(name=f"{name}_concat")([x, y])


def transition_block(x, stride: int, dilation: int, name: str):
    """BN-ReLU-1x1 (C/2) then 2x2 average pooling: ``(B, H, W, C)`` -> ``(B, H/stride, W/stride, C/2)``.

    With ``stride=1`` the pooling is the a-trous equivalent, its taps ``dilation`` apart (the dilation already in
    effect on this grid).
    """
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_bn")(x)
    x = layers.Activation("relu", name=f"{name}_relu")(x)
    x = layers.Conv2D(int(x.shape[-1] * COMPRESSION), 1, use_bias=False, name=f"{name}_conv")(x)
    if stride == 2:
        return layers.AveragePooling2D(2, strides=2, name=f"{name}_pool")(x)
    return DilatedAveragePooling2D(dilation, name=f"{name}_pool")(x)


def build_densenet(
    name: str, weights=None, output_stride: int = 32, input_shape=(None, None, 3), preprocess=True
):
    """DenseNet trunk ``(B, H, W, 3)`` RGB [0, 255] -> ``{"P1": (B, H/2, W/2, 64), ..., "P5": (B, H/32, W/32,
    1024 | 1664 | 1920)}`` (strides per ``output_stride``, see the module docstring)."""
    if name not in DENSENET_BLOCKS:
        raise ValueError(f"unknown DenseNet {name!r}; expected one of {sorted(DENSENET_BLOCKS)}")
    plans = stage_plans(output_stride)
    inputs, x = image_input(input_shape, "torch" if preprocess else None)
    x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
    x = layers.Conv2D(64, 7, strides=2, use_bias=False, name="conv1_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    features = {"P1": x}
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1")(x)

    dilation = 1  # dilation in effect on the current grid
    for stage, blocks in enumerate(DENSENET_BLOCKS[name], start=2):
        key = f"P{stage}"
        if stage >= 3:  # the transition pool{stage-1} downsamples into this stage
            stride = plans[key].stride if key in plans else 2
            x = transition_block(x, stride, dilation, name=f"pool{stage - 1}")
            if key in plans:
                dilation = plans[key].dilation
        for block in range(1, blocks + 1):
            x = dense_conv_block(x, dilation, name=f"conv{stage}_block{block}")
        if stage < 5:
            features[key] = x  # the dense block's output, before its transition
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="bn")(x)
    features["P5"] = layers.Activation("relu", name="relu")(x)
    model = feature_model(inputs, features, name=name)
    return load_backbone_weights(model, name, weights)


@BACKBONES.register("densenet121")
def densenet121(weights=None, output_stride: int = 32, input_shape=(None, None, 3), preprocess: bool = True):
    """DenseNet121 backbone (7,037,504 parameters); see :func:`build_densenet`."""
    return build_densenet("densenet121", weights, output_stride, input_shape, preprocess)


@BACKBONES.register("densenet169")
def densenet169(weights=None, output_stride: int = 32, input_shape=(None, None, 3), preprocess: bool = True):
    """DenseNet169 backbone; see :func:`build_densenet`."""
    return build_densenet("densenet169", weights, output_stride, input_shape, preprocess)


@BACKBONES.register("densenet201")
def densenet201(weights=None, output_stride: int = 32, input_shape=(None, None, 3), preprocess: bool = True):
    """DenseNet201 backbone; see :func:`build_densenet`."""
    return build_densenet("densenet201", weights, output_stride, input_shape, preprocess)
