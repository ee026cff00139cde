"""Top-down person crops: a box becomes a centre and a scale, and a 2x3 affine maps the original image to the crop.

Coordinates are continuous pixel coordinates with pixel centres at integers (OpenCV's ``warpAffine`` convention):
the pixel in column ``i`` covers ``[i - 0.5, i + 0.5)``. An image of width ``W`` mirrored left-right maps ``x`` to
``W - 1 - x``.

The crop keeps the aspect ratio of the person: the box is grown to the crop's aspect ratio (never squeezed), then
padded by ``padding`` (1.25 as in MMPose / HRNet's top-down pipelines), so a region of ``scale = (w, h)`` pixels
around ``center`` fills the ``(H, W)`` network input exactly. The affine is stored in the sample so predictions
map back to the original image with :func:`invert_affine`.
"""

from __future__ import annotations

import math
from typing import Sequence

import cv2
import numpy as np

DEFAULT_PADDING = 1.25


def box_to_center_scale(box: Sequence[float], input_size: Sequence[int], padding: float = DEFAULT_PADDING
                        ) -> tuple[np.ndarray, np.ndarray]:
    """A person box ``[x, y, w, h]`` -> ``center (2,)`` and ``scale (2,)`` (region width, height in pixels).

    The region has the aspect ratio of ``input_size = (H, W)``: the shorter side of the box is grown to it, then
    both sides are multiplied by ``padding``.
    """
    x, y, w, h = (float(v) for v in box)
    height, width = (float(v) for v in input_size)
    aspect = width / height
    center = np.array([x + w * 0.5, y + h * 0.5], np.float32)
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    return center, np.array([w * padding, h * padding], np.float32)


def crop_affine(center: Sequence[float], scale: Sequence[float], input_size: Sequence[int],
                rotation: float = 0.0) -> np.ndarray:
    """float64 ``(2, 3)``: original-image coordinates -> crop coordinates.

    The region of ``scale = (w, h)`` pixels centred on ``center`` (rotated by ``rotation`` degrees,
    counter-clockwise) lands on the ``input_size = (H, W)`` crop, its centre on the crop's centre
    ``((W - 1) / 2, (H - 1) / 2)``.
    """
    height, width = (float(v) for v in input_size)
    cx, cy = (float(v) for v in center)
    sx, sy = width / float(scale[0]), height / float(scale[1])
    theta = math.radians(rotation)
    cos, sin = math.cos(theta), math.sin(theta)
    # x' = S R (x - c) + c', with R rotating counter-clockwise in image (y down) coordinates.
    linear = np.array([[sx * cos, sx * sin], [-sy * sin, sy * cos]], np.float64)
    target = np.array([(width - 1) * 0.5, (height - 1) * 0.5])
    offset = target - linear @ np.array([cx, cy])
    return np.concatenate([linear, offset[:, None]], axis=1)


def invert_affine(affine: np.ndarray) -> np.ndarray:
    """The inverse of a ``(2, 3)`` affine (``cv2.invertAffineTransform``), float64."""
    return cv2.invertAffineTransform(np.asarray(affine, np.float64))


def transform_points(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Apply a ``(2, 3)`` affine to ``(..., 2+)`` points; columns after x, y (visibility, score) are kept."""
    points = np.asarray(points, np.float32)
    affine = np.asarray(affine, np.float64)
    moved = points.copy()
    xy = points[..., :2].astype(np.float64)
    moved[..., :2] = (xy @ affine[:, :2].T + affine[:, 2]).astype(np.float32)
    return moved


def warp_to_crop(image: np.ndarray, affine: np.ndarray, input_size: Sequence[int]) -> np.ndarray:
    """The ``(H, W, C)`` crop of ``image`` under ``affine`` (bilinear, zero outside the image)."""
    height, width = (int(v) for v in input_size)
    return cv2.warpAffine(image, np.asarray(affine, np.float64), (width, height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
