"""Fully convolutional conversion and sliding scores, checked against crop-by-crop evaluation.

Tiny classifiers with unpadded ("valid") trunks make the CS231n identity exact on image crops: cell (i, j) of
the converted model on a large image equals the original model on the crop at (i * stride, j * stride). For
VGG16, whose 3x3 convolutions are zero-padded, crops differ from windows of the large image near their borders,
so the reference is the original head applied to each window of the original trunk's feature map.
"""

from __future__ import annotations

import numpy as np
import pytest

import densevision  # noqa: F401  (environment first)
import keras

from densevision.inference import sliding
from densevision.inference.fully_convolutional import ConversionError, RowBandConv2D, WindowDense, to_fully_convolutional

TOL = 1e-4


def crops_of(image: np.ndarray, window: int, stride: int) -> tuple[np.ndarray, tuple[int, int]]:
    """All ``window`` crops of ``(H, W, 3)`` at ``stride``, row-major, and the (rows, cols) of their grid."""
    rows = (image.shape[0] - window) // stride + 1
    cols = (image.shape[1] - window) // stride + 1
    crops = [image[i * stride : i * stride + window, j * stride : j * stride + window]
             for i in range(rows) for j in range(cols)]
    return np.stack(crops), (rows, cols)


def tiny_trunk(inputs, padding="valid"):
    """Two conv + pool stages: total stride 4."""
    x = keras.layers.Conv2D(8, 3, padding=padding, activation="relu", name="conv1")(inputs)
    x = keras.layers.MaxPooling2D(2, name="pool1")(x)
    x = keras.layers.Conv2D(16, 3, padding=padding, name="conv2")(x)
    x = keras.layers.BatchNormalization(name="bn2")(x)
    x = keras.layers.Activation("relu", name="relu2")(x)
    return keras.layers.MaxPooling2D(2, name="pool2")(x)


def randomise_batchnorm(model, seed=0):
    """Non-trivial moving statistics, so inference-mode batch-norm is not the identity."""
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, 0.3, beta.shape),
                               rng.normal(0, 0.3, mean.shape), rng.uniform(0.5, 2, var.shape)])
        if isinstance(layer, keras.Model):
            randomise_batchnorm(layer, seed + 1)


def tiny_vgg(nested: bool = False, padding="valid", softmax=False) -> keras.Model:
    """28x28 input -> 5x5x16 map -> flatten -> fc (32, relu) -> dropout -> fc (10)."""
    keras.utils.set_random_seed(1)
    inputs = keras.Input((28, 28, 3))
    if nested:
        trunk_in = keras.Input((28, 28, 3))
        trunk = keras.Model(trunk_in, tiny_trunk(trunk_in, padding), name="trunk")
        x = trunk(inputs)
    else:
        x = tiny_trunk(inputs, padding)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(32, activation="relu", name="fc1")(x)
    x = keras.layers.Dropout(0.5, name="drop")(x)
    x = keras.layers.Dense(10, activation="softmax" if softmax else None, name="predictions")(x)
    model = keras.Model(inputs, x, name="tiny_vgg")
    randomise_batchnorm(model)
    return model


def tiny_gap(pool="avg", tail_softmax=False, input_size=28) -> keras.Model:
    """Valid trunk -> global pooling -> dropout -> batch-norm -> dense (10) [-> softmax]."""
    keras.utils.set_random_seed(2)
    inputs = keras.Input((input_size, input_size, 3))
    x = tiny_trunk(inputs)
    x = (keras.layers.GlobalAveragePooling2D if pool == "avg" else keras.layers.GlobalMaxPooling2D)(name="gpool")(x)
    x = keras.layers.Dropout(0.2, name="drop")(x)
    x = keras.layers.BatchNormalization(name="bn_head")(x)
    x = keras.layers.Dense(10, name="predictions")(x)
    if tail_softmax:
        x = keras.layers.Softmax(name="softmax")(x)
    model = keras.Model(inputs, x, name="tiny_gap")
    randomise_batchnorm(model)
    return model


def image(size, seed=0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (*size, 3)).astype("float32") / 64.0


# ------------------------------------------------------------------------------------------- tiny, fast


