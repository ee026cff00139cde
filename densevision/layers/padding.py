"""Pad images to the network stride and crop predictions back, so any input size gives exact full-size logits.

A network that downsamples by 32 and upsamples back only lines its skip connections up when H and W are
multiples of 32 (CamVid's 360x480 is not). :class:`PadToMultiple` pads the bottom and right edges before the
network, :class:`CropLike` cuts the prediction back to the input's size afterwards, so every original pixel
keeps its own prediction and full-resolution evaluation needs no resizing.
"""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops


def _padded(size, multiple: int):
    return None if size is None else -(-size // multiple) * multiple


@keras.saving.register_keras_serializable(package="densevision")
class PadToMultiple(keras.layers.Layer):
    """Zero-pads H and W at the bottom/right up to the next multiple of ``multiple``.

    Input ``(B, H, W, C)`` -> output ``(B, ceil(H / m) * m, ceil(W / m) * m, C)``; sizes already divisible
    are left untouched. Padding at the far edges keeps pixel ``(0, 0)`` in place, so :class:`CropLike`
    recovers the original pixels by slicing.

    Args:
        multiple: positive int, usually the network's output stride (8, 16 or 32).
    """

    def __init__(self, multiple: int, **kwargs):
        super().__init__(**kwargs)
        if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
            raise ValueError(f"PadToMultiple: multiple must be a positive int, got {multiple!r}")
        self.multiple = multiple

    def call(self, inputs):
        # tf.pad, not keras.ops.pad: the latter needs Python ints, and H, W are tensors when unknown in a graph
        shape = tf.shape(inputs)
        pad_h = (-shape[1]) % self.multiple
        pad_w = (-shape[2]) % self.multiple
        return tf.pad(inputs, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])

    def compute_output_shape(self, input_shape):
        batch, height, width, channels = input_shape
        return (batch, _padded(height, self.multiple), _padded(width, self.multiple), channels)

    def get_config(self):
        return {**super().get_config(), "multiple": self.multiple}


@keras.saving.register_keras_serializable(package="densevision")
class CropLike(keras.layers.Layer):
    """Crops a tensor to a reference tensor's H and W, keeping the top-left corner.

    Called on ``[x, reference]``: ``x`` ``(B, H', W', C)`` with ``H' >= H``, ``W' >= W``, ``reference``
    ``(B, H, W, ...)`` -> ``(B, H, W, C)``. The reference contributes only its shape.
    """

    def call(self, inputs):
        if not isinstance(inputs, (list, tuple)) or len(inputs) != 2:
            raise ValueError("CropLike expects [tensor, reference], got a single input")
        x, reference = inputs
        ref_shape = ops.shape(reference)
        return x[:, : ref_shape[1], : ref_shape[2], :]

    def compute_output_shape(self, input_shapes):
        x_shape, ref_shape = input_shapes
        return (x_shape[0], ref_shape[1], ref_shape[2], x_shape[3])

    def get_config(self):
        return super().get_config()


@keras.saving.register_keras_serializable(package="densevision")
class DynamicUpSampling2D(keras.layers.UpSampling2D):
    """``UpSampling2D`` that also works inside ``tf.function`` when H and W are unknown.

    Keras 3.15's bilinear ``UpSampling2D`` tests the symbolic spatial size with a Python ``bool`` and fails in a
    traced training step on ``(None, None)`` inputs; this computes the target size from ``tf.shape`` instead.
    ``(B, H, W, C) -> (B, H * sh, W * sw, C)``, channels_last.
    """

    def call(self, inputs):
        scale = tf.constant(self.size, dtype=tf.int32)
        target = tf.shape(inputs)[1:3] * scale
        method = "bilinear" if self.interpolation == "bilinear" else self.interpolation
        return tf.cast(tf.image.resize(inputs, target, method=method), inputs.dtype)
