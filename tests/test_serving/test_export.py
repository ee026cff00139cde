"""Export to SavedModel, .keras and TFLite (float32, int8): each artefact loaded back independently and compared
with the Keras model (numpy argmax/softmax as the reference for the decoded outputs)."""

from __future__ import annotations

import json
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
from densevision.cli import run_tool
from densevision.engine.export import (
    ExportError,
    check_parity,
    export_command,
    export_model,
    find_lambda_layers,
    load_calibration_images,
    make_serving_function,
    recipe_input_size,
)
from densevision.tasks.base import Task

ROOT = Path(__file__).resolve().parents[2]
NUM_CLASSES = 11  # CamVid's classes: the export tool checks the checkpoint against the recipe's dataset


# ------------------------------------------------------------------------------------------------ helpers


def run_export(*args, **kwargs) -> int:
    """:func:`export_command` as ``densevision export`` runs it (:func:`densevision.cli.run_tool`): a usage error
    becomes one ``error:`` line on stderr and exit 2."""
    return run_tool(lambda argv: export_command(*args, **kwargs), [], tool="export")


def segmentation_task(num_classes: int = 3):
    from densevision.tasks.segmentation import SegmentationTask

    return SegmentationTask(None, {"class_names": [f"c{k}" for k in range(num_classes)]})


def classification_task(num_classes: int = 4):
    from densevision.tasks.classification import ClassificationTask

    return ClassificationTask(None, {"class_names": [f"c{k}" for k in range(num_classes)]})


def tiny_segmenter(seed: int = 0) -> keras.Model:
    """A two-level FC-DenseNet of the library (pads and crops itself; batch norm, pooling, transposed conv)."""
    from densevision.models.tiramisu import fc_densenet

    keras.utils.set_random_seed(seed)
    model = fc_densenet(num_classes=NUM_CLASSES, blocks_down=[1], bottleneck=1, growth_rate=4, first_filters=8,
                        dropout=0.0)
    # Non-trivial batch-norm statistics, so a converter that loses them (or reads them uninitialised) shows.
    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.moving_mean.assign(rng.normal(0, 0.5, layer.moving_mean.shape))
            layer.moving_variance.assign(rng.uniform(0.5, 2.0, layer.moving_variance.shape))
    return model


def tiny_classifier(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(6, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(4, name="predictions")(x))


def keras_scores(model, images):
    return model(np.asarray(images, np.float32), training=False).numpy()


def relative_error(got, reference):
    return float(np.abs(got - reference).max() / max(1.0, np.abs(reference).max()))


def smooth_images(count, height, width, seed=0):
    rng = np.random.default_rng(seed)
    images = [cv2.resize(rng.uniform(0, 255, (4, 4, 3)).astype(np.float32), (width, height),
                         interpolation=cv2.INTER_CUBIC) + rng.normal(0, 15, (height, width, 3)) for _ in range(count)]
    return np.clip(np.stack(images), 0, 255).astype(np.uint8)


def write_images(folder: Path, count: int, height=40, width=56) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(smooth_images(count, height, width, seed=10)):
        cv2.imwrite(str(folder / f"img{index}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder


def tflite_runner(path):
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path))
    return interpreter, interpreter.get_signature_runner("serving_default")


@pytest.fixture(scope="module")
def segmenter():
    return tiny_segmenter()


# ----------------------------------------------------------------------------------------------- formats


def test_saved_model_takes_uint8_images_of_any_size(tmp_path, segmenter):
    report = export_model(segmenter, tmp_path / "sm", "saved_model", segmentation_task())
    assert report["passed"] and report["outputs"]["logits"]["relative"] <= 1e-5

    signature = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
    spec = signature.structured_input_signature[1]["images"]
    assert spec.dtype == tf.uint8 and spec.shape.as_list() == [None, None, None, 3]
    for shape in [(2, 37, 51), (1, 64, 64), (3, 20, 9)]:
        images = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
        outputs = signature(images=tf.constant(images))
        expected = keras_scores(segmenter, images)
        assert relative_error(outputs["logits"].numpy(), expected) <= 1e-5
        assert outputs["labels"].dtype == tf.int32 and outputs["labels"].shape == shape
        np.testing.assert_array_equal(outputs["labels"].numpy(), expected.argmax(-1))
    metadata = json.loads((tmp_path / "sm" / "assets.extra" / "densevision.json").read_text())
    assert metadata["input"]["dtype"] == "uint8" and set(metadata["outputs"]) == {"logits", "labels"}


def test_keras_export_reloads_in_safe_mode_exactly(tmp_path, segmenter):
    path = tmp_path / "model.keras"
    report = export_model(segmenter, path, "keras", segmentation_task())
    assert report["passed"] and report["outputs"]["logits"]["max_abs"] == 0.0
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)
    images = np.random.default_rng(1).integers(0, 256, (2, 29, 40, 3), dtype=np.uint8)
    np.testing.assert_array_equal(keras_scores(loaded, images), keras_scores(segmenter, images))


