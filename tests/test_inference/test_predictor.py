"""Hostile inputs, part 2 (issue 15): each case here failed before its fix.

Outputs never read back as inputs, resumed runs that keep every earlier record, ``--set`` winning over ``--demo`` in
every tool, calibration folders with a stray file, one input walker for every tool, bounded memory for sliding
windows, and messages that say what is wrong. Data is generated in pytest's temporary folders.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

import densevision  # noqa: F401  (environment first)
import keras

from densevision.data.augment import build_augmentation

from image_utils import noise, write_image

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("private_cache")  # verdicts and logs in a fresh folder (tests/conftest.py)


# ------------------------------------------------------------------------------------------- augmentation


def test_mirror_detection_raises_no_numpy_deprecation_and_swaps_joints():
    """The mirror check used ``np.cross`` of 2-vectors, deprecated in NumPy 2 (a warning on every pose sample)."""
    image = np.zeros((20, 30, 3), np.uint8)
    sample = {"image": image, "keypoints": np.array([[3, 4, 2], [25, 10, 1]], np.float32)}
    for transforms, mirrored in (([{"HorizontalFlip": {"p": 1.0}}], True), ([{"Transpose": {"p": 1.0}}], True),
                                 ([{"Rotate": {"limit": [90, 90], "p": 1.0}}], False)):
        augment = build_augmentation(transforms, target="keypoints", flip_pairs=[(0, 1)])
        with warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            out = augment(sample, 0)
        assert out["meta"]["mirrored"] is mirrored, transforms
    # a horizontal flip by hand: x -> W - 1 - x, and the two joints trade slots
    flipped = build_augmentation([{"HorizontalFlip": {"p": 1.0}}], target="keypoints", flip_pairs=[(0, 1)])(sample, 0)
    np.testing.assert_allclose(flipped["keypoints"], [[30 - 1 - 25, 10, 1], [30 - 1 - 3, 4, 2]])


# ------------------------------------------------------------------------------------------- messages


def test_existing_outputs_name_each_way_out_once(tmp_path):
    """The hint repeated itself: "pass --overwrite to replace them or pass --overwrite to replace them or ..."."""
    from densevision.engine.predictor import PredictOptions, plan_jobs
    from densevision.errors import OutputError

    class Writes:  # the planning interface of a task: one PNG per input
        def prediction_files(self, stem, options):
            return [f"{stem}.png"]

        def prediction_summary_files(self, options):
            return []

    image = write_image(tmp_path / "in" / "a.jpg", noise())
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.png").write_bytes(b"earlier")
    with pytest.raises(OutputError) as caught:
        plan_jobs(Writes(), [(image, "a.jpg")], tmp_path / "out", PredictOptions(), overwrite=False, resume=False)
    message = str(caught.value)
    assert message.count("--overwrite") == 1 and message.endswith(
        "pass --overwrite to replace them or --resume to skip them"), message


def test_export_refusal_speaks_in_flags_not_arguments(tmp_path):
    from densevision.engine.export import ExportError, _prepare_output

    existing = tmp_path / "model.keras"
    existing.write_bytes(b"earlier")
    with pytest.raises(ExportError) as caught:
        _prepare_output(existing, "keras", False)
    assert "pass --overwrite to replace it" in str(caught.value) and "overwrite=True" not in str(caught.value)


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_proc_as_output_folder_says_no_file_can_be_created_there():
    from densevision.errors import OutputError
    from densevision.files import check_writable_dir

    with pytest.raises(OutputError) as caught:
        check_writable_dir("/proc", what="--output folder")
    message = str(caught.value)
    assert message.startswith("--output folder /proc is not writable: no file can be created there"), message
    assert "no such file or directory" not in message


@pytest.mark.parametrize("dataset", ["camvid", "mask_folder", "image_folder", "coco_keypoints", "lsp", "mpii"])
def test_a_data_root_that_is_a_file_is_called_a_file(tmp_path, dataset):
    from densevision.data.errors import DatasetError
    from densevision.registry import DATASETS, load_builtin_parts

    load_builtin_parts()
    root = tmp_path / "data.zip"
    root.write_bytes(b"PK\x03\x04 a zip archive, not a folder")
    options = {"num_classes": 2} if dataset == "mask_folder" else {}
    with pytest.raises(DatasetError) as caught:
        DATASETS.get(dataset)(root=str(root), split="train", **options)
    message = str(caught.value)
    assert f"{root} is a file, not a folder" in message and "does not exist" not in message, message
    with pytest.raises(DatasetError, match="does not exist"):  # and a missing root still says so
        DATASETS.get(dataset)(root=str(tmp_path / "gone"), split="train", **options)


def test_coco_annotation_without_a_keypoints_field_says_the_field_is_missing(tmp_path):
    from densevision.data.coco_keypoints import CocoKeypoints
    from densevision.data.errors import DatasetError
    from densevision.data.skeletons import keypoint_info

    write_image(tmp_path / "images" / "train" / "a.jpg", noise(40, 60))
    joints = keypoint_info("coco")["joint_names"]
    annotation = {"id": 7, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [10, 5, 20, 30],
                  "area": 300.0, "num_keypoints": 1}  # no "keypoints"
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "person_keypoints_train.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.jpg", "height": 40, "width": 60}], "annotations": [annotation],
        "categories": [{"id": 1, "name": "person", "keypoints": joints, "skeleton": []}]}))
    with pytest.raises(DatasetError) as caught:
        CocoKeypoints(str(tmp_path), "train")
    message = str(caught.value)
    assert "annotation 7 (no 'keypoints' field; expected 51 numbers = 17 x (x, y, v))" in message, message
    assert "1 keypoint values" not in message


@pytest.fixture(scope="module")
def task_models(tmp_path_factory):
    """A tiny pose model (heatmaps at 1/4, 11 joints) and a tiny segmentation model (11 classes), saved."""
    from densevision.models.hourglass import stacked_hourglass
    from densevision.models.tiramisu import fc_densenet

    folder = tmp_path_factory.mktemp("task_models")
    keras.utils.set_random_seed(0)
    pose = stacked_hourglass(num_stacks=1, num_features=8, num_joints=11, depth=1, input_shape=(64, 64, 3))
    segmenter = fc_densenet(num_classes=17, blocks_down=[1, 1], bottleneck=1, growth_rate=4, first_filters=8,
                            dropout=0.0)
    return {"pose": (pose, folder / "pose.keras"), "segmentation": (segmenter, folder / "segmenter.keras")}


def test_a_checkpoint_of_another_task_is_named_as_such(task_models):
    """A pose checkpoint in a segmentation recipe was "predicts 11 classes" (its joints counted as classes)."""
    from densevision.engine.checkpoints import CheckpointError
    from densevision.engine.compat import check_checkpoint_matches, output_stride
    from densevision.recipes import load_recipe
    from densevision.tasks.pose import PoseTask
    from densevision.tasks.segmentation import SegmentationTask

    pose, pose_path = task_models["pose"]
    segmenter, segmenter_path = task_models["segmentation"]
    assert output_stride(pose) == 64 // pose.outputs[-1].shape[1] == 4  # 64x64 in, 16x16 heatmaps
    assert output_stride(segmenter) == 1
    seg_recipe = load_recipe(ROOT / "recipes" / "tiramisu56_camvid.yaml", ["model.num_classes=11"])
    seg_task = SegmentationTask(seg_recipe, {"class_names": [f"c{i}" for i in range(11)], "num_classes": 11})
    with pytest.raises(CheckpointError) as caught:
        check_checkpoint_matches(pose, seg_recipe, seg_task.info, pose_path, task=seg_task)
    message = str(caught.value)
    assert message.startswith(f"checkpoint {pose_path} is a pose model (maps at 1/4 of the input), but the recipe's "
                              f"task is segmentation (a map at the input's size)"), message
    assert "classes" not in message
    pose_recipe = load_recipe(ROOT / "recipes" / "hourglass_lsp.yaml", ["model.num_joints=17"])
    info = {"joint_names": [f"j{i}" for i in range(17)], "num_joints": 17}
    with pytest.raises(CheckpointError) as caught:
        check_checkpoint_matches(segmenter, pose_recipe, info, segmenter_path, task=PoseTask)
    message = str(caught.value)
    assert "is a segmentation model (a map at the input's size), but the recipe's task is pose" in message, message
    assert "joints" not in message
    # the right task still passes, and a count mismatch within one task is still a count mismatch
    check_checkpoint_matches(segmenter, seg_recipe, {"num_classes": 17}, segmenter_path, task=seg_task)
    with pytest.raises(CheckpointError, match="predicts 17 classes, dataset 'camvid' has 11"):
        check_checkpoint_matches(segmenter, seg_recipe, seg_task.info, segmenter_path, task=seg_task)


def test_a_saved_lambda_layer_is_refused_naming_it(tmp_path):
    """Keras' refusal names no layer; the message ended "may be corrupt or need a newer densevision"."""
    from densevision.engine.checkpoints import CheckpointError, load_checkpoint

    inner_input = keras.Input((None, None, 3))
    inner = keras.Model(inner_input, keras.layers.Lambda(lambda x: x * 2.0, name="double")(inner_input), name="inner")
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inner(inputs)), name="outer")
    path = tmp_path / "lambda.keras"
    model.save(path)
    with pytest.raises(ValueError, match="Lambda"):  # what Keras says, without the layer's name
        keras.saving.load_model(path, safe_mode=True, compile=False)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert "outer/inner/double (Lambda layer)" in message and "safe_mode=True" in message, message
    assert "corrupt" not in message and "newer densevision" not in message


