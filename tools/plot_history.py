#!/usr/bin/env python
"""Draw a run's loss and metric curves: ``python tools/plot_history.py RUN_DIR [--output PNG]``."""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from densevision.engine.plots import plot_history  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", help="a run folder made by tools/train.py")
    parser.add_argument("--output", help="PNG path (default RUN_DIR/history.png)")
    args = parser.parse_args(argv)
    try:
        print(plot_history(args.run_dir, args.output))
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
