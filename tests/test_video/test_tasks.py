"""Video for every task and a pose video that keeps its people: segmentation and classification videos, detect-then-
track, the one boxes file (round trips, checked up front in predict and video), the one person record, H.264 and its
fallback, letterboxed photo folders, the keras-hub person finder's plumbing (generated clips, tiny models)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

import densevision  # noqa: F401  (environment first)
from densevision.data.boxes import BoxesFileError, load_boxes_file
from densevision.engine.predictor import PredictOptions
from densevision.inference.predictor import Forward
from densevision.tasks.classification import ClassificationTask
from densevision.inference.writers import PoseWriter
from densevision.tasks.pose import PoseTask, person_record
from densevision.tasks.segmentation import SegmentationTask
from densevision.video import io as video_io
from densevision.video.demo import STICK_FIGURE_INFO, STICK_FIGURE_LAYOUT, stick_figure_estimator
from densevision.video.detect import KerasHubPersonDetector, box_iou
from densevision.video.io import VideoWriter, open_frames
from densevision.video.pipeline import run_pose_video, run_video
from densevision.video.tasks import class_fractions, classification_video, segmentation_video, sliding_video
from densevision.video.track import PoseFollower, Tracker, box_from_keypoints
from densevision.visualization.segmentation import overlay
from tests.test_video.test_pipeline import (HEIGHT, WIDTH, damage_jpeg_frames, figure_boxes, figure_frame, read_back,
                                            write_clip)

ROOT = Path(__file__).resolve().parents[2]


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_tool", ROOT / "tools" / f"{name}.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def video_main(*argv) -> int:
    from densevision.commands.video import build_parser, run

    return run(build_parser().parse_args([str(a) for a in argv]))


# ---------------------------------------------------------------- segmentation and classification

NAMES = ["background", "person"]
PALETTE = np.array([[0, 0, 255], [255, 255, 0]], np.uint8)


def bright_logits(images: np.ndarray) -> np.ndarray:
    """A stand-in segmentation model: class 1 where the pixel is light (the generated people), else class 0."""
    light = (images.min(axis=-1) > 100).astype(np.float32)
    return np.stack([1 - light, light], axis=-1) * 4.0


def test_segmentation_video_blends_the_mask_and_keeps_size_rate_count(tmp_path):
    task = SegmentationTask(SimpleNamespace(loss=None), {"class_names": NAMES, "num_classes": 2,
                                                         "ignore_label": 255, "palette": PALETTE})
    clip = write_clip(tmp_path / "clip.avi", 7, fps=9.0)
    stages, draw, record = segmentation_video(task, Forward(bright_logits), PredictOptions(), opacity=0.4, legend=False)
    with open_frames(str(clip)) as frames, VideoWriter(tmp_path / "seg.avi", frames.fps, WIDTH, HEIGHT) as writer:
        summary = run_video(frames, writer, stages, draw, record, json_path=tmp_path / "seg.json",
                            task="segmentation", progress=False)
    written, fps, size, declared = read_back(tmp_path / "seg.avi")
    assert (len(written), declared, fps, size) == (7, 7, 9.0, (WIDTH, HEIGHT)) and summary["frames"] == 7
    source, *_ = read_back(clip)
    for index in (0, 6):
        labels = (source[index].min(axis=-1) > 100).astype(np.int64)
        expected = np.rint(0.6 * source[index] + 0.4 * PALETTE[labels]).astype(np.float32)  # numpy's own blend
        assert np.abs(written[index].astype(np.float32) - expected).mean() < 3  # MJPG is lossy
    result = json.loads((tmp_path / "seg.json").read_text())
    truth = (source[3].min(axis=-1) > 100).mean()
    assert result["task"] == "segmentation"
    assert result["frames"][3]["classes"] == {"background": pytest.approx(1 - truth, abs=1e-4),
                                              "person": pytest.approx(truth, abs=1e-4)}


def test_segmentation_video_skips_counts_and_marks_a_corrupt_frame(tmp_path):
    task = SegmentationTask(SimpleNamespace(loss=None), {"class_names": NAMES, "num_classes": 2,
                                                         "ignore_label": 255, "palette": PALETTE})
    clip = write_clip(tmp_path / "clip.avi", 6)
    damage_jpeg_frames(clip, [2])
    stages, draw, record = segmentation_video(task, Forward(bright_logits), PredictOptions())
    with open_frames(str(clip)) as frames, VideoWriter(tmp_path / "seg.avi", frames.fps, WIDTH, HEIGHT) as writer:
        summary = run_video(frames, writer, stages, draw, record, json_path=tmp_path / "seg.json", progress=False)
    written, *_ = read_back(tmp_path / "seg.avi")
    assert len(written) == 6 and (summary["corrupt_frames"], summary["corrupt_frame_indices"]) == (1, [2])
    assert np.abs(written[2].astype(int) - written[1]).mean() < 1  # the previous frame, repeated
    entry = json.loads((tmp_path / "seg.json").read_text())["frames"][2]
    assert entry["classes"] == {} and "could not be decoded" in entry["error"]


def test_segmentation_legend_lists_the_classes_present_largest_first():
    task = SegmentationTask(SimpleNamespace(loss=None), {"class_names": ["a", "b", "c"], "num_classes": 3,
                                                         "ignore_label": 255, "palette": np.eye(3) * 255})
    labels = np.zeros((60, 200), np.int64)
    labels[:, :50] = 2  # 25% "c", 75% "a", no "b"
    np.testing.assert_allclose(class_fractions(labels, 3, 255), [0.75, 0.0, 0.25])
    stages, draw, record = segmentation_video(task, None, PredictOptions(), opacity=0.0, legend=True)
    frame = np.full((60, 200, 3), 128, np.uint8)
    drawn = draw(frame.copy(), {"labels": labels})
    assert record({"labels": labels}) == {"classes": {"a": 0.75, "c": 0.25}}
    changed = np.argwhere((drawn != 128).any(axis=-1))
    assert changed[:, 1].min() > 100 and changed[:, 0].max() < 40  # the legend sits in the top-right corner
    swatches = drawn[changed[:, 0], changed[:, 1]]
    assert ((swatches == [255, 0, 0]).all(axis=1)).any() and ((swatches == [0, 0, 255]).all(axis=1)).any()
    assert not ((swatches == [0, 255, 0]).all(axis=1)).any()  # "b" is absent: no swatch


def test_classification_video_lists_the_top_k_of_each_frame(tmp_path):
    task = ClassificationTask(None, {"class_names": ["dark", "mid", "light"], "num_classes": 3})

    def forward(images):  # logits from the frame's mean brightness: an independent numpy reference below
        mean = images.mean(axis=(1, 2, 3))
        return np.stack([-mean / 20, np.zeros_like(mean), mean / 20 - 5], axis=-1)

    clip = write_clip(tmp_path / "clip.avi", 5)
    stages, draw, record = classification_video(task, forward, PredictOptions(top_k=2))
    with open_frames(str(clip)) as frames, VideoWriter(tmp_path / "cls.avi", frames.fps, WIDTH, HEIGHT) as writer:
        run_video(frames, writer, stages, draw, record, json_path=tmp_path / "cls.json", progress=False)
    written, fps, size, declared = read_back(tmp_path / "cls.avi")
    assert (len(written), declared, fps, size) == (5, 5, 12.0, (WIDTH, HEIGHT))
    source, *_ = read_back(clip)
    for entry, frame in zip(json.loads((tmp_path / "cls.json").read_text())["frames"], source):
        logits = forward(frame[None].astype(np.float32))[0]
        probabilities = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        order = np.argsort(-probabilities)[:2]
        assert [e["index"] for e in entry["top_k"]] == order.tolist()
        np.testing.assert_allclose([e["probability"] for e in entry["top_k"]], probabilities[order], atol=2e-3)
    assert (written[0][:12, :40] != source[0][:12, :40]).any()  # the labels are drawn at the top left


@pytest.mark.slow
def test_segmentation_video_command_with_a_real_checkpoint(tmp_path):
    """The command shape of pose with a segmentation recipe: a tiny FC-DenseNet checkpoint, its own forward as the
    reference."""
    import keras

    from densevision.models import build_model
    from densevision.recipes import load_recipe
    from engine_utils import make_street_data, write_recipe

    recipe_path = write_recipe(tmp_path / "recipe.yaml", make_street_data(tmp_path / "streets"))
    model = build_model(load_recipe(str(recipe_path)))
    model.save(tmp_path / "model.keras")
    # 160x128: a multiple of 32, so neither the tool nor the reference pads (padding changes a random model's
    # border answers)
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (160, 128))
    for index in range(4):
        writer.write(cv2.cvtColor(cv2.resize(figure_frame(index), (160, 128)), cv2.COLOR_RGB2BGR))
    writer.release()
    assert video_main(recipe_path, clip, "--weights", tmp_path / "model.keras", "--output", tmp_path / "out.avi",
                      "--json", tmp_path / "out.json", "--no-legend", "--opacity", "0.5", "--no-progress") == 0
    written, fps, size, declared = read_back(tmp_path / "out.avi")
    assert (len(written), declared, fps, size) == (4, 4, 12.0, (160, 128))
    source, *_ = read_back(clip)
    logits = keras.ops.convert_to_numpy(model(source[1][None].astype(np.float32), training=False))
    labels = logits[0].argmax(-1)
    from densevision.data.camvid import CAMVID_PALETTE

    expected = overlay(source[1], labels, np.asarray(CAMVID_PALETTE, np.uint8), alpha=0.5)
    # An untrained model's labels change from pixel to pixel, and MJPG keeps colour at half resolution: compare
    # 4x4 averages
    difference = cv2.blur(written[1].astype(np.float32), (4, 4)) - cv2.blur(expected.astype(np.float32), (4, 4))
    assert np.abs(difference).mean() < 3
    plain = cv2.blur(written[1].astype(np.float32), (4, 4)) - cv2.blur(source[1].astype(np.float32), (4, 4))
    assert np.abs(plain).mean() > 10  # the mask is really drawn
    assert sum(json.loads((tmp_path / "out.json").read_text())["frames"][1]["classes"].values()) == pytest.approx(
        1.0, abs=1e-3)


# ---------------------------------------------------------------- sliding classification: the heat map

WINDOW = 32
SLIDE_NAMES = [f"class_{index}" for index in range(5)]  # the recipe's dataset is absent: classes by index


@pytest.fixture(scope="module")
def tiny_fc_classifier(tmp_path_factory):
    """A random classifier with a fully connected head on 32x32 windows (network stride 4) saved as .keras, and the
    command-line arguments that make the sliding recipe (``model.head: fc``) load it without data."""
    import keras

    folder = tmp_path_factory.mktemp("tiny_fc")
    keras.utils.set_random_seed(5)
    model = keras.Sequential([keras.Input((WINDOW, WINDOW, 3)), keras.layers.Rescaling(1 / 64.0),
                              keras.layers.Conv2D(4, 3, strides=2, activation="relu"), keras.layers.MaxPooling2D(2),
                              keras.layers.Flatten(), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(5)])
    model.save(folder / "tiny.keras")
    recipe = [ROOT / "recipes" / "vgg16_sliding.yaml"]
    overrides = ["--set", f"model.input_shape=[{WINDOW},{WINDOW},3]", "model.weights=null",
                 f"data.root={folder / 'no_data_here'}"]
    return model, folder / "tiny.keras", recipe, overrides


def crop_scores(model, frame: np.ndarray, stride: int) -> np.ndarray:
    """The reference: the original (not converted) classifier on every window, one crop at a time, ``(rows, cols,
    K)`` logits."""
    rows, cols = (frame.shape[0] - WINDOW) // stride + 1, (frame.shape[1] - WINDOW) // stride + 1
    crops = np.stack([frame[i * stride:i * stride + WINDOW, j * stride:j * stride + WINDOW]
                      for i in range(rows) for j in range(cols)]).astype(np.float32)
    return model.predict(crops, verbose=0).reshape(rows, cols, -1)


def numpy_probabilities(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def textured_frame(index: int) -> np.ndarray:
    """A figure frame with noise, so that windows differ and the heat map is not flat."""
    noise = np.random.default_rng(index).integers(0, 60, (HEIGHT, WIDTH, 3))
    return np.clip(figure_frame(index).astype(np.int64) + noise, 0, 255).astype(np.uint8)


def test_sliding_video_draws_the_heat_map_of_the_crop_by_crop_scores(tiny_fc_classifier):
    """The drawn frame (before encoding) is the heat map of the top-1 class on a colour scale fixed at
    probability 1, the top-k the mean of the windows' probabilities; the reference slides nothing: it crops."""
    from densevision.inference.sliding import class_heatmap, overlay_heatmap, sliding_classifier

    model = tiny_fc_classifier[0]
    fc_model, window, net_stride = sliding_classifier(model, conv_bands=None)
    assert (window, net_stride) == ((WINDOW, WINDOW), (4, 4))
    stages, draw, record = sliding_video(fc_model, window, net_stride, SLIDE_NAMES, stride=2, k=3, opacity=0.6)
    frame = textured_frame(1)
    item = {"index": 0, "frame": frame}
    for function in stages:
        item = function(item)
    drawn = draw(frame, item)
    probabilities = numpy_probabilities(crop_scores(model, frame, 2))
    mean = probabilities.reshape(-1, 5).mean(axis=0)
    order = np.argsort(-mean)[:3]
    entry = record(item)
    assert [e["index"] for e in entry["top_k"]] == order.tolist()
    assert [e["class"] for e in entry["top_k"]] == [SLIDE_NAMES[i] for i in order]
    np.testing.assert_allclose([e["probability"] for e in entry["top_k"]], mean[order], atol=1e-4)
    assert entry["heatmap_class"] == SLIDE_NAMES[order[0]]
    heat = class_heatmap(probabilities, int(order[0]), frame.shape[:2], WINDOW, 2)
    assert heat.max() - heat.min() > 0.02  # the windows disagree: a flat map would not test the drawing
    expected = overlay_heatmap(frame, heat, alpha=0.6, vmax=1.0)
    assert drawn.shape == frame.shape
    below_text = slice(HEIGHT // 2, None)  # the text box covers the top left
    assert np.abs(drawn[below_text].astype(int) - expected[below_text]).max() <= 1
    # the fixed scale: its own maximum would colour the same frame differently
    assert np.abs(overlay_heatmap(frame, heat, alpha=0.6)[below_text].astype(int) - drawn[below_text]).max() > 20
    chosen = sliding_video(fc_model, window, net_stride, SLIDE_NAMES, stride=2, k=3, class_index=int(order[-1]))
    item = {"index": 0, "frame": frame}
    for function in chosen[0]:
        item = function(item)
    assert chosen[2](item)["heatmap_class"] == SLIDE_NAMES[order[-1]]  # --class: that class, not the top-1
    assert chosen[2](None) == {"top_k": [], "heatmap_class": None}  # a corrupt frame's empty keys


def test_sliding_video_answers_frames_smaller_than_the_window(tiny_fc_classifier):
    from densevision.inference.sliding import sliding_classifier

    model = tiny_fc_classifier[0]
    fc_model, window, net_stride = sliding_classifier(model, conv_bands=None)
    stages, draw, record = sliding_video(fc_model, window, net_stride, SLIDE_NAMES)
    frame = textured_frame(2)[:20, :24]  # 20x24: resized up to 32x39 (aspect kept), one row of windows
    item = {"index": 0, "frame": frame}
    for function in stages:
        item = function(item)
    assert draw(frame, item).shape == frame.shape and item["heatmap"].shape == (20, 24)
    larger = cv2.resize(frame, (39, 32), interpolation=cv2.INTER_LINEAR)
    probabilities = numpy_probabilities(crop_scores(model, larger, 4))
    assert probabilities.shape[:2] == (1, 2)
    mean = probabilities.reshape(-1, 5).mean(axis=0)
    np.testing.assert_allclose([e["probability"] for e in record(item)["top_k"]], np.sort(mean)[::-1][:3],
                               atol=1e-4)


def test_sliding_video_command_keeps_the_video_and_checks_its_options(tmp_path, tiny_fc_classifier, capsys):
    """``densevision video`` on a recipe with a fully connected head: the heat map by default (JSON top-k of the
    decoded frames by crops), ``--no-sliding`` today's top-k of the resized frame, bad options one error line
    before anything is written."""
    from densevision.cli import run_tool
    from densevision.commands.video import build_parser, run

    def main(*argv) -> int:
        return run_tool(lambda _: run(build_parser().parse_args([str(a) for a in argv])), [], tool="video")

    model, weights, recipe, overrides = tiny_fc_classifier
    clip = write_clip(tmp_path / "clip.avi", 4, fps=9.0, make=textured_frame)
    common = [*recipe, clip, "--weights", weights, "--no-progress", *overrides]
    assert main(*common, "--output", tmp_path / "out.avi", "--json", tmp_path / "out.json", "--stride", 2) == 0
    written, fps, size, declared = read_back(tmp_path / "out.avi")
    assert (len(written), declared, fps, size) == (4, 4, 9.0, (WIDTH, HEIGHT))
    source, *_ = read_back(clip)
    frames = json.loads((tmp_path / "out.json").read_text())["frames"]
    for entry, frame in zip(frames, source):
        mean = numpy_probabilities(crop_scores(model, frame, 2)).reshape(-1, 5).mean(axis=0)
        order = np.argsort(-mean)[:3]
        assert [e["index"] for e in entry["top_k"]] == order.tolist()
        np.testing.assert_allclose([e["probability"] for e in entry["top_k"]], mean[order], atol=1e-4)
        assert entry["heatmap_class"] == SLIDE_NAMES[order[0]]
    # --no-sliding: the frame resized to the window, one forward pass (the classification video of before)
    assert main(*common, "--output", tmp_path / "plain.avi", "--json", tmp_path / "plain.json", "--no-sliding") == 0
    for entry, frame in zip(json.loads((tmp_path / "plain.json").read_text())["frames"], source):
        resized = cv2.resize(frame, (WINDOW, WINDOW), interpolation=cv2.INTER_AREA).astype(np.float32)
        probabilities = numpy_probabilities(model.predict(resized[None], verbose=0)[0])
        assert "heatmap_class" not in entry
        assert entry["top_k"][0]["index"] == int(np.argmax(probabilities))
        np.testing.assert_allclose(entry["top_k"][0]["probability"], probabilities.max(), atol=2e-3)
    capsys.readouterr()
    bad = [(("--stride", 3), "--stride 3: must divide the network stride 4 (valid: 4, 2, 1)"),
           (("--class", "circle"), "--class 'circle': not a class name or index 0..4; the classes: class_0, class_1, "
                                   "class_2, class_3, class_4"),
           (("--no-sliding", "--class", "class_1"), "--class: options of the sliding heat map, but --no-sliding"),
           (("--flip-test",), "--flip-test: not with the sliding heat map")]
    for options, message in bad:
        assert main(*common, "--output", tmp_path / "bad.avi", "--json", tmp_path / "bad.json", *options) == 2
        err = [line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("note: ")]
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], (options, err)
        assert not (tmp_path / "bad.avi").exists() and not (tmp_path / "bad.json").exists()