@pytest.mark.parametrize("nested", [False, True], ids=["flat", "nested"])
def test_tiny_flatten_classifier_equals_crop_by_crop(nested):
    model = tiny_vgg(nested=nested)
    converted = to_fully_convolutional(model)
    assert converted.input_shape == (None, None, None, 3)
    assert isinstance(converted.get_layer("fc1"), WindowDense)
    assert isinstance(converted.get_layer("predictions"), keras.layers.Conv2D)

    same_size = image((28, 28))
    np.testing.assert_allclose(converted.predict(same_size[None], verbose=0)[0, 0, 0],
                               model.predict(same_size[None], verbose=0)[0], atol=TOL)

    big = image((44, 52), seed=1)  # 5 x 7 windows at stride 4
    crops, (rows, cols) = crops_of(big, 28, 4)
    expected = model.predict(crops, verbose=0).reshape(rows, cols, -1)
    scores = converted.predict(big[None], verbose=0)[0]
    assert scores.shape == (5, 7, 10)
    np.testing.assert_allclose(scores, expected, atol=TOL)


def test_tiny_softmax_stays_over_classes():
    model = tiny_vgg(softmax=True)
    converted = to_fully_convolutional(model)
    big = image((40, 40), seed=3)
    crops, (rows, cols) = crops_of(big, 28, 4)
    scores = converted.predict(big[None], verbose=0)[0]
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(scores, model.predict(crops, verbose=0).reshape(rows, cols, -1), atol=TOL)


def test_sequential_classifier_converts():
    keras.utils.set_random_seed(4)
    model = keras.Sequential([
        keras.Input((12, 12, 3)),
        keras.layers.Conv2D(4, 3, strides=2, activation="relu"),  # 5x5
        keras.layers.Flatten(),
        keras.layers.Dense(6, activation="tanh"),
        keras.layers.Dense(3),
    ])
    converted = to_fully_convolutional(model)
    big = image((20, 16), seed=5)
    crops, (rows, cols) = crops_of(big, 12, 2)
    np.testing.assert_allclose(converted.predict(big[None], verbose=0)[0],
                               model.predict(crops, verbose=0).reshape(rows, cols, -1), atol=TOL)


@pytest.mark.parametrize("pool, tail_softmax", [("avg", False), ("avg", True), ("max", False)])
def test_tiny_global_pooling_classifier_equals_crop_by_crop(pool, tail_softmax):
    model = tiny_gap(pool, tail_softmax)
    converted = to_fully_convolutional(model)
    big = image((48, 40), seed=6)
    crops, (rows, cols) = crops_of(big, 28, 4)
    scores = converted.predict(big[None], verbose=0)[0]
    assert scores.shape == (rows, cols, 10)
    np.testing.assert_allclose(scores, model.predict(crops, verbose=0).reshape(rows, cols, -1), atol=TOL)
    if tail_softmax:  # average inserted before the softmax, which keeps its name
        assert [l.name for l in converted.layers[-2:]] == ["gpool", "softmax"]
    if pool == "avg" and not tail_softmax:
        # the average moved behind the linear head: the last layer is the (7-cell) average of per-position scores
        assert isinstance(converted.layers[-1], keras.layers.AveragePooling2D)
        assert converted.layers[-1].name == "gpool"


def test_converted_model_round_trips_with_safe_mode(tmp_path):
    converted = to_fully_convolutional(tiny_vgg(padding="same"), conv_bands={"conv2": 3})
    path = tmp_path / "fc.keras"
    converted.save(path)
    restored = keras.saving.load_model(path, safe_mode=True)
    assert isinstance(restored.get_layer("fc1"), WindowDense)
    assert isinstance(restored.get_layer("conv2"), RowBandConv2D)
    big = image((37, 45), seed=8)[None]
    np.testing.assert_allclose(restored.predict(big, verbose=0), converted.predict(big, verbose=0), atol=1e-6)


def test_window_dense_equals_conv2d_with_reshaped_kernel():
    rng = np.random.default_rng(9)
    kernel = rng.normal(size=(3 * 2 * 5, 4)).astype("float32")
    bias = rng.normal(size=4).astype("float32")
    layer = WindowDense(4, (3, 2), activation="relu")
    x = rng.normal(size=(2, 7, 6, 5)).astype("float32")
    layer(x)
    layer.set_weights([kernel, bias])
    conv = keras.layers.Conv2D(4, (3, 2), activation="relu")
    conv(x)
    conv.set_weights([kernel.reshape(3, 2, 5, 4), bias])
    np.testing.assert_allclose(np.asarray(layer(x)), np.asarray(conv(x)), atol=1e-5)


