"""The ``densevision`` command: ``densevision COMMAND [ARGS]``, one module per command.

Each command module exposes ``build_parser() -> argparse.ArgumentParser`` and ``run(args) -> int``; its top imports
nothing heavy (no TensorFlow, no Keras), so ``densevision --help``, ``densevision COMMAND --help`` and
``densevision --version`` answer without loading TensorFlow. After parsing, the dispatcher applies ``--device``,
imports TensorFlow with its start-up notices hidden (all shown with ``--debug``) and runs the command through
:func:`densevision.cli.run_tool` (one ``error:`` line and exit 2 for an expected failure).

``tools/NAME.py`` are aliases: ``python tools/predict.py ...`` is ``densevision predict ...``.

Commands import the library, never the reverse. A command's body lives with the library part it drives
(:mod:`densevision.engine.launch`, :mod:`densevision.video.command`, ...) unless that would make the library reach
up for recipes and checkpoints: ``sliding_run.py`` holds ``densevision sliding``'s body, so
:mod:`densevision.inference.sliding` stays free of the engine (imported, like every body, only after parsing).
"""

from __future__ import annotations

import sys
from importlib import import_module
from typing import Callable, Optional, Sequence

from densevision import __version__
from densevision._env import import_tensorflow_quietly, select_device
from densevision.cli import EXIT_ERROR, run_tool
from densevision.errors import UsageError
from densevision.registry import did_you_mean

COMMANDS = ("train", "evaluate", "predict", "export", "video", "sliding", "summarize", "plot")
"""Every command, in the order ``densevision --help`` lists them."""

ALIASES = {"plot_history": "plot", "sliding_classify": "sliding", "pose_video": "video"}
"""The tools/ script names (``densevision sliding_classify`` = ``densevision sliding``)."""


def command_module(name: str):
    """The module of command ``name`` (an alias resolved)."""
    return import_module(f"densevision.commands.{ALIASES.get(name, name)}")


def summary(module) -> str:
    """A command's one-line summary: the first line of its module docstring, before its synopsis."""
    return (module.__doc__ or "").strip().splitlines()[0].split(": densevision")[0].rstrip(".:")


def usage() -> str:
    """``densevision --help``: the commands and what each does."""
    rows = "\n".join(f"  {name:<10} {summary(command_module(name))}" for name in COMMANDS)
    return (f"usage: densevision COMMAND [ARGS]   (densevision COMMAND --help for its options)\n\n"
            f"densevision {__version__}: dense-prediction vision on Keras 3.\n\ncommands:\n{rows}\n\n"
            f"A run folder (runs/<recipe>/<time>, made by `densevision train`) stands for its recipe and its best "
            f"checkpoint\nwherever a recipe and --weights are taken. Built-in recipes work by name "
            f"(densevision train tiramisu56_camvid --demo).\n")


def _run(module, name: str, argv: list[str]) -> int:
    parser = module.build_parser()
    args = parser.parse_intermixed_args(argv)  # inputs may come before or after the options
    if hasattr(sys.stdout, "reconfigure") and not sys.stdout.isatty():
        sys.stdout.reconfigure(line_buffering=True)  # a redirected log shows each epoch's line as it ends
    try:
        select_device(getattr(args, "device", None))
    except ValueError as error:
        raise UsageError(str(error)) from None
    import_tensorflow_quietly(debug=getattr(args, "debug", False))  # every command runs Keras
    return module.run(args)


def run_command(name: str, argv: Optional[Sequence[str]] = None) -> int:
    """``densevision NAME ARGV...``: parse, prepare the process, run; returns the exit status."""
    module = command_module(name)
    return run_tool(lambda arguments: _run(module, name, arguments), argv, tool=ALIASES.get(name, name))


def main(argv: Optional[Sequence[str]] = None) -> int:
    """The console script: ``densevision COMMAND ...``, ``densevision --help``, ``densevision --version``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        (sys.stdout if argv else sys.stderr).write(usage())
        return 0 if argv else EXIT_ERROR
    if argv[0] in ("-V", "--version"):
        print(f"densevision {__version__}")
        return 0
    name = argv[0]
    if name not in COMMANDS and name not in ALIASES:
        print(f"densevision: unknown command {name!r}{did_you_mean(name, COMMANDS)}; commands: "
              f"{', '.join(COMMANDS)} (densevision --help)", file=sys.stderr)
        return EXIT_ERROR
    return run_command(name, argv[1:])


def alias(name: str) -> Callable[[Optional[Sequence[str]]], int]:
    """``main(argv=None)`` of ``tools/NAME.py``: ``densevision NAME`` under the script's old name."""
    def tool_main(argv: Optional[Sequence[str]] = None) -> int:
        return run_command(name, sys.argv[1:] if argv is None else argv)

    tool_main.__doc__ = f"``densevision {name}`` (see ``densevision {name} --help``)."
    return tool_main
