"""Finding people in frames: OpenCV's HOG people detector (offline), boxes from a JSON file, or the whole frame.

Every finder answers ``(boxes float32 (N, 4) [x, y, w, h] in frame pixels, scores float32 (N,))``.

Boxes files (``--boxes FILE.json``): :mod:`densevision.data.boxes`, the one parser of the predict and video tools.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from densevision.data.boxes import BoxesTable, empty_boxes, load_boxes_file
from densevision.errors import DensevisionError

Boxes = tuple[np.ndarray, np.ndarray]

HOG_MISSING = (
    "this OpenCV build has no cv2.HOGDescriptor, which the default person finder uses: opencv-python(-headless) "
    "5.0 dropped it (and CascadeClassifier) from the main module. Install the 4.x wheel densevision pins "
    "(pip install 'opencv-python-headless~=4.14.0'), or give people boxes with --boxes FILE.json, or use --single"
)


class DetectorUnavailableError(DensevisionError, RuntimeError):
    """The person detector cannot run in this environment (the OpenCV build lacks it)."""


_empty = empty_boxes


def _intersections(boxes_a: np.ndarray, boxes_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(intersection (N, M), area_a (N,), area_b (M,))`` of ``[x, y, w, h]`` boxes."""
    a = np.asarray(boxes_a, np.float64).reshape(-1, 4)
    b = np.asarray(boxes_b, np.float64).reshape(-1, 4)
    left = np.maximum(a[:, None, 0], b[None, :, 0])
    top = np.maximum(a[:, None, 1], b[None, :, 1])
    right = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    bottom = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    intersection = np.clip(right - left, 0, None) * np.clip(bottom - top, 0, None)
    return intersection, a[:, 2] * a[:, 3], b[:, 2] * b[:, 3]


