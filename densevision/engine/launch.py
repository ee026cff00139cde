"""What ``densevision train`` does, as a library function: recipe -> (demo data) -> strategy -> Trainer."""

from __future__ import annotations

from pathlib import Path

from densevision.engine.demo import load_tool_recipe
from densevision.engine.distribute import make_strategy
from densevision.engine import trainer
from densevision.files import check_writable_dir
from densevision.models import build_model
from densevision.recipes import RecipeError, load_recipe
from densevision.runs import RECIPE_FILE


def run_training(recipe_path: str | None, overrides: list[str] = (), output: str | None = None,
                 resume: str | None = None, demo: bool = False, dry_run: bool = False, progress: bool = True) -> int:
    """Validate, then train (or only build, with ``dry_run``; ``progress``: the per-epoch bar on a terminal).
    Returns 0.

    Everything a user can fix is checked before any work starts and raised as a
    :class:`~densevision.errors.DensevisionError` (recipe, dataset, output folder, checkpoint), which
    :mod:`densevision.cli` turns into one ``error:`` line and exit code 2.

    Raises:
        RecipeError: a missing or invalid recipe, a model that cannot be built (``dry_run``).
        OutputError: the output folder (``--output`` or ``output.dir``) is a file or not writable.
        DatasetError, CheckpointError, DistributeError: from opening the data and the run folder.
    """
    if resume:
        saved = Path(resume) / RECIPE_FILE
        if not saved.is_file():
            raise RecipeError(f"{saved}: not found; --resume takes a run folder made by densevision train")
        recipe = load_recipe(saved, overrides)
        check_writable_dir(resume, what="run folder")
    else:
        if recipe_path is None:
            raise RecipeError("a recipe file is required (or --resume RUN_DIR)")
        recipe = load_tool_recipe(recipe_path, overrides, demo=demo)
        if not dry_run:  # before the data is opened and the model built: fail in seconds, not minutes
            check_writable_dir(output or recipe.output.dir,
                               what="--output folder" if output else "output folder (output.dir)")

    if dry_run:
        try:
            model = build_model(recipe)
        except (ValueError, TypeError) as e:
            raise RecipeError(f"{recipe.source}: model could not be built: {e}") from None
        model.summary(line_length=110)
        print(f"recipe {recipe.source}: valid; model {recipe.model.name} has {model.count_params():,} parameters")
        return 0

    # MultiWorkerMirroredStrategy must exist before any other TensorFlow op runs (importing modules runs none).
    strategy = make_strategy(recipe.distribute.strategy, recipe.distribute.devices)
    trainer.train(recipe, output_dir=output, resume_dir=resume, strategy=strategy, progress=progress)
    return 0
