"""densevision.inference.sliding: dense scores of a converted classifier equal crop-by-crop evaluation (the tiny
classifiers of tests/test_inference/test_fully_convolutional.py); reductions and pictures by hand."""

from __future__ import annotations

import numpy as np
import pytest

import densevision  # noqa: F401  (environment first)
import keras

from densevision.inference import sliding
from densevision.inference.fully_convolutional import to_fully_convolutional

from image_utils import noise
from tests.test_inference.test_fully_convolutional import TOL, crops_of, image, tiny_vgg


def test_stride_half_map_equals_crop_by_crop():
    model = tiny_vgg()
    converted = to_fully_convolutional(model)
    big = image((41, 45), seed=7)
    assert sliding.network_stride(converted, 28) == (4, 4)
    crops, (rows, cols) = crops_of(big, 28, 2)
    scores = sliding.window_scores(converted, big, window=28, stride=2)
    assert scores.shape == (1, rows, cols, 10) == (1, 7, 9, 10)
    np.testing.assert_allclose(scores[0], model.predict(crops, verbose=0).reshape(rows, cols, -1), atol=TOL)
    # stride 1 needs 16 passes and still matches
    crops, (rows, cols) = crops_of(big[:31, :33], 28, 1)
    scores = sliding.window_scores(converted, big[:31, :33], window=28, stride=1)
    np.testing.assert_allclose(scores[0], model.predict(crops, verbose=0).reshape(rows, cols, -1), atol=TOL)


def test_bad_stride_and_small_image_are_explained():
    converted = to_fully_convolutional(tiny_vgg())
    with pytest.raises(ValueError, match="must divide the network stride"):
        sliding.window_scores(converted, image((40, 40)), window=28, stride=3)
    with pytest.raises(ValueError, match="smaller than the 28x28 window"):
        sliding.window_scores(converted, image((20, 40)), window=28)
    with pytest.raises(ValueError, match="scale 0.5"):
        sliding.multiscale_scores(converted, image((40, 40)), window=28, scales=(1.0, 0.5))


def test_image_scores_mean_and_max_by_hand():
    # two scales, probabilities given directly: scale 1 has two windows, scale 2 one
    first = np.array([[[0.2, 0.8], [0.6, 0.4]]])  # (1, 2, 2)
    second = np.array([[[0.9, 0.1]]])  # (1, 1, 2)
    np.testing.assert_allclose(sliding.image_scores([first, second], "mean", from_logits=False),
                               [(0.4 + 0.9) / 2, (0.6 + 0.1) / 2])
    np.testing.assert_allclose(sliding.image_scores([first, second], "max", from_logits=False), [0.9, 0.8])
    logits = np.log(np.array([[[1.0, 3.0]]]))  # softmax -> [0.25, 0.75]
    np.testing.assert_allclose(sliding.image_scores([logits]), [0.25, 0.75], atol=1e-6)


def test_top_k_orders_best_first():
    assert sliding.top_k(np.array([0.1, 0.5, 0.2, 0.2]), 3, ["a", "b", "c", "d"]) == [
        (1, "b", 0.5), (2, "c", 0.2), (3, "d", 0.2)]


def test_class_heatmap_averages_covering_windows():
    # 2 x 1 windows of 4 x 4 at stride 2 on a 6 x 4 image; rows 2-3 are covered by both
    scores = np.array([[[0.0, 1.0]], [[0.0, 3.0]]])  # (2, 1, 2)
    heat = sliding.class_heatmap(scores, 1, (6, 4), window=4, stride=2)
    np.testing.assert_allclose(heat[:, 0], [1, 1, 2, 2, 3, 3])
    overlay = sliding.overlay_heatmap(np.zeros((6, 4, 3), np.uint8), heat)
    assert overlay.shape == (6, 4, 3) and overlay.dtype == np.uint8


@pytest.mark.usefixtures("private_cache")
@pytest.mark.parametrize("padding", ["valid", "same"])
def test_tiled_sliding_scores_equal_one_pass(padding):
    """Large images are scored in tiles (memory bounded by the tile): the same map as one pass, cell for cell."""
    from densevision.inference.fully_convolutional import to_fully_convolutional
    from densevision.inference.sliding import context_margin, map_size, network_stride, tiled_scores, window_scores

    keras.utils.set_random_seed(5)
    classifier = keras.Sequential([
        keras.Input((28, 28, 3)), keras.layers.Rescaling(1 / 255.0),
        keras.layers.Conv2D(6, 3, padding=padding, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(6, 3, padding=padding, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(), keras.layers.Dense(4)])
    fc = to_fully_convolutional(classifier)
    assert network_stride(fc, 28) == (4, 4)
    # receptive field 3 -> 4 (pool) -> 8 -> 10 pixels: half of it (4.5) rounded up to whole strides of 4
    assert context_margin(fc, 28, 4) == (8, 8)
    image = noise(102, 127)  # not a whole number of strides past the last window: a pass sees those pixels too
    whole = window_scores(fc, image, 28, 2, (4, 4))  # stride 2: four shifted passes
    assert whole.shape == (1, *map_size((102, 127), 28, 2), 4) == (1, 38, 50, 4)
    tiled = tiled_scores(fc, image, 28, 2, (4, 4), max_pixels=80 * 80)  # 4 x 5 tiles of 80x80 pixels at most
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-5)
    if padding == "valid":  # the first window is the classifier on the top-left crop (an independent reference)
        np.testing.assert_allclose(whole[0, 0, 0], classifier(image[None, :28, :28].astype(np.float32))[0],
                                   rtol=1e-5, atol=1e-5)
