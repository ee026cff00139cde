"""What batch prediction writes, per task: one small writer class each, registered by task name, kept apart from
the task (as MMPose keeps its inferencers and visualisers apart from the model). The task owns what an answer
means (``task.predict_image``, ``decode``, ``colorize``, pictures); its writer owns the files.

A writer plans each input's files (:meth:`PredictionWriter.prediction_files`, relative to the output folder), the
run's summary files, writes one input's answer atomically (through :mod:`densevision.files`), turns an answer into
a JSON-able record, and writes the summary files from every record at the end (merged with an earlier run's under
``--resume``). :func:`prediction_writer` finds the writer of a task; a new task registers one with
``@WRITERS.register("name")``.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from densevision.errors import UsageError
from densevision.files import write_json, write_png, write_text
from densevision.inference.people import person_finder
from densevision.registry import Registry
from densevision.tasks.base import Task
from densevision.tasks.pose import person_record
from densevision.visualization.pose import draw_pose
from densevision.visualization.segmentation import overlay

#: task name -> its :class:`PredictionWriter` class
WRITERS = Registry("prediction writer")


class PredictionError(UsageError):
    """Inputs or outputs the predictor cannot use as a whole (a usage error); the message names the files."""


def keep_earlier(path, records: list[dict], key: str, unwrap: Callable[[Any], Any] = lambda data: data
                 ) -> list[dict]:
    """For ``--resume``: the records an earlier run wrote to ``path`` for inputs this run did not answer, then
    ``records`` (an input answered again keeps only its newest record).

    Args:
        path: the earlier run's JSON summary file (missing or unreadable: nothing earlier).
        records: this run's records (dicts).
        key: the record field naming the input (``"image"``, ``"path"``).
        unwrap: the list of records inside the file's JSON (``lambda data: data["predictions"]``).
    """
    try:
        earlier = unwrap(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError, TypeError):
        earlier = []
    answered = {record[key] for record in records}
    kept = [record for record in (earlier if isinstance(earlier, list) else [])
            if isinstance(record, dict) and record.get(key) not in answered]
    return kept + list(records)


class PredictionWriter:
    """The files of one task's batch prediction. The defaults write nothing.

    Args:
        task: the task whose answers are written (its class names, palette, skeleton).
    """

    def __init__(self, task: Task):
        self.task = task

    def configure(self, options) -> None:
        """Give the task what answering needs for these options before the first image (pose: its person
        finder)."""

    def prediction_files(self, stem: str, options) -> list[str]:
        """Output files of one input, relative to the output folder (``stem``: its relative path without
        extension), e.g. ``["a/b.png", "overlays/a/b.png"]``."""
        return []

    def prediction_summary_files(self, options) -> list[str]:
        """Files written once per run from every input's record (e.g. ``predictions.csv``)."""
        return []

    def write_prediction(self, answer, image: np.ndarray, paths: list, options) -> None:
        """Write one input's outputs to ``paths`` (those of :meth:`prediction_files`, in order), atomically."""

    def prediction_record(self, answer, relative: str, size: tuple[int, int], options) -> Optional[Any]:
        """A JSON-able record of one answer for the run's summary files, or ``None``."""
        return None

    def finish_predictions(self, records: list, output_dir, options, resume: bool = False) -> list:
        """Write the run's summary files from the records (merged with an earlier run's under ``resume``)."""
        return []


def prediction_writer(task: Task) -> PredictionWriter:
    """The registered writer of ``task`` (by ``task.name``), built for it.

    Raises:
        PredictionError: no writer is registered for the task.
    """
    if task.name not in WRITERS:
        raise PredictionError(f"the {task.name} task does not support batch prediction: no prediction writer is "
                              f"registered for it (densevision.inference.writers.WRITERS: {', '.join(WRITERS)})")
    return WRITERS.get(task.name)(task)


def configure_task(task: Task, options) -> None:
    """Let ``task``'s writer give it what answering needs for ``options`` (pose: its person finder); a task without
    a writer needs nothing."""
    if task.name in WRITERS:
        prediction_writer(task).configure(options)


