"""Hostile inputs, part 2 (issue 15): each case here failed before its fix.

Outputs never read back as inputs, resumed runs that keep every earlier record, ``--set`` winning over ``--demo`` in
every tool, calibration folders with a stray file, one input walker for every tool, bounded memory for sliding
windows, and messages that say what is wrong. Data is generated in pytest's temporary folders.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

import densevision  # noqa: F401  (environment first)
import keras

from densevision.data.augment import build_augmentation

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(15)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    """Demo data, verification verdicts and error logs of these tests go to a fresh folder."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DENSEVISION_CACHE", str(cache))
    monkeypatch.delenv("DENSEVISION_DEBUG", raising=False)
    return cache


def noise(height=24, width=32) -> np.ndarray:
    return RNG.integers(0, 256, (height, width, 3), dtype=np.uint8)


def write_image(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


# ------------------------------------------------------------------------------------------- augmentation


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


# ------------------------------------------------------------------------------------------- messages


def test_existing_outputs_name_each_way_out_once(tmp_path):
    """The hint repeated itself: "pass --overwrite to replace them or pass --overwrite to replace them or ..."."""
    from densevision.engine.predictor import PredictOptions, plan_jobs
    from densevision.errors import OutputError

    class Writes:  # the planning interface of a task: one PNG per input
        def prediction_files(self, stem, options):
            return [f"{stem}.png"]

        def prediction_summary_files(self, options):
            return []

    image = write_image(tmp_path / "in" / "a.jpg", noise())
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").write_bytes(b"earlier")
    with pytest.raises(OutputError) as caught:
        plan_jobs(Writes(), [(image, "a.jpg")], tmp_path / "out", PredictOptions(), overwrite=False, resume=False)
    message = str(caught.value)
    assert message.count("--overwrite") == 1 and message.endswith(
        "pass --overwrite to replace them or --resume to skip them"), message


def test_export_refusal_speaks_in_flags_not_arguments(tmp_path):
    from densevision.engine.export import ExportError, _prepare_output

    existing = tmp_path / "model.keras"
    existing.write_bytes(b"earlier")
    with pytest.raises(ExportError) as caught:
        _prepare_output(existing, "keras", False)
    assert "pass --overwrite to replace it" in str(caught.value) and "overwrite=True" not in str(caught.value)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_proc_as_output_folder_says_no_file_can_be_created_there():
    from densevision.errors import OutputError
    from densevision.files import check_writable_dir

    with pytest.raises(OutputError) as caught:
        check_writable_dir("/proc", what="--output folder")
    message = str(caught.value)
    assert message.startswith("--output folder /proc is not writable: no file can be created there"), message
    assert "no such file or directory" not in message


@pytest.mark.parametrize("dataset", ["camvid", "mask_folder", "image_folder", "coco_keypoints", "lsp", "mpii"])
def test_a_data_root_that_is_a_file_is_called_a_file(tmp_path, dataset):
    from densevision.data.errors import DatasetError
    from densevision.registry import DATASETS, load_builtin_parts

    load_builtin_parts()
    root = tmp_path / "data.zip"
    root.write_bytes(b"PK\x03\x04 a zip archive, not a folder")
    options = {"num_classes": 2} if dataset == "mask_folder" else {}
    with pytest.raises(DatasetError) as caught:
        DATASETS.get(dataset)(root=str(root), split="train", **options)
    message = str(caught.value)
    assert f"{root} is a file, not a folder" in message and "does not exist" not in message, message
    with pytest.raises(DatasetError, match="does not exist"):  # and a missing root still says so
        DATASETS.get(dataset)(root=str(tmp_path / "gone"), split="train", **options)


def test_coco_annotation_without_a_keypoints_field_says_the_field_is_missing(tmp_path):
    from densevision.data.coco_keypoints import CocoKeypoints
    from densevision.data.errors import DatasetError
    from densevision.data.skeletons import keypoint_info

    write_image(tmp_path / "images" / "train" / "a.jpg", noise(40, 60))
    joints = keypoint_info("coco")["joint_names"]
    annotation = {"id": 7, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [10, 5, 20, 30],
                  "area": 300.0, "num_keypoints": 1}  # no "keypoints"
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "person_keypoints_train.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "height": 40, "width": 60}], "annotations": [annotation],
        "categories": [{"id": 1, "name": "person", "keypoints": joints, "skeleton": []}]}))
    with pytest.raises(DatasetError) as caught:
        CocoKeypoints(str(tmp_path), "train")
    message = str(caught.value)
    assert "annotation 7 (no 'keypoints' field; expected 51 numbers = 17 x (x, y, v))" in message, message
    assert "1 keypoint values" not in message


