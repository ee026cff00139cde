"""A stand-in pose "model" for trying the video tool without a trained network (``--demo``) and for tests.

:func:`stick_figure_estimator` answers a fixed 14-joint stick figure (LSP's joint order) stretched over every box:
it exercises detection, tracking, smoothing, drawing and writing exactly as a real estimator would.
"""

from __future__ import annotations

import numpy as np

STICK_FIGURE_INFO = {
    "dataset": "stick_figure",
    "joint_names": ["right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
                    "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "neck",
                    "head_top"],
    "num_joints": 14,
    "skeleton": [[0, 1], [1, 2], [2, 8], [3, 9], [3, 4], [4, 5], [6, 7], [7, 8], [8, 12], [9, 12], [9, 10],
                 [10, 11], [12, 13], [2, 3]],
    "flip_pairs": [[0, 5], [1, 4], [2, 3], [6, 11], [7, 10], [8, 9]],
    # Right side warm, left side cool, centre green: distinct enough to be told apart in a compressed frame.
    "joint_colors": [[255, 64, 0], [255, 128, 0], [255, 192, 0], [0, 192, 255], [0, 128, 255], [0, 64, 255],
                     [255, 0, 128], [255, 0, 192], [255, 0, 255], [128, 0, 255], [64, 0, 255], [0, 0, 255],
                     [0, 255, 0], [0, 255, 128]],
    "link_colors": [[255, 128, 0]] * 3 + [[0, 128, 255]] * 3 + [[255, 0, 192]] * 2 + [[0, 255, 0]] * 2
                   + [[0, 0, 255]] * 2 + [[0, 255, 0]] * 2,
    "sigmas": None,
}

# (u, v) of each joint as fractions of the box width and height, and its score.
STICK_FIGURE_LAYOUT = np.array([
    [0.40, 0.95, 0.9], [0.40, 0.75, 0.9], [0.42, 0.55, 0.9], [0.58, 0.55, 0.9], [0.60, 0.75, 0.9],
    [0.60, 0.95, 0.9], [0.22, 0.52, 0.25], [0.28, 0.38, 0.9], [0.35, 0.22, 0.9], [0.65, 0.22, 0.9],
    [0.72, 0.38, 0.9], [0.78, 0.52, 0.25], [0.50, 0.18, 0.9], [0.50, 0.05, 0.9],
], np.float32)
"""Wrists score 0.25 (below the default drawing threshold 0.3) so that thresholding is visible."""


def stick_figure_estimator(frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Keypoints ``(N, 14, 3)`` ``[x, y, score]`` in frame pixels: :data:`STICK_FIGURE_LAYOUT` in each box
    ``(N, 4)`` ``[x, y, w, h]`` (``x + u * w``, ``y + v * h``)."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    keypoints = np.empty((len(boxes), len(STICK_FIGURE_LAYOUT), 3), np.float32)
    keypoints[..., 0] = boxes[:, None, 0] + STICK_FIGURE_LAYOUT[None, :, 0] * boxes[:, None, 2]
    keypoints[..., 1] = boxes[:, None, 1] + STICK_FIGURE_LAYOUT[None, :, 1] * boxes[:, None, 3]
    keypoints[..., 2] = STICK_FIGURE_LAYOUT[None, :, 2]
    return keypoints
