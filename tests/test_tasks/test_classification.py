"""Classifier models, the image_folder source, the classification task, recipes and the sliding tool."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import densevision  # noqa: F401  (environment first)
import keras
import tensorflow as tf

import densevision.data.image_folder as image_folder
import densevision.models.classifier as classifier
import densevision.tasks.classification as classification
from densevision.registry import DATASETS, LOSSES, MODELS, TASKS

ROOT = Path(__file__).resolve().parents[2]


def test_parts_are_registered():
    assert MODELS.get("classifier") is classifier.build_classifier
    assert DATASETS.get("image_folder") is image_folder.ImageFolder
    assert TASKS.get("classification") is classification.ClassificationTask
    assert LOSSES.get("softmax_cross_entropy") is classification.softmax_cross_entropy


# -------------------------------------------------------------------------------------------------- task


def make_task(num_classes=6, recipe=None):
    return classification.ClassificationTask(recipe, {"class_names": [f"c{i}" for i in range(num_classes)],
                                                      "num_classes": num_classes})


def test_loss_equals_keras_cross_entropy_with_and_without_smoothing():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(4, 6)).astype("float32") * 3
    labels = np.array([0, 5, 2, 2], np.int32)
    plain = classification.softmax_cross_entropy()(labels, logits)
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)(labels, logits)
    np.testing.assert_allclose(plain, expected, rtol=1e-5)
    smoothed = classification.softmax_cross_entropy(label_smoothing=0.2)(labels, logits)
    expected = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2, reduction=None)(
        np.eye(6, dtype="float32")[labels], logits)
    np.testing.assert_allclose(smoothed, expected, rtol=1e-5)
    assert make_task().loss({"label": labels}, logits).shape == (4,)
    with pytest.raises(ValueError, match=r"logits \(B, 6\)"):
        make_task().loss({"label": labels}, logits[:, :5])


def test_metric_sums_and_results_by_hand():
    task = make_task(6)
    logits = np.array([
        [9, 1, 2, 3, 4, 5],  # label 0: rank 0 -> top-1 and top-5
        [9, 8, 7, 6, 5, 0],  # label 5: rank 5 -> neither
        [1, 9, 8, 7, 6, 5],  # label 5: rank 4 -> top-5 only
    ], np.float32)
    sums = {k: np.asarray(v) for k, v in task.metric_sums({"label": np.array([0, 5, 5])}, logits).items()}
    assert sums == {"correct_top1": 1, "correct_top5": 2, "count": 3}
    more = {k: np.asarray(v) for k, v in task.metric_sums({"label": np.array([1])}, logits[2:]).items()}
    total = {k: sums[k] + more[k] for k in sums}
    assert task.metric_results(total) == {"top1": 0.5, "top5": 0.75}
    assert task.default_monitor == ("top1", "max")
    assert task.example_spec == {"image": tf.TensorSpec((None, None, 3), tf.float32),
                                 "label": tf.TensorSpec((), tf.int32)}


def test_augmenter_changes_the_image_only_and_pictures_are_captioned():
    task = make_task(3)
    augment = task.augmenter([{"HorizontalFlip": {"p": 1.0}}], training=True)
    image = np.random.default_rng(4).integers(0, 255, (8, 10, 3), dtype=np.uint8)
    meta = {"name": "x", "index": 0}
    out = augment({"image": image, "label": 2, "meta": meta}, seed=0)
    np.testing.assert_array_equal(out["image"], image[:, ::-1])
    assert out["label"] == 2 and out["meta"] == meta
    pictures = task.pictures({"image": np.stack([image, image]).astype("float32"), "label": np.array([0, 1])},
                             np.array([[5.0, 0, 0], [5.0, 0, 0]]))
    assert len(pictures) == 2 and pictures[0].dtype == np.uint8 and pictures[0].shape[1] == 192
    assert not np.array_equal(pictures[0], pictures[1])  # right (green) and wrong (red) captions differ


def test_task_checks_num_classes_against_the_recipe(demo_root):
    recipe = densevision.load_recipe(ROOT / "recipes" / "resnet50_classify.yaml",
                                     overrides=["model.num_classes=7"])
    with pytest.raises(ValueError, match="model.num_classes is 7 but the dataset has 5"):
        classification.ClassificationTask(recipe, image_folder.ImageFolder(str(demo_root), "train").info)


def test_pipeline_batches_images_and_labels(demo_root):
    from densevision.data.pipeline import build_dataset

    task = make_task(4)
    source = image_folder.ImageFolder(str(demo_root), "train", image_size=[48, 48])
    dataset = build_dataset(source, task.preparer([{"HorizontalFlip": {"p": 0.5}}], True), task.example_spec,
                            batch_size=4, training=False)
    batch = next(iter(dataset))
    assert set(batch) == {"image", "label"}
    images, labels = batch["image"], batch["label"]
    assert images.shape == (4, 48, 48, 3) and images.dtype == tf.float32
    assert labels.dtype == tf.int32 and labels.numpy().tolist() == source.labels[:4]


def test_make_demo_data_points_the_recipe_at_it(tmp_path):
    overrides = classification.ClassificationTask.make_demo_data(str(tmp_path))
    assert overrides["data.root"] == str(tmp_path) and overrides["data.name"] == "image_folder"
    source = image_folder.ImageFolder(overrides["data.root"], "train")
    assert source.info["num_classes"] == overrides["model.num_classes"] and len(source) == 100


# ----------------------------------------------------------------------------------------------- recipes


@pytest.mark.parametrize("name", ["vgg16_sliding", "resnet50_classify"])
def test_recipes_validate_with_and_without_demo(name):
    from densevision.data.augment import validate_transforms

    for demo in (False, True):
        recipe = densevision.load_recipe(ROOT / "recipes" / f"{name}.yaml", demo=demo)
        assert recipe.task == "classification" and recipe.model.name == "classifier"
        assert recipe.data.name == "image_folder" and recipe.train.monitor == "val_top1"
        for split in (recipe.augmentation.train, recipe.augmentation.val):
            validate_transforms(split, target="label")
    assert recipe.model.weights is None  # demo: no download
    assert recipe.train.epochs <= 2


def small_recipe(tmp_path, task: str, loss: str, model: str) -> Path:
    path = tmp_path / f"{task}_{loss}.yaml"
    path.write_text(f"task: {task}\nmodel: {model}\ndata: {{name: image_folder, root: here}}\n"
                    f"loss: {{name: {loss}}}\n")
    return path


@pytest.mark.parametrize("task, loss, model, owner", [
    ("classification", "cross_entropy", "{name: classifier, num_classes: 3, weights: null}", "segmentation"),
    ("classification", "focal", "{name: classifier, num_classes: 3, weights: null}", "segmentation"),
    ("segmentation", "softmax_cross_entropy", "{name: fc_densenet56, num_classes: 3}", "classification"),
])
def test_a_loss_of_another_task_is_a_recipe_error_naming_loss_name(tmp_path, task, loss, model, owner):
    """Losses are registered per task; the recipe check (not the task at training time) refuses a mismatch."""
    assert LOSSES.attributes(loss)["task"] == owner
    path = small_recipe(tmp_path, task, loss, model)
    with pytest.raises(densevision.RecipeError) as error:
        densevision.load_recipe(path)
    message = str(error.value)
    assert str(path) in message and "loss.name" in message and repr(loss) in message
    assert f"is a {owner} loss" in message and repr(task) in message
    for allowed in LOSSES.names(task=task):  # the choices are the task's own losses
        assert allowed in message
    # the matching loss validates
    matching = "softmax_cross_entropy" if task == "classification" else "cross_entropy"
    assert densevision.load_recipe(small_recipe(tmp_path, task, matching, model)).loss.name == matching


def test_losses_are_registered_for_their_task():
    assert LOSSES.names(task="classification") == ["softmax_cross_entropy"]
    assert {"cross_entropy", "focal", "dice"} <= set(LOSSES.names(task="segmentation"))
    assert not set(LOSSES.names(task="classification")) & set(LOSSES.names(task="segmentation"))
