"""Procedural people with exact COCO keypoints, in the COCO layout: try the pose pipeline without downloading.

Each image holds one or two front-facing figures over a textured background: a skin-coloured head disc with dark
eyes, a red nose and ears, a shirt torso, sleeves, skin forearms ending in hands, trousers and dark shoes. Joint
positions come from random limb angles, lean, head turn, size and place; the 17 keypoints are exactly where the
drawing puts the joints (pixel centres at integers). What makes each joint findable:

- the person's left limbs are a darker shade of the clothing colour and the right limbs a lighter one (clothing
  colours vary, the shading rule does not), so left and right can be told apart, as COCO's labels require;
- elbows and knees are where the sleeve meets the forearm and the thigh meets the darker shin; wrists and ankles
  are where the forearm meets the hand and the shin meets the shoe; the face features are fixed colours.

Visibility follows COCO: a joint covered by the other figure or by a random occluding block is 1 (occluded), one
outside the image or an ear turned away is 0 (x = y = 0), any other 2. Figures may stand partly outside the image.
Boxes and areas come from each figure's visible pixels; ``segmentation`` is its RLE.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from densevision.data.generated import is_complete, mark_complete
from densevision.data.skeletons import COCO_JOINTS, COCO_SKELETON_1BASED

MARKER = ".densevision_demo_people.json"
NOSE_COLOR = (210, 30, 40)
EYE_COLOR = (15, 15, 20)
SHOE_COLOR = (30, 28, 26)
_SKIN = [(236, 192, 160), (205, 150, 110), (160, 110, 75), (110, 75, 50)]
_CLOTHES = [(200, 40, 40), (40, 80, 190), (40, 150, 70), (230, 200, 40), (130, 60, 160), (240, 140, 30),
            (40, 160, 170), (220, 220, 220), (90, 90, 100)]
_SHIFT = 4  # cv2 fixed-point bits: figures are drawn with sub-pixel accuracy
_J = {name: index for index, name in enumerate(COCO_JOINTS)}


def _left_shade(color) -> np.ndarray:
    return np.asarray(color, np.float32) * 0.55


def _right_shade(color) -> np.ndarray:
    color = np.asarray(color, np.float32)
    return color + (255 - color) * 0.4


def _pt(point) -> tuple[int, int]:
    return int(round(point[0] * (1 << _SHIFT))), int(round(point[1] * (1 << _SHIFT)))


class _Layers:
    """The RGB canvas and an owner map (0 background, k person k, -1 occluder) drawn with the same strokes."""

    def __init__(self, canvas: np.ndarray):
        self.canvas = canvas
        self.owner = np.zeros(canvas.shape[:2], np.int32)

    def line(self, a, b, thickness: float, color, owner: int) -> None:
        thick = max(2, int(round(thickness)))
        cv2.line(self.canvas, _pt(a), _pt(b), tuple(float(c) for c in color), thick, cv2.LINE_AA, _SHIFT)
        cv2.line(self.owner, _pt(a), _pt(b), owner, thick, cv2.LINE_8, _SHIFT)

    def disc(self, center, radius: float, color, owner: int) -> None:
        radius = max(1.0, radius)
        cv2.circle(self.canvas, _pt(center), int(round(radius * (1 << _SHIFT))), tuple(float(c) for c in color),
                   -1, cv2.LINE_AA, _SHIFT)
        cv2.circle(self.owner, _pt(center), int(round(radius * (1 << _SHIFT))), owner, -1, cv2.LINE_8, _SHIFT)

    def polygon(self, points, color, owner: int) -> None:
        fixed = np.array([_pt(p) for p in points], np.int32)
        cv2.fillPoly(self.canvas, [fixed], tuple(float(c) for c in color), cv2.LINE_AA, _SHIFT)
        cv2.fillPoly(self.owner, [fixed], owner, cv2.LINE_8, _SHIFT)


def _textured_background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Low-frequency colour noise, stripes or a floor line, and a few blocks: nothing shaped like a person."""
    base = rng.uniform(50, 210, 3)
    noise = cv2.resize(rng.normal(0, 22, (size // 16 + 2, size // 16 + 2, 3)), (size, size),
                       interpolation=cv2.INTER_CUBIC)
    canvas = base + noise
    if rng.random() < 0.5:  # stripes (fences, walls)
        period = rng.uniform(6, 20)
        angle = rng.uniform(0, math.pi)
        yy, xx = np.mgrid[0:size, 0:size]
        stripes = np.sin((xx * math.cos(angle) + yy * math.sin(angle)) * 2 * math.pi / period)
        canvas += (stripes[..., None] * rng.uniform(6, 18)) * rng.uniform(0.5, 1.0, 3)
    if rng.random() < 0.6:  # a floor
        horizon = int(size * rng.uniform(0.5, 0.85))
        canvas[horizon:] = canvas[horizon:] * 0.5 + rng.uniform(40, 200, 3) * 0.5
    for _ in range(rng.integers(0, 4)):  # blocks
        x0, y0 = rng.integers(0, size, 2)
        w, h = rng.integers(size // 10, size // 3, 2)
        canvas[y0:y0 + h, x0:x0 + w] = canvas[y0:y0 + h, x0:x0 + w] * 0.3 + rng.uniform(30, 230, 3) * 0.7
    return canvas.astype(np.float32)


def _pose(rng: np.random.Generator, pelvis, height: float) -> dict:
    """Joint positions (17 x 2) and drawing sizes of one front-facing figure ``height`` pixels tall."""
    lean = math.radians(np.clip(rng.normal(0, 10), -25, 25))
    up = np.array([math.sin(lean), -math.cos(lean)])
    right = np.array([math.cos(lean), math.sin(lean)])  # towards image right = the person's left
    down = -up
    pelvis = np.asarray(pelvis, np.float64)
    neck = pelvis + 0.30 * height * up
    head_radius = 0.075 * height
    head = neck + (0.05 * height + head_radius) * up
    points = np.zeros((17, 2))

    def direction(angle_degrees: float, side: int) -> np.ndarray:  # 0 = hanging down, 90 = straight out
        angle = math.radians(angle_degrees)
        return math.cos(angle) * down + math.sin(angle) * side * right

    for side, prefix in ((-1, "right_"), (1, "left_")):  # the person's right side is on the image's left
        shoulder = neck + side * 0.105 * height * right - 0.02 * height * up
        upper = rng.uniform(-25, 165) if rng.random() < 0.85 else rng.uniform(-60, -25)
        elbow = shoulder + 0.16 * height * direction(upper, side)
        lower = upper + rng.uniform(-30, 140) * (1 if rng.random() < 0.7 else -1)
        wrist = elbow + 0.14 * height * direction(lower, side)
        hip = pelvis + side * 0.075 * height * right
        thigh = rng.uniform(-12, 40) if rng.random() < 0.85 else rng.uniform(40, 85)
        knee = hip + 0.24 * height * direction(thigh, side)
        shin = thigh + rng.uniform(-70, 35)
        ankle = knee + 0.22 * height * direction(shin, side)
        for name, point in (("shoulder", shoulder), ("elbow", elbow), ("wrist", wrist), ("hip", hip),
                            ("knee", knee), ("ankle", ankle)):
            points[_J[prefix + name]] = point
    yaw = rng.uniform(-0.6, 0.6)  # head turn: + towards image right
    face = head + yaw * 0.55 * head_radius * right
    points[_J["nose"]] = face - 0.15 * head_radius * up
    points[_J["right_eye"]] = face - 0.36 * head_radius * right + 0.2 * head_radius * up
    points[_J["left_eye"]] = face + 0.36 * head_radius * right + 0.2 * head_radius * up
    points[_J["right_ear"]] = head - (0.97 - 0.25 * max(yaw, 0)) * head_radius * right
    points[_J["left_ear"]] = head + (0.97 - 0.25 * max(-yaw, 0)) * head_radius * right
    hidden = set()
    if yaw > 0.35:
        hidden.add(_J["left_ear"])  # turned towards the person's left: that ear goes behind the head
    elif yaw < -0.35:
        hidden.add(_J["right_ear"])
    return {"points": points, "neck": neck, "head": head, "head_radius": head_radius, "pelvis": pelvis,
            "height": height, "up": up, "right": right, "hidden": hidden, "lean": lean}


def _draw_person(layers: _Layers, rng: np.random.Generator, pose: dict, owner: int) -> None:
    """Draw one figure back to front: legs, torso, arms, head (each limb shaded by side)."""
    p, h = pose["points"], pose["height"]
    skin = np.asarray(_SKIN[rng.integers(len(_SKIN))], np.float32) + rng.normal(0, 6, 3)
    shirt = np.asarray(_CLOTHES[rng.integers(len(_CLOTHES))], np.float32) + rng.normal(0, 10, 3)
    trousers = np.asarray(_CLOTHES[rng.integers(len(_CLOTHES))], np.float32) + rng.normal(0, 10, 3)
    limb = 0.055 * h
    for prefix, shade in (("right_", _right_shade), ("left_", _left_shade)):
        hip, knee, ankle = p[_J[prefix + "hip"]], p[_J[prefix + "knee"]], p[_J[prefix + "ankle"]]
        shin_color = shade(trousers) * 0.7
        layers.line(hip, knee, 1.15 * limb, shade(trousers), owner)
        layers.line(knee, ankle, 0.95 * limb, shin_color, owner)
        layers.disc(knee, 0.5 * limb, shade(trousers), owner)
        foot = ankle + (ankle - knee) / (np.linalg.norm(ankle - knee) + 1e-6) * 0.35 * limb
        layers.disc(foot, 0.65 * limb, SHOE_COLOR, owner)
    torso = [p[_J["right_shoulder"]], p[_J["left_shoulder"]], p[_J["left_hip"]] + 0.2 * limb * pose["right"],
             p[_J["right_hip"]] - 0.2 * limb * pose["right"]]
    layers.polygon(torso, shirt, owner)
    layers.line(pose["neck"], pose["neck"] + 0.06 * h * pose["up"], 0.7 * limb, skin * 0.92, owner)
    for prefix, shade in (("right_", _right_shade), ("left_", _left_shade)):
        shoulder, elbow, wrist = p[_J[prefix + "shoulder"]], p[_J[prefix + "elbow"]], p[_J[prefix + "wrist"]]
        layers.line(shoulder, elbow, limb, shade(shirt), owner)
        layers.line(elbow, wrist, 0.8 * limb, skin, owner)
        layers.disc(elbow, 0.5 * limb, shade(shirt), owner)
        hand = wrist + (wrist - elbow) / (np.linalg.norm(wrist - elbow) + 1e-6) * 0.4 * limb
        layers.disc(hand, 0.55 * limb, skin * 0.8, owner)
    radius = pose["head_radius"]
    layers.disc(pose["head"], radius, skin, owner)
    for ear in ("right_ear", "left_ear"):
        if _J[ear] not in pose["hidden"]:
            layers.disc(p[_J[ear]], 0.28 * radius, skin * 0.75, owner)
    for eye in ("right_eye", "left_eye"):
        layers.disc(p[_J[eye]], max(1.0, 0.14 * radius), EYE_COLOR, owner)
    layers.disc(p[_J["nose"]], max(1.0, 0.14 * radius), NOSE_COLOR, owner)


def render_people(rng: np.random.Generator, size: int = 128) -> tuple[np.ndarray, list[dict], np.ndarray]:
    """One demo image: ``(image uint8 (size, size, 3) RGB, people, owner int32 (size, size))``.

    Each person is ``{"keypoints": float32 (17, 3) [x, y, v] (COCO order and visibility), "mask": bool
    (size, size) visible pixels, "head_radius": float pixels}``; ``owner`` holds 1 + the person's index where that person is visible, 0 for
    the background and -1 for the occluding blocks.
    """
    layers = _Layers(_textured_background(rng, size))
    count = 1 if rng.random() < 0.6 else 2
    poses = []
    for index in range(count):
        height = size * (rng.uniform(0.5, 0.95) if count == 1 else rng.uniform(0.4, 0.75))
        x = size * (rng.uniform(0.3, 0.7) if count == 1 else rng.uniform(0.15, 0.45) + 0.4 * index)
        y = size * 0.5 + height * rng.uniform(-0.05, 0.15)
        if rng.random() < 0.15:  # partly outside the image
            x += size * rng.choice([-1, 1]) * rng.uniform(0.2, 0.4)
            y += size * rng.uniform(0.0, 0.25)
        pose = _pose(rng, (x, y), height)
        _draw_person(layers, rng, pose, owner=index + 1)
        poses.append(pose)
    if rng.random() < 0.3:  # an occluding block in front
        w, h = rng.uniform(0.15, 0.35, 2) * size
        x0, y0 = rng.uniform(0, size - w), rng.uniform(size * 0.3, size - h)
        layers.polygon([(x0, y0), (x0 + w, y0), (x0 + w, y0 + h), (x0, y0 + h)], rng.uniform(30, 230, 3), -1)
    image = np.clip(np.rint(layers.canvas + rng.normal(0, 3, layers.canvas.shape)), 0, 255).astype(np.uint8)
    people = []
    for index, pose in enumerate(poses):
        keypoints = np.zeros((17, 3), np.float32)
        for joint, (x, y) in enumerate(pose["points"]):
            col, row = int(round(x)), int(round(y))
            if joint in pose["hidden"] or not (0 <= col < size and 0 <= row < size):
                continue  # COCO leaves joints outside the image (and ears turned away) unlabelled
            visible = layers.owner[row, col] == index + 1
            keypoints[joint] = (x, y, 2.0 if visible else 1.0)
        people.append({"keypoints": keypoints, "mask": layers.owner == index + 1,
                       "head_radius": pose["head_radius"]})
    return image, people, layers.owner


def _annotation(person: dict, annotation_id: int, image_id: int) -> dict | None:
    mask = person["mask"]
    area = int(mask.sum())
    if area == 0:
        return None
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    keypoints = person["keypoints"]
    return {
        "id": annotation_id, "image_id": image_id, "category_id": 1, "iscrowd": 0, "area": float(area),
        "bbox": [float(cols[0]), float(rows[0]), float(cols[-1] - cols[0] + 1), float(rows[-1] - rows[0] + 1)],
        "keypoints": [round(float(v), 2) for v in keypoints.reshape(-1)],
        "num_keypoints": int((keypoints[:, 2] > 0).sum()),
        "segmentation": {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")},
    }


def make_demo_coco_keypoints(directory: str | os.PathLike, num_train: int = 160, num_val: int = 40,
                             size: int = 128, seed: int = 0) -> Path:
    """Write the demo people dataset in the COCO keypoint layout.

    ``directory/images/{train,val}/<image id, 12 digits>.png`` and ``directory/annotations/person_keypoints_{train,val}.json``
    (valid for pycocotools' COCO and COCOeval: 17 keypoints, skeleton, area, bbox, RLE segmentation,
    num_keypoints, iscrowd 0). Deterministic for a seed; a second call with the same arguments returns at once
    (a marker file written last records a complete dataset).

    Args:
        directory: output folder (created).
        num_train, num_val: images per split (one or two people each).
        size: image side in pixels.
        seed: the dataset's seed.

    Returns:
        ``directory`` as a Path, ready for ``CocoKeypoints(directory, split)``.
    """
    directory = Path(directory)
    settings = {"generator": "demo_people/2", "num_train": num_train, "num_val": num_val, "size": size,
                "seed": seed}
    marker = directory / MARKER
    if is_complete(marker, settings):
        return directory
    category = {"id": 1, "name": "person", "supercategory": "person", "keypoints": list(COCO_JOINTS),
                "skeleton": [list(link) for link in COCO_SKELETON_1BASED]}
    (directory / "annotations").mkdir(parents=True, exist_ok=True)
    for split_id, (split, count) in enumerate((("train", num_train), ("val", num_val))):
        folder = directory / "images" / split
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.png"):
            old.unlink()
        images, annotations = [], []
        for index in range(count):
            image, people, _ = render_people(np.random.default_rng([seed, split_id, index]), size)
            image_id = index + 1
            file_name = f"{image_id:012d}.png"  # COCO's naming: the file name is the image id
            cv2.imwrite(str(folder / file_name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            images.append({"id": image_id, "file_name": file_name, "width": size, "height": size})
            for person in people:
                annotation = _annotation(person, len(annotations) + 1, image_id)
                if annotation is not None:
                    annotations.append(annotation)
        data = {"info": {"description": "densevision demo people (procedural)", "version": "1"}, "licenses": [],
                "images": images, "annotations": annotations, "categories": [category]}
        (directory / "annotations" / f"person_keypoints_{split}.json").write_text(json.dumps(data))
    mark_complete(marker, settings)
    return directory
