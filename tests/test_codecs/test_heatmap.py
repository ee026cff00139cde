"""Heatmap codec: encode/decode round trips, the pixel-centre convention, target weights and the flip test."""

from __future__ import annotations

import math

import numpy as np
import pytest

import densevision  # noqa: F401  (backend and environment)
import tensorflow as tf
from densevision.codecs import HeatmapCodec, flip_back, to_image, to_image_tf
from densevision.data.topdown import box_to_center_scale, crop_affine, transform_points
from densevision.registry import CODECS


def random_crop_keypoints(rng, codec, count, margin_cells):
    """``(count, 3)`` visible keypoints in crop pixels whose heatmap cells keep ``margin_cells`` from the border."""
    (height, width), (sy, sx) = codec.heatmap_size, codec.stride
    u = rng.uniform(margin_cells, width - 1 - margin_cells, count)
    v = rng.uniform(margin_cells, height - 1 - margin_cells, count)
    # invert u = (x + 0.5) / sx - 0.5 by hand
    x, y = (u + 0.5) * sx - 0.5, (v + 0.5) * sy - 0.5
    return np.stack([x, y, np.full(count, 2.0)], axis=1).astype(np.float32)


# ------------------------------------------------------------------------------------------------ encode


def test_registered_as_heatmap_codec():
    assert CODECS.get("heatmap") is HeatmapCodec


def test_encode_places_the_peak_by_the_aligned_convention():
    codec = HeatmapCodec((64, 48), sigma=2.0)  # 16 x 12 heatmap, stride 4
    # x = 5.5 -> u = (5.5 + 0.5) * 12 / 48 - 0.5 = 1.0;  y = 9.5 -> v = (9.5 + 0.5) * 16 / 64 - 0.5 = 2.0
    heatmaps, weights = codec.encode(np.array([[5.5, 9.5, 2.0]]))
    assert heatmaps.shape == (16, 12, 1) and heatmaps.dtype == np.float32
    assert weights.tolist() == [1.0]
    assert heatmaps[2, 1, 0] == pytest.approx(1.0)
    assert np.unravel_index(heatmaps[..., 0].argmax(), (16, 12)) == (2, 1)
    # one cell away: exp(-1 / (2 * 2^2)) = exp(-0.125) = 0.8825; diagonal exp(-2 / 8) = 0.7788
    assert heatmaps[2, 2, 0] == pytest.approx(math.exp(-0.125), rel=1e-6)
    assert heatmaps[3, 2, 0] == pytest.approx(math.exp(-0.25), rel=1e-6)
    # sub-cell position: x = 6.5 -> u = 1.25; cells 1 and 2 are 0.25 and 0.75 away
    heatmaps, _ = codec.encode(np.array([[6.5, 9.5, 2.0]]))
    assert heatmaps[2, 1, 0] == pytest.approx(math.exp(-0.25 ** 2 / 8), rel=1e-6)
    assert heatmaps[2, 2, 0] == pytest.approx(math.exp(-0.75 ** 2 / 8), rel=1e-6)


def test_average_pooling_geometry_agrees_with_the_convention():
    """A blob at crop pixel x, averaged over 4x4 blocks (a stride-4 network's geometry), is centred on
    u = (x + 0.5) / 4 - 0.5: the mass centroid of the pooled map, computed without the codec. (The blob is wide,
    4 px, so its mass spreads evenly over the four pixel phases of a block.)"""
    codec = HeatmapCodec((64, 64))
    x0, y0 = 21.3, 30.8
    grid_y, grid_x = np.mgrid[0:64, 0:64]
    blob = np.exp(-((grid_x - x0) ** 2 + (grid_y - y0) ** 2) / (2 * 4.0 ** 2))
    pooled = blob.reshape(16, 4, 16, 4).mean(axis=(1, 3))
    cells_y, cells_x = np.mgrid[0:16, 0:16]
    centroid = np.array([(pooled * cells_x).sum(), (pooled * cells_y).sum()]) / pooled.sum()
    np.testing.assert_allclose(centroid, codec.crop_to_heatmap(np.array([x0, y0])), atol=1e-6)


