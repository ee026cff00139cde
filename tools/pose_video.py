#!/usr/bin/env python
"""Draw the poses of the people in a video:
``python tools/pose_video.py RECIPE --weights CKPT --input VIDEO|CAMERA_INDEX|IMAGE_FOLDER --output OUT.mp4``
``[--boxes BOXES.json | --single] [--json OUT.json] [--kpt-thr T] [--smooth] [--draw-boxes] [--overwrite]``.

People are found by OpenCV's HOG people detector (offline), read from ``--boxes``, or taken to be the whole frame
(``--single``); every person of a frame is posed in one batch, tracked (stable ids) and optionally smoothed
(One-Euro). The output keeps the input's frame size, frame rate and frame count; a frame that cannot be decoded is
replaced by the previous one and reported. ``--demo`` applies the recipe's demo settings (for checkpoints trained
with ``--demo``); without ``--weights`` it runs everything with a stand-in stick figure instead of a model. Bad
inputs exit 2 with one ``error:`` line.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import densevision  # noqa: E402,F401
from densevision.cli import tool_main  # noqa: E402
from densevision.video.cli import build_parser, pose_video_command  # noqa: E402


@tool_main
def main(argv=None) -> int:
    return pose_video_command(build_parser(__doc__).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
