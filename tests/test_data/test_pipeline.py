"""tf.data pipeline: shapes, dtypes, epoch structure, determinism and resumption."""

from __future__ import annotations

import numpy as np
import pytest

import densevision  # noqa: F401  (environment first)
from densevision.data.augment import build_augmentation
from densevision.data.errors import DatasetError
from densevision.data.pipeline import build_dataset, steps_per_epoch

import tensorflow as tf  # noqa: E402

IMAGE = tf.TensorSpec((None, None, 3), tf.float32)
MASK_SPEC = {"image": IMAGE, "mask": tf.TensorSpec((None, None), tf.int32)}
LABEL_SPEC = {"image": IMAGE, "label": tf.TensorSpec((), tf.int32)}


class IndexSource:
    """Example ``i``: an 8x10 image filled with ``i`` and a mask filled with ``i % 5`` (or label ``i``)."""

    def __init__(self, count: int, classification: bool = False):
        self.count, self.classification = count, classification
        self.names = [f"ex{i}" for i in range(count)]

    def __len__(self):
        return self.count

    def load(self, index):
        image = np.full((8, 10, 3), index, np.uint8)
        image[0, 0] = (index, 255 - index, 7)  # channel order is kept
        if self.classification:
            return {"image": image, "label": index, "meta": {"name": self.names[index]}}
        return {"image": image, "mask": np.full((8, 10), index % 5, np.int32), "meta": {"name": self.names[index]}}


def batches(dataset, count=None):
    """``[(images, targets)]`` as numpy, whichever target the examples carry."""
    items = dataset if count is None else dataset.take(count)
    return [(b["image"].numpy(), (b["mask"] if "mask" in b else b["label"]).numpy()) for b in items]


def example_ids(images: np.ndarray) -> list[int]:
    return images[:, 1, 1, 0].astype(int).tolist()


def test_eval_is_one_pass_in_file_order_with_exact_values():
    source = IndexSource(7)
    dataset = build_dataset(source, None, MASK_SPEC, batch_size=3, training=False)
    assert dataset.element_spec["image"].shape.as_list() == [None, None, None, 3]
    assert dataset.element_spec["mask"].shape.as_list() == [None, None, None]
    result = batches(dataset)
    assert [len(x) for x, _ in result] == [3, 3, 1]  # remainder kept in evaluation
    images = np.concatenate([x for x, _ in result])
    masks = np.concatenate([y for _, y in result])
    assert images.dtype == np.float32 and masks.dtype == np.int32
    for index in range(7):
        sample = source.load(index)
        np.testing.assert_array_equal(images[index], sample["image"].astype(np.float32))
        np.testing.assert_array_equal(masks[index], sample["mask"])


def test_training_stream_visits_each_example_once_per_epoch():
    source = IndexSource(10)
    assert steps_per_epoch(10, 4) == 2
    dataset = build_dataset(source, None, MASK_SPEC, batch_size=4, training=True, seed=5)
    assert dataset.element_spec["image"].shape.as_list() == [4, None, None, 3]  # static batch for Keras
    result = batches(dataset, 6)  # three epochs of 2 batches
    epochs = [sum((example_ids(x) for x, _ in result[e * 2:(e + 1) * 2]), []) for e in range(3)]
    for ids in epochs:
        assert len(ids) == 8 and len(set(ids)) == 8  # 8 distinct examples; 2 dropped (remainder)
    assert epochs[0] != epochs[1] and epochs[1] != epochs[2]  # reshuffled every epoch
    assert sorted(set().union(*map(set, epochs))) == list(range(10))  # the dropped pair changes
    for x, y in result:  # targets belong to their images
        np.testing.assert_array_equal(y[:, 0, 0], np.array(example_ids(x)) % 5)


