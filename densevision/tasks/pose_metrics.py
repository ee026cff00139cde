"""Pose accuracy: PCK / PCKh as additive counts, and COCO keypoint AP through pycocotools.

PCK (percentage of correct keypoints): a labelled joint is correct when its predicted position lies within
``threshold x normalizer`` of the truth. The normalizer is per person: LSP's PCK@0.2 uses the torso size
(:func:`lsp_torso_size`), MPII's PCKh@0.5 the head size (:func:`head_size_from_box`, 0.6 x the head box diagonal).
:func:`pck_counts` returns per-joint hit and label counts, which add over batches, replicas and workers, so the
final number is exact under any distribution strategy; :func:`pck_summary` turns the totals into percentages.

COCO keypoint AP ranks every predicted person by its score and matches it to ground truth by OKS (object keypoint
similarity); it needs all predictions at once, so the pose task collects them and calls :func:`coco_keypoint_ap`
on the chief.
"""

from __future__ import annotations

import contextlib
import copy
import io
import os
import warnings
from typing import Iterable, Optional, Sequence

import numpy as np
import tensorflow as tf

#: MPII's head-size factor: PCKh normalises by 0.6 x the head box diagonal (the official evaluation's SC_BIAS)
MPII_HEAD_FACTOR = 0.6

#: below this joint score a joint does not count toward the instance score (HRNet's ``in_vis_thre``)
JOINT_SCORE_THRESHOLD = 0.2

#: COCOeval's keypoint summary, in its order
COCO_STAT_NAMES = ("ap", "ap50", "ap75", "ap_m", "ap_l", "ar", "ar50", "ar75", "ar_m", "ar_l")


# ------------------------------------------------------------------------------------------------ PCK


