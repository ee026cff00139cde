#!/usr/bin/env python
"""The pose video's default person finder (detect every N frames, follow people by their keypoints in between)
against the same run fed its own boxes, and against detection on every frame, in one run.

    python benchmarks/pose_video.py [--video CLIP] [--loops 4] [--recipe recipes/hourglass_lsp.yaml]
                                    [--weights CKPT] [--size 128] [--det-every 1 3 5 10] [--kpt-thr 0.3]

The clip (default ``$DENSEVISION_DATA/video/demo.mp4`` or ``../shared/data/video/demo.mp4``) is played forwards
and backwards ``--loops`` times through an image folder (no jump at the loop point, long enough to time) and goes
through the tool's own code (:func:`densevision.video.pipeline.run_pose_video`: threaded decoding, OpenCV's HOG
people detector, top-down pose of every person of a frame in one batch, tracking, drawing, writing H.264). Runs:

- ``default``: HOG every ``DEFAULT_DET_EVERY`` frames (``densevision.commands.video``), followed in between;
- ``--boxes``: the same run fed the boxes the default run posed (its own ``--json``) on every frame: the tool
  without the detector's cost, the goal being default / boxes >= 0.8;
- ``det-every N`` for each ``--det-every`` (1 is detection on every frame, the behaviour before following).

Printed for each: frames/s, the ratio to ``--boxes``, people per frame, distinct track ids and detector runs.
Without ``--weights`` a seeded random model is timed; its poses collapse at once, so the follower re-detects on
almost every frame: pass a trained checkpoint to see following.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import densevision  # noqa: E402,F401
from densevision.commands.video import DEFAULT_DET_EVERY  # noqa: E402
from densevision.data.paths import dataset_dir  # noqa: E402


def ping_pong(count: int, loops: int) -> list[int]:
    """Frame order ``0..n-1, n-2..1, 0..`` for ``loops`` passes: motion stays continuous at the loop points."""
    forward_and_back = list(range(count)) + list(range(count - 2, 0, -1))
    return [forward_and_back[i % len(forward_and_back)] for i in range(max(1, len(forward_and_back)) * loops)]


def video_benchmark_arguments(description: str, recipe: str, loops: int) -> argparse.ArgumentParser:
    """The options the video benchmarks share: the clip, how often to play it, the recipe and its checkpoint."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", help="a video file (default: the shared demo clip)")
    parser.add_argument("--loops", type=int, default=loops, help=f"play the clip this many times ({loops})")
    parser.add_argument("--recipe", default=str(Path(__file__).resolve().parents[1] / "recipes" / recipe))
    parser.add_argument("--weights", help="a checkpoint of the recipe (default: seeded random weights)")
    parser.add_argument("--demo", action="store_true", help="the recipe's demo settings (a --demo checkpoint)")
    return parser


def read_clip(video_option) -> tuple[Path, list, float]:
    """``(path, BGR frames, fps)`` of ``--video`` or the shared demo clip; empty frames when there is none."""
    import cv2

    video = Path(video_option) if video_option else (dataset_dir("video") or Path("missing")) / "demo.mp4"
    capture = cv2.VideoCapture(str(video))
    clip = []
    while video.is_file():
        ok, frame = capture.read()
        if not ok:
            break
        clip.append(frame)
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    capture.release()
    if not clip:
        print(f"no clip at {video}: pass --video FILE or set DENSEVISION_DATA", file=sys.stderr)
    return video, clip, fps


def model_of(args, overrides: list[str]):
    """``(recipe, task, forward)``: the recipe (with ``--demo``), its task and the compiled forward pass of the
    checkpoint (or of seeded random weights)."""
    from densevision.engine.checkpoints import load_checkpoint
    from densevision.engine.checkpoints import prediction_info
    from densevision.inference.predictor import make_forward
    from densevision.models import build_model
    from densevision.engine.demo import load_tool_recipe
    from densevision.registry import TASKS

    recipe = load_tool_recipe(args.recipe, overrides, demo=args.demo)  # as every command loads it
    task = TASKS.get(recipe.task)(recipe, prediction_info(recipe))
    model = load_checkpoint(args.weights, recipe) if args.weights else build_model(recipe)
    return recipe, task, make_forward(model, task)


