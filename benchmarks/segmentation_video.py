#!/usr/bin/env python
"""The segmentation video's frames/s against the raw compiled forward pass on the same decoded frames, one run.

    python benchmarks/segmentation_video.py [--video CLIP] [--loops 2] [--recipe recipes/tiramisu56_camvid.yaml]
                                            [--weights CKPT] [--demo] [--scale 0.5]

The clip (default ``$DENSEVISION_DATA/video/demo.mp4`` or ``../shared/data/video/demo.mp4``, resized by
``--scale`` and played ``--loops`` times through an image folder) goes through the tool's own code
(:func:`densevision.video.pipeline.run_video` with :func:`densevision.video.tasks.segmentation_video`: threaded
decoding, the task's prediction (padding, argmax), the colour overlay and legend, writing H.264). The baseline is
the model's forward pass inside ``tf.function`` (:func:`densevision.engine.predictor.make_forward`) plus the argmax
on the same frames already decoded in memory, one at a time, timed before and after the tool and averaged (the
load of a shared machine drifts). Both are traced first. Prints frames/s of each and
the ratio (goal >= 0.8: decoding, drawing and writing hidden behind the model).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import densevision  # noqa: E402,F401
from pose_video import model_of, read_clip, video_benchmark_arguments  # noqa: E402  (benchmarks/ is on the path)


def main(argv=None) -> int:
    parser = video_benchmark_arguments(__doc__, "tiramisu56_camvid.yaml", loops=2)
    parser.add_argument("--scale", type=float, default=0.5, help="resize the clip's frames by this (0.5)")
    args = parser.parse_args(argv)

    import cv2
    import numpy as np

    from densevision.engine.predictor import PredictOptions
    from densevision.video.io import VideoWriter, open_frames
    from densevision.video.pipeline import run_video
    from densevision.video.tasks import segmentation_video

    video, clip, fps = read_clip(args.video)
    if not clip:
        return 2
    clip = [cv2.resize(frame, None, fx=args.scale, fy=args.scale, interpolation=cv2.INTER_AREA) for frame in clip]
    work = Path(tempfile.mkdtemp(prefix="dv_bench_segvideo_"))
    frames_dir = work / "frames"
    frames_dir.mkdir()
    for index in range(len(clip) * args.loops):
        cv2.imwrite(str(frames_dir / f"{index:05d}.png"), clip[index % len(clip)])

    recipe, task, forward = model_of(args, [])
    options = PredictOptions()
    stages, draw, record = segmentation_video(task, forward, options)
    frames_rgb = [cv2.cvtColor(frame, cv2.COLOR_BGR2RGB) for frame in clip]
    task.predict_image(forward, frames_rgb[0], options)  # trace once for both

    count = len(clip) * args.loops

    def raw_seconds() -> float:
        started = time.perf_counter()
        for index in range(count):
            np.asarray(forward(frames_rgb[index % len(frames_rgb)][None].astype(np.float32))).argmax(-1)
        return time.perf_counter() - started

    # The baseline before and after the tool, averaged: the machine's load drifts during a run.
    before = raw_seconds()
    with open_frames(str(frames_dir), fps=fps) as frames, \
            VideoWriter(work / "seg.mp4", frames.fps, frames.width, frames.height) as writer:
        tool = run_video(frames, writer, stages, draw, record, task="segmentation", progress=False)
    raw_fps = 2 * count / (before + raw_seconds())
    shutil.rmtree(work, ignore_errors=True)
    height, width = frames_rgb[0].shape[:2]
    print(f"{tool['frames']} frames ({video.name} x{args.loops} at {width}x{height}), {recipe.model.name}"
          f"{', ' + args.weights if args.weights else ', random weights'}, written as {tool['codec']}")
    print(f"  raw compiled forward + argmax    {raw_fps:.2f} frames/s")
    print(f"  segmentation video tool          {tool['fps']:.2f} frames/s (ratio {tool['fps'] / raw_fps:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
