"""Tiled inference against whole-image forward passes (numpy references and small Keras models)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import densevision  # noqa: F401  (backend and environment)
import keras
from densevision.inference.tiling import (
    MARGIN_WEIGHT,
    axis_window,
    needs_tiling,
    predict_tiled,
    tile_count,
    tile_starts,
)

RNG = np.random.default_rng(0)
MIX = RNG.normal(size=(3, 4)).astype(np.float32) / 255.0
BIAS = np.array([0.1, -0.2, 0.3, 0.0], np.float32)


def per_pixel(images):
    """A purely local 'model': a per-pixel linear map of the colours to 4 scores."""
    return np.asarray(images, np.float32) @ MIX + BIAS


def conv_model(kernel_sizes=(3, 3), channels=5, seed=1) -> keras.Model:
    """Stacked 'same' convolutions: receptive-field radius sum((k - 1) / 2), zero padding at every border."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    for index, size in enumerate(kernel_sizes):
        x = keras.layers.Conv2D(channels, size, padding="same", activation="tanh" if index else "relu")(x)
    return keras.Model(inputs, x)


def random_image(height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# ------------------------------------------------------------------------------------------- geometry


def test_tile_starts_cover_the_axis_with_the_last_tile_flush():
    assert tile_starts(10, 4, 3) == [0, 3, 6]
    assert tile_starts(11, 4, 3) == [0, 3, 6, 7]
    assert tile_starts(4, 4, 3) == [0]
    assert tile_starts(3, 4, 3) == [0]
    for length, tile, step in [(100, 32, 24), (1000, 512, 384), (33, 16, 16)]:
        starts = tile_starts(length, tile, step)
        covered = np.zeros(length, bool)
        for start in starts:
            covered[start : start + tile] = True
        assert covered.all() and starts[-1] + tile == length


def test_windows_are_positive_flat_at_image_borders_and_ignore_the_margin():
    interior = axis_window(16, ramp=4, margin=2, at_start=False, at_end=False, blend="linear")
    assert (interior > 0).all()
    np.testing.assert_allclose(interior[:2], MARGIN_WEIGHT)
    np.testing.assert_allclose(interior[2:6], [0.125, 0.375, 0.625, 0.875])
    np.testing.assert_allclose(interior[6:10], 1.0)
    np.testing.assert_allclose(interior, interior[::-1])
    first = axis_window(16, ramp=4, margin=2, at_start=True, at_end=False, blend="cosine")
    np.testing.assert_allclose(first[:10], 1.0)
    assert first[-1] == MARGIN_WEIGHT and 0 < first[-3] < first[-4] < 1
    np.testing.assert_allclose(axis_window(8, 4, 2, True, True, "linear"), 1.0)


def test_needs_tiling_and_tile_count():
    assert needs_tiling((3000, 4000, 3), 2048 * 2048)
    assert not needs_tiling((1024, 1024), 1024 * 1024)
    assert tile_count((1000, 700, 3), tile=512, overlap=128) == 3 * 2
    assert tile_count((100, 100), tile=512) == 1


# ------------------------------------------------------------------------------------ equals whole image


@pytest.mark.parametrize("blend", ["linear", "cosine", "uniform"])
@pytest.mark.parametrize("shape", [(37, 53), (16, 24), (10, 7)])  # not divisible, exactly a tile, smaller
def test_local_function_tiled_equals_whole(blend, shape):
    image = random_image(*shape)
    tiled = predict_tiled(per_pixel, image, tile=(16, 24), overlap=(8, 8), batch_size=3, blend=blend)
    assert tiled.shape == (*shape, 4) and tiled.dtype == np.float32
    np.testing.assert_allclose(tiled, per_pixel(image), rtol=1e-5, atol=1e-5)


def test_conv_model_tiled_equals_whole_when_the_receptive_field_fits_the_margin():
    model = conv_model((3, 3))  # receptive-field radius 2
    image = random_image(45, 61, seed=3)
    whole = model(image[None].astype(np.float32)).numpy()[0]
    tiled = predict_tiled(model, image, tile=24, overlap=12, margin=2, batch_size=4)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    tiled = predict_tiled(model, image, tile=24, overlap=0.5, batch_size=4, blend="cosine")  # default margin 3
    np.testing.assert_allclose(tiled, whole, atol=1e-5)
    # Without the margin the tile edges' zero-padded scores leak in: the margin is what makes it exact.
    leaky = predict_tiled(model, image, tile=24, overlap=12, margin=0, batch_size=4)
    assert np.abs(leaky - whole).max() > 1e-3


def test_output_stride_tiles_on_the_coarse_grid():
    def pooled(images):  # 2x2 average pooling then the per-pixel map: output at 1/2 resolution
        images = np.asarray(images, np.float32)
        b, h, w, c = images.shape
        return per_pixel(images.reshape(b, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4)))

    image = random_image(31, 45, seed=4)
    padded = np.pad(image, ((0, 1), (0, 1), (0, 0)))  # the zero padding the tiles see at the bottom/right
    whole = pooled(padded[None])[0]
    tiled = predict_tiled(pooled, image, tile=(16, 20), overlap=(8, 8), output_stride=2, margin=0)
    assert tiled.shape == (16, 23, 4)
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="multiple of output_stride=2"):
        predict_tiled(pooled, image, tile=(15, 20), output_stride=2)


