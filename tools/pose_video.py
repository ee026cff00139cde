#!/usr/bin/env python
"""Draw the poses of the people in a video (an alias of ``densevision video`` with a pose recipe; see
:mod:`densevision.commands.video`):
``python tools/pose_video.py RECIPE --weights CKPT --input VIDEO|CAMERA_INDEX|IMAGE_FOLDER --output OUT.mp4``
``[--boxes BOXES.json | --single] [--det-every N] [--json OUT.json] [--kpt-thr T] [--smooth] [--draw-bbox]``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from densevision.cli import tool_main  # noqa: E402
from densevision.commands.video import build_parser, run  # noqa: E402

__all__ = ["build_parser", "main"]


@tool_main
def main(argv=None) -> int:
    return run(build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
