"""The tools as users run them: ``python tools/X.py ...`` in a subprocess, on tiny recipes trained once per task.

Every answer is checked against an independent reference: the saved model run here with numpy argmax and counts,
image files read back with OpenCV / Pillow, results read by pycocotools, videos read back with OpenCV. Demo data
is generated under a private ``DENSEVISION_CACHE``; nothing is written outside pytest's temporary folders.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

import densevision  # noqa: F401  (environment first: registers the custom layers a .keras file needs)
import keras

from engine_utils import (TINY_MODEL, make_street_data, only_run_dir, tool_env, write_classification_recipe,
                          write_recipe)

ROOT = Path(__file__).resolve().parents[2]
CAMVID_CLASSES = 11
POSE_RECIPE = ROOT / "recipes" / "hourglass_lsp.yaml"
#: what every pose command adds to the LSP recipe's --demo settings: a small hourglass on 64x64 crops
POSE_SMALL = ["model.num_features=16", "data.input_size=[64,64]"]
COCO_JOINTS = 17
QUIET_TRACKING = ["tracking.wandb.mode=disabled", "tracking.tensorboard=false"]


# ------------------------------------------------------------------------------------------------ helpers


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """``DENSEVISION_CACHE`` of every tool run of this module (demo data, verification verdicts, error logs)."""
    return tmp_path_factory.mktemp("cache")


def run_tool(tool: str, *args, cache: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    """``python tools/<tool>.py ARGS`` as a user runs it (offline tracking, quiet TensorFlow, private cache)."""
    done = subprocess.run([sys.executable, str(ROOT / "tools" / f"{tool}.py"), *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, cwd=cache,
                          env=tool_env(WANDB_MODE="disabled", DENSEVISION_CACHE=str(cache)))
    # Whatever the exit status, a tool never ends in a raw traceback or an "unexpected" error.
    assert "Traceback (most recent call last)" not in done.stderr, report(done)
    assert "error: unexpected" not in done.stderr, report(done)
    return done


def report(done: subprocess.CompletedProcess) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"


def error_lines(done: subprocess.CompletedProcess) -> list[str]:
    return [line for line in done.stderr.splitlines() if line.startswith("error:")]


def load_keras(path: Path) -> keras.Model:
    """A checkpoint loaded the way the README tells users to, independently of densevision's loader."""
    return keras.saving.load_model(path, safe_mode=True, compile=False)


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def model_labels(model: keras.Model, image: np.ndarray) -> np.ndarray:
    """``(H, W)`` argmax of a segmentation model's logits for one uint8 RGB image."""
    return np.asarray(model(image[None].astype(np.float32), training=False))[0].argmax(-1)


def read_mask(path: Path) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    assert mask is not None and mask.ndim == 2 and mask.dtype == np.uint8, f"{path}: not an 8-bit index mask"
    return mask


def smooth_image(height: int, width: int, seed: int) -> np.ndarray:
    """uint8 RGB of a few blurred colour blobs: structure for a model to respond to, not pure noise."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (max(2, height // 16), max(2, width // 16), 3))
    image = cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)
    return np.clip(image + rng.normal(0, 12, image.shape), 0, 255).astype(np.uint8)


def write_rgb(path: Path, image: np.ndarray, *flags: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), list(flags))
    return path


# ------------------------------------------------------------------------------------------ segmentation


@pytest.fixture(scope="module")
def segmentation(tmp_path_factory, cache):
    """The tiny FC-DenseNet trained for one short epoch by ``tools/train.py``: recipe, data and checkpoint."""
    work = tmp_path_factory.mktemp("segmentation")
    data = make_street_data(work / "streets")
    recipe = write_recipe(work / "tiny_seg.yaml", data, train={"epochs": 1},
                          tracking={"wandb": {"mode": "disabled"}, "tensorboard": False})
    done = run_tool("train", recipe, "--output", work / "runs", cache=cache)
    assert done.returncode == 0, report(done)
    run = only_run_dir(work / "runs")
    best = run / "checkpoints" / "best.keras"
    assert best.is_file() and (run / "checkpoints" / "last.keras").is_file()
    return SimpleNamespace(work=work, recipe=recipe, data=data, best=best, model=load_keras(best))


def exif_rotated_jpeg(path: Path, stored: np.ndarray) -> Path:
    """A JPEG stored ``(h, w)`` with EXIF orientation 6 (viewers rotate it 90 degrees clockwise: ``(w, h)``)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(path, format="JPEG", quality=100, exif=exif.tobytes())
    return path


