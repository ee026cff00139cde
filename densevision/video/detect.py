"""Finding people in frames: OpenCV's HOG people detector (offline), boxes from a JSON file, or the whole frame.

Every finder answers ``(boxes float32 (N, 4) [x, y, w, h] in frame pixels, scores float32 (N,))``.

Boxes file format (``--boxes FILE.json``), either of:

1. per frame::

       {"frames": [{"frame": 0, "boxes": [[x, y, w, h], [x, y, w, h, score], ...]}, ...]}

2. a COCO-style detection list, one entry per box, ``"frame"`` (or ``"image_id"``) the 0-based frame index::

       [{"frame": 0, "bbox": [x, y, w, h], "score": 0.9}, ...]

Frames not listed have no people; a missing score is 1.0; ``w`` and ``h`` must be positive.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from densevision.errors import DensevisionError
from densevision.video.io import VideoError

Boxes = tuple[np.ndarray, np.ndarray]

HOG_MISSING = (
    "this OpenCV build has no cv2.HOGDescriptor, which the default person finder uses: opencv-python(-headless) "
    "5.0 dropped it (and CascadeClassifier) from the main module. Install the 4.x wheel densevision pins "
    "(pip install 'opencv-python-headless~=4.14.0'), or give people boxes with --boxes FILE.json, or use --single"
)


class DetectorUnavailableError(DensevisionError, RuntimeError):
    """The person detector cannot run in this environment (the OpenCV build lacks it)."""


def _empty() -> Boxes:
    return np.zeros((0, 4), np.float32), np.zeros((0,), np.float32)


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Intersection over union of ``[x, y, w, h]`` boxes: ``(N, 4), (M, 4) -> (N, M)`` (0 where a union is empty)."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    left = np.maximum(a[:, None, 0], b[None, :, 0])
    top = np.maximum(a[:, None, 1], b[None, :, 1])
    right = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    bottom = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    intersection = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None, :] - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1), 0.0)


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy NMS: indices of kept boxes, highest score first; a box is dropped when its IoU with a kept, higher
    scoring box exceeds ``iou_threshold``. Same result as ``cv2.dnn.NMSBoxes`` with no score threshold."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    overlaps = box_iou(boxes, boxes)
    keep: list[int] = []
    for index in order:
        if all(overlaps[index, kept] <= iou_threshold for kept in keep):
            keep.append(int(index))
    return np.asarray(keep, np.int64)


class HogPersonDetector:
    """Dalal-Triggs HOG + linear SVM people detector (``cv2.HOGDescriptor_getDefaultPeopleDetector``), then NMS.

    The detector's window is 64x128 pixels: people shorter than about 128 pixels are missed unless ``upscale`` > 1;
    ``upscale`` < 1 detects on a smaller frame (faster on HD video). Boxes come back in frame pixels. A frame
    smaller than the window (after ``upscale``) has no detection: OpenCV 4.14's ``detectMultiScale`` kills the
    process on such images (a segmentation fault at 96x128, an abort at 200x47, measured), so it is never called.

    Args:
        score_threshold: keep detections whose SVM score (``detectMultiScale``'s weight) is at least this.
        nms_iou: NMS IoU threshold applied after OpenCV's own rectangle grouping.
        min_size: drop boxes shorter than this many pixels (frame pixels).
        group_threshold: OpenCV's grouping: a detection needs more than this many overlapping windows (0: none).
        win_stride: window step in pixels (a multiple of 8, the block stride; larger is faster and coarser).
        padding: pixels of padding around the frame for windows at the border (a multiple of 8).
        scale: step between pyramid levels (1.05 is OpenCV's default; larger is faster).
        upscale: resize factor applied to the frame before detecting.
        hit_threshold: SVM margin for a window to count at all (OpenCV's ``hitThreshold``).

    Raises:
        DetectorUnavailableError: the OpenCV build has no ``HOGDescriptor`` (opencv 5.0).
    """

    def __init__(self, score_threshold: float = 0.3, nms_iou: float = 0.4, min_size: float = 0.0,
                 group_threshold: int = 2, win_stride: int = 8, padding: int = 8, scale: float = 1.05,
                 upscale: float = 1.0, hit_threshold: float = 0.0):
        if not hasattr(cv2, "HOGDescriptor"):
            raise DetectorUnavailableError(f"{HOG_MISSING} (found OpenCV {cv2.__version__})")
        if upscale <= 0 or scale <= 1 or win_stride < 8 or win_stride % 8 or padding < 0 or padding % 8:
            raise ValueError(f"HogPersonDetector: need upscale > 0, scale > 1, win_stride and padding multiples of 8 "
                             f"(win_stride >= 8); got upscale={upscale}, scale={scale}, win_stride={win_stride}, "
                             f"padding={padding}")
        self.score_threshold, self.nms_iou, self.min_size = score_threshold, nms_iou, min_size
        self.group_threshold, self.scale, self.upscale, self.hit_threshold = (group_threshold, scale, upscale,
                                                                              hit_threshold)
        self.win_stride, self.padding = (win_stride, win_stride), (padding, padding)
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def __call__(self, frame: np.ndarray, index: int = 0) -> Boxes:
        """``frame`` uint8 ``(H, W, 3)`` RGB -> ``(boxes (N, 4) [x, y, w, h], scores (N,))``, best first."""
        image = frame
        if self.upscale != 1.0:
            image = cv2.resize(frame, None, fx=self.upscale, fy=self.upscale,
                               interpolation=cv2.INTER_LINEAR if self.upscale > 1 else cv2.INTER_AREA)
        window_width, window_height = self._hog.winSize
        if image.shape[0] < window_height or image.shape[1] < window_width:
            return _empty()  # see the class docstring: OpenCV would crash
        # HOG uses gradients of all three channels; RGB versus BGR order does not change them.
        rects, weights = self._hog.detectMultiScale(image, hitThreshold=self.hit_threshold, winStride=self.win_stride,
                                                    padding=self.padding, scale=self.scale,
                                                    groupThreshold=self.group_threshold)
        if len(rects) == 0:
            return _empty()
        boxes = np.asarray(rects, np.float32).reshape(-1, 4) / np.float32(self.upscale)
        scores = np.asarray(weights, np.float32).reshape(-1)
        wanted = (scores >= self.score_threshold) & (boxes[:, 3] >= self.min_size)
        boxes, scores = boxes[wanted], scores[wanted]
        keep = non_max_suppression(boxes, scores, self.nms_iou)
        return boxes[keep], scores[keep]


def whole_frame_box(width: int, height: int) -> Boxes:
    """The whole frame as one person (``--single``): ``([[0, 0, width, height]], [1.0])``."""
    return np.array([[0, 0, width, height]], np.float32), np.ones((1,), np.float32)


def _parse_box(values, where: str) -> tuple[list[float], float]:
    if not isinstance(values, (list, tuple)) or len(values) not in (4, 5):
        raise VideoError(f"{where}: expected [x, y, w, h] or [x, y, w, h, score], got {values!r}")
    try:
        numbers = [float(v) for v in values]
    except (TypeError, ValueError):
        raise VideoError(f"{where}: box values must be numbers, got {values!r}") from None
    if not all(math.isfinite(v) for v in numbers) or numbers[2] <= 0 or numbers[3] <= 0:
        raise VideoError(f"{where}: box {values!r} needs finite values and positive width and height")
    return numbers[:4], (numbers[4] if len(numbers) == 5 else 1.0)


def _frame_index(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 0:
        raise VideoError(f"{where}: frame index must be a non-negative integer, got {value!r}")
    return int(value)


def load_boxes_json(path: str | os.PathLike) -> dict[int, Boxes]:
    """Per-frame people boxes from a JSON file (formats in the module docstring): ``{frame: (boxes, scores)}``.

    Raises:
        VideoError: naming the file and the entry: unreadable JSON, an unknown layout, a bad frame index or box,
            a frame listed twice (per-frame layout).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise VideoError(f"boxes file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise VideoError(f"boxes file {path} is not readable JSON ({error})") from None
    collected: dict[int, tuple[list, list]] = {}
    if isinstance(data, dict) and isinstance(data.get("frames"), list):
        for position, entry in enumerate(data["frames"]):
            where = f"boxes file {path}, frames[{position}]"
            if not isinstance(entry, dict) or "frame" not in entry or not isinstance(entry.get("boxes"), list):
                raise VideoError(f"{where}: expected {{\"frame\": i, \"boxes\": [[x, y, w, h(, score)], ...]}}, "
                                 f"got {entry!r:.120}")
            frame = _frame_index(entry["frame"], where)
            if frame in collected:
                raise VideoError(f"{where}: frame {frame} is listed twice")
            boxes, scores = collected.setdefault(frame, ([], []))
            for number, values in enumerate(entry["boxes"]):
                box, score = _parse_box(values, f"{where} (frame {frame}), box {number}")
                boxes.append(box)
                scores.append(score)
    elif isinstance(data, list):
        for position, entry in enumerate(data):
            where = f"boxes file {path}, entry {position}"
            key = "frame" if isinstance(entry, dict) and "frame" in entry else "image_id"
            if not isinstance(entry, dict) or key not in entry or "bbox" not in entry:
                raise VideoError(f"{where}: expected {{\"frame\" (or \"image_id\"): i, \"bbox\": [x, y, w, h], "
                                 f"\"score\": s}}, got {entry!r:.120}")
            frame = _frame_index(entry[key], where)
            box, _ = _parse_box(entry["bbox"], f"{where} (frame {frame}), bbox")
            score = entry.get("score", 1.0)
            if isinstance(score, bool) or not isinstance(score, (int, float)) or not math.isfinite(score):
                raise VideoError(f"{where} (frame {frame}): score must be a number, got {score!r}")
            boxes, scores = collected.setdefault(frame, ([], []))
            boxes.append(box)
            scores.append(float(score))
    else:
        raise VideoError(f"boxes file {path}: expected {{\"frames\": [{{\"frame\": i, \"boxes\": [...]}}]}} or a "
                         f"list of {{\"frame\": i, \"bbox\": [x, y, w, h], \"score\": s}}; got {type(data).__name__}")
    return {frame: (np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32))
            for frame, (boxes, scores) in sorted(collected.items())}


def boxes_from_table(table: dict[int, Boxes]) -> Callable[[np.ndarray, int], Boxes]:
    """A ``find_people(frame, index)`` answering the boxes of a loaded boxes file (none for unlisted frames)."""

    def find_people(frame: np.ndarray, index: int) -> Boxes:
        boxes, scores = table.get(index, _empty())
        return boxes.copy(), scores.copy()

    return find_people


def whole_frame_finder() -> Callable[[np.ndarray, int], Boxes]:
    """A ``find_people(frame, index)`` that answers the whole frame as one person."""

    def find_people(frame: np.ndarray, index: int) -> Boxes:
        return whole_frame_box(frame.shape[1], frame.shape[0])

    return find_people


def frames_beyond(table: dict[int, Boxes], frame_count: Optional[int]) -> list[int]:
    """Frames of a boxes file at or past ``frame_count`` (a file made for another video, most likely)."""
    return [] if frame_count is None else [frame for frame in table if frame >= frame_count]