def test_target_weights_for_unlabelled_and_outside_joints():
    codec = HeatmapCodec((64, 48))  # crop x in [-0.5, 47.5), y in [-0.5, 63.5)
    keypoints = np.array([
        [20.0, 30.0, 2.0],   # visible: target
        [20.0, 30.0, 1.0],   # labelled but occluded: target too
        [20.0, 30.0, 0.0],   # not labelled
        [-3.0, 30.0, 2.0],   # left of the crop
        [20.0, 64.0, 2.0],   # below the crop
        [-0.5, -0.5, 2.0],   # the crop's top-left corner: u = v = -0.5, on the heatmap
        [47.5, 30.0, 2.0],   # the crop's right edge: u = 11.5 = w - 0.5, just off
        [np.nan, 3.0, 2.0],  # broken annotation
    ], np.float32)
    heatmaps, weights = codec.encode(keypoints)
    assert weights.tolist() == [1, 1, 0, 0, 0, 1, 0, 0]
    for joint in (2, 3, 4, 6, 7):
        assert not heatmaps[..., joint].any(), joint
    np.testing.assert_array_equal(heatmaps[..., 0], heatmaps[..., 1])
    assert np.isfinite(heatmaps).all()
    # (J, 2) input: every joint labelled
    _, weights = codec.encode(keypoints[:2, :2])
    assert weights.tolist() == [1, 1]


def test_bad_arguments_name_the_problem():
    with pytest.raises(ValueError, match="multiple of 4"):
        HeatmapCodec((65, 48))
    with pytest.raises(ValueError, match="sigma"):
        HeatmapCodec((64, 48), sigma=0)
    codec = HeatmapCodec((64, 48))
    with pytest.raises(ValueError, match=r"\(J, 3\)"):
        codec.encode(np.zeros((4, 4)))
    with pytest.raises(ValueError, match="16x12"):
        codec.decode(np.zeros((1, 8, 8, 3)))


# ------------------------------------------------------------------------------------------------ decode


@pytest.mark.parametrize("sigma", [1.0, 2.0])
@pytest.mark.parametrize("input_size", [(256, 256), (256, 192)])  # 64x64 and 64x48 heatmaps
def test_round_trip_within_a_quarter_cell(sigma, input_size):
    rng = np.random.default_rng(int(sigma * 10) + input_size[1])
    codec = HeatmapCodec(input_size, sigma=sigma)
    keypoints = random_crop_keypoints(rng, codec, 24, margin_cells=1.0)
    heatmaps, weights = codec.encode(keypoints)
    assert weights.all()
    decoded, scores = codec.decode(heatmaps[None])
    cell_error = np.abs(codec.crop_to_heatmap(decoded[0]) - codec.crop_to_heatmap(keypoints))
    # argmax is the nearest cell (offset f in [-0.5, 0.5]); the quarter step leaves |f - 0.25 sign(f)| <= 0.25
    assert cell_error.max() <= 0.25 + 1e-4
    assert 0.05 < cell_error.mean() < 0.2  # uniform offsets: mean 0.125; a decoder stuck on cells would give 0.25
    # the score is the peak value: exp(-d^2 / 2 sigma^2) with d <= 0.5 * sqrt(2) cells
    assert (scores >= math.exp(-0.5 / (2 * sigma ** 2)) - 1e-6).all() and (scores <= 1.0).all()


@pytest.mark.parametrize("input_size", [(256, 256), (256, 192)])
def test_unbiased_decoding_is_almost_exact_away_from_the_border(input_size):
    rng = np.random.default_rng(7)
    codec = HeatmapCodec(input_size, sigma=2.0, unbiased=True)
    assert codec.blur_kernel_size == 11  # MMPose's DARK setting for sigma 2
    keypoints = random_crop_keypoints(rng, codec, 16, margin_cells=8.0)
    heatmaps, _ = codec.encode(keypoints)
    decoded, _ = codec.decode(heatmaps[None])
    cell_error = np.abs(codec.crop_to_heatmap(decoded[0]) - codec.crop_to_heatmap(keypoints))
    assert cell_error.max() < 0.01


