"""Pieces shared by the backbone families: output-stride bookkeeping, the input/preprocess stem, the feature
model and a dilated average pooling for DenseNet transitions.

Output stride (Yu & Koltun 2016; DeepLab, Chen et al. 2017): to keep resolution, the last stages trade their
stride-2 downsampling for dilation. Each stage that loses its stride multiplies the dilation of every later
convolution by 2, so the receptive field (in input pixels) of each filter is what it was in the strided network
and the pretrained weights keep their meaning. Weight shapes never change.

============  =========================  =========================  ==========================
output_stride stage 4 (P4)               stage 5 (P5)               strides P1..P5
============  =========================  =========================  ==========================
32            stride 2, dilation 1       stride 2, dilation 1       2, 4, 8, 16, 32
16            stride 2, dilation 1       stride 1, dilation 2       2, 4, 8, 16, 16
8             stride 1, dilation 2       stride 1, dilation 4       2, 4, 8, 8, 8
============  =========================  =========================  ==========================
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
from keras import ops

from densevision.layers.preprocessing import Preprocess

FEATURE_KEYS = ("P1", "P2", "P3", "P4", "P5")
OUTPUT_STRIDES = (8, 16, 32)


@dataclass(frozen=True)
class StagePlan:
    """How one stage downsamples: ``stride`` of its first (downsampling) op and ``dilation`` of its convs."""

    stride: int
    dilation: int


def check_output_stride(output_stride) -> int:
    """Return ``output_stride`` as int if it is 8, 16 or 32; otherwise raise a ValueError saying so."""
    if output_stride not in OUTPUT_STRIDES or isinstance(output_stride, bool):
        raise ValueError(f"output_stride={output_stride!r} is not supported; expected one of 8, 16, 32")
    return int(output_stride)


def stage_plans(output_stride: int) -> dict[str, StagePlan]:
    """``{"P4": StagePlan, "P5": StagePlan}`` for an output stride (table in the module docstring)."""
    output_stride = check_output_stride(output_stride)
    if output_stride == 32:
        return {"P4": StagePlan(2, 1), "P5": StagePlan(2, 1)}
    if output_stride == 16:
        return {"P4": StagePlan(2, 1), "P5": StagePlan(1, 2)}
    return {"P4": StagePlan(1, 2), "P5": StagePlan(1, 4)}


def feature_strides(output_stride: int = 32) -> dict[str, int]:
    """Spatial stride of each feature map, e.g. ``{"P1": 2, ..., "P4": 16, "P5": 16}`` at output stride 16."""
    output_stride = check_output_stride(output_stride)
    return {key: min(2 ** level, output_stride) for level, key in enumerate(FEATURE_KEYS, start=1)}


def image_input(input_shape=(None, None, 3), preprocess_mode: str | None = "caffe"):
    """``(inputs, x)``: a float32 ``(B, H, W, 3)`` image input and, if ``preprocess_mode``, its ``Preprocess``d
    version (else the input itself)."""
    input_shape = tuple(input_shape)
    if len(input_shape) != 3 or input_shape[-1] != 3:
        raise ValueError(
            f"input_shape={input_shape!r}: expected (height, width, 3) RGB, with None for any height/width"
        )
    inputs = keras.Input(shape=input_shape, dtype="float32", name="image")
    x = Preprocess(preprocess_mode, name="preprocess")(inputs) if preprocess_mode else inputs
    return inputs, x


def feature_model(inputs, features: dict, name: str) -> keras.Model:
    """A functional model from ``inputs`` to the dict ``{"P1": ..., "P5": ...}`` (keys checked)."""
    if tuple(features) != FEATURE_KEYS:
        raise ValueError(f"backbone {name!r} built features {tuple(features)}, expected {FEATURE_KEYS}")
    return keras.Model(inputs, dict(features), name=name)


@keras.saving.register_keras_serializable(package="densevision")
class DilatedAveragePooling2D(keras.layers.Layer):
    """Stride-1 2x2 average pooling whose window taps are ``dilation_rate`` pixels apart.

    The a-trous version of ``AveragePooling2D(2, strides=2)``: it takes the same means but keeps every position,
    so ``out[:, ::s, ::s]`` (``s`` = 2 x the dilation) equals the strided pooling of the input at the strided
    network's resolution. Like TensorFlow's ``"same"`` average pooling, taps beyond the bottom/right border are
    left out of the mean. With ``dilation_rate=1`` it is ``AveragePooling2D(2, strides=1, padding="same")``.

    Input and output ``(B, H, W, C)``.
    """

    def __init__(self, dilation_rate: int = 1, **kwargs):
        super().__init__(**kwargs)
        if int(dilation_rate) < 1:
            raise ValueError(f"DilatedAveragePooling2D: dilation_rate must be >= 1, got {dilation_rate!r}")
        self.dilation_rate = int(dilation_rate)

    def call(self, x):
        d = self.dilation_rate
        ones = ops.ones_like(x[..., :1])
        pad = [[0, 0], [0, d], [0, d], [0, 0]]

        def window_sum(t):
            t = ops.pad(t, pad)
            return t[:, :-d, :-d] + t[:, d:, :-d] + t[:, :-d, d:] + t[:, d:, d:]

        return window_sum(x) / window_sum(ones)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "dilation_rate": self.dilation_rate}
