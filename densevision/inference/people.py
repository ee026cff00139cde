"""Person finding for top-down pose prediction on still images: the callable a pose task receives as its
``person_finder`` (the task never imports a detector itself).

``finder(image uint8 (H, W, 3), key) -> (boxes (N, 4) [x, y, w, h] float32, scores (N,) float32)``; ``key`` is the
input's relative path (how a boxes file names images).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from densevision.data.boxes import load_boxes_file
from densevision.video.detect import HogPersonDetector

PersonFinder = Callable[[np.ndarray, str], tuple[np.ndarray, np.ndarray]]


def whole_image(image: np.ndarray, key: str = "") -> tuple[np.ndarray, np.ndarray]:
    """The whole image is one person (``--single``): ``([[0, 0, W, H]], [1.0])``."""
    height, width = image.shape[:2]
    return np.array([[0, 0, width, height]], np.float32), np.ones(1, np.float32)


def boxes_file_finder(path) -> PersonFinder:
    """The entry of ``key`` in a boxes file (:func:`densevision.data.boxes.load_boxes_file`, read once, whole)."""
    table = load_boxes_file(path)
    return lambda image, key="": table.lookup(name=key)


def detector_finder() -> PersonFinder:
    """OpenCV's HOG people detector, built on the first image (only when no boxes are given)."""
    detector: list[HogPersonDetector] = []

    def find(image: np.ndarray, key: str = "") -> tuple[np.ndarray, np.ndarray]:
        if not detector:
            detector.append(HogPersonDetector())
        boxes, scores = detector[0](image)
        return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores, np.float32).reshape(-1)

    return find


def person_finder(options) -> PersonFinder:
    """The finder prediction options ask for: the whole image (``single``), a boxes file (``boxes_file``), or
    else the HOG detector."""
    if options.single:
        return whole_image
    if options.boxes_file:
        return boxes_file_finder(options.boxes_file)
    return detector_finder()
