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
