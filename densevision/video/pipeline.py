"""The video loop of every task: decode -> model stages -> draw + write, overlapped in threads.

:func:`run_video` runs a list of stages, each on its own thread joined by bounded queues
(``densevision.video.threads``): the reader decodes ahead, each stage works on frame ``i + 1`` while the next works
on frame ``i``, and the main thread draws and encodes. Every stage handles frames in order, so output order, frame
count and timing equal the input's. :func:`run_pose_video` is the pose instance (find people -> pose + track);
:mod:`densevision.video.tasks` builds the segmentation and classification ones.

A frame the source cannot decode is not fatal: the previous output frame is written again in its place (a black
frame if there is none yet), so the video keeps its length and timing; the JSON marks it ``"error"`` and the
summary counts it. A frame of another size (image folders) is letterboxed into the frame size by the source.

JSON (``json_path``), written atomically at the end::

    {"input": str, "fps": float, "width": int, "height": int, "task": str,
     "frames": [{"frame": i, <the task's keys>}, {"frame": j, "error": "why", <the task's empty keys>}, ...]}

one entry per input frame (``"file"`` too for an image folder); coordinates in frame pixels. Pose's keys are
``"people": [person record, ...]`` (:func:`densevision.tasks.pose.person_record`: ``track_id``, ``box``,
``box_score``, ``score``, ``keypoints``).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, Optional, Sequence

import numpy as np

from densevision.files import write_json
from densevision.progress import progress_bar
from densevision.tasks.pose import person_record
from densevision.video.io import FrameSource, VideoWriter
from densevision.video.overlay import FpsCounter, draw_fps
from densevision.video.threads import prefetch, stage
from densevision.video.track import PoseFollower

MAX_REPORTED_ERRORS = 10  # corrupt frames announced one by one; the rest only counted

Stage = Callable[[dict], dict]
"""A model stage: ``item -> item`` for a decoded frame; ``item`` is ``{"index", "frame" uint8 (H, W, 3) RGB, ...}``
and the stage adds its keys (never called for a corrupt frame)."""


def format_summary(summary: dict) -> str:
    """A few human lines from :func:`run_video`'s (or :func:`run_pose_video`'s) summary."""
    lines = [
        f"wrote {summary['frames']} frame(s) to {summary['output']} at {summary['video_fps']:g} fps "
        f"({summary['width']}x{summary['height']}, {summary.get('codec', '?')})",
    ]
    if "people" in summary:
        lines.append(f"people: {summary['people']} in {summary['frames_with_people']} frame(s), "
                     f"{summary['tracks']} track(s); person finder run on {summary['detector_runs']} frame(s)")
    lines.append(f"speed: {summary['fps']:.1f} frames/s over {summary['seconds']:.1f} s")
    if summary["corrupt_frames"]:
        shown = ", ".join(str(i) for i in summary["corrupt_frame_indices"][:MAX_REPORTED_ERRORS])
        more = " ..." if summary["corrupt_frames"] > MAX_REPORTED_ERRORS else ""
        lines.append(f"corrupt frames: {summary['corrupt_frames']} skipped (previous frame repeated): {shown}{more}")
    if summary.get("fitted_frames"):
        lines.append(f"note: {summary['fitted_frames']} frame(s) of another size letterboxed into "
                     f"{summary['width']}x{summary['height']}")
    width, height = summary.get("written_size", (summary["width"], summary["height"]))
    if (width, height) != (summary["width"], summary["height"]):
        lines.append(f"note: the encoder needs even sizes: written as {width}x{height} (last column/row dropped)")
    if summary.get("ended_early"):
        lines.append(f"warning: {summary['ended_early']}")
    if summary.get("json"):
        lines.append(f"results: {summary['json']}")
    return "\n".join(lines)


def run_video(
    frames: FrameSource,
    writer: VideoWriter,
    stages: Sequence[Stage],
    draw: Callable[[np.ndarray, dict], np.ndarray],
    record: Callable[[Optional[dict]], dict],
    json_path: Optional[str | os.PathLike] = None,
    task: str = "",
    progress: bool = True,
    show_fps: bool = False,
    max_queued: int = 8,
) -> dict:
    """Run ``stages`` over every frame and write the drawn video (and JSON): the loop every task's video uses.

    Args:
        frames: the input (:func:`densevision.video.io.open_frames`); read on a background thread.
        writer: an open :class:`~densevision.video.io.VideoWriter` of the input's size and fps; closed (renamed
            into place) here when the whole video is written, aborted on any error.
        stages: the model's steps, each ``item -> item`` on its own thread (e.g. find people, then pose).
        draw: ``(frame, item) -> frame`` drawing the stages' answers.
        record: ``item -> {JSON keys}`` for a frame; called with None for a corrupt frame (its empty keys).
        json_path: write per-frame results there (module docstring), atomically.
        task: the task's name for the JSON.
        progress: a bar with frames/s on a terminal (a plain line every 100 frames when redirected); show_fps: draw the measured rate on every frame.
        max_queued: frames each stage may run ahead of the next.

    Returns:
        ``{"input", "output", "json", "codec", "frames", "frame_count", "width", "height", "written_size",
        "video_fps", "corrupt_frames", "corrupt_frame_indices", "fitted_frames", "seconds", "fps", "ended_early",
        "records"}`` (``fps``: frames processed per second; ``records``: the JSON's per-frame entries).
    """
    if (writer.width, writer.height) != (frames.width, frames.height):
        raise ValueError(f"run_video: writer size {writer.width}x{writer.height} differs from the input's "
                         f"{frames.width}x{frames.height}")

    def wrap(function: Stage):
        def run(item):
            index, frame, error = item if isinstance(item, tuple) else (item["index"], item["frame"], item["error"])
            item = {"index": index, "frame": frame, "error": error} if isinstance(item, tuple) else item
            return item if frame is None else function(item)
        return run

    items: object = frames.read_ahead(max_queued)
    for number, function in enumerate(stages):
        items = prefetch(stage(wrap(function), items), max_queued, name=f"video stage {number}")
    if not stages:
        items = stage(wrap(lambda item: item), items)
    records: list[dict] = []
    corrupt: list[int] = []
    fps_counter = FpsCounter()
    previous: Optional[np.ndarray] = None
    started = time.perf_counter()
    with writer, progress_bar(total=frames.frame_count, unit="frame", desc=f"{task or 'video'}", enabled=progress,
                              every=100, dynamic_ncols=True) as bar:
        try:
            for item in items:
                index, frame = item["index"], item["frame"]
                entry: dict = {"frame": index}
                if frames.frame_names is not None and index < len(frames.frame_names):
                    entry["file"] = frames.frame_names[index]
                if frame is None:
                    corrupt.append(index)
                    if len(corrupt) <= MAX_REPORTED_ERRORS:
                        bar.write(f"warning: {item['error']}; previous frame repeated", file=sys.stderr)
                    output = previous.copy() if previous is not None else np.zeros(
                        (frames.height, frames.width, 3), np.uint8)
                    entry.update(error=item["error"], **record(None))
                else:
                    output = draw(frame, item)
                    if show_fps:
                        draw_fps(output, fps_counter.tick())
                    if index in frames.fitted:
                        entry["source_size"] = list(frames.fitted[index])
                    entry.update(record(item))
                writer.write(output)
                previous = output
                records.append(entry)
                bar.update(1)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # stops and joins every stage upstream, also on errors and Ctrl-C
    seconds = time.perf_counter() - started
    if json_path is not None:
        write_json(json_path, {"input": frames.name, "fps": frames.fps, "width": frames.width,
                               "height": frames.height, "task": task, "frames": records})
    return {
        "input": frames.name, "output": str(writer.path), "json": None if json_path is None else str(json_path),
        "codec": writer.codec, "frames": len(records), "frame_count": frames.frame_count, "width": frames.width,
        "height": frames.height, "written_size": list(writer.written_size), "video_fps": frames.fps,
        "corrupt_frames": len(corrupt), "corrupt_frame_indices": corrupt, "fitted_frames": len(frames.fitted),
        "seconds": seconds, "fps": len(records) / seconds if seconds > 0 else 0.0, "ended_early": frames.ended_early,
        "records": records,
    }


def run_pose_video(
    frames: FrameSource,
    writer: VideoWriter,
    find_people: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
    estimate: Callable[[np.ndarray, np.ndarray], np.ndarray],
    draw: Callable[[np.ndarray, list], np.ndarray],
    tracker=None,
    smoother=None,
    json_path: Optional[str | os.PathLike] = None,
    progress: bool = True,
    show_fps: bool = False,
    max_queued: int = 8,
    det_every: int = 1,
    min_joints: int = 3,
    keypoint_threshold: float = 0.3,
) -> dict:
    """Estimate and draw the poses of every person in every frame, writing the annotated video (and JSON).

    Args:
        frames, writer, json_path, progress, show_fps, max_queued: as :func:`run_video`.
        find_people: ``(frame uint8 (H, W, 3) RGB, index) -> (boxes (N, 4) [x, y, w, h], scores (N,))``; run on
            its own thread, on frames ``0, det_every, 2 det_every, ...`` (and after a track was lost).
        estimate: ``(frame, boxes (N, 4)) -> keypoints (N, J, 3) [x, y, score]`` in frame pixels, all the
            people of a frame in one call (one batch); not called for a frame without people.
        draw: ``(frame, people) -> frame`` (e.g. :func:`densevision.video.overlay.make_drawer`); ``people`` are
            dicts ``{"track_id", "box", "score", "keypoints"}``.
        tracker: a :class:`~densevision.video.track.Tracker` giving ``track_id``s (None: ids are None).
        smoother: a :class:`~densevision.video.track.KeypointSmoother` (needs ``tracker``).
        det_every: detect every this many frames and follow people by their keypoints in between
            (:class:`~densevision.video.track.PoseFollower`); 1 detects on every frame.
        min_joints, keypoint_threshold: a followed pose with fewer joints scoring at least the threshold is lost.

    Returns:
        :func:`run_video`'s summary plus ``"people"``, ``"frames_with_people"``, ``"tracks"`` (distinct track
        ids) and ``"detector_runs"``.
    """
    if smoother is not None and tracker is None:
        raise ValueError("run_pose_video: smoothing follows track ids, so a smoother needs a tracker")
    follower = PoseFollower(find_people, estimate, det_every=det_every, tracker=tracker,
                            keypoint_threshold=keypoint_threshold, min_joints=min_joints)

    def find(item: dict) -> dict:
        if follower.scheduled(item["index"]):
            boxes, scores = find_people(item["frame"], item["index"])
            boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
            scores = np.asarray(scores, np.float32).reshape(-1)
            if len(scores) != len(boxes):
                raise ValueError(f"frame {item['index']}: person finder returned {len(boxes)} boxes but "
                                 f"{len(scores)} scores")
            item["detections"] = boxes, scores
        return item

    def pose(item: dict) -> dict:
        people = follower(item["frame"], item["index"], item.get("detections"))
        if smoother is not None and people:
            keypoints = smoother([p["track_id"] for p in people], np.stack([p["keypoints"] for p in people]),
                                 item["index"])
            for person, points in zip(people, keypoints):
                person["keypoints"] = points
        item["people"] = people
        return item

    def record(item: Optional[dict]) -> dict:
        if item is None:
            return {"people": []}
        return {"people": [person_record(p["box"], p["score"], p["keypoints"], p["track_id"])
                           for p in item["people"]]}

    summary = run_video(frames, writer, [find, pose], lambda frame, item: draw(frame, item["people"]), record,
                        json_path=json_path, task="pose", progress=progress, show_fps=show_fps,
                        max_queued=max_queued)
    people = [entry.get("people", []) for entry in summary["records"]]
    summary.update(people=sum(map(len, people)), frames_with_people=sum(bool(p) for p in people),
                   tracks=len({p["track_id"] for ps in people for p in ps if p["track_id"] is not None}),
                   detector_runs=follower.detector_runs)
    return summary
