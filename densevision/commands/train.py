"""Train a recipe: densevision train RECIPE [--set KEY=VALUE ...] [--demo] [--output DIR] [--resume RUN_DIR].

RECIPE is a recipe file, a built-in recipe's name (densevision train tiramisu56_camvid --demo) or a run folder (its
recipe.yaml, trained anew; --resume RUN_DIR continues it instead). Each run writes a
run folder <output.dir>/<recipe>/<time>/ holding recipe.yaml (the recipe as trained: --demo and --set applied),
checkpoints/best.keras and last.keras, and history.csv; every other command takes that folder in place of a recipe
and --weights. With --demo the recipe's demo: section (generated data, a short schedule) is applied first and --set
values win over it. On a terminal each epoch shows a progress bar; redirected, one plain line per epoch.

Exit status: 0 trained, 2 a recipe, dataset, output-folder or checkpoint problem (one error: line, before any
work), 1 an unexpected error (traceback in a log file), 130 interrupted.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from densevision.commands import options
from densevision.runs import RECIPE_FILE, is_run_dir


def build_parser() -> argparse.ArgumentParser:
    parser = options.new_parser("train", __doc__)
    parser.add_argument("recipe", nargs="?", metavar="RECIPE",
                        help="recipe file, built-in recipe name, or a run folder to train its recipe.yaml anew "
                             "(optional with --resume)")
    options.add_recipe_options(parser, demo_help="train on the task's generated demo data with the recipe's short "
                                                 "schedule (--set values win over it)")
    parser.add_argument("--output", metavar="DIR",
                        help="parent folder of the run folder (default: the recipe's output.dir)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run in place")
    parser.add_argument("--dry-run", action="store_true", help="validate the recipe, build the model, exit")
    options.add_run_options(parser)
    return parser


def run(args: argparse.Namespace) -> int:
    from densevision.engine.launch import run_training  # after parsing: it imports TensorFlow

    recipe = str(Path(args.recipe) / RECIPE_FILE) if args.recipe and is_run_dir(args.recipe) else args.recipe
    return run_training(recipe, args.overrides, output=args.output, resume=args.resume, demo=args.demo,
                        dry_run=args.dry_run, progress=not args.no_progress)
