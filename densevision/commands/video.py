"""Draw a model's answers on every frame of a video, a camera or an image folder.

    densevision video RECIPE INPUT --weights CKPT --output OUT.mp4 [--json OUT.json] [task options]

The recipe's task decides what is drawn: segmentation the colour mask (``--opacity``, a legend of the classes
present), classification the top-k labels (``--top-k``; a classifier with a fully connected head, as the sliding
recipes, is slid over the whole frame and draws the class-score heat map of its top-1 class or ``--class``,
``--stride``; ``--no-sliding`` turns that off), pose the skeletons of the people found by OpenCV's HOG
detector every ``--det-every`` frames and followed by their own keypoints in between (or read from ``--boxes``,
or ``--single``: the whole frame is one person). The output keeps the input's frame size, rate and count (H.264
in .mp4 when imageio-ffmpeg is installed, mp4v otherwise; MJPG in .avi); a corrupt frame is replaced by the
previous one, counted and marked in the JSON; images of other sizes in a folder are letterboxed. ``--demo``
applies the recipe's demo settings (for checkpoints trained with ``--demo``); for pose without ``--weights`` it
draws a stand-in stick figure in every box (no model). Bad inputs exit 2 with one ``error:`` line.

This module imports no TensorFlow at its top: ``--help`` answers at once.
"""

from __future__ import annotations

import argparse

from densevision.video.defaults import DEFAULT_DET_EVERY


def build_parser(description: str = __doc__) -> argparse.ArgumentParser:
    """The ``densevision video`` / ``tools/video.py`` / ``tools/pose_video.py`` command line."""
    parser = argparse.ArgumentParser(prog="densevision video", description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("paths", nargs="*", metavar="[RECIPE] INPUT",
                        help="the recipe (YAML or built-in name), then the input: a video file, a camera index such "
                             "as 0, or a folder of images (natural name order)")
    parser.add_argument("--input", dest="input_option", metavar="VIDEO|CAMERA_INDEX|IMAGE_FOLDER",
                        help="the input, as an option (then the one positional path is the recipe)")
    parser.add_argument("--weights", help="checkpoint: .keras model or .weights.h5")
    parser.add_argument("--output", required=True, metavar="OUT.mp4",
                        help="drawn video: .mp4/.m4v/.mov (H.264, else mp4v) or .avi (MJPG); same size, frame rate "
                             "and frame count as the input")
    parser.add_argument("--json", metavar="OUT.json", help="per-frame answers (pose: people, boxes, track ids, "
                        "keypoints; segmentation: class fractions; classification: top-k)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output video and --json")
    parser.add_argument("--flip-test", "--flip", dest="flip_test", action="store_true",
                        help="average the answer with that of the mirrored input (slower)")
    parser.add_argument("--batch-size", type=int, default=16, help="pose: people per forward pass (16)")
    parser.add_argument("--fps", type=float, help="frame rate of an image folder (default 25) or a video override")
    parser.add_argument("--max-frames", type=int, help="stop after this many frames (e.g. for a camera)")
    parser.add_argument("--fps-text", action="store_true", help="write the measured frames/s on every frame")
    parser.add_argument("--no-fps-text", action="store_true", help=argparse.SUPPRESS)  # the default since --fps-text
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument("--device", metavar="cpu|gpu:N",
                        help="run on the CPU only, or on GPU N only (default: TensorFlow's choice)")
    parser.add_argument("--demo", action="store_true",
                        help="the recipe's demo settings (for a checkpoint trained with --demo); pose without "
                             "--weights: a stand-in stick figure in every box (tries the video pipeline)")
    parser.add_argument("--debug", action="store_true", help="full tracebacks and FFmpeg's own messages")
    parser.add_argument("--set", dest="overrides", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override recipe keys")

    segmentation = parser.add_argument_group("segmentation")
    segmentation.add_argument("--opacity", type=float, default=0.5,
                              help="weight of the class colours (sliding classification: of the heat map) (0.5)")
    segmentation.add_argument("--no-legend", action="store_true", help="no legend of the classes present")
    classification = parser.add_argument_group("classification")
    classification.add_argument("--top-k", type=int, default=3, help="classes listed per frame (3)")
    classification.add_argument("--sliding", action=argparse.BooleanOptionalAction, default=None,
                                help="slide the classifier over the whole frame and draw the class-score heat map "
                                     "of the top-1 class (the default for a fully connected head, model.head: fc); "
                                     "--no-sliding: the top-k of the frame resized to the model's input")
    classification.add_argument("--stride", type=int, metavar="N",
                                help="sliding stride in pixels, a divisor of the network stride (default: the "
                                     "network stride, one pass per frame)")
    classification.add_argument("--class", dest="heatmap_class", metavar="NAME",
                                help="sliding: draw the heat map of this class (a name or an index) in every frame "
                                     "(default: each frame's top-1)")

    pose = parser.add_argument_group("pose")
    finder = pose.add_mutually_exclusive_group()
    finder.add_argument("--boxes", metavar="JSON", help="people boxes per frame instead of a detector (the format "
                        "of densevision.data.boxes; a --json of an earlier run works)")
    finder.add_argument("--single", action="store_true", help="the whole frame is one person (no detector)")
    finder.add_argument("--detector", default="hog", metavar="hog|keras_hub:PRESET",
                        help="person finder: OpenCV's HOG (offline, default) or a keras-hub COCO object detector "
                             "preset (person class only; downloads once; needs keras-hub)")
    pose.add_argument("--det-every", type=int, metavar="N",
                      help=f"run the person finder every N frames and follow people by their keypoints in between "
                           f"(default {DEFAULT_DET_EVERY} with a detector, 1 with --boxes/--single)")
    pose.add_argument("--kpt-thr", type=float, default=0.3,
                      help="draw joints scoring at least this; a followed pose with fewer than 3 is lost (0.3)")
    pose.add_argument("--bbox-thr", "--det-thr", dest="bbox_thr", type=float, default=0.3,
                      help="person finder score threshold (0.3)")
    pose.add_argument("--nms-thr", type=float, default=0.4, help="person finder NMS IoU threshold (0.4)")
    pose.add_argument("--det-upscale", type=float, default=1.0,
                      help="HOG: resize frames by this before detecting (>1 finds people under ~128 px tall)")
    pose.add_argument("--smooth", action="store_true", help="One-Euro smoothing of each track's keypoints")
    pose.add_argument("--track", choices=("iou", "oks", "none"), default="iou",
                      help="track ids by box IoU (default) or keypoint OKS, or none")
    pose.add_argument("--radius", type=int, default=3, help="joint circle radius in pixels (3)")
    pose.add_argument("--thickness", type=int, default=2, help="skeleton line width in pixels (2)")
    pose.add_argument("--draw-bbox", "--draw-boxes", dest="draw_boxes", action="store_true",
                      help="draw people boxes and track ids")
    return parser


def run(args: argparse.Namespace) -> int:
    """Run the command with parsed ``args``; returns the exit code (0 done, 2 bad input, 130 interrupted)."""
    from densevision.video.command import video_command  # TensorFlow and OpenCV load here, not for --help

    return video_command(args)
