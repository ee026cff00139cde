"""What ``tools/pose_video.py`` does: check every input, pick the person finder, build the pieces, run the loop.

Exit codes: 0 done (corrupt frames are reported in the summary, not failures); 2 one ``error: ...`` line for an
input or option that cannot be used (unreadable video, camera that cannot open, empty folder, bad boxes file,
existing output, no HOG in this OpenCV, pose estimator not available); 130 interrupted (nothing written).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from densevision.errors import DensevisionError
from densevision.video.detect import (DetectorUnavailableError, HogPersonDetector, boxes_from_table, frames_beyond,
                                      load_boxes_json, whole_frame_finder)
from densevision.video.io import VideoError, VideoWriter, check_output_path, open_frames
from densevision.video.overlay import make_drawer
from densevision.video.pipeline import format_summary, run_pose_video
from densevision.video.track import KeypointSmoother, Tracker


def make_estimator(recipe, weights: str, flip_test: bool = False, batch_size: int = 16
                   ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The pose model of ``recipe`` with ``weights`` as ``estimate(frame uint8 (H, W, 3) RGB, boxes (N, 4)
    [x, y, w, h]) -> keypoints (N, J, 3) [x, y, score]`` in frame pixels: all N people of a frame in batches,
    through the pose task's crop, decode and flip test (:meth:`densevision.tasks.pose.PoseTask.estimate_people`,
    the code batch prediction uses too)."""
    from densevision.engine.checkpoints import load_checkpoint
    from densevision.engine.compat import check_checkpoint_matches
    from densevision.engine.predictor import make_forward, prediction_info
    from densevision.registry import TASKS

    if recipe.task != "pose":
        raise VideoError(f"recipe {recipe.name!r} is a {recipe.task} recipe; the video tool needs a pose recipe")
    info = prediction_info(recipe)
    task = TASKS.get(recipe.task)(recipe, info)
    task.flip_test = task.flip_test or flip_test
    model = load_checkpoint(weights, recipe)
    check_checkpoint_matches(model, recipe, info, weights, task=task)
    forward = make_forward(model, task)

    def estimate(frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        return task.estimate_people(forward, frame, boxes, batch_size=batch_size)

    return estimate


def pose_dataset_info(recipe) -> dict:
    """The dataset definition used for drawing and tracking (``skeleton``, ``joint_colors``, ``link_colors``,
    ``sigmas``), described by the recipe's dataset source without needing its data."""
    from densevision.engine.predictor import prediction_info

    return dict(prediction_info(recipe))


def _check_options(args: argparse.Namespace) -> None:
    if not args.demo and not args.recipe:
        raise VideoError("a RECIPE is required (or --demo for the stand-in stick figure)")
    if not args.demo and not args.weights:
        raise VideoError("--weights is required (or --demo for the stand-in stick figure)")
    if args.weights and not args.recipe:
        raise VideoError("--weights needs the RECIPE it was trained with")
    if args.smooth and args.track == "none":
        raise VideoError("--smooth filters each track's keypoints over time and needs tracking (--track iou|oks)")
    if args.radius < 1 or args.thickness < 1:
        raise VideoError(f"--radius and --thickness must be at least 1, got {args.radius} and {args.thickness}")
    check_output_path(args.output, args.overwrite)
    if args.json:
        json_path = Path(args.json)
        if json_path.resolve() == Path(args.output).resolve():
            raise VideoError(f"--json {json_path} is the output video too; choose another file")
        if json_path.exists() and not args.overwrite:
            raise VideoError(f"--json {json_path} already exists; pass --overwrite to replace it")


def _run(args: argparse.Namespace) -> int:
    _check_options(args)
    table = load_boxes_json(args.boxes) if args.boxes else None
    with open_frames(args.input, fps=args.fps, max_frames=args.max_frames) as frames:
        if table is not None:
            beyond = frames_beyond(table, frames.frame_count)
            if beyond:
                print(f"note: boxes file {args.boxes} lists {len(beyond)} frame(s) past the input's "
                      f"{frames.frame_count} (first: {beyond[0]}); they are ignored", file=sys.stderr)
            find_people = boxes_from_table(table)
        elif args.single:
            find_people = whole_frame_finder()
        else:
            find_people = HogPersonDetector(score_threshold=args.det_thr, upscale=args.det_upscale)

        if args.demo and not args.weights:
            from densevision.video.demo import STICK_FIGURE_INFO, stick_figure_estimator

            print("note: --demo without --weights draws a stand-in stick figure in every box (no model)",
                  file=sys.stderr)
            info, estimate = STICK_FIGURE_INFO, stick_figure_estimator
        else:
            from densevision.engine.demo import load_tool_recipe

            # as the other tools: the demo dataset defines the joints a --demo checkpoint predicts; --set wins
            recipe = load_tool_recipe(args.recipe, list(args.overrides), demo=args.demo)
            estimate = make_estimator(recipe, args.weights, flip_test=args.flip_test)
            info = pose_dataset_info(recipe)
        if args.heatmap:
            print("note: --heatmap needs heatmaps from the pose estimator, which it does not return yet; "
                  "skeletons are drawn without the blend", file=sys.stderr)

        tracker = None if args.track == "none" else Tracker(match=args.track, sigmas=info.get("sigmas"),
                                                            keypoint_threshold=args.kpt_thr)
        smoother = KeypointSmoother(frames.fps) if args.smooth else None
        draw = make_drawer(info, keypoint_threshold=args.kpt_thr, radius=args.radius, thickness=args.thickness,
                           draw_boxes=args.draw_boxes)
        writer = VideoWriter(args.output, frames.fps, frames.width, frames.height, overwrite=args.overwrite)
        summary = run_pose_video(frames, writer, find_people, estimate, draw, tracker=tracker, smoother=smoother,
                                 json_path=args.json, progress=not args.no_progress, show_fps=not args.no_fps_text)
    print(format_summary(summary))
    return 0


def pose_video_command(args: argparse.Namespace) -> int:
    """Run ``tools/pose_video.py`` with parsed ``args``; returns the exit code (see the module docstring)."""
    if not args.debug:
        # FFmpeg prints its own line for every damaged packet; the tool reports those frames itself. Read when
        # FFmpeg is first used, so it must be set before the first VideoCapture.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    try:
        return _run(args)
    except (DensevisionError, DetectorUnavailableError) as error:  # every expected failure: one line, exit 2
        if args.debug:
            raise
        print(f"error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no output written", file=sys.stderr)
        return 130
