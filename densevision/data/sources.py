"""Opening the recipe's dataset: ``data.name`` picks a source from ``DATASETS``, ``data.*`` are its options."""

from __future__ import annotations

from densevision.registry import DATASETS


def resolve_split(recipe, split: str) -> str:
    """``"train"``/``"val"``/``"test"`` -> the recipe's split names (``data.val_split`` ...); others unchanged."""
    aliases = {"train": recipe.data.train_split, "val": recipe.data.val_split, "test": recipe.data.test_split}
    return aliases.get(split, split)


def open_source(recipe, split: str):
    """The recipe's dataset source for ``split`` (raises the source's ``DatasetError`` if it is unusable)."""
    return DATASETS.get(recipe.data.name)(root=recipe.data.root, split=split, **recipe.data.kwargs())
