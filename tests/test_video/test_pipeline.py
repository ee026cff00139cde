"""Video pieces: frame sources and corrupt frames, the atomic writer, person finders, tracking, One-Euro smoothing,
drawing and the threaded pose-video loop (small generated clips; one real-data HOG check)."""

from __future__ import annotations

import json
import math
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

import densevision  # noqa: F401  (environment first)
from densevision.data.boxes import BoxesFileError
from densevision.data.paths import dataset_dir, missing_reason
from densevision.video import detect
from densevision.video.demo import STICK_FIGURE_INFO, stick_figure_estimator
from densevision.video.detect import (DetectorUnavailableError, HogPersonDetector, boxes_from_table, box_iou,
                                      load_boxes_json, non_max_suppression, whole_frame_box)
from densevision.video.io import DEFAULT_FPS, VideoError, VideoWriter, open_frames
from densevision.video.overlay import FpsCounter, draw_fps, make_drawer
from densevision.video.pipeline import run_pose_video
from densevision.video.threads import prefetch, stage
from densevision.video.track import KeypointSmoother, OneEuroFilter, Tracker, assign, keypoint_similarity

HEIGHT, WIDTH = 112, 160
FIGURE_W, FIGURE_H = 36, 72
BACKGROUND, BODY = 30, 170


# ---------------------------------------------------------------- generated clips

def figure_boxes(index: int) -> list[list[int]]:
    """Two people walking towards each other, 2 px per frame, never overlapping within 12 frames."""
    return [[4 + 2 * index, 20, FIGURE_W, FIGURE_H], [120 - 2 * index, 24, FIGURE_W, FIGURE_H]]


def figure_frame(index: int) -> np.ndarray:
    """RGB frame: light rectangles (the people) on a dark background, with a per-frame colour stamp."""
    frame = np.full((HEIGHT, WIDTH, 3), BACKGROUND, np.uint8)
    for x, y, w, h in figure_boxes(index):
        frame[y:y + h, x:x + w] = BODY
    frame[HEIGHT - 8:, :8] = 20 * index  # a grey stamp (one JPEG block) identifies the frame after a skip
    return frame


