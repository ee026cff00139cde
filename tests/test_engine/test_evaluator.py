"""Evaluator, checkpoints loading, predictor and the evaluate/predict tools, against numpy references.

The models are a single 1x1 convolution with integer weights and distinct fractional biases, so their argmax
is exactly reproducible in numpy (no near-ties between logits).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import yaml

import densevision  # noqa: F401  (backend and environment)
import keras
import tensorflow as tf
from densevision.engine.checkpoints import CheckpointError
from densevision.engine.evaluator import (
    evaluate,
    evaluate_command,
    flatten_results,
    load_checkpoint,
    run_evaluation,
    to_json_compatible,
)
from densevision.tasks.segmentation import SegmentationTask

ROOT = Path(__file__).resolve().parents[2]
CAMVID_CLASSES = 11
CAMVID_VOID = 11


# ------------------------------------------------------------------------------------------------ helpers


def conv_weights(num_classes: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Integer kernel (3, K) and biases 0.05 * k: logits of two classes never tie on integer images."""
    kernel = np.random.default_rng(seed).integers(-3, 4, (3, num_classes)).astype(np.float32)
    return kernel, 0.05 * np.arange(num_classes, dtype=np.float32)


def conv_model(num_classes: int, seed: int = 0) -> keras.Model:
    """``(B, H, W, 3) -> (B, H, W, K)`` logits: one 1x1 convolution with :func:`conv_weights`."""
    kernel, bias = conv_weights(num_classes, seed)
    inputs = keras.Input((None, None, 3))
    layer = keras.layers.Conv2D(num_classes, 1, name="logits")
    model = keras.Model(inputs, layer(inputs))
    layer.set_weights([kernel.reshape(1, 1, 3, num_classes), bias])
    return model


def numpy_predictions(images: np.ndarray, num_classes: int, seed: int = 0) -> np.ndarray:
    kernel, bias = conv_weights(num_classes, seed)
    return (images.astype(np.float64) @ kernel.astype(np.float64) + bias).argmax(-1)


def numpy_confusion(labels, predictions, num_classes, ignore):
    matrix = np.zeros((num_classes, num_classes), np.int64)
    for truth, guess in zip(np.ravel(labels), np.ravel(predictions)):
        if truth != ignore:
            matrix[truth, guess] += 1
    return matrix


def numpy_iou(matrix):
    """Per-class IoU by the textbook formula, NaN where the union is empty; and their mean over defined ones."""
    iou = []
    for c in range(len(matrix)):
        tp, fp, fn = matrix[c, c], matrix[:, c].sum() - matrix[c, c], matrix[c, :].sum() - matrix[c, c]
        iou.append(tp / (tp + fp + fn) if tp + fp + fn else math.nan)
    defined = [v for v in iou if not math.isnan(v)]
    return iou, sum(defined) / len(defined)


