"""densevision.layers.residual: the skip is the identity or one convolution, and parameter counts match the torch code."""

from __future__ import annotations

import numpy as np
import pytest

import densevision  # noqa: F401  (sets the Keras backend first)
import keras

from densevision.layers.residual import residual

RNG = np.random.default_rng(0)


def test_residual_skip_is_identity_or_one_conv_and_params_match_torch():
    inputs = keras.Input((8, 8, 32))
    same = keras.Model(inputs, residual(inputs, 32, name="same"))
    wider = keras.Model(inputs, residual(inputs, 64, name="wider"))
    bn = lambda c: 2 * c  # noqa: E731  (Torch counts BN weight + bias)
    conv = lambda k, cin, cout: k * k * cin * cout + cout  # noqa: E731
    body = lambda cin, cout: bn(cin) + conv(1, cin, cout // 2) + bn(cout // 2) + conv(3, cout // 2, cout // 2) \
        + bn(cout // 2) + conv(1, cout // 2, cout)  # noqa: E731
    trainable = lambda m: sum(int(np.prod(w.shape)) for w in m.trainable_weights)  # noqa: E731
    assert trainable(same) == body(32, 32)
    assert trainable(wider) == body(32, 64) + conv(1, 32, 64)
    assert "same_skip" not in [layer.name for layer in same.layers]
    # with the main branch's last conv zeroed, the module is its skip: the identity when widths agree
    same.get_layer("same_conv3").set_weights([np.zeros((1, 1, 16, 32), "float32"), np.zeros(32, "float32")])
    x = RNG.normal(size=(2, 8, 8, 32)).astype("float32")
    np.testing.assert_array_equal(same(x).numpy(), x)
    with pytest.raises(ValueError, match="even"):
        residual(inputs, 33, name="odd")
