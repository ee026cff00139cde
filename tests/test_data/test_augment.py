"""Keypoints through augmentation: they follow the pixels, and mirroring swaps left/right joint slots.

The independent reference is the image itself: a single bright pixel is drawn at each keypoint (one colour
channel per joint), and after the transform the keypoint must sit where its pixel went. Pixel centres are at
integers, so mirroring a width-W image maps x -> W - 1 - x.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import densevision  # noqa: F401  (environment first)
from densevision.data.augment import build_augmentation

LEFT_WRIST, RIGHT_WRIST, NOSE = 0, 1, 2
FLIP_PAIRS = [(LEFT_WRIST, RIGHT_WRIST)]


def marked_sample(height: int, width: int, keypoints) -> dict:
    """A black image with joint ``j``'s pixel bright in channel ``j`` (up to 3 joints), and its sample dict."""
    keypoints = np.asarray(keypoints, np.float32)
    image = np.zeros((height, width, 3), np.uint8)
    for joint, (x, y) in enumerate(keypoints[:, :2]):
        image[int(round(y)), int(round(x)), joint] = 255
    return {"image": image, "keypoints": keypoints, "label": 7, "meta": {"name": "person_3", "index": 3}}


def bright_pixel(image: np.ndarray, channel: int):
    """``(x, y)`` of the one bright pixel of ``channel``, or None if it left the image."""
    found = np.argwhere(image[..., channel] > 127)
    if len(found) == 0:
        return None
    assert len(found) == 1, f"channel {channel}: {len(found)} bright pixels, expected one"
    y, x = found[0]
    return float(x), float(y)


def handedness(image: np.ndarray) -> float:
    """Sign of the frame spanned by the three marked pixels (joints 0, 1, 2)."""
    a, b, c = (np.array(bright_pixel(image, channel)) for channel in range(3))
    return float(np.sign(np.cross(b - a, c - a)))


def mirrored_by_pixels(before: np.ndarray, after: np.ndarray) -> bool:
    """The reference: whether the marked pixels' frame changed handedness between the two images."""
    sign = handedness(before)
    assert sign != 0, "the three marked pixels must not be collinear"
    return handedness(after) != sign


# ------------------------------------------------------------------------------------------------ flips


def test_horizontal_flip_moves_the_left_wrist_into_the_right_wrist_slot():
    height, width = 21, 31
    keypoints = [[4, 6, 2], [20, 15, 1], [9, 3, 2]]  # left wrist visible, right wrist occluded, nose
    sample = marked_sample(height, width, keypoints)
    augment = build_augmentation([{"HorizontalFlip": {"p": 1.0}}], target="keypoints", flip_pairs=[(0, 1)])
    out = augment(sample, 0)

    np.testing.assert_array_equal(out["image"], sample["image"][:, ::-1])
    moved = out["keypoints"]
    assert moved.shape == (3, 3) and moved.dtype == np.float32
    # the mirrored left wrist now looks like a right wrist: its coordinates (and flag) are in the right slot
    np.testing.assert_allclose(moved[RIGHT_WRIST], [width - 1 - 4, 6, 2])
    np.testing.assert_allclose(moved[LEFT_WRIST], [width - 1 - 20, 15, 1])
    np.testing.assert_allclose(moved[NOSE], [width - 1 - 9, 3, 2])  # unpaired joints keep their slot
    # and each slot's coordinates are where the pixel of the joint it came from went
    assert bright_pixel(out["image"], LEFT_WRIST) == tuple(moved[RIGHT_WRIST, :2])
    assert bright_pixel(out["image"], RIGHT_WRIST) == tuple(moved[LEFT_WRIST, :2])
    assert bright_pixel(out["image"], NOSE) == tuple(moved[NOSE, :2])
    # the caller's sample is untouched; other keys pass through; the task is told
    np.testing.assert_array_equal(sample["keypoints"], np.array(keypoints, np.float32))
    assert out["label"] == 7
    assert out["meta"] == {"name": "person_3", "index": 3, "mirrored": True}
    assert "mirrored" not in sample["meta"]


