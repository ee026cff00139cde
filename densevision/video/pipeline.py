"""The pose-video loop: decode -> find people -> pose (+ track ids, smoothing) -> draw + write, overlapped in threads.

Four stages run at once, each on one thread joined by bounded queues (``densevision.video.threads``): the reader
decodes ahead, the finder runs on frame ``i + 1`` while the pose model works on frame ``i``, and the main thread
draws and encodes. Every stage handles frames in order, so output order, frame count and timing equal the input's.

A frame the source cannot decode is not fatal: the previous output frame is written again in its place (a black
frame if there is none yet), so the video keeps its length and timing; the JSON marks it ``"error"`` and the
summary counts it.

JSON (``json_path``), written atomically at the end::

    {"input": str, "fps": float, "width": int, "height": int,
     "frames": [{"frame": i, "people": [{"track_id": int | null, "box": [x, y, w, h], "score": float,
                                          "keypoints": [[x, y, score], ...]}, ...]},
                {"frame": j, "error": "why", "people": []}, ...]}

one entry per input frame (``"file"`` too for an image folder); coordinates in frame pixels.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, Optional

import numpy as np

from densevision.video.io import FrameSource, VideoWriter
from densevision.video.overlay import FpsCounter, draw_fps
from densevision.files import write_json
from densevision.progress import progress_bar
from densevision.video.threads import prefetch, stage

MAX_REPORTED_ERRORS = 10  # corrupt frames announced one by one; the rest only counted


def _person_record(person: dict) -> dict:
    track_id = person.get("track_id")
    return {
        "track_id": None if track_id is None else int(track_id),
        "box": [round(float(v), 2) for v in person["box"]],
        "score": round(float(person["score"]), 4),
        "keypoints": [[round(float(x), 2), round(float(y), 2), round(float(s), 4)] for x, y, s in
                      np.asarray(person["keypoints"]).reshape(-1, 3)],
    }


def format_summary(summary: dict) -> str:
    """A few human lines from :func:`run_pose_video`'s summary."""
    lines = [
        f"wrote {summary['frames']} frame(s) to {summary['output']} at {summary['video_fps']:g} fps "
        f"({summary['width']}x{summary['height']})",
        f"people: {summary['people']} in {summary['frames_with_people']} frame(s), {summary['tracks']} track(s)",
        f"speed: {summary['fps']:.1f} frames/s over {summary['seconds']:.1f} s",
    ]
    if summary["corrupt_frames"]:
        shown = ", ".join(str(i) for i in summary["corrupt_frame_indices"][:MAX_REPORTED_ERRORS])
        more = " ..." if summary["corrupt_frames"] > MAX_REPORTED_ERRORS else ""
        lines.append(f"corrupt frames: {summary['corrupt_frames']} skipped (previous frame repeated): {shown}{more}")
    width, height = summary.get("written_size", (summary["width"], summary["height"]))
    if (width, height) != (summary["width"], summary["height"]):
        lines.append(f"note: the encoder needs even sizes: written as {width}x{height} (last column/row dropped)")
    if summary.get("ended_early"):
        lines.append(f"warning: {summary['ended_early']}")
    if summary.get("json"):
        lines.append(f"results: {summary['json']}")
    return "\n".join(lines)


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
    show_fps: bool = True,
    max_queued: int = 8,
) -> dict:
    """Estimate and draw the poses of every person in every frame, writing the annotated video (and JSON).

    Args:
        frames: the input (:func:`densevision.video.io.open_frames`); read on a background thread.
        writer: an open :class:`~densevision.video.io.VideoWriter` of the input's size and fps; closed (renamed
            into place) here when the whole video is written, aborted on any error.
        find_people: ``(frame uint8 (H, W, 3) RGB, index) -> (boxes (N, 4) [x, y, w, h], scores (N,))``.
        estimate: ``(frame, boxes (N, 4)) -> keypoints (N, J, 3) [x, y, score]`` in frame pixels, all the
            people of a frame in one call (one batch); not called for a frame without people.
        draw: ``(frame, people) -> frame`` (e.g. :func:`densevision.video.overlay.make_drawer`); ``people`` are
            dicts ``{"track_id", "box", "score", "keypoints"}``.
        tracker: a :class:`~densevision.video.track.Tracker` giving ``track_id``s (None: ids are None).
        smoother: a :class:`~densevision.video.track.KeypointSmoother` (needs ``tracker``).
        json_path: write per-frame results there (module docstring), atomically.
        progress: tqdm bar with frames/s; show_fps: draw the measured rate on every frame.
        max_queued: frames each stage may run ahead of the next.

    Returns:
        ``{"input", "output", "json", "frames", "frame_count", "width", "height", "written_size", "video_fps", "people",
        "frames_with_people", "tracks", "corrupt_frames", "corrupt_frame_indices", "seconds", "fps",
        "ended_early"}`` (``fps``: frames processed per second).
    """
    if smoother is not None and tracker is None:
        raise ValueError("run_pose_video: smoothing follows track ids, so a smoother needs a tracker")
    if (writer.width, writer.height) != (frames.width, frames.height):
        raise ValueError(f"run_pose_video: writer size {writer.width}x{writer.height} differs from the input's "
                         f"{frames.width}x{frames.height}")

    def find(item):
        index, frame, error = item
        if frame is None:
            return index, None, error, None, None
        boxes, scores = find_people(frame, index)
        boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        scores = np.asarray(scores, np.float32).reshape(-1)
        if len(scores) != len(boxes):
            raise ValueError(f"frame {index}: person finder returned {len(boxes)} boxes but {len(scores)} scores")
        return index, frame, None, boxes, scores

    def pose(item):
        index, frame, error, boxes, scores = item
        if frame is None:
            return index, None, error, []
        if len(boxes):
            keypoints = np.asarray(estimate(frame, boxes), np.float32)
            if keypoints.ndim != 3 or keypoints.shape[0] != len(boxes) or keypoints.shape[2] != 3:
                raise ValueError(f"frame {index}: estimate returned keypoints of shape {keypoints.shape}; expected "
                                 f"({len(boxes)}, J, 3) for {len(boxes)} boxes")
        else:
            keypoints = np.zeros((0, 0, 3), np.float32)
        track_ids = [None] * len(boxes)
        if tracker is not None:
            track_ids = tracker.update(boxes, keypoints if len(boxes) else None, frame_index=index)
            if smoother is not None and len(boxes):
                keypoints = smoother(track_ids, keypoints, index)
        people = [{"track_id": None if track_ids[i] is None else int(track_ids[i]), "box": boxes[i],
                   "score": float(scores[i]), "keypoints": keypoints[i]} for i in range(len(boxes))]
        return index, frame, None, people

    records: list[dict] = []
    corrupt: list[int] = []
    people_total = frames_with_people = 0
    track_ids_seen: set = set()
    fps_counter = FpsCounter()
    previous: Optional[np.ndarray] = None
    started = time.perf_counter()
    found = prefetch(stage(find, frames.read_ahead(max_queued)), max_queued, name="find people")
    posed = prefetch(stage(pose, found), max_queued, name="pose")
    with writer, progress_bar(total=frames.frame_count, unit="frame", desc="pose video", enabled=progress,
                              every=100, dynamic_ncols=True) as bar:
        try:
            for index, frame, error, people in posed:
                record: dict = {"frame": index}
                if frames.frame_names is not None and index < len(frames.frame_names):
                    record["file"] = frames.frame_names[index]
                if frame is None:
                    corrupt.append(index)
                    if len(corrupt) <= MAX_REPORTED_ERRORS:
                        bar.write(f"warning: {error}; previous frame repeated", file=sys.stderr)
                    output = previous.copy() if previous is not None else np.zeros(
                        (frames.height, frames.width, 3), np.uint8)
                    record.update(error=error, people=[])
                else:
                    output = draw(frame, people)
                    if show_fps:
                        draw_fps(output, fps_counter.tick())
                    record["people"] = [_person_record(person) for person in people]
                    people_total += len(people)
                    frames_with_people += bool(people)
                    track_ids_seen.update(p["track_id"] for p in people if p["track_id"] is not None)
                writer.write(output)
                previous = output
                records.append(record)
                bar.update(1)
        finally:
            posed.close()  # stops and joins every stage upstream, also on errors and Ctrl-C
    seconds = time.perf_counter() - started
    summary = {
        "input": frames.name, "output": str(writer.path), "json": None if json_path is None else str(json_path),
        "frames": len(records), "frame_count": frames.frame_count, "width": frames.width, "height": frames.height,
        "written_size": list(writer.written_size), "video_fps": frames.fps, "people": people_total,
        "frames_with_people": frames_with_people,
        "tracks": len(track_ids_seen), "corrupt_frames": len(corrupt), "corrupt_frame_indices": corrupt,
        "seconds": seconds, "fps": len(records) / seconds if seconds > 0 else 0.0, "ended_early": frames.ended_early,
    }
    if json_path is not None:
        write_json(json_path, {"input": frames.name, "fps": frames.fps, "width": frames.width,
                                          "height": frames.height, "frames": records})
    return summary
