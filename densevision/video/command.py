"""What ``densevision video`` (and ``tools/video.py``, ``tools/pose_video.py``) does: check every input and output up
front, build the task's pieces (a classifier with a fully connected head: the sliding heat map unless
``--no-sliding``), run the loop. (Formerly ``densevision/video/cli.py``, an alias kept.)

:func:`video_command` raises a :class:`~densevision.errors.DensevisionError` for an input or option that cannot be
used (unreadable video, camera that cannot open, empty folder, bad boxes file, existing or unwritable output or
JSON, no HOG in this OpenCV, detector preset not available, a ``--stride`` or ``--class`` the classifier cannot
use, a task's options on another task's recipe), before any frame is written; the front door
(:func:`densevision.cli.run_tool`) turns it into one ``error: ...`` line and exit 2, and Ctrl-C into exit 130
(nothing written: the writer is atomic). Corrupt frames are reported in the summary, not failures.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from densevision.cli import run_tool
from densevision.data.boxes import load_boxes_file
from densevision.engine.checkpoints import load_for_prediction, prediction_info
from densevision.engine.demo import load_tool_recipe
from densevision.inference.fully_convolutional import ConversionError
from densevision.inference.predictor import PredictOptions, make_forward
from densevision.inference.sliding import DEFAULT_MAX_PIXELS, check_stride, resolve_class, sliding_classifier
from densevision.files import check_writable_file
from densevision.models.classifier import head_for
from densevision.runs import is_run_dir, resolve_model_source
from densevision.video.defaults import DEFAULT_DET_EVERY
from densevision.video.demo import STICK_FIGURE_INFO, stick_figure_estimator
from densevision.video.detect import boxes_from_table, frames_beyond, make_person_detector, whole_frame_finder
from densevision.video.io import VideoError, VideoWriter, check_output_path, open_frames
from densevision.video.overlay import make_drawer
from densevision.video.pipeline import format_summary, run_pose_video, run_video
from densevision.video.tasks import classification_video, segmentation_video, sliding_video
from densevision.video.track import KeypointSmoother, Tracker


def make_estimator(recipe, weights: str, flip_test: bool = False, batch_size: int = 16
                   ) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The pose model of ``recipe`` with ``weights`` as ``estimate(frame uint8 (H, W, 3) RGB, boxes (N, 4)
    [x, y, w, h]) -> keypoints (N, J, 3) [x, y, score]`` in frame pixels: all N people of a frame in batches,
    through the pose task's crop, decode and flip test (:meth:`densevision.tasks.pose.PoseTask.estimate_people`,
    the code batch prediction uses too)."""
    if recipe.task != "pose":
        raise VideoError(f"recipe {recipe.name!r} is a {recipe.task} recipe; pose estimation needs a pose recipe")
    return _estimator(*_task_and_forward(recipe, weights, flip_test), batch_size)