def test_lambda_layer_is_refused_for_keras_naming_it(tmp_path):
    inner_input = keras.Input((None, None, 3))
    inner = keras.Model(inner_input, keras.layers.Lambda(lambda x: x * 2.0, name="double")(inner_input), name="inner")
    inputs = keras.Input((None, None, 3))
    model = keras.Model(inputs, keras.layers.Conv2D(3, 1)(inner(inputs)), name="outer")
    assert find_lambda_layers(model) == ["outer/inner/double (Lambda layer)"]
    assert find_lambda_layers(tiny_classifier()) == []
    with pytest.raises(ExportError, match=r"outer/inner/double \(Lambda layer\).*safe_mode=True"):
        export_model(model, tmp_path / "lambda.keras", "keras", segmentation_task())
    assert not (tmp_path / "lambda.keras").exists()
    export_model(model, tmp_path / "lambda_sm", "saved_model", segmentation_task())  # other formats still work


def test_tflite_float_matches_keras(tmp_path, segmenter):
    path = tmp_path / "model.tflite"
    report = export_model(segmenter, path, "tflite", segmentation_task(), input_size=(32, 48))
    assert report["passed"] and report["outputs"]["logits"]["relative"] <= 1e-4
    interpreter, runner = tflite_runner(path)
    assert "READ_VARIABLE" not in {op["op_name"] for op in interpreter._get_ops_details()}  # weights are constants
    images = smooth_images(2, 32, 48, seed=3)
    expected = keras_scores(segmenter, images)
    for image, reference in zip(images, expected):
        outputs = runner(images=image[None])
        assert relative_error(outputs["logits"][0], reference) <= 1e-4
        np.testing.assert_array_equal(outputs["labels"][0], reference.argmax(-1))


def test_tflite_int8_with_calibration_images(tmp_path, segmenter):
    folder = write_images(tmp_path / "calibration", 8)
    calibration = load_calibration_images(folder, (32, 48))
    assert calibration.shape == (8, 32, 48, 3) and calibration.dtype == np.uint8
    path = tmp_path / "int8.tflite"
    report = export_model(segmenter, path, "tflite", segmentation_task(), input_size=(32, 48),
                          calibration_images=calibration)
    assert report["int8"] and report["tolerance"] is None
    _, runner = tflite_runner(path)
    inputs, outputs = runner.get_input_details(), runner.get_output_details()
    assert inputs["images"]["dtype"] == np.uint8 and inputs["images"]["quantization"] == (0.0, 0)
    assert outputs["logits"]["dtype"] == np.int8 and outputs["labels"]["dtype"] == np.int32
    scale, zero_point = outputs["logits"]["quantization"]
    images = smooth_images(3, 32, 48, seed=20)
    expected = keras_scores(segmenter, images)
    got = np.concatenate([runner(images=image[None])["logits"] for image in images])
    dequantised = (got.astype(np.float32) - zero_point) * scale
    agreement = np.mean(dequantised.argmax(-1) == expected.argmax(-1))
    assert agreement > 0.85, agreement  # measured 0.96-0.98
    assert np.abs(dequantised - expected).mean() / np.ptp(expected) < 0.02
    assert report["outputs"]["labels"]["agreement"] > 0.85