# ------------------------------------------------------------------------------------- --set wins over --demo


class _Stop(Exception):
    """Raised by a stand-in for the first step after a tool has its recipe."""


def test_every_set_value_wins_over_demo_in_every_tool(tmp_path, monkeypatch):
    """``evaluate.py --demo --set data.root=OTHER`` scored the demo data: the demo data location was applied after
    the --set values. Each tool is stopped right after it has its recipe, which is captured."""
    import densevision.engine.evaluator as evaluator
    import densevision.engine.trainer as trainer
    import densevision.inference.predictor as predictor
    import densevision.serving.export as serving_export
    import densevision.inference.sliding as sliding
    from densevision.engine.export import export_command
    from densevision.engine.launch import run_training

    seen = {}

    def capture(name):
        def stand_in(*args, **kwargs):
            seen[name] = next(value for value in (*args, *kwargs.values()) if hasattr(value, "data"))
            raise _Stop
        return stand_in

    other = tmp_path / "my_data"
    pose, sliding_recipe = ROOT / "recipes" / "hourglass_lsp.yaml", ROOT / "recipes" / "vgg16_sliding.yaml"
    override = [f"data.root={other}", "train.epochs=3"]
    image = write_image(tmp_path / "in" / "a.png", noise(64, 64))
    monkeypatch.setattr(trainer, "train", capture("train"))
    monkeypatch.setattr(evaluator, "run_evaluation", capture("evaluate"))
    monkeypatch.setattr(predictor, "load_for_prediction", capture("predict"))
    monkeypatch.setattr(serving_export, "load_for_prediction", capture("export"))
    monkeypatch.setattr(sliding, "load_classifier", capture("sliding_classify"))
    runs = {
        "train": lambda: run_training(str(pose), override, output=str(tmp_path / "runs"), demo=True),
        "evaluate": lambda: evaluator.evaluate_command(str(pose), "w.keras", overrides=override, demo=True),
        "predict": lambda: predictor.predict_command(str(pose), "w.keras", [str(image.parent)], str(tmp_path / "p"),
                                                     demo=True, overrides=override, progress=False),
        "export": lambda: export_command(str(pose), "w.keras", "keras", str(tmp_path / "e.keras"),
                                         overrides=override, demo=True),
        "sliding_classify": lambda: sliding.sliding_classify_command(
            str(sliding_recipe), "w.keras", [str(image)], output=str(tmp_path / "s"), overrides=override, demo=True,
            progress=False),
    }
    for tool, run in runs.items():
        with pytest.raises(_Stop):
            run()
        recipe = seen[tool]
        assert recipe.data.root == str(other), f"{tool}: --set data.root lost to --demo ({recipe.data.root})"
        assert recipe.train.epochs == 3, tool  # a --set of a key the demo section sets
    # the rest of --demo still applies: its generated data's dataset and joints, its small crops
    assert seen["predict"].data.name == "coco_keypoints" and seen["predict"].model.kwargs()["num_joints"] == 17
    assert seen["train"].data.kwargs()["input_size"] == [64, 64]


