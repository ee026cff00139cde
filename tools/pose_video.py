#!/usr/bin/env python
"""Draw the poses of the people in a video: an alias of ``densevision video`` with a pose recipe (see its --help):
``python tools/pose_video.py RECIPE --weights CKPT --input VIDEO|CAMERA_INDEX|IMAGE_FOLDER --output OUT.mp4``
``[--boxes BOXES.json | --single] [--det-every N] [--json OUT.json] [--kpt-thr T] [--smooth] [--draw-bbox]``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from densevision.commands import alias  # noqa: E402
from densevision.commands.video import build_parser  # noqa: E402,F401  (kept: the parser this script always had)

__all__ = ["build_parser", "main"]

main = alias("pose_video")

if __name__ == "__main__":
    sys.exit(main())