def test_sliding_options_are_refused_for_other_tasks_and_unslidable_models(tmp_path, capsys):
    import keras

    from densevision.inference.fully_convolutional import ConversionError
    from densevision.inference.sliding import sliding_classifier

    clip = write_clip(tmp_path / "clip.avi", 2)
    for argv, message in (
            ([ROOT / "recipes" / "tiramisu56_camvid.yaml", clip, "--weights", tmp_path / "none.keras", "--stride", 8],
             "--stride: classification options, but recipe 'tiramisu56_camvid' is a segmentation recipe"),
            (["--demo", "--single", clip, "--class", "person", "--sliding"],
             "--sliding, --class: classification options, but --demo without a recipe draws poses"),
            ([ROOT / "recipes" / "resnet50_classify.yaml", clip, "--weights", tmp_path / "none.keras", "--stride", 8],
             "--stride: options of the sliding heat map, but recipe 'resnet50_classify'")):
        assert load_tool("video").main([str(a) for a in argv] + ["--output", str(tmp_path / "x.avi"),
                                                                 "--no-progress"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not (tmp_path / "x.avi").exists()
    any_size = keras.Sequential([keras.Input((None, None, 3)), keras.layers.Conv2D(2, 3),
                                 keras.layers.GlobalAveragePooling2D(), keras.layers.Dense(3)])
    with pytest.raises(ConversionError, match="sliding needs the fixed size it was trained at"):
        sliding_classifier(any_size)


# ---------------------------------------------------------------- detect, then track

JOINTS = len(STICK_FIGURE_LAYOUT)


def true_pose(index: int, person: int) -> np.ndarray:
    """Where a perfect pose model puts the joints of generated person ``person`` in frame ``index``, whatever
    box it is given: the stick figure inside the true body rectangle."""
    return stick_figure_estimator(None, np.array([figure_boxes(index)[person]], np.float32))[0]


def oracle_estimator(collapse_from: dict = None):
    """Poses the generated person a box overlaps most; scores collapse for ``{person: from_frame}``."""
    collapse_from = collapse_from or {}

    def estimate(frame, boxes):
        truth = np.array(figure_boxes(estimate.index), np.float32)
        people = []
        for box in np.asarray(boxes).reshape(-1, 4):
            person = int(box_iou(box[None], truth)[0].argmax())
            points = true_pose(estimate.index, person).copy()
            if estimate.index >= collapse_from.get(person, 10 ** 9):
                points[:, 2] = 0.05
            people.append(points)
        return np.asarray(people, np.float32).reshape(-1, JOINTS, 3)

    estimate.index = 0
    return estimate


def flaky_detector(calls: list, miss_second_on_odd: bool = False):
    """True person boxes padded by 4 px, recording the frames it runs on; optionally misses person 1 on odd
    frames (as HOG misses people)."""

    def find(frame, index):
        calls.append(index)
        boxes = np.array(figure_boxes(index), np.float32) + [-4, -4, 8, 8]
        if miss_second_on_odd and index % 2:
            boxes = boxes[:1]
        return boxes, np.ones(len(boxes), np.float32)

    return find


def follow_clip(det_every: int, detector, estimate, frames: int = 12) -> list[list[dict]]:
    follower = PoseFollower(detector, estimate, det_every=det_every, tracker=Tracker())
    seen = []
    for index in range(frames):
        estimate.index = index
        seen.append(follower(figure_frame(index), index))
    return seen


def test_box_from_keypoints_grows_the_confident_joints_box():
    points = np.array([[10, 20, 0.9], [30, 60, 0.8], [20, 40, 0.5], [500, 500, 0.1]], np.float32)
    np.testing.assert_allclose(box_from_keypoints(points, threshold=0.3, expand=1.5), [5, 10, 30, 60])
    assert box_from_keypoints(points, threshold=0.6, min_joints=3) is None  # two joints left: a collapsed pose


def test_tracks_survive_frames_where_the_detector_is_not_run():
    calls: list[int] = []
    seen = follow_clip(5, flaky_detector(calls), oracle_estimator())
    assert calls == [0, 5, 10]
    assert [len(people) for people in seen] == [2] * 12
    assert {p["track_id"] for people in seen for p in people} == {0, 1}
    for index, people in enumerate(seen):  # the followed boxes stay on the moving people (2 px a frame)
        truth = np.array(figure_boxes(index), np.float32)
        boxes = np.array([p["box"] for p in sorted(people, key=lambda p: p["track_id"])])
        assert np.diag(box_iou(boxes, truth)).min() > 0.5, index


def test_following_keeps_people_the_detector_misses_with_fewer_track_ids():
    every_frame_calls: list[int] = []
    every_frame = follow_clip(1, flaky_detector(every_frame_calls, miss_second_on_odd=True), oracle_estimator())
    followed_calls: list[int] = []
    followed = follow_clip(5, flaky_detector(followed_calls, miss_second_on_odd=True), oracle_estimator())
    assert len(every_frame_calls) == 12 and [len(p) for p in every_frame] == [2, 1] * 6
    assert [len(p) for p in followed] == [2] * 12  # person 1 is followed through the frames HOG would miss
    assert len({p["track_id"] for ps in followed for p in ps}) == 2


def test_a_collapsed_track_is_dropped_and_the_detector_runs_on_the_next_frame():
    calls: list[int] = []
    seen = follow_clip(5, flaky_detector(calls), oracle_estimator(collapse_from={1: 7}))
    # 7: person 1's pose collapses, so it is dropped and 8 detects. Its pose stays collapsed: the detection is shown
    # and its box held until the next detection frame (10), and it does not count as a lost track (that would make
    # every frame a detection frame)
    assert calls == [0, 5, 8, 10]
    assert [len(p) for p in seen[:7]] == [2] * 7 and len(seen[7]) == 1
    assert all(p["detected"] for p in seen[8]) and len(seen[8]) == 2  # a detection is shown whatever its pose
    assert [len(p) for p in seen[9:]] == [2, 2, 2] and not any(p["detected"] for p in seen[9])
    [weak] = [p for p in seen[8] if p["keypoints"][:, 2].max() < 0.1]
    [held] = [p for p in seen[9] if p["track_id"] == weak["track_id"]]  # the same id, on frame 8's detector box
    np.testing.assert_allclose(held["box"], np.array(figure_boxes(8)[1], np.float32) + [-4, -4, 8, 8])


def test_a_detection_over_a_person_lost_on_the_last_frame_continues_its_track_id():
    calls: list[int] = []
    oracle = oracle_estimator()

    def find_wide(frame, index):  # boxes twice as wide and high as the people: IoU with a joints' box under 0.3
        calls.append(index)
        boxes = np.array(figure_boxes(index), np.float32)
        return boxes + boxes[:, 2:].repeat(2, 1) * [-0.5, -0.5, 1, 1], np.ones(2, np.float32)

    def estimate(frame, boxes):  # person 1's pose collapses on frame 3 only
        people = oracle(frame, boxes)
        truth = np.array(figure_boxes(oracle.index), np.float32)
        if oracle.index == 3:
            people[box_iou(np.asarray(boxes).reshape(-1, 4), truth).argmax(1) == 1, :, 2] = 0.05
        return people


    def run(estimate_at):
        follower = PoseFollower(find_wide, estimate_at, det_every=10, tracker=Tracker())
        seen = []
        for index in range(6):
            oracle.index = index
            seen.append(follower(figure_frame(index), index))
        return seen

    seen = run(estimate)
    assert calls == [0, 4] and [len(p) for p in seen] == [2, 2, 2, 1, 2, 2]
    wide = np.array(figure_boxes(4)[1], np.float32)
    wide = wide + np.concatenate([wide[2:], wide[2:]]) * [-0.5, -0.5, 1, 1]
    assert box_iou(box_from_keypoints(true_pose(2, 1))[None], wide[None])[0, 0] < 0.3  # IoU alone would not match
    assert {p["track_id"] for people in seen for p in people} == {0, 1}  # the detection on 4 continues id 1


def test_det_every_runs_in_the_threaded_pipeline_and_counts_detector_runs(tmp_path):
    calls: list[int] = []
    estimate = oracle_estimator()

    def estimate_by_frame(frame, boxes):  # the frame's grey stamp says which frame it is (see figure_frame)
        estimate.index = int(round(frame[HEIGHT - 4, 4, 0] / 20))
        return estimate(frame, boxes)

    clip = write_clip(tmp_path / "clip.avi", 12)
    with open_frames(str(clip)) as frames, VideoWriter(tmp_path / "o.avi", frames.fps, WIDTH, HEIGHT) as writer:
        summary = run_pose_video(frames, writer, flaky_detector(calls), estimate_by_frame, lambda f, p: f,
                                 tracker=Tracker(), progress=False, det_every=4, json_path=tmp_path / "o.json")
    assert sorted(calls) == [0, 4, 8] and summary["detector_runs"] == 3
    assert (summary["people"], summary["tracks"]) == (24, 2)


# ---------------------------------------------------------------- the boxes file and the person record

def test_a_video_json_round_trips_as_the_next_runs_boxes(tmp_path, capsys):
    clip = write_clip(tmp_path / "clip.avi", 6)
    given = tmp_path / "given.json"
    given.write_text(json.dumps({"frames": [{"frame": i, "boxes": [[*b, 0.7] for b in figure_boxes(i)]}
                                            for i in range(6)]}))
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    for boxes, out in ((given, first), (first, second)):
        assert video_main("--demo", clip, "--boxes", boxes, "--output", tmp_path / f"{out.stem}.mp4", "--json", out,
                          "--no-progress") == 0
    runs = [json.loads(path.read_text())["frames"] for path in (first, second)]
    assert [[p["box"] for p in f["people"]] for f in runs[0]] == [figure_boxes(i) for i in range(6)]
    assert runs[0] == runs[1]  # the same people, boxes, scores and keypoints from the written JSON
    assert runs[1][2]["people"][0]["box_score"] == 0.7


def test_boxes_file_layouts_key_frames_and_images_alike(tmp_path):
    path = tmp_path / "b.json"
    layouts = [
        {"frames": [{"frame": 0, "file": "a/x.jpg", "boxes": [[1, 2, 3, 4, 0.5]]}]},
        [{"image": "a/x.jpg", "image_id": -1, "bbox": [1, 2, 3, 4], "box": [1, 2, 3, 4], "box_score": 0.5,
          "score": 0.1}],  # a predict results.json entry: its box_score is the finder's
        {"a/x.jpg": [[1, 2, 3, 4, 0.5]]},
    ]
    for layout in layouts:
        path.write_text(json.dumps(layout))
        table = load_boxes_file(path)
        by_frame = isinstance(layout, dict) and "frames" in layout
        boxes, scores = table.lookup(frame=0) if by_frame else table.lookup(name="a/x.jpg")
        np.testing.assert_array_equal(boxes, [[1, 2, 3, 4]])
        np.testing.assert_array_equal(scores, [0.5])
        assert len(table.lookup(frame=5)[0]) == 0 and len(table.lookup(name="b/x.jpg")[0]) == 0
    path.write_text(json.dumps({"x.jpg": [[1, 2, 3, 4]]}))  # a bare file name matches the image in any folder
    assert load_boxes_file(path).lookup(name="a/x.jpg")[0].tolist() == [[1, 2, 3, 4]]


def test_predict_refuses_a_malformed_boxes_file_up_front(tmp_path, capsys):
    bad = tmp_path / "boxes.json"
    bad.write_text("{not json")
    (tmp_path / "images").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "a.png"), figure_frame(0))
    code = load_tool("predict").main([str(ROOT / "recipes" / "hourglass_lsp.yaml"), str(tmp_path / "images"),
                                      "--weights", str(tmp_path / "missing.keras"), "--boxes", str(bad),
                                      "--output", str(tmp_path / "out")])
    assert code == 2  # before: every image failed one by one, exit 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: boxes file {bad}: cannot read it as JSON (Expecting property name enclosed in double "
                   f"quotes: line 1 column 2 (char 1))"]
    assert not (tmp_path / "out").exists()