@WRITERS.register("segmentation")
class SegmentationWriter(PredictionWriter):
    """``<stem>.png`` index masks (values = class ids, the input's displayed size), then optionally
    ``color/<stem>.png`` (palette colours) and ``overlays/<stem>.png`` (colours over the image)."""

    def prediction_files(self, stem: str, options) -> list[str]:
        files = [f"{stem}.png"]
        if options.color:
            files.append(f"color/{stem}.png")
        if options.overlay:
            files.append(f"overlays/{stem}.png")
        return files

    def write_prediction(self, answer: np.ndarray, image: np.ndarray, paths: list, options) -> None:
        task = self.task
        write_png(paths[0], answer.astype(np.uint8 if task.num_classes <= 256 else np.uint16))
        rest = list(paths[1:])
        if options.color:
            write_png(rest.pop(0), task.colorize(answer))
        if options.overlay:
            write_png(rest.pop(0), overlay(image, answer, task.palette))


@WRITERS.register("classification")
class ClassificationWriter(PredictionWriter):
    """No file per image: every answer goes to ``predictions.csv`` and ``predictions.json``."""

    def prediction_summary_files(self, options) -> list[str]:
        return ["predictions.csv", "predictions.json"]

    def prediction_record(self, answer, relative: str, size, options) -> dict[str, Any]:
        """``{"path", "top_k": [{"class", "index", "probability"}]}``."""
        return {"path": relative, "top_k": self.task.top_k(answer, options.top_k)}

    def finish_predictions(self, records: list, output_dir, options, resume: bool = False) -> list:
        """``predictions.json`` (the records) and ``predictions.csv`` (``path, rank, class, index, probability``)."""
        output_dir = Path(output_dir)
        if resume:  # inputs of an earlier run into this folder that this run did not answer keep their rows
            records = keep_earlier(output_dir / "predictions.json", records, "path", lambda data: data["predictions"])
        records = sorted(records, key=lambda record: record["path"])
        rows = io.StringIO()
        writer = csv.writer(rows)
        writer.writerow(["path", "rank", "class", "index", "probability"])
        for record in records:
            for rank, entry in enumerate(record["top_k"], 1):
                writer.writerow([record["path"], rank, entry["class"], entry["index"], f"{entry['probability']:.6f}"])
        write_json(output_dir / "predictions.json", {"predictions": records})
        write_text(output_dir / "predictions.csv", rows.getvalue())
        return [output_dir / "predictions.json", output_dir / "predictions.csv"]


@WRITERS.register("pose")
class PoseWriter(PredictionWriter):
    """``overlays/<stem>.png`` (the image with every person's skeleton) and ``results.json`` (every person of
    every image in COCO's results format)."""

    def configure(self, options) -> None:
        """The pose task finds people with the finder the options name (--single, --boxes, else HOG)."""
        self.task.person_finder = person_finder(options)

    def prediction_files(self, stem: str, options) -> list[str]:
        return [f"overlays/{stem}.png"]

    def prediction_summary_files(self, options) -> list[str]:
        return ["results.json"]

    def write_prediction(self, answer, image: np.ndarray, paths: list, options) -> None:
        info = self.task.info
        people = answer["people"]
        keypoints = np.stack([p["keypoints"] for p in people]) if people else np.zeros((0, self.task.num_joints, 3))
        boxes = np.array([p["box"] for p in people], np.float32).reshape(-1, 4)
        write_png(paths[0], draw_pose(image, keypoints, info["skeleton"], info.get("joint_colors"),
                                      info.get("link_colors"), boxes=boxes))

    def prediction_record(self, answer, relative: str, size, options) -> list[dict[str, Any]]:
        """One :func:`~densevision.tasks.pose.person_record` per person (the video JSON's record, keypoints in
        COCO's flat layout) with ``image`` (the relative path), COCO's ``image_id`` (the file name when it is a
        number, COCO's own images, else -1), ``category_id`` 1 and ``bbox`` (the box again, under COCO's name)."""
        stem = Path(relative).stem
        image_id = int(stem) if stem.isdigit() else -1
        return [{"image": relative, "image_id": image_id, "category_id": 1,
                 **person_record(person["box"], person["score"], person["keypoints"], coco_layout=True),
                 "bbox": [round(float(v), 2) for v in person["box"]]} for person in answer["people"]]

    def finish_predictions(self, records: list, output_dir, options, resume: bool = False) -> list:
        """``results.json``: every person of every image (with ``resume``, earlier runs' images are kept)."""
        path = Path(output_dir) / "results.json"
        results = [entry for record in records for entry in record]
        if resume:
            results = keep_earlier(path, results, "image")
        write_json(path, sorted(results, key=lambda entry: entry["image"]))
        return [path]
