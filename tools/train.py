#!/usr/bin/env python
"""Train a recipe: ``python tools/train.py recipes/tiramisu_camvid.yaml [--set key=value ...] [--demo]``.

With ``--demo`` the recipe's ``demo:`` section (generated data, a short schedule) is applied first and ``--set``
values win over it. Exit status: 0 trained, 2 a recipe, dataset, output-folder or checkpoint problem (one
``error:`` line, before any work), 1 an unexpected error (traceback in a log file), 130 interrupted.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import densevision  # noqa: E402,F401
from densevision.cli import add_common_arguments, tool_main  # noqa: E402
from densevision.engine.launch import run_training  # noqa: E402


@tool_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", nargs="?", help="recipe YAML (optional with --resume)")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override recipe keys, e.g. --set optimizer.lr=1e-4 data.batch_size=8")
    parser.add_argument("--output", help="parent folder of the run folder (default: the recipe's output.dir)")
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run in place")
    parser.add_argument("--demo", action="store_true",
                        help="train on the task's generated demo data with the recipe's short schedule "
                             "(--set values win over it)")
    parser.add_argument("--dry-run", action="store_true", help="validate the recipe, build the model, exit")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    return run_training(args.recipe, args.overrides, output=args.output, resume=args.resume, demo=args.demo,
                        dry_run=args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
