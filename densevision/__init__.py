"""densevision: dense-prediction vision on Keras 3 (TensorFlow backend).

Public API:
    load(source, weights=None, overrides=())
                                            -> an Inferencer: .predict(images), .evaluate(split), .export(fmt, path)
    load_recipe(path, overrides=[...])      -> the validated Recipe
    build_model(recipe)                     -> the keras.Model a recipe describes
    build_backbone(name, weights=None, output_stride=32, input_shape=(None, None, 3))
                                            -> keras.Model with outputs {"P1": /2, ..., "P5": /32}
    to_fully_convolutional(model)           -> the classifier with its Dense layers as convolutions
    layer_table(model, input_shape)         -> per-layer shapes, parameters, MACs, receptive fields
"""

from densevision._env import configure_environment

configure_environment()

from densevision._env import check_loaded_backend  # noqa: E402

check_loaded_backend()

from densevision.registry import load_builtin_parts  # noqa: E402

# Registers every built-in layer, backbone, model, dataset and task, so recipes can name them and .keras
# checkpoints load with safe_mode=True.
load_builtin_parts()

from densevision.analysis.layer_table import layer_table  # noqa: E402
from densevision.api import load  # noqa: E402
from densevision.backbones.api import build_backbone, freeze_backbone  # noqa: E402
from densevision.inference.fully_convolutional import to_fully_convolutional  # noqa: E402
from densevision.models import build_model  # noqa: E402
from densevision.recipes import Recipe, RecipeError, load_recipe  # noqa: E402

__version__ = "0.1.0"
__all__ = [
    "Recipe", "RecipeError", "build_backbone", "build_model", "freeze_backbone", "layer_table", "load_recipe",
    "to_fully_convolutional", "__version__",
    "load",
]