def write_clip(path, count: int, fps: float = 12.0, fourcc: str = "MJPG", make=figure_frame):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (WIDTH, HEIGHT))
    assert writer.isOpened()
    for index in range(count):
        writer.write(cv2.cvtColor(make(index), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def damage_jpeg_frames(path, frames: list[int]) -> None:
    """Zero the first 300 bytes (SOI marker and headers) of the given JPEG frames of an MJPG .avi."""
    data = bytearray(path.read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i] == 0xFF and data[i + 1] == 0xD8 and data[i + 2] == 0xFF]
    assert len(starts) == int(cv2.VideoCapture(str(path)).get(cv2.CAP_PROP_FRAME_COUNT))
    for frame in frames:
        data[starts[frame]:starts[frame] + 300] = bytes(300)
    path.write_bytes(bytes(data))


def read_back(path) -> tuple[list[np.ndarray], float, tuple[int, int], float]:
    capture = cv2.VideoCapture(str(path))
    fps, declared = capture.get(cv2.CAP_PROP_FPS), capture.get(cv2.CAP_PROP_FRAME_COUNT)
    size = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    capture.release()
    return frames, fps, size, declared


def bright_people(frame: np.ndarray, index: int):
    """Dummy person finder: bounding boxes of the light regions (the generated people)."""
    mask = (frame.min(axis=2) > 100).astype(np.uint8)
    count, _, stats, _ = cv2.connectedComponentsWithStats(mask)
    boxes = stats[1:count, :4].astype(np.float32)
    boxes = boxes[boxes[:, 2] * boxes[:, 3] > 100]
    return boxes, np.ones(len(boxes), np.float32)


# ---------------------------------------------------------------- frame sources

def test_corrupt_frame_is_reported_and_reading_continues(tmp_path):
    clip = write_clip(tmp_path / "clip.avi", 12)
    damage_jpeg_frames(clip, [5, 6])
    source = open_frames(str(clip))
    assert (source.width, source.height, source.fps, source.frame_count) == (WIDTH, HEIGHT, 12.0, 12)
    items = list(source.read_ahead(max_queued=2))
    assert [index for index, _, _ in items] == list(range(12))
    errors = {index: error for index, frame, error in items if frame is None}
    assert sorted(errors) == [5, 6] and "frame 5" in errors[5] and str(clip) in errors[5]
    for index, frame, error in items:
        if frame is not None:  # the frame after the damage is the right one, not a shifted one
            assert error is None and abs(int(frame[-4, 4, 0]) - 20 * index) <= 6, index
    assert source.ended_early is None


def test_damaged_last_frame_counts_and_truncated_video_stops_early(tmp_path):
    last = write_clip(tmp_path / "last.avi", 8)
    damage_jpeg_frames(last, [7])
    items = list(open_frames(str(last)))
    assert len(items) == 8 and items[7][1] is None and all(f is not None for _, f, _ in items[:7])

    truncated = write_clip(tmp_path / "cut.avi", 12)
    data = truncated.read_bytes()
    starts = [i for i in range(len(data) - 2) if data[i:i + 3] == b"\xff\xd8\xff"]
    truncated.write_bytes(data[:starts[6] + 50])  # frames 6.. are gone, the header still declares 12
    source = open_frames(str(truncated), max_consecutive_errors=3)
    items = list(source)
    assert [i for i, f, _ in items if f is not None] == list(range(6)) and len(items) == 6
    assert "stopped at frame 6 of 12" in source.ended_early
    assert [i for i, _, _ in open_frames(str(last), max_frames=3)] == [0, 1, 2]


def test_unusable_inputs_raise_one_clear_video_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(VideoError, match="holds no images"):
        open_frames(str(tmp_path / "empty"))
    with pytest.raises(VideoError, match="does not exist"):
        open_frames(str(tmp_path / "missing.mp4"))
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video" * 50)
    with pytest.raises(VideoError, match=f"video {junk} cannot be opened"):
        open_frames(str(junk))
    image = tmp_path / "one.png"
    cv2.imwrite(str(image), figure_frame(0))
    with pytest.raises(VideoError, match="single image"):
        open_frames(str(image))
    all_bad = write_clip(tmp_path / "bad.avi", 4)
    damage_jpeg_frames(all_bad, [0, 1, 2, 3])
    with pytest.raises(VideoError, match="no frame could be decoded"):
        open_frames(str(all_bad))
    with pytest.raises(VideoError, match="camera 97 cannot be opened"):
        open_frames("97")


def test_image_folder_natural_order_fps_and_bad_images(tmp_path):
    for index, name in [(2, "f2.png"), (10, "f10.png"), (1, "f1.png"), (3, "f3.jpg")]:
        frame = figure_frame(index)
        frame[0, 0] = (250, 10, 90)  # RGB
        cv2.imwrite(str(tmp_path / name), cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    (tmp_path / "f4.png").write_bytes(b"broken")
    cv2.imwrite(str(tmp_path / "f5.png"), np.full((10, 20, 3), (0, 200, 0), np.uint8))  # 20x10, other size
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_frames(str(tmp_path))
    assert source.fps == DEFAULT_FPS and source.frame_count == 6
    assert source.frame_names == ["f1.png", "f2.png", "f3.jpg", "f4.png", "f5.png", "f10.png"]
    items = list(source)
    assert [i for i, f, _ in items if f is None] == [3]
    assert "cannot be read" in items[3][2]
    # 20x10 fitted into 160x112: scaled 8x to 160x80, centred (16 black rows above and below)
    fitted = items[4][1]
    assert source.fitted == {4: (20, 10)} and fitted.shape == (HEIGHT, WIDTH, 3)
    assert (fitted[16:96] == (0, 200, 0)).all() and (fitted[:16] == 0).all() and (fitted[96:] == 0).all()
    assert items[5][1][-4, 4, 0] == 200 and items[5][1][0, 0].tolist() == [250, 10, 90]  # f10.png, RGB order
    assert open_frames(str(tmp_path), fps=7.5).fps == 7.5
    assert open_frames(str(tmp_path), max_frames=2).frame_names == ["f1.png", "f2.png"]


# ---------------------------------------------------------------- writer

def test_writer_is_atomic_and_fails_clearly(tmp_path):
    target = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="boom"):
        with VideoWriter(target, 10, WIDTH, HEIGHT) as writer:
            writer.write(figure_frame(0))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []  # neither the video nor its temporary file

    with VideoWriter(target, 10, WIDTH, HEIGHT) as writer:
        with pytest.raises(ValueError, match=r"expected uint8 \(112, 160, 3\)"):
            writer.write(np.zeros((HEIGHT, WIDTH + 2, 3), np.uint8))  # OpenCV would drop it silently
        writer.write(figure_frame(0))
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]  # and no temporary file
    with pytest.raises(VideoError, match="already exists"):
        VideoWriter(target, 10, WIDTH, HEIGHT)
    with pytest.raises(VideoError, match="unknown video suffix '.webm'"):
        VideoWriter(tmp_path / "out.webm", 10, WIDTH, HEIGHT)
    with VideoWriter(tmp_path / "odd.avi", 10, 129, 97) as writer:  # 4:2:0 codecs: OpenCV drops a column/row
        writer.write(np.zeros((97, 129, 3), np.uint8))
    assert writer.written_size == (128, 96) and read_back(tmp_path / "odd.avi")[2] == (128, 96)
    with pytest.raises(VideoError, match="cannot open a 'avc1' writer"):
        VideoWriter(tmp_path / "h264.mp4", 10, WIDTH, HEIGHT, fourcc="avc1")


