"""Yu & Koltun's dilated network ("Multi-Scale Context Aggregation by Dilated Convolutions", ICLR 2016):
a dilated front end at output stride 8, the context module, bilinear upsampling to the input size.

Registered model (``MODELS``): ``dilation``.

Front end on VGG16 (the paper's): ``block4_pool`` and ``block5_pool`` removed, conv5 dilated 2 (the backbone
does this at ``output_stride=8``), then fc6 as a 7x7 convolution with 4096 filters and dilation 4, fc7 as a 1x1
convolution with 4096 filters, each followed by ReLU and dropout 0.5, then a 1x1 convolution to C class maps.
The fc layers carry keras.applications' names ``fc1`` and ``fc2``, so the ImageNet classifier's weights map onto
them by name with a reshape (:func:`vgg16_fc_to_conv_weights`): ``fc1`` kernel ``(25088, 4096)`` ->
``(7, 7, 512, 4096)`` (Flatten of a ``(7, 7, 512)`` map is row-major, channels last) and ``fc2`` ``(4096, 4096)``
-> ``(1, 1, 4096, 4096)``; biases unchanged.

On other backbones (ResNet50, DenseNet121, ...) a 3x3 convolution (dilation ``32 / output_stride``, as the
stage-5 convolutions of a dilated backbone) and a 1x1 convolution, ``fc_filters`` wide (default 512), stand in
for fc6/fc7.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

import keras

from densevision.backbones.api import build_backbone, freeze_backbone
from densevision.layers.context import CONTEXT_WIDTHS, context_module
from densevision.layers.padding import CropLike, DynamicUpSampling2D, PadToMultiple
from densevision.registry import MODELS

CONTEXT_CHOICES = ("none", *CONTEXT_WIDTHS)
VGG_FC_FILTERS = 4096
DEFAULT_FC_FILTERS = 512
VGG_FC6_KERNEL = 7


def _is_vgg(backbone: str) -> bool:
    return backbone.startswith("vgg")


@MODELS.register("dilation")
def dilation(
    num_classes: int,
    backbone: str = "vgg16",
    weights: Optional[str] = None,
    context: str = "basic",
    freeze: Optional[str] = None,
    output_stride: int = 8,
    fc_filters: Optional[int] = None,
    fc_dropout: float = 0.5,
    context_noise: Optional[float] = None,
    name: Optional[str] = None,
) -> keras.Model:
    """Dilated front end + context module: images ``(B, H, W, 3)`` RGB [0, 255] -> logits ``(B, H, W, K)``.

    Args:
        num_classes: K = C, the number of class maps (also the context module's width unit).
        backbone: a registered backbone name (``vgg16`` as in the paper, ``resnet50``, ``densenet121``, ...).
        weights: backbone weights: None, ``"imagenet"`` or a file path.
        context: ``"basic"``, ``"large"`` (Table 1 of the paper) or ``"none"`` (front end only).
        freeze: freeze the backbone before this stage (``freeze_backbone``), ``"all"``, or None.
        output_stride: 8 (the paper), 16 or 32; the logits are upsampled bilinearly by this factor.
        fc_filters: width of fc6/fc7 (default 4096 on VGG, 512 on other backbones).
        fc_dropout: dropout after fc6 and fc7 (VGG's 0.5).
        context_noise: identity-init noise of the context module relative to ``C / c_out`` (default: 0 basic,
            1e-3 large; see :class:`densevision.layers.context.ContextIdentity`).
        name: the Keras model's name (default ``dilation_{context}_{backbone}``).
    """
    if not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes: expected a positive int, got {num_classes!r}")
    if context not in CONTEXT_CHOICES:
        raise ValueError(f"context: expected one of {', '.join(CONTEXT_CHOICES)}, got {context!r}")
    if not 0.0 <= fc_dropout < 1.0:
        raise ValueError(f"fc_dropout: expected a rate in [0, 1), got {fc_dropout!r}")
    if fc_filters is not None and fc_filters < 1:
        raise ValueError(f"fc_filters: expected a positive int, got {fc_filters!r}")
    backbone_model = build_backbone(backbone, weights=weights, output_stride=output_stride)
    if freeze:
        freeze_backbone(backbone_model, freeze)
    # fc6 sits behind pool5: every stride removed before it doubles its dilation (4 at output stride 8)
    fc_dilation = 32 // output_stride

    images = keras.Input((None, None, 3), name="image")
    padded = PadToMultiple(output_stride, name="pad")(images)
    x = backbone_model(padded)["P5"]
    if _is_vgg(backbone):
        fc6 = dict(filters=fc_filters or VGG_FC_FILTERS, kernel_size=VGG_FC6_KERNEL, name="fc1")
        fc7 = dict(filters=fc_filters or VGG_FC_FILTERS, kernel_size=1, name="fc2")
    else:
        fc6 = dict(filters=fc_filters or DEFAULT_FC_FILTERS, kernel_size=3, name="head_conv1")
        fc7 = dict(filters=fc_filters or DEFAULT_FC_FILTERS, kernel_size=1, name="head_conv2")
    x = keras.layers.Conv2D(padding="same", dilation_rate=fc_dilation, activation="relu", **fc6)(x)
    x = keras.layers.Dropout(fc_dropout, name=f"{fc6['name']}_drop")(x)
    x = keras.layers.Conv2D(padding="same", activation="relu", **fc7)(x)
    x = keras.layers.Dropout(fc_dropout, name=f"{fc7['name']}_drop")(x)
    x = keras.layers.Conv2D(
        num_classes, 1, dtype="float32" if context == "none" else None, name="front_end_logits"
    )(x)
    if context != "none":
        x = context_module(x, num_classes, context, relative_noise=context_noise, name="context")
    x = DynamicUpSampling2D(output_stride, interpolation="bilinear", dtype="float32", name="upsample")(x)
    logits = CropLike(dtype="float32", name="crop")([x, images])
    return keras.Model(images, logits, name=name or f"dilation_{context}_{backbone}")


def vgg16_fc_to_conv_weights(fc1_weights, fc2_weights, fc6_input_channels: int = 512):
    """Reshape keras.applications VGG16 ``fc1``/``fc2`` Dense weights for the ``fc1``/``fc2`` convolutions here.

    Args:
        fc1_weights: ``[kernel (7 * 7 * 512, 4096), bias (4096,)]`` (``vgg.get_layer("fc1").get_weights()``).
        fc2_weights: ``[kernel (4096, 4096), bias (4096,)]``.

    Returns:
        ``(fc1, fc2)`` weight lists with kernels ``(7, 7, 512, 4096)`` and ``(1, 1, 4096, 4096)``, ready for
        ``model.get_layer("fc1").set_weights(fc1)``.
    """
    kernel1, bias1 = fc1_weights
    kernel2, bias2 = fc2_weights
    expected = VGG_FC6_KERNEL * VGG_FC6_KERNEL * fc6_input_channels
    if kernel1.shape[0] != expected:
        raise ValueError(f"fc1 kernel has {kernel1.shape[0]} inputs, expected 7 * 7 * {fc6_input_channels} = {expected}")
    # Flatten of (7, 7, 512) channels-last is row-major: index = (row * 7 + col) * 512 + channel
    conv1 = np.reshape(kernel1, (VGG_FC6_KERNEL, VGG_FC6_KERNEL, fc6_input_channels, kernel1.shape[1]))
    conv2 = np.reshape(kernel2, (1, 1, *kernel2.shape))
    return [conv1, bias1], [conv2, bias2]
