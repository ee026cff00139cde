"""``densevision.load(...)``: the Python API gives what the tools give, on tiny models trained here.

References: the tools' own outputs for the same images (``predict_command``'s masks, ``predictions.json`` and
``results.json``; ``evaluate_command``'s JSON), numpy argmax of the Keras model loaded independently with
``keras.saving.load_model``, and the SavedModel loaded back with ``tf.saved_model.load``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import tensorflow as tf

import densevision
import keras
from densevision.api import InputError, resolve_source
from densevision.engine.evaluator import evaluate_command
from densevision.engine.predictor import PredictOptions, predict_command
from densevision.engine.trainer import train
from densevision.errors import DensevisionError
from densevision.recipes import load_recipe

from engine_utils import make_street_data, write_classification_recipe, write_recipe

ROOT = Path(__file__).resolve().parents[1]


def write_rgb(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


def smooth_image(height: int, width: int, seed: int) -> np.ndarray:
    """uint8 RGB of blurred colour blobs (structure a model responds to)."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, (max(2, height // 8), max(2, width // 8), 3))
    return np.clip(cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------------------------ segmentation


@pytest.fixture(scope="module")
def seg(tmp_path_factory):
    """A tiny FC-DenseNet trained one epoch of two steps into a run folder, and three test images."""
    work = tmp_path_factory.mktemp("api_seg")
    data = make_street_data(work / "streets")
    recipe_path = write_recipe(work / "tiny_seg.yaml", data, train={"epochs": 1},
                               tracking={"wandb": {"mode": "disabled"}, "tensorboard": False})
    result = train(load_recipe(recipe_path), output_dir=str(work / "runs"), progress=False)
    images = {"a.png": smooth_image(32, 32, 1), "b.png": smooth_image(40, 56, 2), "c.png": smooth_image(33, 47, 3)}
    folder = work / "images"
    for name, image in images.items():
        write_rgb(folder / name, image)
    return SimpleNamespace(work=work, run=result.run_dir, recipe=recipe_path, folder=folder, images=images,
                           best=result.run_dir / "checkpoints" / "best.keras")


def test_segmentation_predict_equals_the_predict_tool_and_numpy_argmax(seg):
    output = seg.work / "predicted"
    assert predict_command(str(seg.recipe), str(seg.best), [str(seg.folder)], str(output), progress=False) == 0
    model = densevision.load(seg.run)
    names = sorted(seg.images)
    answers = model.predict([seg.folder / name for name in names])  # paths
    reference = keras.saving.load_model(seg.best, safe_mode=True, compile=False)
    for name, answer in zip(names, answers):
        written = cv2.imread(str(output / name), cv2.IMREAD_UNCHANGED)
        assert answer["mask"].shape == seg.images[name].shape[:2] and answer["mask"].dtype == np.int32
        np.testing.assert_array_equal(answer["mask"], written)
        logits = np.asarray(reference(seg.images[name][None].astype(np.float32), training=False))[0]
        np.testing.assert_array_equal(answer["mask"], logits.argmax(-1))
    # one array in, one answer out; the same pixels give the same mask as the file
    one = model.predict(seg.images["b.png"])
    np.testing.assert_array_equal(one["mask"], answers[1]["mask"])


def test_grey_rgba_and_16_bit_arrays_are_converted_as_the_reader_converts_files(seg):
    model = densevision.load(seg.run)
    rgb = seg.images["a.png"]
    grey = rgb[..., 1]
    rgba = np.concatenate([rgb, np.full(rgb.shape[:2] + (1,), 7, np.uint8)], axis=-1)
    deep = rgb.astype(np.uint16) * 257  # 16-bit: the reader keeps the high byte
    answers = model.predict([grey, rgba, deep, rgb, str(seg.folder / "a.png")])
    np.testing.assert_array_equal(answers[0]["mask"], model.predict(np.repeat(grey[..., None], 3, -1))["mask"])
    for answer in answers[1:]:
        np.testing.assert_array_equal(answer["mask"], answers[3]["mask"])


def test_bad_inputs_name_the_item_and_what_was_expected(seg, tmp_path):
    model = densevision.load(seg.run)
    rgb = seg.images["a.png"]
    cases = [
        (rgb.astype(np.float32), r"input 1: float32 pixels; expected uint8"),
        (rgb[..., :2], r"input 1: an array of shape \(32, 32, 2\); expected an image \(H, W, 3\)"),
        (np.zeros((2, 32, 32, 3), np.uint8), r"input 1: an array of shape \(2, 32, 32, 3\)"),
        (str(tmp_path / "missing.png"), r"input 1 \(.*missing.png\): .*file not found"),
        (42, r"input 1: a int; expected a path or a numpy array"),
    ]
    for bad, message in cases:
        with pytest.raises(InputError, match=message):
            model.predict([rgb, bad])
    with pytest.raises(DensevisionError, match="--top-k 0"):
        model.predict(rgb, top_k=0)


def test_sources_resolve_run_folders_recipes_and_names(seg, tmp_path):
    run = seg.run
    assert resolve_source(run).weights == str(run / "checkpoints" / "best.keras")
    assert resolve_source(run, "last").weights == str(run / "checkpoints" / "last.keras")
    assert resolve_source(run, seg.best).weights == str(seg.best)
    assert resolve_source(run).recipe == str(run / "recipe.yaml")
    assert resolve_source("tiramisu56_camvid", "w.keras").recipe == "tiramisu56_camvid"  # a name, found on load
    with pytest.raises(DensevisionError, match="did you mean.*tiramisu56_camvid"):
        densevision.load("tiramisu56_camvd", weights="w.keras")
    with pytest.raises(DensevisionError, match="--weights is required"):
        resolve_source(seg.recipe)
    with pytest.raises(DensevisionError, match="not a run folder"):
        resolve_source(tmp_path)
    # a recipe with a checkpoint loads too; 'last' of the run folder is the same one-epoch model here
    by_recipe = densevision.load(seg.recipe, weights=seg.best)
    np.testing.assert_array_equal(by_recipe.predict(seg.images["c.png"])["mask"],
                                  densevision.load(run, weights="last").predict(seg.images["c.png"])["mask"])


def test_evaluate_equals_the_evaluate_tool_json(seg, tmp_path):
    out = tmp_path / "eval.json"
    assert evaluate_command(str(seg.recipe), str(seg.best), split="val", json_path=str(out), progress=False) == 0
    expected = json.loads(out.read_text())
    results = densevision.load(seg.run).evaluate("val")
    assert results["num_images"] == expected["num_images"] == 2
    assert results["miou"] == pytest.approx(expected["miou"], abs=1e-12)
    assert results["per_class_iou"] == pytest.approx(expected["per_class_iou"], nan_ok=True)


def test_export_writes_a_saved_model_that_serves_the_same_masks(seg, tmp_path):
    model = densevision.load(seg.run)
    report = model.export("saved_model", tmp_path / "exported")
    assert report["passed"] and report["format"] == "saved_model"
    served = tf.saved_model.load(str(tmp_path / "exported")).signatures["serving_default"]
    image = seg.images["b.png"]
    labels = served(images=tf.constant(image[None]))["labels"].numpy()[0]
    np.testing.assert_array_equal(labels, model.predict(image)["mask"])


def readme_example() -> str:
    """The Python block of the README's "Python API" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Python API", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs(seg, tmp_path, monkeypatch):
    code = readme_example()
    placeholder = re.search(r'densevision\.load\("([^"]+)"\)', code).group(1)
    monkeypatch.chdir(tmp_path)
    write_rgb(tmp_path / "street.png", seg.images["b.png"])
    namespace: dict = {}
    exec(compile(code.replace(placeholder, str(seg.run)), "README.md", "exec"), namespace)
    np.testing.assert_array_equal(namespace["answer"]["mask"], densevision.load(seg.run).predict(
        seg.images["b.png"])["mask"])
    assert namespace["report"]["passed"]


# ------------------------------------------------------------------------------------------ classification


@pytest.fixture(scope="module")
def classification(tmp_path_factory):
    """A frozen VGG16-trunk classifier on 32x32 demo shapes, trained two steps into a run folder."""
    from densevision.data.image_folder import make_demo_image_folder

    work = tmp_path_factory.mktemp("api_cls")
    root = make_demo_image_folder(work / "shapes", per_class={"train": 4, "val": 2}, size=32, num_scenes=0)
    recipe = write_classification_recipe(work / "tiny_classify.yaml", root, data={"eval_batch_size": 5},
                                         train={"epochs": 1})
    result = train(load_recipe(recipe), output_dir=str(work / "runs"), progress=False)
    return SimpleNamespace(work=work, run=result.run_dir, root=root, recipe=recipe,
                           best=result.run_dir / "checkpoints" / "best.keras")


def test_classification_top_k_equals_the_predict_tool(classification):
    output = classification.work / "predicted"
    options = PredictOptions(top_k=3)
    assert predict_command(str(classification.recipe), str(classification.best), [str(classification.root / "val")],
                           str(output), progress=False, options=options) == 0
    records = json.loads((output / "predictions.json").read_text())["predictions"]
    model = densevision.load(classification.run)
    answers = model.predict([str(classification.root / "val" / record["path"]) for record in records], top_k=3)
    for record, answer in zip(records, answers):
        assert [name for name, _ in answer["top_k"]] == [entry["class"] for entry in record["top_k"]]
        np.testing.assert_allclose([p for _, p in answer["top_k"]], [e["probability"] for e in record["top_k"]],
                                   atol=1e-6)
    # evaluate() agrees with a numpy count over the same images
    results = model.evaluate("val")
    images = [cv2.cvtColor(cv2.imread(str(classification.root / "val" / r["path"])), cv2.COLOR_BGR2RGB)
              for r in records]
    logits = np.asarray(model.model(np.stack(images).astype(np.float32), training=False))
    labels = [model.class_names.index(Path(r["path"]).parent.name) for r in records]
    assert results["top1"] == pytest.approx(np.mean(logits.argmax(-1) == labels), abs=1e-12)


# ------------------------------------------------------------------------------------------------ pose


@pytest.fixture(scope="module")
def pose(tmp_path_factory):
    """The LSP hourglass recipe on its demo data (a 16-feature hourglass on 64x64 crops), trained two steps."""
    from densevision.engine.demo import apply_demo

    work = tmp_path_factory.mktemp("api_pose")
    overrides = ["model.num_features=16", "data.input_size=[64,64]", "train.epochs=1", "train.steps_per_epoch=2",
                 "train.precise_bn_batches=0", "train.pictures_every=0", "tracking.wandb.mode=disabled",
                 "tracking.tensorboard=false"]
    recipe = apply_demo(load_recipe(ROOT / "recipes" / "hourglass_lsp.yaml", overrides, demo=True), work / "demo")
    result = train(recipe, output_dir=str(work / "runs"), progress=False)
    folder = work / "people"
    folder.mkdir()
    for path in sorted((work / "demo" / "images" / "val").glob("*.png"))[:2]:
        (folder / path.name).write_bytes(path.read_bytes())
    return SimpleNamespace(work=work, run=result.run_dir, folder=folder,
                           best=result.run_dir / "checkpoints" / "best.keras")


@pytest.mark.slow
def test_pose_keypoints_equal_the_predict_tool_and_boxes_equal_single(pose):
    output = pose.work / "predicted"
    assert predict_command(str(pose.run / "recipe.yaml"), str(pose.best), [str(pose.folder)], str(output),
                           progress=False, options=PredictOptions(single=True)) == 0
    written = {entry["image"]: entry for entry in json.loads((output / "results.json").read_text())}
    model = densevision.load(pose.run)
    paths = sorted(pose.folder.glob("*.png"))
    answers = model.predict(paths, single=True)
    for path, answer in zip(paths, answers):
        (person,) = answer["people"]
        assert person["keypoints"].shape == (17, 3)
        np.testing.assert_allclose(person["keypoints"].reshape(-1), written[path.name]["keypoints"], atol=0.006)
        height, width = cv2.imread(str(path)).shape[:2]
        assert person["box"] == [0.0, 0.0, float(width), float(height)]
    # the whole image given as a box is the same person as single=True
    boxes = [np.array([[0, 0, cv2.imread(str(p)).shape[1], cv2.imread(str(p)).shape[0]]]) for p in paths]
    boxed = model.predict(paths, boxes=boxes)
    for one, other in zip(boxed, answers):
        np.testing.assert_allclose(one["people"][0]["keypoints"], other["people"][0]["keypoints"], atol=1e-5)
    with pytest.raises(InputError, match=r"boxes of input 0 .*expected \(N, 4\)"):
        model.predict(paths[0], boxes=np.zeros((1, 3)))