def test_pose_person_record_is_the_same_in_predict_and_video():
    task = PoseTask.__new__(PoseTask)
    keypoints = np.array([[10, 20, 0.5], [30, 40, 1.0]], np.float32)
    answer = {"people": [{"box": [1.0, 2.0, 30.0, 40.0], "score": 0.8, "keypoints": keypoints}]}
    [entry] = PoseWriter(task).prediction_record(answer, "dir/000123.jpg", (50, 50), None)
    record = person_record([1, 2, 30, 40], 0.8, keypoints)
    assert record == {"track_id": None, "box": [1.0, 2.0, 30.0, 40.0], "box_score": 0.8, "score": 0.6,
                      "keypoints": [[10.0, 20.0, 0.5], [30.0, 40.0, 1.0]]}
    # results.json: the same keys and values, the keypoints in COCO results' flat layout (what loadRes reads)
    assert {k: entry[k] for k in record if k != "keypoints"} == {k: v for k, v in record.items() if k != "keypoints"}
    assert entry["keypoints"] == [10.0, 20.0, 0.5, 30.0, 40.0, 1.0]
    assert (entry["image"], entry["image_id"], entry["category_id"], entry["bbox"]) == (
        "dir/000123.jpg", 123, 1, [1.0, 2.0, 30.0, 40.0])