def _estimator(task, forward, batch_size: int) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def estimate(frame: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        return task.estimate_people(forward, frame, boxes, batch_size=batch_size)

    return estimate


def _task_and_forward(recipe, weights: str, flip_test: bool):
    """The recipe's task and its compiled forward pass with the checkpoint's weights (checked against the recipe)."""
    model, task = load_for_prediction(recipe, weights, flip_test=flip_test)  # pose: flip test inside the forward
    return task, make_forward(model, task)


def pose_dataset_info(recipe) -> dict:
    """The dataset definition used for drawing and tracking (``skeleton``, ``joint_colors``, ``link_colors``,
    ``sigmas``), described by the recipe's dataset source without needing its data."""
    return dict(prediction_info(recipe))


def resolve_paths(args: argparse.Namespace) -> tuple[Optional[str], str]:
    """``(recipe, input)`` from the positional paths and ``--input``: ``RECIPE INPUT``, ``RECIPE --input INPUT``,
    or (``--demo`` without a recipe) ``INPUT`` alone.

    Raises:
        VideoError: no input, or more paths than a recipe and an input.
    """
    paths = list(getattr(args, "paths", []) or [])
    if getattr(args, "recipe", None):  # a parser of the old shape (RECIPE positional, --input required)
        paths.insert(0, args.recipe)
    given = getattr(args, "input_option", None) or getattr(args, "input", None)
    if given is not None:
        if len(paths) > 1:
            raise VideoError(f"--input {given} and the paths {paths}: give the recipe and then the input, once")
        return (paths[0] if paths else None), given
    if len(paths) == 2:
        return paths[0], paths[1]
    if len(paths) == 1 and args.demo and not args.weights:
        return None, paths[0]
    if len(paths) > 2:
        raise VideoError(f"expected RECIPE INPUT, got {len(paths)} paths: {' '.join(paths)}")
    raise VideoError("an INPUT is required: a video file, a camera index or an image folder (after the RECIPE)")


def _check_options(args: argparse.Namespace, recipe: Optional[str]) -> None:
    """Every option and output checked before any frame is read (a --json that cannot be written is found here,
    not after the whole video)."""
    if not args.demo and not recipe:
        raise VideoError("a RECIPE is required (or --demo for the stand-in stick figure)")
    if not args.demo and not args.weights:
        raise VideoError("--weights is required (or --demo for the stand-in stick figure)")
    if args.weights and not recipe:
        raise VideoError("--weights needs the RECIPE it was trained with")
    if args.smooth and args.track == "none":
        raise VideoError("--smooth filters each track's keypoints over time and needs tracking (--track iou|oks)")
    if args.radius < 1 or args.thickness < 1:
        raise VideoError(f"--radius and --thickness must be at least 1, got {args.radius} and {args.thickness}")
    if args.det_every is not None and args.det_every < 1:
        raise VideoError(f"--det-every must be at least 1, got {args.det_every}")
    if args.batch_size < 1 or args.top_k < 1:
        raise VideoError(f"--batch-size and --top-k must be at least 1, got {args.batch_size} and {args.top_k}")
    if not 0.0 <= args.opacity <= 1.0:
        raise VideoError(f"--opacity must be within [0, 1], got {args.opacity}")
    output = check_output_path(args.output, args.overwrite)
    check_writable_file(output, what="output video", overwrite=True)
    if args.json:
        json_path = Path(args.json)
        if json_path.resolve() == output.resolve():
            raise VideoError(f"--json {json_path} is the output video too; choose another file")
        check_writable_file(json_path, what="--json", overwrite=args.overwrite)


def _person_finder(args: argparse.Namespace, frames):
    """``(find_people, det_every)`` from --boxes / --single / --detector."""
    if args.boxes:
        table = load_boxes_file(args.boxes)
        beyond = frames_beyond(table, frames.frame_count)
        if beyond:
            print(f"note: boxes file {args.boxes} lists {len(beyond)} frame(s) past the input's "
                  f"{frames.frame_count} (first: {beyond[0]}); they are ignored", file=sys.stderr)
        return boxes_from_table(table, frames.frame_names), args.det_every or 1
    if args.single:
        return whole_frame_finder(), args.det_every or 1
    finder = make_person_detector(args.detector, score_threshold=args.bbox_thr, nms_iou=args.nms_thr,
                                  upscale=args.det_upscale)
    return finder, args.det_every or DEFAULT_DET_EVERY


def _pose_pieces(args, recipe) -> tuple[dict, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """``(dataset info, estimate)`` of the pose model, loaded (and checked against the recipe) before the input is
    opened: a checkpoint of another model is one error and writes nothing."""
    if args.demo and not args.weights:
        return STICK_FIGURE_INFO, stick_figure_estimator
    # one task for both: its dataset info (skeleton, colours, OKS sigmas) is read once
    task, forward = _task_and_forward(recipe, args.weights, args.flip_test)
    return task.info, _estimator(task, forward, args.batch_size)


def _run_pose(args, frames, writer, info, estimate) -> dict:
    if estimate is stick_figure_estimator:  # said once the input is open, after every one-line error
        print("note: --demo without --weights draws a stand-in stick figure in every box (no model)",
              file=sys.stderr)
    find_people, det_every = _person_finder(args, frames)
    tracker = None if args.track == "none" else Tracker(match=args.track, sigmas=info.get("sigmas"),
                                                        keypoint_threshold=args.kpt_thr)
    smoother = KeypointSmoother(frames.fps) if args.smooth else None
    draw = make_drawer(info, keypoint_threshold=args.kpt_thr, radius=args.radius, thickness=args.thickness,
                       draw_boxes=args.draw_boxes)
    return run_pose_video(frames, writer, find_people, estimate, draw, tracker=tracker, smoother=smoother,
                          json_path=args.json, progress=not args.no_progress, show_fps=args.fps_text,
                          det_every=det_every, keypoint_threshold=args.kpt_thr)


def _dense_pieces(args, recipe) -> tuple:
    """``(stages, draw, record)`` of a segmentation or classification recipe (:mod:`densevision.video.tasks`): the
    checkpoint loaded and every model-dependent option (``--stride``, ``--class``) checked, before a frame is read."""
    if recipe.task not in ("segmentation", "classification"):
        raise VideoError(f"recipe {recipe.name!r}: no video drawing for task {recipe.task!r} (segmentation, "
                         f"classification and pose have one)")
    if recipe.task == "classification" and _slides(args, recipe):
        return _sliding_pieces(args, recipe)
    task, forward = _task_and_forward(recipe, args.weights, args.flip_test)
    options = PredictOptions(flip=args.flip_test, top_k=args.top_k)
    if recipe.task == "segmentation":
        return segmentation_video(task, forward, options, opacity=args.opacity, legend=not args.no_legend)
    return classification_video(task, forward, options)


def _fc_head(recipe) -> bool:
    """Whether the recipe's classifier ends in fully connected layers (``model.head: fc``, or ``auto`` on a VGG):
    the sliding recipes, whose video is the class-score heat map by default."""
    options = recipe.model.kwargs()
    head = options.get("head", "auto")
    if head == "auto" and recipe.model.name == "classifier":
        try:
            head = head_for(str(options.get("backbone", "vgg16")))
        except ValueError:  # a backbone without a default head: not a sliding recipe
            return False
    return head == "fc"


def _slides(args, recipe) -> bool:
    """``--sliding``/``--no-sliding``, else the head's default; ``--stride``/``--class`` without sliding refused."""
    slides = _fc_head(recipe) if args.sliding is None else args.sliding
    given = _sliding_only_options(args)
    if not slides and given:
        why = ("--no-sliding turns it off" if args.sliding is False else
               f"recipe {recipe.name!r}'s classifier has no fully connected head; add --sliding to slide it")
        raise VideoError(f"{', '.join(given)}: options of the sliding heat map, but {why}")
    if slides and args.flip_test:
        raise VideoError("--flip-test: not with the sliding heat map (add --no-sliding for a flip-tested top-k)")
    return slides


def _sliding_pieces(args, recipe) -> tuple:
    """The sliding classification video (:func:`~densevision.video.tasks.sliding_video`) of a checkpoint."""
    model, task = load_for_prediction(recipe, args.weights)
    try:
        fc_model, window, net_stride = sliding_classifier(model)
    except ConversionError as error:
        raise VideoError(f"--sliding: the classifier of recipe {recipe.name!r} cannot slide: {error} "
                         f"(--no-sliding: the top-k of the resized frame)") from None
    stride = check_stride(args.stride, net_stride)
    chosen = resolve_class(args.heatmap_class, task.class_names)
    return sliding_video(fc_model, window, net_stride, task.class_names, stride=stride, k=args.top_k,
                         class_index=chosen, opacity=args.opacity, max_pixels=DEFAULT_MAX_PIXELS)


def _pose_only_options(args: argparse.Namespace) -> list[str]:
    given = [("--boxes", args.boxes), ("--single", args.single), ("--det-every", args.det_every),
             ("--smooth", args.smooth), ("--draw-bbox", args.draw_boxes), ("--detector", args.detector != "hog")]
    return [name for name, value in given if value]


def _sliding_only_options(args: argparse.Namespace) -> list[str]:
    given = [("--stride", args.stride is not None), ("--class", args.heatmap_class is not None)]
    return [name for name, value in given if value]


def _classification_only_options(args: argparse.Namespace) -> list[str]:
    sliding = [] if args.sliding is None else ["--sliding" if args.sliding else "--no-sliding"]
    return sliding + _sliding_only_options(args)


def _run(args: argparse.Namespace) -> int:
    recipe_path, input_path = resolve_paths(args)
    if recipe_path and is_run_dir(recipe_path):  # a run folder: its recipe as trained, its best (or --weights) checkpoint
        source = resolve_model_source(recipe_path, args.weights, demo=args.demo)
        recipe_path, args.weights = source.recipe, source.weights
    _check_options(args, recipe_path)
    recipe = None
    if recipe_path:
        # as the other tools: the demo dataset defines what a --demo checkpoint predicts; --set wins over --demo
        recipe = load_tool_recipe(recipe_path, list(args.overrides), demo=args.demo)
        if recipe.task != "pose" and _pose_only_options(args):
            raise VideoError(f"{', '.join(_pose_only_options(args))}: pose options, but recipe {recipe.name!r} is a "
                             f"{recipe.task} recipe")
        if recipe.task != "pose" and not args.weights:
            raise VideoError(f"--weights is required for a {recipe.task} video")
    if (recipe is None or recipe.task != "classification") and _classification_only_options(args):
        raise VideoError(f"{', '.join(_classification_only_options(args))}: classification options, but "
                         + (f"recipe {recipe.name!r} is a {recipe.task} recipe" if recipe else
                            "--demo without a recipe draws poses"))
    if args.boxes:  # the whole boxes file is checked before the video is opened
        load_boxes_file(args.boxes)
    # the model and its options before the input is opened: a bad --stride or --class writes nothing
    dense = _dense_pieces(args, recipe) if recipe is not None and recipe.task != "pose" else None
    pose = _pose_pieces(args, recipe) if dense is None else None
    with open_frames(input_path, fps=args.fps, max_frames=args.max_frames) as frames, \
            VideoWriter(args.output, frames.fps, frames.width, frames.height, overwrite=args.overwrite) as writer:
        if writer.fallback:
            print(writer.fallback, file=sys.stderr)
        if dense is None:
            summary = _run_pose(args, frames, writer, *pose)
        else:
            summary = run_video(frames, writer, *dense, json_path=args.json, task=recipe.task,
                                progress=not args.no_progress, show_fps=args.fps_text)
    print(format_summary(summary))
    return 0


def video_command(args: argparse.Namespace) -> int:
    """Run the video command with parsed ``args``; returns 0 (see the module docstring for what it raises)."""
    if not args.debug:
        # FFmpeg prints its own line for every damaged packet; the tool reports those frames itself. Read when
        # FFmpeg is first used, so it must be set before the first VideoCapture.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    return _run(args)


def pose_video_command(args: argparse.Namespace) -> int:
    """The name ``tools/pose_video.py`` used (kept): :func:`video_command` through the front door every command
    shares, so it returns the exit code (2 and one ``error:`` line for a bad input, 130 interrupted)."""
    return run_tool(lambda _: video_command(args), ["--debug"] if args.debug else [], tool="video")


__all__ = ["make_estimator", "pose_dataset_info", "pose_video_command", "resolve_paths",
           "video_command"]
