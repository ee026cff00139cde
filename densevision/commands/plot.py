"""Draw a run's loss and metric curves: densevision plot RUN_DIR [--output PNG] [--overwrite].

An existing picture is replaced only with --overwrite. Exit status: 0 drawn, 2 not a run folder or an output that
cannot be written, 1 an unexpected error (traceback in a log file).
"""

from __future__ import annotations

import argparse

from densevision.commands import options


def build_parser() -> argparse.ArgumentParser:
    parser = options.new_parser("plot", __doc__)
    parser.add_argument("run_dir", metavar="RUN_DIR", help="a run folder made by densevision train")
    parser.add_argument("--output", metavar="PNG", help="PNG path (default RUN_DIR/history.png)")
    options.add_overwrite(parser, "an existing picture")
    options.add_run_options(parser, progress=False, device=False)
    return parser


def run(args: argparse.Namespace) -> int:
    from densevision.engine.plots import plot_history  # after parsing: it imports Keras and matplotlib

    print(plot_history(args.run_dir, args.output, overwrite=args.overwrite))
    return 0