def test_segmentation_model_argmax_tiled_equals_whole():
    from densevision.models.tiramisu import fc_densenet

    keras.utils.set_random_seed(0)
    model = fc_densenet(num_classes=6, blocks_down=[1], bottleneck=1, growth_rate=4, first_filters=8, dropout=0.0)
    image = random_image(72, 100, seed=5)
    whole = model(image[None].astype(np.float32), training=False).numpy()[0]
    # Tile starts every 24 pixels stay on the model's 2x pooling grid; its receptive-field radius is under 10.
    tiled = predict_tiled(lambda x: model(x, training=False), image, tile=48, overlap=24, margin=10, batch_size=2)
    np.testing.assert_allclose(tiled, whole, atol=1e-4)
    np.testing.assert_array_equal(tiled.argmax(-1), whole.argmax(-1))


# ---------------------------------------------------------------------------------------- size and errors


def test_large_image_memory_is_bounded_by_the_accumulators():
    image = np.random.default_rng(6).integers(0, 256, (4000, 3000, 3), dtype=np.uint8)
    calls = []

    def first_channel_half(tiles):
        calls.append(tiles.shape)
        return tiles[..., :1] * 0.5

    tracemalloc.start()
    tiled = predict_tiled(first_channel_half, image, tile=512, overlap=64, batch_size=4)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    accumulators = 4000 * 3000 * (1 + 1) * 4  # scores (H, W, 1) and the weight sum (H, W), float32
    assert peak < accumulators + 48 * 2**20, f"peak {peak / 2**20:.0f} MiB"
    assert all(shape[0] <= 4 and shape[1:3] == (512, 512) for shape in calls)
    assert len(calls) == -(-tile_count(image.shape, 512, 64) // 4)
    assert tiled.shape == (4000, 3000, 1)
    np.testing.assert_allclose(tiled[..., 0], image[..., 0] * np.float32(0.5), rtol=1e-6)


def test_clear_errors():
    image = random_image(20, 20)
    with pytest.raises(ValueError, match=r"forward returned shape \(1, 8, 8, 4\).*expected \(1, 16, 16, C\)"):
        predict_tiled(lambda x: per_pixel(x)[:, ::2, ::2], image, tile=16, overlap=4, batch_size=1)
    with pytest.raises(ValueError, match="margin rows = 4 must be less than half the overlap"):
        predict_tiled(per_pixel, image, tile=16, overlap=8, margin=4)
    with pytest.raises(ValueError, match=r"overlap cols = 16 must be in \[0, tile=16\)"):
        predict_tiled(per_pixel, image, tile=16, overlap=(4, 16))
    with pytest.raises(ValueError, match="blend must be one of"):
        predict_tiled(per_pixel, image, tile=16, blend="gaussian")