# ---------------------------------------------------------------- pipeline

def run(tmp_path, clip, output, find_people, **options):
    source = open_frames(str(clip))
    writer = VideoWriter(output, source.fps, source.width, source.height)
    return run_pose_video(source, writer, find_people, stick_figure_estimator,
                          make_drawer(STICK_FIGURE_INFO, keypoint_threshold=0.3, radius=2, thickness=1),
                          progress=False, **options)


def test_json_keypoints_are_where_the_skeleton_is_drawn_and_ids_are_stable(tmp_path):
    clip = write_clip(tmp_path / "walk.avi", 12)
    summary = run(tmp_path, clip, tmp_path / "out.avi", bright_people, tracker=Tracker(),
                  json_path=tmp_path / "out.json", show_fps=False)
    result = json.loads((tmp_path / "out.json").read_text())
    frames, fps, size, _ = read_back(tmp_path / "out.avi")
    assert len(frames) == len(result["frames"]) == 12 and summary["people"] == 24 and summary["tracks"] == 2
    colors = np.array(STICK_FIGURE_INFO["joint_colors"], np.int32)
    ids_by_side = {"left": set(), "right": set()}
    for record, frame in zip(result["frames"], frames):
        assert len(record["people"]) == 2
        for person in record["people"]:
            side = "left" if person["box"][0] < WIDTH / 2 else "right"
            ids_by_side[side].add(person["track_id"])
            for joint, (x, y, score) in enumerate(np.reshape(person["keypoints"], (-1, 3))):
                pixel = frame[round(y), round(x)].astype(np.int32)
                distances = np.abs(colors - pixel).max(axis=1)
                if score >= 0.3:  # this joint's colour (MJPG costs up to ~20), nearer than any other joint's
                    assert distances[joint] <= 40 and distances.argmin() == joint, (record["frame"], joint, pixel)
                else:  # below --kpt-thr: not drawn
                    assert distances[joint] > 100, (record["frame"], joint, pixel)
    assert len(ids_by_side["left"]) == 1 and len(ids_by_side["right"]) == 1
    assert ids_by_side["left"] != ids_by_side["right"]


