"""``build_model(recipe)``: the recipe's ``model`` section, handed to the registered builder."""

from __future__ import annotations

import keras

from densevision.registry import MODELS


def build_model(recipe) -> keras.Model:
    """Build the Keras model a recipe describes.

    ``recipe.model.name`` picks the builder from :data:`densevision.registry.MODELS`; every other key of the
    ``model`` section is passed as a keyword argument (already validated against the builder's signature).

    Returns:
        A ``keras.Model`` mapping float32 RGB images ``(B, H, W, 3)`` in [0, 255] to the task's float32 logits.
    """
    builder = MODELS.get(recipe.model.name)
    return builder(**recipe.model.kwargs())
