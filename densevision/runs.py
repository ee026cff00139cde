"""Run folders as the unit a model is handed around in: ``RUN_DIR/recipe.yaml`` (the recipe exactly as trained:
``--demo`` and ``--set`` already applied) beside ``RUN_DIR/checkpoints/{best,last}.keras``.

:func:`resolve_model_source` turns what a command line names (a run folder, a recipe file or a built-in recipe's
name, and ``--weights``) into the recipe and checkpoint to load. Cheap to import (no TensorFlow): the command line
resolves before any model code loads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from densevision.errors import UsageError

RECIPE_FILE = "recipe.yaml"
"""The resolved recipe a training run writes into its folder."""
CHECKPOINTS = {"best": "checkpoints/best.keras", "last": "checkpoints/last.keras"}
"""``--weights`` keywords -> the checkpoints of a run folder (best by ``train.monitor``, and the latest epoch)."""


@dataclass(frozen=True)
class ModelSource:
    """What to load: a recipe (path or built-in name) and a checkpoint; ``run_dir`` when both came from a run."""

    recipe: str
    weights: Optional[str]
    run_dir: Optional[Path] = None


def is_run_dir(path: str | os.PathLike) -> bool:
    """``path`` is a folder holding a ``recipe.yaml`` (a run folder made by ``densevision train``)."""
    return (Path(path) / RECIPE_FILE).is_file()


def resolve_model_source(target: str | os.PathLike, weights: Optional[str] = None, demo: bool = False,
                         weights_required: bool = True) -> ModelSource:
    """The recipe and checkpoint a command line names.

    Args:
        target: a run folder, a recipe file or a built-in recipe's name.
        weights: ``None`` or ``"best"`` (a run folder's ``checkpoints/best.keras``), ``"last"``, or a checkpoint
            path (a ``.keras`` model or ``.weights.h5``; with a run folder, used with the run's recipe).
        demo: ``--demo`` was given; refused with a run folder, whose recipe already holds the demo settings.
        weights_required: a recipe without ``weights`` is an error (``False``: the caller can run without one).

    Raises:
        UsageError: a folder that is not a run folder, a run folder without the checkpoint asked for, ``--demo``
            with a run folder, a recipe without ``--weights``, or ``best``/``last`` with a recipe.
    """
    path = Path(target)
    if path.is_dir():
        if not is_run_dir(path):
            raise UsageError(f"{path}: a folder without {RECIPE_FILE} is not a run folder; give a run folder made by "
                             f"densevision train (runs/<recipe>/<time>), a recipe file or a built-in recipe name")
        if demo:
            raise UsageError(f"--demo: {path / RECIPE_FILE} already holds the settings the run was trained with "
                             f"(--demo and --set included); drop --demo")
        keyword = "best" if weights is None else weights
        if keyword in CHECKPOINTS:
            checkpoint = path / CHECKPOINTS[keyword]
            if not checkpoint.is_file():
                other = path / CHECKPOINTS["last" if keyword == "best" else "best"]
                hint = (f"; --weights {other.stem} picks {other}" if other.is_file()
                        else "; no epoch of this run finished yet")
                raise UsageError(f"run folder {path}: {checkpoint} does not exist{hint}")
            return ModelSource(str(path / RECIPE_FILE), str(checkpoint), path)
        return ModelSource(str(path / RECIPE_FILE), keyword, path)
    if weights in CHECKPOINTS and not Path(weights).exists():
        raise UsageError(f"--weights {weights}: picks a checkpoint of a run folder, but {target} is a recipe; give "
                         f"the run folder instead, or a checkpoint file")
    if weights is None and weights_required:
        raise UsageError(f"--weights is required with a recipe ({target}); or give a run folder instead, whose "
                         f"{CHECKPOINTS['best']} is used")
    return ModelSource(str(target), weights)
