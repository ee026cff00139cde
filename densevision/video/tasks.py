"""Segmentation and classification videos: the model stage, the drawing and the JSON record of each, run by
:func:`densevision.video.pipeline.run_video` (pose has its own: :func:`~densevision.video.pipeline.run_pose_video`).

- segmentation: the class map of every frame (the task's own ``predict_image``: tiling, flip test) drawn as the
  palette's colours over the frame at ``opacity``, with a legend of the classes present (largest first); JSON
  ``"classes": {name: fraction of the frame}``;
- classification: the top-k classes of every frame (the task's ``predict_image``: resize to the model's input,
  softmax) written in a box at the top left; JSON ``"top_k": [{"class", "index", "probability"}]``;
- sliding classification (:func:`sliding_video`, the default for a recipe whose classifier has a fully connected
  head): the classifier slid over the whole frame (:mod:`densevision.inference.sliding`), the mean of its window
  probabilities as the frame's top-k, and the heat map of the top-1 class (or a chosen one) drawn over the frame;
  JSON ``"top_k"`` as above plus ``"heatmap_class"``.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence

import cv2
import numpy as np

from densevision.inference.sliding import (class_heatmap, image_scores, overlay_heatmap, to_probabilities, top_k,
                                           window_scores)
from densevision.sizes import resize
from densevision.visualization.segmentation import overlay

LEGEND_ROWS = 8  # most classes listed in the legend (the largest ones)


def _text_box(frame: np.ndarray, lines: Sequence[tuple[str, Optional[Sequence[int]]]], right: bool) -> np.ndarray:
    """Lines of white text on a dark box in a top corner, each optionally led by a colour swatch; in place."""
    scale = max(0.35, frame.shape[0] / 720 * 0.6)
    size = [cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)[0] for text, _ in lines]
    line_h = max(h for _, h in size) + max(4, int(8 * scale))
    swatch = line_h - max(2, int(4 * scale)) if any(colour is not None for _, colour in lines) else 0
    margin = max(3, int(6 * scale))
    box_w = max(w for w, _ in size) + swatch + (margin if swatch else 0) + 2 * margin
    box_h = line_h * len(lines) + margin
    x0 = frame.shape[1] - box_w if right else 0
    patch = frame[:box_h, max(0, x0):x0 + box_w]
    patch[:] = (patch * 0.35).astype(np.uint8)  # dimmed, not hidden: the frame stays visible under the legend
    for row, ((text, colour), (_, h)) in enumerate(zip(lines, size)):
        top = margin + row * line_h
        x = x0 + margin
        if colour is not None:
            cv2.rectangle(frame, (x, top), (x + swatch, top + swatch), tuple(int(c) for c in colour), -1)
            x += swatch + margin
        cv2.putText(frame, text, (x, top + h + (line_h - h) // 2 - 2), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), 1, cv2.LINE_AA)
    return frame


def _percent(fraction: float) -> str:
    return f"{fraction:.0%}" if fraction >= 0.005 else "<1%"


def class_fractions(labels: np.ndarray, num_classes: int, ignore_label: Optional[int] = None) -> np.ndarray:
    """Fraction of the pixels of ``labels`` ``(H, W)`` in each class: ``(K,)`` float64 (void pixels count in the
    total but in no class)."""
    labels = np.asarray(labels).reshape(-1)
    valid = (labels >= 0) & (labels < num_classes)
    if ignore_label is not None:
        valid &= labels != ignore_label
    return np.bincount(labels[valid], minlength=num_classes)[:num_classes] / max(1, labels.size)


def segmentation_video(task, forward, options, opacity: float = 0.5, legend: bool = True
                       ) -> tuple[list[Callable[[dict], dict]], Callable, Callable]:
    """``(stages, draw, record)`` for :func:`~densevision.video.pipeline.run_video` with a segmentation task.

    Args:
        task: a :class:`~densevision.tasks.segmentation.SegmentationTask` (``class_names``, ``palette``,
            ``ignore_label``).
        forward: ``fn(images float32 (B, H, W, 3)) -> logits`` (:func:`~densevision.engine.predictor.make_forward`).
        options: prediction options (``flip``, ``scales``, ``tile``, ``max_pixels``).
        opacity: weight of the class colours over the frame, in [0, 1].
        legend: draw the legend of the classes present.
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be within [0, 1], got {opacity}")

    def segment(item: dict) -> dict:
        item["labels"] = task.predict_image(forward, item["frame"], options)
        return item

    def draw(frame: np.ndarray, item: dict) -> np.ndarray:
        labels = item["labels"]
        output = overlay(frame, labels, task.palette, alpha=opacity, ignore_label=task.ignore_label)
        if legend:
            fractions = class_fractions(labels, task.num_classes, task.ignore_label)
            present = [int(k) for k in np.argsort(-fractions, kind="stable") if fractions[k] > 0][:LEGEND_ROWS]
            if present:
                _text_box(output, [(f"{task.class_names[k]} {_percent(fractions[k])}", task.palette[k])
                                   for k in present], right=True)
        return output

    def record(item: Optional[dict]) -> dict:
        if item is None:
            return {"classes": {}}
        fractions = class_fractions(item["labels"], task.num_classes, task.ignore_label)
        return {"classes": {task.class_names[k]: round(float(fractions[k]), 5)
                            for k in np.argsort(-fractions, kind="stable") if fractions[k] > 0}}

    return [segment], draw, record