# ---------------------------------------------------------------- hostile inputs and outputs

def test_pose_video_json_into_an_unwritable_place_fails_before_any_frame(tmp_path, capsys):
    clip = write_clip(tmp_path / "clip.avi", 4)
    blocker = tmp_path / "file.txt"
    blocker.write_text("a file where a folder should be")
    code = load_tool("pose_video").main(["--demo", "--single", "--input", str(clip), "--output",
                                         str(tmp_path / "out.mp4"), "--json", str(blocker / "out.json"),
                                         "--no-progress"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--json" in err[0] and "file.txt" in err[0] and "is a file, not a folder" in err[0]
    assert not (tmp_path / "out.mp4").exists()


def test_a_folder_of_photos_of_many_sizes_is_letterboxed_and_posed(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for index in range(20):
        height, width = 60 + 7 * index, 200 - 5 * index
        cv2.imwrite(str(photos / f"{index:02d}.png"), rng.integers(0, 255, (height, width, 3), np.uint8))
    assert video_main("--demo", "--single", "--input", photos, "--output", tmp_path / "out.mp4", "--json",
                      tmp_path / "out.json", "--no-progress") == 0
    frames = json.loads((tmp_path / "out.json").read_text())["frames"]
    assert len(frames) == 20 and not [f for f in frames if "error" in f]
    assert all(len(f["people"]) == 1 for f in frames)  # every photo posed (before: 19 replaced by the previous)
    assert [f["source_size"] for f in frames[1:3]] == [[195, 67], [190, 74]]
    assert "19 frame(s) of another size letterboxed into 200x60" in capsys.readouterr().out
    written, _, size, _ = read_back(tmp_path / "out.mp4")
    assert len(written) == 20 and size == (200, 60)


# ---------------------------------------------------------------- H.264 and its fallback

@pytest.mark.parametrize("h264", [True, False])
def test_mp4_is_h264_when_imageio_ffmpeg_is_installed_else_mp4v_with_a_warning(tmp_path, monkeypatch, h264):
    if h264 and not video_io.h264_available():
        pytest.skip("imageio-ffmpeg is not installed")
    if not h264:
        monkeypatch.setattr(video_io, "imageio_ffmpeg", None)
    writer = VideoWriter(tmp_path / "v.mp4", 15.0, 161, 97)  # odd: the last column and row are dropped
    with writer:
        for index in range(9):
            writer.write(np.full((97, 161, 3), 25 * index, np.uint8))
    capture = cv2.VideoCapture(str(tmp_path / "v.mp4"))
    fourcc = int(capture.get(cv2.CAP_PROP_FOURCC)).to_bytes(4, "little").decode()
    capture.release()
    written, fps, size, declared = read_back(tmp_path / "v.mp4")
    assert (len(written), fps, size) == (9, 15.0, (160, 96))
    assert abs(int(written[4].mean()) - 100) <= 6  # mp4v at its default quality shifts flat grey a little
    assert (writer.codec, fourcc.lower()) == (("h264", "h264") if h264 else ("mp4v", "fmp4"))  # as OpenCV reads them
    assert (writer.fallback is None) == h264
    if not h264:
        assert "imageio-ffmpeg is not installed" in writer.fallback and "browsers" in writer.fallback


def test_no_fps_text_unless_asked(tmp_path):
    clip = write_clip(tmp_path / "clip.avi", 3)
    for flag, name in (([], "plain"), (["--fps-text"], "text")):
        assert video_main("--demo", "--single", clip, "--output", tmp_path / f"{name}.avi", "--no-progress",
                          "--kpt-thr", "1.0", *flag) == 0
    source, *_ = read_back(clip)
    plain, *_ = read_back(tmp_path / "plain.avi")
    text, *_ = read_back(tmp_path / "text.avi")
    corner = (slice(0, 14), slice(0, 50))
    assert np.abs(plain[2][corner].astype(int) - source[2][corner]).mean() < 3  # nothing drawn there
    assert np.abs(text[2][corner].astype(int) - source[2][corner]).mean() > 20  # the FPS patch


# ---------------------------------------------------------------- keras-hub person finder

def test_keras_hub_detector_keeps_people_and_converts_boxes():
    """The plumbing against a detector with keras-hub's ObjectDetector interface (``predict`` answering yxyx boxes,
    ``confidence``, ``labels``, ``num_detections``; a fixed ``backbone.image_shape``)."""

    class Shaped:
        bounding_box_format = "yxyx"
        backbone = SimpleNamespace(image_shape=(50, 100, 3))

        def predict(self, images, verbose=0):
            assert images.shape == (1, 50, 100, 3)
            return {"boxes": np.array([[[10, 20, 40, 30], [0, 0, 50, 100], [12, 21, 41, 31], [5, 5, 6, 6]]]),
                    "confidence": np.array([[0.9, 0.95, 0.8, 0.99]]), "labels": np.array([[1, 3, 1, 1]]),
                    "num_detections": np.array([3])}

    boxes, scores = KerasHubPersonDetector(detector=Shaped(), score_threshold=0.5)(np.zeros((100, 400, 3), np.uint8))
    # label 3 is not a person, the 4th is past num_detections, the 3rd overlaps the 1st (NMS); 4x wide, 2x tall
    np.testing.assert_allclose(boxes, [[80, 20, 40, 60]])
    np.testing.assert_allclose(scores, [0.9])


def test_keras_hub_detector_built_from_a_config_runs_offline():
    keras_hub = pytest.importorskip("keras_hub", reason="keras-hub is an optional extra (it pulls the full tensorflow)")
    backbone = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64], input_conv_kernel_sizes=[3], stackwise_num_filters=[64, 16, 16],
        stackwise_num_blocks=[1, 1, 1], stackwise_num_strides=[1, 2, 2], block_type="basic_block",
        image_shape=(64, 64, 3))
    retinanet = keras_hub.models.RetinaNetBackbone(image_encoder=backbone, min_level=3, max_level=4,
                                                   use_p5=False, image_shape=(64, 64, 3))
    detector = keras_hub.models.RetinaNetObjectDetector(backbone=retinanet, num_classes=2, anchor_generator=None,
                                                        bounding_box_format="yxyx")
    finder = KerasHubPersonDetector(detector=detector, person_class=1, score_threshold=0.0)
    boxes, scores = finder(np.random.default_rng(0).integers(0, 255, (128, 96, 3), np.uint8))
    assert boxes.shape[1:] == (4,) and scores.shape == (len(boxes),) and (boxes[:, 2:] > 0).all()


def test_keras_hub_preset_offline_names_the_preset_and_cache(monkeypatch):
    from densevision.video import detect

    monkeypatch.setenv("KAGGLEHUB_CACHE", "/nowhere/cache")

    class Failing:
        class models:
            class ObjectDetector:
                @staticmethod
                def from_preset(preset):
                    raise OSError("URL fetch failure")

    monkeypatch.setitem(__import__("sys").modules, "keras_hub", Failing)
    with pytest.raises(detect.DetectorUnavailableError, match=r"preset 'dfine_nano_coco'.*/nowhere/cache"):
        detect.make_person_detector("keras_hub:dfine_nano_coco")
