"""Classifier models, the image_folder source, the classification task, recipes and the sliding tool."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

import densevision  # noqa: F401  (environment first)
import keras
import tensorflow as tf

import densevision.data.image_folder as image_folder
import densevision.models.classifier as classifier
import densevision.tasks.classification as classification
from densevision.data.errors import DatasetError
from densevision.registry import DATASETS, LOSSES, MODELS, TASKS

ROOT = Path(__file__).resolve().parents[2]


def test_parts_are_registered():
    assert MODELS.get("classifier") is classifier.build_classifier
    assert DATASETS.get("image_folder") is image_folder.ImageFolder
    assert TASKS.get("classification") is classification.ClassificationTask
    assert LOSSES.get("softmax_cross_entropy") is classification.softmax_cross_entropy


# -------------------------------------------------------------------------------------------- models


def copy_by_name(source: keras.Model, target: keras.Model) -> int:
    """Copy weights of same-named layers; returns how many layers with weights were copied."""
    copied = 0
    for layer in target.layers:
        if layer.weights:
            layer.set_weights(source.get_layer(layer.name).get_weights())
            copied += 1
    return copied


def test_vgg16_classifier_matches_keras_applications_small_input():
    """At 64x64 with 5 classes: same layer names, parameter count and logits as keras.applications' VGG16."""
    keras.utils.set_random_seed(0)
    ours = classifier.build_classifier("vgg16", num_classes=5, input_shape=(64, 64, 3))
    reference = keras.applications.VGG16(weights=None, input_shape=(64, 64, 3), classes=5,
                                         classifier_activation=None)
    # hand count: trunk 14,714,688; fc1 2*2*512*4096 + 4096; fc2 4096*4096 + 4096; predictions 4096*5 + 5
    expected = 14_714_688 + (2048 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * 5 + 5)
    assert ours.count_params() == reference.count_params() == expected
    assert [l.name for l in ours.layers[-4:]] == ["flatten", "fc1", "fc2", "predictions"]
    assert copy_by_name(reference, ours) == 16
    images = np.random.default_rng(0).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    expected_logits = reference.predict(keras.applications.vgg16.preprocess_input(images.copy()), verbose=0)
    logits = ours.predict(images, verbose=0)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, expected_logits, atol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("backbone, application", [
    ("vgg16", "VGG16"), ("resnet50", "ResNet50"), ("densenet121", "DenseNet121"),
])
def test_parameter_counts_equal_keras_applications_include_top(backbone, application):
    ours = classifier.build_classifier(backbone=backbone, num_classes=1000, input_shape=(224, 224, 3))
    reference = getattr(keras.applications, application)(include_top=True, weights=None)
    assert ours.count_params() == reference.count_params()
    if backbone == "vgg16":
        assert ours.count_params() == 138_357_544
    head = [l.name for l in reference.layers if l.weights][-3:]
    assert [tuple(w.shape) for name in head for w in ours.get_layer(name).weights] == \
           [tuple(w.shape) for name in head for w in reference.get_layer(name).weights]


def test_gap_classifier_equals_keras_resnet50_given_same_weights():
    keras.utils.set_random_seed(1)
    ours = classifier.build_classifier("resnet50", num_classes=3, input_shape=(64, 64, 3))
    reference = keras.applications.ResNet50(weights=None, input_shape=(64, 64, 3), classes=3,
                                            classifier_activation=None)
    assert ours.count_params() == reference.count_params()
    copy_by_name(reference, ours)
    images = np.random.default_rng(1).uniform(0, 255, (2, 64, 64, 3)).astype("float32")
    expected = reference.predict(keras.applications.resnet.preprocess_input(images.copy()), verbose=0)
    np.testing.assert_allclose(ours.predict(images, verbose=0), expected, atol=1e-4)