def box_iou(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Intersection over union of ``[x, y, w, h]`` boxes: ``(N, 4), (M, 4) -> (N, M)`` (0 where a union is empty)."""
    intersection, area_a, area_b = _intersections(boxes_a, boxes_b)
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1), 0.0)


def box_coverage(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """The fraction of each box ``a`` inside each box ``b``: ``(N, 4), (M, 4) -> (N, M)`` (0 for an empty ``a``)."""
    intersection, area_a, _ = _intersections(boxes_a, boxes_b)
    return np.where(area_a[:, None] > 0, intersection / np.where(area_a > 0, area_a, 1)[:, None], 0.0)


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
        if self.upscale != 1.0:  # by the factor (fx, fy), not densevision.sizes.resize: boxes divide by it exactly
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


KERAS_HUB_PERSON = 1
"""The person class of keras-hub's COCO presets (``keras_hub.utils.coco_name_to_id("person")``: COCO's own ids)."""


class KerasHubPersonDetector:
    """People from a keras-hub object detector (``keras_hub.models.ObjectDetector``: D-FINE, RetinaNet), person
    class only, then NMS.

    Args:
        detector: a built keras-hub ``ObjectDetector`` (e.g. from a config, in tests), or None to load ``preset``.
        preset: a keras-hub preset name (``"dfine_nano_coco"``, ``"retinanet_resnet50_fpn_coco"``), downloaded on
            first use into the Kaggle cache (``$KAGGLEHUB_CACHE``, default ``~/.cache/kagglehub``).
        person_class: the detector's label of a person (:data:`KERAS_HUB_PERSON` for the COCO presets).
        score_threshold: keep detections at least this confident; nms_iou: NMS IoU threshold.

    Raises:
        DetectorUnavailableError: keras-hub is not installed, or the preset cannot be loaded (offline, unknown
            name); the message names the preset and the cache folder.
    """

    def __init__(self, detector=None, preset: Optional[str] = None, person_class: int = KERAS_HUB_PERSON,
                 score_threshold: float = 0.3, nms_iou: float = 0.4):
        if detector is None:
            detector = load_keras_hub_detector(preset)
        self.detector, self.person_class = detector, person_class
        self.score_threshold, self.nms_iou = score_threshold, nms_iou
        self.box_format = getattr(detector, "bounding_box_format", "yxyx")
        shape = getattr(getattr(detector, "backbone", None), "image_shape", None) or (None, None, 3)
        self.input_size = tuple(shape[:2]) if None not in tuple(shape[:2]) else None  # (H, W) when fixed

    def __call__(self, frame: np.ndarray, index: int = 0) -> Boxes:
        """``frame`` uint8 ``(H, W, 3)`` RGB -> ``(boxes (N, 4) [x, y, w, h], scores (N,))``, best first."""
        image, scale_x, scale_y = frame, 1.0, 1.0
        if self.input_size is not None and tuple(frame.shape[:2]) != self.input_size:
            height, width = self.input_size
            image = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
            scale_x, scale_y = frame.shape[1] / width, frame.shape[0] / height
        out = self.detector.predict(image[None].astype(np.float32), verbose=0)
        count = int(np.asarray(out.get("num_detections", [len(out["boxes"][0])])).reshape(-1)[0])
        boxes = np.asarray(out["boxes"], np.float32)[0][:count]
        scores = np.asarray(out["confidence"], np.float32)[0][:count]
        labels = np.asarray(out["labels"])[0][:count]
        wanted = (labels == self.person_class) & (scores >= self.score_threshold)
        boxes, scores = boxes[wanted], scores[wanted]
        if self.box_format == "yxyx":
            boxes = boxes[:, [1, 0, 3, 2]]
        elif self.box_format != "xyxy":
            raise ValueError(f"keras-hub detector: box format {self.box_format!r} is not handled (yxyx, xyxy)")
        xywh = np.stack([boxes[:, 0] * scale_x, boxes[:, 1] * scale_y, (boxes[:, 2] - boxes[:, 0]) * scale_x,
                         (boxes[:, 3] - boxes[:, 1]) * scale_y], axis=1).astype(np.float32).reshape(-1, 4)
        keep = (xywh[:, 2] > 0) & (xywh[:, 3] > 0)
        xywh, scores = xywh[keep], scores[keep]
        order = non_max_suppression(xywh, scores, self.nms_iou)
        return xywh[order], scores[order]


def load_keras_hub_detector(preset: Optional[str]):
    """``keras_hub.models.ObjectDetector.from_preset(preset)``, with one clear error when it cannot load.

    Raises:
        DetectorUnavailableError: keras-hub missing, or the preset not loadable (names the preset and the cache).
    """
    if not preset:
        raise DetectorUnavailableError("--detector keras_hub:PRESET needs a preset name, e.g. keras_hub:dfine_nano_coco")
    try:
        # Optional dependency, imported only when asked for: keras-hub pulls tensorflow-text and with it the
        # full `tensorflow` wheel, which must not be installed beside tensorflow-cpu.
        import keras_hub
    except ImportError as error:
        raise DetectorUnavailableError(f"--detector keras_hub:{preset} needs keras-hub, which is not importable "
                                       f"({error}); use the default HOG detector or --boxes") from None
    cache = os.environ.get("KAGGLEHUB_CACHE") or str(Path("~/.cache/kagglehub").expanduser())
    try:
        return keras_hub.models.ObjectDetector.from_preset(preset)
    except Exception as error:  # noqa: BLE001 - offline, unknown preset, bad cache: all end in this one message
        raise DetectorUnavailableError(
            f"keras-hub preset {preset!r} could not be loaded ({type(error).__name__}: {str(error)[:200]}); it is "
            f"downloaded on first use into {cache} (KAGGLEHUB_CACHE): connect once, or copy the preset there, or "
            f"use the default HOG detector") from None


def make_person_detector(spec: str = "hog", score_threshold: float = 0.3, nms_iou: float = 0.4,
                         upscale: float = 1.0):
    """The person finder named by ``--detector``: ``"hog"`` (:class:`HogPersonDetector`) or ``"keras_hub:PRESET"``
    (:class:`KerasHubPersonDetector`).

    Raises:
        DetectorUnavailableError: an unknown name, or the detector cannot run here.
    """
    if spec == "hog":
        return HogPersonDetector(score_threshold=score_threshold, nms_iou=nms_iou, upscale=upscale)
    if spec.startswith("keras_hub:"):
        return KerasHubPersonDetector(preset=spec.split(":", 1)[1], score_threshold=score_threshold, nms_iou=nms_iou)
    raise DetectorUnavailableError(f"--detector {spec}: expected hog or keras_hub:PRESET (e.g. "
                                   f"keras_hub:dfine_nano_coco)")


def whole_frame_box(width: int, height: int) -> Boxes:
    """The whole frame as one person (``--single``): ``([[0, 0, width, height]], [1.0])``."""
    return np.array([[0, 0, width, height]], np.float32), np.ones((1,), np.float32)


def load_boxes_json(path: str | os.PathLike) -> dict[int, Boxes]:
    """The frame-indexed entries of a boxes file, ``{frame: (boxes, scores)}`` (the one parser and its layouts:
    :mod:`densevision.data.boxes`; :func:`~densevision.data.boxes.load_boxes_file` keeps image names too).

    Raises:
        BoxesFileError: naming the file and the entry.
    """
    table = load_boxes_file(path)
    return {frame: table.entries[frame] for frame in table.frames()}


def boxes_from_table(table: BoxesTable | dict[int, Boxes], names: Optional[list[str]] = None
                     ) -> Callable[[np.ndarray, int], Boxes]:
    """A ``find_people(frame, index)`` answering the boxes a boxes file lists for frame ``index`` (or, for an image
    folder, for its file ``names[index]``); none for unlisted frames."""
    if not isinstance(table, BoxesTable):
        table = BoxesTable(Path("<boxes>"), dict(table))

    def find_people(frame: np.ndarray, index: int) -> Boxes:
        name = names[index] if names is not None and index < len(names) else None
        return table.lookup(frame=index, name=name)

    return find_people


def whole_frame_finder() -> Callable[[np.ndarray, int], Boxes]:
    """A ``find_people(frame, index)`` that answers the whole frame as one person."""

    def find_people(frame: np.ndarray, index: int) -> Boxes:
        return whole_frame_box(frame.shape[1], frame.shape[0])

    return find_people


def frames_beyond(table: BoxesTable | dict[int, Boxes], frame_count: Optional[int]) -> list[int]:
    """Frames of a boxes file at or past ``frame_count`` (a file made for another video, most likely)."""
    frames = table.frames() if isinstance(table, BoxesTable) else sorted(table)
    return [] if frame_count is None else [frame for frame in frames if frame >= frame_count]