def test_horizontal_flip_twice_is_the_identity():
    height, width = 21, 31
    keypoints = np.array([[4.25, 6.5, 2], [20, 15, 1], [9, 3, 2], [30, 0, 0]], np.float32)  # fractional too
    sample = {"image": np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8),
              "keypoints": keypoints, "meta": {"name": "a"}}
    augment = build_augmentation([{"HorizontalFlip": {"p": 1.0}}], target="keypoints", flip_pairs=[(0, 1)])
    once = augment(sample, 0)
    np.testing.assert_allclose(once["keypoints"][RIGHT_WRIST], [width - 1 - 4.25, 6.5, 2], atol=1e-5)
    twice = augment(once, 1)
    np.testing.assert_array_equal(twice["image"], sample["image"])
    np.testing.assert_allclose(twice["keypoints"], keypoints, atol=1e-5)
    assert once["meta"]["mirrored"] and twice["meta"]["mirrored"]


def test_without_flip_pairs_the_slots_stay_and_nothing_is_reported():
    sample = marked_sample(21, 31, [[4, 6, 2], [20, 15, 1], [9, 3, 2]])
    out = build_augmentation([{"HorizontalFlip": {"p": 1.0}}], target="keypoints")(sample, 0)
    np.testing.assert_allclose(out["keypoints"][:, 0], [26, 10, 21])
    assert out["meta"] == sample["meta"]


def test_vertical_flip_is_mirroring_too():
    height, width = 21, 31
    keypoints = [[4, 6, 2], [20, 15, 1], [9, 3, 2]]
    sample = marked_sample(height, width, keypoints)
    out = build_augmentation([{"VerticalFlip": {"p": 1.0}}], target="keypoints", flip_pairs=FLIP_PAIRS)(sample, 0)
    assert out["meta"]["mirrored"] is True and mirrored_by_pixels(sample["image"], out["image"])
    np.testing.assert_allclose(out["keypoints"][RIGHT_WRIST], [4, height - 1 - 6, 2])
    np.testing.assert_allclose(out["keypoints"][LEFT_WRIST], [20, height - 1 - 15, 1])
    assert bright_pixel(out["image"], LEFT_WRIST) == tuple(out["keypoints"][RIGHT_WRIST, :2])


@pytest.mark.parametrize("transforms", [
    [{"Affine": {"rotate": [180, 180], "p": 1.0}}],
    [{"HorizontalFlip": {"p": 1.0}}, {"VerticalFlip": {"p": 1.0}}],  # two reflections make a rotation
], ids=["rotate180", "hflip+vflip"])
def test_a_180_degree_rotation_is_not_mirroring(transforms):
    height, width = 21, 31
    keypoints = [[4, 6, 2], [20, 15, 1], [9, 3, 2]]
    sample = marked_sample(height, width, keypoints)
    out = build_augmentation(transforms, target="keypoints", flip_pairs=FLIP_PAIRS)(sample, 0)
    assert out["meta"]["mirrored"] is False and not mirrored_by_pixels(sample["image"], out["image"])
    expected = [[width - 1 - x, height - 1 - y, v] for x, y, v in keypoints]  # slots kept
    np.testing.assert_allclose(out["keypoints"], expected, atol=1e-4)
    for joint in range(3):
        assert bright_pixel(out["image"], joint) == pytest.approx(tuple(out["keypoints"][joint, :2]), abs=1e-4)


# ------------------------------------------------------------------------------------------------ rotation


def test_a_90_degree_rotation_moves_each_keypoint_where_its_pixel_goes():
    size = 25  # square and odd: the centre (12, 12) is a pixel centre, so a quarter turn maps pixels to pixels
    keypoints = [[5, 8, 2], [17, 3, 1], [10, 20, 2]]
    sample = marked_sample(size, size, keypoints)
    augment = build_augmentation([{"Affine": {"rotate": [90, 90], "p": 1.0}}], target="keypoints",
                                 flip_pairs=FLIP_PAIRS)
    out = augment(sample, 0)
    assert out["meta"]["mirrored"] is False and not mirrored_by_pixels(sample["image"], out["image"])
    centre = np.array([(size - 1) / 2, (size - 1) / 2])
    for joint, (x, y, v) in enumerate(keypoints):  # a rotation keeps every slot
        pixel = bright_pixel(out["image"], joint)
        assert pixel is not None
        np.testing.assert_allclose(out["keypoints"][joint, :2], pixel, atol=1e-3)
        assert out["keypoints"][joint, 2] == v
        # a quarter turn about the centre: same distance, perpendicular offset
        before, after = np.array([x, y]) - centre, np.array(pixel) - centre
        assert np.linalg.norm(after) == pytest.approx(np.linalg.norm(before))
        assert np.dot(before, after) == pytest.approx(0.0)
        assert not np.allclose(after, before)