def test_training_is_reproducible_and_resumable():
    source = IndexSource(9)
    augment = build_augmentation([{"RandomCrop": {"height": 6, "width": 6}}, "HorizontalFlip",
                                  {"GaussNoise": {"p": 1.0}}], ignore_label=255)

    def stream(**kwargs):
        return build_dataset(source, augment, MASK_SPEC, batch_size=3, training=True, **kwargs)

    first = batches(stream(seed=1), 9)
    again = batches(stream(seed=1, num_parallel_calls=1), 9)
    for (x1, y1), (x2, y2) in zip(first, again):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    resumed = batches(stream(seed=1, start_epoch=2), 3)  # epoch 2 = batches 6..8 of the full run
    for (x1, _), (x2, _) in zip(first[6:], resumed):
        np.testing.assert_array_equal(x1, x2)
    other = batches(stream(seed=2), 3)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, other))


def test_augmentation_seed_follows_the_example_not_its_position():
    """Example i of epoch e gets the same augmentation whether or not epochs are shuffled."""
    seen = {}

    def record_seed(sample, seed):
        return {**sample, "label": np.int32(seed % (2**31))}

    source = IndexSource(6, classification=True)
    shuffled = batches(build_dataset(source, record_seed, LABEL_SPEC, 2, training=True, seed=3), 6)
    ordered = batches(build_dataset(source, record_seed, LABEL_SPEC, 2, training=True, seed=3, shuffle=False), 6)
    for name, result in (("shuffled", shuffled), ("ordered", ordered)):
        for step, (x, y) in enumerate(result):
            for example, seed in zip(example_ids(x), y.tolist()):
                seen.setdefault((step // 3, example), set()).add(seed)
    assert len(seen) == 12 and all(len(seeds) == 1 for seeds in seen.values())
    assert len({next(iter(s)) for s in seen.values()}) == 12  # distinct per (epoch, example)


def test_classification_targets_and_deterministic_eval_augmentation():
    source = IndexSource(5, classification=True)
    augment = build_augmentation(["ColorJitter", {"GaussNoise": {"p": 1.0}}], target="label")
    dataset = build_dataset(source, augment, LABEL_SPEC, batch_size=2, training=False)
    assert dataset.element_spec["label"].shape.as_list() == [None]
    first, second = batches(dataset), batches(dataset)
    assert np.concatenate([y for _, y in first]).tolist() == [0, 1, 2, 3, 4]
    for (x1, _), (x2, _) in zip(first, second):
        np.testing.assert_array_equal(x1, x2)
    assert 0 <= min(x.min() for x, _ in first) and max(x.max() for x, _ in first) <= 255


def test_batch_larger_than_the_split_is_a_clear_error():
    with pytest.raises(DatasetError, match="3 examples, fewer than one batch of 4"):
        build_dataset(IndexSource(3), None, MASK_SPEC, batch_size=4, training=True)


def test_examples_are_batched_unchanged_whatever_their_keys():
    """A task may carry any nested targets and metadata (pose: heatmaps, weights, affine, image id)."""
    spec = {"image": IMAGE, "heatmaps": tf.TensorSpec((2, 3, 4), tf.float32),
            "affine": tf.TensorSpec((2, 3), tf.float32), "image_id": tf.TensorSpec((), tf.int64)}

    def prepare(sample, seed):
        index = int(sample["image"][1, 1, 0])
        return {"image": sample["image"], "heatmaps": np.full((2, 3, 4), index, np.float32),
                "affine": np.eye(2, 3) * index, "image_id": 1000 + index, "unused": "dropped"}

    result = list(build_dataset(IndexSource(5), prepare, spec, batch_size=2, training=False))
    assert set(result[0]) == set(spec)
    ids = np.concatenate([b["image_id"].numpy() for b in result])
    assert ids.tolist() == [1000, 1001, 1002, 1003, 1004] and result[0]["image_id"].dtype == tf.int64
    heatmaps = np.concatenate([b["heatmaps"].numpy() for b in result])
    np.testing.assert_array_equal(heatmaps[:, 0, 0, 0], [0, 1, 2, 3, 4])
    np.testing.assert_array_equal(result[1]["affine"].numpy()[1], np.eye(2, 3) * 3)


def test_an_example_missing_a_declared_entry_names_the_example():
    spec = {"image": IMAGE, "heatmaps": tf.TensorSpec((2, 3, 4), tf.float32)}
    dataset = build_dataset(IndexSource(2), None, spec, batch_size=1, training=False)
    with pytest.raises(Exception, match=r"ex0.*heatmaps"):
        list(dataset)
