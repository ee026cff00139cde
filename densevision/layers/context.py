"""The context module of Yu & Koltun, "Multi-Scale Context Aggregation by Dilated Convolutions" (ICLR 2016).

A stack of 3x3 convolutions with exponentially growing dilation (1, 1, 2, 4, 8, 16, 1) and a final 1x1, all at
the front end's resolution: the receptive field grows to 67x67 feature-map pixels without losing resolution.
Its input and output are the C class score maps of a front end (Table 1 of the paper):

=================  ===  ===  ===  ===  ===  ===  ===  ===
layer              1    2    3    4    5    6    7    8
=================  ===  ===  ===  ===  ===  ===  ===  ===
convolution        3x3  3x3  3x3  3x3  3x3  3x3  3x3  1x1
dilation           1    1    2    4    8    16   1    1
truncation (ReLU)  yes  yes  yes  yes  yes  yes  yes  no
basic: channels    C    C    C    C    C    C    C    C
large: channels    2C   2C   4C   8C   16C  32C  32C  C
=================  ===  ===  ===  ===  ===  ===  ===  ===

Random initialisation did not train well in the paper; every layer starts as an identity
(:class:`ContextIdentity`), so a fresh module passes non-negative maps through unchanged and training only adds
context on top.
"""

from __future__ import annotations

from typing import Optional

import keras
from keras import ops

CONTEXT_DILATIONS = (1, 1, 2, 4, 8, 16, 1, 1)
CONTEXT_KERNEL_SIZES = (3, 3, 3, 3, 3, 3, 3, 1)
#: output channels per layer, as multiples of C (Table 1)
CONTEXT_WIDTHS = {"basic": (1, 1, 1, 1, 1, 1, 1, 1), "large": (2, 2, 4, 8, 16, 32, 32, 1)}
#: the large module's default noise, relative to the identity weight C / c_out ("sigma << C / c_{i+1}")
DEFAULT_LARGE_NOISE = 1e-3


@keras.saving.register_keras_serializable(package="densevision")
class ContextIdentity(keras.initializers.Initializer):
    """Identity initialisation of a ``(k, k, c_in, c_out)`` kernel between layers of ``c_in`` and ``c_out`` maps.

    Yu & Koltun's eq. (5) (eq. (4) when ``c_in == c_out == C``): with C dividing both widths, input map ``a``
    and output map ``b`` belong to class ``floor(a C / c_in)`` and ``floor(b C / c_out)``; the centre tap
    connects maps of the same class with weight ``C / c_out``, every other weight is ``N(0, sigma^2)`` with
    ``sigma = relative_noise * C / c_out`` (0: exact). Each of the ``c_out / C`` output maps of a class then
    carries ``C / c_out`` of the class's input value, and a layer back to C maps sums them to the input.
    The noise breaks ties between maps of the same class, which would otherwise stay identical in training.

    Args:
        num_classes: C.
        relative_noise: sigma as a fraction of ``C / c_out``.
        seed: int seed for the noise, or None.
    """

    def __init__(self, num_classes: int, relative_noise: float = 0.0, seed: Optional[int] = None):
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"ContextIdentity: num_classes must be a positive int, got {num_classes!r}")
        if relative_noise < 0:
            raise ValueError(f"ContextIdentity: relative_noise must be >= 0, got {relative_noise!r}")
        self.num_classes = num_classes
        self.relative_noise = float(relative_noise)
        self.seed = seed

    def __call__(self, shape, dtype=None):
        kernel_h, kernel_w, c_in, c_out = shape
        classes = self.num_classes
        if c_in % classes or c_out % classes:
            raise ValueError(
                f"ContextIdentity: num_classes={classes} must divide both the input ({c_in}) and output "
                f"({c_out}) channel counts of kernel shape {tuple(shape)}"
            )
        dtype = dtype or "float32"
        identity_weight = classes / c_out
        same_class = ops.equal(
            ops.expand_dims(ops.arange(c_in) * classes // c_in, 1),
            ops.expand_dims(ops.arange(c_out) * classes // c_out, 0),
        )
        centre = ops.where(same_class, identity_weight, 0.0)
        centre_tap = ops.pad(
            ops.reshape(centre, (1, 1, c_in, c_out)),
            [[kernel_h // 2, kernel_h - kernel_h // 2 - 1], [kernel_w // 2, kernel_w - kernel_w // 2 - 1], [0, 0], [0, 0]],
        )
        kernel = ops.cast(centre_tap, dtype)
        if self.relative_noise > 0:
            noise = keras.random.normal(shape, stddev=self.relative_noise * identity_weight, dtype=dtype, seed=self.seed)
            # noise "otherwise": everywhere except the identity entries themselves
            is_identity = ops.cast(ops.not_equal(centre_tap, 0.0), dtype)
            kernel = kernel + noise * (1.0 - is_identity)
        return kernel

    def get_config(self):
        return {"num_classes": self.num_classes, "relative_noise": self.relative_noise, "seed": self.seed}


def context_module(
    x,
    num_classes: int,
    kind: str = "basic",
    relative_noise: Optional[float] = None,
    seed: Optional[int] = None,
    output_dtype: Optional[str] = "float32",
    name: str = "context",
):
    """Yu & Koltun's context module: ``(B, h, w, C)`` class maps -> ``(B, h, w, C)`` refined class maps.

    Args:
        x: the front end's C score maps.
        num_classes: C (must equal the channels of ``x``).
        kind: ``"basic"`` (C maps in every layer) or ``"large"`` (2C .. 32C, Table 1).
        relative_noise: identity-init noise relative to ``C / c_out``; default 0 for basic (eq. 4, where no maps
            share a predecessor) and :data:`DEFAULT_LARGE_NOISE` for large (eq. 5).
        seed: seed for the noise (layer ``i`` uses ``seed + i``), or None.
        output_dtype: dtype of the last (1x1, linear) layer; float32 keeps logits exact under mixed precision.
        name: prefix of the layer names (``{name}_conv1`` .. ``{name}_conv8``).
    """
    if kind not in CONTEXT_WIDTHS:
        raise ValueError(f"context module kind {kind!r} is not known; expected one of {sorted(CONTEXT_WIDTHS)}")
    if x.shape[-1] != num_classes:
        raise ValueError(f"context module: input has {x.shape[-1]} channels, expected num_classes={num_classes}")
    if relative_noise is None:
        relative_noise = 0.0 if kind == "basic" else DEFAULT_LARGE_NOISE
    last = len(CONTEXT_WIDTHS[kind]) - 1
    for index, (width, kernel_size, dilation) in enumerate(
        zip(CONTEXT_WIDTHS[kind], CONTEXT_KERNEL_SIZES, CONTEXT_DILATIONS)
    ):
        x = keras.layers.Conv2D(
            width * num_classes,
            kernel_size,
            padding="same",
            dilation_rate=dilation,
            # truncation max(., 0) after layers 1-7, none after the last (Table 1)
            activation=None if index == last else "relu",
            kernel_initializer=ContextIdentity(
                num_classes, relative_noise, None if seed is None else seed + index
            ),
            bias_initializer="zeros",
            dtype=output_dtype if index == last else None,
            name=f"{name}_conv{index + 1}",
        )(x)
    return x
