"""Human-pose dataset definitions: joint names, skeleton, left/right pairs, colours, OKS sigmas and the metric.

Each dataset's ``info`` dict (what :func:`keypoint_info` returns and every pose source carries) holds::

    dataset        "coco" | "mpii" | "lsp"
    joint_names    [str] * J, in the dataset's own order
    num_joints     J
    skeleton       [[a, b], ...]      joint index pairs drawn as limbs (0-based)
    flip_pairs     [[left, right], ...] joints swapped by a left-right mirror (the person's left first)
    joint_colors   [[r, g, b], ...]   per joint: left side green, right side orange, middle blue (MMPose's)
    link_colors    [[r, g, b], ...]   per skeleton link, coloured by the side of its joints
    sigmas         COCO's 17 OKS sigmas (None for datasets scored without OKS)
    metric         "coco_ap" | "pckh" | "pck"
    pck_threshold  0.5 for PCKh@0.5 (MPII), 0.2 for PCK@0.2 (LSP), None for COCO AP
    torso_joints   [right_shoulder, left_hip]: the torso diameter that normalises PCK (LSP's protocol)

The task, the model and the drawing code read these; none of them hard-codes a dataset.
"""

from __future__ import annotations

import copy
from typing import Sequence

import numpy as np

LEFT_COLOR = [0, 255, 0]
RIGHT_COLOR = [255, 128, 0]
MIDDLE_COLOR = [51, 153, 255]

# ----------------------------------------------------------------------------------------------------- COCO
COCO_JOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)
#: The official COCO person skeleton (``categories[0]["skeleton"]`` of person_keypoints_*.json), made 0-based.
COCO_SKELETON_1BASED = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9), (8, 10), (9, 11),
    (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)
#: COCO's OKS sigmas, joint order above (cocoapi's ``COCOeval.Params.kpt_oks_sigmas``).
COCO_SIGMAS = (0.026, 0.025, 0.025, 0.035, 0.035, 0.079, 0.079, 0.072, 0.072, 0.062, 0.062, 0.107, 0.107, 0.087,
               0.087, 0.089, 0.089)

# ----------------------------------------------------------------------------------------------------- MPII
MPII_JOINTS = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "pelvis", "thorax",
    "upper_neck", "head_top", "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow",
    "left_wrist",
)
MPII_SKELETON = (
    (0, 1), (1, 2), (2, 6), (6, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 9), (8, 12), (12, 11), (11, 10), (8, 13),
    (13, 14), (14, 15),
)

