"""Input normalisation as a layer, so every model takes float32 RGB in [0, 255] and owns its preprocessing.

``Preprocess(mode)`` does what ``keras.applications.imagenet_utils.preprocess_input(x, mode=mode)`` does:

- ``"caffe"`` (VGG, ResNet): RGB -> BGR, then subtract the ImageNet BGR mean ``(103.939, 116.779, 123.68)``;
- ``"torch"`` (DenseNet): ``/ 255``, then subtract the ImageNet RGB mean ``(0.485, 0.456, 0.406)`` and divide by
  the std ``(0.229, 0.224, 0.225)``;
- ``"tf"`` (MobileNet, Inception, ...): scale to ``[-1, 1]``.
"""

from __future__ import annotations

import keras
from keras import ops

CAFFE_BGR_MEAN = (103.939, 116.779, 123.68)
TORCH_RGB_MEAN = (0.485, 0.456, 0.406)
TORCH_RGB_STD = (0.229, 0.224, 0.225)
MODES = ("caffe", "torch", "tf")


@keras.saving.register_keras_serializable(package="densevision")
class Preprocess(keras.layers.Layer):
    """Normalise ``(B, H, W, 3)`` RGB images in [0, 255] the way the backbone's pretrained weights expect.

    Args:
        mode: ``"caffe"``, ``"torch"`` or ``"tf"`` (see the module docstring).

    Input ``(B, H, W, 3)`` float RGB in [0, 255]; output ``(B, H, W, 3)`` in the compute dtype
    (BGR for ``"caffe"``).
    """

    def __init__(self, mode: str = "caffe", **kwargs):
        super().__init__(**kwargs)
        if mode not in MODES:
            raise ValueError(f"Preprocess: unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        self.mode = mode

    def call(self, images):
        x = ops.cast(images, self.compute_dtype)
        if self.mode == "caffe":
            x = ops.flip(x, axis=-1)  # RGB -> BGR: the order Caffe's weights were trained in
            return x - ops.convert_to_tensor(CAFFE_BGR_MEAN, dtype=self.compute_dtype)
        if self.mode == "torch":
            mean = ops.convert_to_tensor(TORCH_RGB_MEAN, dtype=self.compute_dtype)
            std = ops.convert_to_tensor(TORCH_RGB_STD, dtype=self.compute_dtype)
            return (x / 255.0 - mean) / std
        return x / 127.5 - 1.0

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
