"""Per-pixel scores of one whole image: tiled above a pixel budget, with optional flip and multi-scale test-time
augmentation. Used by batch prediction for per-pixel tasks (segmentation)."""

from __future__ import annotations

from typing import Callable, Sequence

import cv2
import numpy as np

from densevision.inference.tiling import needs_tiling, predict_tiled
from densevision.sizes import rescale
from densevision.tasks.base import final_output


def _scores(forward: Callable, image: np.ndarray, tile: int, max_pixels: int) -> np.ndarray:
    """``(H, W, C)`` float32 scores of one ``(H, W, 3)`` image: one pass, or overlapping tiles when the image has
    more than ``max_pixels`` pixels (memory then bounded by the tile, not the image)."""
    if needs_tiling(image.shape, max_pixels):
        return predict_tiled(forward, image, tile=(tile, tile), overlap=0.25, batch_size=2)
    return np.asarray(final_output(forward(image[None].astype(np.float32))), np.float32)[0]


def pixel_scores(forward: Callable, image: np.ndarray, flip: bool = False, scales: Sequence[float] = (1.0,),
                 tile: int = 512, max_pixels: int = 2048 * 2048) -> np.ndarray:
    """Mean ``(H, W, C)`` scores over the requested scales (each resized back to ``H x W``) and, with ``flip``,
    over the left-right mirrored image mirrored back.

    Args:
        forward: ``fn(images float32 (B, h, w, 3)) -> scores (B, h, w, C)`` (or a list whose last is the scores).
        image: uint8 ``(H, W, 3)``.
    """
    height, width = image.shape[:2]
    total, count = None, 0
    for scale in scales:
        scaled = image if scale == 1.0 else rescale(image, scale)
        views = [(scaled, False)] + ([(np.ascontiguousarray(scaled[:, ::-1]), True)] if flip else [])
        for view, mirrored in views:
            scores = _scores(forward, view, tile, max_pixels)
            if mirrored:
                scores = scores[:, ::-1]
            if scores.shape[:2] != (height, width):
                scores = cv2.resize(scores, (width, height), interpolation=cv2.INTER_LINEAR)
                scores = scores.reshape(height, width, -1)
            total = scores if total is None else total + scores
            count += 1
    return total / count


dense_scores = pixel_scores
"""The old name of :func:`pixel_scores` (kept; :func:`densevision.inference.sliding.window_scores` is the other idea
that was called ``dense_scores``)."""