def classification_video(task, forward, options) -> tuple[list[Callable[[dict], dict]], Callable, Callable]:
    """``(stages, draw, record)`` for :func:`~densevision.video.pipeline.run_video` with a classification task:
    ``options.top_k`` classes per frame, drawn at the top left with their probabilities."""

    def classify(item: dict) -> dict:
        answer = task.predict_image(forward, item["frame"], options)
        item["top_k"] = task.prediction_record(answer, "", item["frame"].shape[:2], options)["top_k"]
        return item

    def draw(frame: np.ndarray, item: dict) -> np.ndarray:
        return _text_box(frame.copy(), [(f"{entry['class']} {entry['probability']:.1%}", None)
                                        for entry in item["top_k"]], right=False)

    def record(item: Optional[dict]) -> dict:
        return {"top_k": [] if item is None else item["top_k"]}

    return [classify], draw, record


def _at_least(frame: np.ndarray, window: tuple[int, int]) -> np.ndarray:
    """``frame`` resized up (aspect kept) until it holds one ``window``; as it is when it already does."""
    height, width = frame.shape[:2]
    scale = max(window[0] / height, window[1] / width)
    if scale <= 1:
        return frame
    return resize(frame, (max(window[0], int(np.ceil(height * scale))), max(window[1], int(np.ceil(width * scale)))))


def sliding_video(fc_model, window, net_stride, class_names: Sequence[str], stride: Optional[int] = None,
                  k: int = 3, class_index: Optional[int] = None, opacity: float = 0.5,
                  max_pixels: Optional[int] = None) -> tuple[list[Callable[[dict], dict]], Callable, Callable]:
    """``(stages, draw, record)`` for :func:`~densevision.video.pipeline.run_video` with a sliding classifier.

    Per frame: the window scores of ``fc_model`` over the whole frame (:func:`~densevision.inference.sliding.
    window_scores`, ``(rows, cols, K)``; a frame smaller than the window is first resized up, aspect kept), the
    mean of the windows' probabilities as the frame's class probabilities ``(K,)`` and their top ``k``, and the
    heat map ``(H, W)`` of the top-1 class (``class_index``: always that class) drawn over the frame at
    ``opacity`` with the top-k in a box at the top left.

    Args:
        fc_model, window, net_stride: :func:`~densevision.inference.sliding.sliding_classifier`'s answer.
        class_names: ``K`` names.
        stride: sliding stride, a divisor of the network stride (default: the network stride, one pass).
        k: classes listed per frame.
        class_index: the heat map's class; ``None``: each frame's top-1.
        opacity: weight of the heat map's colours over the frame, in [0, 1].
        max_pixels: frames above this many pixels are scored in tiles (``None``: one pass).
    """
    if not 0.0 <= opacity <= 1.0:
        raise ValueError(f"opacity must be within [0, 1], got {opacity}")
    stride = net_stride[0] if stride is None else int(stride)

    def score(item: dict) -> dict:
        image = _at_least(item["frame"], window)
        maps = window_scores(fc_model, image, window, stride, net_stride, max_pixels=max_pixels)[0]
        item["scores"], item["scored_size"] = maps, image.shape[:2]
        item["top_k"] = [{"class": name, "index": index, "probability": probability}
                         for index, name, probability in top_k(image_scores([maps]), k, class_names)]
        return item

    def heat(item: dict) -> dict:  # its own stage: the numpy heat map of frame i overlaps the model on frame i + 1
        index = item["top_k"][0]["index"] if class_index is None else class_index
        heatmap = class_heatmap(to_probabilities(item["scores"]), index, item["scored_size"], window, stride)
        height, width = item["frame"].shape[:2]
        if heatmap.shape != (height, width):  # scored resized up: back to the frame's size
            heatmap = resize(heatmap, (height, width))
        item["heatmap"], item["heatmap_class"] = heatmap, index
        return item

    def draw(frame: np.ndarray, item: dict) -> np.ndarray:
        # colours scaled to probability 1, not to each frame's maximum: the same colour means the same probability
        # in every frame, so a class fading out of view fades in the video instead of being stretched back to red
        output = overlay_heatmap(frame, item["heatmap"], alpha=opacity, vmax=1.0)
        lines = [(f"{entry['class']} {entry['probability']:.1%}", None) for entry in item["top_k"]]
        return _text_box(output, lines + [(f"heat map: {class_names[item['heatmap_class']]}", None)], right=False)

    def record(item: Optional[dict]) -> dict:
        if item is None:
            return {"top_k": [], "heatmap_class": None}
        return {"top_k": item["top_k"], "heatmap_class": class_names[item["heatmap_class"]]}

    return [score, heat], draw, record
