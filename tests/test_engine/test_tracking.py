"""Pictures where people look: sample predictions in PNG files, TensorBoard and W&B (offline) every
``train.pictures_every`` epochs and after the last; curves drawn when training ends; classification evaluation
writes a confusion matrix like segmentation's.

References: the TensorBoard event files read back with ``tf.compat.v1.train.summary_iterator`` and their PNGs
decoded with OpenCV against the PNG files; W&B's offline media files; a numpy confusion matrix counted from the
Keras model's logits.
"""

from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
import tensorflow as tf

import densevision
from densevision.engine.trainer import train
from densevision.recipes import load_recipe

from engine_utils import make_street_data, write_classification_recipe, write_recipe

PNG = b"\x89PNG\r\n\x1a\n"


def tensorboard_images(log_dir: Path) -> dict[tuple[str, int], np.ndarray]:
    """``{(tag, step): RGB uint8 image}`` of every image summary under ``log_dir``."""
    found = {}
    for events in sorted(log_dir.glob("events.out.tfevents.*")):
        for event in tf.compat.v1.train.summary_iterator(str(events)):
            for value in event.summary.value:
                # tf.summary.image (TF2) stores [width, height, png...] as a string tensor
                if value.metadata.plugin_data.plugin_name != "images":
                    continue
                encoded = tf.make_ndarray(value.tensor)[2]
                decoded = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)
                found[(value.tag, event.step)] = cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)
    return found


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Three epochs, pictures every two: epoch 2 by the schedule and epoch 3 because it is the last."""
    work = tmp_path_factory.mktemp("pictures")
    data = make_street_data(work / "streets")
    recipe = write_recipe(work / "pictures.yaml", data,
                          train={"epochs": 3, "steps_per_epoch": 1, "pictures_every": 2, "num_pictures": 2},
                          tracking={"wandb": {"mode": "offline", "project": "densevision-test"}, "tensorboard": True})
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "offline")
        patch.setenv("WANDB_SILENT", "true")
        result = train(load_recipe(recipe), output_dir=str(work / "runs"), progress=False)
    return result.run_dir


def test_pictures_follow_the_schedule_and_always_come_after_the_last_epoch(run):
    names = sorted(path.name for path in (run / "pictures").glob("*.png"))
    assert names == ["epoch002_0.png", "epoch002_1.png", "epoch003_0.png", "epoch003_1.png"]


def test_tensorboard_holds_the_same_pictures_as_the_png_files(run):
    images = tensorboard_images(run / "tensorboard" / "pictures")
    # steps are 0-based epochs, as the Keras TensorBoard callback's epoch scalars
    assert sorted(images) == [("samples/0", 1), ("samples/0", 2), ("samples/1", 1), ("samples/1", 2)]
    for (tag, step), image in images.items():
        png = run / "pictures" / f"epoch{step + 1:03d}_{tag.split('/')[1]}.png"
        np.testing.assert_array_equal(image, cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB))


def test_wandb_gets_pictures_and_segmentation_masks_offline(run):
    (offline,) = (run / "wandb").glob("offline-run-*")
    media = offline / "files" / "media" / "images"
    assert len(list(media.glob("samples_*.png"))) == 4  # 2 pictures x 2 epochs
    masks = list((media / "mask").glob("*.png"))
    assert len(masks) == 2 * 2 * 2  # ground truth and prediction of 2 samples at 2 epochs
    # every W&B mask is a label map of the validation image's size with class ids of the dataset
    for path in masks:
        mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert mask.shape[:2] == (32, 32) and int(mask.max()) < 256


def test_curves_are_drawn_when_training_ends(run):
    assert (run / "curves.png").read_bytes()[:8] == PNG
    # tools/plot_history.py keeps its own default file (history.png), untouched by training
    assert not (run / "history.png").exists()


# ------------------------------------------------------------------------------------------ classification


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    from densevision.data.image_folder import make_demo_image_folder

    work = tmp_path_factory.mktemp("classifier_report")
    root = make_demo_image_folder(work / "shapes", per_class={"train": 4, "val": 3}, size=32, num_scenes=0)
    recipe = write_classification_recipe(work / "tiny_classify.yaml", root, train={"epochs": 1})
    result = train(load_recipe(recipe), output_dir=str(work / "runs"), progress=False)
    return result.run_dir, root


def test_classification_report_has_a_confusion_matrix_counted_like_numpy(classifier, tmp_path):
    run, root = classifier
    model = densevision.load(run)
    results = model.evaluate("val", output_dir=tmp_path)
    classes = model.class_names
    paths = sorted((root / "val").glob("*/*.png"))
    images = np.stack([cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in paths]).astype(np.float32)
    predicted = np.asarray(model.model(images, training=False)).argmax(-1)
    truth = np.array([classes.index(p.parent.name) for p in paths])
    expected = np.zeros((len(classes), len(classes)), np.int64)
    np.add.at(expected, (truth, predicted), 1)

    np.testing.assert_array_equal(results["confusion"], expected)
    with open(tmp_path / "confusion_matrix.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][1:] == classes and [row[0] for row in rows[1:]] == classes
    np.testing.assert_array_equal(np.array([row[1:] for row in rows[1:]], int), expected)
    assert (tmp_path / "confusion_matrix.png").read_bytes()[:8] == PNG
    table = (tmp_path / "per_class_accuracy.txt").read_text()
    for index, name in enumerate(classes):
        share = expected[index, index] / expected[index].sum()
        assert f"{name}" in table and f"{share:.4f}" in table
    assert results["top1"] == pytest.approx(np.trace(expected) / len(paths), abs=1e-12)
    assert len(list((tmp_path / "overlays").glob("*.png"))) == 4  # num_samples pictures
