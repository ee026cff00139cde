"""VGG16 / VGG19 (Simonyan & Zisserman 2015) with keras.applications' layer names and weight shapes.

Features (timm ``features_only`` style: the last activation before each downsampling; stride 32 is the pooled
output, the same tensor as ``keras.applications.VGG16(include_top=False)``):

====  ======================  ======
key   layer                   stride
====  ======================  ======
P1    block2_conv2            2
P2    block3_conv3 (_conv4)   4
P3    block4_conv3 (_conv4)   8
P4    block5_conv3 (_conv4)   16
P5    block5_pool             32
====  ======================  ======

(VGG19 names in brackets.) Output stride follows Yu & Koltun's front-end: at 16, ``block5_pool`` is removed, so
P5 is P4 (an ``Identity`` named ``block5_pool_removed``); at 8, ``block4_pool`` is removed too and the conv5
convolutions get dilation 2. Removing a max pool is not exactly equivalent to the strided network (as in the
paper, fine-tuning adapts), unlike ResNet and DenseNet where the dilated network reproduces it exactly.
Preprocessing: ``"caffe"``.
"""

from __future__ import annotations

from keras import layers

from densevision.backbones.common import feature_model, image_input, stage_plans
from densevision.backbones.weights import load_backbone_weights
from densevision.registry import BACKBONES

# convolutions per block; every conv is 3x3 "same" + ReLU
VGG_CONVS_PER_BLOCK = {"vgg16": (2, 2, 3, 3, 3), "vgg19": (2, 2, 4, 4, 4)}
VGG_FILTERS = (64, 128, 256, 512, 512)


def build_vgg(name: str, weights=None, output_stride: int = 32, input_shape=(None, None, 3), preprocess=True):
    """VGG trunk ``(B, H, W, 3)`` RGB [0, 255] -> ``{"P1": (B, H/2, W/2, 128), ..., "P5": (B, H/32, W/32, 512)}``
    (strides per ``output_stride``, see the module docstring)."""
    if name not in VGG_CONVS_PER_BLOCK:
        raise ValueError(f"unknown VGG {name!r}; expected one of {sorted(VGG_CONVS_PER_BLOCK)}")
    plans = stage_plans(output_stride)
    inputs, x = image_input(input_shape, "caffe" if preprocess else None)
    features = {}
    for block, (num_convs, filters) in enumerate(zip(VGG_CONVS_PER_BLOCK[name], VGG_FILTERS), start=1):
        # conv5 runs behind pool4; it is dilated when pool4 is removed (output stride 8)
        dilation = plans["P4"].dilation if block == 5 else 1
        for index in range(1, num_convs + 1):
            x = layers.Conv2D(
                filters, 3, padding="same", activation="relu", dilation_rate=dilation,
                name=f"block{block}_conv{index}",
            )(x)
        if block >= 2:
            features[f"P{block - 1}"] = x  # the last activation before this block's pool
        if block == 4 and plans["P4"].stride == 1:
            continue  # pool4 removed
        if block == 5 and plans["P5"].stride == 1:
            x = layers.Identity(name="block5_pool_removed")(x)
        else:
            x = layers.MaxPooling2D(2, strides=2, name=f"block{block}_pool")(x)
    features["P5"] = x
    model = feature_model(inputs, features, name=name)
    return load_backbone_weights(model, name, weights)


@BACKBONES.register("vgg16")
def vgg16(weights=None, output_stride: int = 32, input_shape=(None, None, 3), preprocess: bool = True):
    """VGG16 backbone (14,714,688 parameters); see :func:`build_vgg`."""
    return build_vgg("vgg16", weights, output_stride, input_shape, preprocess)


@BACKBONES.register("vgg19")
def vgg19(weights=None, output_stride: int = 32, input_shape=(None, None, 3), preprocess: bool = True):
    """VGG19 backbone (20,024,384 parameters); see :func:`build_vgg`."""
    return build_vgg("vgg19", weights, output_stride, input_shape, preprocess)