def test_boxes_file_used_as_given_and_mp4_keeps_count_size_rate(tmp_path):
    clip = write_clip(tmp_path / "clip.avi", 10, fps=15)
    boxes_file = tmp_path / "boxes.json"
    boxes_file.write_text(json.dumps({"frames": [
        {"frame": 0, "boxes": [[10, 20, 40, 60, 0.8]]},
        {"frame": 3, "boxes": [[10.5, 20, 40, 60], [100, 10, 30, 80, 0.5]]},
    ]}))
    table = load_boxes_json(boxes_file)
    summary = run(tmp_path, clip, tmp_path / "out.mp4", boxes_from_table(table), json_path=tmp_path / "r.json")
    frames, fps, size, declared = read_back(tmp_path / "out.mp4")
    assert (len(frames), declared, fps, size) == (10, 10, 15.0, (WIDTH, HEIGHT))
    result = json.loads((tmp_path / "r.json").read_text())
    assert (result["fps"], result["width"], result["height"]) == (15.0, WIDTH, HEIGHT)
    people = {r["frame"]: r["people"] for r in result["frames"]}
    assert [len(people[i]) for i in range(10)] == [1, 0, 0, 2, 0, 0, 0, 0, 0, 0]
    assert people[3][1]["box"] == [100, 10, 30, 80] and people[3][1]["box_score"] == 0.5
    # the person score: box score x mean joint score (stick figure: 12 joints at 0.9, 2 at 0.25)
    assert people[3][1]["score"] == pytest.approx(0.5 * (12 * 0.9 + 2 * 0.25) / 14, abs=1e-4)
    assert people[0][0]["box_score"] == 0.8 and people[3][0]["box_score"] == 1.0 and people[3][0]["track_id"] is None
    # head top is at (x + 0.5 w, y + 0.05 h) of the given box, left knee at (x + 0.6 w, y + 0.75 h)
    assert people[3][1]["keypoints"][13] == [115.0, 14.0, 0.9]  # [x, y, score] per joint
    assert people[0][0]["keypoints"][4] == [34.0, 65.0, 0.9]
    assert summary["frames"] == 10 and summary["people"] == 3 and summary["frames_with_people"] == 2


def test_corrupt_frame_skipped_previous_repeated_rest_written(tmp_path):
    clip = write_clip(tmp_path / "clip.avi", 12)
    damage_jpeg_frames(clip, [5])
    summary = run(tmp_path, clip, tmp_path / "out.avi", bright_people, json_path=tmp_path / "out.json",
                  show_fps=False)
    assert summary["frames"] == 12 and summary["corrupt_frames"] == 1 and summary["corrupt_frame_indices"] == [5]
    records = json.loads((tmp_path / "out.json").read_text())["frames"]
    assert [r["frame"] for r in records] == list(range(12))
    assert "could not be decoded" in records[5]["error"] and records[5]["people"] == []
    assert all("error" not in r and len(r["people"]) == 2 for i, r in enumerate(records) if i != 5)
    frames, _, _, _ = read_back(tmp_path / "out.avi")
    assert len(frames) == 12
    stamps = [int(f[-4, 4, 0]) for f in frames]  # the frame stamp survives drawing
    assert abs(stamps[5] - stamps[4]) <= 6 and all(abs(s - 20 * i) <= 6 for i, s in enumerate(stamps) if i != 5)


def test_stages_overlap_and_errors_propagate(tmp_path):
    clip = write_clip(tmp_path / "clip.avi", 10)
    delay = 0.05

    def slow_find(frame, index):
        time.sleep(delay)
        return whole_frame_box(WIDTH, HEIGHT)

    def slow_draw(frame, people):
        time.sleep(delay)
        return frame

    source = open_frames(str(clip))
    writer = VideoWriter(tmp_path / "o.mp4", source.fps, WIDTH, HEIGHT)

    def slow_estimate(frame, boxes):
        time.sleep(delay)
        return stick_figure_estimator(frame, boxes)

    started = time.perf_counter()
    run_pose_video(source, writer, slow_find, slow_estimate, slow_draw, progress=False)
    elapsed = time.perf_counter() - started
    assert elapsed < 2 * 10 * delay, elapsed  # one after another would take 3 x 10 x delay

    def broken_estimate(frame, boxes):
        raise RuntimeError("model failed")

    source = open_frames(str(clip))
    writer = VideoWriter(tmp_path / "broken.mp4", source.fps, WIDTH, HEIGHT)
    with pytest.raises(RuntimeError, match="model failed"):
        run_pose_video(source, writer, slow_find, broken_estimate, slow_draw, progress=False)
    assert not (tmp_path / "broken.mp4").exists()

    def interrupted_draw(frame, people):
        raise KeyboardInterrupt  # Ctrl-C arrives in the main thread, which draws and writes

    (tmp_path / "kept.mp4").write_bytes(b"old result")
    source = open_frames(str(clip))
    writer = VideoWriter(tmp_path / "kept.mp4", source.fps, WIDTH, HEIGHT, overwrite=True)
    with pytest.raises(KeyboardInterrupt):
        run_pose_video(source, writer, slow_find, slow_estimate, interrupted_draw, progress=False)
    assert (tmp_path / "kept.mp4").read_bytes() == b"old result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.avi", "kept.mp4", "o.mp4"]
    assert not [t for t in threading.enumerate() if t.name in ("pose", "find people") or t.name.startswith("read ")]