def test_freeze_all_trains_only_the_head_and_p4_fine_tunes_from_conv5():
    frozen = classifier.build_classifier("vgg16", num_classes=4, input_shape=(32, 32, 3), freeze="all", dropout=0.5)
    trainable = {w.path.split("/")[0] for w in frozen.trainable_weights}
    assert trainable == {"fc1", "fc2", "predictions"}
    assert "fc1_dropout" in [l.name for l in frozen.layers]

    fine_tune = classifier.build_classifier("vgg16", num_classes=4, input_shape=(32, 32, 3), freeze="P4")
    trainable = {w.path.split("/")[0] for w in fine_tune.trainable_weights}
    # P4 of VGG16 is block5_conv3's output: stage P4 = block5_conv1..3 (see backbones/vgg.py)
    assert trainable == {"block5_conv1", "block5_conv2", "block5_conv3", "fc1", "fc2", "predictions"}

    gap = classifier.build_classifier("resnet50", num_classes=4, input_shape=(32, 32, 3), freeze="all")
    assert {w.path.split("/")[0] for w in gap.trainable_weights} == {"predictions"}


def test_bad_classifier_arguments_are_explained():
    with pytest.raises(ValueError, match="fixed input_shape"):
        classifier.build_classifier("vgg16", input_shape=(None, None, 3))
    with pytest.raises(ValueError, match="head='auto'.*'mobilenet'"):
        classifier.head_for("mobilenet")


def test_top_weights_copy_the_head_and_check_shapes(tmp_path):
    source = classifier.build_classifier("resnet50", num_classes=3, input_shape=(32, 32, 3))
    path = tmp_path / "source.weights.h5"
    source.save_weights(path)
    target = classifier.build_classifier("resnet50", num_classes=3, input_shape=(32, 32, 3), top_weights=str(path))
    for got, want in zip(target.get_layer("predictions").get_weights(), source.get_layer("predictions").get_weights()):
        np.testing.assert_array_equal(got, want)
    # a legacy (Keras 2 style) .h5 with the keras.applications layer names loads too
    legacy = tmp_path / "legacy.h5"
    source.save(legacy)
    again = classifier.build_classifier("resnet50", num_classes=3, input_shape=(32, 32, 3), top_weights=str(legacy))
    np.testing.assert_array_equal(again.get_layer("predictions").get_weights()[0],
                                  source.get_layer("predictions").get_weights()[0])
    with pytest.raises(ValueError, match="same architecture.*5 classes"):
        classifier.build_classifier("resnet50", num_classes=5, input_shape=(32, 32, 3), top_weights=str(path))
    with pytest.raises(ValueError, match="'predictions'.*num_classes"):
        classifier.build_classifier("resnet50", num_classes=5, input_shape=(32, 32, 3), top_weights=str(legacy))


def test_classifier_converts_to_fully_convolutional():
    from densevision.inference.fully_convolutional import to_fully_convolutional

    model = classifier.build_classifier("vgg16", num_classes=3, input_shape=(64, 64, 3))
    converted = to_fully_convolutional(model)
    big = np.random.default_rng(2).uniform(0, 255, (1, 96, 128, 3)).astype("float32")
    scores = converted.predict(big, verbose=0)
    assert scores.shape == (1, 2, 3, 3)
    # at the window size the converted model is the model (larger images: see test_convert.py)
    np.testing.assert_allclose(converted.predict(big[:, :64, :64], verbose=0)[0, 0, 0],
                               model.predict(big[:, :64, :64], verbose=0)[0], atol=1e-4)


# ------------------------------------------------------------------------------------------ image_folder


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    image_folder.make_demo_image_folder(root, per_class={"train": 5, "val": 2}, num_scenes=2)
    return root


def test_demo_image_folder_opens_and_loads(demo_root):
    source = image_folder.ImageFolder(str(demo_root), "train")
    assert len(source) == 25
    assert source.info == {"class_names": sorted(image_folder.DEMO_CLASSES), "num_classes": 5}
    sample = source.load(7)
    image, label = sample["image"], sample["label"]
    assert image.dtype == np.uint8 and image.shape == (64, 64, 3)
    assert source.info["class_names"][label] == source.names[7].split("/")[0]
    assert sample["meta"] == {"name": source.names[7], "index": 7}
    resized = image_folder.ImageFolder(str(demo_root), "val", image_size=[40, 50])
    assert resized.load(0)["image"].shape == (40, 50, 3)
    assert len(list((demo_root / "scenes").glob("*.png"))) == 2
    # a second call with the same settings finds the marker and writes nothing
    before = (demo_root / "train" / "circle" / "0000.png").stat().st_mtime_ns
    image_folder.make_demo_image_folder(demo_root, per_class={"train": 5, "val": 2}, num_scenes=2)
    assert (demo_root / "train" / "circle" / "0000.png").stat().st_mtime_ns == before


