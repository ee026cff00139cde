"""MPII Human Pose (``mpii`` in recipes) in the JSON format of the hourglass / HRNet / MMPose releases.

Layout (paths are options)::

    root/annotations/mpii_{split}.json      (MMPose)  or  root/annot/{split}.json  (HRNet; "val" -> "valid")
    root/images/<image>
    root/annot/gt_valid.mat                  optional head boxes for PCKh (data.headbox_file)

Each JSON record is one person: ``image``, ``center`` [x, y], ``scale`` (person height / 200 px), ``joints``
16 x [x, y] and ``joints_vis`` 16 x {0, 1}; an optional ``headbox`` [[x1, y1], [x2, y2]]. All coordinates are
1-based (MATLAB) and are made 0-based here. Conversions, as in HRNet's and MMPose's MPII loaders:

- ``v``: ``joints_vis`` 1 -> 2 (the JSON marks *labelled* joints; MPII's separate occlusion flag is not in it),
  0 -> 0 (an unlabelled joint, stored as [-1, -1]).
- Region: the centre moves down by 15 x scale pixels (MPII's centre sits high on the torso and crops would cut the
  feet), the person box is a square of side scale x 200, and the crop region is that box grown to the aspect ratio
  of ``input_size`` times ``padding`` (1.25: HRNet's scale x 1.25 x 200 for square crops).
- ``meta["head_size"]`` (the PCKh normaliser) is 0.6 x the head box diagonal (the official evaluation's
  SC_BIAS), from the record's ``headbox`` or the ``headbox_file`` (``headboxes_src`` of HRNet's gt_valid.mat,
  one per record in order). Without a head box it falls back to the head segment length, the distance between
  ``upper_neck`` and ``head_top``: the quantity the MPII paper defines PCKh by (0.6 x diagonal is how the
  official code approximates it from the box); ``meta["head_size_source"]`` says which was used
  (``"headbox"``, ``"head_segment"``, or ``"none"`` with NaN when neither exists).
See datasets/mpii/README.md.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from scipy.io import loadmat

from densevision.data.errors import DatasetError
from densevision.data.keypoint_source import KeypointSource, PersonRecord, Problems, resolve
from densevision.data.skeletons import MPII_JOINTS
from densevision.data.topdown import DEFAULT_PADDING, box_to_center_scale
from densevision.registry import DATASETS

MPII_PIXEL_STD = 200.0  # MPII's scale unit: person height / 200 px
MPII_CENTER_SHIFT = 15.0  # pixels per unit of scale the centre moves down (HRNet, MMPose)
HEAD_SIZE_FACTOR = 0.6  # the official evaluation's SC_BIAS: head size = 0.6 x head box diagonal

_LAYOUT = ("expected root/annotations/mpii_{split}.json (MMPose) or root/annot/{split}.json (HRNet) and images in "
           "root/images/; set data.annotation_file / data.image_dir for other layouts")


def _default_annotation_files(split: str) -> list[str]:
    hrnet_split = {"val": "valid"}.get(split, split)
    return [f"annotations/mpii_{split}.json", f"annot/{hrnet_split}.json", f"annot/{split}.json"]


def read_headboxes(path: Path) -> np.ndarray:
    """float64 ``(N, 2, 2)`` head boxes ``[[x1, y1], [x2, y2]]`` from ``gt_valid.mat`` (``headboxes_src``,
    2 x 2 x N), a ``.npy`` (N, 2, 2) or a ``.json`` list."""
    try:
        if path.suffix.lower() == ".mat":
            contents = loadmat(str(path))
            key = next((k for k in ("headboxes_src", "headboxes") if k in contents), None)
            if key is None:
                raise ValueError(f"no 'headboxes_src' variable (has: {sorted(k for k in contents if k[0] != '_')})")
            boxes = np.asarray(contents[key], np.float64)
            if boxes.ndim != 3 or boxes.shape[:2] != (2, 2):
                raise ValueError(f"'{key}' has shape {boxes.shape}, expected 2 x 2 x N")
            return boxes.transpose(2, 0, 1)
        if path.suffix.lower() == ".npy":
            boxes = np.load(path).astype(np.float64)
        else:
            boxes = np.asarray(json.loads(path.read_text()), np.float64)
        if boxes.ndim != 3 or boxes.shape[1:] != (2, 2):
            raise ValueError(f"shape {boxes.shape}, expected N x 2 x 2 ([[x1, y1], [x2, y2]] per record)")
        return boxes
    except Exception as error:  # noqa: BLE001 - scipy / numpy raise many types for broken files
        raise DatasetError(f"mpii: the dataset cannot be used as it is:\n  - 1 file that cannot be read as "
                           f"annotations: {path} ({error})") from None


def head_size(headbox: Optional[np.ndarray], keypoints: np.ndarray) -> tuple[float, str]:
    """``(head size, source)``: 0.6 x head box diagonal, else the upper_neck-head_top distance, else NaN."""
    if headbox is not None:
        box = np.asarray(headbox, np.float64).reshape(2, 2)
        return float(HEAD_SIZE_FACTOR * np.linalg.norm(box[1] - box[0])), "headbox"
    neck, top = MPII_JOINTS.index("upper_neck"), MPII_JOINTS.index("head_top")
    if keypoints[neck, 2] > 0 and keypoints[top, 2] > 0:
        return float(np.linalg.norm(keypoints[top, :2] - keypoints[neck, :2])), "head_segment"
    return float("nan"), "none"


def mpii_center_scale(center: Sequence[float], scale: float, input_size: Sequence[int],
                      padding: float = DEFAULT_PADDING) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """MPII's 1-based ``center`` and ``scale`` -> ``(center (2,), scale (2,) region w, h in px, box [x, y, w, h])``,
    0-based (see the module docstring)."""
    side = float(scale) * MPII_PIXEL_STD
    cx = float(center[0]) - 1.0
    cy = float(center[1]) + MPII_CENTER_SHIFT * float(scale) - 1.0
    box = [cx - side / 2, cy - side / 2, side, side]
    region_center, region_scale = box_to_center_scale(box, input_size, padding)
    return region_center, region_scale, box


@DATASETS.register("mpii")
class MPII(KeypointSource):
    """MPII Human Pose, one sample per annotated person (16 joints), from the common JSON format.

    Args:
        root: dataset folder.
        split: ``train`` or ``val`` (any name: ``{split}`` in the paths).
        annotation_file: the JSON, relative to ``root`` unless absolute; default: the first of
            ``annotations/mpii_{split}.json`` and ``annot/{split}.json`` (``val`` -> ``valid``) that exists.
        image_dir: folder of the images, relative to ``root`` unless absolute.
        headbox_file: optional head boxes, one per record in file order (``gt_valid.mat``'s ``headboxes_src``,
            ``.npy`` N x 2 x 2 or ``.json``); a record's own ``headbox`` field wins.
        require_headbox: make a record without a head box an error (official PCKh needs the real boxes).
        input_size: ``[H, W]`` of the crop: the aspect ratio of ``scale``.
        padding: region = the person box grown to that aspect ratio times ``padding``.
        outside_tolerance: labelled joints more than this fraction of the image size outside it are an error.
        check_images: read every image header (needed for the outside check); existence is always checked.
        skip_bad_records: drop bad records with a warning instead of stopping.

    Raises:
        DatasetError: missing or malformed JSON / head-box file, records with missing fields or not 16 joints,
            missing/unreadable images, joints far outside the image, non-positive scale: one message.
    """

    dataset = "mpii"
    source_name = "mpii"
    layout = _LAYOUT

    def __init__(self, root: str, split: str = "train", annotation_file: Optional[str] = None,
                 image_dir: str = "images", headbox_file: Optional[str] = None, require_headbox: bool = False,
                 input_size: Sequence[int] = (256, 256), padding: float = DEFAULT_PADDING,
                 outside_tolerance: float = 0.1, check_images: bool = True, skip_bad_records: bool = False):
        where, input_size = self._open_root(root, split, input_size)
        if annotation_file is None:
            tried = [resolve(self.root, name, split) for name in _default_annotation_files(split)]
            found = [path for path in tried if path.is_file()]
            if not found:
                raise DatasetError(f"{where}: no annotation file; tried {', '.join(map(str, tried))}; {_LAYOUT}")
            self.annotation_path = found[0]
        else:
            self.annotation_path = resolve(self.root, annotation_file, split)
            if not self.annotation_path.is_file():
                raise DatasetError(f"{where}: annotation file {self.annotation_path} not found; {_LAYOUT}")
        self.image_dir = resolve(self.root, image_dir, split)
        entries = self._read_json()
        headboxes = None
        if headbox_file is not None:
            headbox_path = resolve(self.root, headbox_file, split)
            if not headbox_path.is_file():
                raise DatasetError(f"{where}: head-box file {headbox_path} not found (data.headbox_file)")
            headboxes = read_headboxes(headbox_path)
            if len(headboxes) != len(entries):
                raise DatasetError(f"{where}: {headbox_path} holds {len(headboxes)} head boxes but "
                                   f"{self.annotation_path.name} has {len(entries)} records; they must match one "
                                   f"to one, in order (gt_valid.mat goes with the validation JSON)")
        problems = Problems()
        records = self._records(entries, headboxes, require_headbox, input_size, padding, problems)
        self._finish(records, problems, where=where, input_size=input_size, padding=padding,
                     outside_tolerance=outside_tolerance, check_images=check_images,
                     skip_bad_records=skip_bad_records)

    def _read_json(self) -> list:
        try:
            entries = json.loads(self.annotation_path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            raise DatasetError(f"mpii: the dataset cannot be used as it is:\n  - 1 file that cannot be read as "
                               f"annotations: {self.annotation_path} ({error})") from None
        if not isinstance(entries, list):
            raise DatasetError(f"mpii: the dataset cannot be used as it is:\n  - 1 file that cannot be read as "
                               f"annotations: {self.annotation_path} (a {type(entries).__name__}; expected a list "
                               f"of records with image, center, scale, joints, joints_vis)")
        return entries

    def _records(self, entries: list, headboxes: Optional[np.ndarray], require_headbox: bool, input_size,
                 padding: float, problems: Problems) -> list[PersonRecord]:
        file_name = self.annotation_path.name
        num_joints = self.info["num_joints"]
        records: list[PersonRecord] = []
        for number, entry in enumerate(entries):
            where = f"{file_name} record {number}"
            try:
                image = str(entry["image"])
                where = f"{where} (image {image})"
                center = [float(v) for v in entry["center"]]
                scale = float(entry["scale"])
                joints = np.asarray(entry["joints"], np.float32)
                visible = np.asarray(entry["joints_vis"], np.float32).reshape(-1)
                if len(center) != 2:
                    raise ValueError(f"center {entry['center']!r} is not [x, y]")
            except (KeyError, TypeError, ValueError, IndexError) as error:
                problems.add("fields", f"{where} ({type(error).__name__}: {error}; expected image, center [x, y], "
                                       f"scale, joints, joints_vis)", ())
                continue
            if joints.ndim != 2 or joints.shape[1] < 2 or joints.shape[0] != num_joints or len(visible) != num_joints:
                problems.add("joint_count", f"{where} (joints {list(joints.shape)}, joints_vis {len(visible)}; "
                                            f"expected {num_joints} x 2 and {num_joints})", ())
                continue
            keypoints = np.zeros((num_joints, 3), np.float32)
            labelled = visible > 0
            keypoints[labelled, :2] = joints[labelled, :2] - 1.0  # 1-based MATLAB -> 0-based
            keypoints[labelled, 2] = 2.0
            if not math.isfinite(scale) or scale <= 0 or not all(math.isfinite(v) for v in center):
                region_center = region_scale = None
                box = [center[0] - 1.0, center[1] - 1.0, 0.0, 0.0]
            else:
                region_center, region_scale, box = mpii_center_scale(center, scale, input_size, padding)
            headbox = entry.get("headbox") if isinstance(entry, dict) else None
            if headbox is None and headboxes is not None:
                headbox = headboxes[number]
            try:
                size, size_source = head_size(headbox, keypoints)
            except ValueError:
                problems.add("fields", f"{where} (headbox {headbox!r}; expected [[x1, y1], [x2, y2]])", ())
                continue
            if require_headbox and size_source != "headbox":
                problems.add("no_headbox", where, len(records))
            stem = Path(image).stem
            records.append(PersonRecord(
                name=f"{stem}_{number}",
                image_path=self.image_dir / image,
                keypoints=keypoints,
                box=box,
                where=where,
                center=region_center,
                scale=region_scale,
                meta={"name": f"{stem}_{number}", "image_id": int(stem) if stem.isdigit() else number,
                      "record": number, "box": [float(v) for v in box], "head_size": size,
                      "head_size_source": size_source, "mpii_center": center, "mpii_scale": scale,
                      "image_file": image},
            ))
        return records

    def layout_hint(self) -> str:
        return _LAYOUT