def test_prefetch_keeps_order_and_stops_its_thread():
    assert list(prefetch(stage(lambda x: x * x, iter(range(20))), max_queued=2)) == [x * x for x in range(20)]
    produced = []

    def endless():
        index = 0
        while True:
            produced.append(index)
            yield index
            index += 1

    items = prefetch(endless(), max_queued=3, name="endless")
    assert [next(items) for _ in range(5)] == list(range(5))
    items.close()
    assert not [t for t in threading.enumerate() if t.name == "endless"]
    assert len(produced) <= 5 + 3 + 2  # bounded read-ahead


# ---------------------------------------------------------------- detection and boxes files

def test_box_iou_and_nms_match_opencv():
    assert box_iou([[0, 0, 10, 10]], [[5, 0, 10, 10]])[0, 0] == pytest.approx(50 / 150)
    rng = np.random.default_rng(3)
    for _ in range(20):
        boxes = np.concatenate([rng.integers(0, 80, (30, 2)), rng.integers(5, 40, (30, 2))], 1).astype(np.float32)
        scores = rng.random(30).astype(np.float32)
        expected = cv2.dnn.NMSBoxes(boxes.tolist(), scores.tolist(), 0.0, 0.4)
        assert non_max_suppression(boxes, scores, 0.4).tolist() == np.asarray(expected).reshape(-1).tolist()


def test_boxes_file_formats_agree_and_errors_name_file_and_frame(tmp_path):
    per_frame = tmp_path / "a.json"
    per_frame.write_text(json.dumps({"frames": [{"frame": 2, "boxes": [[1, 2, 3, 4, 0.5], [5, 6, 7, 8]]}]}))
    coco = tmp_path / "b.json"
    coco.write_text(json.dumps([{"image_id": 2, "bbox": [1, 2, 3, 4], "score": 0.5},
                                {"frame": 2, "bbox": [5, 6, 7, 8]}]))
    for table in (load_boxes_json(per_frame), load_boxes_json(coco)):
        assert list(table) == [2]
        np.testing.assert_array_equal(table[2][0], [[1, 2, 3, 4], [5, 6, 7, 8]])
        np.testing.assert_array_equal(table[2][1], [0.5, 1.0])
    bad = tmp_path / "bad.json"
    cases = [
        ({"frames": [{"frame": 4, "boxes": [[1, 2, -3, 4]]}]}, r"bad.json, frames\[0\] \(frame 4\), box 0.*positive"),
        ({"frames": [{"frame": 1, "boxes": []}, {"frame": 1, "boxes": []}]}, "frame 1 is listed twice"),
        ([{"frame": -1, "bbox": [0, 0, 1, 1]}], "entry 0, frame: frame index must be a non-negative integer"),
        ([{"frame": 0, "bx": [0, 0, 1, 1]}], r"entry 0 \(frame 0\): expected a \"box\" \(or \"bbox\"\)"),
        ({"boxes": []}, "image 'boxes': expected an image path relative to the input folder"),
        ({"frames": {}}, "expected {\"frames\""),
    ]
    for content, message in cases:
        bad.write_text(json.dumps(content))
        with pytest.raises(BoxesFileError, match=message):
            load_boxes_json(bad)
    bad.write_text("{not json")
    with pytest.raises(BoxesFileError, match="cannot read it as JSON"):
        load_boxes_json(bad)


def test_missing_hog_explains_the_opencv_pin(monkeypatch):
    monkeypatch.delattr(detect.cv2, "HOGDescriptor")
    with pytest.raises(DetectorUnavailableError, match=r"5\.0 dropped it.*~=4\.14\.0.*--boxes"):
        HogPersonDetector()


def test_hog_skips_frames_smaller_than_its_window():
    detector = HogPersonDetector()
    for height, width in [(96, 128), (200, 47)]:  # both kill the process inside OpenCV 4.14's detectMultiScale
        boxes, scores = detector(np.zeros((height, width, 3), np.uint8))
        assert boxes.shape == (0, 4) and scores.shape == (0,)
    boxes, _ = HogPersonDetector(upscale=2.0)(np.zeros((96, 128, 3), np.uint8))  # 192x256 after upscaling: runs
    assert boxes.shape == (0, 4)


