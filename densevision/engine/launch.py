"""What ``tools/train.py`` does, as a library function: recipe -> (demo data) -> strategy -> Trainer."""

from __future__ import annotations

import sys
from pathlib import Path

from densevision.recipes import RecipeError, load_recipe

EXIT_RECIPE_ERROR = 2


def run_training(recipe_path: str | None, overrides: list[str] = (), output: str | None = None,
                 resume: str | None = None, demo: bool = False, dry_run: bool = False) -> int:
    """Validate, then train (or only build, with ``dry_run``). Returns the process exit code.

    Recipe and dataset errors print one message on stderr and return 2 before any work starts.
    """
    from densevision.data.errors import DatasetError

    try:
        if resume:
            saved = Path(resume) / "recipe.yaml"
            if not saved.is_file():
                raise RecipeError(f"{saved}: not found; --resume takes a run folder made by tools/train.py")
            recipe = load_recipe(saved, overrides)
        else:
            if recipe_path is None:
                raise RecipeError("a recipe file is required (or --resume RUN_DIR)")
            recipe = load_recipe(recipe_path, overrides, demo=demo)
            if demo:
                from densevision.engine.demo import apply_demo

                recipe = apply_demo(recipe)
    except (RecipeError, DatasetError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_RECIPE_ERROR

    if dry_run:
        from densevision.models import build_model

        try:
            model = build_model(recipe)
        except (ValueError, TypeError) as e:
            print(f"error: {recipe.source}: model could not be built: {e}", file=sys.stderr)
            return EXIT_RECIPE_ERROR
        model.summary(line_length=110)
        print(f"recipe {recipe.source}: valid; model {recipe.model.name} has {model.count_params():,} parameters")
        return 0

    from densevision.engine.checkpoints import CheckpointError
    from densevision.engine.distribute import DistributeError, make_strategy

    try:
        # MultiWorkerMirroredStrategy must exist before any other TensorFlow op runs.
        strategy = make_strategy(recipe.distribute.strategy, recipe.distribute.devices)
        from densevision.engine.trainer import train

        train(recipe, output_dir=output, resume_dir=resume, strategy=strategy)
    except DatasetError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_RECIPE_ERROR
    except (CheckpointError, DistributeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0