def main(argv=None) -> int:
    parser = video_benchmark_arguments(__doc__, "hourglass_lsp.yaml", loops=4)
    parser.add_argument("--size", type=int, help="crop size (data.input_size; default the recipe's)")
    parser.add_argument("--det-every", type=int, nargs="+", default=[1], help="also time these (1: every frame)")
    parser.add_argument("--kpt-thr", type=float, default=0.3, help="joint threshold for drawing and following")
    parser.add_argument("--keep", help="keep the outputs (videos, JSON) in this folder")
    args = parser.parse_args(argv)

    import cv2
    import numpy as np

    from densevision.engine.checkpoints import prediction_info
    from densevision.video.detect import HogPersonDetector, boxes_from_table, load_boxes_json
    from densevision.video.io import VideoWriter, open_frames
    from densevision.video.overlay import make_drawer
    from densevision.video.pipeline import run_pose_video
    from densevision.video.track import Tracker

    video, clip, fps = read_clip(args.video)
    if not clip:
        return 2
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="dv_bench_video_"))
    frames_dir = work / "frames"
    frames_dir.mkdir(parents=True, exist_ok=True)
    order = ping_pong(len(clip), args.loops)
    for index, source in enumerate(order):
        cv2.imwrite(str(frames_dir / f"{index:05d}.png"), clip[source])

    recipe, task, forward = model_of(args, [f"data.input_size=[{args.size},{args.size}]"] if args.size else [])
    info = prediction_info(recipe)

    def estimate(frame, boxes):
        return task.estimate_people(forward, frame, boxes)

    for count in (1, 2, 3, 4):  # trace every batch size the runs will meet before timing anything
        estimate(np.zeros((256, 256, 3), np.uint8), np.tile([[10, 10, 100, 200]], (count, 1)).astype(np.float32))

    def run(find_people, name, det_every):
        with open_frames(str(frames_dir), fps=fps) as frames:
            writer = VideoWriter(work / f"{name}.mp4", frames.fps, frames.width, frames.height, overwrite=True)
            summary = run_pose_video(frames, writer, find_people, estimate, make_drawer(info, args.kpt_thr),
                                     tracker=Tracker(), json_path=work / f"{name}.json", progress=False,
                                     det_every=det_every, keypoint_threshold=args.kpt_thr)
        summary["name"] = name
        return summary

    detector = HogPersonDetector()
    results = [run(detector, "default", DEFAULT_DET_EVERY)]
    # The default run's own boxes from its JSON (the --boxes path of the tool): the same people, no detector.
    with_boxes = run(boxes_from_table(load_boxes_json(work / "default.json")), "boxes", 1)
    for det_every in args.det_every:
        if det_every != DEFAULT_DET_EVERY:
            results.append(run(detector, f"det-every {det_every}", det_every))
    total = results[0]["frames"]
    print(f"{total} frames ({video.name} {len(clip)} frames played forwards and backwards x{args.loops}, "
          f"{clip[0].shape[1]}x{clip[0].shape[0]}), {recipe.model.name} at {task.input_size[1]}x{task.input_size[0]}"
          f"{', ' + args.weights if args.weights else ', random weights'}; default --det-every {DEFAULT_DET_EVERY}")
    print(f"  {'run':<16} {'frames/s':>9} {'/ --boxes':>10} {'people/frame':>13} {'track ids':>10} "
          f"{'detector runs':>14}")
    for summary in [results[0], with_boxes, *results[1:]]:
        print(f"  {summary['name']:<16} {summary['fps']:>9.2f} {summary['fps'] / with_boxes['fps']:>10.2f} "
              f"{summary['people'] / total:>13.2f} {summary['tracks']:>10d} {summary['detector_runs']:>14d}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