@pytest.mark.realdata
def test_hog_finds_the_walking_man_in_the_demo_video():
    folder = dataset_dir("video")
    if folder is None or not (folder / "demo.mp4").is_file():
        pytest.skip(missing_reason("video"))
    source = open_frames(str(folder / "demo.mp4"))
    _, frame, _ = next(iter(source))
    source.close()
    boxes, scores = HogPersonDetector()(frame)
    assert len(boxes) >= 1 and np.all(np.diff(scores) <= 0) and scores.min() >= 0.3
    # The man walking away in the centre (looked up by eye): about x 453-500, y 160-313 in the 960x540 frame.
    centre = np.array([476, 236])
    holds = (boxes[:, 0] <= centre[0]) & (centre[0] <= boxes[:, 0] + boxes[:, 2]) & \
            (boxes[:, 1] <= centre[1]) & (centre[1] <= boxes[:, 1] + boxes[:, 3])
    assert holds.any() and scores[holds].max() >= 1.0
    assert box_iou(boxes, boxes)[~np.eye(len(boxes), dtype=bool)].max(initial=0) <= 0.4  # NMS applied


# ---------------------------------------------------------------- tracking and smoothing

def test_assignment_hungarian_beats_greedy_on_a_hand_worked_case():
    similarity = np.array([[0.9, 0.8], [0.8, 0.1]])
    assert sorted(assign(similarity, 0.3, "hungarian")) == [(0, 1), (1, 0)]  # 1.6 in total
    assert assign(similarity, 0.3, "greedy") == [(0, 0)]  # 0.9, then 0.1 is below the threshold


def test_tracker_follows_people_whatever_the_detection_order():
    rng = np.random.default_rng(0)
    tracker = Tracker(max_age=2)
    people = {"a": lambda i: [10 + 3 * i, 10, 30, 60], "b": lambda i: [200 - 3 * i, 40, 30, 60]}
    ids = {"a": set(), "b": set()}
    for index in range(15):
        names = list(people)
        rng.shuffle(names)
        result = tracker.update(np.array([people[n](index) for n in names], np.float32))
        for name, track_id in zip(names, result):
            ids[name].add(int(track_id))
    assert len(ids["a"]) == 1 and len(ids["b"]) == 1 and ids["a"] != ids["b"]
    (a_id,) = ids["a"]
    tracker.update(np.zeros((0, 4)), frame_index=15)  # nobody for two frames: still within max_age
    assert tracker.update(np.array([people["a"](17)], np.float32), frame_index=17).tolist() == [a_id]
    assert tracker.update(np.array([people["b"](21)], np.float32), frame_index=21).tolist() == [2]  # b expired


def test_oks_matching_follows_keypoints():
    box = np.array([[0, 0, 100, 100]], np.float32)
    keypoints = stick_figure_estimator(None, box)
    same = keypoint_similarity(keypoints, keypoints, box)
    assert same[0, 0] == pytest.approx(1.0)
    moved = keypoints.copy()
    moved[..., 0] += 8  # e = 64 / ((2 * 0.08)^2 * 2 * 10000) per joint
    assert keypoint_similarity(moved, keypoints, box)[0, 0] == pytest.approx(math.exp(-64 / (0.0256 * 20000)))
    tracker = Tracker(match="oks", threshold=0.5)
    first = tracker.update(box, keypoints)
    # Two people, boxes identical: only the keypoints tell which one continues the track.
    other = keypoints.copy()
    other[0, :, :2] = keypoints[0, ::-1, :2]  # a different pose (joints swapped head to foot) in the same box
    both = np.concatenate([other, keypoints])
    assert tracker.update(np.repeat(box, 2, 0), both).tolist() == [1, first[0]]