# ------------------------------------------------------------------------------- outputs are never inputs


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    """A tiny random FC-DenseNet (11 classes, CamVid's) saved as .keras, and a recipe for it (CamVid's class
    names come from the source's describe(): no data needed)."""
    from densevision.models.tiramisu import fc_densenet
    from engine_utils import TINY_MODEL, write_recipe

    folder = tmp_path_factory.mktemp("segmenter")
    keras.utils.set_random_seed(0)
    options = {key: value for key, value in TINY_MODEL.items() if key != "name"}
    weights = folder / "tiny.keras"
    fc_densenet(**options).save(weights)
    return write_recipe(folder / "tiny.yaml", folder / "no_data_here"), weights


def _predict(recipe, weights, inputs, output, **kwargs):
    from densevision.engine.predictor import PredictOptions, predict_command

    return predict_command(str(recipe), str(weights), [str(i) for i in inputs], str(output), progress=False,
                           options=PredictOptions(color=True, overlay=True), **kwargs)


def test_predicting_into_a_folder_inside_the_input_never_reads_the_outputs(tmp_path, segmenter, capsys):
    """``--input DIR --output DIR/out --overwrite`` after a first run predicted the first run's outputs
    ("predicted 6 image(s)", DIR/out/out/..., DIR/out/color/out/color/...)."""
    recipe, weights = segmenter
    photos = tmp_path / "photos"
    for name in ("a.png", "sub/b.jpg"):
        write_image(photos / name, noise(32, 32))
    out = photos / "out"
    assert _predict(recipe, weights, [photos], out) == 0
    first = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file())
    assert _predict(recipe, weights, [photos], out, overwrite=True) == 0
    assert "predicted 2 image(s)" in capsys.readouterr().out
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == first
    assert not (out / "out").exists() and not (out / "color" / "out").exists()
    report = json.loads((out / "report.json").read_text())
    assert sorted(report["ok"]) == [str(photos / "a.png"), str(photos / "sub" / "b.jpg")]
    # the output folder given as an input is skipped, saying why, and nothing else is left: one clear error
    from densevision.data.errors import DatasetError

    with pytest.raises(DatasetError, match="no image files found"):
        _predict(recipe, weights, [out], out, overwrite=True)
    assert "it is in the output folder, whose files are never read as inputs" in capsys.readouterr().err


