"""Draw the poses of the people in a video: densevision video [RUN_DIR|RECIPE] [--weights W] INPUT --output OUT.mp4.

INPUT (positional or --input) is a video file, a camera index such as 0, or a folder of images. People are found by
OpenCV's HOG people detector (offline), read from --boxes, or taken to be the whole frame (--single); every person
of a frame is posed in one batch, tracked (stable ids) and optionally smoothed (One-Euro). The output keeps the
input's frame size, frame rate and frame count; a frame that cannot be decoded is replaced by the previous one and
reported. A run folder brings its recipe and checkpoints/best.keras. --demo without a model runs everything with a
stand-in stick figure. Bad inputs exit 2 with one error: line.
"""

from __future__ import annotations

import argparse

from densevision.commands import options
from densevision.errors import UsageError
from densevision.runs import is_run_dir, resolve_model_source


def build_parser() -> argparse.ArgumentParser:
    parser = options.new_parser("video", __doc__)
    parser.add_argument("--weights", metavar="best|last|FILE",
                        help="run folder: best (default) or last; else a checkpoint: .keras model or .weights.h5")
    options.add_recipe_options(parser, demo_help="the recipe's demo settings (for a checkpoint trained with --demo); "
                                                 "without a model, a stand-in stick figure in every box")
    options.add_inputs(parser, metavar="[RUN_DIR|RECIPE] INPUT",
                       what="a run folder, a pose recipe file or a built-in recipe name (optional with --demo), then "
                            "the input: a video file, a camera index such as 0, or a folder of images (natural name "
                            "order)")
    parser.add_argument("--output", required=True, metavar="OUT.mp4",
                        help="annotated video: .mp4 (mp4v) or .avi (MJPG); same size, frame rate and frame count")
    finder = parser.add_mutually_exclusive_group()
    finder.add_argument("--boxes", metavar="JSON", help="people boxes per frame instead of the HOG detector")
    finder.add_argument("--single", action="store_true", help="the whole frame is one person (no detector)")
    parser.add_argument("--json", metavar="OUT.json", help="per-frame people, boxes, track ids and keypoints")
    parser.add_argument("--kpt-thr", type=float, default=0.3, help="draw joints scoring at least this (0.3)")
    parser.add_argument("--bbox-thr", "--det-thr", dest="det_thr", type=float, default=0.3,
                        help="HOG detector score threshold (0.3)")
    parser.add_argument("--det-upscale", type=float, default=1.0,
                        help="resize frames by this before HOG detection (>1 finds people under ~128 px tall)")
    parser.add_argument("--smooth", action="store_true", help="One-Euro smoothing of each track's keypoints")
    parser.add_argument("--track", choices=("iou", "oks", "none"), default="iou",
                        help="track ids by box IoU (default) or keypoint OKS, or none")
    parser.add_argument("--radius", type=int, default=3, help="joint circle radius in pixels (3)")
    parser.add_argument("--thickness", type=int, default=2, help="skeleton line width in pixels (2)")
    parser.add_argument("--draw-bbox", "--draw-boxes", dest="draw_boxes", action="store_true",
                        help="draw people boxes and track ids")
    options.add_flip_test(parser, "average the pose with its mirror (slower)")
    parser.add_argument("--fps", type=float, help="frame rate of an image folder (default 25) or a video override")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames (e.g. for a camera)")
    parser.add_argument("--no-fps-text", action="store_true", help="do not write the FPS counter on frames")
    options.add_overwrite(parser, "an existing output video / JSON")
    options.add_run_options(parser)
    parser.set_defaults(heatmap=False)  # densevision.video.cli still reads it; the flag did nothing and is gone
    return parser


def run(args: argparse.Namespace) -> int:
    from densevision.recipes import builtin_recipe_names  # after parsing: pydantic and OmegaConf take 0.3 s

    # The first positional names the model when it is one (--demo runs without a model); the rest are the input.
    first = args.inputs[0] if args.inputs else None
    names_model = first is not None and (is_run_dir(first) or first.endswith((".yaml", ".yml"))
                                         or first in builtin_recipe_names())
    args.target, args.inputs = (first, args.inputs[1:]) if names_model else (None, args.inputs)
    inputs = options.all_inputs(args, what="a video file, a camera index or a folder of images")
    if len(inputs) != 1:
        raise UsageError(f"one video input at a time, got {len(inputs)}: {', '.join(inputs)}")
    args.input = inputs[0]
    if args.target is not None and (is_run_dir(args.target) or args.weights is not None):
        source = resolve_model_source(args.target, args.weights, demo=args.demo)
        args.recipe, args.weights = source.recipe, source.weights
    else:
        args.recipe = args.target
    from densevision.video.cli import pose_video_command  # after parsing: it imports OpenCV and TensorFlow

    return pose_video_command(args)
