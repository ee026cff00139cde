"""Pose data: dataset definitions, the COCO / MPII / LSP sources and their checks, the demo people generator."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

import densevision  # noqa: F401  (environment first)
from densevision.data.coco_keypoints import CocoKeypoints
from densevision.data.demo_people import EYE_COLOR, MARKER, NOSE_COLOR, make_demo_coco_keypoints, render_people
from densevision.data.errors import DatasetError
from densevision.data.lsp import LSP, flags_to_visibility
from densevision.data.mpii import MPII
from densevision.data.paths import dataset_dir, missing_reason
from densevision.data.skeletons import (
    COCO_JOINTS,
    flip_permutation,
    keypoint_dataset_names,
    keypoint_info,
    validate_keypoint_info,
)
from densevision.data.topdown import box_to_center_scale
from densevision.registry import DATASETS
from image_utils import noise, write_image as write_rgb_image

RNG = np.random.default_rng(7)


def write_image(path: Path, height: int, width: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), RNG.integers(0, 256, (height, width, 3), dtype=np.uint8))


# ----------------------------------------------------------------------------------------- definitions
def test_definitions_are_valid_and_match_references():
    assert keypoint_dataset_names() == ["coco", "lsp", "mpii"]
    for name in keypoint_dataset_names():
        info = keypoint_info(name)
        validate_keypoint_info(info)
        names = info["joint_names"]
        assert info["num_joints"] == len(names) == len(info["joint_colors"])
        assert len(info["link_colors"]) == len(info["skeleton"])
        for left, right in info["flip_pairs"]:  # [left, right], partners by name
            assert names[left].startswith("left") and names[right] == "right" + names[left][4:]
        assert names[info["torso_joints"][0]] == "right_shoulder" and names[info["torso_joints"][1]] == "left_hip"
    from pycocotools.cocoeval import Params

    coco = keypoint_info("coco")
    np.testing.assert_allclose(coco["sigmas"], Params(iouType="keypoints").kpt_oks_sigmas)
    np.testing.assert_allclose(coco["sigmas"], np.array([.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62,
                                                         1.07, 1.07, .87, .87, .89, .89]) / 10.0)
    assert len(coco["flip_pairs"]) == 8 and coco["metric"] == "coco_ap"
    assert [5, 6] in coco["skeleton"] and [15, 13] in coco["skeleton"]  # official (1-based 6-7, 16-14)
    assert len(coco["skeleton"]) == 19
    mpii, lsp = keypoint_info("mpii"), keypoint_info("lsp")
    assert mpii["num_joints"] == 16 and mpii["joint_names"][9] == "head_top" and mpii["metric"] == "pckh"
    assert mpii["pck_threshold"] == 0.5 and mpii["sigmas"] is None
    assert sorted(mpii["flip_pairs"]) == [[3, 2], [4, 1], [5, 0], [13, 12], [14, 11], [15, 10]]
    assert lsp["num_joints"] == 14 and lsp["torso_joints"] == [8, 3] and lsp["pck_threshold"] == 0.2
    assert sorted(lsp["flip_pairs"]) == [[3, 2], [4, 1], [5, 0], [9, 8], [10, 7], [11, 6]]
    assert lsp["joint_colors"][12] == lsp["joint_colors"][13] != lsp["joint_colors"][0]  # neck, head: middle
    # a copy each time: callers may edit theirs
    coco["joint_names"][0] = "changed"
    assert keypoint_info("coco")["joint_names"][0] == "nose"


def test_validator_names_each_bad_entry():
    info = keypoint_info("lsp")
    info["flip_pairs"] = info["flip_pairs"] + [[2, 14], [0, 7]]
    info["skeleton"] = info["skeleton"] + [[1, 1], [0, 99]]
    info["link_colors"] = info["link_colors"] + [[0, 0, 0], [0, 0, 0]]
    with pytest.raises(ValueError) as caught:
        validate_keypoint_info(info)
    message = str(caught.value)
    assert "flip_pairs[6] = [2, 14]" in message  # index out of range
    assert "joint 0 (right_ankle) is in flip_pairs[" in message  # in two pairs
    assert "skeleton[15] = [1, 1]" in message and "skeleton[16] = [0, 99]" in message
    with pytest.raises(KeyError, match="known: coco, lsp, mpii"):
        keypoint_info("h36m")


def test_flip_permutation_swaps_pairs_only():
    info = keypoint_info("coco")
    permutation = flip_permutation(info["flip_pairs"], 17)
    assert permutation[0] == 0 and permutation[5] == 6 and permutation[6] == 5
    np.testing.assert_array_equal(permutation[permutation], np.arange(17))
    names = np.array(COCO_JOINTS)[permutation]
    assert all(a.replace("left", "X").replace("right", "left").replace("X", "right") == b
               for a, b in zip(COCO_JOINTS, names))


# ----------------------------------------------------------------------------------------------- COCO
def coco_keypoints(*points):
    """17 x (x, y, v) flat, joints listed as (index, x, y, v); the rest unlabelled."""
    flat = [0] * 51
    for index, x, y, v in points:
        flat[3 * index: 3 * index + 3] = [x, y, v]
    return flat


def coco_fixture(root: Path, annotations: list, images=((1, "a.jpg", 40, 60), (2, "b.jpg", 50, 30)),
                 write=True, split="train") -> Path:
    """COCO layout under root; images are (id, file, height, width)."""
    for image_id, name, height, width in images:
        if write:
            write_image(root / "images" / split / name, height, width)
    data = {
        "images": [{"id": i, "file_name": n, "height": h, "width": w} for i, n, h, w in images],
        "annotations": annotations,
        "categories": [{"id": 1, "name": "person", "keypoints": list(COCO_JOINTS), "skeleton": [[16, 14]]}],
    }
    path = root / "annotations" / f"person_keypoints_{split}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def person(ann_id, image_id, keypoints, bbox=(10, 5, 20, 30), crowd=0, **extra):
    num = sum(1 for v in keypoints[2::3] if v > 0)
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": crowd, "keypoints": keypoints,
            "num_keypoints": num, "bbox": list(bbox), "area": 300.0, **extra}


def test_coco_keeps_labelled_non_crowd_persons(tmp_path):
    path = coco_fixture(tmp_path, [
        person(11, 1, coco_keypoints((0, 20, 10, 2), (5, 15, 20, 1)), bbox=(10, 5, 20, 30)),
        person(12, 1, coco_keypoints(), bbox=(1, 1, 5, 5)),  # no keypoints: skipped
        person(13, 1, coco_keypoints((0, 3, 3, 2)), crowd=1),  # crowd: skipped
        person(14, 2, coco_keypoints((16, 25, 45, 2)), bbox=(20, -5, 20, 60)),  # box past the border: clipped
    ])
    source = CocoKeypoints(str(tmp_path), "train", input_size=(64, 48))
    assert DATASETS.get("coco_keypoints") is CocoKeypoints
    assert len(source) == 2 and source.names == ["a_11", "b_14"]
    assert source.stats == {"crowd": 1, "few_keypoints": 1, "kept": 2}
    assert source.info["annotation_file"] == str(path) and source.info["sigmas"][0] == 0.026
    sample = source.load(0)
    assert sample["image"].shape == (40, 60, 3) and sample["image"].dtype == np.uint8
    assert sample["keypoints"].dtype == np.float32 and sample["keypoints"].shape == (17, 3)
    np.testing.assert_array_equal(sample["keypoints"][[0, 5, 1]], [[20, 10, 2], [15, 20, 1], [0, 0, 0]])
    center, scale = box_to_center_scale([10, 5, 20, 30], (64, 48))
    np.testing.assert_allclose(sample["center"], center)
    np.testing.assert_allclose(sample["scale"], scale)
    np.testing.assert_allclose(sample["scale"], [30 * 0.75 * 1.25, 30 * 1.25])  # grown to 48:64, then x1.25
    assert sample["meta"] == {"name": "a_11", "image_id": 1, "annotation_id": 11, "box": [10.0, 5.0, 20.0, 30.0],
                              "area": 300.0, "image_file": "a.jpg"}
    json.dumps(sample["meta"])
    # clipped to the 30 x 50 image: x 20..30, y 0..50
    np.testing.assert_allclose(source.load(1)["center"], [25.0, 25.0])


def test_coco_official_layout_and_flat_layout_options(tmp_path):
    coco_fixture(tmp_path, [person(1, 1, coco_keypoints((0, 5, 5, 2)))], split="val2017")
    (tmp_path / "images" / "val2017").rename(tmp_path / "val2017")  # COCO's own root/val2017/
    assert len(CocoKeypoints(str(tmp_path), "val2017")) == 1
    flat = tmp_path / "flat"
    write_image(flat / "a.jpg", 40, 60)
    (flat / "gt.json").write_text((tmp_path / "annotations" / "person_keypoints_val2017.json").read_text())
    assert len(CocoKeypoints(str(flat), "val", annotation_file="gt.json", image_dir=".")) == 1


def test_coco_reports_every_bad_annotation_at_once(tmp_path):
    coco_fixture(tmp_path, [
        person(21, 1, coco_keypoints((0, 5, 5, 2))[:48]),  # 16 joints
        person(22, 7, coco_keypoints((0, 5, 5, 2))),  # image 7 unknown
        person(23, 3, coco_keypoints((0, 5, 5, 2))),  # image file missing
        person(24, 1, coco_keypoints((0, 500, 5, 2))),  # far outside the 60-wide image
        person(25, 1, coco_keypoints((0, 5, 5, 2)), bbox=(3, 3, 0, 10)),  # zero-size box
        person(26, 2, coco_keypoints((0, 5, 5, 2))),  # image b.jpg written at the wrong size below
        person(27, 1, coco_keypoints((0, 5, 5, 2)), num_keypoints=3),  # disagrees with the keypoints
    ], images=((1, "a.jpg", 40, 60), (2, "b.jpg", 50, 30), (3, "gone.jpg", 40, 40)))
    (tmp_path / "images" / "train" / "gone.jpg").unlink()
    write_image(tmp_path / "images" / "train" / "b.jpg", 20, 20)
    with pytest.raises(DatasetError) as caught:
        CocoKeypoints(str(tmp_path), "train")
    message = str(caught.value)
    assert message.startswith("coco_keypoints 'train' at")
    assert "wrong number of joints" in message and "annotation 21 (48 keypoint values, expected 51" in message
    assert "not in the annotation file's image list" in message and "annotation 22 (image_id 7)" in message
    assert "missing" in message and "gone.jpg (person_keypoints_train.json annotation 23" in message
    assert "far outside the image" in message and "annotation 24" in message and "nose at (500, 5)" in message
    assert "zero-size person box" in message and "annotation 25" in message
    assert "b.jpg (file 20x20, annotation 30x50, as WxH)" in message
    assert "annotation 27 (num_keypoints 3 but 1 labelled" in message
    assert "annotation 26" not in message  # its image is reported by file name (with its size)
    # skip_bad_records keeps the good ones and warns
    coco_fixture(tmp_path, [person(31, 1, coco_keypoints((0, 5, 5, 2))),
                            person(32, 1, coco_keypoints((0, 500, 5, 2)))])
    with pytest.warns(UserWarning, match="skipping these 1 records"):
        source = CocoKeypoints(str(tmp_path), "train", skip_bad_records=True)
    assert source.names == ["a_31"]


def test_coco_malformed_or_wrong_files(tmp_path):
    path = tmp_path / "annotations" / "person_keypoints_train.json"
    path.parent.mkdir(parents=True)
    path.write_text('{"images": [')
    with pytest.raises(DatasetError, match=r"cannot be read as annotations: .*person_keypoints_train.json"):
        CocoKeypoints(str(tmp_path))
    path.write_text(json.dumps({"images": [], "annotations": []}))
    with pytest.raises(DatasetError, match="no 'categories' list"):
        CocoKeypoints(str(tmp_path))
    path.write_text(json.dumps({"images": [], "annotations": [], "categories": [{"id": 1, "name": "person"}]}))
    with pytest.raises(DatasetError, match="not instances_"):
        CocoKeypoints(str(tmp_path))
    with pytest.raises(DatasetError, match="annotation file .* not found"):
        CocoKeypoints(str(tmp_path), "val")
    with pytest.raises(DatasetError, match="input_size"):
        CocoKeypoints(str(tmp_path), input_size=[256])


# ----------------------------------------------------------------------------------------------- MPII
def mpii_record(image="001.jpg", center=(30.0, 20.0), scale=0.2, joints=None, vis=None, **extra):
    joints = joints if joints is not None else [[10.0 + j, 15.0 + j] for j in range(16)]
    vis = vis if vis is not None else [1] * 16
    return {"image": image, "center": list(center), "scale": scale, "joints": joints, "joints_vis": vis, **extra}


def mpii_fixture(root: Path, records: list, sizes=None, name="annotations/mpii_train.json") -> Path:
    for image in sorted({r["image"] for r in records if isinstance(r, dict) and "image" in r}):
        height, width = (sizes or {}).get(image, (48, 64))
        write_image(root / "images" / image, height, width)
    path = root / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(records))
    return path


def test_mpii_conversions_and_head_sizes(tmp_path):
    joints = [[10.0 + j, 15.0 + j] for j in range(16)]
    joints[0] = [-1.0, -1.0]
    vis = [0] + [1] * 15
    mpii_fixture(tmp_path, [
        mpii_record(joints=joints, vis=vis, headbox=[[10, 10], [13, 14]]),
        mpii_record(image="002.jpg", center=(40.0, 30.0), scale=0.1),
    ])
    source = MPII(str(tmp_path), "train", input_size=(64, 64))
    assert DATASETS.get("mpii") is MPII and source.names == ["001_0", "002_1"]
    sample = source.load(0)
    keypoints = sample["keypoints"]
    np.testing.assert_array_equal(keypoints[0], [0, 0, 0])  # unlabelled
    np.testing.assert_array_equal(keypoints[3], [12.0, 17.0, 2])  # 1-based -> 0-based, labelled -> 2
    # HRNet: centre (x - 1, y + 15 * scale - 1), side scale * 200 * 1.25 for a square crop
    np.testing.assert_allclose(sample["center"], [29.0, 20.0 + 3.0 - 1.0])
    np.testing.assert_allclose(sample["scale"], [50.0, 50.0])
    assert sample["meta"]["head_size"] == pytest.approx(0.6 * 5.0) and sample["meta"]["head_size_source"] == "headbox"
    second = source.load(1)["meta"]
    # no head box: the upper_neck (8) -> head_top (9) distance of [18, 23] -> [19, 24]
    assert second["head_size"] == pytest.approx(np.sqrt(2.0)) and second["head_size_source"] == "head_segment"
    assert second["image_id"] == 2 and second["box"] == pytest.approx([29.0, 20.5, 20.0, 20.0])
    # a non-square crop keeps the person box's height and widens nothing: region 1.25 x (40 wide, 40 * 4/3 high)
    wide = MPII(str(tmp_path), "train", input_size=(256, 192)).load(0)
    np.testing.assert_allclose(wide["scale"], [50.0, 50.0 * 4 / 3], rtol=1e-6)


def test_mpii_headbox_file_and_requirement(tmp_path):
    mpii_fixture(tmp_path, [mpii_record(), mpii_record(image="002.jpg")], name="annot/valid.json")
    boxes = np.zeros((2, 2, 2))  # headboxes_src: 2 x 2 x N, [[x1, y1], [x2, y2]] per record
    boxes[:, :, 0] = [[1, 1], [4, 5]]
    boxes[:, :, 1] = [[0, 0], [6, 8]]
    scipy.io.savemat(tmp_path / "annot" / "gt_valid.mat", {"headboxes_src": boxes})
    source = MPII(str(tmp_path), "val", headbox_file="annot/gt_valid.mat", require_headbox=True)  # HRNet layout
    assert [source.load(i)["meta"]["head_size"] for i in range(2)] == pytest.approx([3.0, 6.0])
    with pytest.raises(DatasetError, match=r"2 records without a head box .*valid.json record 0"):
        MPII(str(tmp_path), "val", require_headbox=True)
    scipy.io.savemat(tmp_path / "annot" / "gt_valid.mat", {"headboxes_src": boxes[:, :, :1]})
    with pytest.raises(DatasetError, match="holds 1 head boxes but valid.json has 2 records"):
        MPII(str(tmp_path), "val", headbox_file="annot/gt_valid.mat")


def test_mpii_reports_every_bad_record_at_once(tmp_path):
    far = [[10.0, 15.0]] * 16
    far[4] = [900.0, 15.0]
    mpii_fixture(tmp_path, [
        mpii_record(),  # good
        mpii_record(joints=[[1.0, 1.0]] * 14, vis=[1] * 14),  # 14 joints
        {"image": "001.jpg", "center": [1, 1], "joints": [[1, 1]] * 16, "joints_vis": [1] * 16},  # no scale
        mpii_record(image="002.jpg"),  # image missing (deleted below)
        mpii_record(joints=far),  # left_knee far outside the 64-wide image
        mpii_record(scale=0.0),  # zero-size box
    ])
    (tmp_path / "images" / "002.jpg").unlink()
    with pytest.raises(DatasetError) as caught:
        MPII(str(tmp_path), "train")
    message = str(caught.value)
    assert "mpii_train.json record 1 (image 001.jpg) (joints [14, 2], joints_vis 14; expected 16" in message
    assert "record 2 (image 001.jpg) (KeyError: 'scale'" in message
    assert "002.jpg (mpii_train.json record 3" in message
    assert "record 4 (image 001.jpg) (left_knee at (899, 14)" in message
    assert "zero-size person box" in message and "record 5" in message
    assert "record 0 " not in message


def test_mpii_missing_or_malformed_annotations(tmp_path):
    with pytest.raises(DatasetError, match=r"no annotation file; tried .*mpii_train.json, .*annot/train.json"):
        MPII(str(tmp_path), "train")
    path = tmp_path / "annotations" / "mpii_train.json"
    path.parent.mkdir()
    path.write_text("[{")
    with pytest.raises(DatasetError, match="cannot be read as annotations: .*mpii_train.json"):
        MPII(str(tmp_path), "train")
    path.write_text('{"image": "x"}')
    with pytest.raises(DatasetError, match="a dict; expected a list of records"):
        MPII(str(tmp_path), "train")


# ------------------------------------------------------------------------------------------------ LSP
@pytest.fixture(scope="module")
def lsp_root(tmp_path_factory):
    """A 1000-column LSP: joints.mat 3 x 14 x 1000 (1-based coordinates, flag 1 = occluded) and 1000 images."""
    root = tmp_path_factory.mktemp("lsp")
    rng = np.random.default_rng(3)
    joints = np.zeros((3, 14, 1000))
    joints[0] = rng.uniform(5, 35, (14, 1000))
    joints[1] = rng.uniform(5, 45, (14, 1000))
    joints[2] = (rng.random((14, 1000)) < 0.1).astype(float)
    scipy.io.savemat(root / "joints.mat", {"joints": joints})
    image = np.full((50, 40, 3), 90, np.uint8)
    (root / "images").mkdir()
    for number in range(1, 1001):
        cv2.imwrite(str(root / "images" / f"im{number:04d}.jpg"), image)
    return root, joints


def test_lsp_standard_splits(lsp_root):
    root, joints = lsp_root
    assert DATASETS.get("lsp") is LSP
    sizes = {split: LSP(str(root), split, check_images=split == "val") for split in ("train", "val", "trainval")}
    assert {k: len(v) for k, v in sizes.items()} == {"train": 900, "val": 100, "trainval": 1000}
    assert sizes["train"].names[0] == "im0001" and sizes["train"].names[-1] == "im0900"
    assert sizes["val"].names[0] == "im0901" and sizes["val"].names[-1] == "im1000"
    with pytest.raises(DatasetError, match="test half is not present: this copy is the 1000-image training"):
        LSP(str(root), "test")
    with pytest.raises(DatasetError, match="unknown split 'tset'; choose one of train, val, trainval, test, all"):
        LSP(str(root), "tset")
    assert len(LSP(str(root), "first5", splits={"first5": [1, 5]})) == 5


def test_lsp_visibility_coordinates_and_box(lsp_root):
    root, joints = lsp_root
    source = LSP(str(root), "val", input_size=(64, 64), box_margin=0.1)
    sample = source.load(3)  # image 904
    column = joints[:, :, 903]
    keypoints = sample["keypoints"]
    np.testing.assert_allclose(keypoints[:, :2], column[:2].T - 1.0, rtol=1e-6)  # 1-based -> 0-based
    np.testing.assert_array_equal(keypoints[:, 2], np.where(column[2] == 1, 1, 2))  # 1 = occluded
    assert source.info["visibility_flag"] == "occluded" and sample["meta"]["image_id"] == 904
    low, high = keypoints[:, :2].min(0), keypoints[:, :2].max(0)
    size = high - low
    box = [low[0] - 0.1 * size[0], low[1] - 0.1 * size[1], 1.2 * size[0], 1.2 * size[1]]
    np.testing.assert_allclose(sample["meta"]["box"], box, rtol=1e-5)
    center, scale = box_to_center_scale(box, (64, 64))
    np.testing.assert_allclose(sample["center"], center, rtol=1e-5)
    np.testing.assert_allclose(sample["scale"], scale, rtol=1e-5)
    inverted = LSP(str(root), "val", visibility_flag="visible").load(3)["keypoints"][:, 2]
    np.testing.assert_array_equal(inverted, np.where(column[2] == 1, 2, 1))
    np.testing.assert_array_equal(flags_to_visibility(np.array([0.0, 1.0]), "occluded"), [2, 1])


def test_lsp_extended_orientation_and_missing_test_images(tmp_path):
    joints = np.zeros((14, 3, 2000))  # LSP-extended's orientation: 14 x 3 x N, flag 1 = visible
    joints[:, 0] = 10.0 + np.arange(14)[:, None]
    joints[:, 1] = 20.0 + np.arange(14)[:, None]
    joints[:, 2] = 1.0
    joints[0, 2, :] = 0.0
    scipy.io.savemat(tmp_path / "joints.mat", {"joints": joints})
    for number in range(1, 4):
        write_image(tmp_path / "images" / f"im{number:04d}.jpg", 40, 40)
    source = LSP(str(tmp_path), "first3", splits={"first3": [1, 3]})
    assert source.layout == "lsp_extended" and source.flag_means == "visible"
    np.testing.assert_array_equal(source.load(0)["keypoints"][:2], [[9, 19, 1], [10, 20, 2]])
    with pytest.raises(DatasetError, match=r"test half \(images 1001-2000\) is not present"):
        LSP(str(tmp_path), "test")


def test_lsp_bad_files_and_records(tmp_path):
    (tmp_path / "joints.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(DatasetError, match=r"cannot be read as annotations: .*joints.mat \(not a MATLAB"):
        LSP(str(tmp_path), "all")
    scipy.io.savemat(tmp_path / "joints.mat", {"joints": np.zeros((3, 15, 4))})
    with pytest.raises(DatasetError, match=r"'joints' has shape \(3, 15, 4\); expected 3 x 14 x N"):
        LSP(str(tmp_path), "all")
    scipy.io.savemat(tmp_path / "joints.mat", {"pose": np.zeros((3, 14, 4))})
    with pytest.raises(DatasetError, match=r"no 'joints' variable; it holds \['pose'\]"):
        LSP(str(tmp_path), "all")
    joints = np.zeros((3, 14, 4))
    joints[:2] = 5.0 + np.arange(14)[None, :, None]
    joints[0, 5, 1] = 400.0  # image 2: left ankle far outside
    joints[:2, :, 3] = 7.0  # image 4: every joint at one point: zero-size box
    scipy.io.savemat(tmp_path / "joints.mat", {"joints": joints})
    for number in (1, 2, 4):
        write_image(tmp_path / "images" / f"im{number:04d}.jpg", 30, 30)
    with pytest.raises(DatasetError) as caught:
        LSP(str(tmp_path), "all")
    message = str(caught.value)
    assert "1 image file missing" in message and "im0003.jpg (joints.mat column 3" in message
    assert "joints.mat column 2 (im0002.jpg) (left_ankle at (399, 9)" in message
    assert "zero-size person box" in message and "column 4 (im0004.jpg)" in message
    assert "column 1 " not in message


# ----------------------------------------------------------------------------------------------- demo
def test_demo_keypoints_sit_on_the_drawn_figures():
    for index in range(12):
        image, people, owner = render_people(np.random.default_rng([5, index]), size=96)
        assert image.shape == (96, 96, 3) and image.dtype == np.uint8 and 1 <= len(people) <= 2
        for number, person in enumerate(people):
            keypoints = person["keypoints"]
            for joint, (x, y, v) in enumerate(keypoints):
                if v == 0:
                    assert x == y == 0
                    continue
                col, row = int(round(x)), int(round(y))
                assert 0 <= col < 96 and 0 <= row < 96
                # visible joints are on their own figure; occluded ones under another figure or a block
                assert (owner[row, col] == number + 1) == (v == 2), (index, number, joint)
            nose, eyes = keypoints[0], keypoints[1:3]
            if person["head_radius"] < 4:
                continue  # tiny faces: the eye and nose dots overlap
            if nose[2] == 2:
                assert np.abs(image[int(round(nose[1])), int(round(nose[0]))].astype(int) - NOSE_COLOR).max() < 20
            for x, y, v in eyes:
                if v == 2:
                    assert np.abs(image[int(round(y)), int(round(x))].astype(int) - EYE_COLOR).max() < 20


def test_demo_dataset_is_valid_coco_and_loads(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    root = make_demo_coco_keypoints(tmp_path / "people", num_train=6, num_val=4, size=96, seed=3)
    json_path = root / "annotations" / "person_keypoints_val.json"
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO(str(json_path))
        annotations = truth.loadAnns(truth.getAnnIds())
        assert truth.loadCats(1)[0]["keypoints"] == list(COCO_JOINTS) and len(truth.getImgIds()) == 4
        for annotation in annotations:  # the RLE is each figure's visible area and lies inside its box
            mask = truth.annToMask(annotation)
            assert mask.sum() == annotation["area"]
            x, y, w, h = (int(v) for v in annotation["bbox"])
            assert mask[y:y + h, x:x + w].sum() == mask.sum()
        # the ground truth scored against itself: AP 1 (valid for COCOeval)
        results = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 1.0}
                   for a in annotations if a["num_keypoints"] > 0]
        evaluation = COCOeval(truth, truth.loadRes(results), "keypoints")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    assert evaluation.stats[0] == pytest.approx(1.0)

    source = CocoKeypoints(str(root), "val", input_size=(64, 48))
    assert len(source) == sum(1 for a in annotations if a["num_keypoints"] > 0)
    checked = 0
    for index in range(len(source)):
        sample = source.load(index)
        x, y, v = sample["keypoints"][0]
        if v == 2:  # the nose keypoint lands on the red nose of the image read back
            pixel = sample["image"][int(round(y)), int(round(x))].astype(int)
            assert np.abs(pixel - NOSE_COLOR).max() < 20
            checked += 1
    assert checked >= 2


def test_demo_generation_is_deterministic_and_skipped_when_complete(tmp_path):
    first = make_demo_coco_keypoints(tmp_path / "a", num_train=3, num_val=1, size=64, seed=9)
    second = make_demo_coco_keypoints(tmp_path / "b", num_train=3, num_val=1, size=64, seed=9)
    for relative in ("images/train/000000000003.png", "annotations/person_keypoints_train.json"):
        assert (first / relative).read_bytes() == (second / relative).read_bytes()
    stamp = (first / "images" / "train" / "000000000001.png").stat().st_mtime_ns
    marker = json.loads((first / MARKER).read_text())
    assert marker["seed"] == 9
    make_demo_coco_keypoints(first, num_train=3, num_val=1, size=64, seed=9)
    assert (first / "images" / "train" / "000000000001.png").stat().st_mtime_ns == stamp  # not rewritten
    other = make_demo_coco_keypoints(tmp_path / "c", num_train=3, num_val=1, size=64, seed=10)
    assert (other / "images/train/000000000003.png").read_bytes() != (first / "images/train/000000000003.png").read_bytes()


# ------------------------------------------------------------------------------------------ real data
@pytest.mark.realdata
def test_real_lsp_training_half():
    root = dataset_dir("LSP")
    if root is None:
        pytest.skip(missing_reason("LSP"))
    train, val = LSP(str(root), "train"), LSP(str(root), "val")
    assert (len(train), len(val)) == (900, 100)
    with pytest.raises(DatasetError, match="test half is not present"):
        LSP(str(root), "test")
    flags = np.concatenate([train.records[i].keypoints[:, 2] for i in range(len(train))])
    occluded = float(np.mean(flags == 1))
    assert 0.04 < occluded < 0.10  # 1 = occluded is rare (about 7%); were it "visible", most joints would be hidden
    sample = train.load(0)
    height, width = sample["image"].shape[:2]
    assert (sample["keypoints"][:, 0].max() < width) and (sample["keypoints"][:, 1].max() < height)


@pytest.mark.realdata
def test_real_coco_and_mpii_samples():
    coco_root, mpii_root = dataset_dir("coco_sample"), dataset_dir("mpii_sample")
    if coco_root is None or mpii_root is None:
        pytest.skip(missing_reason("coco_sample" if coco_root is None else "mpii_sample"))
    coco = CocoKeypoints(str(coco_root), "val", annotation_file="test_coco.json", image_dir=".")
    assert len(coco) == 12 and coco.stats["few_keypoints"] == 2
    category = json.loads((coco_root / "test_coco.json").read_text())["categories"][0]  # the official definition
    assert category["keypoints"] == coco.info["joint_names"]
    assert category["skeleton"] == [[a + 1, b + 1] for a, b in coco.info["skeleton"]]
    sample = coco.load(0)
    assert sample["meta"]["image_id"] == 785 and sample["image"].shape == (425, 640, 3)
    mpii = MPII(str(mpii_root), "val", annotation_file="test_mpii.json", image_dir=".")
    assert len(mpii) == 5
    labelled = mpii.load(2)["keypoints"][:, 2]
    assert labelled[0] == 0 and labelled[5] == 0 and (labelled[1:5] == 2).all()
    assert all(np.isfinite(mpii.load(i)["meta"]["head_size"]) for i in range(5))


def test_a_pose_image_cut_short_after_its_header_is_named_at_open(tmp_path):
    """The header read passes a truncated PNG; the full decode at open names it (not a crash mid-epoch)."""
    from densevision.data.coco_keypoints import CocoKeypoints
    from densevision.data.errors import DatasetError

    root = make_demo_coco_keypoints(tmp_path / "demo", num_train=2, num_val=2, size=64, seed=1)
    victim = sorted((root / "images" / "val").glob("*.png"))[0]
    data = victim.read_bytes()
    victim.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=rf"{victim.name}.*truncated"):
        CocoKeypoints(str(root), "val", input_size=[64, 64])


@pytest.mark.usefixtures("private_cache")
def test_coco_annotation_without_a_keypoints_field_says_the_field_is_missing(tmp_path):
    from densevision.data.coco_keypoints import CocoKeypoints
    from densevision.data.errors import DatasetError
    from densevision.data.skeletons import keypoint_info

    write_rgb_image(tmp_path / "images" / "train" / "a.jpg", noise(40, 60))
    joints = keypoint_info("coco")["joint_names"]
    annotation = {"id": 7, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [10, 5, 20, 30],
                  "area": 300.0, "num_keypoints": 1}  # no "keypoints"
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "person_keypoints_train.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "height": 40, "width": 60}], "annotations": [annotation],
        "categories": [{"id": 1, "name": "person", "keypoints": joints, "skeleton": []}]}))
    with pytest.raises(DatasetError) as caught:
        CocoKeypoints(str(tmp_path), "train")
    message = str(caught.value)
    assert "annotation 7 (no 'keypoints' field; expected 51 numbers = 17 x (x, y, v))" in message, message
    assert "1 keypoint values" not in message
