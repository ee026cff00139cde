"""Drawing on video frames: skeletons from a dataset definition, track boxes, a heatmap blend and an FPS counter.

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

DEFAULT_JOINT_COLOR = (255, 255, 0)
DEFAULT_LINK_COLOR = (0, 255, 255)


def track_color(track_id: int) -> tuple[int, int, int]:
    """A bright colour per track id (golden-ratio hue steps, so neighbouring ids differ)."""
    hue = int((track_id * 0.618033988749895 % 1.0) * 180)
    rgb = cv2.cvtColor(np.array([[[hue, 220, 255]]], np.uint8), cv2.COLOR_HSV2RGB)[0, 0]
    return tuple(int(c) for c in rgb)


def _point(xy) -> tuple[int, int]:
    return int(round(float(xy[0]))), int(round(float(xy[1])))


def draw_people(frame: np.ndarray, people: Sequence[dict], info: dict, keypoint_threshold: float = 0.3,
                radius: int = 3, thickness: int = 2, draw_boxes: bool = False) -> np.ndarray:
    """Draw every person's skeleton (links, then joints on top) and optionally its box and track id.

    Args:
        frame: uint8 ``(H, W, 3)`` RGB, drawn on in place and returned.
        people: dicts with ``"keypoints"`` ``(J, 3)`` in frame pixels (and ``"box"``, ``"track_id"``).
        info: the dataset definition: ``skeleton`` ``[[a, b], ...]``, ``joint_colors`` and ``link_colors`` (RGB).
        keypoint_threshold: joints scoring below it are not drawn, nor links touching them.
        radius: joint circle radius in pixels; thickness: link (and box) line width.
        draw_boxes: also draw each box in its track colour with ``id N``.
    """
    skeleton = info.get("skeleton") or []
    joint_colors = info.get("joint_colors")
    link_colors = info.get("link_colors")
    for person in people:
        keypoints = np.asarray(person["keypoints"], np.float64).reshape(-1, 3)
        shown = (keypoints[:, 2] >= keypoint_threshold) & np.isfinite(keypoints[:, :2]).all(axis=1)
        if draw_boxes and person.get("box") is not None:
            x, y, w, h = (float(v) for v in person["box"])
            color = track_color(int(person.get("track_id", 0) or 0))
            cv2.rectangle(frame, _point((x, y)), _point((x + w, y + h)), color, max(1, thickness), cv2.LINE_AA)
            if person.get("track_id") is not None:
                cv2.putText(frame, f"id {person['track_id']}", _point((x + 2, y + 14)), cv2.FONT_HERSHEY_SIMPLEX,
                            0.45, color, 1, cv2.LINE_AA)
        for number, (a, b) in enumerate(skeleton):
            if a < len(keypoints) and b < len(keypoints) and shown[a] and shown[b]:
                color = tuple(int(c) for c in link_colors[number]) if link_colors else DEFAULT_LINK_COLOR
                cv2.line(frame, _point(keypoints[a]), _point(keypoints[b]), color, thickness, cv2.LINE_AA)
        for joint in np.flatnonzero(shown):
            color = tuple(int(c) for c in joint_colors[joint]) if joint_colors else DEFAULT_JOINT_COLOR
            cv2.circle(frame, _point(keypoints[joint]), radius, color, -1, cv2.LINE_AA)
    return frame


def blend_heatmap(frame: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend a ``(H', W')`` heatmap in [0, 1] (resized to the frame) as a JET colour map over ``frame`` in place."""
    heat = cv2.resize(np.clip(np.asarray(heatmap, np.float32), 0, 1), (frame.shape[1], frame.shape[0]))
    colored = cv2.cvtColor(cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET), cv2.COLOR_BGR2RGB)
    weight = (alpha * heat)[..., None]
    frame[:] = (frame * (1 - weight) + colored * weight).astype(np.uint8)
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
