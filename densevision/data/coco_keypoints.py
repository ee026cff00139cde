"""COCO person keypoints (``coco_keypoints`` in recipes): one sample per annotated person, read with pycocotools.

Layout (both paths are options; ``{split}`` is replaced by the split name)::

    root/annotations/person_keypoints_{split}.json
    root/images/{split}/<file_name>          (or the official root/{split}/<file_name>, e.g. root/val2017/)

Kept: person annotations with ``iscrowd == 0`` and at least ``min_keypoints`` labelled joints (COCOeval ignores
ground truths without keypoints, so training on them teaches nothing it is scored on). ``v`` is COCO's own
(0 not labelled, 1 labelled but occluded, 2 visible). The box is the annotation's ``bbox`` clipped to the image;
``info["annotation_file"]`` is the ground-truth file COCOeval needs. See datasets/coco/README.md.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
from pycocotools.coco import COCO

from densevision.data.errors import DatasetError
from densevision.data.keypoint_source import KeypointSource, PersonRecord, Problems, resolve
from densevision.data.skeletons import COCO_JOINTS
from densevision.data.topdown import DEFAULT_PADDING
from densevision.registry import DATASETS

_LAYOUT = ("expected root/annotations/person_keypoints_{split}.json and images in root/images/{split}/ (or "
           "root/{split}/ as COCO ships them); set data.annotation_file / data.image_dir for other layouts, "
           "or try the pipeline on generated people with --demo")


def read_coco_json(path: Path) -> dict:
    """The annotation file as a dict, or a DatasetError saying what is wrong with it."""
    if not path.is_file():
        raise DatasetError(f"coco_keypoints: annotation file {path} not found; {_LAYOUT}")
    try:
        with open(path, encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise DatasetError(f"coco_keypoints: the dataset cannot be used as it is:\n  - 1 file that cannot be "
                           f"read as annotations: {path} ({error})") from None
    missing = [key for key in ("images", "annotations", "categories")
               if not isinstance(data, dict) or not isinstance(data.get(key), list)]
    if missing:
        raise DatasetError(f"coco_keypoints: the dataset cannot be used as it is:\n  - 1 file that cannot be read "
                           f"as annotations: {path} (no {' / '.join(repr(k) for k in missing)} list; expected "
                           f"COCO's person_keypoints_*.json format)")
    return data


def index_coco(data: dict, path: Path):
    """A ``pycocotools.coco.COCO`` over an already loaded annotation dict (its progress prints silenced)."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = data
        try:
            coco.createIndex()
        except (KeyError, TypeError) as error:
            raise DatasetError(f"coco_keypoints: {path}: cannot be indexed by pycocotools (an image or annotation "
                               f"without {error}); expected COCO's format") from None
    return coco


