"""The flags every command spells alike, so one name means one thing in every tool.

- a model: ``TARGET`` (a run folder, a recipe file or a built-in recipe name) and ``--weights`` (``best``, ``last``
  or a checkpoint file), ``--set KEY=VALUE``, ``--demo``;
- inputs: positional (files, folders, globs), ``--input`` as an alias;
- ``--flip-test`` (``--flip`` as an alias), ``--overwrite``, ``--no-progress``, ``--device cpu|gpu:N``, ``--debug``.

No TensorFlow here: parsers are built and ``--help`` answered before it loads.
"""

from __future__ import annotations

import argparse

from densevision.cli import add_common_arguments
from densevision.errors import UsageError


def new_parser(command: str, doc: str) -> argparse.ArgumentParser:
    """A parser named ``densevision COMMAND`` whose help is the module docstring (first line: the summary)."""
    return argparse.ArgumentParser(prog=f"densevision {command}", description=doc,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)


def add_model(parser: argparse.ArgumentParser, weights_required: bool = True, demo_help: str | None = None) -> None:
    """``TARGET [--weights best|last|FILE] [--set KEY=VALUE ...] [--demo]``."""
    parser.add_argument("target", metavar="RUN_DIR|RECIPE",
                        help="a run folder (its recipe.yaml and checkpoints/best.keras), a recipe file or a built-in "
                             "recipe name")
    parser.add_argument("--weights", metavar="best|last|FILE",
                        help="run folder: best (default) or last; else a checkpoint: .keras model or .weights.h5"
                             + (" (required with a recipe)" if weights_required else ""))
    add_recipe_options(parser, demo_help)


def add_recipe_options(parser: argparse.ArgumentParser, demo_help: str | None = None) -> None:
    """``--set KEY=VALUE ...`` and ``--demo``."""
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override recipe keys, e.g. --set data.root=/data/camvid optimizer.lr=1e-4")
    parser.add_argument("--demo", action="store_true",
                        help=demo_help or "a recipe's demo settings and generated demo data (for a checkpoint trained "
                                          "with --demo; a run folder needs no --demo)")


def add_inputs(parser: argparse.ArgumentParser, metavar: str = "INPUT",
               what: str = "image files, folders (walked recursively) or glob patterns") -> None:
    """Positional inputs, and ``--input`` as an alias (both may be given; they add up)."""
    parser.add_argument("inputs", nargs="*", metavar=metavar, help=what)
    parser.add_argument("--input", dest="more_inputs", nargs="+", action="extend", default=[], metavar=metavar,
                        help="same as the positional inputs")


def all_inputs(args: argparse.Namespace, what: str = "image files, folders or glob patterns") -> list[str]:
    """The positional and ``--input`` inputs together.

    Raises:
        UsageError: none at all (exit 2).
    """
    inputs = list(args.inputs) + list(args.more_inputs)
    if not inputs:
        raise UsageError(f"no input given: pass {what} (positionally or with --input)")
    return inputs


def add_flip_test(parser: argparse.ArgumentParser, meaning: str) -> None:
    """``--flip-test``, with ``--flip`` as an alias; ``meaning``: what it does in this command."""
    parser.add_argument("--flip-test", "--flip", dest="flip_test", action="store_true", help=meaning)


def add_overwrite(parser: argparse.ArgumentParser, what: str = "existing outputs") -> None:
    parser.add_argument("--overwrite", action="store_true", help=f"replace {what}")


def add_run_options(parser: argparse.ArgumentParser, progress: bool = True, device: bool = True) -> None:
    """``--no-progress`` (where a loop shows a bar), ``--device`` (where a model runs) and ``--debug``."""
    if progress:
        parser.add_argument("--no-progress", action="store_true",
                            help="no progress bar (a redirected run writes plain lines instead of a bar anyway)")
    if device:
        parser.add_argument("--device", metavar="cpu|gpu:N",
                            help="run on the CPU only, or on GPU N only (default: TensorFlow's choice)")
    add_common_arguments(parser)