def pck_counts(pred: np.ndarray, gt: np.ndarray, mask: np.ndarray, normalizer: np.ndarray, threshold: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """Per-joint correct and labelled counts of a batch of people (additive).

    Args:
        pred: ``(N, J, 2+)`` predicted x, y (extra columns ignored).
        gt: ``(N, J, 2+)`` true x, y, in the same coordinates as ``pred`` and ``normalizer``.
        mask: ``(N, J)`` bool, the joints that count (labelled ones).
        normalizer: ``(N,)`` per-person length (torso size, head size). People whose normalizer is not a
            positive finite number are left out entirely (no hits, no counts).
        threshold: the fraction of the normalizer (0.2 for LSP's PCK, 0.5 for MPII's PCKh).

    Returns:
        ``(hits int64 (J,), counts int64 (J,))``: a joint is a hit when ``distance <= threshold * normalizer``
        (``<=`` as the MPII evaluation code).
    """
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)
    mask = np.asarray(mask, bool)
    normalizer = np.asarray(normalizer, np.float64).reshape(-1)
    if pred.ndim != 3 or gt.shape[:2] != pred.shape[:2] or mask.shape != pred.shape[:2] \
            or normalizer.shape != pred.shape[:1]:
        raise ValueError(f"pck_counts: expected pred (N, J, 2), gt (N, J, 2), mask (N, J), normalizer (N,); got "
                         f"{pred.shape}, {gt.shape}, {mask.shape}, {normalizer.shape}")
    valid = mask & (np.isfinite(normalizer) & (normalizer > 0))[:, None]
    distance = np.linalg.norm(pred[..., :2] - gt[..., :2], axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        hit = valid & (distance <= threshold * normalizer[:, None])  # NaN predictions are misses
    return hit.sum(axis=0).astype(np.int64), valid.sum(axis=0).astype(np.int64)


def pck_counts_tf(pred, gt, mask, normalizer, threshold: float) -> tuple[tf.Tensor, tf.Tensor]:
    """In-graph :func:`pck_counts` (same arguments, tensors): ``(hits int32 (J,), counts int32 (J,))``.

    int32 is exact per batch; accumulate batches in int64 (as the engine does for additive sums).
    """
    pred = tf.cast(pred, tf.float32)[..., :2]
    gt = tf.cast(tf.convert_to_tensor(gt), tf.float32)[..., :2]
    mask = tf.cast(mask, tf.bool)
    normalizer = tf.reshape(tf.cast(normalizer, tf.float32), [-1])
    valid = mask & ((normalizer > 0) & tf.math.is_finite(normalizer))[:, None]
    distance = tf.norm(pred - gt, axis=-1)
    hit = valid & (distance <= threshold * normalizer[:, None])
    return tf.reduce_sum(tf.cast(hit, tf.int32), axis=0), tf.reduce_sum(tf.cast(valid, tf.int32), axis=0)


def lsp_torso_size(gt: np.ndarray, torso_joints: Sequence[int]) -> np.ndarray:
    """``(N,)`` torso size for LSP's PCK: the distance between the two ``torso_joints`` of each person.

    Args:
        gt: ``(N, J, 2+)`` true keypoints.
        torso_joints: ``[right_shoulder, left_hip]`` indices (the dataset info's ``torso_joints``).
    """
    gt = np.asarray(gt, np.float64)
    first, second = (int(v) for v in torso_joints)
    return np.linalg.norm(gt[:, first, :2] - gt[:, second, :2], axis=-1)


def head_size_from_box(x1, y1, x2, y2):
    """MPII's head size: ``0.6 x`` the diagonal of the head box ``(x1, y1)-(x2, y2)`` (scalars or arrays)."""
    return MPII_HEAD_FACTOR * np.hypot(np.asarray(x2, np.float64) - x1, np.asarray(y2, np.float64) - y1)


def pck_summary(hits: np.ndarray, counts: np.ndarray, joint_names: Sequence[str], metric: str = "pck",
                exclude_from_mean: Iterable[str] = ()) -> dict:
    """Totals -> ``{metric: mean, "per_joint": {name: value}}`` (fractions in [0, 1]).

    The mean is pooled: ``sum(hits) / sum(counts)`` over the joints not in ``exclude_from_mean``, i.e. every
    labelled joint instance weighs the same. That is what MPII's official evaluation reports as the mean (and what
    HRNet / MMPose compute as the label-count-weighted mean of the per-joint values, leaving out pelvis and
    thorax); it differs from the plain mean of per-joint values when joints have different label counts (truncated
    images lose ankles more often than heads). A joint with no labels has ``None`` in ``per_joint``; with no labels
    at all the mean is 0.0.
    """
    hits = np.asarray(hits, np.int64)
    counts = np.asarray(counts, np.int64)
    names = [str(name) for name in joint_names]
    if not (len(names) == hits.shape[0] == counts.shape[0]):
        raise ValueError(f"pck_summary: {len(names)} joint names but {hits.shape[0]} hits and {counts.shape[0]} "
                         f"counts")
    excluded = set(exclude_from_mean)
    unknown = excluded - set(names)
    if unknown:
        raise ValueError(f"pck_summary: exclude_from_mean names unknown joints {sorted(unknown)}; joints: {names}")
    per_joint = {name: (float(h / c) if c else None) for name, h, c in zip(names, hits, counts)}
    kept = np.array([name not in excluded for name in names])
    total = int(counts[kept].sum())
    return {metric: float(hits[kept].sum() / total) if total else 0.0, "per_joint": per_joint}


# ------------------------------------------------------------------------------------------------ COCO


def instance_scores(joint_scores: np.ndarray, box_scores: Optional[np.ndarray] = None,
                    threshold: float = JOINT_SCORE_THRESHOLD) -> np.ndarray:
    """``(N,)`` person scores for COCO's ranking, HRNet's rescoring: the mean of the joint scores above
    ``threshold`` (0 when none is), times the detector's box score (1 with ground-truth boxes)."""
    joint_scores = np.asarray(joint_scores, np.float64)
    confident = joint_scores > threshold
    count = confident.sum(axis=-1)
    mean = np.where(count > 0, (joint_scores * confident).sum(axis=-1) / np.maximum(count, 1), 0.0)
    if box_scores is not None:
        mean = mean * np.asarray(box_scores, np.float64).reshape(mean.shape)
    return mean


def coco_results(image_ids: Sequence[int], keypoints: np.ndarray, scores: Optional[Sequence[float]] = None,
                 category_id: int = 1) -> list[dict]:
    """Predictions in COCO's keypoint results format.

    Args:
        image_ids: ``(N,)`` COCO image id of each person.
        keypoints: ``(N, J, 3)`` x, y, joint score in ORIGINAL image pixels.
        scores: ``(N,)`` person scores that rank the detections; default :func:`instance_scores` of the joint
            scores (ground-truth boxes: no box score).
        category_id: COCO's person category.

    Returns:
        ``[{"image_id", "category_id", "keypoints": [x1, y1, s1, ...] (3J floats), "score"}, ...]``. COCOeval
        ignores the third keypoint value; the joint score is written there, as HRNet does.
    """
    keypoints = np.asarray(keypoints, np.float64)
    image_ids = np.asarray(image_ids).reshape(-1)
    if keypoints.ndim != 3 or keypoints.shape[-1] != 3 or len(image_ids) != len(keypoints):
        raise ValueError(f"coco_results: expected image_ids (N,) and keypoints (N, J, 3); got {image_ids.shape} and "
                         f"{keypoints.shape}")
    scores = instance_scores(keypoints[..., 2]) if scores is None else np.asarray(scores, np.float64).reshape(-1)
    if len(scores) != len(keypoints):
        raise ValueError(f"coco_results: {len(scores)} scores for {len(keypoints)} people")
    return [{"image_id": int(image_id), "category_id": int(category_id),
             "keypoints": [float(v) for v in points.reshape(-1)], "score": float(score)}
            for image_id, points, score in zip(image_ids, keypoints, scores)]


def _load_coco(annotations, quiet: bool):
    from pycocotools.coco import COCO

    if isinstance(annotations, COCO):
        return annotations
    path = os.fspath(annotations)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"coco_keypoint_ap: annotation file {path!r} does not exist")
    with _maybe_quiet(quiet):
        return COCO(path)


