"""densevision.engine.compat: a model and checkpoint are compared with the recipe and the data."""

from __future__ import annotations

from pathlib import Path

import pytest

import densevision  # noqa: F401  (environment first)
import keras

from densevision.engine.checkpoints import CheckpointError
from densevision.engine.compat import check_checkpoint_matches, check_model_matches_data, checkpoint_summary
from densevision.recipes import RecipeError, load_recipe


ROOT = Path(__file__).resolve().parents[2]


def _recipe(**model):
    return load_recipe(ROOT / "recipes" / "tiramisu56_camvid.yaml",
                       [f"model.{key}={value}" for key, value in model.items()])


@pytest.mark.usefixtures("private_cache")
def test_model_must_predict_every_label_of_the_data():
    info = {"class_names": [f"c{i}" for i in range(11)], "num_classes": 11}
    check_model_matches_data(_recipe(num_classes=11), info)
    with pytest.raises(RecipeError, match="model.num_classes is 5 but dataset 'camvid' has 11 classes.*labels "
                                          "5..10 would have no output.*set model.num_classes: 11"):
        check_model_matches_data(_recipe(num_classes=5), info)
    with pytest.raises(RecipeError, match="would predict 1 classes the dataset never has"):
        check_model_matches_data(_recipe(num_classes=12), info)


@pytest.mark.usefixtures("private_cache")
def test_checkpoint_outputs_and_input_are_compared_with_recipe_and_data(tiny_keras):
    path, model = tiny_keras
    assert checkpoint_summary(model) == {"input_shape": [28, 28, 3], "output_channels": 5, "output_rank": 2,
                                         "num_outputs": 1}
    recipe = load_recipe(ROOT / "recipes" / "vgg16_sliding.yaml", ["model.input_shape=[28, 28, 3]"])
    check_checkpoint_matches(model, recipe, {"class_names": list("abcde"), "num_classes": 5}, path)
    with pytest.raises(CheckpointError, match=f"checkpoint {path} predicts 5 classes, dataset 'image_folder' has 11"):
        check_checkpoint_matches(model, recipe, {"class_names": list("abcdefghijk")}, path)
    other = load_recipe(ROOT / "recipes" / "vgg16_sliding.yaml", ["model.num_classes=7"])
    with pytest.raises(CheckpointError, match=r"predicts 5 classes, the recipe \(model.num_classes\) has 7; it takes "
                                              r"28x28x3 inputs, the recipe's model.input_shape is 224x224x3"):
        check_checkpoint_matches(model, other, None, path)
    # several outputs (one per hourglass stack): the last one counts
    inputs = keras.Input((8, 8, 3))
    stacked = keras.Model(inputs, [keras.layers.Conv2D(3, 1)(inputs), keras.layers.Conv2D(16, 1)(inputs)])
    assert checkpoint_summary(stacked)["output_channels"] == 16 and checkpoint_summary(stacked)["num_outputs"] == 2


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


@pytest.mark.usefixtures("private_cache")
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