def test_a_keypoint_rotated_out_of_the_image_becomes_unlabelled():
    height, width = 21, 31
    sample = marked_sample(height, width, [[4, 6, 2], [20, 15, 1], [15, 10, 2]])  # joint 2 at the centre
    out = build_augmentation([{"Affine": {"rotate": [90, 90], "p": 1.0}}], target="keypoints",
                             flip_pairs=FLIP_PAIRS)(sample, 0)
    assert bright_pixel(out["image"], LEFT_WRIST) is None  # (4, 6) -> (11, 21): below a 21-row image
    assert out["keypoints"][LEFT_WRIST, 2] == 0
    for joint in (RIGHT_WRIST, NOSE):
        np.testing.assert_allclose(out["keypoints"][joint, :2], bright_pixel(out["image"], joint), atol=1e-3)
        assert out["keypoints"][joint, 2] == sample["keypoints"][joint, 2]


# ------------------------------------------------------------------------------------------ any symmetry


def test_every_square_symmetry_swaps_exactly_when_the_pixels_are_mirrored():
    """D4 draws one of the 8 symmetries of the square (4 of them reflections); the pixels decide which."""
    size = 15
    keypoints = [[3, 4, 2], [11, 2, 2], [6, 12, 1]]
    sample = marked_sample(size, size, keypoints)
    augment = build_augmentation([{"D4": {"p": 1.0}}], target="keypoints", flip_pairs=FLIP_PAIRS)
    seen = set()
    for seed in range(64):
        out = augment(sample, seed)
        mirrored = mirrored_by_pixels(sample["image"], out["image"])
        assert out["meta"]["mirrored"] is mirrored, seed
        source_of = {LEFT_WRIST: RIGHT_WRIST, RIGHT_WRIST: LEFT_WRIST, NOSE: NOSE} if mirrored else \
            {LEFT_WRIST: LEFT_WRIST, RIGHT_WRIST: RIGHT_WRIST, NOSE: NOSE}
        for slot, joint in source_of.items():
            np.testing.assert_allclose(out["keypoints"][slot, :2], bright_pixel(out["image"], joint), atol=1e-3)
            assert out["keypoints"][slot, 2] == keypoints[joint][2]
        seen.add((mirrored, out["image"].tobytes()))
    assert len(seen) == 8 and sum(m for m, _ in seen) == 4  # all symmetries drawn, half of them reflections


def test_keypoint_augmentation_is_seeded():
    sample = marked_sample(21, 31, [[4, 6, 2], [20, 15, 1], [9, 3, 2]])
    augment = build_augmentation([{"Affine": {"rotate": [-40, 40], "p": 1.0}}, {"HorizontalFlip": {"p": 0.5}}],
                                 target="keypoints", flip_pairs=FLIP_PAIRS)
    first, again = augment(sample, 11), augment(sample, 11)
    np.testing.assert_array_equal(first["keypoints"], again["keypoints"])
    np.testing.assert_array_equal(first["image"], again["image"])
    assert first["meta"] == again["meta"]
    assert len({augment(sample, seed)["meta"]["mirrored"] for seed in range(16)}) == 2


@pytest.mark.usefixtures("private_cache")
def test_mirror_detection_raises_no_numpy_deprecation_and_swaps_joints():
    """The mirror check used ``np.cross`` of 2-vectors, deprecated in NumPy 2 (a warning on every pose sample)."""
    image = np.zeros((20, 30, 3), np.uint8)
    sample = {"image": image, "keypoints": np.array([[3, 4, 2], [25, 10, 1]], np.float32)}
    for transforms, mirrored in (([{"HorizontalFlip": {"p": 1.0}}], True), ([{"Transpose": {"p": 1.0}}], True),
                                 ([{"Rotate": {"limit": [90, 90], "p": 1.0}}], False)):
        augment = build_augmentation(transforms, target="keypoints", flip_pairs=[(0, 1)])
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            out = augment(sample, 0)
        assert out["meta"]["mirrored"] is mirrored, transforms
    # a horizontal flip by hand: x -> W - 1 - x, and the two joints trade slots
    flipped = build_augmentation([{"HorizontalFlip": {"p": 1.0}}], target="keypoints", flip_pairs=[(0, 1)])(sample, 0)
    np.testing.assert_allclose(flipped["keypoints"], [[30 - 1 - 25, 10, 1], [30 - 1 - 3, 4, 2]])
