"""Sizes given as one int or ``(rows, cols)``, and resizing an image to a size: one copy of each for the whole package
(windows, strides and tiles of inference, a codec's input and heatmap sizes, images scaled for test-time
augmentation, letterboxing and person detection)."""

from __future__ import annotations

import numbers
from typing import Optional, Sequence, Union

import cv2
import numpy as np

IntPair = Union[int, Sequence[int]]


def _is_whole(value) -> bool:
    """An int (not a bool) or a float with no fractional part."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return False
    return isinstance(value, numbers.Integral) or float(value).is_integer()


def as_pair(value: IntPair, name: str, minimum: Optional[int] = 1, scalar: bool = True) -> tuple[int, int]:
    """``value`` as ``(rows, cols)`` ints: one whole number for both (when ``scalar``) or two.

    Args:
        value: ``7``, ``(7, 9)`` or ``[7, 9]``.
        name: what it is, as error messages say it (``"window"``, ``"predict_tiled: tile"``).
        minimum: the smallest value allowed (``None``: no bound).
        scalar: whether one number stands for both.

    Raises:
        ValueError: not one or two whole numbers, or one below ``minimum``; the message names ``name`` and ``value``.
    """
    items = tuple(value) if isinstance(value, (list, tuple, np.ndarray)) else (value, value) if scalar else None
    expected = ("an int or " if scalar else "") + "a pair of ints (rows, cols)"
    if minimum is not None:
        expected += f" of at least {minimum}"
    if items is None or len(items) != 2 or not all(_is_whole(item) for item in items) or (
            minimum is not None and min(items) < minimum):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return int(items[0]), int(items[1])


def scaled_size(size: Sequence[int], scale: float) -> tuple[int, int]:
    """``(H, W)`` times ``scale``, rounded, at least one pixel each: ``(h, w)``."""
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


def resize(image: np.ndarray, size: Sequence[int]) -> np.ndarray:
    """``image`` ``(H, W[, C])`` resized to ``size = (h, w)``: area averaging when it loses pixels (no aliasing),
    bilinear otherwise; the dtype is kept (OpenCV's rules: a single channel comes back ``(h, w)``)."""
    height, width = int(size[0]), int(size[1])
    shrinking = height * width < image.shape[0] * image.shape[1]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def rescale(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` ``(H, W[, C])`` resized by ``scale`` (:func:`scaled_size`, :func:`resize`)."""
    return resize(image, scaled_size(image.shape[:2], scale))
