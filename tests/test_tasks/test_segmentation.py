"""Segmentation task: confusion-matrix metrics, losses, pictures, against independent numpy references."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

import densevision  # noqa: F401  (backend and environment)
import keras
import tensorflow as tf
from densevision.visualization import segmentation as visualize
from densevision.recipes import LossSection
from densevision.registry import LOSSES, TASKS
from densevision.tasks import losses
from densevision.tasks.segmentation import (
    ConfusionMatrixIoU,
    SegmentationTask,
    confusion_counts,
    confusion_metrics,
)

NUM_CLASSES = 4
IGNORE = 255
NAMES = ["sky", "road", "car", "tree"]
PALETTE = np.array([[10, 20, 30], [40, 50, 60], [70, 80, 90], [100, 110, 120]], np.uint8)
INFO = {"class_names": NAMES, "num_classes": NUM_CLASSES, "ignore_label": IGNORE, "palette": PALETTE}


def make_task(loss_section=None, info=INFO):
    return SegmentationTask(SimpleNamespace(loss=loss_section), dict(info))


def random_batch(rng, batch=2, height=6, width=5, classes=NUM_CLASSES, ignore_fraction=0.2, present=None):
    """Labels drawn from ``present`` classes (default all) with some ignore pixels, and random logits."""
    present = np.arange(classes) if present is None else np.asarray(present)
    labels = rng.choice(present, size=(batch, height, width)).astype(np.int32)
    labels[rng.random(labels.shape) < ignore_fraction] = IGNORE
    logits = rng.normal(size=(batch, height, width, classes)).astype(np.float32)
    return labels, logits


def numpy_confusion(labels, logits, classes=NUM_CLASSES, ignore=IGNORE):
    """Reference: loop over pixels."""
    predictions = logits.argmax(-1)
    matrix = np.zeros((classes, classes), np.int64)
    for truth, guess in zip(labels.ravel(), predictions.ravel()):
        if truth != ignore:
            matrix[truth, guess] += 1
    return matrix


def numpy_log_softmax(logits):
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


# ------------------------------------------------------------------------------------------ confusion matrix


def test_confusion_counts_match_numpy_with_ignore_and_absent_classes():
    rng = np.random.default_rng(0)
    # batch 2 lacks classes 0 and 3 entirely
    batches = [random_batch(rng), random_batch(rng, present=[1, 2]), random_batch(rng, ignore_fraction=0.6)]
    summed = np.zeros((NUM_CLASSES, NUM_CLASSES), np.int64)
    for labels, logits in batches:
        counts = confusion_counts(labels, logits, NUM_CLASSES, IGNORE).numpy()
        np.testing.assert_array_equal(counts, numpy_confusion(labels, logits))
        summed += counts
    all_labels = np.concatenate([b[0] for b in batches])
    all_logits = np.concatenate([b[1] for b in batches])
    np.testing.assert_array_equal(summed, numpy_confusion(all_labels, all_logits))
    assert summed.sum() == np.count_nonzero(all_labels != IGNORE)


def test_confusion_counts_accept_label_predictions():
    labels = np.array([[[0, 1, 2, IGNORE]]])
    predictions = np.array([[[0, 2, 2, 1]]])
    counts = confusion_counts(labels, predictions, 3, IGNORE).numpy()
    expected = np.zeros((3, 3))
    expected[0, 0] = expected[1, 2] = expected[2, 2] = 1
    np.testing.assert_array_equal(counts, expected)


def test_metrics_on_a_hand_worked_matrix():
    # rows truth, columns prediction; class 2 is neither present nor predicted
    confusion = np.array([[2, 1, 0], [0, 3, 0], [0, 0, 0]])
    metrics = confusion_metrics(confusion)
    assert metrics["iou"][0] == pytest.approx(2 / 3)  # 2 / (3 + 2 - 2)
    assert metrics["iou"][1] == pytest.approx(3 / 4)  # 3 / (3 + 4 - 3)
    assert math.isnan(metrics["iou"][2])
    assert metrics["miou"] == pytest.approx((2 / 3 + 3 / 4) / 2)  # class 2 skipped, not counted as 0
    assert metrics["global_accuracy"] == pytest.approx(5 / 6)
    assert metrics["mean_class_accuracy"] == pytest.approx((2 / 3 + 1) / 2)


def test_predicted_but_absent_class_counts_as_zero_iou():
    confusion = np.array([[1, 1, 0], [0, 2, 0], [0, 0, 0]])
    confusion[0, 2] = 1  # class 2 predicted once, never present: IoU 0, enters the mean
    metrics = confusion_metrics(confusion)
    assert metrics["iou"][2] == 0.0
    assert metrics["miou"] == pytest.approx((1 / 3 + 2 / 3 + 0) / 3)


def test_task_metric_results_per_class_and_miou_match_numpy():
    rng = np.random.default_rng(1)
    task = make_task()
    batches = [random_batch(rng), random_batch(rng, present=[0, 1])]
    sums = sum(task.metric_sums({"mask": labels}, logits)["confusion"].numpy().astype(np.int64)
               for labels, logits in batches)
    results = task.metric_results({"confusion": sums})
    reference = numpy_confusion(np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))
    tp = np.diag(reference).astype(float)
    union = reference.sum(0) + reference.sum(1) - tp
    assert list(results["per_class_iou"]) == NAMES
    for index, name in enumerate(NAMES):
        assert results["per_class_iou"][name] == pytest.approx(tp[index] / union[index])
    assert results["miou"] == pytest.approx(np.mean(tp / union))
    assert results["global_accuracy"] == pytest.approx(tp.sum() / reference.sum())
    assert results["mean_class_accuracy"] == pytest.approx(np.mean(tp / reference.sum(1)))


def test_void_class_inside_the_label_range_is_excluded():
    # a dataset whose void is class 0 of its 3 outputs
    task = make_task(info={"class_names": ["void", "a", "b"], "ignore_label": 0})
    labels = np.array([[[0, 1, 1, 2]]])
    predictions = np.array([[[1, 1, 0, 2]]])  # a pixel of class 1 predicted as void: an error for class 1
    results = task.metric_results({"confusion": task.metric_sums({"mask": labels}, predictions)["confusion"].numpy()})
    assert list(results["per_class_iou"]) == ["a", "b"]
    assert results["per_class_iou"]["a"] == pytest.approx(1 / 2)
    assert results["per_class_iou"]["b"] == pytest.approx(1.0)
    assert results["global_accuracy"] == pytest.approx(2 / 3)


def test_keras_metric_streams_like_numpy_and_serialises():
    rng = np.random.default_rng(2)
    metric = ConfusionMatrixIoU(NUM_CLASSES, IGNORE)
    batches = [random_batch(rng), random_batch(rng, present=[2, 3])]
    for labels, logits in batches:
        metric.update_state(labels, logits)
    reference = confusion_metrics(
        numpy_confusion(np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches]))
    )
    assert float(metric.result()) == pytest.approx(reference["miou"], rel=1e-6)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(metric))
    assert isinstance(clone, ConfusionMatrixIoU)
    assert (clone.num_classes, clone.ignore_label, clone.name) == (NUM_CLASSES, IGNORE, "miou")
    metric.reset_state()
    assert float(metric.result()) == 0.0


# ------------------------------------------------------------------------------------------------- losses


def numpy_cross_entropy(labels, logits, weights=None, smoothing=0.0):
    log_probs = numpy_log_softmax(logits.astype(np.float64))
    valid = labels != IGNORE
    safe = np.where(valid, labels, 0)
    nll = -np.take_along_axis(log_probs, safe[..., None], -1)[..., 0]
    nll = (1 - smoothing) * nll + smoothing * -log_probs.mean(-1)
    w = (np.ones(NUM_CLASSES) if weights is None else np.asarray(weights))[safe] * valid
    return (nll * w).sum((1, 2)) / w.sum((1, 2))


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_with_ignore_matches_numpy(smoothing):
    labels, logits = random_batch(np.random.default_rng(3), batch=3)
    loss = LOSSES.get("cross_entropy")(label_smoothing=smoothing)(labels, logits, IGNORE).numpy()
    assert loss.shape == (3,)
    np.testing.assert_allclose(loss, numpy_cross_entropy(labels, logits, smoothing=smoothing), rtol=1e-5)


def test_weighted_cross_entropy_normalises_by_the_sum_of_weights():
    labels, logits = random_batch(np.random.default_rng(4), batch=2)
    weights = [0.5, 2.0, 1.0, 4.0]
    loss = losses.cross_entropy(class_weights=weights)(labels, logits, IGNORE).numpy()
    np.testing.assert_allclose(loss, numpy_cross_entropy(labels, logits, weights=weights), rtol=1e-5)
    # PyTorch convention by hand on one example of two pixels: (w0*l0 + w1*l1) / (w0 + w1)
    two = np.array([[[0, 1]]])
    two_logits = np.array([[[[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]], np.float32)
    l0, l1 = -np.log(np.exp(2) / (np.exp(2) + 3)), np.log(4.0)
    expected = (0.5 * l0 + 2.0 * l1) / 2.5
    got = losses.cross_entropy(class_weights=weights)(two, two_logits, IGNORE).numpy()
    assert got[0] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("weights", [None, [1.0, 3.0, 0.5, 2.0]])
def test_focal_with_gamma_zero_is_cross_entropy(weights):
    labels, logits = random_batch(np.random.default_rng(5))
    focal = losses.focal(gamma=0.0, class_weights=weights)(labels, logits, IGNORE).numpy()
    ce = losses.cross_entropy(class_weights=weights)(labels, logits, IGNORE).numpy()
    np.testing.assert_allclose(focal, ce, rtol=1e-6)


def test_focal_matches_numpy():
    labels, logits = random_batch(np.random.default_rng(6))
    log_probs = numpy_log_softmax(logits.astype(np.float64))
    valid = labels != IGNORE
    log_pt = np.take_along_axis(log_probs, np.where(valid, labels, 0)[..., None], -1)[..., 0]
    pixel = -((1 - np.exp(log_pt)) ** 2) * log_pt
    expected = (pixel * valid).sum((1, 2)) / valid.sum((1, 2))
    np.testing.assert_allclose(losses.focal(gamma=2.0)(labels, logits, IGNORE).numpy(), expected, rtol=1e-5)


def test_dice_is_near_zero_on_a_perfect_prediction_and_matches_numpy_otherwise():
    rng = np.random.default_rng(7)
    labels, _ = random_batch(rng)
    perfect = 30.0 * np.eye(NUM_CLASSES, dtype=np.float32)[np.where(labels == IGNORE, 0, labels)]
    assert np.all(losses.dice()(labels, perfect, IGNORE).numpy() < 1e-4)

    labels, logits = random_batch(rng)
    probs = np.exp(numpy_log_softmax(logits.astype(np.float64)))
    valid = (labels != IGNORE)[..., None]
    one_hot = np.eye(NUM_CLASSES)[np.where(labels == IGNORE, 0, labels)] * valid
    probs = probs * valid
    dice_c = (2 * (probs * one_hot).sum((1, 2)) + 1.0) / (probs.sum((1, 2)) + one_hot.sum((1, 2)) + 1.0)
    np.testing.assert_allclose(losses.dice(smooth=1.0)(labels, logits, IGNORE).numpy(), 1 - dice_c.mean(-1),
                               rtol=1e-5)


@pytest.mark.parametrize("name", ["cross_entropy", "focal", "dice"])
def test_ignore_pixels_affect_neither_loss_nor_gradient(name):
    labels, logits = random_batch(np.random.default_rng(8))
    loss_fn = LOSSES.get(name)()
    changed = logits.copy()
    changed[labels == IGNORE] = 100.0 * np.random.default_rng(9).normal(size=(NUM_CLASSES,))
    np.testing.assert_allclose(loss_fn(labels, logits, IGNORE).numpy(), loss_fn(labels, changed, IGNORE).numpy(),
                               rtol=1e-6)
    variable = tf.Variable(logits)
    with tf.GradientTape() as tape:
        total = tf.reduce_sum(loss_fn(labels, variable, IGNORE))
    gradient = tape.gradient(total, variable).numpy()
    assert np.all(gradient[labels == IGNORE] == 0.0)
    assert np.any(gradient[labels != IGNORE] != 0.0)


def test_an_example_with_only_ignore_pixels_has_zero_loss_and_finite_gradient():
    labels = np.full((1, 3, 3), IGNORE, np.int32)
    variable = tf.Variable(np.zeros((1, 3, 3, NUM_CLASSES), np.float32))
    with tf.GradientTape() as tape:
        loss = losses.cross_entropy()(labels, variable, IGNORE)
    assert loss.numpy().tolist() == [0.0]
    assert np.all(np.isfinite(tape.gradient(loss, variable).numpy()))


def test_bad_loss_options_fail_clearly():
    with pytest.raises(ValueError, match="label_smoothing"):
        losses.cross_entropy(label_smoothing=1.5)
    with pytest.raises(ValueError, match="median_frequency.*resolved"):
        losses.cross_entropy(class_weights="median_frequency")


# --------------------------------------------------------------------------------------------------- task


def test_task_loss_uses_the_recipe_loss_section():
    labels, logits = random_batch(np.random.default_rng(10))
    default = make_task().loss({"mask": labels}, logits).numpy()
    np.testing.assert_allclose(default, numpy_cross_entropy(labels, logits), rtol=1e-5)
    weights = [1.0, 2.0, 3.0, 4.0]
    weighted_task = make_task(LossSection(name="cross_entropy", class_weights=weights))
    weighted = weighted_task.loss({"mask": labels}, logits).numpy()
    np.testing.assert_allclose(weighted, numpy_cross_entropy(labels, logits, weights=weights), rtol=1e-5)
    focal = make_task(LossSection(name="focal", gamma=1.0)).loss({"mask": labels}, logits).numpy()
    assert not np.allclose(focal, default)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_task_loss_first_built_inside_a_compiled_step_is_reusable(jit_compile):
    # The engine first calls task.loss while tracing its train step; nothing from that trace may leak out.
    task = make_task(LossSection(name="cross_entropy", class_weights=[1.0, 2.0, 3.0, 4.0]))
    labels, logits = random_batch(np.random.default_rng(13))
    step = tf.function(lambda batch, x: (task.loss(batch, x), task.metric_sums(batch, x)["confusion"]),
                       jit_compile=jit_compile)
    traced_loss, traced_confusion = step({"mask": labels}, logits)
    np.testing.assert_allclose(traced_loss.numpy(), task.loss({"mask": labels}, logits).numpy(), rtol=1e-5)
    np.testing.assert_array_equal(traced_confusion.numpy(), numpy_confusion(labels, logits))


def test_class_weights_must_match_the_classes():
    task = make_task(LossSection(name="focal", class_weights=[1.0, 2.0]))
    labels, logits = random_batch(np.random.default_rng(14))
    with pytest.raises(ValueError, match="loss.class_weights: expected 4 weights.*got 2"):
        task.loss({"mask": labels}, logits)


def test_task_resolves_median_frequency_weights_from_the_training_split(monkeypatch):
    class_weights = pytest.importorskip("densevision.data.class_weights", reason="data.class_weights not landed")
    calls = []

    def fake_weights(source, num_classes, ignore_label, cache_dir=None):
        calls.append((source, num_classes, ignore_label))
        return [1.0, 2.0, 3.0, 4.0]

    monkeypatch.setattr(class_weights, "median_frequency_weights", fake_weights)
    from densevision.registry import DATASETS

    monkeypatch.setitem(DATASETS._items, "fake_split_source", lambda root, split, **kw: ("source", root, split))
    recipe = SimpleNamespace(
        loss=LossSection(name="cross_entropy", class_weights="median_frequency"),
        data=SimpleNamespace(name="fake_split_source", root="/r", train_split="train", kwargs=lambda: {}),
    )
    task = SegmentationTask(recipe, dict(INFO))
    labels, logits = random_batch(np.random.default_rng(11))
    np.testing.assert_allclose(task.loss({"mask": labels}, logits).numpy(),
                               numpy_cross_entropy(labels, logits, weights=[1, 2, 3, 4]), rtol=1e-5)
    task.loss({"mask": labels}, logits)
    assert calls == [(("source", "/r", "train"), NUM_CLASSES, IGNORE)]  # resolved once


def test_task_interface_values():
    task = TASKS.get("segmentation")(None, dict(INFO))
    assert task.default_monitor == ("miou", "max")
    assert task.example_spec == {"image": tf.TensorSpec((None, None, 3), tf.float32),
                                 "mask": tf.TensorSpec((None, None), tf.int32)}
    with pytest.raises(ValueError, match="palette"):
        make_task(info={**INFO, "palette": PALETTE[:2]})


def test_pictures_show_image_truth_and_prediction_in_the_palette():
    task = make_task()
    images = np.random.default_rng(12).integers(0, 256, (2, 4, 5, 3)).astype(np.float32)
    targets = np.array([[[0, 1, 2, 3, IGNORE]] * 4] * 2)
    logits = np.eye(NUM_CLASSES, dtype=np.float32)[np.full((2, 4, 5), 2)]
    pictures = task.pictures({"image": images, "mask": targets}, logits)
    assert len(pictures) == 2
    picture = pictures[0]
    assert picture.dtype == np.uint8 and picture.shape == (4, 5 * 3 + 2 * 4, 3)
    np.testing.assert_array_equal(picture[:, :5], images[0].astype(np.uint8))
    truth = picture[:, 9:14]
    np.testing.assert_array_equal(truth[0, :4], PALETTE[[0, 1, 2, 3]])
    np.testing.assert_array_equal(truth[0, 4], visualize.VOID_COLOUR)
    np.testing.assert_array_equal(picture[:, 18:23], np.broadcast_to(PALETTE[2], (4, 5, 3)))


def test_overlay_blends_and_leaves_void_untouched():
    image = np.full((1, 2, 3), 100, np.uint8)
    mask = np.array([[1, IGNORE]])
    blended = visualize.overlay(image, mask, PALETTE, alpha=0.5, ignore_label=IGNORE)
    np.testing.assert_array_equal(blended[0, 0], np.rint((100 + PALETTE[1].astype(float)) / 2))
    np.testing.assert_array_equal(blended[0, 1], [100, 100, 100])


def test_augmenter_pads_masks_with_the_ignore_label():
    pytest.importorskip("densevision.data.augment", reason="data.augment not landed")
    task = make_task()
    augment = task.augmenter([{"PadIfNeeded": {"min_height": 6, "min_width": 4, "position": "top_left"}}], True)
    meta = {"name": "x", "index": 0}
    out = augment({"image": np.zeros((4, 4, 3), np.uint8), "mask": np.ones((4, 4), np.int32), "meta": meta}, 0)
    image, mask = out["image"], out["mask"]
    assert image.shape == (6, 4, 3) and out["meta"] == meta
    assert mask.shape == (6, 4) and mask.dtype == np.int32
    assert np.all(mask[:4] == 1) and np.all(mask[4:] == IGNORE)


def test_write_report_and_table(tmp_path):
    task = make_task()
    confusion = np.array([[3, 1, 0, 0], [0, 2, 0, 0], [0, 0, 0, 0], [1, 0, 0, 4]])
    results = task.metric_results({"confusion": confusion})
    table = SegmentationTask.format_results(results)
    assert "car" in table and "n/a" in table  # class 2 (car) never seen
    assert f"{results['miou']:.4f}" in table
    image = np.zeros((4, 5, 3), np.uint8)
    samples = [("frame_01", {"image": image[None].astype(np.float32), "mask": np.zeros((1, 4, 5), np.int32)},
                np.zeros((1, 4, 5, NUM_CLASSES), np.float32))]
    written = task.write_report(results, {"confusion": confusion}, tmp_path, samples)
    assert {p.name for p in written} == {"per_class_iou.txt", "confusion_matrix.png", "frame_01.png"}
    import cv2

    assert cv2.imread(str(tmp_path / "confusion_matrix.png")) is not None
    assert cv2.imread(str(tmp_path / "overlays" / "frame_01.png")).shape == (4, 10 + 4, 3)


def test_make_demo_data_points_the_recipe_at_a_camvid_layout(tmp_path):
    pytest.importorskip("densevision.data.demo_streets", reason="data.demo_streets not landed")
    from densevision.data.camvid import CamVid

    overrides = SegmentationTask.make_demo_data(str(tmp_path))
    assert overrides == {"data.root": str(tmp_path), "data.name": "camvid"}
    assert len(CamVid(str(tmp_path), "val")) > 0