def test_one_euro_first_steps_match_the_formula():
    dt = 1 / 25
    alpha = lambda cutoff: (2 * math.pi * cutoff * dt) / (2 * math.pi * cutoff * dt + 1)  # noqa: E731
    plain = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    assert plain(0.0, dt) == 0.0
    assert plain(10.0, dt) == pytest.approx(alpha(1.0) * 10)  # 2.008
    fast = OneEuroFilter(min_cutoff=1.0, beta=0.1, d_cutoff=1.0)
    fast(0.0, dt)
    speed = alpha(1.0) * 10 / dt  # filtered derivative: 50.2 px/s
    assert fast(10.0, dt) == pytest.approx(alpha(1.0 + 0.1 * speed) * 10)  # 6.02: faster motion, less lag


def test_one_euro_smoothing_reduces_jitter_on_a_synthetic_track():
    fps, count = 25.0, 120
    t = np.arange(count) / fps
    truth = np.stack([np.stack([50 + 10 * t, 80 + 5 * np.sin(2 * np.pi * 0.3 * t)], -1),
                      np.stack([60 + 10 * t, 120 + 0 * t], -1)], 1)  # (T, J=2, 2)
    noisy = truth + np.random.default_rng(7).normal(0, 3.0, truth.shape)
    smoother = KeypointSmoother(fps)
    smoothed = np.stack([
        smoother(np.array([4]), np.concatenate([noisy[i], np.ones((2, 1))], -1)[None], i)[0, :, :2]
        for i in range(count)])
    settled = slice(10, None)
    raw_error = np.sqrt(((noisy[settled] - truth[settled]) ** 2).mean())
    smooth_error = np.sqrt(((smoothed[settled] - truth[settled]) ** 2).mean())
    assert smooth_error < 0.6 * raw_error, (smooth_error, raw_error)
    jitter = lambda x: np.diff(x[settled], 2, axis=0).std()  # noqa: E731
    assert jitter(smoothed) < 0.3 * jitter(noisy)
    # another track starts unfiltered: tracks do not share state
    fresh = smoother(np.array([9]), np.array([[[5.0, 5.0, 1.0], [6.0, 6.0, 1.0]]]), count)
    np.testing.assert_allclose(fresh[0, :, :2], [[5, 5], [6, 6]])


# ---------------------------------------------------------------- drawing and the command line

def test_fps_counter_and_text():
    clock = iter([0.0, 0.1, 0.2, 0.3])
    counter = FpsCounter(window=2, clock=lambda: next(clock))
    assert counter.tick() is None
    assert [counter.tick() for _ in range(3)] == pytest.approx([10.0, 10.0, 10.0])
    frame = np.full((HEIGHT, WIDTH, 3), 128, np.uint8)
    draw_fps(frame, 12.3)
    corner = frame[:12, :50]
    assert (corner == 0).all(axis=2).any() and (corner > 200).all(axis=2).any()  # dark patch, light text
    assert (frame[40:, 60:] == 128).all()


def test_command_line_demo_run_and_one_line_errors(tmp_path, capsys):
    import importlib.util

    from densevision.video.command import pose_video_command

    spec = importlib.util.spec_from_file_location(
        "pose_video_tool", Path(__file__).resolve().parents[2] / "tools" / "pose_video.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    build_parser = tool.build_parser

    clip = write_clip(tmp_path / "clip.avi", 6)
    output, results = tmp_path / "out.mp4", tmp_path / "out.json"

    def main(*argv):
        return pose_video_command(build_parser().parse_args(list(argv)))

    assert main("--demo", "--single", "--input", str(clip), "--output", str(output), "--json", str(results),
                "--smooth", "--draw-boxes", "--no-progress") == 0
    out = capsys.readouterr().out
    assert "wrote 6 frame(s)" in out and "6 frame(s), 1 track(s)" in out
    record = json.loads(results.read_text())["frames"][0]["people"][0]
    assert record["box"] == [0, 0, WIDTH, HEIGHT] and record["track_id"] == 0 and np.array(record["keypoints"]).shape == (14, 3)
    assert main("--demo", "--single", "--input", str(clip), "--output", str(output), "--no-progress") == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: output {output} already exists; pass --overwrite to replace it"]
    (tmp_path / "empty").mkdir()
    for bad_input in (str(tmp_path / "empty"), str(tmp_path / "missing.avi")):
        assert main("--demo", "--input", bad_input, "--output", str(tmp_path / "x.mp4"), "--no-progress") == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and bad_input in lines[0]
    assert not (tmp_path / "x.mp4").exists()
