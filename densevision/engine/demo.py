"""``--demo``: the task's generated data and the recipe's short schedule, so any recipe runs with no dataset."""

from __future__ import annotations

import os
from pathlib import Path

from densevision.files import cache_root
from densevision.recipes import Recipe, load_recipe, override_recipe, validate_recipe
from densevision.registry import TASKS


def demo_cache_dir(task: str) -> Path:
    """Where generated demo data lives: ``$DENSEVISION_CACHE`` or ``~/.cache/densevision``, then ``demo/<task>``."""
    return cache_root() / "demo" / task


def apply_demo(recipe: Recipe, directory: str | os.PathLike | None = None) -> Recipe:
    """Generate (once) the task's demo dataset and point the recipe at it.

    The recipe's own ``demo:`` overrides (short schedule, small crops) are applied by
    ``load_recipe(..., demo=True)``; this adds the data location the task's generator returns.
    """
    task_cls = TASKS.get(recipe.task)
    directory = Path(directory) if directory else demo_cache_dir(recipe.task)
    directory.mkdir(parents=True, exist_ok=True)
    overrides = task_cls.make_demo_data(str(directory))
    config = recipe.to_dict()
    for dotted, value in overrides.items():
        node = config
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return validate_recipe(config, source=recipe.source or "<recipe>")


def load_tool_recipe(path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = (),
                     demo: bool = False) -> Recipe:
    """The recipe a tool runs, the same way in every tool: loaded (with its ``demo:`` section under ``demo``),
    pointed at the task's generated demo data (``demo``), then the ``--set`` overrides applied again, so every
    command-line value wins over the demo (``--demo --set data.root=/my/data`` reads ``/my/data``).

    Raises:
        RecipeError: as :func:`densevision.recipes.load_recipe`.
    """
    recipe = load_recipe(path, list(overrides), demo=demo)
    if not demo:
        return recipe
    return override_recipe(apply_demo(recipe), list(overrides))
