#!/usr/bin/env python
"""The pose video tool's frames/s against the model's raw batched predict on the same person crops, one run.

    python benchmarks/pose_video.py [--video CLIP] [--loops 4] [--recipe recipes/hourglass_lsp.yaml]
                                    [--weights CKPT] [--size 128]

The clip (default ``$DENSEVISION_DATA/video/demo.mp4`` or ``../shared/data/video/demo.mp4``, played ``--loops``
times through an image folder so the run is long enough to time) goes through the tool's own code
(:func:`densevision.video.pipeline.run_pose_video`: threaded decoding, OpenCV's HOG people detector, top-down pose
of every person of a frame in one batch, tracking, drawing, writing mp4v). The baseline is the compiled forward
pass alone on exactly the person crops the tool posed (collected from the tool's boxes), batched per frame as the
tool batches them. Printed: frames/s of each, their ratio, and the same tool run with ``--boxes`` (the detector's
boxes read from a file) to show how much of the gap is the detector.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import densevision  # noqa: E402,F401
from densevision.data.paths import dataset_dir  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--video", help="a video file (default: the shared demo clip)")
    parser.add_argument("--loops", type=int, default=4, help="play the clip this many times")
    parser.add_argument("--recipe", default=str(Path(__file__).resolve().parents[1] / "recipes/hourglass_lsp.yaml"))
    parser.add_argument("--weights", help="a checkpoint of the recipe (default: seeded random weights)")
    parser.add_argument("--size", type=int, default=128, help="crop size (data.input_size)")
    args = parser.parse_args(argv)

    import cv2
    import numpy as np

    from densevision.engine.checkpoints import load_checkpoint
    from densevision.engine.predictor import make_forward, prediction_info
    from densevision.models import build_model
    from densevision.recipes import load_recipe
    from densevision.registry import TASKS
    from densevision.video.detect import HogPersonDetector, boxes_from_table, load_boxes_json
    from densevision.video.io import VideoWriter, open_frames
    from densevision.video.overlay import make_drawer
    from densevision.video.pipeline import run_pose_video
    from densevision.video.track import Tracker

    video = Path(args.video) if args.video else (dataset_dir("video") or Path("missing")) / "demo.mp4"
    if not video.is_file():
        print(f"no clip at {video}: pass --video FILE or set DENSEVISION_DATA", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="dv_bench_video_"))
    frames_dir = work / "frames"
    frames_dir.mkdir()
    capture = cv2.VideoCapture(str(video))
    clip = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        clip.append(frame)
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    for index in range(len(clip) * args.loops):
        cv2.imwrite(str(frames_dir / f"{index:05d}.png"), clip[index % len(clip)])

    recipe = load_recipe(args.recipe, [f"data.input_size=[{args.size},{args.size}]"])
    info = prediction_info(recipe)
    task = TASKS.get(recipe.task)(recipe, info)
    model = load_checkpoint(args.weights, recipe) if args.weights else build_model(recipe)
    forward = make_forward(model, task)
    posed: list[tuple[np.ndarray, np.ndarray]] = []

    def estimate(frame, boxes):
        posed.append((frame, boxes))
        return task.estimate_people(forward, frame, boxes)

    detector = HogPersonDetector()
    estimate(np.zeros((256, 256, 3), np.uint8), np.array([[10, 10, 100, 200]], np.float32))  # trace first
    posed.clear()

    def run(find_people, name):
        with open_frames(str(frames_dir), fps=fps) as frames:
            writer = VideoWriter(work / f"{name}.mp4", frames.fps, frames.width, frames.height)
            return run_pose_video(frames, writer, find_people, estimate, make_drawer(info), tracker=Tracker(),
                                  json_path=work / f"{name}.json", progress=False)

    with_detector = run(detector, "detector")
    crops = list(posed)
    # The same boxes from a file: the tool without the detector's cost.
    table = {"frames": [{"frame": entry["frame"], "boxes": [[*person["box"], person["score"]]
                                                            for person in entry.get("people", [])]}
                        for entry in json.loads((work / "detector.json").read_text())["frames"]]}
    (work / "boxes.json").write_text(json.dumps(table))
    posed.clear()
    with_boxes = run(boxes_from_table(load_boxes_json(work / "boxes.json")), "boxes")

    # Baseline: only the model, on the same crops, batched per frame as the tool batches them.
    from densevision.data import topdown

    batches = []
    for frame, boxes in crops:
        batch = []
        for box in boxes:
            center, scale = topdown.box_to_center_scale(box, task.input_size)
            batch.append(topdown.warp_to_crop(frame, topdown.crop_affine(center, scale, task.input_size),
                                              task.input_size))
        batches.append(np.stack(batch).astype(np.float32))
    started = time.perf_counter()
    for batch in batches:
        forward(batch)
    raw_seconds = time.perf_counter() - started
    frames_posed = len(batches)
    total = with_detector["frames"]
    raw_fps = total / raw_seconds  # frames without people cost the model nothing
    people = sum(len(b) for b in batches)
    shutil.rmtree(work, ignore_errors=True)
    print(f"{total} frames ({video.name} x{args.loops}, {clip[0].shape[1]}x{clip[0].shape[0]}), {people} people "
          f"posed in {frames_posed} frames, {recipe.model.name} at {args.size}x{args.size}")
    print(f"  raw batched predict on the same crops     {raw_fps:.2f} frames/s")
    print(f"  tool, HOG detector                         {with_detector['fps']:.2f} frames/s "
          f"(ratio {with_detector['fps'] / raw_fps:.2f})")
    print(f"  tool, --boxes (no detector)                {with_boxes['fps']:.2f} frames/s "
          f"(ratio {with_boxes['fps'] / raw_fps:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