def test_missing_or_empty_calibration_folder_errors(tmp_path, capsys):
    with pytest.raises(ExportError, match=r"calibration folder .*absent does not exist"):
        load_calibration_images(tmp_path / "absent", (32, 32))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ExportError, match=r"calibration folder .*empty holds no image files"):
        load_calibration_images(tmp_path / "empty", (32, 32))
    # The command refuses before reading the recipe or loading a model.
    for extra, message in [({"calibration": str(tmp_path / "absent")}, "does not exist"),
                           ({}, "--int8 needs --calibration DIR")]:
        code = run_export("unused.yaml", "unused.keras", "tflite", str(tmp_path / "x.tflite"), int8=True, **extra)
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: ") and message in err


# ------------------------------------------------------------------------------------------ decoded outputs


def test_classification_probabilities_and_top_class(tmp_path):
    model = tiny_classifier()
    export_model(model, tmp_path / "cls", "saved_model", classification_task(model.output_shape[-1]))
    signature = tf.saved_model.load(str(tmp_path / "cls")).signatures["serving_default"]
    for shape in [(3, 24, 24), (1, 41, 17)]:
        images = np.random.default_rng(shape[1]).integers(0, 256, (*shape, 3), dtype=np.uint8)
        outputs = signature(images=tf.constant(images))
        logits = keras_scores(model, images).astype(np.float64)
        softmax = np.exp(logits - logits.max(-1, keepdims=True))
        softmax /= softmax.sum(-1, keepdims=True)
        np.testing.assert_allclose(outputs["probabilities"].numpy(), softmax, atol=1e-6)
        np.testing.assert_array_equal(outputs["top_class"].numpy(), logits.argmax(-1))


def test_segmentation_labels_come_at_the_input_size_for_strided_logits():
    inputs = keras.Input((None, None, 3))
    logits = keras.layers.Conv2D(3, 3, strides=2, padding="same")(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, logits)
    images = np.random.default_rng(2).integers(0, 256, (1, 21, 30, 3), dtype=np.uint8)
    dynamic = tf.function(make_serving_function(model, segmentation_task()),
                          input_signature=[tf.TensorSpec([None, None, None, 3], tf.uint8)])
    outputs = dynamic(tf.constant(images))
    assert outputs["logits"].shape == (1, 11, 15, 3) and outputs["labels"].shape == (1, 21, 30)
    resized = tf.image.resize(keras_scores(model, images), (21, 30), method="bilinear").numpy()
    np.testing.assert_array_equal(outputs["labels"].numpy(), resized.argmax(-1))


