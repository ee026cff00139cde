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

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

import densevision  # noqa: E402,F401
from densevision.cli import tool_main  # noqa: E402
from densevision.video.cli import pose_video_command  # noqa: E402


def build_parser(description: str = "") -> argparse.ArgumentParser:
    """The ``tools/pose_video.py`` command line."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("recipe", nargs="?", help="pose recipe YAML (the model and its dataset's skeleton)")
    parser.add_argument("--weights", help="checkpoint: .keras model or .weights.h5")
    parser.add_argument("--input", required=True, metavar="VIDEO|CAMERA_INDEX|IMAGE_FOLDER",
                        help="a video file, a camera index such as 0, or a folder of images (natural name order)")
    parser.add_argument("--output", required=True, metavar="OUT.mp4",
                        help="annotated video: .mp4 (mp4v) or .avi (MJPG); same size, frame rate and frame count")
    finder = parser.add_mutually_exclusive_group()
    finder.add_argument("--boxes", metavar="JSON", help="people boxes per frame instead of the HOG detector: "
                        "{\"frames\": [{\"frame\": i, \"boxes\": [[x, y, w, h(, score)], ...]}]} or "
                        "[{\"frame\": i, \"bbox\": [x, y, w, h], \"score\": s}, ...]")
    finder.add_argument("--single", action="store_true", help="the whole frame is one person (no detector)")
    parser.add_argument("--json", metavar="OUT.json", help="per-frame people, boxes, track ids and keypoints")
    parser.add_argument("--kpt-thr", type=float, default=0.3, help="draw joints scoring at least this (0.3)")
    parser.add_argument("--smooth", action="store_true", help="One-Euro smoothing of each track's keypoints")
    parser.add_argument("--track", choices=("iou", "oks", "none"), default="iou",
                        help="track ids by box IoU (default) or keypoint OKS, or none")
    parser.add_argument("--radius", type=int, default=3, help="joint circle radius in pixels (3)")
    parser.add_argument("--thickness", type=int, default=2, help="skeleton line width in pixels (2)")
    parser.add_argument("--draw-boxes", action="store_true", help="draw people boxes and track ids")
    parser.add_argument("--heatmap", action="store_true", help="blend the pose heatmaps over the frame")
    parser.add_argument("--det-thr", type=float, default=0.3, help="HOG detector score threshold (0.3)")
    parser.add_argument("--det-upscale", type=float, default=1.0,
                        help="resize frames by this before HOG detection (>1 finds people under ~128 px tall)")
    parser.add_argument("--flip-test", action="store_true", help="average the pose with its mirror (slower)")
    parser.add_argument("--fps", type=float, help="frame rate of an image folder (default 25) or a video override")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames (e.g. for a camera)")
    parser.add_argument("--no-fps-text", action="store_true", help="do not write the FPS counter on frames")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output video / JSON")
    parser.add_argument("--demo", action="store_true",
                        help="the recipe's demo settings (for a checkpoint trained with --demo); without "
                             "--weights, a stand-in stick figure in every box (tries the video pipeline)")
    parser.add_argument("--debug", action="store_true", help="full tracebacks and FFmpeg's own messages")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override recipe keys")
    return parser


@tool_main
def main(argv=None) -> int:
    return pose_video_command(build_parser(__doc__).parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
