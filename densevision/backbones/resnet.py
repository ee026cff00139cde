"""ResNet50 / 101 / 152 v1 (He et al. 2016) with keras.applications' layer names and weight shapes.

Keras' (Caffe-style) v1 block puts the stride on the first 1x1 convolution and uses biases in every conv.

Features (timm ``features_only``: the stem activation and each stage's output):

====  =====================================  ======
key   layer                                  stride
====  =====================================  ======
P1    conv1_relu                             2
P2    conv2_block3_out                       4
P3    conv3_block{4,4,8}_out                 8
P4    conv4_block{6,23,36}_out               16
P5    conv5_block3_out (= include_top=False) 32
====  =====================================  ======

Output stride 16 / 8: the stage that loses its stride runs its first 1x1 (and shortcut) convolution with
stride 1 and every 3x3 convolution of the stage with dilation 2 (x2 again for a later stage). Because the stride
sat on a 1x1 convolution, this reproduces the strided network exactly: ``P5[:, ::2, ::2]`` at output stride 16
equals P5 at 32 (a trous, Holschneider et al. 1989). Preprocessing: ``"caffe"``.
"""

from __future__ import annotations

from keras import layers

from densevision.backbones.common import feature_model, image_input, stage_plans
from densevision.backbones.weights import load_backbone_weights
from densevision.registry import BACKBONES

# residual blocks in stages conv2..conv5
RESNET_BLOCKS = {"resnet50": (3, 4, 6, 3), "resnet101": (3, 4, 23, 3), "resnet152": (3, 8, 36, 3)}
BN_EPSILON = 1.001e-5  # keras.applications' value (Caffe's)


def bottleneck_block(x, filters: int, stride: int, dilation: int, conv_shortcut: bool, name: str):
    """One v1 bottleneck ``1x1 (stride) -> 3x3 (dilation) -> 1x1 (4 * filters)`` + shortcut, then ReLU.

    ``(B, H, W, C)`` -> ``(B, H / stride, W / stride, 4 * filters)``.
    """
    if conv_shortcut:
        shortcut = layers.Conv2D(4 * filters, 1, strides=stride, name=f"{name}_0_conv")(x)
        shortcut = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_0_bn")(shortcut)
    else:
        shortcut = x
    x = layers.Conv2D(filters, 1, strides=stride, name=f"{name}_1_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_1_bn")(x)
    x = layers.Activation("relu", name=f"{name}_1_relu")(x)
    x = layers.Conv2D(filters, 3, padding="same", dilation_rate=dilation, name=f"{name}_2_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_2_bn")(x)
    x = layers.Activation("relu", name=f"{name}_2_relu")(x)
    x = layers.Conv2D(4 * filters, 1, name=f"{name}_3_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name=f"{name}_3_bn")(x)
    x = layers.Add(name=f"{name}_add")([shortcut, x])
    return layers.Activation("relu", name=f"{name}_out")(x)


def build_resnet(name: str, weights=None, output_stride: int = 32, input_shape=(None, None, 3), preprocess=True):
    """ResNet v1 trunk ``(B, H, W, 3)`` RGB [0, 255] -> ``{"P1": (B, H/2, W/2, 64), "P2": (.., 256),
    "P3": (.., 512), "P4": (.., 1024), "P5": (B, H/32, W/32, 2048)}`` (strides per ``output_stride``)."""
    if name not in RESNET_BLOCKS:
        raise ValueError(f"unknown ResNet {name!r}; expected one of {sorted(RESNET_BLOCKS)}")
    plans = stage_plans(output_stride)
    inputs, x = image_input(input_shape, "caffe" if preprocess else None)
    x = layers.ZeroPadding2D(3, name="conv1_pad")(x)
    x = layers.Conv2D(64, 7, strides=2, name="conv1_conv")(x)
    x = layers.BatchNormalization(epsilon=BN_EPSILON, name="conv1_bn")(x)
    x = layers.Activation("relu", name="conv1_relu")(x)
    features = {"P1": x}
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)

    stage_settings = {  # feature key -> (first stride, dilation); conv2 is downsampled by pool1 instead
        "P2": (1, 1),
        "P3": (2, 1),
        "P4": (plans["P4"].stride, plans["P4"].dilation),
        "P5": (plans["P5"].stride, plans["P5"].dilation),
    }
    for stage, (key, blocks, filters) in enumerate(
        zip(("P2", "P3", "P4", "P5"), RESNET_BLOCKS[name], (64, 128, 256, 512)), start=2
    ):
        stride, dilation = stage_settings[key]
        for block in range(1, blocks + 1):
            x = bottleneck_block(
                x, filters, stride=stride if block == 1 else 1, dilation=dilation,
                conv_shortcut=block == 1, name=f"conv{stage}_block{block}",
            )
        features[key] = x
    model = feature_model(inputs, features, name=name)
    return load_backbone_weights(model, name, weights)


@BACKBONES.register("resnet50")
def resnet50(weights=None, output_stride: int = 32, input_shape=(None, None, 3), preprocess: bool = True):
    """ResNet50 backbone (23,587,712 parameters); see :func:`build_resnet`."""
    return build_resnet("resnet50", weights, output_stride, input_shape, preprocess)


@BACKBONES.register("resnet101")
def resnet101(weights=None, output_stride: int = 32, input_shape=(None, None, 3), preprocess: bool = True):
    """ResNet101 backbone; see :func:`build_resnet`."""
    return build_resnet("resnet101", weights, output_stride, input_shape, preprocess)


@BACKBONES.register("resnet152")
def resnet152(weights=None, output_stride: int = 32, input_shape=(None, None, 3), preprocess: bool = True):
    """ResNet152 backbone; see :func:`build_resnet`."""
    return build_resnet("resnet152", weights, output_stride, input_shape, preprocess)