def test_decode_scores_and_shapes():
    codec = HeatmapCodec((32, 32))
    heatmaps = np.zeros((2, 8, 8, 3), np.float32)
    heatmaps[0, 3, 5, 0] = 0.7
    heatmaps[1, ..., 1] = -1.0
    heatmaps[1, 6, 2, 1] = -0.2  # maximum below zero: no peak
    keypoints, scores = codec.decode(heatmaps)
    assert keypoints.shape == (2, 3, 2) and scores.shape == (2, 3)
    assert keypoints.dtype == np.float32 and scores.dtype == np.float32
    np.testing.assert_allclose(scores, [[0.7, 0, 0], [0, 0, 0]], atol=1e-7)
    # the lone peak in cell (row 3, col 5) has two equal (zero) neighbours: no step; x = (5 + 0.5) * 4 - 0.5 = 21.5
    np.testing.assert_allclose(keypoints[0, 0], [21.5, 13.5])
    # argmax of the negative map is still reported
    np.testing.assert_allclose(keypoints[1, 1], [(2 + 0.5) * 4 - 0.5, (6 + 0.5) * 4 - 0.5])


def test_quarter_step_by_hand():
    codec = HeatmapCodec((32, 32))
    heatmaps = np.zeros((1, 8, 8, 1), np.float32)
    heatmaps[0, 4, 4, 0] = 1.0
    heatmaps[0, 4, 5, 0] = 0.5  # right neighbour higher: +0.25 in u
    heatmaps[0, 3, 4, 0] = 0.3  # upper neighbour higher: -0.25 in v
    keypoints, _ = codec.decode(heatmaps)
    # u = 4.25 -> x = 4.75 * 4 - 0.5 = 18.5;  v = 3.75 -> y = 4.25 * 4 - 0.5 = 16.5
    np.testing.assert_allclose(keypoints[0, 0], [18.5, 16.5])


@pytest.mark.parametrize("unbiased", [False, True])
def test_graph_decoding_matches_numpy(unbiased):
    rng = np.random.default_rng(3)
    codec = HeatmapCodec((64, 48), sigma=2.0, unbiased=unbiased)
    targets = np.stack([codec.encode(random_crop_keypoints(rng, codec, 5, 0.0))[0] for _ in range(3)])
    noisy = (targets + rng.normal(0, 0.05, targets.shape)).astype(np.float32)
    noisy[1, ..., 2] = 0.0  # a flat map
    noisy[2, ..., 4] = -0.5  # a negative map
    decode = tf.function(codec.decode_tf, input_signature=[tf.TensorSpec((None, 16, 12, None), tf.float32)])
    for heatmaps in (targets, noisy):
        expected_points, expected_scores = codec.decode(heatmaps)
        points, scores = decode(tf.constant(heatmaps))
        np.testing.assert_allclose(points.numpy(), expected_points, atol=1e-3 if unbiased else 1e-5)
        np.testing.assert_allclose(scores.numpy(), expected_scores, atol=1e-6)


def test_graph_decoding_accepts_half_precision_outputs():
    codec = HeatmapCodec((32, 32))
    heatmaps = np.stack([codec.encode(np.array([[10.2, 20.9, 2], [3.3, 4.4, 2]]))[0]])
    points, _ = codec.decode_tf(tf.cast(heatmaps, tf.bfloat16))
    np.testing.assert_allclose(points.numpy(), codec.decode(heatmaps)[0], atol=1e-5)


def test_graph_decoding_in_a_saved_model(tmp_path):
    codec = HeatmapCodec((32, 32))
    module = tf.Module()
    module.decode = tf.function(lambda heatmaps: codec.decode_tf(heatmaps),
                                input_signature=[tf.TensorSpec((None, 8, 8, 2), tf.float32)])
    tf.saved_model.save(module, str(tmp_path / "decoder"))
    restored = tf.saved_model.load(str(tmp_path / "decoder"))
    heatmaps = np.stack([codec.encode(np.array([[10.2, 20.9, 2], [3.3, 4.4, 2]]))[0]])
    points, scores = restored.decode(tf.constant(heatmaps))
    expected_points, expected_scores = codec.decode(heatmaps)
    np.testing.assert_allclose(points.numpy(), expected_points, atol=1e-5)
    np.testing.assert_allclose(scores.numpy(), expected_scores, atol=1e-6)


