"""densevision: dense-prediction vision on Keras 3 (TensorFlow backend).

Public API:
    load(source, weights=None, overrides=())
                                            -> an Inferencer: .predict(images), .evaluate(split), .export(fmt, path)
    load_recipe(path_or_name, overrides=[...])  -> the validated Recipe (a built-in recipe by name works too)
    build_model(recipe)                     -> the keras.Model a recipe describes
    build_backbone(name, weights=None, output_stride=32, input_shape=(None, None, 3))
                                            -> keras.Model with outputs {"P1": /2, ..., "P5": /32}
    to_fully_convolutional(model)           -> the classifier with its Dense layers as convolutions
    layer_table(model, input_shape)         -> per-layer shapes, parameters, MACs, receptive fields

Importing the package is cheap: it does not import TensorFlow. The public names above are loaded on first use
(PEP 562 ``__getattr__``), and the built-in parts are registered before any recipe or checkpoint is read through
densevision, and as soon as ``keras`` is imported, so ``import densevision`` followed by
``keras.saving.load_model(path, safe_mode=True)`` loads densevision checkpoints (see densevision/_env.py). The
``densevision`` command relies on this to parse its arguments and answer ``--help`` before TensorFlow loads.
"""

from importlib import import_module

from densevision._env import configure_environment

configure_environment()

from densevision._env import register_when_keras_loads  # noqa: E402
from densevision.registry import load_builtin_parts  # noqa: E402

register_when_keras_loads()

__version__ = "0.1.0"

# public name -> the module defining it; imported (and the parts registered) on first access
_LAZY = {
    "load": "densevision.api",
    "Recipe": "densevision.recipes",
    "RecipeError": "densevision.recipes",
    "load_recipe": "densevision.recipes",
    "build_backbone": "densevision.backbones.api",
    "freeze_backbone": "densevision.backbones.api",
    "build_model": "densevision.models",
    "layer_table": "densevision.analysis.layer_table",
    "to_fully_convolutional": "densevision.inference.fully_convolutional",
}

__all__ = sorted([*_LAZY, "__version__"])


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'densevision' has no attribute {name!r}")
    load_builtin_parts()
    value = getattr(import_module(module), name)
    globals()[name] = value  # later accesses skip __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
