"""The built-in parts: importing these modules registers their layers, backbones, models, sources and tasks.

``import densevision`` imports them all, so recipes can name any built-in part and ``.keras`` checkpoints load in
safe mode. A plug-in registers itself the same way: import it before loading the recipe.
"""

import importlib

BUILTIN_MODULES = (
    "densevision.layers.preprocessing",
    "densevision.layers.padding",
    "densevision.layers.dense",
    "densevision.layers.context",
    "densevision.backbones.vgg",
    "densevision.backbones.resnet",
    "densevision.backbones.densenet",
    "densevision.heads.tiramisu",
    "densevision.heads.dilation",
    "densevision.heads.classifier",
    "densevision.data.camvid",
    "densevision.data.mask_folder",
    "densevision.data.image_folder",
    "densevision.tasks.losses",
    "densevision.tasks.segmentation",
    "densevision.tasks.classification",
    "densevision.engine.optim",
)


def load_builtin_parts() -> None:
    for name in BUILTIN_MODULES:
        importlib.import_module(name)