# ------------------------------------------------------------------------------------------------ original image


@pytest.mark.parametrize("rotation", [0.0, 30.0, -75.0])
def test_round_trip_through_the_crop_affine(rotation):
    rng = np.random.default_rng(11)
    input_size = (256, 192)
    codec = HeatmapCodec(input_size, sigma=2.0)
    box = [140.0, 60.0, 90.0, 210.0]  # x, y, w, h in a 480 x 640 image
    center, scale = box_to_center_scale(box, input_size)
    affine = crop_affine(center, scale, input_size, rotation=rotation)
    # joints inside the box's central part, so they stay inside the rotated crop
    original = np.stack([rng.uniform(160, 210, 17), rng.uniform(90, 240, 17), np.full(17, 2.0)], axis=1)
    crop = transform_points(original, affine)
    heatmaps, weights = codec.encode(crop)
    assert weights.all()
    decoded, _ = codec.decode(heatmaps[None])
    restored = to_image(decoded, affine[None])
    cell_in_image = scale[0] / codec.heatmap_size[1]  # image pixels per heatmap cell (isotropic crop)
    assert scale[0] / scale[1] == pytest.approx(192 / 256)
    error = np.linalg.norm(restored[0] - original[:, :2], axis=1)
    assert error.max() <= 0.5 * cell_in_image
    np.testing.assert_allclose(to_image_tf(decoded, affine[None]).numpy(), restored, atol=1e-3)


def test_to_image_keeps_extra_columns_and_checks_shapes():
    affine = crop_affine([50.0, 60.0], [40.0, 40.0], (20, 20), rotation=90.0)
    points = np.array([[[3.0, 4.0, 0.9]]], np.float32)
    back = to_image(points, affine[None])
    assert back.shape == (1, 1, 3) and back[0, 0, 2] == pytest.approx(0.9)
    np.testing.assert_allclose(transform_points(back[0], affine)[:, :2], points[0, :, :2], atol=1e-4)
    with pytest.raises(ValueError, match="affines"):
        to_image(points, affine)


# ------------------------------------------------------------------------------------------------ flip test
# A toy "network": a fixed Gaussian blur followed by 4x4 average pooling, on an input with one evidence channel per
# joint. It is translation-equivariant and mirror-symmetric, and its geometry is a stride-4 network's, so whatever
# shift flip_back needs for it is the shift a real network trained on our targets needs.

SIZE = 64
JOINTS = 5  # nose, left shoulder, right shoulder, left hip, right hip
FLIP_PAIRS = [[1, 2], [3, 4]]
_TAPS = np.exp(-np.arange(-3, 4) ** 2 / (2 * 1.2 ** 2))
_KERNEL = (np.outer(_TAPS, _TAPS) / _TAPS.sum() ** 2).astype(np.float32)[:, :, None, None] * np.ones((1, 1, JOINTS, 1),
                                                                                                   np.float32)


def evidence_image(keypoints, spread=1.5):
    """``(SIZE, SIZE, J)``: a Gaussian blob per joint at its sub-pixel position (pixel centres at integers)."""
    grid_y, grid_x = np.mgrid[0:SIZE, 0:SIZE]
    return np.stack([np.exp(-((grid_x - x) ** 2 + (grid_y - y) ** 2) / (2 * spread ** 2)) for x, y in keypoints],
                    axis=-1).astype(np.float32)


def mirror_input(images):
    """What a mirrored person looks like to a joint detector: flipped left-right, left and right joints swapped."""
    order = list(range(JOINTS))
    for left, right in FLIP_PAIRS:
        order[left], order[right] = right, left
    return np.ascontiguousarray(images[:, :, ::-1][..., order])


