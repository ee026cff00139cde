"""densevision.layers.padding: pad to a multiple and crop back like numpy; dynamic upsampling like Keras'
bilinear resize."""

from __future__ import annotations

import numpy as np
import pytest

import densevision  # noqa: F401  (sets the Keras backend first)
import keras
import tensorflow as tf

from densevision.layers.padding import CropLike, PadToMultiple

RNG = np.random.default_rng(0)


@pytest.mark.parametrize("height, width, multiple", [(36, 52, 32), (32, 64, 32), (7, 9, 8), (5, 5, 1)])
def test_pad_to_multiple_matches_numpy_and_crop_undoes_it(height, width, multiple):
    x = RNG.normal(size=(2, height, width, 3)).astype("float32")
    padded = PadToMultiple(multiple)(x).numpy()
    expected = np.pad(x, [(0, 0), (0, -height % multiple), (0, -width % multiple), (0, 0)])
    np.testing.assert_array_equal(padded, expected)
    np.testing.assert_array_equal(CropLike()([padded, x]).numpy(), x)


def test_padding_layers_in_a_model_with_unknown_size_and_config_roundtrip():
    inputs = keras.Input((None, None, 3))
    outputs = CropLike()([PadToMultiple(16)(inputs), inputs])
    model = keras.Model(inputs, outputs)
    x = RNG.normal(size=(1, 20, 33, 3)).astype("float32")
    np.testing.assert_array_equal(model(x).numpy(), x)
    assert PadToMultiple.from_config(PadToMultiple(16).get_config()).multiple == 16
    # inside a graph with unknown H, W the padding amounts are tensors
    graph_pad = tf.function(PadToMultiple(16), input_signature=[tf.TensorSpec((None, None, None, 3))])
    np.testing.assert_array_equal(graph_pad(x).numpy(), np.pad(x, [(0, 0), (0, 12), (0, 15), (0, 0)]))


@pytest.mark.parametrize("bad", [0, -8, 2.5, "32", True])
def test_pad_to_multiple_rejects_bad_multiple(bad):
    with pytest.raises(ValueError, match="multiple must be a positive int"):
        PadToMultiple(bad)


def test_dynamic_upsampling_matches_keras_bilinear_and_traces_with_unknown_size():
    import numpy as np
    import tensorflow as tf

    from densevision.layers.padding import DynamicUpSampling2D

    x = np.random.default_rng(0).normal(size=(1, 5, 7, 3)).astype("float32")
    reference = keras.layers.UpSampling2D(4, interpolation="bilinear")(x)
    layer = DynamicUpSampling2D(4, interpolation="bilinear")
    np.testing.assert_allclose(layer(x).numpy(), keras.ops.convert_to_numpy(reference), atol=1e-6)
    traced = tf.function(layer, input_signature=[tf.TensorSpec((None, None, None, 3), tf.float32)])
    assert traced(x).shape == (1, 20, 28, 3)