@pytest.fixture(scope="module")
def task_models(tmp_path_factory):
    """A tiny pose model (heatmaps at 1/4, 11 joints) and a tiny segmentation model (11 classes), saved."""
    from densevision.models.hourglass import stacked_hourglass
    from densevision.models.tiramisu import fc_densenet

    folder = tmp_path_factory.mktemp("task_models")
    keras.utils.set_random_seed(0)
    pose = stacked_hourglass(num_stacks=1, num_features=8, num_joints=11, depth=1, input_shape=(64, 64, 3))
    segmenter = fc_densenet(num_classes=17, blocks_down=[1, 1], bottleneck=1, growth_rate=4, first_filters=8,
                            dropout=0.0)
    return {"pose": (pose, folder / "pose.keras"), "segmentation": (segmenter, folder / "segmenter.keras")}


def test_a_checkpoint_of_another_task_is_named_as_such(task_models):
    """A pose checkpoint in a segmentation recipe was "predicts 11 classes" (its joints counted as classes)."""
    from densevision.engine.checkpoints import CheckpointError
    from densevision.engine.compat import check_checkpoint_matches, output_stride
    from densevision.recipes import load_recipe
    from densevision.tasks.pose import PoseTask
    from densevision.tasks.segmentation import SegmentationTask

    pose, pose_path = task_models["pose"]
    segmenter, segmenter_path = task_models["segmentation"]
    assert output_stride(pose) == 64 // pose.outputs[-1].shape[1] == 4  # 64x64 in, 16x16 heatmaps
    assert output_stride(segmenter) == 1
    seg_recipe = load_recipe(ROOT / "recipes" / "tiramisu56_camvid.yaml", ["model.num_classes=11"])
    seg_task = SegmentationTask(seg_recipe, {"class_names": [f"c{i}" for i in range(11)], "num_classes": 11})
    with pytest.raises(CheckpointError) as caught:
        check_checkpoint_matches(pose, seg_recipe, seg_task.info, pose_path, task=seg_task)
    message = str(caught.value)
    assert message.startswith(f"checkpoint {pose_path} is a pose model (maps at 1/4 of the input), but the recipe's "
                              f"task is segmentation (a map at the input's size)"), message
    assert "classes" not in message
    pose_recipe = load_recipe(ROOT / "recipes" / "hourglass_lsp.yaml", ["model.num_joints=17"])
    info = {"joint_names": [f"j{i}" for i in range(17)], "num_joints": 17}
    with pytest.raises(CheckpointError) as caught:
        check_checkpoint_matches(segmenter, pose_recipe, info, segmenter_path, task=PoseTask)
    message = str(caught.value)
    assert "is a segmentation model (a map at the input's size), but the recipe's task is pose" in message, message
    assert "joints" not in message
    # the right task still passes, and a count mismatch within one task is still a count mismatch
    check_checkpoint_matches(segmenter, seg_recipe, {"num_classes": 17}, segmenter_path, task=seg_task)
    with pytest.raises(CheckpointError, match="predicts 17 classes, dataset 'camvid' has 11"):
        check_checkpoint_matches(segmenter, seg_recipe, seg_task.info, segmenter_path, task=seg_task)


