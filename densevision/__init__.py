"""densevision: dense-prediction vision on Keras 3 (TensorFlow backend).

Public API: :func:`load_recipe`, :func:`build_model`, :func:`build_backbone`, :func:`to_fully_convolutional`,
:func:`layer_table`.
"""

from densevision._env import configure_environment

configure_environment()

from densevision.recipes import Recipe, RecipeError, load_recipe  # noqa: E402

__version__ = "0.1.0"
__all__ = ["Recipe", "RecipeError", "load_recipe", "__version__"]