def toy_network(images):
    blurred = tf.nn.depthwise_conv2d(images, _KERNEL, [1, 1, 1, 1], "SAME")
    return tf.nn.avg_pool2d(blurred, 4, 4, "VALID").numpy()


def test_flip_back_of_a_symmetric_input_reproduces_the_original():
    middle = (SIZE - 1) / 2  # the mirror axis: x -> SIZE - 1 - x
    # a person facing the camera: its left joints on the image's right, mirror images of the right joints
    pose = [[middle, 10.3], [middle + 9.7, 20.2], [middle - 9.7, 20.2], [middle + 6.2, 44.6], [middle - 6.2, 44.6]]
    image = evidence_image(pose)[None]
    np.testing.assert_allclose(mirror_input(image), image, atol=1e-6)  # the input is symmetric
    original = toy_network(image)
    mirrored = toy_network(mirror_input(image))
    np.testing.assert_allclose(flip_back(mirrored, FLIP_PAIRS), original, atol=1e-6)
    # HRNet's one-cell shift moves every map a cell to the right: clearly different
    assert np.abs(flip_back(mirrored, FLIP_PAIRS, shift=1) - original).max() > 0.1 * original.max()
    # the TF spelling gives the same maps
    np.testing.assert_allclose(flip_back(tf.constant(mirrored), FLIP_PAIRS).numpy(), original, atol=1e-6)
    np.testing.assert_allclose(flip_back(tf.constant(mirrored), FLIP_PAIRS, shift=1).numpy(),
                               flip_back(mirrored, FLIP_PAIRS, shift=1), atol=1e-6)


def test_flip_averaged_decoding_is_best_without_shift():
    rng = np.random.default_rng(5)
    truth = rng.uniform(8, SIZE - 8, (12, JOINTS, 2))
    images = np.stack([evidence_image(pose) for pose in truth])
    codec = HeatmapCodec((SIZE, SIZE), sigma=1.0)
    original = toy_network(images)
    mirrored = toy_network(mirror_input(images))

    def mean_error(heatmaps):
        decoded, _ = codec.decode(heatmaps)
        return np.linalg.norm(decoded - truth, axis=-1).mean()

    plain = mean_error(original)
    unshifted = mean_error((original + flip_back(mirrored, FLIP_PAIRS, shift=0)) / 2)
    shifted = mean_error((original + flip_back(mirrored, FLIP_PAIRS, shift=1)) / 2)
    # measured: plain 0.74 px, unshifted 0.74 px, shifted 2.11 px (one cell = 4 px)
    assert plain < 1.0  # the toy network's maps decode onto the truth: the codec's convention is the network's
    assert unshifted == pytest.approx(plain, abs=1e-4)
    assert shifted > unshifted + 0.8


def test_shift_one_suits_the_unaligned_convention():
    """A network whose cell u sits on pixel 4u (HRNet's u = x / stride: strided sampling without pooling) is
    mirrored 0.75 cell to the left by flip_back; shift=1 leaves 0.25 cell the other way, so there it is better."""
    rng = np.random.default_rng(9)
    truth = rng.uniform(8, SIZE - 8, (12, JOINTS, 2))
    images = np.stack([evidence_image(pose) for pose in truth])

    def strided_network(batch):
        return tf.nn.depthwise_conv2d(batch, _KERNEL, [1, 1, 1, 1], "SAME").numpy()[:, ::4, ::4]

    original, mirrored = strided_network(images), strided_network(mirror_input(images))
    codec = HeatmapCodec((SIZE, SIZE))

    def horizontal_offset(shift):  # decoded cells of flipped-back minus original maps
        back, _ = codec.decode(flip_back(mirrored, FLIP_PAIRS, shift=shift))
        there, _ = codec.decode(original)
        return float(((back - there)[..., 0] / 4).mean())

    assert horizontal_offset(0) == pytest.approx(-0.75, abs=0.1)
    assert horizontal_offset(1) == pytest.approx(0.25, abs=0.1)


def test_flip_back_checks_pairs():
    with pytest.raises(ValueError, match="outside the 3 joints"):
        flip_back(np.zeros((1, 4, 4, 3)), [[1, 5]])