class ArgmaxPoseTask(Task):
    """A stand-in pose task providing the serving seam: keypoints at the heatmap argmax, scores the peak."""

    name = "pose"
    raw_output_name = "heatmaps"

    def __init__(self):
        super().__init__(None, {})

    def serving_outputs(self, heatmaps, images):
        batch, width, joints = tf.shape(heatmaps)[0], tf.shape(heatmaps)[2], tf.shape(heatmaps)[3]
        flat = tf.reshape(tf.transpose(heatmaps, [0, 3, 1, 2]), [batch, joints, -1])
        index = tf.argmax(flat, axis=-1, output_type=tf.int32)
        keypoints = tf.cast(tf.stack([index % width, index // width], axis=-1), tf.float32)
        return {"keypoints": keypoints, "scores": tf.reduce_max(flat, axis=-1)}


def stacked_model(seed=0):
    """Two 'stacks', each a 1x1 convolution to 3 joint heatmaps: outputs [first, last]."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255)(inputs)
    first = keras.layers.Conv2D(3, 1, name="stack0")(x)
    last = keras.layers.Conv2D(3, 3, padding="same", name="stack1")(keras.layers.Concatenate()([x, first]))
    return keras.Model(inputs, [first, last])


def test_several_outputs_keep_every_stack_and_decode_the_last_through_the_task_seam(tmp_path):
    model = stacked_model()
    report = export_model(model, tmp_path / "pose", "saved_model", ArgmaxPoseTask())
    assert report["passed"] and set(report["outputs"]) == {"heatmaps_0", "heatmaps", "keypoints", "scores"}
    signature = tf.saved_model.load(str(tmp_path / "pose")).signatures["serving_default"]
    images = np.random.default_rng(4).integers(0, 256, (2, 12, 17, 3), dtype=np.uint8)
    outputs = signature(images=tf.constant(images))
    first, last = (out.numpy() for out in model(images.astype(np.float32)))
    np.testing.assert_allclose(outputs["heatmaps_0"].numpy(), first, atol=1e-5)
    np.testing.assert_allclose(outputs["heatmaps"].numpy(), last, atol=1e-5)
    for b in range(2):
        for j in range(3):
            row, col = np.unravel_index(last[b, :, :, j].argmax(), last.shape[1:3])
            np.testing.assert_array_equal(outputs["keypoints"].numpy()[b, j], [col, row])
            assert outputs["scores"].numpy()[b, j] == pytest.approx(last[b, :, :, j].max(), abs=1e-5)


def test_a_task_without_the_serving_seam_is_a_clear_error():
    class NoServing(Task):  # keeps the base class's serving_outputs
        name = "pose"

    with pytest.raises(ExportError, match="task 'pose': no serving outputs.*serving_outputs"):
        make_serving_function(stacked_model(), NoServing(None, {}))


def test_parity_check_detects_a_different_model(tmp_path, segmenter):
    export_model(segmenter, tmp_path / "sm", "saved_model", segmentation_task())
    other = tiny_segmenter(seed=1)
    parity = check_parity("saved_model", tmp_path / "sm", other, make_serving_function(other, segmentation_task()),
                          list(smooth_images(2, 32, 32)), segmentation_task())
    assert not parity["passed"] and parity["outputs"]["logits"]["relative"] > 1e-3


# ------------------------------------------------------------------------------------------ recipe and CLI


def test_input_size_from_the_recipe():
    def recipe(data=None, train=(), val=()):
        data_section = SimpleNamespace(kwargs=lambda: dict(data or {}))
        return SimpleNamespace(data=data_section, augmentation=SimpleNamespace(train=list(train), val=list(val)))

    crops = [{"RandomCrop": {"height": 224, "width": 320}}, {"HorizontalFlip": {"p": 0.5}}]
    assert recipe_input_size(recipe(train=crops)) == (224, 320)
    assert recipe_input_size(recipe(train=crops, val=[{"Resize": {"height": 256, "width": 256}},
                                                      {"CenterCrop": {"height": 200, "width": 180}}])) == (200, 180)
    assert recipe_input_size(recipe(data={"input_size": [256, 192]}, train=crops)) == (256, 192)
    assert recipe_input_size(recipe(train=[{"RandomResizedCrop": {"size": [96, 64]}}])) == (96, 64)
    assert recipe_input_size(recipe(train=["HorizontalFlip"])) is None
    inputs = keras.Input((48, 40, 3))
    fixed = keras.Model(inputs, keras.layers.Conv2D(2, 1)(inputs))
    assert recipe_input_size(recipe(train=crops), fixed) == (48, 40)


def require_builtin_parts():
    from densevision.recipes import _import_builtin_parts

    try:
        _import_builtin_parts()
    except ModuleNotFoundError as error:
        pytest.skip(f"load_recipe needs every built-in module; {error.name} is missing")


def write_recipe(path: Path) -> Path:
    recipe = {
        "name": "tiny_export",
        "task": "segmentation",
        "model": {"name": "fc_densenet", "num_classes": NUM_CLASSES, "blocks_down": [1], "bottleneck": 1,
                  "growth_rate": 4, "first_filters": 8, "dropout": 0.0},
        "data": {"name": "camvid", "root": str(path.parent / "no_dataset_needed"), "batch_size": 2},
        "augmentation": {"train": [{"RandomCrop": {"height": 32, "width": 48}}]},
        "tracking": {"wandb": {"mode": "disabled"}, "tensorboard": False},
    }
    path.write_text(yaml.safe_dump(recipe))
    return path


def test_export_command_prints_parity_and_refuses_clobbering(tmp_path, segmenter, capsys):
    require_builtin_parts()
    recipe = write_recipe(tmp_path / "tiny.yaml")
    weights = tmp_path / "tiny.weights.h5"
    segmenter.save_weights(weights)
    output = tmp_path / "exported"
    assert run_export(str(recipe), str(weights), "saved_model", str(output)) == 0
    out = capsys.readouterr().out
    assert "exported tiny_export (segmentation) as saved_model" in out and "any size" in out
    assert "logits: max |diff|" in out and "(tolerance 1e-05) ok" in out and "labels: 100.00% agree" in out

    assert run_export(str(recipe), str(weights), "saved_model", str(output)) == 2
    assert "already exists" in capsys.readouterr().err
    assert run_export(str(recipe), str(tmp_path / "absent.keras"), "keras", str(tmp_path / "m.keras")) == 2
    assert "absent.keras does not exist" in capsys.readouterr().err
    assert run_export(str(recipe), str(weights), "keras", str(tmp_path / "m.h5")) == 2
    assert "must end in .keras" in capsys.readouterr().err
    assert run_export(str(recipe), str(weights), "tflite", str(tmp_path / "m.tflite"),
                      overrides=["model.growth_rat=3"]) == 2
    assert "growth_rate" in capsys.readouterr().err
    assert run_export(str(recipe), str(weights), "tflite", str(tmp_path / "m.tflite"),
                      overrides=["augmentation.train=[]"]) == 2
    assert "pass --input-size H W" in capsys.readouterr().err


@pytest.mark.slow
def test_export_tool_tflite_at_the_recipe_crop_size(tmp_path, segmenter):
    require_builtin_parts()
    recipe = write_recipe(tmp_path / "tiny.yaml")
    weights = tmp_path / "tiny.keras"
    segmenter.save(weights)
    output = tmp_path / "model.tflite"
    done = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "export.py"), str(recipe), "--weights", str(weights), "--format",
         "tflite", "--output", str(output)],
        capture_output=True, text=True, timeout=300, env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "as tflite" in done.stdout and "32x48" in done.stdout and "(tolerance 0.0001) ok" in done.stdout
    _, runner = tflite_runner(output)
    assert list(runner.get_input_details()["images"]["shape"]) == [1, 32, 48, 3]


def test_export_to_a_folder_that_is_a_file_is_one_error_line(tmp_path, segmenter, capsys):
    require_builtin_parts()
    recipe = write_recipe(tmp_path / "tiny.yaml")
    weights = tmp_path / "tiny.weights.h5"
    segmenter.save_weights(weights)
    (tmp_path / "blocker").write_text("a file")
    assert run_export(str(recipe), str(weights), "saved_model", str(tmp_path / "blocker" / "out")) == 2
    assert "blocker is a file, not a folder" in capsys.readouterr().err


@pytest.mark.usefixtures("private_cache")
def test_export_refusal_speaks_in_flags_not_arguments(tmp_path):
    from densevision.engine.export import ExportError, _prepare_output

    existing = tmp_path / "model.keras"
    existing.write_bytes(b"earlier")
    with pytest.raises(ExportError) as caught:
        _prepare_output(existing, "keras", False)
    assert "pass --overwrite to replace it" in str(caught.value) and "overwrite=True" not in str(caught.value)
