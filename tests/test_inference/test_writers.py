"""densevision.inference.writers: each task's prediction files, checked against the answers written by hand."""

from __future__ import annotations

import csv
import io
import json

import cv2
import numpy as np
import pytest

import densevision  # noqa: F401  (backend and environment)
from densevision.engine.predictor import PredictOptions
from densevision.inference import people
from densevision.inference.predictor import Forward
from densevision.inference.writers import (ClassificationWriter, PoseWriter, PredictionError, SegmentationWriter,
                                           prediction_writer)
from densevision.tasks.base import Task
from densevision.tasks.classification import ClassificationTask
from densevision.tasks.pose import PoseTask
from densevision.tasks.segmentation import SegmentationTask
from densevision.video.detect import DetectorUnavailableError

POSE_INFO = {"joint_names": ["a", "b"], "flip_pairs": [], "skeleton": [[0, 1]]}


def read_png(path) -> np.ndarray:
    return cv2.imread(str(path), cv2.IMREAD_UNCHANGED)


def test_each_task_finds_its_writer_and_an_unknown_task_is_one_clear_error():
    segmentation = SegmentationTask(None, {"class_names": ["road", "sky"]})
    assert type(prediction_writer(segmentation)) is SegmentationWriter
    assert type(prediction_writer(ClassificationTask(None, {"class_names": ["a", "b"]}))) is ClassificationWriter
    assert type(prediction_writer(PoseTask(None, POSE_INFO))) is PoseWriter

    class Custom(Task):
        name = "depth"

    with pytest.raises(PredictionError, match="the depth task does not support batch prediction.*segmentation"):
        prediction_writer(Custom(None, {}))


def test_segmentation_writer_writes_the_class_ids_their_colours_and_an_overlay(tmp_path):
    task = SegmentationTask(None, {"class_names": ["road", "sky", "tree"], "palette": [[10, 20, 30], [200, 0, 0],
                                                                                       [0, 255, 0]]})
    writer = SegmentationWriter(task)
    options = PredictOptions(color=True, overlay=True)
    names = writer.prediction_files("a/b", options)
    assert names == ["a/b.png", "color/a/b.png", "overlays/a/b.png"]
    assert writer.prediction_files("a/b", PredictOptions()) == ["a/b.png"]
    labels = np.array([[0, 1, 2], [2, 1, 0]], np.int32)
    image = np.full((2, 3, 3), 100, np.uint8)
    writer.write_prediction(labels, image, [tmp_path / name for name in names], options)
    np.testing.assert_array_equal(read_png(tmp_path / "a/b.png"), labels)
    colours = np.array([[10, 20, 30], [200, 0, 0], [0, 255, 0]], np.uint8)[labels]
    np.testing.assert_array_equal(cv2.cvtColor(read_png(tmp_path / "color/a/b.png"), cv2.COLOR_BGR2RGB), colours)
    assert read_png(tmp_path / "overlays/a/b.png").shape == (2, 3, 3)


def test_classification_writer_ranks_classes_into_csv_and_json_and_keeps_earlier_rows_on_resume(tmp_path):
    task = ClassificationTask(None, {"class_names": ["cat", "dog", "owl"]})
    writer = ClassificationWriter(task)
    options = PredictOptions(top_k=2)
    assert writer.prediction_files("x", options) == [] and writer.prediction_summary_files(options) == [
        "predictions.csv", "predictions.json"]
    logits = np.array([[0.0, 2.0, 1.0]])
    answer = task.decode(logits)[0]
    expected = np.exp([0.0, 2.0, 1.0]) / np.exp([0.0, 2.0, 1.0]).sum()  # softmax by hand
    np.testing.assert_allclose(answer["probabilities"], expected)
    record = writer.prediction_record(answer, "b.jpg", (4, 4), options)
    assert record == {"path": "b.jpg", "top_k": [
        {"class": "dog", "index": 1, "probability": pytest.approx(expected[1])},
        {"class": "owl", "index": 2, "probability": pytest.approx(expected[2])}]}
    writer.finish_predictions([record], tmp_path, options)
    earlier = {"path": "a.jpg", "top_k": [{"class": "cat", "index": 0, "probability": 0.9}]}
    (tmp_path / "predictions.json").write_text(json.dumps({"predictions": [earlier, record]}))
    writer.finish_predictions([record], tmp_path, options, resume=True)
    rows = list(csv.reader(io.StringIO((tmp_path / "predictions.csv").read_text())))
    assert rows == [["path", "rank", "class", "index", "probability"], ["a.jpg", "1", "cat", "0", "0.900000"],
                    ["b.jpg", "1", "dog", "1", f"{expected[1]:.6f}"], ["b.jpg", "2", "owl", "2", f"{expected[2]:.6f}"]]


def test_pose_writer_gives_the_task_the_finder_the_options_name_and_writes_coco_results(tmp_path):
    task = PoseTask(None, POSE_INFO)
    writer = PoseWriter(task)
    writer.configure(PredictOptions(single=True))
    assert task.person_finder is people.whole_image
    keypoints = np.array([[1.0, 2.0, 0.5], [3.0, 4.0, 1.0]], np.float32)
    answer = {"people": [{"box": [0.0, 0.0, 8.0, 6.0], "score": 1.0, "keypoints": keypoints}]}
    [record] = writer.prediction_record(answer, "img/000042.jpg", (6, 8), None)
    assert record["image_id"] == 42 and record["category_id"] == 1 and record["bbox"] == [0.0, 0.0, 8.0, 6.0]
    assert record["keypoints"] == [1.0, 2.0, 0.5, 3.0, 4.0, 1.0] and record["score"] == 0.75  # 1.0 x mean(0.5, 1)
    writer.finish_predictions([[record]], tmp_path, None)
    assert json.loads((tmp_path / "results.json").read_text()) == [record]
    writer.write_prediction(answer, np.zeros((6, 8, 3), np.uint8), [tmp_path / "overlays" / "x.png"], None)
    assert read_png(tmp_path / "overlays" / "x.png").shape == (6, 8, 3)


def test_pose_prediction_without_a_person_finder_says_what_to_set():
    task = PoseTask(None, POSE_INFO)
    with pytest.raises(ValueError, match="no person finder; set task.person_finder"):
        task.predict_image(Forward(lambda images: images), np.zeros((8, 8, 3), np.uint8), PredictOptions())


def test_person_finders_whole_image_boxes_file_and_detector(tmp_path):
    image = np.zeros((30, 40, 3), np.uint8)
    boxes, scores = people.whole_image(image)
    np.testing.assert_array_equal(boxes, [[0, 0, 40, 30]])
    np.testing.assert_array_equal(scores, [1])
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps({"a/b.jpg": [[1, 2, 10, 20, 0.5]]}))
    finder = people.person_finder(PredictOptions(boxes_file=str(path)))
    boxes, scores = finder(image, "a/b.jpg")
    np.testing.assert_array_equal(boxes, [[1, 2, 10, 20]])
    np.testing.assert_allclose(scores, [0.5])
    assert len(finder(image, "other.jpg")[0]) == 0
    detector = people.person_finder(PredictOptions())  # neither: OpenCV's HOG detector, built on the first image
    try:
        boxes, scores = detector(np.zeros((160, 96, 3), np.uint8), "blank.png")
    except DetectorUnavailableError:
        pytest.skip("this OpenCV build has no HOG people detector")
    assert boxes.shape == (0, 4) and scores.shape == (0,)  # nobody in a blank image
