"""Drawing on video frames: skeletons from a dataset definition, track boxes and an FPS counter.

Frames are uint8 ``(H, W, 3)`` RGB and are drawn on in place. Colours come from the dataset's ``info``
(``skeleton``, ``joint_colors``, ``link_colors``, RGB); a person is a dict with ``"keypoints"`` ``(J, 3)``
``[x, y, score]`` in frame pixels, ``"box"`` ``[x, y, w, h]`` and optionally ``"track_id"`` and ``"score"``.
"""

from __future__ import annotations

import collections
import time
from typing import Callable, Optional, Sequence

import cv2
import numpy as np

from densevision.visualization.pose import draw_pose


def draw_people(frame: np.ndarray, people: Sequence[dict], info: dict, keypoint_threshold: float = 0.3,
                radius: int = 3, thickness: int = 2, draw_boxes: bool = False) -> np.ndarray:
    """Draw every person's skeleton (links, then joints on top) and optionally its box and track id, in place,
    with the pose drawing of the rest of the toolkit (:func:`densevision.visualization.pose.draw_pose`).

    Args:
        frame: uint8 ``(H, W, 3)`` RGB, drawn on in place and returned.
        people: dicts with ``"keypoints"`` ``(J, 3)`` in frame pixels (and ``"box"``, ``"track_id"``).
        info: the dataset definition: ``skeleton`` ``[[a, b], ...]``, ``joint_colors`` and ``link_colors`` (RGB).
        keypoint_threshold: joints scoring below it are not drawn, nor links touching them.
        radius: joint circle radius in pixels; thickness: link (and box) line width.
        draw_boxes: also draw each box with ``id N``.
    """
    if not people:
        return frame
    keypoints = np.stack([np.asarray(person["keypoints"], np.float64).reshape(-1, 3) for person in people])
    boxes = None
    if draw_boxes and all(person.get("box") is not None for person in people):
        boxes = np.array([person["box"] for person in people], np.float64)
    ids = [person.get("track_id") for person in people]
    frame[:] = draw_pose(frame, keypoints, info.get("skeleton") or [], info.get("joint_colors"),
                         info.get("link_colors"), kpt_thr=keypoint_threshold, radius=radius, thickness=thickness,
                         boxes=boxes, track_ids=ids if draw_boxes and None not in ids else None)
    return frame


def make_drawer(info: dict, keypoint_threshold: float = 0.3, radius: int = 3, thickness: int = 2,
                draw_boxes: bool = False) -> Callable[[np.ndarray, list], np.ndarray]:
    """A ``draw(frame, people) -> frame`` for :func:`densevision.video.pipeline.run_pose_video`."""

    def draw(frame: np.ndarray, people: list) -> np.ndarray:
        return draw_people(frame, people, info, keypoint_threshold, radius, thickness, draw_boxes)

    return draw


class FpsCounter:
    """Frames per second over the last ``window`` frames: call :meth:`tick` once per frame."""

    def __init__(self, window: int = 30, clock: Callable[[], float] = time.perf_counter):
        self._times: collections.deque = collections.deque(maxlen=window + 1)
        self._clock = clock

    def tick(self) -> Optional[float]:
        """Record a frame; the current rate, or None until two frames were seen."""
        self._times.append(self._clock())
        if len(self._times) < 2 or self._times[-1] <= self._times[0]:
            return None
        return (len(self._times) - 1) / (self._times[-1] - self._times[0])


def draw_fps(frame: np.ndarray, fps: Optional[float]) -> np.ndarray:
    """Write ``"12.3 FPS"`` in the top-left corner on a dark patch (scaled with the frame height), in place."""
    if fps is None:
        return frame
    scale = max(0.35, frame.shape[0] / 720 * 0.8)
    text = f"{fps:.1f} FPS"
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    margin = max(2, int(4 * scale))
    cv2.rectangle(frame, (0, 0), (width + 2 * margin, height + baseline + 2 * margin), (0, 0, 0), -1)
    cv2.putText(frame, text, (margin, margin + height), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1,
                cv2.LINE_AA)
    return frame
