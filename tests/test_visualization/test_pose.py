"""Pose pictures: joints and links land where the keypoints are, in their colours; low scores are not drawn."""

from __future__ import annotations

import numpy as np
import pytest

from densevision.visualization.pose import (
    default_radius,
    draw_pose,
    heatmap_blend,
    side_by_side_pose,
)
from densevision.visualization.segmentation import default_palette

RED, GREEN, BLUE = (255, 0, 0), (0, 255, 0), (0, 0, 255)
YELLOW, MAGENTA = (255, 255, 0), (255, 0, 255)
SKELETON = [[0, 1], [1, 2]]
JOINT_COLOURS = [RED, GREEN, BLUE]
LINK_COLOURS = [YELLOW, MAGENTA]


def has_colour(picture, colour):
    return bool((picture == np.array(colour, np.uint8)).all(axis=-1).any())


def test_joints_and_links_in_their_colours():
    image = np.zeros((100, 120, 3), np.uint8)
    person = np.array([[20.0, 30.0, 0.9], [70.4, 30.6, 0.8], [70.0, 80.0, 0.1]])  # the third is below 0.3
    picture = draw_pose(image, person, SKELETON, JOINT_COLOURS, LINK_COLOURS, radius=3, thickness=2)
    assert picture.shape == image.shape and picture.dtype == np.uint8
    assert not image.any()  # the input is left alone
    assert tuple(picture[30, 20]) == RED
    assert tuple(picture[31, 70]) == GREEN  # sub-pixel (70.4, 30.6) rounds to column 70, row 31
    assert tuple(picture[30, 45]) == YELLOW  # middle of the drawn link 0-1
    # joint 2 is below the threshold: neither it nor its link is drawn
    assert not has_colour(picture, BLUE) and not has_colour(picture, MAGENTA)
    assert not picture[40:, :].any()
    # lowering the threshold draws both
    everything = draw_pose(image, person, SKELETON, JOINT_COLOURS, LINK_COLOURS, kpt_thr=0.05, radius=3, thickness=3)
    assert tuple(everything[80, 70]) == BLUE and tuple(everything[55, 70]) == MAGENTA


def test_several_people_nan_joints_and_default_colours():
    image = np.full((64, 64, 3), 40, np.uint8)
    people = np.array([[[10, 10, 1], [20, 10, 1], [np.nan, 5, 1]],
                       [[40, 50, 1], [50, 50, 1], [55, 55, 0]]], np.float64)
    picture = draw_pose(image, people, SKELETON)
    palette = default_palette(3)
    for x, y, joint in [(10, 10, 0), (20, 10, 1), (40, 50, 0), (50, 50, 1)]:
        assert tuple(picture[y, x]) == tuple(palette[joint])
    assert not has_colour(picture, palette[2])  # NaN and zero-score joints are skipped


def test_radius_scales_with_the_image():
    assert default_radius((256, 256)) == 2 and default_radius((480, 640)) == 3 and default_radius((1080, 1920)) == 7
    small = draw_pose(np.zeros((48, 64, 3), np.uint8), [[30, 20, 1]], [], [RED])
    large = draw_pose(np.zeros((1080, 1920, 3), np.uint8), [[900, 500, 1]], [], [RED])
    assert (small[..., 0] > 0).sum() < (large[..., 0] > 0).sum()


def test_boxes_and_track_ids():
    image = np.zeros((120, 160, 3), np.uint8)
    people = np.array([[[60, 60, 1], [80, 60, 1], [80, 90, 1]]], np.float64)
    picture = draw_pose(image, people, SKELETON, JOINT_COLOURS, LINK_COLOURS, boxes=[[40, 30, 60, 70]],
                        track_ids=[5], radius=3, thickness=3)
    box_colour = tuple(default_palette(64)[5])
    assert tuple(picture[70, 40]) == box_colour and tuple(picture[70, 100]) == box_colour  # left and right edges
    assert (picture[:30].min(axis=-1) > 200).any()  # the white id label above the box


def test_checks_name_the_problem():
    with pytest.raises(ValueError, match="outside the 3 joints"):
        draw_pose(np.zeros((8, 8, 3), np.uint8), np.zeros((3, 3)), [[0, 4]])
    with pytest.raises(ValueError, match=r"\(P, J, 3\)"):
        draw_pose(np.zeros((8, 8, 3), np.uint8), np.zeros((1, 3, 4)), [])


def test_heatmap_blend():
    image = np.full((32, 32, 3), 100, np.uint8)
    heatmaps = np.zeros((8, 8, 2), np.float32)
    heatmaps[2:5, 4:7, 1] = 1.0  # cells rows 2-4, columns 4-6 -> image pixels 8-19 x 16-27, full heat at 12-15 x 20-23
    picture = heatmap_blend(image, heatmaps, alpha=0.6)
    assert picture.shape == image.shape and picture.dtype == np.uint8
    # JET at full heat is dark red, RGB (128, 0, 0): 0.4 * 100 + 0.6 * (128, 0, 0)
    np.testing.assert_array_equal(picture[13, 21], np.rint([0.4 * 100 + 0.6 * 128, 40, 40]))
    # far from the heat the image is unchanged
    np.testing.assert_array_equal(picture[:4], image[:4])
    np.testing.assert_array_equal(picture[:, :8], image[:, :8])


def test_side_by_side_truth_and_prediction():
    image = np.zeros((60, 80, 3), np.uint8)
    info = {"skeleton": SKELETON, "joint_colors": JOINT_COLOURS, "link_colors": LINK_COLOURS}
    truth = np.array([[20, 30, 2], [50, 30, 1], [50, 50, 0]], np.float64)  # joint 2 not labelled
    prediction = np.array([[24, 34, 0.9], [50, 30, 0.2], [50, 50, 0.9]], np.float64)  # joint 1 unsure
    picture = side_by_side_pose(image, truth, prediction, info, titles=("", ""), radius=2, thickness=1)
    gap = 4
    assert picture.shape == (60, 2 * 80 + gap, 3)
    left, right = picture[:, :80], picture[:, 80 + gap:]
    assert tuple(left[30, 20]) == RED and tuple(left[30, 50]) == GREEN and not has_colour(left, BLUE)
    assert tuple(right[34, 24]) == RED and tuple(right[50, 50]) == BLUE and not has_colour(right, GREEN)
    titled = side_by_side_pose(image, truth, prediction, info)
    assert (titled[:20, :80].min(axis=-1) > 200).any()  # the white caption