@pytest.mark.parametrize("padding, dilation, bands", [("same", 1, 3), ("same", 2, 4), ("valid", 1, 2), ("same", 1, 7)])
def test_row_band_conv_equals_conv2d(padding, dilation, bands):
    rng = np.random.default_rng(10)
    x = rng.normal(size=(2, 13, 9, 3)).astype("float32")
    conv = keras.layers.Conv2D(5, (3, 5), padding=padding, dilation_rate=dilation, activation="relu")
    conv(x)
    band = RowBandConv2D.from_config({**conv.get_config(), "bands": bands})
    band(x)
    band.set_weights(conv.get_weights())
    np.testing.assert_allclose(np.asarray(band(x)), np.asarray(conv(x)), atol=1e-5)


def test_unconvertible_layer_is_named():
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.LayerNormalization(name="whole_vector_norm")(x)  # mixes all positions of the window
    outputs = keras.layers.Dense(3)(x)
    with pytest.raises(ConversionError, match="whole_vector_norm"):
        to_fully_convolutional(keras.Model(inputs, outputs))


def test_unknown_pooling_window_is_named():
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3)(inputs)
    x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    outputs = keras.layers.Dense(3)(x)
    with pytest.raises(ConversionError, match="avg_pool.*fixed input_shape"):
        to_fully_convolutional(keras.Model(inputs, outputs))


# ------------------------------------------------------------------------------------------------ VGG16


@pytest.fixture(scope="module")
def vgg16():
    """keras.applications VGG16 (random, seeded) with logits, its conversion, and its trunk at any size."""
    keras.utils.set_random_seed(0)
    model = keras.applications.VGG16(include_top=True, weights=None, classifier_activation=None)
    trunk = keras.applications.VGG16(include_top=False, weights=None, input_shape=(None, None, 3))
    trunk.set_weights([w for layer in model.layers[: len(trunk.layers)] for w in layer.get_weights()])
    return model, to_fully_convolutional(model), trunk


def vgg_head(model, feature_windows):
    x = feature_windows
    for name in ("flatten", "fc1", "fc2", "predictions"):
        x = model.get_layer(name)(x)
    return np.asarray(x)


@pytest.mark.slow
def test_vgg16_224_logits_and_softmax_equal_original(vgg16):
    model, converted, _ = vgg16
    assert converted.count_params() == model.count_params() == 138_357_544
    x = np.stack([image((224, 224), seed=s) * 64 for s in (11, 12)])
    logits, fc_logits = model.predict(x, verbose=0), converted.predict(x, verbose=0)
    assert fc_logits.shape == (2, 1, 1, 1000)
    np.testing.assert_allclose(fc_logits[:, 0, 0], logits, atol=TOL)
    # softmax on top (a layer over the class axis) converts too
    with_softmax = keras.Model(model.input, keras.layers.Softmax(name="probs")(model.output))
    probabilities = to_fully_convolutional(with_softmax).predict(x, verbose=0)[:, 0, 0]
    np.testing.assert_allclose(probabilities, with_softmax.predict(x, verbose=0), atol=TOL)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)


@pytest.mark.slow
def test_vgg16_384_maps_equal_head_on_each_window(vgg16):
    model, converted, trunk = vgg16
    big = image((384, 384), seed=13) * 64
    scores = sliding.window_scores(converted, big, window=224)[0]
    assert scores.shape == (6, 6, 1000)
    features = trunk.predict(big[None], verbose=0)[0]  # 12 x 12 x 512
    windows = np.stack([features[i : i + 7, j : j + 7] for i in range(6) for j in range(6)])
    np.testing.assert_allclose(scores.reshape(36, -1), vgg_head(model, windows), atol=TOL)

    # stride 16: 11 x 11; odd rows/columns come from the image shifted by 16 pixels
    fine = sliding.window_scores(converted, big, window=224, stride=16)[0]
    assert fine.shape == (11, 11, 1000)
    np.testing.assert_allclose(fine[::2, ::2], scores, atol=TOL)
    for shift_y, shift_x in [(16, 0), (0, 16), (16, 16)]:
        shifted = trunk.predict(big[None, shift_y:, shift_x:], verbose=0)[0]
        rows, cols = range(shift_y // 16, 11, 2), range(shift_x // 16, 11, 2)
        windows = np.stack([shifted[i // 2 : i // 2 + 7, j // 2 : j // 2 + 7] for i in rows for j in cols])
        np.testing.assert_allclose(fine[shift_y // 16 :: 2, shift_x // 16 :: 2].reshape(len(windows), -1),
                                   vgg_head(model, windows), atol=TOL)