def test_a_saved_lambda_layer_is_refused_naming_it(tmp_path):
    """Keras' refusal names no layer; the message ended "may be corrupt or need a newer densevision"."""
    from densevision.engine.checkpoints import CheckpointError, load_checkpoint

    inner_input = keras.Input((None, None, 3))
    inner = keras.Model(inner_input, keras.layers.Lambda(lambda x: x * 2.0, name="double")(inner_input), name="inner")
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inner(inputs)), name="outer")
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ValueError, match="Lambda"):  # what Keras says, without the layer's name
        keras.saving.load_model(path, safe_mode=True, compile=False)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "outer/inner/double (Lambda layer)" in message and "safe_mode=True" in message, message
    assert "corrupt" not in message and "newer densevision" not in message


# ------------------------------------------------------------------------------------- --set wins over --demo


class _Stop(Exception):
    """Raised by a stand-in for the first step after a tool has its recipe."""


def test_every_set_value_wins_over_demo_in_every_tool(tmp_path, monkeypatch):
    """``evaluate.py --demo --set data.root=OTHER`` scored the demo data: the demo data location was applied after
    the --set values. Each tool is stopped right after it has its recipe, which is captured."""
    import densevision.engine.checkpoints as checkpoints
    import densevision.engine.evaluator as evaluator
    import densevision.engine.predictor as predictor
    import densevision.engine.trainer as trainer
    import densevision.inference.sliding as sliding
    from densevision.engine.export import export_command
    from densevision.engine.launch import run_training

    seen = {}

    def capture(name):
        def stand_in(*args, **kwargs):
            seen[name] = next(value for value in (*args, *kwargs.values()) if hasattr(value, "data"))
            raise _Stop
        return stand_in

    other = tmp_path / "my_data"
    pose, sliding_recipe = ROOT / "recipes" / "hourglass_lsp.yaml", ROOT / "recipes" / "vgg16_sliding.yaml"
    override = [f"data.root={other}", "train.epochs=3"]
    image = write_image(tmp_path / "in" / "a.png", noise(64, 64))
    monkeypatch.setattr(trainer, "train", capture("train"))
    monkeypatch.setattr(evaluator, "run_evaluation", capture("evaluate"))
    monkeypatch.setattr(predictor, "prediction_info", capture("predict"))
    monkeypatch.setattr(checkpoints, "load_checkpoint", capture("export"))
    monkeypatch.setattr(sliding, "load_classifier", capture("sliding_classify"))
    runs = {
        "train": lambda: run_training(str(pose), override, output=str(tmp_path / "runs"), demo=True),
        "evaluate": lambda: evaluator.evaluate_command(str(pose), "w.keras", overrides=override, demo=True),
        "predict": lambda: predictor.predict_command(str(pose), "w.keras", [str(image.parent)], str(tmp_path / "p"),
                                                     demo=True, overrides=override, progress=False),
        "export": lambda: export_command(str(pose), "w.keras", "keras", str(tmp_path / "e.keras"),
                                         overrides=override, demo=True),
        "sliding_classify": lambda: sliding.sliding_classify_command(
            str(sliding_recipe), "w.keras", [str(image)], output=str(tmp_path / "s"), overrides=override, demo=True,
            progress=False),
    }
    for tool, run in runs.items():
        with pytest.raises(_Stop):
            run()
        recipe = seen[tool]
        assert recipe.data.root == str(other), f"{tool}: --set data.root lost to --demo ({recipe.data.root})"
        assert recipe.train.epochs == 3, tool  # a --set of a key the demo section sets
    # the rest of --demo still applies: its generated data's dataset and joints, its small crops
    assert seen["predict"].data.name == "coco_keypoints" and seen["predict"].model.kwargs()["num_joints"] == 17
    assert seen["train"].data.kwargs()["input_size"] == [64, 64]
