"""Pose metrics: PCK / PCKh against hand-worked numbers, COCO keypoint AP and OKS against pycocotools."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import densevision  # noqa: F401  (backend and environment)
import tensorflow as tf
from densevision.tasks.pose_metrics import (
    coco_keypoint_ap,
    coco_results,
    head_size_from_box,
    instance_scores,
    lsp_torso_size,
    pck_counts,
    pck_counts_tf,
    pck_summary,
)

# ------------------------------------------------------------------------------------------------ PCK (LSP)
# Joints: 0 right shoulder, 1 left hip, 2 wrist, 3 ankle; torso = |right shoulder - left hip|, PCK@0.2.
LSP_NAMES = ["r_shoulder", "l_hip", "wrist", "ankle"]
LSP_GT = np.array([
    [[0, 0], [30, 40], [100, 100], [50, 50]],     # torso |(30, 40)| = 50   -> radius 0.2 * 50 = 10 px
    [[10, 10], [10, 110], [60, 60], [20, 20]],    # torso |(0, 100)| = 100  -> radius 20 px
    [[5, 5], [5, 5], [1, 1], [2, 2]],             # torso 0: degenerate, left out
], np.float64)
LSP_PRED = LSP_GT + np.array([
    [[6, 8], [0, 10.5], [3, 4], [400, 0]],        # 10 (hit, on the radius), 10.5 (miss), 5 (hit), unlabelled
    [[12, 16], [0, 25], [15, 20], [0, 19]],       # 20 (hit), 25 (miss), 25 (miss), 19 (hit)
    [[0, 0], [0, 0], [0, 0], [0, 0]],             # perfect, but not counted
])
LSP_MASK = np.array([[1, 1, 1, 0], [1, 1, 1, 1], [1, 1, 1, 1]], bool)


def test_lsp_pck_by_hand():
    torso = lsp_torso_size(LSP_GT, torso_joints=[0, 1])
    np.testing.assert_allclose(torso, [50.0, 100.0, 0.0])
    hits, counts = pck_counts(LSP_PRED, LSP_GT, LSP_MASK, torso, threshold=0.2)
    # per joint: r_shoulder 2/2, l_hip 0/2, wrist 1/2, ankle 1/1 (sample 0's ankle unlabelled, sample 2 left out)
    assert hits.tolist() == [2, 0, 1, 1] and counts.tolist() == [2, 2, 2, 1]
    assert hits.dtype == np.int64 and counts.dtype == np.int64
    summary = pck_summary(hits, counts, LSP_NAMES, metric="pck")
    # pooled: (2 + 0 + 1 + 1) / (2 + 2 + 2 + 1) = 4 / 7; the plain mean of per-joint values would be 0.625
    assert summary["pck"] == pytest.approx(4 / 7)
    assert summary["per_joint"] == {"r_shoulder": 1.0, "l_hip": 0.0, "wrist": 0.5, "ankle": 1.0}


def test_counts_add_over_batches():
    torso = lsp_torso_size(LSP_GT, [0, 1])
    whole = pck_counts(LSP_PRED, LSP_GT, LSP_MASK, torso, 0.2)
    first = pck_counts(LSP_PRED[:1], LSP_GT[:1], LSP_MASK[:1], torso[:1], 0.2)
    rest = pck_counts(LSP_PRED[1:], LSP_GT[1:], LSP_MASK[1:], torso[1:], 0.2)
    np.testing.assert_array_equal(first[0] + rest[0], whole[0])
    np.testing.assert_array_equal(first[1] + rest[1], whole[1])


def test_graph_pck_matches_numpy():
    torso = lsp_torso_size(LSP_GT, [0, 1])
    counts_fn = tf.function(lambda *args: pck_counts_tf(*args, threshold=0.2))
    hits, counts = counts_fn(LSP_PRED.astype(np.float32), LSP_GT.astype(np.float32), LSP_MASK,
                             torso.astype(np.float32))
    assert hits.numpy().tolist() == [2, 0, 1, 1] and counts.numpy().tolist() == [2, 2, 2, 1]


def test_nan_predictions_are_misses():
    pred = LSP_PRED.copy()
    pred[1, 0] = np.nan
    hits, counts = pck_counts(pred, LSP_GT, LSP_MASK, lsp_torso_size(LSP_GT, [0, 1]), 0.2)
    assert hits.tolist() == [1, 0, 1, 1] and counts.tolist() == [2, 2, 2, 1]


# ------------------------------------------------------------------------------------------------ PCKh (MPII)


def test_mpii_pckh_by_hand():
    names = ["head_top", "wrist", "ankle"]
    # head boxes (100, 100)-(130, 140): diagonal 50 -> head size 0.6 * 50 = 30 -> radius 0.5 * 30 = 15 px
    #            (0, 0)-(60, 80):      diagonal 100 -> head size 60 -> radius 30 px
    head = head_size_from_box(np.array([100.0, 0.0]), np.array([100.0, 0.0]), np.array([130.0, 60.0]),
                              np.array([140.0, 80.0]))
    np.testing.assert_allclose(head, [30.0, 60.0])
    assert head_size_from_box(0, 0, 3, 4) == pytest.approx(3.0)
    gt = np.array([[[50, 50], [80, 90], [70, 200]], [[10, 10], [40, 90], [0, 0]]], np.float64)
    pred = gt + np.array([[[9, 12], [12, 16], [0, 14.9]],   # 15 (hit), 20 (miss), 14.9 (hit)
                          [[18, 24], [0, 31], [0, 0]]])     # 30 (hit), 31 (miss), ankle unlabelled
    mask = np.array([[1, 1, 1], [1, 1, 0]], bool)
    hits, counts = pck_counts(pred, gt, mask, head, threshold=0.5)
    assert hits.tolist() == [2, 0, 1] and counts.tolist() == [2, 2, 1]
    summary = pck_summary(hits, counts, names, metric="pckh")
    assert summary["pckh"] == pytest.approx(3 / 5)  # (2 + 0 + 1) / (2 + 2 + 1)
    # leaving a joint out of the mean (as MPII leaves out pelvis and thorax): (2 + 0) / (2 + 2)
    assert pck_summary(hits, counts, names, "pckh", exclude_from_mean=["ankle"])["pckh"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown joints"):
        pck_summary(hits, counts, names, "pckh", exclude_from_mean=["pelvis"])


def test_summary_of_unlabelled_joints():
    summary = pck_summary(np.array([0, 0]), np.array([0, 0]), ["a", "b"])
    assert summary == {"pck": 0.0, "per_joint": {"a": None, "b": None}}


# ------------------------------------------------------------------------------------------------ COCO

COCO_SIGMAS = [.026, .025, .025, .035, .035, .079, .079, .072, .072, .062, .062, .107, .107, .087, .087, .089, .089]


def person(rng, box, labelled=17):
    """A COCO annotation dict without id: keypoints uniform in the box, the first ``labelled`` visible."""
    x, y, w, h = box
    points = np.stack([rng.uniform(x, x + w, 17), rng.uniform(y, y + h, 17), np.zeros(17)], axis=1)
    points[:labelled, 2] = 2
    points[labelled:, :2] = 0
    return {"image_id": None, "category_id": 1, "bbox": [float(v) for v in box], "area": float(w * h),
            "iscrowd": 0, "num_keypoints": labelled, "keypoints": [float(v) for v in points.reshape(-1)]}


@pytest.fixture
def coco_gt(tmp_path):
    rng = np.random.default_rng(0)
    annotations = []
    for image_id, box in [(1, (50, 40, 100, 200)), (1, (300, 60, 40, 75)), (2, (10, 10, 150, 300))]:
        annotation = person(rng, box)
        annotation["image_id"] = image_id
        annotations.append(annotation)
    # a person with no labelled joints: COCOeval ignores it
    empty = person(rng, (200, 200, 50, 50), labelled=0)
    empty["image_id"] = 2
    annotations.append(empty)
    for index, annotation in enumerate(annotations):
        annotation["id"] = index + 1
    data = {
        "images": [{"id": 1, "width": 640, "height": 480, "file_name": "1.jpg"},
                   {"id": 2, "width": 640, "height": 480, "file_name": "2.jpg"},
                   {"id": 3, "width": 640, "height": 480, "file_name": "3.jpg"}],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "keypoints": [f"joint{i}" for i in range(17)], "skeleton": []}],
    }
    path = tmp_path / "person_keypoints_tiny.json"
    path.write_text(json.dumps(data))
    return path, annotations


def predictions_from(annotations, offset=(0.0, 0.0)):
    labelled = [a for a in annotations if a["num_keypoints"] > 0]
    keypoints = np.stack([np.asarray(a["keypoints"], np.float64).reshape(17, 3) for a in labelled])
    keypoints[..., 0] += offset[0]
    keypoints[..., 1] += offset[1]
    keypoints[..., 2] = 0.9
    return [a["image_id"] for a in labelled], keypoints


def test_perfect_predictions_score_one_and_shifted_ones_less(coco_gt):
    path, annotations = coco_gt
    image_ids, keypoints = predictions_from(annotations)
    results = coco_results(image_ids, keypoints)
    assert len(results) == 3 and len(results[0]["keypoints"]) == 51 and results[0]["category_id"] == 1
    json.dumps(results)  # plain Python numbers
    perfect = coco_keypoint_ap(path, results)
    assert perfect["ap"] == pytest.approx(1.0) and perfect["ar"] == pytest.approx(1.0)
    assert perfect["ap_m"] == pytest.approx(1.0) and perfect["ap_l"] == pytest.approx(1.0)
    assert set(perfect) == {"ap", "ap50", "ap75", "ap_m", "ap_l", "ar", "ar50", "ar75", "ar_m", "ar_l"}
    assert "keypoints" in results[0] and "area" not in results[0]  # the caller's dicts are left alone
    shifted = coco_keypoint_ap(path, coco_results(*predictions_from(annotations, offset=(8.0, 0.0))))
    assert 0.0 < shifted["ap"] < 0.9
    # wider sigmas forgive the same shift more; the dataset's sigmas equal COCOeval's defaults
    assert coco_keypoint_ap(path, coco_results(*predictions_from(annotations, offset=(8.0, 0.0))),
                            sigmas=COCO_SIGMAS)["ap"] == pytest.approx(shifted["ap"])
    wide = coco_keypoint_ap(path, coco_results(*predictions_from(annotations, offset=(8.0, 0.0))),
                            sigmas=[4 * s for s in COCO_SIGMAS])
    assert wide["ap"] > shifted["ap"]


def test_evaluated_images_default_to_those_with_results(coco_gt):
    path, annotations = coco_gt
    image_ids, keypoints = predictions_from(annotations)
    on_image_one = [index for index, image_id in enumerate(image_ids) if image_id == 1]
    results = coco_results(np.asarray(image_ids)[on_image_one], keypoints[on_image_one])
    assert coco_keypoint_ap(path, results)["ar"] == pytest.approx(1.0)  # scored on image 1 only
    # listing image 2 too: its labelled person has no prediction, so recall drops to 2 of 3 people
    assert coco_keypoint_ap(path, results, image_ids=[1, 2])["ar"] == pytest.approx(2 / 3)


def test_oks_by_hand_matches_cocoeval(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt = np.zeros((17, 3))
    gt[0] = [200, 100, 2]    # nose, sigma 0.026
    gt[11] = [210, 250, 2]   # left hip, sigma 0.107
    data = {"images": [{"id": 7, "width": 640, "height": 480}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [150, 50, 100, 100], "area": 10000.0,
                             "iscrowd": 0, "num_keypoints": 2, "keypoints": gt.reshape(-1).tolist()}],
            "categories": [{"id": 1, "name": "person"}]}
    path = tmp_path / "one.json"
    path.write_text(json.dumps(data))
    pred = gt.copy()
    pred[0, :2] += [3, 4]    # d^2 = 25
    pred[11, :2] += [6, 8]   # d^2 = 100
    pred[:, 2] = 1.0
    # OKS = mean over labelled joints of exp(-d^2 / (2 s^2 k^2)), s^2 = area = 10000, k = 2 sigma:
    #   nose:     25 / (2 * 10000 * 0.052^2) = 25 / 54.08   = 0.462278 -> exp(-0.462278) = 0.629847
    #   left hip: 100 / (2 * 10000 * 0.214^2) = 100 / 915.92 = 0.109180 -> exp(-0.109180) = 0.896569
    #   OKS = (0.629847 + 0.896569) / 2 = 0.763208
    by_hand = (math.exp(-25 / 54.08) + math.exp(-100 / 915.92)) / 2
    assert by_hand == pytest.approx(0.763208, abs=1e-6)
    coco = COCO(str(path))
    evaluation = COCOeval(coco, coco.loadRes(coco_results([7], pred[None])), iouType="keypoints")
    evaluation.params.imgIds = [7]
    evaluation.evaluate()
    assert float(np.asarray(evaluation.ious[(7, 1)]).item()) == pytest.approx(by_hand, rel=1e-9)
    # through our function: one person at OKS 0.763 is a true positive for thresholds 0.50 ... 0.75 (6 of 10)
    result = coco_keypoint_ap(coco, coco_results([7], pred[None]))
    assert result["ap50"] == pytest.approx(1.0) and result["ap75"] == pytest.approx(1.0)
    assert result["ap"] == pytest.approx(0.6)


def test_instance_scores_follow_hrnet_rescoring():
    joint_scores = np.array([[0.9, 0.5, 0.1, 0.15], [0.1, 0.1, 0.0, 0.2]])
    # person 0: joints above 0.2 are 0.9 and 0.5 -> 0.7; person 1: none above 0.2 (0.2 itself is not) -> 0
    np.testing.assert_allclose(instance_scores(joint_scores), [0.7, 0.0])
    np.testing.assert_allclose(instance_scores(joint_scores, box_scores=[0.5, 1.0]), [0.35, 0.0])
    results = coco_results([3, 4], np.concatenate([np.zeros((2, 4, 2)), joint_scores[..., None]], axis=-1))
    assert [r["score"] for r in results] == pytest.approx([0.7, 0.0])


def test_empty_results_warn_and_score_zero(coco_gt):
    path, _ = coco_gt
    with pytest.warns(UserWarning, match="no predictions"):
        result = coco_keypoint_ap(path, [])
    assert result["ap"] == 0.0 and result["ar"] == 0.0


def test_coco_errors_name_the_problem(coco_gt, tmp_path):
    path, annotations = coco_gt
    image_ids, keypoints = predictions_from(annotations)
    with pytest.raises(ValueError, match=r"not in the annotations: \[99\]"):
        coco_keypoint_ap(path, coco_results([99, 1, 2], keypoints))
    with pytest.raises(ValueError, match="3 sigmas"):
        coco_keypoint_ap(path, coco_results(image_ids, keypoints), sigmas=[0.1, 0.1, 0.1])
    with pytest.raises(FileNotFoundError, match="missing.json"):
        coco_keypoint_ap(tmp_path / "missing.json", coco_results(image_ids, keypoints))
    with pytest.raises(ValueError, match=r"\(N, J, 3\)"):
        coco_results([1], np.zeros((1, 17, 2)))


# ------------------------------------------------------------------------------------------------ real data
@pytest.mark.realdata
def test_real_coco_sample_survives_encode_crop_decode():
    """COCO people cropped at 256x192, encoded, decoded and mapped back keep AP 1.0 (quantisation << OKS)."""
    from densevision.codecs import HeatmapCodec, to_image
    from densevision.data.paths import dataset_dir, missing_reason
    from densevision.data.topdown import box_to_center_scale, crop_affine, transform_points

    root = dataset_dir("coco_sample")
    if root is None:
        pytest.skip(missing_reason("coco_sample"))
    annotation_file = root / "test_coco.json"
    people = [a for a in json.loads(annotation_file.read_text())["annotations"] if a["num_keypoints"] > 0]
    codec = HeatmapCodec((256, 192), sigma=2.0)
    image_ids, predictions = [], []
    for annotation in people:
        truth = np.asarray(annotation["keypoints"], np.float64).reshape(17, 3)
        center, scale = box_to_center_scale(annotation["bbox"], codec.input_size)
        affine = crop_affine(center, scale, codec.input_size)
        heatmaps, _ = codec.encode(transform_points(truth, affine))
        decoded, scores = codec.decode(heatmaps[None])
        image_ids.append(annotation["image_id"])
        predictions.append(np.concatenate([to_image(decoded, affine[None])[0], scores.T], axis=1))
    result = coco_keypoint_ap(annotation_file, coco_results(image_ids, np.stack(predictions)), sigmas=COCO_SIGMAS)
    assert result["ap"] == pytest.approx(1.0)