def _maybe_quiet(quiet: bool):
    return contextlib.redirect_stdout(io.StringIO()) if quiet else contextlib.nullcontext()


def coco_keypoint_ap(annotations, results: Sequence[dict], sigmas: Optional[Sequence[float]] = None,
                     image_ids: Optional[Iterable[int]] = None, verbose: bool = False) -> dict[str, float]:
    """COCO keypoint AP/AR of ``results`` through pycocotools' ``COCOeval(iouType="keypoints")``.

    Args:
        annotations: the ground-truth json path, or a ``pycocotools.coco.COCO``.
        results: :func:`coco_results` dicts.
        sigmas: per-joint OKS sigmas (the dataset info's ``sigmas``); default COCOeval's 17 COCO sigmas.
        image_ids: the images evaluated; default those that have results (so a run over part of the validation
            set is scored on that part). A listed image without results counts its people as misses.
        verbose: let pycocotools print its loading and summary tables.

    Returns:
        ``{"ap", "ap50", "ap75", "ap_m", "ap_l", "ar", "ar50", "ar75", "ar_m", "ar_l"}`` as COCOeval's summary (in
        [0, 1]; -1 where no ground truth falls in an area range). Empty ``results`` give 0.0 everywhere with a
        warning.
    """
    from pycocotools.cocoeval import COCOeval

    if len(results) == 0:
        warnings.warn("coco_keypoint_ap: no predictions to evaluate; reporting AP and AR as 0.0", stacklevel=2)
        return {name: 0.0 for name in COCO_STAT_NAMES}
    coco_gt = _load_coco(annotations, quiet=not verbose)
    known = set(coco_gt.getImgIds())
    unknown = sorted({int(r["image_id"]) for r in results} - known)
    if unknown:
        raise ValueError(f"coco_keypoint_ap: results name image ids not in the annotations: {unknown[:10]}"
                         f"{' ...' if len(unknown) > 10 else ''}")
    lengths = {len(r["keypoints"]) for r in results}
    if sigmas is not None and lengths != {3 * len(sigmas)}:
        raise ValueError(f"coco_keypoint_ap: {len(sigmas)} sigmas need 3 x {len(sigmas)} keypoint values per "
                         f"result, got lengths {sorted(lengths)}")
    evaluated = sorted({int(r["image_id"]) for r in results} if image_ids is None else {int(i) for i in image_ids})
    if not set(evaluated) <= known:
        raise ValueError(f"coco_keypoint_ap: image_ids not in the annotations: {sorted(set(evaluated) - known)[:10]}")
    with _maybe_quiet(not verbose):
        # loadRes writes area, bbox and id into the dicts it is given: hand it copies
        coco_dt = coco_gt.loadRes(copy.deepcopy(list(results)))
        evaluation = COCOeval(coco_gt, coco_dt, iouType="keypoints")
        if sigmas is not None:
            evaluation.params.kpt_oks_sigmas = np.asarray(sigmas, np.float64)
        evaluation.params.imgIds = evaluated
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {name: float(value) for name, value in zip(COCO_STAT_NAMES, evaluation.stats)}