def test_resume_keeps_every_record_of_the_earlier_run(tmp_path, segmenter):
    """``--resume`` into an earlier run's folder replaced report.json: its ok and failed inputs were gone."""
    recipe, weights = segmenter
    first, second, out = tmp_path / "first", tmp_path / "second", tmp_path / "out"
    write_image(first / "a.png", noise(32, 32))
    (first / "broken.png").write_bytes(b"not an image")
    write_image(second / "c.png", noise(32, 32))
    assert _predict(recipe, weights, [first], out) == 1
    earlier = json.loads((out / "report.json").read_text())
    assert earlier["ok"] == [str(first / "a.png")] and [f["path"] for f in earlier["failed"]] == [
        str(first / "broken.png")]
    assert _predict(recipe, weights, [second], out, resume=True) == 0  # exit status: this run's inputs
    report = json.loads((out / "report.json").read_text())
    assert sorted(report["ok"]) == [str(first / "a.png"), str(second / "c.png")]
    assert report["failed"] == earlier["failed"]
    # an input seen again keeps only its newest verdict
    write_image(first / "broken.png", noise(32, 32))
    assert _predict(recipe, weights, [first], out, resume=True) == 0
    report = json.loads((out / "report.json").read_text())
    assert sorted(report["ok"]) == sorted(str(p) for p in (first / "a.png", first / "broken.png", second / "c.png"))
    assert report["failed"] == []