@pytest.fixture(scope="module")
def messy(segmentation, cache):
    """A folder of the kinds of files users have, predicted once with ``tools/predict.py``."""
    folder = segmentation.work / "messy"
    street = smooth_image(40, 56, 1)
    write_rgb(folder / "street.png", street)
    write_rgb(folder / "photo.jpg", smooth_image(36, 44, 2), cv2.IMWRITE_JPEG_QUALITY, 95)
    write_rgb(folder / "sub" / "deeper" / "inner.png", smooth_image(30, 34, 3))
    gray = smooth_image(24, 30, 4)[..., 0]
    assert cv2.imwrite(str(folder / "gray.png"), gray)
    rgba = np.dstack([smooth_image(26, 22, 5), np.full((26, 22), 90, np.uint8)])
    assert cv2.imwrite(str(folder / "rgba.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    deep = np.random.default_rng(6).integers(0, 65536, (20, 28, 3), dtype=np.uint16)
    assert cv2.imwrite(str(folder / "deep16.png"), deep)
    stored = smooth_image(24, 40, 7)  # stored 24 high, 40 wide; shown 40 high, 24 wide
    exif_rotated_jpeg(folder / "rotated.jpg", stored)
    ok, jpeg = cv2.imencode(".jpg", smooth_image(48, 64, 8))
    (folder / "broken.jpg").write_bytes(jpeg.tobytes()[: len(jpeg) // 2])  # header intact, data cut short
    (folder / "empty.png").write_bytes(b"")
    (folder / "notes.png").write_text("not an image, only named like one\n")
    (folder / "readme.txt").write_text("not an image name: never listed\n")

    output = segmentation.work / "messy_out"
    done = run_tool("predict", segmentation.recipe, "--weights", segmentation.best, "--input", folder,
                    "--output", output, "--no-progress", cache=cache)
    return SimpleNamespace(folder=folder, output=output, done=done, street=street, gray=gray, rgba=rgba,
                           deep=deep, stored=stored)


MESSY_OK = ["street.png", "photo.jpg", "sub/deeper/inner.png", "gray.png", "rgba.png", "deep16.png", "rotated.jpg"]
MESSY_FAILED = ["broken.jpg", "empty.png", "notes.png"]


def test_predict_on_a_messy_folder_reports_each_input_and_writes_masks_of_the_displayed_size(messy, segmentation):
    done = messy.done
    assert done.returncode == 1, report(done)  # some inputs failed
    result = json.loads((messy.output / "report.json").read_text())
    assert sorted(result["ok"]) == sorted(str(messy.folder / name) for name in MESSY_OK)
    assert sorted(item["path"] for item in result["failed"]) == sorted(str(messy.folder / n) for n in MESSY_FAILED)
    reasons = {Path(item["path"]).name: item["error"] for item in result["failed"]}
    assert "truncated" in reasons["broken.jpg"] and "empty" in reasons["empty.png"]
    assert "not an image" in reasons["notes.png"]
    for name in MESSY_FAILED:  # each skipped input is named in a warning
        assert f"skipped {messy.folder / name}" in done.stderr

    # One mask per readable input at <relative path without extension>.png, folders kept, nothing else.
    written = sorted(p.relative_to(messy.output).as_posix() for p in messy.output.rglob("*") if p.is_file())
    assert written == sorted(["report.json"] + [name.rsplit(".", 1)[0] + ".png" for name in MESSY_OK])
    shown_sizes = {"street.png": (40, 56), "photo.jpg": (36, 44), "sub/deeper/inner.png": (30, 34),
                   "gray.png": (24, 30), "rgba.png": (26, 22), "deep16.png": (20, 28), "rotated.jpg": (40, 24)}
    for name, size in shown_sizes.items():
        mask = read_mask(messy.output / (name.rsplit(".", 1)[0] + ".png"))
        assert mask.shape == size, name
        assert mask.max() < CAMVID_CLASSES, name

    # The masks are the model's argmax on the pixels a viewer shows (grey replicated, alpha dropped, 16-bit high
    # byte, EXIF rotation applied), computed here from the saved model.
    model = segmentation.model
    expected = {
        "street": messy.street,
        "gray": np.repeat(messy.gray[..., None], 3, axis=2),
        "rgba": messy.rgba[..., :3],
        "deep16": cv2.cvtColor((messy.deep >> 8).astype(np.uint8), cv2.COLOR_BGR2RGB),
        "rotated": np.asarray(Image.open(messy.folder / "rotated.jpg").convert("RGB").transpose(Image.ROTATE_270)),
    }
    assert expected["rotated"].shape == (40, 24, 3)
    for stem, image in expected.items():
        np.testing.assert_array_equal(read_mask(messy.output / f"{stem}.png"), model_labels(model, image),
                                      err_msg=stem)


def test_predict_refuses_to_overwrite_and_resumes_without_rewriting(messy, segmentation, cache):
    assert messy.done.returncode == 1, report(messy.done)
    masks = sorted(messy.output.rglob("*.png"))
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in masks}
    report_before = (messy.output / "report.json").read_bytes()

    again = run_tool("predict", segmentation.recipe, "--weights", segmentation.best, "--input", messy.folder,
                     "--output", messy.output, "--no-progress", cache=cache)
    assert again.returncode == 2, report(again)
    [line] = error_lines(again)
    assert "--overwrite" in line and "--resume" in line
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in masks} == before
    assert (messy.output / "report.json").read_bytes() == report_before

    resumed = run_tool("predict", segmentation.recipe, "--weights", segmentation.best, "--input", messy.folder,
                       "--output", messy.output, "--resume", "--no-progress", cache=cache)
    assert resumed.returncode == 1, report(resumed)  # the broken inputs still fail
    assert {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in masks} == before  # done outputs left alone
    assert f"{len(MESSY_OK)} already done" in resumed.stdout
    result = json.loads((messy.output / "report.json").read_text())
    assert sorted(result["ok"]) == sorted(str(messy.folder / name) for name in MESSY_OK)
    assert sorted(item["path"] for item in result["failed"]) == sorted(str(messy.folder / n) for n in MESSY_FAILED)
    assert not [p for p in messy.output.rglob("*") if p.name.startswith(".") or "tmp" in p.name]  # no temp left


def test_tiled_prediction_equals_the_whole_image_when_the_receptive_field_fits(segmentation, cache, tmp_path):
    """Tiles blend to the whole-image answer when the tile margin (overlap / 4 = tile / 16) covers the model's
    receptive-field radius and tile starts stay on its downsampling grid: the tiny FC-DenseNet (two pooling
    levels) sees up to 17 pixels away, so 288-pixel tiles (margin 18) on a 300x400 image (starts 0/12 and 0/112,
    multiples of 4) must give the whole image's mask."""
    image = smooth_image(300, 400, 11)
    path = write_rgb(tmp_path / "wide.png", image)
    common = ["--weights", segmentation.best, "--input", path, "--no-progress"]
    whole = run_tool("predict", segmentation.recipe, *common, "--output", tmp_path / "whole", cache=cache)
    tiled = run_tool("predict", segmentation.recipe, *common, "--output", tmp_path / "tiled", "--tile", 288,
                     "--max-pixels", 10_000, cache=cache)
    assert whole.returncode == 0 and tiled.returncode == 0, report(whole) + report(tiled)
    whole_mask, tiled_mask = read_mask(tmp_path / "whole" / "wide.png"), read_mask(tmp_path / "tiled" / "wide.png")
    assert whole_mask.shape == (300, 400)
    np.testing.assert_array_equal(whole_mask, model_labels(segmentation.model, image))
    np.testing.assert_array_equal(tiled_mask, whole_mask)
    # The same budget with 64-pixel tiles (margin 4, far inside the receptive field) changes some pixels near the
    # seams: --max-pixels did switch to tiles, the equality above is not one pass compared with itself.
    small = run_tool("predict", segmentation.recipe, *common, "--output", tmp_path / "small", "--tile", 64,
                     "--max-pixels", 10_000, cache=cache)
    assert small.returncode == 0, report(small)
    small_mask = read_mask(tmp_path / "small" / "wide.png")
    assert small_mask.shape == (300, 400) and 0 < np.count_nonzero(small_mask != whole_mask) < 0.05 * 300 * 400


# -------------------------------------------------------------------------------------- checkpoint checks


def test_a_checkpoint_of_another_class_count_is_refused_by_evaluate_and_predict(segmentation, cache, tmp_path):
    """Issue 12: a 12-class checkpoint with an 11-class recipe exits 2 with one line naming the file and counts."""
    from densevision.models.tiramisu import fc_densenet

    keras.utils.set_random_seed(0)
    options = {key: value for key, value in TINY_MODEL.items() if key not in ("name", "num_classes")}
    twelve = tmp_path / "twelve_classes.keras"
    fc_densenet(num_classes=12, **options).save(twelve)
    image = write_rgb(tmp_path / "inputs" / "one.png", smooth_image(32, 32, 0))

    evaluated = run_tool("evaluate", segmentation.recipe, "--weights", twelve, "--json", tmp_path / "e.json",
                         "--no-progress", cache=cache)
    predicted = run_tool("predict", segmentation.recipe, "--weights", twelve, "--input", image.parent,
                         "--output", tmp_path / "out", "--no-progress", cache=cache)
    for done in (evaluated, predicted):
        assert done.returncode == 2, report(done)
        [line] = error_lines(done)
        assert str(twelve) in line and "12 classes" in line and "11" in line, line
    assert not (tmp_path / "e.json").exists() and not (tmp_path / "out" / "one.png").exists()


def test_a_classifier_checkpoint_is_refused_by_a_segmentation_recipe(segmentation, cache, tmp_path):
    """Same class count (11), but one answer per image: only the kind of output differs."""
    inputs = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(inputs))
    classifier = tmp_path / "classifier.keras"
    keras.Model(inputs, keras.layers.Dense(CAMVID_CLASSES)(pooled)).save(classifier)
    done = run_tool("evaluate", segmentation.recipe, "--weights", classifier, "--no-progress", cache=cache)
    assert done.returncode == 2, report(done)
    [line] = error_lines(done)
    assert str(classifier) in line and "classifier" in line and "segmentation" in line, line


def test_an_unwritable_json_path_is_refused_before_evaluating(segmentation, cache, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("in the way")
    done = run_tool("evaluate", segmentation.recipe, "--weights", segmentation.best, "--json",
                    blocker / "results.json", "--no-progress", cache=cache)
    assert done.returncode == 2, report(done)
    [line] = error_lines(done)
    assert "--json" in line and str(blocker) in line, line
    assert "mIoU" not in done.stdout  # nothing was evaluated
    # and before the checkpoint is even opened: a missing checkpoint is not what it complains about
    missing = run_tool("evaluate", segmentation.recipe, "--weights", tmp_path / "absent.keras", "--json",
                       blocker / "results.json", cache=cache)
    assert missing.returncode == 2 and "--json" in error_lines(missing)[0], report(missing)


# ------------------------------------------------------------------------------------------ classification


@pytest.fixture(scope="module")
def classification(tmp_path_factory, cache):
    """A VGG16-trunk classifier (global pooling head) on 32x32 demo shapes, trained by ``tools/train.py``."""
    from densevision.data.image_folder import DEMO_CLASSES, make_demo_image_folder

    work = tmp_path_factory.mktemp("classification")
    root = make_demo_image_folder(work / "shapes", per_class={"train": 4, "val": 3}, size=32, num_scenes=0)
    recipe = write_classification_recipe(work / "tiny_classify.yaml", root)
    done = run_tool("train", recipe, "--output", work / "runs", cache=cache)
    assert done.returncode == 0, report(done)
    run = only_run_dir(work / "runs")
    with open(run / "history.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 2  # one row per epoch
    best = run / "checkpoints" / "best.keras"
    classes = sorted(DEMO_CLASSES)
    val = sorted((root / "val").glob("*/*.png"))
    images = np.stack([read_rgb(path) for path in val])
    labels = np.array([classes.index(path.parent.name) for path in val])
    logits = np.asarray(load_keras(best)(images.astype(np.float32), training=False), np.float64)
    return SimpleNamespace(work=work, recipe=recipe, root=root, best=best, classes=classes, val=val, images=images,
                           labels=labels, logits=logits)


def test_evaluate_a_classifier_matches_a_numpy_count(classification, cache, tmp_path):
    out = tmp_path / "out.json"
    done = run_tool("evaluate", classification.recipe, "--weights", classification.best, "--json", out,
                    "--no-progress", cache=cache)
    assert done.returncode == 0, report(done)
    results = json.loads(out.read_text())
    assert {"top1", "top5"} <= set(results) and results["num_images"] == len(classification.val) == 15
    logits, labels = classification.logits, classification.labels
    rank = (logits > logits[np.arange(len(labels)), labels][:, None]).sum(-1)  # classes scoring above the truth
    assert results["top1"] == pytest.approx(np.mean(logits.argmax(-1) == labels), abs=1e-12)
    assert results["top5"] == pytest.approx(np.mean(rank < min(5, len(classification.classes))), abs=1e-12)


def test_predict_a_classifier_lists_the_top_k_of_every_image(classification, cache, tmp_path):
    output = tmp_path / "predicted"
    done = run_tool("predict", classification.recipe, "--weights", classification.best, "--input",
                    classification.root / "val", "--output", output, "--top-k", 3, "--no-progress", cache=cache)
    assert done.returncode == 0, report(done)
    relative = [path.relative_to(classification.root / "val").as_posix() for path in classification.val]
    result = json.loads((output / "report.json").read_text())
    assert sorted(result["ok"]) == sorted(str(path) for path in classification.val) and result["failed"] == []

    records = json.loads((output / "predictions.json").read_text())["predictions"]
    assert [record["path"] for record in records] == sorted(relative)
    logits = classification.logits
    probabilities = np.exp(logits - logits.max(-1, keepdims=True))
    probabilities /= probabilities.sum(-1, keepdims=True)
    by_path = {record["path"]: record["top_k"] for record in records}
    for name, row in zip(relative, probabilities):
        top = by_path[name]
        assert [entry["index"] for entry in top] == list(np.argsort(-row, kind="stable")[:3]), name
        assert [entry["class"] for entry in top] == [classification.classes[entry["index"]] for entry in top]
        np.testing.assert_allclose([entry["probability"] for entry in top], np.sort(row)[::-1][:3], atol=1e-5)

    with open(output / "predictions.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3 * len(relative)
    for row in rows:
        entry = by_path[row["path"]][int(row["rank"]) - 1]
        assert (row["class"], int(row["index"])) == (entry["class"], entry["index"])
        assert float(row["probability"]) == pytest.approx(entry["probability"], abs=1e-6)


# ------------------------------------------------------------------------------------------------ pose


@pytest.fixture(scope="module")
def pose(tmp_path_factory, cache):
    """The LSP hourglass recipe with --demo (generated COCO-layout people), trained for 3 steps."""
    work = tmp_path_factory.mktemp("pose")
    done = run_tool("train", POSE_RECIPE, "--demo", "--output", work / "runs", "--set", "train.epochs=1",
                    "train.steps_per_epoch=3", "train.precise_bn_batches=0", "train.pictures_every=0", *POSE_SMALL,
                    *QUIET_TRACKING, cache=cache, timeout=600)
    assert done.returncode == 0, report(done)
    run = only_run_dir(work / "runs")
    resolved = yaml.safe_load((run / "recipe.yaml").read_text())
    # --demo took the recipe to the generated data and its 17 joints; --set won over the demo section
    assert resolved["data"]["name"] == "coco_keypoints" and resolved["model"]["num_joints"] == COCO_JOINTS
    assert resolved["model"]["num_features"] == 16 and resolved["data"]["input_size"] == [64, 64]
    demo_root = Path(resolved["data"]["root"])
    assert demo_root.is_relative_to(cache)
    return SimpleNamespace(work=work, run=run, best=run / "checkpoints" / "best.keras", demo_root=demo_root)


def check_pck_table(results: dict) -> None:
    """PCK per joint = hits / counts of the raw sums; the mean pools them (every labelled joint counts once)."""
    hits, counts = np.array(results["sums"]["hits"]), np.array(results["sums"]["counts"])
    assert len(results["per_joint"]) == len(hits) == COCO_JOINTS and counts.min() > 0
    np.testing.assert_allclose(list(results["per_joint"].values()), hits / counts, rtol=1e-12)
    assert results["pck"] == pytest.approx(hits.sum() / counts.sum(), rel=1e-12)


def test_evaluate_pose_on_demo_data_gives_pck_and_coco_ap(pose, cache, tmp_path):
    out = tmp_path / "pose.json"
    done = run_tool("evaluate", POSE_RECIPE, "--demo", "--weights", pose.best, "--json", out, "--set", *POSE_SMALL,
                    "--no-progress", cache=cache)
    assert done.returncode == 0, report(done)
    results = json.loads(out.read_text())
    assert {"pck", "per_joint", "ap", "ap50", "ap75", "ar"} <= set(results)
    check_pck_table(results)
    annotations = json.loads((pose.demo_root / "annotations" / "person_keypoints_val.json").read_text())
    assert results["num_images"] == len(annotations["annotations"])  # one example per annotated person
    for key in ("ap", "ap50", "ap75", "ar"):
        assert 0.0 <= results[key] <= 1.0
    assert results["ap50"] >= results["ap"]  # AP averages the thresholds 0.50..0.95


def test_evaluate_pose_with_flip_test_from_the_run_folder_recipe(pose, cache, tmp_path):
    """The run folder's resolved recipe.yaml is enough to evaluate again (no --demo, no --set)."""
    out = tmp_path / "flip.json"
    done = run_tool("evaluate", pose.run / "recipe.yaml", "--weights", pose.best, "--flip-test", "--json", out,
                    "--no-progress", cache=cache)
    assert done.returncode == 0, report(done)
    results = json.loads(out.read_text())
    assert {"pck", "per_joint", "ap", "ar"} <= set(results)
    check_pck_table(results)


@pytest.fixture(scope="module")
def pose_predicted(pose, cache):
    folder = pose.work / "two_people"
    folder.mkdir()
    names = sorted(path.name for path in (pose.demo_root / "images" / "val").glob("*.png"))[:2]
    for name in names:
        (folder / name).write_bytes((pose.demo_root / "images" / "val" / name).read_bytes())
    output = pose.work / "predicted"
    done = run_tool("predict", POSE_RECIPE, "--demo", "--weights", pose.best, "--single", "--input", folder,
                    "--output", output, "--set", *POSE_SMALL, "--no-progress", cache=cache)
    assert done.returncode == 0, report(done)
    return SimpleNamespace(folder=folder, output=output, names=names,
                           results=json.loads((output / "results.json").read_text()))


def test_predict_pose_writes_coco_results_and_overlays(pose_predicted):
    from pycocotools.coco import COCO

    results, names = pose_predicted.results, pose_predicted.names
    assert [entry["image"] for entry in results] == names  # --single: one person per image
    for entry, name in zip(results, names):
        image = read_rgb(pose_predicted.folder / name)
        height, width = image.shape[:2]
        assert entry["category_id"] == 1 and len(entry["keypoints"]) == 3 * COCO_JOINTS
        assert entry["bbox"] == [0.0, 0.0, float(width), float(height)]
        points = np.array(entry["keypoints"]).reshape(COCO_JOINTS, 3)
        assert (points[:, 0] >= -0.5).all() and (points[:, 0] <= width - 0.5).all()
        assert (points[:, 1] >= -0.5).all() and (points[:, 1] <= height - 0.5).all()
        overlay = read_rgb(pose_predicted.output / "overlays" / name)
        assert overlay.shape == image.shape and not np.array_equal(overlay, image)  # the skeleton is drawn
    # pycocotools reads the file as keypoint results (against images with the ids the file gives)
    ground_truth = COCO()
    ground_truth.dataset = {"images": [{"id": entry["image_id"], "width": 128, "height": 128} for entry in results],
                            "annotations": [], "categories": [{"id": 1, "name": "person"}]}
    ground_truth.createIndex()
    loaded = ground_truth.loadRes(str(pose_predicted.output / "results.json"))
    assert len(loaded.anns) == len(results)


def test_predict_pose_image_ids_match_the_demo_annotations(pose, pose_predicted):
    annotations = json.loads((pose.demo_root / "annotations" / "person_keypoints_val.json").read_text())
    ids = {image["file_name"]: image["id"] for image in annotations["images"]}
    assert {entry["image"]: entry["image_id"] for entry in pose_predicted.results} == \
        {name: ids[name] for name in pose_predicted.names}


def write_clip(path: Path, frames: int = 10, size=(80, 96), fps: float = 12.0) -> Path:
    height, width = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    assert writer.isOpened()
    for index in range(frames):
        frame = np.full((height, width, 3), 30, np.uint8)
        cv2.circle(frame, (20 + 5 * index, height // 2), 10, (90, 180, 200), -1)
        writer.write(frame)
    writer.release()
    return path


def video_properties(path: Path) -> tuple[int, int, int, float]:
    """(frames decoded, width, height, fps), frames counted by decoding them all."""
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), path
    count = 0
    while capture.read()[0]:
        count += 1
    properties = (count, int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)),
                  capture.get(cv2.CAP_PROP_FPS))
    capture.release()
    return properties


def test_pose_video_keeps_frames_size_and_rate(pose, cache, tmp_path):
    clip = write_clip(tmp_path / "clip.avi")
    assert video_properties(clip) == (10, 96, 80, 12.0)
    output, results = tmp_path / "posed.mp4", tmp_path / "posed.json"
    done = run_tool("pose_video", POSE_RECIPE, "--demo", "--weights", pose.best, "--input", clip, "--output", output,
                    "--single", "--json", results, "--set", *POSE_SMALL, "--no-progress", cache=cache)
    assert done.returncode == 0, report(done)
    count, width, height, fps = video_properties(output)
    assert (count, width, height) == (10, 96, 80) and fps == pytest.approx(12.0)
    frames = json.loads(results.read_text())["frames"]
    assert [frame["frame"] for frame in frames] == list(range(10))
    for frame in frames:
        [person] = frame["people"]  # --single: the whole frame is the person
        assert person["box"] == [0.0, 0.0, 96.0, 80.0]
        assert np.array(person["keypoints"]).shape == (COCO_JOINTS, 3)  # the person record: [x, y, score] per joint


def numpy_decode(heatmaps: np.ndarray, input_size) -> np.ndarray:
    """Keypoints ``(B, J, 2)`` in crop pixels by the codec's stated rule: argmax cell, a quarter cell toward the
    higher neighbour (inner cells), then ``x = (u + 0.5) * W / w - 0.5``."""
    batch, height, width, joints = heatmaps.shape
    out = np.zeros((batch, joints, 2))
    for b in range(batch):
        for j in range(joints):
            plane = heatmaps[b, :, :, j]
            row, col = np.unravel_index(np.argmax(plane), plane.shape)
            u, v = float(col), float(row)
            if 0 < col < width - 1:
                u += 0.25 * np.sign(plane[row, col + 1] - plane[row, col - 1])
            if 0 < row < height - 1:
                v += 0.25 * np.sign(plane[row + 1, col] - plane[row - 1, col])
            out[b, j] = [(u + 0.5) * input_size[1] / width - 0.5, (v + 0.5) * input_size[0] / height - 0.5]
    return out


def test_export_pose_saved_model_serves_keypoints(pose, cache, tmp_path):
    """The demo data's dataset and joints set by hand (as without --demo), the crop size given explicitly."""
    import tensorflow as tf

    output = tmp_path / "served"
    demo = ["data.name=coco_keypoints", f"data.root={pose.demo_root}", f"model.num_joints={COCO_JOINTS}"]
    done = run_tool("export", POSE_RECIPE, "--weights", pose.best, "--format", "saved_model", "--output", output,
                    "--input-size", 64, 64, "--set", *POSE_SMALL, *demo, cache=cache)
    assert done.returncode == 0, report(done)
    serve = tf.saved_model.load(str(output)).signatures["serving_default"]
    image = read_rgb(sorted((pose.demo_root / "images" / "val").glob("*.png"))[0])
    crops = np.stack([cv2.resize(image, (64, 64), interpolation=cv2.INTER_AREA)] * 2)
    outputs = {key: value.numpy() for key, value in serve(images=tf.constant(crops)).items()}
    assert {"heatmaps", "heatmaps_0", "keypoints", "scores"} <= set(outputs)
    assert outputs["heatmaps"].shape == (2, 16, 16, COCO_JOINTS) and outputs["keypoints"].shape == (2, 17, 2)
    np.testing.assert_allclose(outputs["keypoints"], numpy_decode(outputs["heatmaps"], (64, 64)), atol=1e-5)
    np.testing.assert_allclose(outputs["scores"], outputs["heatmaps"].max(axis=(1, 2)), atol=1e-6)
    keras_heatmaps = np.asarray(load_keras(pose.best)(crops.astype(np.float32), training=False)[-1])
    np.testing.assert_allclose(outputs["heatmaps"], keras_heatmaps, atol=1e-5)


def test_export_pose_saved_model_serves_the_crop_size_with_demo(pose, cache, tmp_path):
    """Without --input-size the pose export serves the recipe's crop size (the decoding is defined there)."""
    import tensorflow as tf

    done = run_tool("export", POSE_RECIPE, "--weights", pose.best, "--format", "saved_model", "--output",
                    tmp_path / "served", "--demo", "--set", *POSE_SMALL, cache=cache)
    assert done.returncode == 0, report(done)
    serve = tf.saved_model.load(str(tmp_path / "served")).signatures["serving_default"]
    assert serve.structured_input_signature[1]["images"].shape.as_list() == [None, 64, 64, 3]
