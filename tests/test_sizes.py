"""densevision.sizes: the one pair parser and the one area-down / linear-up resize, against hand-worked numbers."""

from __future__ import annotations

import re

import numpy as np
import pytest

from densevision.sizes import as_pair, rescale, resize, scaled_size


def test_as_pair_reads_one_or_two_whole_numbers():
    assert as_pair(7, "window") == (7, 7)
    assert as_pair((3, 5), "window") == (3, 5)
    assert as_pair([4.0, np.int64(6)], "window") == (4, 6)
    assert as_pair(0, "margin", minimum=None) == (0, 0)


@pytest.mark.parametrize("value", [0, (1,), (1, 2, 3), 2.5, True, "7", (3, 0)])
def test_as_pair_names_what_it_refuses(value):
    with pytest.raises(ValueError, match=r"^stride: expected an int or a pair of ints \(rows, cols\) of at least 1, "
                                         rf"got {re.escape(repr(value))}$"):
        as_pair(value, "stride")


def test_as_pair_without_a_scalar_wants_two_numbers():
    with pytest.raises(ValueError, match=r"input_size: expected a pair of ints \(rows, cols\) of at least 1, got 64"):
        as_pair(64, "input_size", scalar=False)


def test_shrinking_averages_areas():
    """4x4 -> 2x2 by area is the mean of each 2x2 block (numpy as the reference)."""
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    assert np.allclose(resize(image, (2, 2)), image.reshape(2, 2, 2, 2).mean(axis=(1, 3)))


def test_enlarging_is_bilinear_on_pixel_centres():
    """1x2 -> 1x4: output centres at source x = -0.25, 0.25, 0.75, 1.25 (clamped): 0, 25, 75, 100 by hand."""
    image = np.array([[0.0, 100.0]], np.float32)
    assert np.allclose(resize(image, (1, 4)), [[0.0, 25.0, 75.0, 100.0]])


def test_rescale_rounds_the_size_and_keeps_the_dtype():
    assert scaled_size((360, 480), 0.5) == (180, 240)
    assert scaled_size((3, 3), 0.1) == (1, 1)
    image = np.full((10, 20, 3), 200, np.uint8)
    out = rescale(image, 1.55)
    assert out.shape == (16, 31, 3) and out.dtype == np.uint8 and (out == 200).all()
