#!/usr/bin/env python
"""Draw a run's loss and metric curves: ``python tools/plot_history.py RUN_DIR [--output PNG] [--overwrite]``.

An existing picture is replaced only with ``--overwrite``. Exit status: 0 drawn, 2 not a run folder or an
output that cannot be written, 1 an unexpected error (traceback in a log file).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import densevision  # noqa: E402,F401
from densevision.cli import add_common_arguments, tool_main  # noqa: E402
from densevision.engine.plots import plot_history  # noqa: E402


@tool_main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", help="a run folder made by tools/train.py")
    parser.add_argument("--output", help="PNG path (default RUN_DIR/history.png)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing picture")
    add_common_arguments(parser)
    args = parser.parse_args(argv)
    print(plot_history(args.run_dir, args.output, overwrite=args.overwrite))
    return 0


if __name__ == "__main__":
    sys.exit(main())