def write_camvid_split(root: Path, split: str, count: int, height: int = 12, width: int = 16, seed: int = 0):
    """A CamVid (SegNet) layout split of random images and labels 0..11; returns (names, images, labels)."""
    rng = np.random.default_rng(seed)
    (root / split).mkdir(parents=True, exist_ok=True)
    (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
    names, images, labels = [], [], []
    for index in range(count):
        name = f"{split}_{index:03d}"
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        label = rng.integers(0, CAMVID_CLASSES + 1, (height, width)).astype(np.uint8)
        label[:, 0] = 4  # every image holds class 4, so it is present
        cv2.imwrite(str(root / split / f"{name}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        cv2.imwrite(str(root / f"{split}annot" / f"{name}.png"), label)
        names.append(name)
        images.append(image)
        labels.append(label.astype(np.int32))
    return names, np.stack(images), np.stack(labels)


def recipe_dict(data_root: Path) -> dict:
    return {
        "name": "tiny_eval",
        "task": "segmentation",
        "model": {"name": "fc_densenet", "num_classes": CAMVID_CLASSES, "blocks_down": [1], "bottleneck": 1,
                  "growth_rate": 4, "first_filters": 8, "dropout": 0.0},
        "data": {"name": "camvid", "root": str(data_root), "batch_size": 2, "eval_batch_size": 2,
                 "num_parallel_calls": 1},
        "tracking": {"wandb": {"mode": "disabled"}, "tensorboard": False},
    }


@pytest.fixture(scope="module")
def camvid_val(tmp_path_factory):
    root = tmp_path_factory.mktemp("camvid")
    names, images, labels = write_camvid_split(root, "val", 3)
    return SimpleNamespace(root=root, names=names, images=images, labels=labels)


@pytest.fixture(scope="module")
def camvid_checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "conv.keras"
    conv_model(CAMVID_CLASSES).save(path)
    return path


def in_process_recipe(data_root: Path):
    """The recipe (schema-checked only), with its dataset and model modules imported here."""
    pytest.importorskip("densevision.data.camvid", reason="densevision.data.camvid not available")
    pytest.importorskip("densevision.models.tiramisu", reason="densevision.models.tiramisu not available")
    from densevision.recipes import Recipe

    return Recipe(**recipe_dict(data_root))


def require_builtin_parts():
    """``load_recipe`` imports every built-in part; skip while some of them have not been written yet."""
    from densevision.recipes import _import_builtin_parts

    try:
        _import_builtin_parts()
    except ModuleNotFoundError as error:
        pytest.skip(f"load_recipe needs every built-in module; {error.name} is missing")


# ----------------------------------------------------------------------------------------------- evaluate


def test_evaluate_sums_batches_of_several_sizes_like_numpy():
    num_classes, ignore = 4, 255
    rng = np.random.default_rng(0)
    batches = []
    for height, width in [(5, 7), (5, 7), (9, 4)]:  # sizes change between batches, like full-resolution data
        images = rng.integers(0, 256, (2, height, width, 3)).astype(np.float32)
        labels = rng.integers(0, num_classes, (2, height, width)).astype(np.int32)
        labels[rng.random(labels.shape) < 0.25] = ignore
        labels[labels == 3] = 0  # class 3 never present (it may still be predicted)
        batches.append((images, labels))
    dataset = tf.data.Dataset.from_generator(
        lambda: ({"image": images, "mask": labels} for images, labels in batches),
        output_signature={"image": tf.TensorSpec((None, None, None, 3), tf.float32),
                          "mask": tf.TensorSpec((None, None, None), tf.int32)},
    )
    info = {"class_names": ["a", "b", "c", "d"], "ignore_label": ignore}
    results, sums = evaluate(conv_model(num_classes), SegmentationTask(None, info), dataset, progress=False)

    expected = sum(numpy_confusion(l, numpy_predictions(i, num_classes), num_classes, ignore) for i, l in batches)
    assert sums["confusion"].dtype == np.int64
    np.testing.assert_array_equal(sums["confusion"], expected)
    iou, miou = numpy_iou(expected)
    assert results["miou"] == pytest.approx(miou)
    for name, value in zip("abcd", iou):
        assert (math.isnan(value) and math.isnan(results["per_class_iou"][name])) or \
            results["per_class_iou"][name] == pytest.approx(value)
    assert results["global_accuracy"] == pytest.approx(np.trace(expected) / expected.sum())

    _, first_only = evaluate(conv_model(num_classes), SegmentationTask(None, info), dataset, steps=1, progress=False)
    images, labels = batches[0]
    np.testing.assert_array_equal(first_only["confusion"],
                                  numpy_confusion(labels, numpy_predictions(images, num_classes), num_classes, ignore))


def test_results_flatten_and_become_strict_json():
    results = {"miou": np.float64(0.5), "per_class_iou": {"sky": 0.25, "car": math.nan}, "split": "val"}
    assert flatten_results(results) == {"miou": 0.5, "per_class_iou/sky": 0.25,
                                        "per_class_iou/car": pytest.approx(math.nan, nan_ok=True)}
    strict = json.dumps(to_json_compatible(results), allow_nan=False)
    assert json.loads(strict)["per_class_iou"] == {"sky": 0.25, "car": None}


# -------------------------------------------------------------------------------------------- checkpoints


def test_load_checkpoint_roundtrip_and_clear_errors(tmp_path):
    from densevision.engine import checkpoints

    assert load_checkpoint is checkpoints.load_checkpoint  # one loader, re-exported by the evaluator
    model = conv_model(3)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = load_checkpoint(path)
    images = np.random.default_rng(1).integers(0, 256, (1, 4, 6, 3)).astype(np.float32)
    np.testing.assert_array_equal(loaded(images).numpy(), model(images).numpy())

    with pytest.raises(CheckpointError, match=r"missing\.keras.*does not exist"):
        load_checkpoint(tmp_path / "missing.keras")
    corrupt = tmp_path / "corrupt.keras"
    corrupt.write_bytes(b"not a zip file")
    with pytest.raises(CheckpointError, match=r"corrupt\.keras"):
        load_checkpoint(corrupt)
    with pytest.raises(CheckpointError, match=r"\.keras model or a \.weights\.h5"):
        load_checkpoint(tmp_path / "model.pt")
    weights = tmp_path / "model.weights.h5"
    model.save_weights(weights)
    with pytest.raises(CheckpointError, match="needs the recipe"):
        load_checkpoint(weights)


def test_load_weights_checkpoint_builds_the_recipe_model(tmp_path, camvid_val):
    recipe = in_process_recipe(camvid_val.root)
    from densevision.models import build_model

    model = build_model(recipe)
    model.save_weights(tmp_path / "tiny.weights.h5")
    loaded = load_checkpoint(tmp_path / "tiny.weights.h5", recipe)
    images = np.random.default_rng(2).integers(0, 256, (1, 8, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(loaded(images).numpy(), model(images).numpy(), rtol=1e-6)
    conv_model(3).save_weights(tmp_path / "other.weights.h5")
    with pytest.raises(CheckpointError, match=r"other\.weights\.h5.*tiny_eval"):
        load_checkpoint(tmp_path / "other.weights.h5", recipe)


# ---------------------------------------------------------------------------------------- run_evaluation


def expected_camvid_results(camvid_val):
    predictions = numpy_predictions(camvid_val.images, CAMVID_CLASSES)
    return numpy_iou(numpy_confusion(camvid_val.labels, predictions, CAMVID_CLASSES, CAMVID_VOID))


def test_run_evaluation_writes_json_and_report(tmp_path, camvid_val, camvid_checkpoint):
    recipe = in_process_recipe(camvid_val.root)
    json_path = tmp_path / "out" / "results.json"
    results = run_evaluation(recipe, camvid_checkpoint, split="val", output_dir=tmp_path / "report",
                             json_path=json_path, num_samples=2, progress=False)
    iou, miou = expected_camvid_results(camvid_val)
    assert results["miou"] == pytest.approx(miou)
    assert results["num_images"] == 3 and results["split"] == "val"
    written = json.loads(json_path.read_text())
    assert written["miou"] == pytest.approx(miou)
    from densevision.data.camvid import CAMVID_CLASSES as names

    assert list(written["per_class_iou"]) == list(names)
    for name, value in zip(names, iou):
        assert written["per_class_iou"][name] == (None if math.isnan(value) else pytest.approx(value))
    report = tmp_path / "report"
    assert (report / "metrics.json").is_file() and (report / "per_class_iou.txt").is_file()
    assert cv2.imread(str(report / "confusion_matrix.png")) is not None
    overlays = sorted(p.stem for p in (report / "overlays").iterdir())
    assert overlays == camvid_val.names[:2]


def test_evaluate_command_exit_codes(tmp_path, camvid_val, camvid_checkpoint, capsys):
    require_builtin_parts()
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(recipe_dict(camvid_val.root)))
    typo = recipe_dict(camvid_val.root)
    typo["data"]["eval_bach_size"] = 1
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(typo))

    from densevision.cli import run_tool

    def command(*args, **kwargs) -> int:  # as tools/evaluate.py runs it: through the one front door
        return run_tool(lambda argv: evaluate_command(*args, **kwargs), [], tool="evaluate")

    assert command(str(bad), str(camvid_checkpoint), progress=False) == 2
    assert "eval_bach_size" in capsys.readouterr().err
    assert command(str(good), str(camvid_checkpoint), overrides=[f"data.root={tmp_path / 'nowhere'}"],
                   progress=False) == 2
    assert "nowhere" in capsys.readouterr().err
    assert command(str(good), str(tmp_path / "absent.keras"), progress=False) == 2
    assert "absent.keras" in capsys.readouterr().err
    (tmp_path / "blocker").write_text("a file, not a folder")
    assert command(str(good), str(camvid_checkpoint), json_path=str(tmp_path / "blocker" / "out.json"),
                   progress=False) == 2  # refused before evaluating
    assert "blocker" in capsys.readouterr().err
    assert command(str(good), str(camvid_checkpoint), progress=False) == 0
    table = capsys.readouterr().out
    assert "sidewalk" in table and "mIoU" in table


# ---------------------------------------------------------------------------------------------- predictor


def write_images(folder: Path, count: int, seed: int = 3) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images = {}
    for index in range(count):
        image = rng.integers(0, 256, (6 + index, 9, 3), dtype=np.uint8)  # different sizes
        cv2.imwrite(str(folder / f"img{index}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        images[f"img{index}"] = image
    return images


def new_predictor():
    """The task-generic batch predictor; it reads images with ``densevision.data.io`` and writes atomically with
    ``densevision.files``: skip while those have not landed."""
    pytest.importorskip("densevision.files", reason="densevision.files (the predictor's writers) not landed")
    pytest.importorskip("densevision.data.io", reason="densevision.data.io (the predictor's reader) not landed")
    from densevision.engine import predictor

    return predictor


def folder_inputs(folder: Path) -> list[tuple[Path, str]]:
    """``[(path, relative path)]`` of the folder's files, as ``predict_folder`` takes them."""
    return [(path, path.name) for path in sorted(folder.iterdir())]


def segmentation_task(num_classes: int) -> SegmentationTask:
    return SegmentationTask(None, {"class_names": [f"c{i}" for i in range(num_classes)], "ignore_label": 255})


def test_predict_writes_index_masks_and_overlays(tmp_path):
    predictor = new_predictor()
    images = write_images(tmp_path / "in", 2)
    inputs = folder_inputs(tmp_path / "in")
    result = predictor.predict_folder(conv_model(5), segmentation_task(5), inputs, tmp_path / "out",
                                      predictor.PredictOptions(overlay=True), progress=False)
    assert sorted(result["ok"]) == [str(path) for path, _ in inputs] and result["failed"] == []
    assert len(list((tmp_path / "out").rglob("*.png"))) == 4
    for name, image in images.items():
        mask = cv2.imread(str(tmp_path / "out" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(mask, numpy_predictions(image, 5))
        assert cv2.imread(str(tmp_path / "out" / "overlays" / f"{name}.png")).shape == image.shape
    report = json.loads((tmp_path / "out" / predictor.REPORT).read_text())
    assert sorted(report["ok"]) == sorted(result["ok"]) and report["failed"] == []


def test_predict_refuses_to_overwrite_and_skips_bad_inputs(tmp_path):
    predictor = new_predictor()
    from densevision.data.io import list_images
    from densevision.files import OutputError

    write_images(tmp_path / "in", 2)
    task = segmentation_task(5)
    out = tmp_path / "out"
    out.mkdir()
    (out / "img1.png").write_bytes(b"precious")
    with pytest.raises(OutputError, match=r"img1\.png") as error:
        predictor.predict_folder(conv_model(5), task, folder_inputs(tmp_path / "in"), out, progress=False)
    assert "--overwrite" in str(error.value)
    assert (out / "img1.png").read_bytes() == b"precious"
    assert not (out / "img0.png").exists()  # refused before predicting anything

    # a broken input is named and skipped; the others are still predicted
    broken = tmp_path / "in" / "broken.png"
    broken.write_bytes(b"this is not a png")
    result = predictor.predict_folder(conv_model(5), task, folder_inputs(tmp_path / "in"), tmp_path / "other",
                                      progress=False)
    assert [item["path"] for item in result["failed"]] == [str(broken)]
    assert sorted(result["ok"]) == [str(tmp_path / "in" / "img0.png"), str(tmp_path / "in" / "img1.png")]
    assert not (tmp_path / "other" / "broken.png").exists()
    broken.unlink()
    problems: list[str] = []
    assert list_images([tmp_path / "nothing_here.jpg"], problems=problems) == []
    assert any("nothing_here.jpg" in str(problem) for problem in problems)

    predictor.predict_folder(conv_model(5), task, folder_inputs(tmp_path / "in"), out, overwrite=True,
                             progress=False)
    assert cv2.imread(str(out / "img1.png"), cv2.IMREAD_UNCHANGED) is not None


# ----------------------------------------------------------------------------------- tools, as subprocesses


def tool_env() -> dict:
    return dict(os.environ, PYTHONUNBUFFERED="1", WANDB_SILENT="true", TF_CPP_MIN_LOG_LEVEL="2")


@pytest.fixture(scope="module")
def package_registers_parts():
    """The tools rely on the package ``__init__`` files importing the datasets, models and tasks."""
    check = ("import densevision; from densevision.recipes import _import_builtin_parts; _import_builtin_parts(); "
             "from densevision.registry import DATASETS, MODELS, TASKS; "
             "missing = [n for n, r in (('camvid', DATASETS), ('fc_densenet', MODELS), ('segmentation', TASKS)) "
             "if n not in r]; print(missing); raise SystemExit(1 if missing else 0)")
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, env=tool_env(), timeout=120)
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or [""])[-1] or f"not registered: {done.stdout.strip()}"
        pytest.skip(f"`import densevision` does not register the built-in parts yet ({reason})")


@pytest.mark.slow
def test_evaluate_tool_end_to_end(tmp_path, camvid_val, camvid_checkpoint, package_registers_parts):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(recipe_dict(tmp_path / "wrong_root")))
    out_json = tmp_path / "metrics.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "evaluate.py"), str(recipe), "--weights", str(camvid_checkpoint),
         "--split", "val", "--json", str(out_json), "--no-progress", "--set", f"data.root={camvid_val.root}"],
        capture_output=True, text=True, env=tool_env(), timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    iou, miou = expected_camvid_results(camvid_val)
    written = json.loads(out_json.read_text())
    assert set(written) >= {"miou", "global_accuracy", "mean_class_accuracy", "per_class_iou"}
    assert written["miou"] == pytest.approx(miou)
    assert "sidewalk" in done.stdout and f"{miou:.4f}" in done.stdout


@pytest.mark.slow
def test_predict_tool_end_to_end_and_refusal(tmp_path, camvid_val, camvid_checkpoint, package_registers_parts):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(recipe_dict(camvid_val.root)))
    images = write_images(tmp_path / "in", 2)
    command = [sys.executable, str(ROOT / "tools" / "predict.py"), str(recipe), "--weights", str(camvid_checkpoint),
               str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--overlay", "--no-progress"]
    done = subprocess.run(command, capture_output=True, text=True, env=tool_env(), timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    mask = cv2.imread(str(tmp_path / "out" / "img0.png"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(mask, numpy_predictions(images["img0"], CAMVID_CLASSES))
    overlay = tmp_path / "out" / "overlays" / "img0.png"
    before = overlay.read_bytes()

    again = subprocess.run(command, capture_output=True, text=True, env=tool_env(), timeout=300)
    assert again.returncode == 2
    assert "already exist" in again.stderr and "--overwrite" in again.stderr
    assert overlay.read_bytes() == before


# ------------------------------------------------------------------------------------------------ real data


def shared_camvid() -> Path:
    root = Path(os.environ.get("DENSEVISION_DATA", ROOT.parent / "shared" / "data")) / "CamVid"
    if not (root / "val").is_dir():
        pytest.skip(f"real CamVid not found at {root} (set DENSEVISION_DATA to the folder holding CamVid/)")
    return root


@pytest.mark.realdata
def test_run_evaluation_on_real_camvid_at_full_resolution(tmp_path, camvid_checkpoint):
    root = shared_camvid()
    recipe = in_process_recipe(root)
    recipe.data.eval_batch_size = 1
    results = run_evaluation(recipe, camvid_checkpoint, split="val", json_path=tmp_path / "r.json", steps=2,
                             num_samples=0, progress=False)
    from densevision.data.camvid import CamVid

    source = CamVid(str(root), "val")  # file order, as the evaluation pipeline reads it
    confusion = np.zeros((CAMVID_CLASSES, CAMVID_CLASSES), np.int64)
    for index in range(2):
        image = cv2.cvtColor(cv2.imread(str(source.paths[index][0])), cv2.COLOR_BGR2RGB)
        labels = cv2.imread(str(source.paths[index][1]), cv2.IMREAD_UNCHANGED).astype(np.int64)
        assert image.shape[:2] == (360, 480)
        predictions = numpy_predictions(image, CAMVID_CLASSES)
        valid = labels != CAMVID_VOID
        np.add.at(confusion, (labels[valid], predictions[valid]), 1)
    _, miou = numpy_iou(confusion)
    assert results["num_images"] == 2
    assert results["miou"] == pytest.approx(miou)
    assert json.loads((tmp_path / "r.json").read_text())["sums"]["confusion"] == confusion.tolist()