@DATASETS.register("coco_keypoints")
class CocoKeypoints(KeypointSource):
    """COCO-format person keypoints, one sample per person instance (17 COCO joints).

    Args:
        root: dataset folder.
        split: split name, substituted for ``{split}`` in the paths (``train``, ``val``, ``val2017``, ...).
        annotation_file: the keypoint json, relative to ``root`` unless absolute.
        image_dir: folder of the images (``file_name`` is relative to it), relative to ``root`` unless absolute;
            when the default ``images/{split}`` is absent and ``root/{split}`` exists, that is used.
        input_size: ``[H, W]`` of the crop the task makes: the aspect ratio of ``scale``.
        padding: the box grown to that aspect ratio is multiplied by this (1.25 as MMPose / HRNet).
        min_keypoints: keep persons with at least this many labelled joints (default 1).
        outside_tolerance: labelled joints more than this fraction of the image size outside it are an error.
        check_images: read every image header (size against the json's width/height); existence is always checked.
        skip_bad_records: drop bad annotations with a warning instead of stopping.

    Attributes:
        info: the COCO definition (:func:`~densevision.data.skeletons.keypoint_info`) plus ``annotation_file``.
        stats: counts of what was skipped: ``{"crowd": n, "few_keypoints": n, "kept": n}``.

    Raises:
        DatasetError: a missing or malformed json, keypoint names other than COCO's 17, annotations with the wrong
            number of keypoints, an unknown image id, missing/unreadable images, image sizes that differ from the
            json, joints far outside the image, zero-size boxes: one message listing all of them.
    """

    dataset = "coco"
    source_name = "coco_keypoints"
    layout = _LAYOUT

    def __init__(self, root: str, split: str = "train",
                 annotation_file: str = "annotations/person_keypoints_{split}.json",
                 image_dir: str = "images/{split}", input_size: Sequence[int] = (256, 192),
                 padding: float = DEFAULT_PADDING, min_keypoints: int = 1, outside_tolerance: float = 0.1,
                 check_images: bool = True, skip_bad_records: bool = False):
        where, input_size = self._open_root(root, split, input_size)
        self.annotation_path = resolve(self.root, annotation_file, split)
        self.image_dir = resolve(self.root, image_dir, split)
        if not self.image_dir.is_dir() and image_dir == "images/{split}" and (self.root / split).is_dir():
            self.image_dir = self.root / split  # COCO's own layout: root/val2017/
        data = read_coco_json(self.annotation_path)
        self.coco = index_coco(data, self.annotation_path)
        self.info["annotation_file"] = str(self.annotation_path)

        problems = Problems()
        self.stats = {"crowd": 0, "few_keypoints": 0, "kept": 0}
        category = self._person_category(problems)
        records = self._records(category, int(min_keypoints), problems) if category is not None else []
        self._finish(records, problems, where=where, input_size=input_size, padding=padding,
                     outside_tolerance=outside_tolerance, check_images=check_images,
                     skip_bad_records=skip_bad_records)

    def _person_category(self, problems: Problems) -> Optional[int]:
        name = self.annotation_path.name
        candidates = [c for c in self.coco.dataset["categories"] if isinstance(c, dict) and c.get("keypoints")]
        person = [c for c in candidates if c.get("name") == "person"] or candidates
        if not person:
            problems.add("unreadable_annotations", f"{self.annotation_path} (no category with 'keypoints'; "
                                                   f"expected person_keypoints_*.json, not instances_*.json)")
            return None
        category = person[0]
        if list(category["keypoints"]) != list(COCO_JOINTS):
            problems.add("unreadable_annotations", f"{name} category {category.get('id')!r} keypoints "
                                                   f"{category['keypoints']}; expected COCO's 17: {list(COCO_JOINTS)}")
            return None
        return category.get("id")

    def _records(self, category: int, min_keypoints: int, problems: Problems) -> list[PersonRecord]:
        name = self.annotation_path.name
        num_joints = self.info["num_joints"]
        records: list[PersonRecord] = []
        for annotation in self.coco.dataset["annotations"]:
            if not isinstance(annotation, dict) or annotation.get("category_id") != category:
                continue
            where = f"{name} annotation {annotation.get('id')!r}"
            if annotation.get("iscrowd", 0):
                self.stats["crowd"] += 1
                continue
            raw = annotation.get("keypoints")
            if raw is None:  # np.asarray(None) would be one NaN: "1 keypoint values"
                problems.add("fields", f"{where} (no 'keypoints' field; expected {3 * num_joints} numbers = "
                                       f"{num_joints} x (x, y, v))", ())
                continue
            try:
                keypoints = np.asarray(raw, np.float32)
            except (TypeError, ValueError):
                problems.add("fields", f"{where} (keypoints {str(raw)[:40]!r} are not numbers)", ())
                continue
            if keypoints.ndim != 1 or keypoints.size != 3 * num_joints:
                problems.add("joint_count", f"{where} ({keypoints.size} keypoint values, expected "
                                            f"{3 * num_joints} = {num_joints} x (x, y, v))", ())
                continue
            keypoints = keypoints.reshape(num_joints, 3)
            if not np.isin(keypoints[:, 2], (0, 1, 2)).all():
                problems.add("fields", f"{where} (visibility values {sorted(set(keypoints[:, 2].tolist()))}, "
                                       f"expected 0, 1 or 2)", ())
                continue
            labelled = int((keypoints[:, 2] > 0).sum())
            stated = annotation.get("num_keypoints", labelled)
            if stated != labelled:
                problems.add("fields", f"{where} (num_keypoints {stated!r} but {labelled} labelled keypoints; "
                                       f"COCOeval trusts num_keypoints)", ())
                continue
            if labelled < min_keypoints:
                self.stats["few_keypoints"] += 1
                continue
            image = self.coco.imgs.get(annotation.get("image_id"))
            if image is None:
                problems.add("unknown_image", f"{where} (image_id {annotation.get('image_id')!r})", ())
                continue
            try:
                height, width = int(image["height"]), int(image["width"])
                file_name = str(image["file_name"])
                box = [float(v) for v in annotation["bbox"]]
                if len(box) != 4:
                    raise ValueError("bbox")
            except (KeyError, TypeError, ValueError) as error:
                problems.add("fields", f"{where} (image {image.get('id')!r} / bbox: {error})", ())
                continue
            keypoints[keypoints[:, 2] == 0, :2] = 0.0
            records.append(PersonRecord(
                name=f"{Path(file_name).stem}_{annotation.get('id')}",
                image_path=self.image_dir / file_name,
                keypoints=keypoints,
                box=_clip_box(box, width, height),
                where=f"{where} (image {file_name})",
                expected_size=(height, width),
                meta={"name": f"{Path(file_name).stem}_{annotation.get('id')}", "image_id": int(image["id"]),
                      "annotation_id": annotation.get("id"), "box": box,
                      "area": float(annotation.get("area", box[2] * box[3])), "image_file": file_name},
            ))
        self.stats["kept"] = len(records)
        return records

    def layout_hint(self) -> str:
        return _LAYOUT


def _clip_box(box: list[float], width: int, height: int) -> list[float]:
    """``[x, y, w, h]`` clipped to the image ``[0, W] x [0, H]`` (a box reaching past the border is common)."""
    x, y, w, h = box
    if not all(math.isfinite(v) for v in box):
        return box
    x1, y1 = min(max(x, 0.0), width), min(max(y, 0.0), height)
    x2, y2 = min(max(x + w, 0.0), width), min(max(y + h, 0.0), height)
    return [x1, y1, x2 - x1, y2 - y1]