def test_classification_resume_keeps_the_earlier_predictions(tmp_path):
    from densevision.engine.predictor import PredictOptions, predict_command

    keras.utils.set_random_seed(1)
    model = keras.Sequential([keras.Input((28, 28, 3)), keras.layers.Rescaling(1 / 255.0),
                              keras.layers.Conv2D(4, 3, activation="relu"), keras.layers.GlobalAveragePooling2D(),
                              keras.layers.Dense(5)])
    weights = tmp_path / "classifier.keras"
    model.save(weights)
    recipe = ROOT / "recipes" / "resnet50_classify.yaml"
    overrides = ["model.input_shape=[28,28,3]", "model.num_classes=5", f"data.root={tmp_path / 'absent'}"]
    write_image(tmp_path / "one" / "a.png", noise(28, 28))
    write_image(tmp_path / "two" / "b.png", noise(28, 28))
    out = tmp_path / "out"
    for folder, resume in (("one", False), ("two", True)):
        assert predict_command(str(recipe), str(weights), [str(tmp_path / folder)], str(out), overrides=overrides,
                               progress=False, resume=resume, options=PredictOptions(top_k=2)) == 0
    predictions = json.loads((out / "predictions.json").read_text())["predictions"]
    assert [record["path"] for record in predictions] == ["a.png", "b.png"]
    rows = (out / "predictions.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["a.png", "a.png", "b.png", "b.png"]


def test_sliding_skips_a_symlink_loop_like_predict_and_never_reads_its_outputs(tmp_path, sliding_setup, capsys):
    """sliding_classify refused the whole folder for one symbolic-link loop (predict skips the entry); and with
    --output inside the input folder a second run read the first run's heat maps."""
    from densevision.inference.sliding import sliding_classify_command

    recipe, weights = sliding_setup
    images = tmp_path / "images"
    write_image(images / "a.png", noise(40, 40))
    (images / "loop").symlink_to(images, target_is_directory=True)
    out = images / "out"

    def run(**kwargs):
        return sliding_classify_command(str(recipe), str(weights), [str(images)], output=str(out), progress=False,
                                        **kwargs)

    assert run() == 1  # one entry skipped, the rest done
    assert f"warning: skipped {images / 'loop'}: symbolic link loop" in capsys.readouterr().err
    results = json.loads((out / "results.json").read_text())
    assert [entry["relative"] for entry in results["images"]] == ["a.png"]
    assert [failure["image"] for failure in results["failures"]] == [str(images / "loop")]
    assert run(overwrite=True) == 1
    results = json.loads((out / "results.json").read_text())
    assert [entry["relative"] for entry in results["images"]] == ["a.png"], "the first run's heat map was read"


# --------------------------------------------------------------------------------------- export calibration


def test_int8_export_skips_a_non_image_in_the_calibration_folder(tmp_path, segmenter, capsys):
    """One non-image in ``--calibration DIR`` stopped the export (after the model had loaded)."""
    from densevision.cli import run_tool
    from densevision.engine.export import export_command

    recipe, weights = segmenter
    folder = tmp_path / "calibration"
    for index in range(5):
        write_image(folder / f"{index}.png", noise(32, 32))
    (folder / "notes.png").write_text("a text file named like an image")
    output = tmp_path / "model.tflite"
    code = run_tool(lambda argv: export_command(str(recipe), str(weights), "tflite", str(output), input_size=(32, 32),
                                                int8=True, calibration=str(folder)), [])
    err = capsys.readouterr().err
    assert code == 0, err
    assert f"warning: skipped calibration image {folder / 'notes.png'}: not an image" in err, err
    assert "calibrating on 5 image(s); 1 unreadable file(s) skipped" in err
    assert output.is_file()


def test_too_few_readable_calibration_images_are_refused_saying_how_many_are_needed(tmp_path, capsys):
    from densevision.cli import run_tool
    from densevision.engine.export import ExportError, MIN_CALIBRATION_IMAGES, calibration_paths, export_command

    folder = tmp_path / "calibration"
    for index in range(2):
        write_image(folder / f"{index}.png", noise(32, 32))
    for index in range(3):
        (folder / f"bad{index}.jpg").write_bytes(b"")
    with pytest.raises(ExportError) as caught:
        calibration_paths(folder)
    message = str(caught.value)
    assert f"2 readable image(s), int8 calibration needs at least {MIN_CALIBRATION_IMAGES}" in message
    assert "bad0.jpg (empty file" in message
    # refused before the recipe is read or a model loaded
    code = run_tool(lambda argv: export_command("unused.yaml", "unused.keras", "tflite", str(tmp_path / "x.tflite"),
                                                int8=True, calibration=str(folder)), [])
    assert code == 2 and "needs at least 4" in capsys.readouterr().err
    # --calibration-limit 2 asks for only 2: enough
    assert calibration_paths(folder, limit=2) == [folder / "0.png", folder / "1.png"]


# ------------------------------------------------------------------------------------------------ training


def test_resuming_a_finished_run_says_it_finished_and_how_to_train_longer(tmp_path, capsys):
    """It printed "Resuming ... at epoch 2/1" and trained nothing."""
    from densevision.engine.checkpoints import CheckpointError
    from densevision.engine.launch import run_training
    from engine_utils import make_street_data, only_run_dir, write_recipe

    recipe = write_recipe(tmp_path / "tiny.yaml", make_street_data(tmp_path / "streets"),
                          train={"epochs": 1, "steps_per_epoch": 1},
                          tracking={"wandb": {"mode": "disabled"}, "tensorboard": False})
    assert run_training(str(recipe), output=str(tmp_path / "runs")) == 0
    run = only_run_dir(tmp_path / "runs")
    capsys.readouterr()
    with pytest.raises(CheckpointError) as caught:
        run_training(None, resume=str(run))
    message = str(caught.value)
    assert message == (f"cannot resume {run}: the run already finished its 1 epoch(s) (train.epochs is 1); to train "
                       f"longer, resume with more epochs: tools/train.py --resume {run} --set train.epochs=2")
    assert "epoch 2/1" not in capsys.readouterr().out


# --------------------------------------------------------------------------------------- sliding memory


@pytest.mark.parametrize("padding", ["valid", "same"])
def test_tiled_sliding_scores_equal_one_pass(padding):
    """Large images are scored in tiles (memory bounded by the tile): the same map as one pass, cell for cell."""
    from densevision.inference.fully_convolutional import to_fully_convolutional
    from densevision.inference.sliding import context_margin, dense_scores, map_size, network_stride, tiled_scores

    keras.utils.set_random_seed(5)
    classifier = keras.Sequential([
        keras.Input((28, 28, 3)), keras.layers.Rescaling(1 / 255.0),
        keras.layers.Conv2D(6, 3, padding=padding, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Conv2D(6, 3, padding=padding, activation="relu"), keras.layers.MaxPooling2D(2),
        keras.layers.Flatten(), keras.layers.Dense(4)])
    fc = to_fully_convolutional(classifier)
    assert network_stride(fc, 28) == (4, 4)
    # receptive field 3 -> 4 (pool) -> 8 -> 10 pixels: half of it (4.5) rounded up to whole strides of 4
    assert context_margin(fc, 28, 4) == (8, 8)
    image = noise(102, 127)  # not a whole number of strides past the last window: a pass sees those pixels too
    whole = dense_scores(fc, image, 28, 2, (4, 4))  # stride 2: four shifted passes
    assert whole.shape == (1, *map_size((102, 127), 28, 2), 4) == (1, 38, 50, 4)
    tiled = tiled_scores(fc, image, 28, 2, (4, 4), max_pixels=80 * 80)  # 4 x 5 tiles of 80x80 pixels at most
    np.testing.assert_allclose(tiled, whole, rtol=1e-5, atol=1e-5)
    if padding == "valid":  # the first window is the classifier on the top-left crop (an independent reference)
        np.testing.assert_allclose(whole[0, 0, 0], classifier(image[None, :28, :28].astype(np.float32))[0],
                                   rtol=1e-5, atol=1e-5)


def test_sliding_classify_tiles_large_images_by_default(tmp_path, sliding_setup, monkeypatch):
    """sliding_classify scored a whole 4000x3000 photo in one pass (about 9 GB through VGG16): every forward pass
    must now stay within the pixel budget."""
    from densevision.inference import sliding

    recipe, weights = sliding_setup
    seen = []
    real = sliding.dense_scores

    def spy(fc_model, images, *args, **kwargs):
        seen.append(np.asarray(images).shape[-3] * np.asarray(images).shape[-2])
        return real(fc_model, images, *args, **kwargs)

    monkeypatch.setattr(sliding, "dense_scores", spy)
    write_image(tmp_path / "big.png", noise(160, 240))
    assert sliding.sliding_classify_command(str(recipe), str(weights), [str(tmp_path / "big.png")],
                                            output=str(tmp_path / "out"), progress=False,
                                            max_pixels=100 * 100) == 0
    assert seen and max(seen[1:]) <= 100 * 100, seen  # the first call is the whole image, handed to the tiles