def write_png(path: Path, value: int = 128):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((8, 8, 3), value, np.uint8))


def test_labels_follow_all_splits_class_folders(tmp_path):
    for name in ("a", "b", "c"):
        write_png(tmp_path / "train" / name / "x.png")
    write_png(tmp_path / "val" / "c" / "y.png")  # val lacks a and b: c must still be label 2
    val = image_folder.ImageFolder(str(tmp_path), "val")
    assert val.info["class_names"] == ["a", "b", "c"] and val.load(0)["label"] == 2


def test_image_folder_problems_are_named(tmp_path):
    with pytest.raises(DatasetError, match="root folder .* does not exist"):
        image_folder.ImageFolder(str(tmp_path / "nowhere"), "train")
    write_png(tmp_path / "train" / "cat" / "1.png")
    with pytest.raises(DatasetError, match="split folder .*val.* not found; folders in root: \\['train'\\]"):
        image_folder.ImageFolder(str(tmp_path), "val")
    (tmp_path / "train" / "dog").mkdir()
    (tmp_path / "train" / "bird").mkdir()
    (tmp_path / "train" / "bird" / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DatasetError) as error:
        image_folder.ImageFolder(str(tmp_path), "train")
    message = str(error.value)
    assert "empty class folder" in message and "dog" in message
    assert "cannot be read" in message and "broken.jpg" in message
    with pytest.raises(DatasetError, match="image_size"):
        image_folder.ImageFolder(str(tmp_path), "train", image_size=[10])


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


# ------------------------------------------------------------------------------------------- sliding tool


def test_sliding_tool_scores_equal_crop_by_crop_mean(demo_root, tmp_path, capsys):
    """The tool's image-level scores = mean softmax of the original model over the stride-s crops."""
    keras.utils.set_random_seed(5)
    model = keras.Sequential([  # valid convolutions: sliding is exact on crops; window 28, stride 4
        keras.Input((28, 28, 3)), keras.layers.Rescaling(1 / 255.0),
        keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(8, 3, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(5),
    ])
    weights = tmp_path / "tiny.keras"
    model.save(weights)
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((ROOT / "recipes" / "resnet50_classify.yaml").read_text().replace(
        "_base_: [_base_/default_runtime.yaml]", f"_base_: [{ROOT / 'recipes/_base_/default_runtime.yaml'}]"))
    scene = sorted((demo_root / "scenes").glob("*.png"))[0]
    spec = importlib.util.spec_from_file_location("sliding_classify", ROOT / "tools" / "sliding_classify.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    out = tmp_path / "out"
    code = tool.main([str(recipe), str(scene), "--weights", str(weights), "--stride", "2", "--class", "square",
                      "--output", str(out), "--top-k", "3", "--no-progress", "--set", f"data.root={demo_root}"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    [entry] = results["images"]
    image = cv2.cvtColor(cv2.imread(str(scene)), cv2.COLOR_BGR2RGB).astype("float32")  # 192 x 192
    rows = (192 - 28) // 2 + 1
    crops = np.stack([image[i * 2 : i * 2 + 28, j * 2 : j * 2 + 28] for i in range(rows) for j in range(rows)])
    expected = keras.activations.softmax(model.predict(crops, verbose=0)).numpy().mean(0)
    assert entry["maps"] == [[rows, rows]]
    got = {item["class"]: item["score"] for item in entry["top_k"]}
    names = sorted(image_folder.DEMO_CLASSES)
    for name, score in got.items():
        assert score == pytest.approx(expected[names.index(name)], abs=1e-5)
    assert list(got) == [names[i] for i in np.argsort(-expected)[:3]]
    assert (out / f"{scene.name}_square.png").is_file() and entry["heatmap_class"] == "square"
    printed = capsys.readouterr().out
    assert f"{scene}: {list(got)[0]} " in printed
    # a bad class name is an error naming it, exit code 2
    assert tool.main([str(recipe), str(scene), "--weights", str(weights), "--class", "sqare", "--no-progress",
                      "--output", str(out), "--set", f"data.root={demo_root}"]) == 2