# ------------------------------------------------------------------------------------------------------ LSP
LSP_JOINTS = (
    "right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist", "right_elbow",
    "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "neck", "head_top",
)
LSP_SKELETON = (
    (0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (2, 8), (3, 9), (8, 9), (6, 7), (7, 8), (9, 10), (10, 11), (8, 12),
    (9, 12), (12, 13),
)


def _left_right_pairs(names: Sequence[str]) -> list[list[int]]:
    """``[[left, right], ...]`` from ``left_x`` / ``right_x`` names, in the order the left joints appear."""
    pairs = []
    for index, name in enumerate(names):
        if name.startswith("left_"):
            partner = "right_" + name[len("left_"):]
            if partner in names:
                pairs.append([index, list(names).index(partner)])
    return pairs


def _colors(num_joints: int, skeleton, flip_pairs) -> tuple[list[list[int]], list[list[int]]]:
    """Joint and link colours by side: left green, right orange, middle blue (a link takes its joints' side)."""
    side = ["middle"] * num_joints
    for left, right in flip_pairs:
        side[left], side[right] = "left", "right"
    palette = {"left": LEFT_COLOR, "right": RIGHT_COLOR, "middle": MIDDLE_COLOR}
    joint_colors = [list(palette[s]) for s in side]
    link_colors = []
    for a, b in skeleton:
        sides = {side[a], side[b]} - {"middle"}
        link_colors.append(list(palette[sides.pop()]) if len(sides) == 1 else list(MIDDLE_COLOR))
    return joint_colors, link_colors


def _build(dataset: str, names, skeleton, metric: str, pck_threshold, sigmas=None) -> dict:
    flip_pairs = _left_right_pairs(names)
    skeleton = [list(link) for link in skeleton]
    joint_colors, link_colors = _colors(len(names), skeleton, flip_pairs)
    index = list(names).index
    return {
        "dataset": dataset,
        "joint_names": list(names),
        "num_joints": len(names),
        "skeleton": skeleton,
        "flip_pairs": flip_pairs,
        "joint_colors": joint_colors,
        "link_colors": link_colors,
        "sigmas": list(sigmas) if sigmas is not None else None,
        "metric": metric,
        "pck_threshold": pck_threshold,
        "torso_joints": [index("right_shoulder"), index("left_hip")],
    }


_DEFINITIONS = {
    "coco": _build("coco", COCO_JOINTS, [(a - 1, b - 1) for a, b in COCO_SKELETON_1BASED], "coco_ap", None,
                   COCO_SIGMAS),
    "mpii": _build("mpii", MPII_JOINTS, MPII_SKELETON, "pckh", 0.5),
    "lsp": _build("lsp", LSP_JOINTS, LSP_SKELETON, "pck", 0.2),
}


def keypoint_info(name: str) -> dict:
    """A fresh copy of the ``info`` dict of pose dataset ``name`` (``"coco"``, ``"mpii"`` or ``"lsp"``).

    Raises:
        KeyError: an unknown name (the message lists the known ones).
    """
    try:
        return copy.deepcopy(_DEFINITIONS[name])
    except KeyError:
        raise KeyError(f"unknown pose dataset {name!r}; known: {', '.join(sorted(_DEFINITIONS))}") from None


def keypoint_dataset_names() -> list[str]:
    """The pose datasets :func:`keypoint_info` knows."""
    return sorted(_DEFINITIONS)


def validate_keypoint_info(info: dict) -> None:
    """Check an ``info`` dict: indices in range, no joint in two flip pairs, one colour per joint and link.

    Raises:
        ValueError: every problem found, one per line, naming the dataset and the offending entry.
    """
    problems = []
    names = info.get("joint_names") or []
    count = info.get("num_joints")
    if count != len(names):
        problems.append(f"num_joints is {count!r} but joint_names has {len(names)} names")
    if len(set(names)) != len(names):
        problems.append(f"joint_names repeat a name: {sorted({n for n in names if list(names).count(n) > 1})}")
    count = len(names)

    def bad_index(value) -> bool:
        return not isinstance(value, (int, np.integer)) or not 0 <= int(value) < count

    seen: dict[int, int] = {}
    for number, pair in enumerate(info.get("flip_pairs") or []):
        if len(pair) != 2 or any(bad_index(j) for j in pair):
            problems.append(f"flip_pairs[{number}] = {pair!r}: expected two joint indices in [0, {count})")
            continue
        if pair[0] == pair[1]:
            problems.append(f"flip_pairs[{number}] = {pair!r} pairs a joint with itself")
        for joint in pair:
            if joint in seen:
                problems.append(f"joint {joint} ({names[joint]}) is in flip_pairs[{seen[joint]}] and "
                                f"flip_pairs[{number}]; each joint has at most one mirror partner")
            seen[joint] = number
    skeleton = info.get("skeleton") or []
    for number, link in enumerate(skeleton):
        if len(link) != 2 or any(bad_index(j) for j in link):
            problems.append(f"skeleton[{number}] = {link!r}: expected two joint indices in [0, {count})")
        elif link[0] == link[1]:
            problems.append(f"skeleton[{number}] = {link!r} links a joint with itself")
    for key, expected in (("joint_colors", count), ("link_colors", len(skeleton))):
        colors = info.get(key)
        if colors is None:
            continue
        if len(colors) != expected:
            problems.append(f"{key} has {len(colors)} colours; expected {expected}")
        elif any(len(c) != 3 or not all(0 <= int(v) <= 255 for v in c) for c in colors):
            problems.append(f"{key}: expected [r, g, b] entries with values in 0..255")
    sigmas = info.get("sigmas")
    if sigmas is not None and len(sigmas) != count:
        problems.append(f"sigmas has {len(sigmas)} values; expected one per joint ({count})")
    torso = info.get("torso_joints")
    if torso is not None and (len(torso) != 2 or any(bad_index(j) for j in torso)):
        problems.append(f"torso_joints = {torso!r}: expected two joint indices in [0, {count})")
    if problems:
        raise ValueError(f"pose dataset info {info.get('dataset')!r}:\n  - " + "\n  - ".join(problems))


def flip_permutation(flip_pairs: Sequence[Sequence[int]], num_joints: int) -> np.ndarray:
    """int ``(J,)``: joint ``j`` of a mirrored person is joint ``permutation[j]`` of the original.

    Use as ``mirrored_keypoints = keypoints[permutation]`` after mirroring x (or heatmaps ``[..., permutation]``).
    """
    permutation = np.arange(num_joints)
    for left, right in flip_pairs:
        permutation[left], permutation[right] = right, left
    return permutation
