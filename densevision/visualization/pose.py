"""Pictures of pose results: skeletons over images, heatmaps blended over crops, truth-versus-prediction panels.

Everything works on numpy arrays: images are uint8 RGB ``(H, W, 3)``, keypoints ``(P, J, 3)`` x, y, score in the
image's pixels (centres at integers), colours RGB triples. Drawing uses OpenCV with antialiasing and sub-pixel
positions; the input image is never modified.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import cv2
import numpy as np

from densevision.visualization.segmentation import default_palette, side_by_side

#: fractional bits for OpenCV's sub-pixel drawing (positions are multiplied by 2**SHIFT)
SHIFT = 4
_ONE = 1 << SHIFT
TEXT_COLOUR = (255, 255, 255)
TEXT_BACKGROUND = (0, 0, 0)


def default_radius(image_shape: Sequence[int]) -> int:
    """Joint radius for an image: about 1/300 of its diagonal, at least 2 pixels (3 at 640x480, 7 at 1080p)."""
    return max(2, int(round(math.hypot(image_shape[0], image_shape[1]) / 300.0)))


def default_thickness(image_shape: Sequence[int]) -> int:
    """Link thickness for an image: half the joint radius, at least 1 pixel."""
    return max(1, int(round(default_radius(image_shape) / 2.0)))


def _colour(value) -> tuple[int, int, int]:
    return tuple(int(c) for c in np.asarray(value).reshape(-1)[:3])


def _fixed(x: float, y: float) -> tuple[int, int]:
    return int(round(x * _ONE)), int(round(y * _ONE))


def _as_people(keypoints, where: str) -> np.ndarray:
    keypoints = np.asarray(keypoints, np.float64)
    if keypoints.ndim == 2:
        keypoints = keypoints[None]
    if keypoints.ndim != 3 or keypoints.shape[-1] not in (2, 3):
        raise ValueError(f"{where}: expected keypoints (P, J, 3) x, y, score (or (J, 3)), got {keypoints.shape}")
    if keypoints.shape[-1] == 2:  # no scores: every joint is drawn
        keypoints = np.concatenate([keypoints, np.ones(keypoints.shape[:2] + (1,))], axis=-1)
    return keypoints


def _canvas(image, where: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    if image.ndim != 3 or image.shape[-1] != 3:
        raise ValueError(f"{where}: expected an RGB image (H, W, 3), got shape {image.shape}")
    return np.ascontiguousarray(image, dtype=np.uint8).copy()


def _put_label(canvas: np.ndarray, text: str, x: float, y: float, scale: float) -> None:
    """``text`` on a dark box whose bottom-left corner is at (x, y), kept inside the image."""
    thickness = max(1, int(round(scale * 2)))
    (width, height), baseline = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    x = int(np.clip(x, 0, max(0, canvas.shape[1] - width - 2)))
    y = int(np.clip(y, height + baseline + 2, canvas.shape[0] - 1))
    cv2.rectangle(canvas, (x, y - height - baseline - 2), (x + width + 2, y), TEXT_BACKGROUND, -1)
    cv2.putText(canvas, text, (x + 1, y - baseline), cv2.FONT_HERSHEY_SIMPLEX, scale, TEXT_COLOUR, thickness,
                cv2.LINE_AA)


def draw_pose(image: np.ndarray, keypoints: np.ndarray, skeleton: Sequence[Sequence[int]],
              joint_colors: Optional[Sequence] = None, link_colors: Optional[Sequence] = None, kpt_thr: float = 0.3,
              radius: Optional[int] = None, thickness: Optional[int] = None, boxes: Optional[np.ndarray] = None,
              track_ids: Optional[Sequence[int]] = None) -> np.ndarray:
    """Skeletons drawn over a copy of ``image``: a new uint8 ``(H, W, 3)``.

    Args:
        image: uint8 RGB ``(H, W, 3)`` (or grey ``(H, W)``).
        keypoints: ``(P, J, 3)`` x, y, score per person (``(J, 3)`` for one; ``(P, J, 2)`` draws every joint).
            For ground truth pass the visibility flag as the score (v > 0 is drawn at the default threshold).
        skeleton: ``[[a, b], ...]`` joint index pairs to link.
        joint_colors: ``(J, 3)`` RGB per joint; default a fixed palette.
        link_colors: ``(L, 3)`` RGB per link; default a fixed palette.
        kpt_thr: joints scoring below this (or not finite) are not drawn, nor any link touching them.
        radius, thickness: joint radius and link width in pixels; default scaled to the image
            (:func:`default_radius`, :func:`default_thickness`).
        boxes: optional ``(P, 4)`` person boxes ``[x, y, w, h]``.
        track_ids: optional ``(P,)`` track ids, written above each person (and colouring its box).
    """
    canvas = _canvas(image, "draw_pose")
    people = _as_people(keypoints, "draw_pose")
    num_joints = people.shape[1]
    skeleton = [tuple(int(v) for v in link) for link in skeleton]
    for a, b in skeleton:
        if not (0 <= a < num_joints and 0 <= b < num_joints):
            raise ValueError(f"draw_pose: skeleton link {[a, b]} is outside the {num_joints} joints")
    joint_colors = default_palette(num_joints) if joint_colors is None else np.asarray(joint_colors)
    link_colors = default_palette(len(skeleton)) if link_colors is None else np.asarray(link_colors)
    if len(joint_colors) < num_joints or len(link_colors) < len(skeleton):
        raise ValueError(f"draw_pose: {len(joint_colors)} joint colours for {num_joints} joints and "
                         f"{len(link_colors)} link colours for {len(skeleton)} links")
    radius = default_radius(canvas.shape) if radius is None else int(radius)
    thickness = default_thickness(canvas.shape) if thickness is None else int(thickness)
    boxes = None if boxes is None else np.asarray(boxes, np.float64).reshape(-1, 4)
    track_palette = default_palette(64)
    text_scale = max(0.35, radius / 6.0)

    for index, person in enumerate(people):
        shown = np.isfinite(person).all(axis=1) & (person[:, 2] >= kpt_thr)
        track = None if track_ids is None else int(track_ids[index])
        if boxes is not None:
            x, y, w, h = boxes[index]
            box_colour = _colour(track_palette[track % 64]) if track is not None else (0, 255, 0)
            cv2.rectangle(canvas, _fixed(x, y), _fixed(x + w, y + h), box_colour, thickness, cv2.LINE_AA, SHIFT)
        for link, (a, b) in enumerate(skeleton):
            if shown[a] and shown[b]:
                cv2.line(canvas, _fixed(*person[a, :2]), _fixed(*person[b, :2]), _colour(link_colors[link]),
                         thickness, cv2.LINE_AA, SHIFT)
        for joint in np.flatnonzero(shown):
            cv2.circle(canvas, _fixed(*person[joint, :2]), radius * _ONE, _colour(joint_colors[joint]), -1,
                       cv2.LINE_AA, SHIFT)
        if track is not None:
            if boxes is not None:
                anchor = boxes[index, :2]
            elif shown.any():
                anchor = np.array([person[shown, 0].min(), person[shown, 1].min() - radius])
            else:
                continue
            _put_label(canvas, f"id {track}", anchor[0], anchor[1] - 2, text_scale)
    return canvas


def heatmap_blend(image: np.ndarray, heatmaps: np.ndarray, alpha: float = 0.6,
                  colormap: int = cv2.COLORMAP_JET) -> np.ndarray:
    """Heatmaps ``(h, w, J)`` (their maximum over joints, clipped to [0, 1]) coloured and blended over ``image``.

    The maps are resized to the image with ``cv2.resize`` (bilinear), whose pixel-centre alignment is the heatmap
    codec's ``u = (x + 0.5) * w / W - 0.5``. Each pixel is blended by ``alpha x heat``, so where the maps are
    zero the image shows unchanged. Returns a new uint8 ``(H, W, 3)``.
    """
    canvas = _canvas(image, "heatmap_blend")
    heatmaps = np.asarray(heatmaps, np.float32)
    if heatmaps.ndim == 2:
        heatmaps = heatmaps[..., None]
    if heatmaps.ndim != 3:
        raise ValueError(f"heatmap_blend: expected heatmaps (h, w, J), got shape {heatmaps.shape}")
    heat = np.clip(heatmaps.max(axis=-1), 0.0, 1.0)
    heat = cv2.resize(heat, (canvas.shape[1], canvas.shape[0]), interpolation=cv2.INTER_LINEAR)
    heat = np.clip(heat, 0.0, 1.0)
    colours = cv2.cvtColor(cv2.applyColorMap(np.rint(heat * 255).astype(np.uint8), colormap), cv2.COLOR_BGR2RGB)
    weight = (alpha * heat)[..., None]
    blended = (1.0 - weight) * canvas.astype(np.float32) + weight * colours.astype(np.float32)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8)


def side_by_side_pose(image: np.ndarray, gt: np.ndarray, pred: np.ndarray, info: dict, kpt_thr: float = 0.3,
                      titles: Sequence[str] = ("truth", "prediction"), **draw_options) -> np.ndarray:
    """Truth and prediction skeletons on two copies of ``image``, side by side: uint8 ``(H, 2W + gap, 3)``.

    Args:
        image: uint8 RGB ``(H, W, 3)``.
        gt: ``(P, J, 3)`` (or ``(J, 3)``) true x, y, v: joints with v > 0 are drawn.
        pred: ``(P, J, 3)`` (or ``(J, 3)``) predicted x, y, score: joints scoring ``>= kpt_thr`` are drawn.
        info: the dataset info (``skeleton``, and ``joint_colors`` / ``link_colors`` if it has them).
        titles: captions of the two panels (empty strings for none).
        draw_options: passed to :func:`draw_pose` (``radius``, ``thickness``, ``boxes``, ...).
    """
    truth = _as_people(gt, "side_by_side_pose").copy()
    truth[..., 2] = (truth[..., 2] > 0).astype(np.float64)
    common = dict(skeleton=info.get("skeleton", []), joint_colors=info.get("joint_colors"),
                  link_colors=info.get("link_colors"), **draw_options)
    panels = [draw_pose(image, truth, kpt_thr=0.5, **common),
              draw_pose(image, pred, kpt_thr=kpt_thr, **common)]
    scale = max(0.35, default_radius(panels[0].shape) / 6.0)
    for panel, title in zip(panels, titles):
        if title:
            _put_label(panel, str(title), 0, 0, scale)
    return side_by_side(panels)
